"""Alertmanager's label matchers: ``severity="critical"``, ``team=~"ops|db"``, the list syntax
``{alertname="Watchdog", severity!="info"}``, and the pydantic types of configuration fields
that hold them (``matchers:`` items, label names, the deprecated ``match``/``match_re`` maps)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, GetCoreSchemaHandler, PlainSerializer
from pydantic_core import core_schema

__all__ = [
    "LabelName",
    "MatchType",
    "Matcher",
    "MatcherItem",
    "check_label_name",
    "check_regex_map",
    "legacy_matchers",
    "parse_matchers",
]

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class MatchType(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher, ``name="value"``, ``!=``, ``=~`` or ``!~``.

    As in Alertmanager, a missing label matches as the empty string, and a regular
    expression is anchored at both ends (``=~"warn"`` does not match ``warning``).
    """

    name: str
    type: MatchType
    value: str
    _regex: re.Pattern[str] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if self.type in (MatchType.REGEX, MatchType.NOT_REGEX):
            try:
                compiled = re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {self.value!r}: {exc}") from None
            object.__setattr__(self, "_regex", compiled)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Exactly one matcher: ``severity="critical"``, ``team =~ "ops|db"``."""
        matchers = parse_matchers(text)
        if len(matchers) != 1:
            raise ValueError(f"{text!r} holds {len(matchers)} matchers; expected one")
        return matchers[0]

    @property
    def is_regex(self) -> bool:
        return self._regex is not None

    @property
    def is_equal(self) -> bool:
        """Alertmanager's ``isEqual``: false for ``!=`` and ``!~``."""
        return self.type in (MatchType.EQUAL, MatchType.REGEX)

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.type is MatchType.EQUAL:
            return value == self.value
        if self.type is MatchType.NOT_EQUAL:
            return value != self.value
        assert self._regex is not None  # noqa: S101 - set in __post_init__ for regex types
        found = self._regex.fullmatch(value) is not None
        return found if self.type is MatchType.REGEX else not found

    def __str__(self) -> str:
        name = self.name if _LABEL_NAME.fullmatch(self.name) else _quote(self.name)
        return f"{name}{self.type.value}{_quote(self.value)}"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _coerce_matcher,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )


def _coerce_matcher(value: object) -> Matcher:
    if isinstance(value, Matcher):
        return value
    if isinstance(value, str):
        return Matcher.parse(value)
    raise ValueError('must be a matcher string like severity="critical"')


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# Unquoted literals: anything but whitespace and the reserved characters.
_UNQUOTED_NAME = re.compile(r"[^\s{}!=~,\\\"'`]+")
_OPERATORS: Final = ("=~", "!~", "!=", "=")
_SIMPLE_ESCAPES: Final[Mapping[str, str]] = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    '"': '"',
    "\\": "\\",
    "'": "'",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}


def parse_matchers(text: str) -> list[Matcher]:
    """Parse one matcher or a comma-separated list, with or without braces, as Alertmanager
    does: ``{alertname="Watchdog", severity=~"warning|critical"}``, ``foo = bar``.

    Names and values may be double-quoted (Go string escapes); an unquoted value runs to the
    next comma. Raises ValueError naming the position of the problem.
    """
    source = text.strip()
    if source.startswith("{") != source.endswith("}"):
        missing = "closing '}'" if source.startswith("{") else "opening '{'"
        raise ValueError(f"{text!r}: missing {missing}")
    if source.startswith("{"):
        source = source[1:-1]
    matchers: list[Matcher] = []
    pos = _skip_space(source, 0)
    while pos < len(source):
        name, pos = _read_name(source, pos, text)
        pos = _skip_space(source, pos)
        operator = next((op for op in _OPERATORS if source.startswith(op, pos)), None)
        if operator is None:
            raise ValueError(f"{text!r}: expected =, !=, =~ or !~ after {name!r}")
        pos = _skip_space(source, pos + len(operator))
        value, pos = _read_value(source, pos, text)
        matchers.append(Matcher(name, MatchType(operator), value))
        pos = _skip_space(source, pos)
        if pos < len(source):
            if source[pos] != ",":
                raise ValueError(f"{text!r}: expected ',' at position {pos}")
            pos = _skip_space(source, pos + 1)
    if not matchers:
        raise ValueError(f"{text!r}: no matcher")
    return matchers


