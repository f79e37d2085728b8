"""Reply templates render in a bounded Jinja sandbox.

Jinja's ``SandboxedEnvironment`` keeps templates away from Python internals but not from
the CPU or the memory: nested ``range(3000)`` loops blocked the event loop for 0.9 s and
``{{ (message.text * 100000000)|length }}`` allocated 200 MB per render. Here every render
has bounds, checked *before* the work or the allocation they limit:

- ``range`` gives at most ``MAX_RANGE`` numbers;
- a value built by a template (``*``, ``+``, ``~``, ``%``, ``join``, ``replace``, ``center``,
  ``indent``, ``wordwrap``, ``format``) is at most ``MAX_VALUE_CHARS`` long, an integer at
  most ``MAX_INT_BITS`` bits;
- the rendered text (and any ``{% set %}`` block or macro output) is at most
  ``MAX_OUTPUT_CHARS``;
- loop iterations, calls and operators together are at most ``MAX_STEPS``, and one render
  uses at most ``MAX_RENDER_CPU_SECONDS`` of its thread's CPU time (checked at every step;
  every step is itself bounded by the size limits, so a render stops itself soon after).

Only plain data methods are callable (``lower``, ``split``, ``strftime``, ``items``...);
``str.format``, ``ljust``, ``zfill`` and friends are refused (the bounded filters do the
same). Recursive loops and ``lipsum`` are not available. A template that breaks a bound
raises :class:`TemplateLimitExceeded` naming the bound; literal breaches
(``range(100000)``, ``x * 100000000``, ``recursive`` loops) are refused when the playbook is
saved.

The bounds and their checks are in :mod:`tgfleet.playbook._bounds`, the bounded filters in
:mod:`tgfleet.playbook._filters`; here is the environment that applies them, and
:func:`compile_template` and :func:`render`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from datetime import time as clock_time
from typing import Any, ClassVar

from jinja2 import StrictUndefined, Template, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tgfleet.playbook._bounds import (
    MAX_INT_BITS,
    MAX_OUTPUT_CHARS,
    MAX_VALUE_CHARS,
    TemplateLimitExceeded,
    bounded_range,
    budget,
    check_operator,
    check_size,
    step,
    weight,
)
from tgfleet.playbook._filters import bounded_filters

#: Methods a template may call, by the type they belong to; everything else that is
#: callable on these types is refused (``ljust(10**8)``, ``to_bytes(10**8)``...).
_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(
        [
            "capitalize",
            "casefold",
            "count",
            "endswith",
            "find",
            "index",
            "isalnum",
            "isalpha",
            "isdigit",
            "islower",
            "isnumeric",
            "isspace",
            "istitle",
            "isupper",
            "lower",
            "lstrip",
            "partition",
            "rfind",
            "rindex",
            "rpartition",
            "rsplit",
            "rstrip",
            "split",
            "splitlines",
            "startswith",
            "strip",
            "swapcase",
            "title",
            "upper",
        ]
    ),
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    datetime: frozenset(
        {"date", "isoformat", "isoweekday", "strftime", "time", "timestamp", "weekday"}
    ),
    date: frozenset({"isoformat", "isoweekday", "strftime", "weekday"}),
    clock_time: frozenset({"isoformat", "strftime"}),
}
_PLAIN_TYPES = (str, bytes, int, float, complex, list, tuple, dict, set, frozenset, date)

#: Filters whose literal size arguments are checked when the playbook is saved.
_LIMITED_FILTER_ARGS = frozenset({"batch", "center", "indent", "slice", "truncate", "wordwrap"})


def _finalize(value: Any) -> Any:
    """Every ``{{ expression }}``'s value before it becomes text (Jinja's ``finalize``)."""
    if not isinstance(value, str):
        check_size("the printed value", weight(value, MAX_OUTPUT_CHARS))
    return value


def _refused_format(*_args: Any, **_kwargs: Any) -> str:
    msg = "str.format is not available in templates; use ~ or the format filter"
    raise SecurityError(msg)


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with the bounds of :mod:`tgfleet.playbook._bounds` (see the module docstring)."""

    intercepted_binops: ClassVar[frozenset[str]] = frozenset({"*", "+", "**", "%"})  # type: ignore[misc]

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            finalize=_finalize,
        )
        self.globals.pop("lipsum", None)
        self.globals["range"] = bounded_range
        self.filters = bounded_filters()

    @staticmethod
    def concat(chunks: Iterable[str]) -> str:
        """Join rendered output (Jinja's ``concat`` hook), refusing it past the bound."""
        parts: list[str] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                msg = f"the template rendered more than {MAX_OUTPUT_CHARS} characters"
                raise TemplateLimitExceeded("output_size", msg)
            parts.append(chunk)
        step()
        return "".join(parts)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if callable(value) and isinstance(obj, _PLAIN_TYPES):
            allowed = next(
                (names for kind, names in _METHODS.items() if isinstance(obj, kind)), frozenset()
            )
            return attr in allowed
        return True

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        return _refused_format if super().wrap_str_format(value) is not None else None

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        step()
        check_operator(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        step()
        return super().call(__context, __obj, *args, **kwargs)

    @staticmethod
    def tgfleet_iterate(iterable: Iterable[Any]) -> Iterator[Any]:
        """Every loop iterates through here: one step per item."""
        for item in iterable:
            step()
            yield item

    @staticmethod
    def tgfleet_concat(*values: Any) -> str:
        """The ``~`` operator, bounded."""
        check_size("the concatenation", sum(map(weight, values)))
        parts = [str(value) for value in values]
        check_size("the concatenation", sum(map(len, parts)))
        return "".join(parts)


ENVIRONMENT = BoundedEnvironment()


def compile_template(source: str) -> tuple[nodes.Template, Template]:
    """Parse ``source``, refuse literal breaches of the bounds, and compile it with every
    loop and ``~`` routed through the bounded helpers. Raises ``TemplateSyntaxError`` or
    ``TemplateLimitExceeded`` (its ``lineno`` attribute is the template's line)."""
    tree = ENVIRONMENT.parse(source)
    _check_literals(tree)
    _route(tree)
    return tree, ENVIRONMENT.from_string(tree)


def render(template: Template, variables: Mapping[str, Any]) -> str:
    """Render within the step and CPU-time budget."""
    with budget():
        return template.render(variables)


class LiteralLimitExceeded(TemplateLimitExceeded):
    """A bound broken by literals in the template itself: refused at save."""

    def __init__(self, message: str, lineno: int) -> None:
        super().__init__("literal", message)
        self.lineno = lineno


def _const_int(node: nodes.Node) -> int | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, int):
        return int(node.value)
    if isinstance(node, nodes.Neg) and isinstance(node.node, nodes.Const):
        value = node.node.value
        return -value if isinstance(value, int) else None
    return None


