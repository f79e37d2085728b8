"""The alerting configuration, in the shape of Alertmanager's ``alertmanager.yml``.

A file named by ``TGFLEET_ALERTING_CONFIG`` is read with :func:`load_config`; every problem
is reported with the file, the line and the field, e.g.
``alerting.yml:12: route.routes[0].receiver: unknown receiver 'pager' (known: ops, oncall)``.

What is Alertmanager's and what is not:

- ``global`` (``resolve_timeout``, ``telegram_api_url``, ``telegram_bot_token[_file]``),
  ``route`` (``receiver``, ``group_by`` with ``['...']``, ``group_wait``, ``group_interval``,
  ``repeat_interval``, ``matchers`` and the deprecated ``match``/``match_re``,
  ``continue``, ``routes``), ``receivers`` and ``inhibit_rules`` (``source_matchers``,
  ``target_matchers``, ``equal`` and the deprecated ``*_match``/``*_match_re``) read as in
  Alertmanager, with its defaults and its duration format (``30s``, ``5m``, ``1h30m``, ``1d``).
- Receivers: ``telegram_configs`` and ``webhook_configs`` with Alertmanager's fields, and
  our ``alertmanager_configs`` (POST the alerts to an Alertmanager's ``/api/v2/alerts``).
  Other integrations (email, Slack, ...), ``http_config``, ``templates`` and time
  intervals are refused with a message that says so, never silently ignored.
- ``message`` templates are **Jinja2** (sandboxed), not Go templates: Alertmanager's data
  keeps its names, so ``{{ .CommonLabels.alertname }}`` becomes
  ``{{ CommonLabels.alertname }}`` and ``{{ range .Alerts.Firing }}`` becomes
  ``{% for a in Alerts.Firing %}``. A Go template is refused with that hint.
- ``parse_mode`` is ``HTML`` (the default) or ``""`` (plain text): long notifications are
  split into several messages at line boundaries, which tgfleet can only do safely for
  these two. ``Markdown``/``MarkdownV2`` are refused.
- ``repeat_interval`` acts rounded up to a multiple of ``group_interval``, as in
  Alertmanager (the repeat is checked at each group interval); :class:`Route` holds the
  rounded value and the configuration warns when it differs.
- Secrets (``bot_token``, a webhook ``url``) are ``SecretStr``: never in a repr, a log line
  or an error. ``*_file`` paths are relative to the configuration file's directory, must
  exist and be non-empty; a file every user can read is a warning.

Without a file, :func:`default_config` routes every alert to one receiver, ``default``,
that has no integrations: alerts are evaluated, grouped and visible in the API, and nothing
leaves the process until a configuration names a destination.
"""

from __future__ import annotations

import difflib
import math
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import jinja2
import jinja2.sandbox
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from tgfleet.config import Settings
from tgfleet.exceptions import ConfigError
from tgfleet.kit.yaml_guard import DuplicateKeys, Position, YamlRefused, error_line, line_of, load
from tgfleet.logging import get_logger

__all__ = [
    "DEFAULT_RECEIVER",
    "DEFAULT_TELEGRAM_API_URL",
    "AlertingConfig",
    "AlertingConfigError",
    "AlertmanagerReceiverConfig",
    "GlobalConfig",
    "InhibitRule",
    "InhibitRuleConfig",
    "MatchType",
    "Matcher",
    "ReceiverConfig",
    "Route",
    "RouteConfig",
    "TelegramConfig",
    "WebhookConfig",
    "config_from_settings",
    "default_config",
    "format_duration",
    "load_config",
    "message_template_environment",
    "parse_config",
    "parse_duration",
    "parse_matchers",
]

log = get_logger(__name__)

DEFAULT_RECEIVER: Final = "default"
DEFAULT_TELEGRAM_API_URL: Final = "https://api.telegram.org"
#: group_by: ['...'] groups by every label (one group per alert).
GROUP_BY_ALL: Final = "..."
MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
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
# Alertmanager keys we know and refuse, with what to do instead.
_UNSUPPORTED: Final[Mapping[str, str]] = {
    "templates": "Go template files are not supported; write `message` as a Jinja2 template",
    "time_intervals": "time intervals are not supported yet",
    "mute_time_intervals": "time intervals are not supported yet",
    "active_time_intervals": "time intervals are not supported yet",
    "http_config": "http_config is not supported (tgfleet's own HTTP client is used)",
    **{
        f"{kind}_configs": (
            f"{kind}_configs is not supported by tgfleet "
            "(supported: telegram_configs, webhook_configs, alertmanager_configs)"
        )
        for kind in (
            "discord",
            "email",
            "msteams",
            "msteamsv2",
            "jira",
            "opsgenie",
            "pagerduty",
            "pushover",
            "rocketchat",
            "slack",
            "sns",
            "victorops",
            "webex",
            "wechat",
        )
    },
}