def _skip_space(source: str, pos: int) -> int:
    while pos < len(source) and source[pos].isspace():
        pos += 1
    return pos


def _read_name(source: str, pos: int, text: str) -> tuple[str, int]:
    if pos < len(source) and source[pos] == '"':
        name, pos = _read_quoted(source, pos, text)
    else:
        found = _UNQUOTED_NAME.match(source, pos)
        if found is None:
            raise ValueError(f"{text!r}: expected a label name at position {pos}")
        name, pos = found.group(), found.end()
    if not name:
        raise ValueError(f"{text!r}: the label name is empty")
    return name, pos


def _read_value(source: str, pos: int, text: str) -> tuple[str, int]:
    if pos < len(source) and source[pos] == '"':
        return _read_quoted(source, pos, text)
    end = source.find(",", pos)
    end = len(source) if end < 0 else end
    value = source[pos:end].strip()
    if '"' in value:
        raise ValueError(f"{text!r}: a value with '\"' must be quoted and escaped")
    return value, end


def _read_quoted(source: str, pos: int, text: str) -> tuple[str, int]:
    """A double-quoted Go string starting at ``pos``; returns it and the position after."""
    out = bytearray()
    i = pos + 1
    while i < len(source):
        char = source[i]
        if char == '"':
            try:
                return out.decode("utf-8"), i + 1
            except UnicodeDecodeError:
                raise ValueError(f"{text!r}: escapes that are not UTF-8") from None
        if char != "\\" or i + 1 >= len(source):
            out += char.encode()
            i += 1
            continue
        escape = source[i + 1]
        if escape in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[escape].encode()
            i += 2
        elif escape == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", source[i + 2 : i + 4]):
            out.append(int(source[i + 2 : i + 4], 16))
            i += 4
        elif escape in "uU":
            width = 4 if escape == "u" else 8
            digits = source[i + 2 : i + 2 + width]
            if not re.fullmatch(rf"[0-9a-fA-F]{{{width}}}", digits):
                raise ValueError(f"{text!r}: bad \\{escape} escape at position {i}")
            out += chr(int(digits, 16)).encode()
            i += 2 + width
        else:
            # Classic matchers keep an unknown escape as a literal backslash.
            out += b"\\"
            i += 1
    raise ValueError(f"{text!r}: unterminated quoted string")


def _matcher_item(value: object) -> object:
    """One ``matchers:`` item: a string of one or more matchers (or Matcher objects)."""
    if isinstance(value, str):
        return tuple(parse_matchers(value))
    if isinstance(value, Matcher):
        return (value,)
    return value


MatcherItem = Annotated[
    tuple[Matcher, ...],
    BeforeValidator(_matcher_item),
    PlainSerializer(lambda group: ", ".join(str(m) for m in group), return_type=str),
]


def check_label_name(value: str) -> str:
    """``value`` if it is a Prometheus label name, else ValueError."""
    if not _LABEL_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return value


LabelName = Annotated[
    str, BeforeValidator(lambda v: check_label_name(v) if isinstance(v, str) else v)
]


def check_regex_map(value: Mapping[str, str]) -> Mapping[str, str]:
    """A ``match_re`` map: label names to regular expressions that compile."""
    for name, pattern in value.items():
        check_label_name(name)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{name}: invalid regular expression {pattern!r}: {exc}") from None
    return value


def legacy_matchers(match: Mapping[str, str], match_re: Mapping[str, str]) -> tuple[Matcher, ...]:
    """The deprecated ``match`` and ``match_re`` maps as matchers."""
    return (
        *(Matcher(name, MatchType.EQUAL, value) for name, value in match.items()),
        *(Matcher(name, MatchType.REGEX, value) for name, value in match_re.items()),
    )
