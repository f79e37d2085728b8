"""The reply engine: triggers, conditions, first match, limits, claims, templates, LLM."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.fakes.openai_server import FakeChatServer
from tgfleet.playbook.engine import (
    AccountInfo,
    CompiledPlaybook,
    LlmConfig,
    Message,
    Outcome,
    ReplyEngine,
    compile_playbook,
)

MONDAY_NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday
GROUP = -1001500000001
ALICE = AccountInfo(
    id=uuid.UUID(int=1), label="alice", username="alice_bot", first_name="Alice", tg_user_id=501
)
BOB = AccountInfo(id=uuid.UUID(int=2), label="bob", username=None, first_name="Bob", tg_user_id=502)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def message(text: str = "hello", **changes: Any) -> Message:
    base = Message(
        text=text,
        chat_id=GROUP,
        chat_title="Example Shop Support",
        message_id=7,
        sender_id=900,
        sender_username="dana",
        sender_first_name="Dana",
        sender_last_name="Scully",
        at=MONDAY_NOON,
        dedupe_key=f"{GROUP}:{uuid.uuid4()}",
    )
    return replace(base, **changes)


def playbook(rules: str, defaults: str = "") -> CompiledPlaybook:
    return compile_playbook(f"{defaults}rules:\n{rules}", name="t", version=1)


def one_rule(when: str, extra: str = "", reply: str = "{templates: ['ok']}") -> CompiledPlaybook:
    return playbook(f"  - name: r\n    when: {when}\n    reply: {reply}\n{extra}")


async def respond_once(
    config: LlmConfig | None, compiled: CompiledPlaybook, sent: Message, clock: Clock
) -> Outcome:
    """``sent`` through a fresh engine asking the model of ``config``, closed after."""
    engine = ReplyEngine(config, clock=clock)
    try:
        return await engine.respond(compiled, sent, ALICE)
    finally:
        await engine.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def engine(clock: Clock) -> AsyncIterator[ReplyEngine]:
    reply_engine = ReplyEngine(None, clock=clock, rng=random.Random(7))
    yield reply_engine
    await reply_engine.aclose()


class TestTriggers:
    @pytest.mark.parametrize(
        ("when", "changes", "fires"),
        [
            ("{keywords: [price]}", {"text": "What is the PRICE?"}, True),
            ("{keywords: [price]}", {"text": "priceless"}, False),  # whole words only
            ("{keywords: [opening hours]}", {"text": "your Opening Hours please"}, True),
            ("{regex: '(?i)how much'}", {"text": "How much is it"}, True),
            ("{regex: '^x$'}", {"text": "y"}, False),
            ("{mention: true}", {"mentions_account": True}, True),
            ("{mention: true}", {}, False),
            ("{reply_to_me: true}", {"reply_to_account": True}, True),
            ("{new_member: true}", {"new_member": True, "text": ""}, True),
            ("{new_member: true}", {"text": "hi"}, False),
            ("{min_length: 10}", {"text": "0123456789"}, True),
            ("{min_length: 10}", {"text": "012345678"}, False),
        ],
    )
    async def test_each_trigger(
        self, engine: ReplyEngine, when: str, changes: dict[str, Any], fires: bool
    ) -> None:
        """Each trigger fires on its kind of message and only on it."""
        outcome = await engine.respond(one_rule(when), message(**changes), ALICE)
        assert outcome.fired is fires
        assert outcome.reason == ("fired" if fires else "no_rule_matched")

    async def test_any_trigger_is_enough(self, engine: ReplyEngine) -> None:
        compiled = one_rule("{keywords: [price], mention: true}")
        outcome = await engine.respond(compiled, message("hey", mentions_account=True), ALICE)
        assert outcome.fired
        assert outcome.detail is not None
        assert "mention" in outcome.detail


class TestConditions:
    async def test_group_allow_list(self, engine: ReplyEngine) -> None:
        compiled = one_rule("{min_length: 1}", f"    conditions: {{groups: [{GROUP}]}}\n")
        assert (await engine.respond(compiled, message(), ALICE)).fired
        other = await engine.respond(compiled, message(chat_id=-1002), ALICE)
        assert (other.fired, other.reason, other.rule) == (False, "condition:group", "r")

    @pytest.mark.parametrize(
        ("window", "at", "inside"),
        [
            # Berlin is UTC+1 in March: 12:00 UTC is 13:00 local.
            ("{from: '09:00', to: '18:00', timezone: Europe/Berlin}", MONDAY_NOON, True),
            ("{from: '14:00', to: '18:00', timezone: Europe/Berlin}", MONDAY_NOON, False),
            ("{from: '09:00', to: '18:00', days: [tue]}", MONDAY_NOON, False),
            # Across midnight: Friday 22:00 to 02:00 covers Saturday 01:30...
            (
                "{from: '22:00', to: '02:00', days: [fri]}",
                datetime(2026, 3, 7, 1, 30, tzinfo=UTC),
                True,
            ),
            (
                "{from: '22:00', to: '02:00', days: [fri]}",
                datetime(2026, 3, 6, 23, 0, tzinfo=UTC),
                True,
            ),
            # ...but not Friday 01:30 (that belongs to Thursday's window).
            (
                "{from: '22:00', to: '02:00', days: [fri]}",
                datetime(2026, 3, 6, 1, 30, tzinfo=UTC),
                False,
            ),
            ("{from: '22:00', to: '02:00'}", datetime(2026, 3, 6, 12, 0, tzinfo=UTC), False),
        ],
    )
    async def test_time_window(
        self, engine: ReplyEngine, window: str, at: datetime, inside: bool
    ) -> None:
        """Windows use the message time in the window's zone; crossing midnight works."""
        compiled = one_rule("{min_length: 1}", f"    conditions: {{time_window: {window}}}\n")
        outcome = await engine.respond(compiled, message(at=at), ALICE)
        assert outcome.fired is inside
        if not inside:
            assert outcome.reason == "condition:time_window"


