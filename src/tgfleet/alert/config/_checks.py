"""The alerting configuration's cross-field checks, which pydantic's per-field validation
cannot make: receivers named once and used, routes that name known receivers, one of a pair
of fields given, ``*_file`` secrets that exist and are private. Each problem is an
:class:`Issue` at a path in the file, so that the loader can name its line."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from tgfleet.alert.durations import format_duration
from tgfleet.kit import yaml_guard

if TYPE_CHECKING:
    from tgfleet.alert.config._models import (
        AlertingConfig,
        ReceiverConfig,
        RouteConfig,
        TelegramConfig,
        WebhookConfig,
    )
    from tgfleet.alert.routing import Route

#: A place in the file: keys and list indexes from the top.
Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Issue:
    """A problem (an error or a warning) at ``path``."""

    path: Loc
    message: str


def format_path(path: Loc) -> str:
    """``route.routes[0].receiver``; ``(top level)`` for the empty path."""
    return yaml_guard.format_path(path) or "(top level)"


def check(config: AlertingConfig, *, check_files: bool) -> tuple[list[Issue], list[Issue]]:
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
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []
        self.first_seen: dict[str, int] = {}
        self.used: set[str] = set()

    def error(self, loc: Loc, message: str) -> None:
        self.errors.append(Issue(loc, message))

    def warn(self, loc: Loc, message: str) -> None:
        self.warnings.append(Issue(loc, message))

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
    errors: list[Issue],
    warnings: list[Issue],
    *,
    secret: bool = True,
) -> str | None:
    """The stripped content of ``path``, or None after recording why it is unusable."""
    try:
        mode = path.stat().st_mode
        content = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        errors.append(Issue(loc, f"{path} does not exist"))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(Issue(loc, f"cannot read {path}: {type(exc).__name__}"))
        return None
    if not stat.S_ISREG(mode):
        errors.append(Issue(loc, f"{path} is not a regular file"))
        return None
    if not content:
        errors.append(Issue(loc, f"{path} is empty"))
        return None
    if secret and mode & stat.S_IROTH:
        message = f"{path} is readable by every user (mode {stat.S_IMODE(mode):04o}); chmod 600 it"
        warnings.append(Issue(loc, message))
    return content
