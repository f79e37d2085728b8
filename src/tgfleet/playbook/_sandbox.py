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
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as clock_time
from functools import wraps
from typing import Any, ClassVar

from jinja2 import StrictUndefined, Template, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS, make_attrgetter
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_eval_context

MAX_RANGE = 1000
MAX_VALUE_CHARS = 16_384
MAX_INT_BITS = 4096
MAX_OUTPUT_CHARS = 16_384
MAX_STEPS = 20_000
MAX_RENDER_CPU_SECONDS = 0.01

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

# A printf conversion: its width and precision (``*`` takes them from the arguments).
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?[a-zA-Z%]")
_LIMITED_FILTER_ARGS = frozenset({"batch", "center", "indent", "slice", "truncate", "wordwrap"})


class TemplateLimitExceeded(SecurityError):
    """A render went over one of the sandbox's bounds; ``limit`` names it (no values)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(slots=True)
class _Budget:
    steps: int
    cpu_deadline: float

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            msg = f"the template took more than {MAX_STEPS} loop iterations, calls and operations"
            raise TemplateLimitExceeded("steps", msg)
        if time.thread_time() > self.cpu_deadline:
            msg = f"the template used more than {MAX_RENDER_CPU_SECONDS * 1000:g} ms of CPU"
            raise TemplateLimitExceeded("cpu_time", msg)


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "tgfleet_template_budget", default=None
)


def _step() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.step()


def _too_long(what: str, size: int) -> TemplateLimitExceeded:
    return TemplateLimitExceeded(
        "value_size", f"{what} would be {size} characters long; the limit is {MAX_VALUE_CHARS}"
    )


def _check_size(what: str, size: int) -> None:
    if size > MAX_VALUE_CHARS:
        raise _too_long(what, size)


def _check_width(what: str, width: Any) -> None:
    if isinstance(width, int) and width > MAX_VALUE_CHARS:
        raise _too_long(what, width)


def _check_percent(template: str, values: Any) -> None:
    """``template % values`` stays within MAX_VALUE_CHARS (widths and arguments counted)."""
    conversions = 0
    widest = 0
    for found in _PERCENT.finditer(template):
        for number in found.groups():
            if number == "*":
                msg = "a * width or precision in % formatting is not available in templates"
                raise TemplateLimitExceeded("value_size", msg)
            if number is not None:
                widest = max(widest, int(number[:7]))
        conversions += 1
    if isinstance(values, Mapping):
        arguments: Iterable[Any] = values.values()
    elif isinstance(values, tuple):
        arguments = values
    else:
        arguments = (values,)
    longest = max((len(str(value)) for value in arguments), default=0)
    _check_size("the formatted text", len(template) + conversions * max(widest, longest))


def _weight(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """About how many characters ``value`` takes as text: a list of one 4,000-character
    string repeated 16,000 times is 64 million, though only 16,000 items long. Stops
    counting past ``limit`` (shared items are counted each time, as ``str()`` would)."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, Mapping):
        value = [*value.keys(), *value.values()]
    if not isinstance(value, (list, tuple, set, frozenset)):
        return 1
    total = len(value)
    for item in value:
        if total > limit:
            break
        total += _weight(item, limit - total)
    return total


def _check_weight(what: str, value: Any) -> None:
    _check_size(what, _weight(value))


def _check_operator(operator: str, left: Any, right: Any) -> None:
    sequences = (str, list, tuple)
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, sequences) and isinstance(count, int):
                _check_size("the repeated value", _weight(seq) * max(count, 0))
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and left.bit_length() + right.bit_length() > MAX_INT_BITS
        ):
            msg = f"the product would have more than {MAX_INT_BITS} bits"
            raise TemplateLimitExceeded("int_size", msg)
    elif operator == "+" and isinstance(left, sequences) and isinstance(right, sequences):
        _check_size("the concatenation", _weight(left) + _weight(right))
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        if abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
            msg = f"the power would have more than {MAX_INT_BITS} bits"
            raise TemplateLimitExceeded("int_size", msg)
    elif operator == "%" and isinstance(left, str):
        _check_percent(left, right)


# --- Filters: the growing ones check their result's size first --------------------------------


def _bounded(original: Callable[..., Any], check: Callable[..., None]) -> Callable[..., Any]:
    """``original`` after ``check`` (called with the same arguments, without any Jinja
    context argument the filter takes first)."""
    takes_context = hasattr(original, "jinja_pass_arg")

    @wraps(original)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        check(*(args[1:] if takes_context else args), **kwargs)
        return original(*args, **kwargs)

    return bounded


def _check_replace(s: Any, old: str, new: str, count: int | None = None) -> None:
    text, old, new = str(s), str(old), str(new)
    found = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        found = min(found, count)
    _check_size("the replaced text", len(text) + found * max(len(new) - len(old), 0))


def _check_center(_value: Any, width: int = 80) -> None:
    _check_width("the centered text", width)