class TestFirstMatch:
    async def test_first_matching_rule_decides(self, engine: ReplyEngine) -> None:
        """Rules are tried in order; a rule whose conditions fail lets the next one try."""
        compiled = playbook(
            "  - {name: elsewhere, when: {keywords: [price]}, conditions: {groups: [1]},"
            " reply: {templates: [a]}}\n"
            "  - {name: pricing, when: {keywords: [price]}, reply: {templates: [b]}}\n"
            "  - {name: catchall, when: {min_length: 1}, reply: {templates: [c]}}\n"
        )
        outcome = await engine.respond(compiled, message("price?"), ALICE)
        assert (outcome.rule, outcome.text) == ("pricing", "b")
        outcome = await engine.respond(compiled, message("hello"), BOB)
        assert (outcome.rule, outcome.text) == ("catchall", "c")


class TestLimits:
    async def test_min_interval_per_account_and_chat(
        self, engine: ReplyEngine, clock: Clock
    ) -> None:
        compiled = one_rule("{min_length: 1}", "    limits: {min_interval_seconds: 30}\n")
        assert (await engine.respond(compiled, message(), ALICE)).fired
        clock.now += 29
        assert (await engine.respond(compiled, message(), ALICE)).reason == "limit:min_interval"
        assert (await engine.respond(compiled, message(chat_id=-5), ALICE)).fired
        assert (await engine.respond(compiled, message(), BOB)).fired
        clock.now += 1
        assert (await engine.respond(compiled, message(), ALICE)).fired

    async def test_account_hourly_is_a_sliding_window(
        self, engine: ReplyEngine, clock: Clock
    ) -> None:
        compiled = one_rule(
            "{min_length: 1}",
            "    limits: {min_interval_seconds: 0, account_hourly: 2, group_hourly: 100}\n",
        )
        assert (await engine.respond(compiled, message(chat_id=-1), ALICE)).fired
        clock.now += 1800
        assert (await engine.respond(compiled, message(chat_id=-2), ALICE)).fired
        outcome = await engine.respond(compiled, message(chat_id=-3), ALICE)
        assert outcome.reason == "limit:account_hourly"
        clock.now += 1800  # the first reply leaves the window
        assert (await engine.respond(compiled, message(chat_id=-3), ALICE)).fired

    async def test_group_hourly_counts_every_account(self, engine: ReplyEngine) -> None:
        compiled = one_rule(
            "{min_length: 1}",
            "    limits: {min_interval_seconds: 0, group_hourly: 1}\n    responders: all\n",
        )
        assert (await engine.respond(compiled, message(), ALICE)).fired
        assert (await engine.respond(compiled, message(), BOB)).reason == "limit:group_hourly"

    async def test_probability_uses_the_rng(self, clock: Clock) -> None:
        """With p=0.5 and a seeded rng the same messages fire the same way every run."""
        compiled = one_rule(
            "{min_length: 1}", "    limits: {min_interval_seconds: 0, probability: 0.5}\n"
        )
        results = []
        for _ in range(2):
            engine = ReplyEngine(None, clock=clock, rng=random.Random(42))
            run = [(await engine.respond(compiled, message(), ALICE)).reason for _ in range(12)]
            results.append(run)
        assert results[0] == results[1]
        assert {"fired", "probability"} == set(results[0])

    async def test_suppressed_reply_consumes_no_budget(self, engine: ReplyEngine) -> None:
        """A template that fails to render gives the reservation back."""
        compiled = playbook(
            "  - {name: broken, when: {keywords: [a]}, reply: {templates: ['{{ sender.nope }}']}}\n"
            "  - {name: fine, when: {keywords: [b]}, reply: {templates: [ok]}}\n"
        )
        failed = await engine.respond(compiled, message("a"), ALICE)
        assert (failed.fired, failed.reason) == (False, "template_error")
        assert (await engine.respond(compiled, message("b"), ALICE)).fired

    async def test_dry_run_ignores_limits(self, engine: ReplyEngine) -> None:
        compiled = one_rule("{min_length: 1}", "    limits: {probability: 0}\n")
        assert (await engine.respond(compiled, message(), ALICE)).reason == "probability"
        outcome = await engine.respond(compiled, message(), ALICE, apply_limits=False)
        assert outcome.fired


