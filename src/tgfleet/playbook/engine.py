"""The reply engine: the decision whether and what one account replies to one message.

``ReplyEngine.respond`` evaluates one message for one account under a compiled playbook
(:mod:`tgfleet.playbook.compiler`): rules in order, the first whose trigger and conditions
match decides; then the reply gate (:mod:`tgfleet.playbook.gate`: the fleet's own accounts,
one responder, the limits; budget reserved before the reply is made and given back when
nothing is sent), then the reply from a template (:mod:`tgfleet.playbook.rendering`) or from
an OpenAI-compatible model with a fallback template (:mod:`tgfleet.playbook.llm`).

One engine per worker process, safe under one asyncio event loop. Its gate is in memory for
one process (:class:`~tgfleet.playbook.gate.LocalGate`) or shared through PostgreSQL when
several workers serve one fleet (``tgfleet.worker.reply_gate.FleetGate``).

The engine's callers (the worker, the dry run) import what they pass in and get back from
here too: ``Message``, ``AccountInfo``, ``LlmConfig``, ``CompiledPlaybook``,
``compile_playbook`` and ``Outcome``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from jinja2 import Template

from tgfleet.logging import get_logger
from tgfleet.playbook._bounds import TemplateLimitExceeded
from tgfleet.playbook.compiler import CompiledPlaybook, CompiledRule, compile_playbook
from tgfleet.playbook.gate import LocalGate, ReplyGate, ReplyRequest, Ticket
from tgfleet.playbook.llm import LlmClient, LlmConfig, LlmFailed
from tgfleet.playbook.message import AccountInfo, Message
from tgfleet.playbook.outcome import Outcome, fire, quiet
from tgfleet.playbook.rendering import describe, render_text, variables

__all__ = [
    "AccountInfo",
    "CompiledPlaybook",
    "LlmConfig",
    "Message",
    "Outcome",
    "ReplyEngine",
    "compile_playbook",
]

log = get_logger(__name__)


class ReplyEngine:
    """Decides replies for every account of one worker process (see the module docstring)."""

    def __init__(
        self,
        llm: LlmConfig | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        gate: ReplyGate | None = None,
    ) -> None:
        self._llm = LlmClient(llm)
        # Reply probability and template choice are not security decisions.
        self._rng = rng or random.Random()  # noqa: S311
        # Large regexes match here: a thread cannot be stopped, but RE2 releases the GIL, so
        # a slow match delays only its own message, never the event loop.
        self._matcher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tgfleet-match")
        self.gate: ReplyGate = gate if gate is not None else LocalGate(clock=clock)

    async def respond(
        self,
        playbook: CompiledPlaybook,
        message: Message,
        account: AccountInfo,
        *,
        apply_limits: bool = True,
    ) -> Outcome:
        """Whether ``account`` replies to ``message`` under ``playbook``, and with what.

        ``apply_limits=False`` (the dry run) skips rate limits, probability and claims and
        changes no state.
        """
        if apply_limits:
            self.gate.remember_fleet_member(account.tg_user_id)
            if self.gate.is_fleet_member(message.sender_id):
                return quiet("from_fleet", detail="the sender is an account of this fleet")
        if playbook.match_off_loop:
            decide = asyncio.get_running_loop().run_in_executor(
                self._matcher, self._decide, playbook, message
            )
            rule, trigger, skipped = await decide
        else:
            rule, trigger, skipped = self._decide(playbook, message)
        if rule is None:
            if skipped is not None:
                return skipped
            return quiet("no_rule_matched", detail="no rule's trigger matched the message")
        ticket = None
        if apply_limits:
            probability = rule.limits.probability
            if probability < 1.0 and self._rng.random() >= probability:
                return quiet("probability", rule, f"skipped by chance (p={probability})")
            admission = await self.gate.admit(
                ReplyRequest(
                    message_key=message.dedupe_key,
                    account_key=(
                        str(account.id) if account.id is not None else f"label:{account.label}"
                    ),
                    account_id=account.id,
                    chat_id=message.chat_id,
                    sender_id=message.sender_id,
                    limits=rule.limits,
                    responders=rule.responders,
                )
            )
            if not admission.admitted:
                return quiet(admission.reason, rule, admission.detail)
            ticket = admission.ticket
        outcome = await self._reply(rule, trigger, message, account)
        if ticket is not None and not outcome.fired:
            await self.release(ticket)
            ticket = None
        return replace(outcome, ticket=ticket) if ticket is not None else outcome

    async def release(self, ticket: Ticket, *, keep_claim: bool = False) -> None:
        """Give a fired reply's reservation back: it was not sent."""
        try:
            await self.gate.release(ticket, keep_claim=keep_claim)
        except Exception as exc:  # noqa: BLE001 - a lost release only costs budget
            log.warning("playbook.release_failed", error=type(exc).__name__)

    async def aclose(self) -> None:
        self._matcher.shutdown(wait=False, cancel_futures=True)
        await self._llm.aclose()

    # -- deciding --

    def _decide(
        self, playbook: CompiledPlaybook, message: Message
    ) -> tuple[CompiledRule | None, str, Outcome | None]:
        first_skip: Outcome | None = None
        for rule in playbook.rules:
            trigger = rule.trigger(message)
            if trigger is None:
                continue
            if rule.groups is not None and message.chat_id not in rule.groups:
                first_skip = first_skip or quiet(
                    "condition:group",
                    rule,
                    f"rule {rule.name!r} (line {rule.line}) matched by {trigger}, "
                    f"but chat {message.chat_id} is not in its groups",
                )
                continue
            if rule.time_window is not None and not rule.time_window.contains(message.at):
                first_skip = first_skip or quiet(
                    "condition:time_window",
                    rule,
                    f"rule {rule.name!r} (line {rule.line}) matched by {trigger}, "
                    f"but {message.at.isoformat()} is outside its time window",
                )
                continue
            return rule, trigger, None
        return None, "", first_skip

    # -- replying --

    async def _reply(
        self, rule: CompiledRule, trigger: str, message: Message, account: AccountInfo
    ) -> Outcome:
        values = variables(message, account)
        matched = f"rule {rule.name!r} (line {rule.line}) matched by {trigger}"
        if rule.llm is None:
            chosen = self._rng.choice(rule.templates)
            return _rendered(rule, chosen, values, "template", None, matched)
        try:
            text = await self._llm.ask(rule.llm, values, message.text)
        except LlmFailed as failure:
            log.warning("playbook.llm_failed", rule=rule.name, reason=failure.reason)
            detail = f"{matched}; {failure.detail}"
            if rule.llm.fallback is None:
                return Outcome(
                    rule=rule.name,
                    reason="llm_failed",
                    fallback_reason=failure.reason,
                    detail=f"{detail}; the rule has no fallback",
                )
            return _rendered(rule, rule.llm.fallback, values, "fallback", failure.reason, detail)
        return fire(rule, text, "llm", matched)


def _rendered(
    rule: CompiledRule,
    template: Template,
    values: dict[str, Any],
    source: str,
    fallback_reason: str | None,
    detail: str,
) -> Outcome:
    try:
        text = render_text(template, values)
    except Exception as exc:  # noqa: BLE001 - a template may fail in any way; never crash
        # The error's text may quote the message; the log names the rule and the bound.
        log.warning(
            "playbook.template_failed",
            rule=rule.name,
            error=type(exc).__name__,
            limit=exc.limit if isinstance(exc, TemplateLimitExceeded) else None,
        )
        problem = f"the template failed: {describe(exc)}"
    else:
        if text:
            return fire(rule, text, source, detail, fallback_reason)
        problem = "the template rendered an empty text"
    return Outcome(
        rule=rule.name,
        source=source,
        reason="template_error",
        fallback_reason=fallback_reason,
        detail=f"{detail}; {problem}",
    )