def _check_indent(s: Any, width: int | str = 4, *_args: Any, **_kwargs: Any) -> None:
    _check_width("the indentation", width)
    prefix = len(width) if isinstance(width, str) else max(width, 0)
    text = str(s)
    _check_size("the indented text", len(text) + (text.count("\n") + 1) * prefix)


def _check_wordwrap(
    s: Any, width: int = 79, _break_long_words: bool = True, wrapstring: str | None = None,
    *_args: Any, **_kwargs: Any,
) -> None:  # fmt: skip
    text = str(s)
    lines = len(text) // max(width, 1) + len(text.split()) + 1
    _check_size("the wrapped text", len(text) + lines * len(wrapstring or "\n"))


def _check_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_percent(str(value), kwargs or args)


def _check_count(what: str) -> Callable[..., None]:
    def check(_value: Any, count: int, *_args: Any, **_kwargs: Any) -> None:
        if isinstance(count, int) and count > MAX_RANGE:
            msg = f"{what} of {count} is over the limit of {MAX_RANGE}"
            raise TemplateLimitExceeded("range", msg)

    return check


@pass_eval_context
def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items: list[Any] = list(value)
    if attribute is not None:
        get = make_attrgetter(eval_ctx.environment, attribute)
        items = [get(item) for item in items]
    parts = [str(item) for item in items]
    separator = str(d)
    _check_size("the joined text", sum(map(len, parts)) + len(separator) * max(len(parts) - 1, 0))
    joined: str = FILTERS["join"](eval_ctx, parts, separator)
    return joined


def _filters() -> dict[str, Callable[..., Any]]:
    filters = {name: f for name, f in FILTERS.items() if name != "urlize"}
    filters["replace"] = _bounded(FILTERS["replace"], _check_replace)
    filters["center"] = _bounded(FILTERS["center"], _check_center)
    filters["indent"] = _bounded(FILTERS["indent"], _check_indent)
    filters["wordwrap"] = _bounded(FILTERS["wordwrap"], _check_wordwrap)
    filters["format"] = _bounded(FILTERS["format"], _check_format)
    filters["batch"] = _bounded(FILTERS["batch"], _check_count("a batch size"))
    filters["slice"] = _bounded(FILTERS["slice"], _check_count("a slice count"))
    filters["join"] = _join
    filters["sum"] = _bounded(FILTERS["sum"], _check_sum)
    for name in ("string", "tojson", "pprint", "list"):
        filters[name] = _bounded(FILTERS[name], _check_text_of(name))
    return filters


def _check_sum(_iterable: Any, *args: Any, **kwargs: Any) -> None:
    # Adding lists is quadratic: 5,000 one-item lists copy 12.5 million items in one step.
    start = kwargs.get("start", args[1] if len(args) > 1 else 0)
    if not isinstance(start, (int, float)):
        msg = "|sum only adds numbers in templates"
        raise SecurityError(msg)


def _check_text_of(name: str) -> Callable[..., None]:
    def check(value: Any, *_args: Any, **_kwargs: Any) -> None:
        _check_weight(f"|{name} of the value", value)

    return check


def _finalize(value: Any) -> Any:
    """Every ``{{ expression }}``'s value before it becomes text (Jinja's ``finalize``)."""
    if not isinstance(value, str):
        _check_size("the printed value", _weight(value, MAX_OUTPUT_CHARS))
    return value


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        msg = f"range() of {len(numbers)} numbers is over the limit of {MAX_RANGE}"
        raise TemplateLimitExceeded("range", msg)
    return numbers


def _refused_format(*_args: Any, **_kwargs: Any) -> str:
    msg = "str.format is not available in templates; use ~ or the format filter"
    raise SecurityError(msg)


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with the bounds of this module (see the module docstring)."""

    intercepted_binops: ClassVar[frozenset[str]] = frozenset({"*", "+", "**", "%"})  # type: ignore[misc]

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            finalize=_finalize,
        )
        self.globals.pop("lipsum", None)
        self.globals["range"] = _range
        self.filters = _filters()

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
        _step()
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
        _step()
        _check_operator(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _step()
        return super().call(__context, __obj, *args, **kwargs)

    @staticmethod
    def tgfleet_iterate(iterable: Iterable[Any]) -> Iterator[Any]:
        """Every loop iterates through here: one step per item."""
        for item in iterable:
            _step()
            yield item

    @staticmethod
    def tgfleet_concat(*values: Any) -> str:
        """The ``~`` operator, bounded."""
        _check_size("the concatenation", sum(map(_weight, values)))
        parts = [str(value) for value in values]
        _check_size("the concatenation", sum(map(len, parts)))
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
    token = _BUDGET.set(_Budget(MAX_STEPS, time.thread_time() + MAX_RENDER_CPU_SECONDS))
    try:
        return template.render(variables)
    finally:
        _BUDGET.reset(token)


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
                _range(*(n for n in numbers if n is not None))
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