class TestClaims:
    async def test_one_responder_per_message(self, engine: ReplyEngine, clock: Clock) -> None:
        compiled = one_rule("{min_length: 1}")
        seen = message()
        assert (await engine.respond(compiled, seen, ALICE)).fired
        assert (await engine.respond(compiled, seen, BOB)).reason == "claimed_by_other"
        assert (await engine.respond(compiled, seen, ALICE)).reason == "duplicate"
        clock.now += 601  # claims expire
        assert (await engine.respond(compiled, seen, BOB)).fired

    async def test_all_responders(self, engine: ReplyEngine) -> None:
        compiled = one_rule("{min_length: 1}", "    responders: all\n")
        seen = message()
        assert (await engine.respond(compiled, seen, ALICE)).fired
        assert (await engine.respond(compiled, seen, BOB)).fired

    async def test_a_limited_account_does_not_claim(self, engine: ReplyEngine) -> None:
        """An account that cannot answer leaves the message to another account."""
        compiled = one_rule("{min_length: 1}")
        assert (await engine.respond(compiled, message(), ALICE)).fired
        seen = message()
        assert (await engine.respond(compiled, seen, ALICE)).reason == "limit:min_interval"
        assert (await engine.respond(compiled, seen, BOB)).fired

    async def test_fleet_accounts_do_not_answer_each_other(self, engine: ReplyEngine) -> None:
        compiled = one_rule("{min_length: 1}", "    responders: all\n")
        await engine.respond(compiled, message(), BOB)
        outcome = await engine.respond(compiled, message(sender_id=502), ALICE)
        assert outcome.reason == "from_fleet"


class TestTemplates:
    async def test_variables(self, engine: ReplyEngine) -> None:
        template = (
            "'{{ sender.name }}|{{ sender.mention }}|{{ sender.first_name }}|{{ sender.id }}|"
            "{{ group.title }}|{{ group.id }}|{{ account.label }}|{{ account.username }}|"
            "{{ message.text }}|{{ message.id }}|{{ message.at.year }}'"
        )
        compiled = one_rule("{min_length: 1}", reply=f"{{templates: [{template}]}}")
        outcome = await engine.respond(compiled, message("hi"), ALICE)
        assert outcome.text == (
            f"Dana Scully|@dana|Dana|900|Example Shop Support|{GROUP}|alice|alice_bot|hi|7|2026"
        )
        assert outcome.source == "template"

    async def test_mention_without_username_is_the_name(self, engine: ReplyEngine) -> None:
        compiled = one_rule("{min_length: 1}", reply="{templates: ['{{ sender.mention }}']}")
        outcome = await engine.respond(
            compiled, message(sender_username=None, sender_last_name=None), ALICE
        )
        assert outcome.text == "Dana"

    @pytest.mark.parametrize(
        "template",
        [
            "{{ ''.__class__.__mro__ }}",
            "{{ message.__class__ }}",
            "{{ sender.items.__globals__ }}",
            "{{ ''.format.__self__.__class__ }}",
        ],
    )
    async def test_sandbox_blocks_internals(self, engine: ReplyEngine, template: str) -> None:
        """Attribute access to Python internals fails closed: nothing is sent."""
        compiled = one_rule("{min_length: 1}", reply=f'{{templates: ["{template}"]}}')
        outcome = await engine.respond(compiled, message(), ALICE)
        assert (outcome.fired, outcome.reason) == (False, "template_error")

    async def test_empty_render_is_not_sent(self, engine: ReplyEngine) -> None:
        compiled = one_rule(
            "{min_length: 1}", reply="{templates: ['{% if false %}x{% endif %}  ']}"
        )
        outcome = await engine.respond(compiled, message(), ALICE)
        assert (outcome.fired, outcome.reason) == (False, "template_error")

    async def test_long_render_is_truncated(self, engine: ReplyEngine) -> None:
        compiled = one_rule("{min_length: 1}", reply="{templates: [\"{{ 'ab' * 5000 }}\"]}")
        outcome = await engine.respond(compiled, message(), ALICE)
        assert outcome.text is not None
        assert len(outcome.text) == 4096


