"""Jinja's filters for templates: those that grow a value check its size first.

``replace``, ``center``, ``indent``, ``wordwrap``, ``format`` and ``join`` refuse a result
over ``MAX_VALUE_CHARS``; ``batch`` and ``slice`` a count over ``MAX_RANGE``; ``string``,
``tojson``, ``pprint`` and ``list`` a value that would print longer than the limit; ``sum``
adds numbers only; ``urlize`` is not available.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS, make_attrgetter
from jinja2.utils import pass_eval_context

from tgfleet.playbook._bounds import (
    MAX_RANGE,
    TemplateLimitExceeded,
    check_percent,
    check_size,
    check_weight,
    check_width,
)


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
    check_size("the replaced text", len(text) + found * max(len(new) - len(old), 0))


def _check_center(_value: Any, width: int = 80) -> None:
    check_width("the centered text", width)


def _check_indent(s: Any, width: int | str = 4, *_args: Any, **_kwargs: Any) -> None:
    check_width("the indentation", width)
    prefix = len(width) if isinstance(width, str) else max(width, 0)
    text = str(s)
    check_size("the indented text", len(text) + (text.count("\n") + 1) * prefix)


def _check_wordwrap(
    s: Any, width: int = 79, _break_long_words: bool = True, wrapstring: str | None = None,
    *_args: Any, **_kwargs: Any,
) -> None:  # fmt: skip
    text = str(s)
    lines = len(text) // max(width, 1) + len(text.split()) + 1
    check_size("the wrapped text", len(text) + lines * len(wrapstring or "\n"))


def _check_format(value: Any, *args: Any, **kwargs: Any) -> None:
    check_percent(str(value), kwargs or args)


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
    check_size("the joined text", sum(map(len, parts)) + len(separator) * max(len(parts) - 1, 0))
    joined: str = FILTERS["join"](eval_ctx, parts, separator)
    return joined


def bounded_filters() -> dict[str, Callable[..., Any]]:
    """Jinja's filters with the bounded ones in place of the originals."""
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
        check_weight(f"|{name} of the value", value)

    return check
