"""What the reply engine decided for one message and one account: an :class:`Outcome`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tgfleet.playbook.compiler import CompiledRule
from tgfleet.playbook.gate import Ticket

Reason = Literal[
    "fired",
    "no_rule_matched",
    "from_fleet",
    "condition:group",
    "condition:time_window",
    "limit:min_interval",
    "limit:account_hourly",
    "limit:group_hourly",
    "probability",
    "claimed_by_other",
    "duplicate",
    "limit_unavailable",
    "template_error",
    "llm_failed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """One decision; by default nothing is sent (``fired`` False, no text)."""

    fired: bool = False  # True: send ``text``
    rule: str | None = None  # the rule that matched (also when suppressed)
    text: str | None = None
    source: str | None = None  # "template" | "llm" | "fallback"
    reason: str  # why not fired, or "fired"
    fallback_reason: str | None = None  # "llm_timeout", "llm_http_503", "llm_unreachable", ...
    typing_seconds: float = 0.0
    detail: str | None = None  # human text for dry runs and events (never secrets)
    #: The gate's reservation of a fired reply: give it back (``ReplyEngine.release``)
    #: when the reply is not sent after all.
    ticket: Ticket | None = None


def quiet(reason: str, rule: CompiledRule | None = None, detail: str | None = None) -> Outcome:
    """Nothing is sent, because of ``reason``."""
    return Outcome(rule=rule.name if rule else None, reason=reason, detail=detail)


def fire(
    rule: CompiledRule, text: str, source: str, detail: str, fallback_reason: str | None = None
) -> Outcome:
    """``rule`` answers with ``text``."""
    return Outcome(
        fired=True,
        rule=rule.name,
        text=text,
        source=source,
        reason="fired",
        fallback_reason=fallback_reason,
        typing_seconds=rule.typing_seconds,
        detail=detail,
    )
