"""Reading the alerting configuration: a file or YAML text in, an :class:`AlertingConfig` or an
:class:`AlertingConfigError` out whose every problem names the file, the line and the field
(``alerting.yml:12: route.routes[0].receiver: unknown receiver 'pager' (known: ops)``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from tgfleet.alert.config._checks import Issue, Loc, format_path
from tgfleet.alert.config._models import (
    AlertingConfig,
    AlertmanagerReceiverConfig,
    GlobalConfig,
    InhibitRuleConfig,
    ReceiverConfig,
    RouteConfig,
    TelegramConfig,
    ValidationContext,
    WebhookConfig,
)
from tgfleet.alert.exceptions import AlertingConfigError
from tgfleet.alert.routing import DEFAULT_RECEIVER
from tgfleet.config import Settings
from tgfleet.kit.yaml_guard import (
    DuplicateKeys,
    Position,
    YamlRefused,
    closest_key,
    error_line,
    line_of,
    load,
)
from tgfleet.logging import get_logger

log = get_logger(__name__)

MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024
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
    context = ValidationContext(
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
            f"{source_name}:{line}: {format_path(path)}: duplicate key" for path, line in exc.keys
        ]
        raise AlertingConfigError(problems) from None
    except yaml.MarkedYAMLError as exc:
        # Only the problem and its line: the mark's snippet could show a secret.
        line, what = error_line(exc)
        raise AlertingConfigError([f"{source_name}:{line}: invalid YAML: {what}"]) from None
    except yaml.YAMLError:
        raise AlertingConfigError([f"{source_name}:1: invalid YAML"]) from None
    return document.data, document.positions


def _located(issues: Sequence[Issue], lines: Mapping[Loc, Position], source: str) -> list[str]:
    ordered = sorted(issues, key=lambda issue: line_of(lines, issue.path))
    return [
        f"{source}:{line_of(lines, i.path)}: {format_path(i.path)}: {i.message}" for i in ordered
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
                close = closest_key(key, _MODELS)
                if close:
                    message += f" (did you mean {close!r}?)"
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "literal_error" and path and path[-1] == "parse_mode":
            message = 'must be "HTML" or "" (plain text)'
        line = line_of(lines, path)
        problems.append((line, f"{source}:{line}: {format_path(path)}: {message}"))
    problems.sort(key=lambda pair: pair[0])
    return list(dict.fromkeys(text for _, text in problems))


#: Whose fields an unknown key may have meant.
_MODELS: Final = (
    AlertingConfig,
    GlobalConfig,
    RouteConfig,
    ReceiverConfig,
    TelegramConfig,
    WebhookConfig,
    AlertmanagerReceiverConfig,
    InhibitRuleConfig,
)
