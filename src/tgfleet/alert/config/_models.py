"""The alerting configuration's models, one per section of ``alertmanager.yml`` as written
(:class:`AlertingConfig` at the top), with their per-field validation; the cross-field checks
are in :mod:`._checks`, reading a file in :mod:`._loading`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tgfleet.alert.config._checks import Issue, check, format_path
from tgfleet.alert.durations import Duration
from tgfleet.alert.matchers import (
    LabelName,
    Matcher,
    MatcherItem,
    check_label_name,
    check_regex_map,
    legacy_matchers,
)
from tgfleet.alert.routing import (
    GROUP_BY_ALL,
    InhibitRule,
    Route,
    resolve_inhibitions,
    resolve_route,
)
from tgfleet.alert.templates import check_message_template

DEFAULT_TELEGRAM_API_URL: Final = "https://api.telegram.org"


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
    context = info.context if isinstance(info.context, ValidationContext) else None
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
        return check_message_template(value)


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
    match_re: Annotated[dict[LabelName, str], BeforeValidator(check_regex_map)] = Field(
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
                check_label_name(name)
            if name in seen:
                raise ValueError(f"{name!r} is listed twice")
            seen.add(name)
        return value

    @property
    def all_matchers(self) -> tuple[Matcher, ...]:
        listed = tuple(m for group in self.matchers for m in group)
        return (*legacy_matchers(self.match, self.match_re), *listed)


class InhibitRuleConfig(_Strict):
    source_matchers: list[MatcherItem] = Field(default_factory=list)
    target_matchers: list[MatcherItem] = Field(default_factory=list)
    source_match: dict[LabelName, str] = Field(default_factory=dict)
    source_match_re: Annotated[dict[LabelName, str], BeforeValidator(check_regex_map)] = Field(
        default_factory=dict
    )
    target_match: dict[LabelName, str] = Field(default_factory=dict)
    target_match_re: Annotated[dict[LabelName, str], BeforeValidator(check_regex_map)] = Field(
        default_factory=dict
    )
    equal: list[LabelName] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ValidationContext:
    """How :func:`tgfleet.alert.config.parse_config` validates: where ``*_file`` paths are
    relative to, whether to read them."""

    base_dir: Path
    check_files: bool
    #: parse_config reports the cross-field checks itself, with line numbers.
    defer_checks: bool


class AlertingConfig(_Strict):
    """The whole file. Use :attr:`root_route`, :attr:`inhibitions` and :meth:`receiver`."""

    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    route: RouteConfig
    receivers: list[ReceiverConfig]
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)

    _root: Route = PrivateAttr()
    _inhibitions: tuple[InhibitRule, ...] = PrivateAttr(default=())
    _errors: tuple[Issue, ...] = PrivateAttr(default=())
    _warning_issues: tuple[Issue, ...] = PrivateAttr(default=())
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
        context = info.context if isinstance(info.context, ValidationContext) else None
        self._root = resolve_route(self.route)
        self._inhibitions = resolve_inhibitions(self.inhibit_rules)
        errors, warnings = check(self, check_files=context is None or context.check_files)
        self._errors, self._warning_issues = tuple(errors), tuple(warnings)
        self._warnings = tuple(f"{format_path(i.path)}: {i.message}" for i in warnings)
        if errors and (context is None or not context.defer_checks):
            raise ValueError("; ".join(f"{format_path(i.path)}: {i.message}" for i in errors))
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