class AlertingConfigError(ConfigError):
    """The alerting configuration is invalid; ``problems`` has one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid alerting configuration:\n" + "\n".join(self.problems))


# --------------------------------------------------------------------------- durations


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


# --------------------------------------------------------------------------- matchers


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


def _label_name(value: str) -> str:
    if not _LABEL_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return value


LabelName = Annotated[str, BeforeValidator(lambda v: _label_name(v) if isinstance(v, str) else v)]


def _regex_map(value: Mapping[str, str]) -> Mapping[str, str]:
    for name, pattern in value.items():
        _label_name(name)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{name}: invalid regular expression {pattern!r}: {exc}") from None
    return value


def _legacy_matchers(match: Mapping[str, str], match_re: Mapping[str, str]) -> tuple[Matcher, ...]:
    return (
        *(Matcher(name, MatchType.EQUAL, value) for name, value in match.items()),
        *(Matcher(name, MatchType.REGEX, value) for name, value in match_re.items()),
    )


# --------------------------------------------------------------------------- templates


def message_template_environment(*, html: bool) -> jinja2.sandbox.SandboxedEnvironment:
    """The Jinja2 environment ``message`` templates run in: sandboxed, missing keys render
    empty (like Go's ``missingkey=zero``), values HTML-escaped in ``parse_mode: HTML``."""
    return jinja2.sandbox.SandboxedEnvironment(
        autoescape=html,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


_GO_TEMPLATE = re.compile(r"\{\{-?\s*(\.|template\b|range\b|end\b|define\b)")


def _check_message_template(value: str | None) -> str | None:
    if value is None:
        return None
    if _GO_TEMPLATE.search(value):
        msg = (
            "looks like a Go template (Alertmanager's); tgfleet templates are Jinja2 with "
            "the same names: {{ .CommonLabels.alertname }} -> {{ CommonLabels.alertname }}, "
            "{{ range .Alerts.Firing }}...{{ end }} -> {% for a in Alerts.Firing %}...{% endfor %}"
        )
        raise ValueError(msg)
    try:
        message_template_environment(html=False).parse(value)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"template line {exc.lineno}: {exc.message}") from None
    return value


# --------------------------------------------------------------------------- models


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


def _resolve_file(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None or value.is_absolute():
        return value
    context = info.context if isinstance(info.context, _Context) else None
    base = context.base_dir if context is not None else Path.cwd()
    return base / value


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


class GlobalConfig(_Strict):
    resolve_timeout: Duration = timedelta(minutes=5)
    telegram_api_url: str = DEFAULT_TELEGRAM_API_URL
    telegram_bot_token: SecretStr | None = None
    telegram_bot_token_file: Path | None = None

    @field_validator("telegram_api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("telegram_bot_token_file")
    @classmethod
    def _file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve_file(value, info)


class TelegramConfig(_Strict):
    """Alertmanager's ``telegram_config``; ``timeout`` bounds each HTTP attempt."""

    send_resolved: bool = True
    api_url: str | None = None
    bot_token: SecretStr | None = None
    bot_token_file: Path | None = None
    chat_id: int | str | None = None
    chat_id_file: Path | None = None
    message_thread_id: int | None = None
    message: str | None = None
    disable_notifications: bool = False
    parse_mode: Literal["HTML", ""] = "HTML"
    timeout: Duration | None = None

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @field_validator("bot_token_file", "chat_id_file")
    @classmethod
    def _file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve_file(value, info)

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat(cls, value: object) -> object:
        if isinstance(value, bool):  # pydantic reports a ValueError, not a TypeError
            raise ValueError("must be a chat id (an integer) or @channelusername")  # noqa: TRY004
        if isinstance(value, str) and not value.startswith("@"):
            try:
                return int(value)
            except ValueError:
                raise ValueError("must be a chat id (an integer) or @channelusername") from None
        if value == 0:
            raise ValueError("must not be 0")
        return value

    @field_validator("parse_mode", mode="before")
    @classmethod
    def _parse_mode(cls, value: object) -> object:
        if value in ("Markdown", "MarkdownV2"):
            msg = (
                f"{value} is not supported: tgfleet splits long notifications at line "
                'boundaries, which it can do safely for HTML or plain text ("") only'
            )
            raise ValueError(msg)
        return value

    @field_validator("message")
    @classmethod
    def _message(cls, value: str | None) -> str | None:
        return _check_message_template(value)


class WebhookConfig(_Strict):
    """Alertmanager's ``webhook_config``; ``timeout`` (0: tgfleet's default) per attempt."""

    send_resolved: bool = True
    url: SecretStr | None = None
    url_file: Path | None = None
    max_alerts: Annotated[int, Field(ge=0)] = 0
    timeout: Duration | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _http_url(value.get_secret_value())
        return value

    @field_validator("url_file")
    @classmethod
    def _file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve_file(value, info)


class AlertmanagerReceiverConfig(_Strict):
    """tgfleet's extension: POST the alerts to an Alertmanager (``{url}/api/v2/alerts``).

    ``firing_ttl`` sets ``endsAt`` = now + ttl on firing alerts whose end is unknown; without
    it ``endsAt`` is left out and the Alertmanager resolves such an alert after its own
    ``resolve_timeout`` (5m by default) unless it is posted again.
    """

    url: str
    send_resolved: bool = True
    timeout: Duration | None = None
    firing_ttl: Duration | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)


class ReceiverConfig(_Strict):
    name: Annotated[str, Field(min_length=1)]
    telegram_configs: list[TelegramConfig] = Field(default_factory=list)
    webhook_configs: list[WebhookConfig] = Field(default_factory=list)
    alertmanager_configs: list[AlertmanagerReceiverConfig] = Field(default_factory=list)

    @property
    def integration_count(self) -> int:
        return (
            len(self.telegram_configs) + len(self.webhook_configs) + len(self.alertmanager_configs)
        )


class RouteConfig(_Strict):
    """A routing-tree node as written; unset fields inherit from the parent."""

    receiver: str | None = None
    group_by: list[str] | None = None
    continue_: bool = Field(default=False, alias="continue")
    matchers: list[MatcherItem] = Field(default_factory=list)
    match: dict[LabelName, str] = Field(default_factory=dict)
    match_re: Annotated[dict[LabelName, str], BeforeValidator(_regex_map)] = Field(
        default_factory=dict
    )
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    routes: list[RouteConfig] = Field(default_factory=list)

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if GROUP_BY_ALL in value and len(value) > 1:
            raise ValueError("'...' groups by every label and must be the only entry")
        seen: set[str] = set()
        for name in value:
            if name != GROUP_BY_ALL:
                _label_name(name)
            if name in seen:
                raise ValueError(f"{name!r} is listed twice")
            seen.add(name)
        return value

    @property
    def all_matchers(self) -> tuple[Matcher, ...]:
        listed = tuple(m for group in self.matchers for m in group)
        return (*_legacy_matchers(self.match, self.match_re), *listed)


class InhibitRuleConfig(_Strict):
    source_matchers: list[MatcherItem] = Field(default_factory=list)
    target_matchers: list[MatcherItem] = Field(default_factory=list)
    source_match: dict[LabelName, str] = Field(default_factory=dict)
    source_match_re: Annotated[dict[LabelName, str], BeforeValidator(_regex_map)] = Field(
        default_factory=dict
    )
    target_match: dict[LabelName, str] = Field(default_factory=dict)
    target_match_re: Annotated[dict[LabelName, str], BeforeValidator(_regex_map)] = Field(
        default_factory=dict
    )
    equal: list[LabelName] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Route:
    """A routing-tree node with every inherited value filled in (what the engine walks).

    ``group_by_all`` is ``group_by: ['...']``; ``repeat_interval`` is already rounded up to
    a multiple of ``group_interval``; ``path`` names the node in the file
    (``route.routes[1]``).
    """

    receiver: str
    group_by: tuple[str, ...]
    group_by_all: bool
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    matchers: tuple[Matcher, ...]
    continue_: bool
    routes: tuple[Route, ...]
    path: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every matcher of this node matches ``labels`` (children not considered)."""
        return all(matcher.matches(labels) for matcher in self.matchers)

    def walk(self) -> Iterator[Route]:
        """This node and its descendants, depth first, in file order."""
        yield self
        for child in self.routes:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """An inhibition rule with its deprecated ``*_match`` maps folded into matchers."""

    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...]
    path: str

    def is_source(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.source_matchers)

    def is_target(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.target_matchers)

    def equal_labels(self, source: Mapping[str, str], target: Mapping[str, str]) -> bool:
        """Missing and empty labels are the same thing, as in Alertmanager."""
        return all(source.get(name, "") == target.get(name, "") for name in self.equal)


@dataclass(frozen=True, slots=True)
class _Context:
    base_dir: Path
    check_files: bool
    #: parse_config reports the cross-field checks itself, with line numbers.
    defer_checks: bool


@dataclass(frozen=True, slots=True)
class _Issue:
    path: tuple[str | int, ...]
    message: str


class AlertingConfig(_Strict):
    """The whole file. Use :attr:`root_route`, :attr:`inhibitions` and :meth:`receiver`."""

    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    route: RouteConfig
    receivers: list[ReceiverConfig]
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)

    _root: Route = PrivateAttr()
    _inhibitions: tuple[InhibitRule, ...] = PrivateAttr(default=())
    _errors: tuple[_Issue, ...] = PrivateAttr(default=())
    _warning_issues: tuple[_Issue, ...] = PrivateAttr(default=())
    _warnings: tuple[str, ...] = PrivateAttr(default=())
    _source: str = PrivateAttr(default="")

    @field_validator("route")
    @classmethod
    def _root_receiver(cls, value: RouteConfig) -> RouteConfig:
        if value.receiver is None:
            raise ValueError("the root route needs a receiver (every alert reaches it)")
        return value

    @model_validator(mode="after")
    def _resolve_and_check(self, info: ValidationInfo) -> AlertingConfig:
        context = info.context if isinstance(info.context, _Context) else None
        self._root = _resolve_route(self.route, None, "route")
        self._inhibitions = tuple(
            InhibitRule(
                source_matchers=(
                    *_legacy_matchers(rule.source_match, rule.source_match_re),
                    *(m for group in rule.source_matchers for m in group),
                ),
                target_matchers=(
                    *_legacy_matchers(rule.target_match, rule.target_match_re),
                    *(m for group in rule.target_matchers for m in group),
                ),
                equal=tuple(rule.equal),
                path=f"inhibit_rules[{index}]",
            )
            for index, rule in enumerate(self.inhibit_rules)
        )
        errors, warnings = _check(self, check_files=context is None or context.check_files)
        self._errors, self._warning_issues = tuple(errors), tuple(warnings)
        self._warnings = tuple(f"{_format_path(i.path)}: {i.message}" for i in warnings)
        if errors and (context is None or not context.defer_checks):
            raise ValueError("; ".join(f"{_format_path(i.path)}: {i.message}" for i in errors))
        return self

    @property
    def root_route(self) -> Route:
        return self._root

    @property
    def inhibitions(self) -> tuple[InhibitRule, ...]:
        return self._inhibitions

    @property
    def warnings(self) -> tuple[str, ...]:
        """Problems that do not stop the configuration (a world-readable token file, a
        repeat_interval rounded up); each names its line when read from a file."""
        return self._warnings

    @property
    def source(self) -> str:
        """The file it was read from ("" for a configuration built in code)."""
        return self._source

    @property
    def receiver_names(self) -> tuple[str, ...]:
        return tuple(receiver.name for receiver in self.receivers)

    def receiver(self, name: str) -> ReceiverConfig:
        for receiver in self.receivers:
            if receiver.name == name:
                return receiver
        raise KeyError(name)


def _resolve_route(node: RouteConfig, parent: Route | None, path: str) -> Route:
    group_by: tuple[str, ...]
    if node.group_by is not None:
        group_by_all = node.group_by == [GROUP_BY_ALL]
        group_by = () if group_by_all else tuple(node.group_by)
    elif parent is not None:
        group_by, group_by_all = parent.group_by, parent.group_by_all
    else:
        group_by, group_by_all = (), False
    group_wait = _pick(
        node.group_wait, parent.group_wait if parent else None, timedelta(seconds=30)
    )
    group_interval = _pick(
        node.group_interval, parent.group_interval if parent else None, timedelta(minutes=5)
    )
    repeat = _pick(
        node.repeat_interval, parent.repeat_interval if parent else None, timedelta(hours=4)
    )
    receiver = node.receiver or (parent.receiver if parent is not None else DEFAULT_RECEIVER)
    this = Route(
        receiver=receiver,
        group_by=group_by,
        group_by_all=group_by_all,
        group_wait=group_wait,
        group_interval=group_interval,
        repeat_interval=_round_up(repeat, group_interval),
        matchers=node.all_matchers,
        continue_=node.continue_,
        routes=(),
        path=path,
    )
    children = tuple(
        _resolve_route(child, this, f"{path}.routes[{index}]")
        for index, child in enumerate(node.routes)
    )
    object.__setattr__(this, "routes", children)
    return this


def _pick(own: timedelta | None, inherited: timedelta | None, default: timedelta) -> timedelta:
    if own is not None:
        return own
    return inherited if inherited is not None else default


def _round_up(repeat: timedelta, interval: timedelta) -> timedelta:
    if interval <= timedelta(0) or repeat <= timedelta(0):
        return repeat
    return interval * math.ceil(repeat / interval)


# --------------------------------------------------------------------------- checks

Loc = tuple[str | int, ...]


def _check(config: AlertingConfig, *, check_files: bool) -> tuple[list[_Issue], list[_Issue]]:
    """The cross-field checks pydantic's per-field validation cannot make."""
    checker = _Checker(config, check_files=check_files)
    checker.receiver_names()
    checker.routes()
    checker.alertmanager_ttl()
    checker.global_settings()
    for index, receiver in enumerate(config.receivers):
        checker.receiver(index, receiver)
    return checker.errors, checker.warnings


class _Checker:
    def __init__(self, config: AlertingConfig, *, check_files: bool) -> None:
        self.config = config
        self.check_files = check_files
        self.errors: list[_Issue] = []
        self.warnings: list[_Issue] = []
        self.first_seen: dict[str, int] = {}
        self.used: set[str] = set()

    def error(self, loc: Loc, message: str) -> None:
        self.errors.append(_Issue(loc, message))

    def warn(self, loc: Loc, message: str) -> None:
        self.warnings.append(_Issue(loc, message))

    def receiver_names(self) -> None:
        for index, name in enumerate(self.config.receiver_names):
            if name in self.first_seen:
                where = f"receivers[{self.first_seen[name]}]"
                self.error(("receivers", index, "name"), f"receiver {name!r} is already {where}")
            self.first_seen.setdefault(name, index)

    def routes(self) -> None:
        root = self.config.route
        if root.all_matchers:
            key = "matchers" if root.matchers else ("match" if root.match else "match_re")
            message = "the root route must not have matchers: every alert enters the tree there"
            self.error(("route", key), message)
        known = ", ".join(self.first_seen) or "none"
        for loc, node, resolved in _route_nodes(root, self.config.root_route, ("route",)):
            if node.receiver is not None:
                self.used.add(node.receiver)
                if node.receiver not in self.first_seen:
                    message = f"unknown receiver {node.receiver!r} (known: {known})"
                    self.error((*loc, "receiver"), message)
            for key in ("group_interval", "repeat_interval"):
                value = getattr(node, key)
                if value is not None and value <= timedelta(0):
                    self.error((*loc, key), "must be greater than 0")
            repeat = node.repeat_interval
            if repeat is not None and repeat > timedelta(0) and resolved.repeat_interval != repeat:
                message = (
                    f"{format_duration(repeat)} is not a multiple of group_interval "
                    f"{format_duration(resolved.group_interval)}; it acts as "
                    f"{format_duration(resolved.repeat_interval)}"
                )
                self.warn((*loc, "repeat_interval"), message)

    def alertmanager_ttl(self) -> None:
        """An Alertmanager resolves an alert without endsAt after its resolve_timeout (5m by
        default); routes that repeat less often need firing_ttl, or the alert flaps there."""
        longest: dict[str, timedelta] = {}
        for route in self.config.root_route.walk():
            cycle = route.repeat_interval + route.group_interval
            longest[route.receiver] = max(cycle, longest.get(route.receiver, timedelta(0)))
        for index, receiver in enumerate(self.config.receivers):
            longest_cycle = longest.get(receiver.name)
            if longest_cycle is None or longest_cycle <= timedelta(minutes=5):
                continue
            for item, alertmanager in enumerate(receiver.alertmanager_configs):
                if alertmanager.firing_ttl is None:
                    message = (
                        "without firing_ttl, firing alerts carry no endsAt and the "
                        "Alertmanager resolves them after its resolve_timeout (5m by "
                        f"default), but routes to {receiver.name!r} re-send only every "
                        f"{format_duration(longest_cycle)}; set firing_ttl: "
                        f"{format_duration(longest_cycle)}"
                    )
                    self.warn(("receivers", index, "alertmanager_configs", item), message)

    def global_settings(self) -> None:
        global_ = self.config.global_
        if global_.resolve_timeout <= timedelta(0):
            self.error(("global", "resolve_timeout"), "must be greater than 0")
        if global_.telegram_bot_token is not None and global_.telegram_bot_token_file is not None:
            message = "give telegram_bot_token or telegram_bot_token_file, not both"
            self.error(("global", "telegram_bot_token"), message)
        if global_.telegram_bot_token_file is not None:
            self.secret_file(global_.telegram_bot_token_file, ("global", "telegram_bot_token_file"))

    def receiver(self, index: int, receiver: ReceiverConfig) -> None:
        loc = ("receivers", index)
        if receiver.name not in self.used and self.first_seen.get(receiver.name) == index:
            self.warn((*loc, "name"), f"receiver {receiver.name!r} is not used by any route")
        for item, telegram in enumerate(receiver.telegram_configs):
            self.telegram((*loc, "telegram_configs", item), telegram)
        for item, webhook in enumerate(receiver.webhook_configs):
            self.webhook((*loc, "webhook_configs", item), webhook)
        for item, alertmanager in enumerate(receiver.alertmanager_configs):
            if alertmanager.firing_ttl is not None and alertmanager.firing_ttl <= timedelta(0):
                loc_ttl = (*loc, "alertmanager_configs", item, "firing_ttl")
                self.error(loc_ttl, "must be greater than 0")

    def telegram(self, here: Loc, telegram: TelegramConfig) -> None:
        global_ = self.config.global_
        has_global_token = (
            global_.telegram_bot_token is not None or global_.telegram_bot_token_file is not None
        )
        if telegram.bot_token is not None and telegram.bot_token_file is not None:
            self.error((*here, "bot_token"), "give bot_token or bot_token_file, not both")
        elif telegram.bot_token is None and telegram.bot_token_file is None:
            if not has_global_token:
                message = "no bot token: set bot_token or bot_token_file (here or in global)"
                self.error(here, message)
        elif telegram.bot_token is not None and not telegram.bot_token.get_secret_value():
            self.error((*here, "bot_token"), "is empty")
        if (telegram.chat_id is None) == (telegram.chat_id_file is None):
            where = here if telegram.chat_id is None else (*here, "chat_id")
            self.error(where, "give exactly one of chat_id or chat_id_file")
        if telegram.bot_token_file is not None:
            self.secret_file(telegram.bot_token_file, (*here, "bot_token_file"))
        if telegram.chat_id_file is not None:
            loc = (*here, "chat_id_file")
            content = self.secret_file(telegram.chat_id_file, loc, secret=False)
            if content is not None and not re.fullmatch(r"-?\d+|@\w+", content):
                self.error(loc, f"{telegram.chat_id_file} does not hold a chat id (an integer)")

    def webhook(self, here: Loc, webhook: WebhookConfig) -> None:
        if (webhook.url is None) == (webhook.url_file is None):
            self.error(here, "give exactly one of url or url_file")
        elif webhook.url_file is not None:
            loc = (*here, "url_file")
            content = self.secret_file(webhook.url_file, loc)
            if content is not None and not re.match(r"^https?://[^/\s]+", content):
                self.error(loc, f"{webhook.url_file} does not hold an http:// or https:// URL")

    def secret_file(self, path: Path, loc: Loc, *, secret: bool = True) -> str | None:
        if not self.check_files:
            return None
        return _check_secret_file(path, loc, self.errors, self.warnings, secret=secret)


def _route_nodes(
    node: RouteConfig, resolved: Route, loc: Loc
) -> Iterator[tuple[Loc, RouteConfig, Route]]:
    yield loc, node, resolved
    for index, (child, child_resolved) in enumerate(zip(node.routes, resolved.routes, strict=True)):
        yield from _route_nodes(child, child_resolved, (*loc, "routes", index))


def _check_secret_file(
    path: Path,
    loc: Loc,
    errors: list[_Issue],
    warnings: list[_Issue],
    *,
    secret: bool = True,
) -> str | None:
    """The stripped content of ``path``, or None after recording why it is unusable."""
    try:
        mode = path.stat().st_mode
        content = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        errors.append(_Issue(loc, f"{path} does not exist"))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(_Issue(loc, f"cannot read {path}: {type(exc).__name__}"))
        return None
    if not stat.S_ISREG(mode):
        errors.append(_Issue(loc, f"{path} is not a regular file"))
        return None
    if not content:
        errors.append(_Issue(loc, f"{path} is empty"))
        return None
    if secret and mode & stat.S_IROTH:
        message = f"{path} is readable by every user (mode {stat.S_IMODE(mode):04o}); chmod 600 it"
        warnings.append(_Issue(loc, message))
    return content


# --------------------------------------------------------------------------- loading


def default_config() -> AlertingConfig:
    """The configuration without a file: every alert goes to the receiver ``default``,
    which has no integrations. Alerts are grouped and visible in the API; nothing is sent
    until a configuration file names a destination."""
    return AlertingConfig.model_validate(
        {"route": {"receiver": DEFAULT_RECEIVER}, "receivers": [{"name": DEFAULT_RECEIVER}]}
    )


def config_from_settings(settings: Settings) -> AlertingConfig:
    """The file named by ``TGFLEET_ALERTING_CONFIG``, or :func:`default_config`.
    ``TGFLEET_ALERTING_TELEGRAM_BOT_TOKEN`` (the environment) is the global bot token
    when the file names none."""
    if settings.alerting_config is None:
        return default_config()
    token = settings.alerting_telegram_bot_token
    return load_config(
        settings.alerting_config,
        default_bot_token=token.get_secret_value() if token is not None else None,
    )


def load_config(
    path: Path, *, check_files: bool = True, default_bot_token: str | None = None
) -> AlertingConfig:
    """Read and validate ``path``. Raises :class:`AlertingConfigError` (one line per
    problem, each with the file, line and field); logs the warnings. It reads files: from
    async code, call it through ``asyncio.to_thread``."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            msg = f"{path}: {size} bytes; the limit is {MAX_CONFIG_BYTES}"
            raise AlertingConfigError([msg])
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AlertingConfigError([f"{path}: cannot read: {exc}"]) from None
    config = parse_config(
        text,
        str(path),
        base_dir=path.resolve().parent,
        check_files=check_files,
        default_bot_token=default_bot_token,
    )
    for warning in config.warnings:
        log.warning("alert.config.warning", problem=warning)
    return config


def parse_config(
    text: str,
    source_name: str = "alerting.yml",
    *,
    base_dir: Path | None = None,
    check_files: bool = True,
    default_bot_token: str | None = None,
) -> AlertingConfig:
    """Validate YAML ``text``; errors read ``{source_name}:{line}: {field}: {problem}``.
    ``default_bot_token`` (from the environment) is ``global.telegram_bot_token`` when the
    file gives neither it nor ``telegram_bot_token_file``.

    ``*_file`` paths are relative to ``base_dir`` (default: the working directory);
    ``check_files=False`` skips reading them (to check a file meant for another host).
    """
    data, lines = _load_yaml(text, source_name)
    if data is None:
        msg = f"{source_name}:1: the file is empty; it needs at least route and receivers"
        raise AlertingConfigError([msg])
    if not isinstance(data, dict):
        raise AlertingConfigError([f"{source_name}:1: the file must be a YAML mapping"])
    if default_bot_token:
        global_ = data.get("global")
        if global_ is None:
            global_ = data["global"] = {}
        if isinstance(global_, dict) and not (
            global_.get("telegram_bot_token") or global_.get("telegram_bot_token_file")
        ):
            global_["telegram_bot_token"] = default_bot_token
    context = _Context(
        base_dir=base_dir if base_dir is not None else Path.cwd(),
        check_files=check_files,
        defer_checks=True,
    )
    try:
        config = AlertingConfig.model_validate(data, context=context)
    except ValidationError as exc:
        raise AlertingConfigError(_describe(exc, data, lines, source_name)) from None
    # The cross-field checks were deferred so that their lines can be named here.
    if config._errors:
        raise AlertingConfigError(_located(config._errors, lines, source_name))
    config._warnings = tuple(_located(config._warning_issues, lines, source_name))
    config._source = source_name
    return config


class _Loader(yaml.SafeLoader):
    """SafeLoader; kit's loader maps the composed nodes to lines and refuses duplicate keys."""


#: Scalars and collections in one alerting configuration.
MAX_NODES = 200_000


def _load_yaml(text: str, source_name: str) -> tuple[Any, dict[Loc, Position]]:
    try:
        document = load(text, max_nodes=MAX_NODES, loader=_Loader, repeatable_keys={"<<"})
    except YamlRefused as exc:
        raise AlertingConfigError([f"{source_name}:{exc.line}: {exc.message}"]) from None
    except DuplicateKeys as exc:
        problems = [
            f"{source_name}:{line}: {_format_path(path)}: duplicate key" for path, line in exc.keys
        ]
        raise AlertingConfigError(problems) from None
    except yaml.MarkedYAMLError as exc:
        # Only the problem and its line: the mark's snippet could show a secret.
        line, what = error_line(exc)
        raise AlertingConfigError([f"{source_name}:{line}: invalid YAML: {what}"]) from None
    except yaml.YAMLError:
        raise AlertingConfigError([f"{source_name}:1: invalid YAML"]) from None
    return document.data, document.positions


def _format_path(path: Loc) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _located(issues: Sequence[_Issue], lines: Mapping[Loc, Position], source: str) -> list[str]:
    ordered = sorted(issues, key=lambda issue: line_of(lines, issue.path))
    return [
        f"{source}:{line_of(lines, i.path)}: {_format_path(i.path)}: {i.message}" for i in ordered
    ]


def _data_path(data: Any, loc: Sequence[str | int]) -> Loc:
    """Pydantic's error location as a path in the data: union and type tags dropped."""
    path: list[str | int] = []
    current = data
    for index, part in enumerate(loc):
        in_dict = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            current = current[part]
            path.append(part)
        elif index == len(loc) - 1 and isinstance(part, str) and not _is_type_tag(part):
            path.append(part)  # a missing or unknown field: named, located at its parent
        # else: a tag pydantic adds for a union member or a validator: not in the data
    return tuple(path)


def _is_type_tag(part: str) -> bool:
    return part.startswith(("function-", "literal[", "union[", "tagged-union[")) or part in {
        "int",
        "str",
        "float",
        "bool",
        "list",
        "dict",
        "tuple",
        "is-instance[SecretStr]",
    }


def _describe(
    error: ValidationError, data: Any, lines: Mapping[Loc, Position], source: str
) -> list[str]:
    problems: list[tuple[int, str]] = []
    for item in error.errors(include_url=False, include_input=False):
        path = _data_path(data, item["loc"])
        kind = item["type"]
        message = str(item["msg"]).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            key = str(path[-1]) if path else ""
            message = _UNSUPPORTED.get(key) or f"unknown field {key!r}"
            if key not in _UNSUPPORTED:
                close = difflib.get_close_matches(key, sorted(_known_fields()), n=1)
                if close:
                    message += f" (did you mean {close[0]!r}?)"
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "literal_error" and path and path[-1] == "parse_mode":
            message = 'must be "HTML" or "" (plain text)'
        line = line_of(lines, path)
        problems.append((line, f"{source}:{line}: {_format_path(path)}: {message}"))
    problems.sort(key=lambda pair: pair[0])
    return list(dict.fromkeys(text for _, text in problems))


def _known_fields() -> set[str]:
    names: set[str] = set()
    for model in (
        AlertingConfig,
        GlobalConfig,
        RouteConfig,
        ReceiverConfig,
        TelegramConfig,
        WebhookConfig,
        AlertmanagerReceiverConfig,
        InhibitRuleConfig,
    ):
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
    return names