def _check_literals(tree: nodes.Template) -> None:
    for node in tree.find_all((nodes.For, nodes.Call, nodes.Mul, nodes.Pow, nodes.Filter)):
        problem = _literal_problem(node)
        if problem is not None:
            raise LiteralLimitExceeded(problem, node.lineno)


def _literal_problem(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.For) and node.recursive:
        return "recursive loops are not available in templates"
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
        numbers = [_const_int(arg) for arg in node.args]
        if node.node.name == "range" and 0 < len(numbers) <= 3 and None not in numbers:
            try:
                bounded_range(*(n for n in numbers if n is not None))
            except (TemplateLimitExceeded, ValueError) as exc:
                return str(exc)
    elif isinstance(node, nodes.Mul):
        count = max(_const_int(node.left) or 0, _const_int(node.right) or 0)
        if count > MAX_VALUE_CHARS:
            return f"repeats a value {count} times; the limit is {MAX_VALUE_CHARS}"
    elif isinstance(node, nodes.Pow):
        exponent = _const_int(node.right) or 0
        if exponent > MAX_INT_BITS:
            return f"raises to the power {exponent}; the limit is {MAX_INT_BITS}"
    elif isinstance(node, nodes.Filter) and node.name in _LIMITED_FILTER_ARGS:
        sizes = [_const_int(arg) or 0 for arg in [*node.args, *(kw.value for kw in node.kwargs)]]
        if max(sizes, default=0) > MAX_VALUE_CHARS:
            return f"|{node.name} with {max(sizes)} is over the limit of {MAX_VALUE_CHARS}"
    return None


def _route(tree: nodes.Node) -> None:
    """Send every loop's iterable through ``tgfleet_iterate`` and every ``~`` through
    ``tgfleet_concat`` (both count steps and sizes)."""
    for field in tree.fields:
        value = getattr(tree, field, None)
        if isinstance(value, nodes.Node):
            setattr(tree, field, _routed(value))
        elif isinstance(value, list):
            setattr(tree, field, [_routed(v) if isinstance(v, nodes.Node) else v for v in value])


def _routed(node: nodes.Node) -> nodes.Node:
    _route(node)
    if isinstance(node, nodes.For):
        node.iter = _helper_call("tgfleet_iterate", [node.iter], node.lineno)
    if isinstance(node, nodes.Concat):
        return _helper_call("tgfleet_concat", list(node.nodes), node.lineno)
    return node


def _helper_call(name: str, args: list[Any], lineno: int) -> nodes.Call:
    call = nodes.Call(nodes.EnvironmentAttribute(name), args, [], None, None)
    call.set_lineno(lineno)
    return call
