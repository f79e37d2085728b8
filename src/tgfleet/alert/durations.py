"""Alertmanager's (and Prometheus') durations: ``30s``, ``5m``, ``1h30m``, ``1d``, ``500ms``,
and the pydantic type of a configuration field that holds one."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Final

from pydantic import BeforeValidator, PlainSerializer

__all__ = ["Duration", "format_duration", "parse_duration"]

# Alertmanager's (and Prometheus') duration: units from years to milliseconds, each at most
# once, largest first; or a bare 0.
_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DURATION_UNITS: Final = (
    ("y", timedelta(days=365)),
    ("w", timedelta(weeks=1)),
    ("d", timedelta(days=1)),
    ("h", timedelta(hours=1)),
    ("m", timedelta(minutes=1)),
    ("s", timedelta(seconds=1)),
    ("ms", timedelta(milliseconds=1)),
)


def parse_duration(value: object) -> timedelta:
    """Alertmanager's duration (``30s``, ``5m``, ``1h30m``, ``1d``, ``1w``, ``500ms``, ``0``).

    A bare number other than 0 is refused, as in Alertmanager: ``30`` says nothing about
    its unit.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        # ValueError, not TypeError: pydantic reports only ValueError as a field problem.
        raise ValueError("must be a duration like 30s, 5m, 4h or 1h30m")  # noqa: TRY004
    text = str(value).strip()
    if text == "0":
        return timedelta(0)
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 4h or 1h30m")
    total = timedelta(0)
    for amount, (_, unit) in zip(match.groups(), _DURATION_UNITS, strict=True):
        if amount is not None:
            total += int(amount) * unit
    return total


def format_duration(value: timedelta) -> str:
    """The inverse of :func:`parse_duration` (``timedelta(minutes=90)`` -> ``"1h30m"``)."""
    remaining = value // timedelta(milliseconds=1)
    if remaining <= 0:
        return "0s"
    parts: list[str] = []
    for suffix, unit in _DURATION_UNITS:
        step = unit // timedelta(milliseconds=1)
        count, remaining = divmod(remaining, step)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts)


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
