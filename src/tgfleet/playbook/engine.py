"""The reply engine: compiled playbooks, and the decision whether and what to reply.

``compile_playbook`` turns YAML into an immutable ``CompiledPlaybook`` (regexes and Jinja
templates compiled once). ``ReplyEngine.respond`` evaluates one message for one account:
rules in order, the first whose trigger and conditions match decides; then the reply gate
(:mod:`tgfleet.playbook.gate`: the fleet's own accounts, one responder, the limits; budget
reserved before the reply is made and given back when nothing is sent), then the reply from
a template or from an OpenAI-compatible model with a fallback template.

One engine per worker process, safe under one asyncio event loop. Its gate is in memory for
one process (:class:`~tgfleet.playbook.gate.LocalGate`) or shared through PostgreSQL when
several workers serve one fleet (``tgfleet.worker.reply_gate.FleetGate``).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from datetime import time as clock_time
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import openai
from jinja2 import Template, TemplateSyntaxError, meta

from tgfleet import metrics
from tgfleet.logging import get_logger
from tgfleet.playbook._regex import (
    OFF_LOOP_PROGRAM_SIZE,
    Pattern,
    compile_regex,
    keywords_pattern,
)
from tgfleet.playbook._sandbox import (
    ENVIRONMENT,
    LiteralLimitExceeded,
    TemplateLimitExceeded,
    compile_template,
    render,
)
from tgfleet.playbook.document import (
    DAYS,
    MAX_MESSAGE_CHARS,
    LimitsSpec,
    Located,
    Path,
    RuleSpec,
    line_of,
    parse,
    text_line,
)
from tgfleet.playbook.exceptions import PlaybookInvalid
from tgfleet.playbook.gate import Limits, LocalGate, ReplyGate, ReplyRequest, Ticket

if TYPE_CHECKING:
    from tgfleet.config import Settings

log = get_logger(__name__)

TEMPLATE_VARIABLES = frozenset({"message", "sender", "group", "account"})

# Built-in limits under the playbook's ``defaults.limits``.
BUILTIN_LIMITS = LimitsSpec(
    min_interval_seconds=30.0, account_hourly=30, group_hourly=20, probability=1.0
)


# --- What the worker passes in ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    text: str
    chat_id: int  # Telethon marked id
    chat_title: str
    message_id: int
    sender_id: int | None
    sender_username: str | None
    sender_first_name: str
    sender_last_name: str | None
    at: datetime  # aware UTC
    dedupe_key: str  # the same for every fleet account that sees this one message
    reply_to_account: bool = False
    mentions_account: bool = False
    new_member: bool = False


@dataclass(frozen=True, slots=True)
class AccountInfo:
    id: uuid.UUID | None
    label: str
    username: str | None
    first_name: str | None
    tg_user_id: int | None


@dataclass(frozen=True, slots=True)
class LlmConfig:
    """Where the model lives. The key is only sent to ``base_url`` (never to a playbook's
    own ``base_url`` override) and never appears in a repr, log or error."""

    base_url: str
    model: str | None
    timeout_seconds: float
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> LlmConfig | None:
        if not settings.llm_base_url:
            return None
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return cls(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            timeout_seconds=settings.llm_timeout_seconds,
            api_key=key,
        )


# --- The compiled form ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeWindow:
    opens: clock_time
    closes: clock_time
    zone: ZoneInfo
    days: frozenset[int]  # 0 = Monday

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone)
        now = local.time().replace(tzinfo=None)
        weekday = local.weekday()
        if self.opens < self.closes:
            return self.opens <= now < self.closes and weekday in self.days
        # Across midnight: the late part belongs to the day the window opened.
        if now >= self.opens:
            return weekday in self.days
        if now < self.closes:
            return (weekday - 1) % 7 in self.days
        return False


@dataclass(frozen=True, slots=True)
class LlmReply:
    system_prompt: Template
    model: str | None
    base_url: str | None
    max_tokens: int
    timeout_seconds: float | None
    fallback: Template | None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    line: int
    keywords: Pattern | None  # group 1 is the keyword found
    regex: Pattern | None
    mention: bool
    reply_to_me: bool
    new_member: bool
    min_length: int | None
    groups: frozenset[int] | None
    time_window: TimeWindow | None
    templates: tuple[Template, ...]
    llm: LlmReply | None
    limits: Limits
    typing_seconds: float
    responders: Literal["one", "all"]

    def trigger(self, message: Message) -> str | None:
        """Which trigger matches ``message`` (for the dry run's detail), or None."""
        if self.new_member and message.new_member:
            return "new_member"
        if self.mention and message.mentions_account:
            return "mention"
        if self.reply_to_me and message.reply_to_account:
            return "reply_to_me"
        if self.keywords is not None:
            found = self.keywords.search(message.text)
            if found:
                return f"keyword {found.group(1).lower()!r}"
        if self.regex is not None and self.regex.search(message.text):
            return "regex"
        if self.min_length is not None and len(message.text) >= self.min_length:
            return f"min_length {self.min_length}"
        return None


@dataclass(frozen=True, slots=True)
class CompiledPlaybook:
    """Immutable; built once per (playbook id, version) and shared by every account."""

    name: str
    version: int
    description: str
    rules: tuple[CompiledRule, ...]
    #: A regex large enough to take milliseconds: match in a thread (see ``_regex``).
    match_off_loop: bool = False

    def rule_named(self, name: str) -> CompiledRule | None:
        return next((rule for rule in self.rules if rule.name == name), None)


_ALLOWED_NAMES = TEMPLATE_VARIABLES | frozenset(ENVIRONMENT.globals)
_EMPTY_TEMPLATE = ENVIRONMENT.from_string("")


def _merge(*levels: LimitsSpec) -> Limits:
    values: dict[str, Any] = {}
    for level in levels:
        values.update(level.model_dump(exclude_none=True))
    return Limits(**values)


def compile_playbook(source: str, *, name: str = "", version: int = 0) -> CompiledPlaybook:
    """Validate and compile ``source``. Raises ``PlaybookInvalid`` (422) naming every
    problem's line and field; a template syntax error names the template's own line."""
    parsed = parse(source)
    spec, lines = parsed.spec, parsed.lines
    problems: list[tuple[int, str]] = []

    def template(text: str, path: Path) -> Template:
        def problem(line_in_text: int, message: str) -> Template:
            line = text_line(lines, path, line_in_text)
            problems.append((line, f"line {line}, {_format(path)}: {message}"))
            return _EMPTY_TEMPLATE

        try:
            tree, compiled = compile_template(text)
        except TemplateSyntaxError as exc:
            return problem(exc.lineno, f"template syntax error: {exc.message}")
        except LiteralLimitExceeded as exc:
            return problem(exc.lineno, f"template over a limit: {exc.message}")
        except RecursionError:
            return problem(1, "the template is nested too deeply")
        unknown = sorted(meta.find_undeclared_variables(tree) - _ALLOWED_NAMES)
        if unknown:
            allowed = ", ".join(sorted(TEMPLATE_VARIABLES))
            return problem(1, f"unknown template variable {unknown[0]!r} (available: {allowed})")
        return compiled

    defaults = spec.defaults
    base_limits = _merge(BUILTIN_LIMITS, defaults.limits)
    rules: list[CompiledRule] = []
    for index, rule in enumerate(spec.rules):
        where: Path = ("rules", index)
        rules.append(_compile_rule(rule, where, lines, template, base_limits, defaults))
    if problems:
        problems.sort(key=lambda pair: pair[0])
        raise PlaybookInvalid([text for _, text in problems])
    return CompiledPlaybook(
        name=name,
        version=version,
        description=spec.description,
        rules=tuple(rules),
        match_off_loop=any(
            rule.regex is not None and rule.regex.programsize > OFF_LOOP_PROGRAM_SIZE
            for rule in rules
        ),
    )


def _compile_rule(
    rule: RuleSpec,
    where: Path,
    lines: Mapping[Path, Located],
    template: Callable[[str, Path], Template],
    base_limits: Limits,
    defaults: Any,
) -> CompiledRule:
    when = rule.when
    keywords = keywords_pattern(when.keywords) if when.keywords else None
    window = rule.conditions.time_window
    compiled_window = (
        TimeWindow(
            opens=window.opens,
            closes=window.closes,
            zone=ZoneInfo(window.timezone),
            days=frozenset(DAYS.index(day) for day in window.days),
        )
        if window is not None
        else None
    )
    reply = rule.reply
    templates = tuple(
        template(text, (*where, "reply", "templates", position))
        for position, text in enumerate(reply.templates or ())
    )
    llm = None
    if reply.llm is not None:
        spec = reply.llm
        llm_path = (*where, "reply", "llm")
        llm = LlmReply(
            system_prompt=template(spec.system_prompt, (*llm_path, "system_prompt")),
            model=spec.model,
            base_url=spec.base_url,
            max_tokens=spec.max_tokens,
            timeout_seconds=spec.timeout_seconds,
            fallback=(
                template(spec.fallback, (*llm_path, "fallback"))
                if spec.fallback is not None
                else None
            ),
        )
    merged = {**base_limits.as_dict(), **rule.limits.model_dump(exclude_none=True)}
    return CompiledRule(
        name=rule.name,
        line=line_of(dict(lines), where),
        keywords=keywords,
        regex=compile_regex(when.regex) if when.regex else None,
        mention=when.mention,
        reply_to_me=when.reply_to_me,
        new_member=when.new_member,
        min_length=when.min_length,
        groups=frozenset(rule.conditions.groups) if rule.conditions.groups else None,
        time_window=compiled_window,
        templates=templates,
        llm=llm,
        limits=Limits(**merged),
        typing_seconds=(
            rule.typing_seconds if rule.typing_seconds is not None else defaults.typing_seconds
        ),
        responders=rule.responders or defaults.responders,
    )


def _format(path: Path) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


# --- Outcomes ---------------------------------------------------------------------------------

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


@dataclass(frozen=True, slots=True)
class Outcome:
    fired: bool  # True: send ``text``
    rule: str | None  # the rule that matched (also when suppressed)
    text: str | None
    source: str | None  # "template" | "llm" | "fallback"
    reason: str  # why not fired, or "fired"
    fallback_reason: str | None  # "llm_timeout", "llm_http_503", "llm_unreachable", ...
    typing_seconds: float
    detail: str | None = None  # human text for dry runs and events (never secrets)
    #: The gate's reservation of a fired reply: give it back (``ReplyEngine.release``)
    #: when the reply is not sent after all.
    ticket: Ticket | None = None


def _quiet(reason: str, rule: CompiledRule | None = None, detail: str | None = None) -> Outcome:
    return Outcome(
        fired=False,
        rule=rule.name if rule else None,
        text=None,
        source=None,
        reason=reason,
        fallback_reason=None,
        typing_seconds=0.0,
        detail=detail,
    )


# --- The engine -------------------------------------------------------------------------------


class _LlmFailed(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


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
        self._llm = llm
        # Reply probability and template choice are not security decisions.
        self._rng = rng or random.Random()  # noqa: S311
        self._clients: dict[str, openai.AsyncOpenAI] = {}
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
                return _quiet("from_fleet", detail="the sender is an account of this fleet")
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
            return _quiet("no_rule_matched", detail="no rule's trigger matched the message")
        ticket = None
        if apply_limits:
            probability = rule.limits.probability
            if probability < 1.0 and self._rng.random() >= probability:
                return _quiet("probability", rule, f"skipped by chance (p={probability})")
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
                return _quiet(admission.reason, rule, admission.detail)
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
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

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
                first_skip = first_skip or _quiet(
                    "condition:group",
                    rule,
                    f"rule {rule.name!r} (line {rule.line}) matched by {trigger}, "
                    f"but chat {message.chat_id} is not in its groups",
                )
                continue
            if rule.time_window is not None and not rule.time_window.contains(message.at):
                first_skip = first_skip or _quiet(
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
        variables = _variables(message, account)
        matched = f"rule {rule.name!r} (line {rule.line}) matched by {trigger}"
        if rule.llm is None:
            chosen = self._rng.choice(rule.templates)
            return _rendered(rule, chosen, variables, "template", None, matched)
        try:
            text = await self._ask(rule.llm, variables, message)
        except _LlmFailed as failure:
            log.warning("playbook.llm_failed", rule=rule.name, reason=failure.reason)
            if rule.llm.fallback is None:
                return Outcome(
                    fired=False,
                    rule=rule.name,
                    text=None,
                    source=None,
                    reason="llm_failed",
                    fallback_reason=failure.reason,
                    typing_seconds=0.0,
                    detail=f"{matched}; {failure.detail}; the rule has no fallback",
                )
            return _rendered(
                rule,
                rule.llm.fallback,
                variables,
                "fallback",
                failure.reason,
                f"{matched}; {failure.detail}",
            )
        return Outcome(
            fired=True,
            rule=rule.name,
            text=text,
            source="llm",
            reason="fired",
            fallback_reason=None,
            typing_seconds=rule.typing_seconds,
            detail=matched,
        )

    async def _ask(self, spec: LlmReply, variables: dict[str, Any], message: Message) -> str:
        if self._llm is None:
            raise _LlmFailed("llm_not_configured", "no LLM is configured (TGFLEET_LLM_BASE_URL)")
        model = spec.model or self._llm.model
        if not model:
            raise _LlmFailed("llm_not_configured", "no model: set llm.model or TGFLEET_LLM_MODEL")
        try:
            system = _render_text(spec.system_prompt, variables)
        except Exception as exc:  # noqa: BLE001 - any template failure means "do not ask"
            raise _LlmFailed("llm_prompt_error", f"system prompt: {_describe(exc)}") from None
        base_url = spec.base_url or self._llm.base_url
        timeout = spec.timeout_seconds or self._llm.timeout_seconds
        client = self._client(self._llm, base_url)
        started = time.perf_counter()
        try:
            text = await _complete(
                client,
                model=model,
                system=system,
                question=message.text,
                max_tokens=spec.max_tokens,
                timeout_seconds=timeout,
            )
        except _LlmFailed as failure:
            _observe_call(failure.reason, started)
            raise
        _observe_call("ok", started)
        return text

    def _client(self, config: LlmConfig, base_url: str) -> openai.AsyncOpenAI:
        client = self._clients.get(base_url)
        if client is None:
            # The configured key belongs to the configured endpoint only.
            key = config.api_key if base_url == config.base_url else None
            client = openai.AsyncOpenAI(
                base_url=base_url,
                api_key=key or "not-needed",
                timeout=config.timeout_seconds,
                max_retries=0,
            )
            self._clients[base_url] = client
        return client


async def _complete(
    client: openai.AsyncOpenAI,
    *,
    model: str,
    system: str,
    question: str,
    max_tokens: int,
    timeout_seconds: float,
) -> str:
    """One call to the model: its answer, or _LlmFailed saying why there is none."""
    try:
        # The SDK enforces ``timeout``; the outer bound catches anything it misses.
        async with asyncio.timeout(timeout_seconds + 5):
            completion = await client.chat.completions.create(
                model=model,
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": question},
                ],
                max_tokens=max_tokens,
                timeout=timeout_seconds,
            )
    except (openai.APITimeoutError, TimeoutError):
        raise _LlmFailed(
            "llm_timeout", f"the model did not answer in {timeout_seconds:g} s"
        ) from None
    except openai.APIStatusError as exc:
        raise _LlmFailed(
            f"llm_http_{exc.status_code}", f"the model answered HTTP {exc.status_code}"
        ) from None
    except openai.APIConnectionError:
        raise _LlmFailed("llm_unreachable", "the model's endpoint cannot be reached") from None
    except openai.OpenAIError as exc:
        raise _LlmFailed("llm_error", f"the model call failed ({type(exc).__name__})") from None
    choices = completion.choices
    content = choices[0].message.content if choices else None
    answer = (content or "").strip()[:MAX_MESSAGE_CHARS]
    if not answer:
        raise _LlmFailed("llm_empty", "the model returned an empty answer")
    return answer


def _observe_call(reason: str, started: float) -> None:
    """Count and time one model call. The label is ``ok`` or the fallback reason, with an
    HTTP status reduced to its class (``llm_http_503`` is ``llm_http_5xx``), so it stays
    within a dozen values whatever the provider answers."""
    if reason.startswith("llm_http_"):
        reason = f"llm_http_{reason.removeprefix('llm_http_')[:1]}xx"
    metrics.LLM_REQUESTS.labels(reason).inc()
    metrics.LLM_DURATION.observe(time.perf_counter() - started)


def _variables(message: Message, account: AccountInfo) -> dict[str, Any]:
    full_name = " ".join(
        part for part in (message.sender_first_name, message.sender_last_name) if part
    ).strip()
    name = full_name or (message.sender_username or "")
    mention = f"@{message.sender_username}" if message.sender_username else name
    return {
        "message": {"text": message.text, "id": message.message_id, "at": message.at},
        "sender": {
            "id": message.sender_id,
            "username": message.sender_username,
            "first_name": message.sender_first_name,
            "last_name": message.sender_last_name,
            "name": name,
            "mention": mention,
        },
        "group": {"id": message.chat_id, "title": message.chat_title},
        "account": {
            "label": account.label,
            "username": account.username,
            "first_name": account.first_name,
        },
    }


def _render_text(template: Template, variables: dict[str, Any]) -> str:
    return render(template, variables).strip()[:MAX_MESSAGE_CHARS]


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _rendered(
    rule: CompiledRule,
    template: Template,
    variables: dict[str, Any],
    source: str,
    fallback_reason: str | None,
    detail: str,
) -> Outcome:
    try:
        text = _render_text(template, variables)
    except Exception as exc:  # noqa: BLE001 - a template may fail in any way; never crash
        # The error's text may quote the message; the log names the rule and the bound.
        log.warning(
            "playbook.template_failed",
            rule=rule.name,
            error=type(exc).__name__,
            limit=exc.limit if isinstance(exc, TemplateLimitExceeded) else None,
        )
        return Outcome(
            fired=False,
            rule=rule.name,
            text=None,
            source=source,
            reason="template_error",
            fallback_reason=fallback_reason,
            typing_seconds=0.0,
            detail=f"{detail}; the template failed: {_describe(exc)}",
        )
    if not text:
        return Outcome(
            fired=False,
            rule=rule.name,
            text=None,
            source=source,
            reason="template_error",
            fallback_reason=fallback_reason,
            typing_seconds=0.0,
            detail=f"{detail}; the template rendered an empty text",
        )
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