#: The model must answer within 1 s: enough on a loaded CI machine, short for the timeout case.
LLM_RULE = (
    "{llm: {model: small-1, system_prompt: 'You help in {{ group.title }}.', max_tokens: 77,"
    " timeout_seconds: 1.0, fallback: 'Sorry {{ sender.name }}, later.'}}"
)


class TestLlm:
    async def test_reply_from_the_model(self, clock: Clock) -> None:
        """The model's answer is sent; the request carries model, prompts and max_tokens,
        and the configured key as a bearer token."""
        async with FakeChatServer(reply="  Prices start at 5 EUR.  ") as llm:
            config = LlmConfig(
                base_url=llm.base_url, model="default", timeout_seconds=5, api_key="sk-secret"
            )
            compiled = one_rule("{min_length: 1}", reply=LLM_RULE)
            outcome = await respond_once(config, compiled, message("how much?"), clock)
        assert (outcome.fired, outcome.source, outcome.text) == (
            True,
            "llm",
            "Prices start at 5 EUR.",
        )
        (body,) = llm.requests
        assert body["model"] == "small-1"
        assert body["max_tokens"] == 77
        assert body["messages"] == [
            {"role": "system", "content": "You help in Example Shop Support."},
            {"role": "user", "content": "how much?"},
        ]
        assert llm.auth_headers == ["Bearer sk-secret"]
        assert "sk-secret" not in repr(config)

    @pytest.mark.parametrize(
        ("status", "delay", "reply", "reason"),
        [
            (500, 0.0, "x", "llm_http_500"),
            (503, 0.0, "x", "llm_http_503"),
            (200, 2.0, "x", "llm_timeout"),
            (200, 0.0, "   ", "llm_empty"),
        ],
    )
    async def test_fallback(
        self, clock: Clock, status: int, delay: float, reply: str, reason: str
    ) -> None:
        """A failing model gives the fallback template, with the reason."""
        async with FakeChatServer(reply=reply, status=status) as llm:
            llm.delay = delay
            config = LlmConfig(base_url=llm.base_url, model="m", timeout_seconds=5)
            compiled = one_rule("{min_length: 1}", reply=LLM_RULE)
            outcome = await respond_once(config, compiled, message(), clock)
        assert outcome.fired
        assert (outcome.source, outcome.fallback_reason) == ("fallback", reason)
        assert outcome.text == "Sorry Dana Scully, later."

    async def test_unreachable_endpoint(self, clock: Clock) -> None:
        async with FakeChatServer() as llm:
            base_url = llm.base_url
        config = LlmConfig(base_url=base_url, model="m", timeout_seconds=2)
        compiled = one_rule("{min_length: 1}", reply=LLM_RULE)
        outcome = await respond_once(config, compiled, message(), clock)
        assert (outcome.source, outcome.fallback_reason) == ("fallback", "llm_unreachable")

    async def test_not_configured(self, engine: ReplyEngine) -> None:
        outcome = await engine.respond(
            one_rule("{min_length: 1}", reply=LLM_RULE), message(), ALICE
        )
        assert (outcome.fired, outcome.fallback_reason) == (True, "llm_not_configured")

    async def test_no_fallback_sends_nothing(self, engine: ReplyEngine) -> None:
        compiled = one_rule("{min_length: 1}", reply="{llm: {system_prompt: hi}}")
        outcome = await engine.respond(compiled, message(), ALICE)
        assert (outcome.fired, outcome.reason) == (False, "llm_failed")

    async def test_key_only_goes_to_the_configured_endpoint(self, clock: Clock) -> None:
        """A playbook's own base_url never receives the configured API key."""
        async with FakeChatServer(reply="ok") as llm:
            config = LlmConfig(
                base_url="http://127.0.0.1:9/v1", model="m", timeout_seconds=5, api_key="sk-secret"
            )
            rule = f"{{llm: {{base_url: '{llm.base_url}', system_prompt: hi}}}}"
            outcome = await respond_once(
                config, one_rule("{min_length: 1}", reply=rule), message(), clock
            )
        assert outcome.source == "llm"
        assert llm.auth_headers == ["Bearer not-needed"]
