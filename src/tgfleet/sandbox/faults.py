"""Injected RPC failures: which calls of which account, group or method fail, and how.

A `FaultRegistry` holds `FaultRule` s and implements ``ports.FaultPolicy``: the dispatcher
asks ``before_call(account_id, method, group_id)`` before running a request and, when a rule
matches, answers with the rule's ``(code, message)`` instead. Rules are checked oldest
first; a rule with a ``remaining`` count is consumed by each call it fails and disappears at
zero, a rule without one stays until cleared.

Only RPC-level faults live here. Connection-level faults (drop every connection of an
account, refuse new ones for a while, added latency) are knobs on ``SandboxServer`` that the
control API turns directly.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Literal, get_args

from tgfleet.exceptions import InvalidInput

FaultKind = Literal[
    "flood_wait",
    "frozen",
    "auth_key_unregistered",
    "session_revoked",
    "user_deactivated_ban",
    "chat_write_forbidden",
    "slowmode_wait",
]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
SEND_MESSAGE = "messages.SendMessageRequest"


def normalize_method(name: str) -> str:
    """Compare method names loosely: ``messages.sendMessage`` matches
    ``messages.SendMessageRequest`` (the name ``mtproto.method_name`` gives)."""
    key = name.strip().lower()
    return key.removesuffix("request")


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One injected failure. ``None`` in a scope field means "any"; ``remaining`` None means
    the rule applies from now on until cleared."""

    id: int
    kind: FaultKind
    code: int
    message: str
    account_id: int | None = None
    group_id: int | None = None
    method: str | None = None
    remaining: int | None = None

    def matches(self, account_id: int, method: str, group_id: int | None) -> bool:
        if self.account_id is not None and self.account_id != account_id:
            return False
        if self.group_id is not None and self.group_id != group_id:
            return False
        return self.method is None or normalize_method(self.method) == normalize_method(method)


class FaultRegistry:
    """The live fault rules of one sandbox (one event loop; not thread-safe)."""

    def __init__(self) -> None:
        self._rules: dict[int, FaultRule] = {}
        self._ids = itertools.count(1)

    # ---- ports.FaultPolicy

    def before_call(
        self, account_id: int, method: str, group_id: int | None
    ) -> tuple[int, str] | None:
        """The error the first matching rule dictates (consuming one of its count), or None."""
        for rule in self._rules.values():
            if not rule.matches(account_id, method, group_id):
                continue
            if rule.remaining is not None:
                if rule.remaining <= 1:
                    del self._rules[rule.id]
                else:
                    self._rules[rule.id] = replace(rule, remaining=rule.remaining - 1)
            return rule.code, rule.message
        return None

    # ---- managing rules

    def add(
        self,
        kind: FaultKind,
        code: int,
        message: str,
        *,
        account: int | None = None,
        group: int | None = None,
        method: str | None = None,
        count: int | None = None,
    ) -> FaultRule:
        """Add a rule and return it; ``count`` must be positive when given."""
        if count is not None and count < 1:
            raise InvalidInput(f"count must be at least 1, got {count}")
        rule = FaultRule(
            id=next(self._ids),
            kind=kind,
            code=code,
            message=message,
            account_id=account,
            group_id=group,
            method=method,
            remaining=count,
        )
        self._rules[rule.id] = rule
        return rule

    def rules(self) -> list[FaultRule]:
        """The live rules, oldest first."""
        return list(self._rules.values())

    def clear(self, rule_id: int | None = None) -> int:
        """Remove one rule (``rule_id``) or all of them; return how many were removed."""
        if rule_id is None:
            removed = len(self._rules)
            self._rules.clear()
            return removed
        return 1 if self._rules.pop(rule_id, None) is not None else 0

    # ---- the faults

    def flood_wait(
        self,
        seconds: int,
        *,
        account: int | None = None,
        method: str | None = None,
        group: int | None = None,
        count: int | None = 1,
    ) -> FaultRule:
        """``420 FLOOD_WAIT_<seconds>`` for the next ``count`` matching calls."""
        _require_seconds(seconds)
        return self.add(
            "flood_wait",
            420,
            f"FLOOD_WAIT_{seconds}",
            account=account,
            group=group,
            method=method,
            count=count,
        )

    def frozen(self, account: int, *, method: str | None = None) -> FaultRule:
        """A 420 without seconds (a frozen account), from now on."""
        return self.add("frozen", 420, "FROZEN_METHOD_INVALID", account=account, method=method)

    def auth_key_unregistered(self, account: int) -> FaultRule:
        """``401 AUTH_KEY_UNREGISTERED`` for every call, from now on."""
        return self.add("auth_key_unregistered", 401, "AUTH_KEY_UNREGISTERED", account=account)

    def session_revoked(self, account: int) -> FaultRule:
        """``401 SESSION_REVOKED`` for every call, from now on."""
        return self.add("session_revoked", 401, "SESSION_REVOKED", account=account)

    def user_deactivated_ban(self, account: int) -> FaultRule:
        """``401 USER_DEACTIVATED_BAN`` for every call, from now on."""
        return self.add("user_deactivated_ban", 401, "USER_DEACTIVATED_BAN", account=account)

    def chat_write_forbidden(
        self, account: int | None, group: int, *, count: int | None = None
    ) -> FaultRule:
        """``403 CHAT_WRITE_FORBIDDEN`` for sendMessage in ``group``."""
        return self.add(
            "chat_write_forbidden",
            403,
            "CHAT_WRITE_FORBIDDEN",
            account=account,
            group=group,
            method=SEND_MESSAGE,
            count=count,
        )

    def slowmode_wait(
        self, seconds: int, account: int | None, group: int, *, count: int | None = 1
    ) -> FaultRule:
        """``420 SLOWMODE_WAIT_<seconds>`` for sendMessage in ``group``."""
        _require_seconds(seconds)
        return self.add(
            "slowmode_wait",
            420,
            f"SLOWMODE_WAIT_{seconds}",
            account=account,
            group=group,
            method=SEND_MESSAGE,
            count=count,
        )


def _require_seconds(seconds: int) -> None:
    if seconds < 1:
        raise InvalidInput(f"seconds must be at least 1, got {seconds}")
