"""The bounds of one template render, and the checks that keep them.

Every bound is checked *before* the work or the allocation it limits (see
:mod:`tgfleet.playbook._sandbox` for what a template may do): ``range`` gives at most
``MAX_RANGE`` numbers; a value a template builds is at most ``MAX_VALUE_CHARS`` long, an
integer at most ``MAX_INT_BITS`` bits; the rendered text at most ``MAX_OUTPUT_CHARS``; loop
iterations, calls and operators together at most ``MAX_STEPS``, and one render at most
``MAX_RENDER_CPU_SECONDS`` of its thread's CPU time (:func:`budget` sets them for a render,
:func:`step` counts one). A breach raises :class:`TemplateLimitExceeded` naming the bound.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import SecurityError

MAX_RANGE = 1000
MAX_VALUE_CHARS = 16_384
MAX_INT_BITS = 4096
MAX_OUTPUT_CHARS = 16_384
MAX_STEPS = 20_000
MAX_RENDER_CPU_SECONDS = 0.01


# A printf conversion: its width and precision (``*`` takes them from the arguments).
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?[a-zA-Z%]")


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


@contextlib.contextmanager
def budget() -> Iterator[None]:
    """A fresh step and CPU-time budget for the render inside."""
    token = _BUDGET.set(_Budget(MAX_STEPS, time.thread_time() + MAX_RENDER_CPU_SECONDS))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def step() -> None:
    """Count one loop iteration, call or operation against the current render's budget."""
    current = _BUDGET.get()
    if current is not None:
        current.step()


def _too_long(what: str, size: int) -> TemplateLimitExceeded:
    return TemplateLimitExceeded(
        "value_size", f"{what} would be {size} characters long; the limit is {MAX_VALUE_CHARS}"
    )


def check_size(what: str, size: int) -> None:
    if size > MAX_VALUE_CHARS:
        raise _too_long(what, size)


def check_width(what: str, width: Any) -> None:
    if isinstance(width, int) and width > MAX_VALUE_CHARS:
        raise _too_long(what, width)


def check_percent(template: str, values: Any) -> None:
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
    check_size("the formatted text", len(template) + conversions * max(widest, longest))


def weight(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
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
        total += weight(item, limit - total)
    return total


def check_weight(what: str, value: Any) -> None:
    check_size(what, weight(value))


def check_operator(operator: str, left: Any, right: Any) -> None:
    sequences = (str, list, tuple)
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, sequences) and isinstance(count, int):
                check_size("the repeated value", weight(seq) * max(count, 0))
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and left.bit_length() + right.bit_length() > MAX_INT_BITS
        ):
            msg = f"the product would have more than {MAX_INT_BITS} bits"
            raise TemplateLimitExceeded("int_size", msg)
    elif operator == "+" and isinstance(left, sequences) and isinstance(right, sequences):
        check_size("the concatenation", weight(left) + weight(right))
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        if abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
            msg = f"the power would have more than {MAX_INT_BITS} bits"
            raise TemplateLimitExceeded("int_size", msg)
    elif operator == "%" and isinstance(left, str):
        check_percent(left, right)


def bounded_range(*args: int) -> range:
    """``range`` for templates: at most ``MAX_RANGE`` numbers."""
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        msg = f"range() of {len(numbers)} numbers is over the limit of {MAX_RANGE}"
        raise TemplateLimitExceeded("range", msg)
    return numbers
