"""The LLM call feeds its Prometheus metrics: requests by outcome (with the HTTP class of a
failure) and their duration, against the local OpenAI-compatible server.

Counters are process-wide, so every test reads the samples it cares about before acting
and asserts what it added (`Watch`), never an absolute value.
"""

from __future__ import annotations

import pytest

from tests.fakes.openai_server import FakeChatServer
from tests.playbook.test_engine import LLM_RULE, Clock, message, one_rule, respond_once
from tests.prometheus_watch import Watch, outcome_of, plain
from tgfleet.playbook.engine import LlmConfig


def llm_calls() -> Watch:
    return Watch(
        **{
            outcome: outcome_of("tgfleet_llm_requests_total", outcome)
            for outcome in ("ok", "llm_timeout", "llm_http_4xx", "llm_http_5xx", "llm_unreachable")
        },
        timed=plain("tgfleet_llm_request_duration_seconds_count"),
    )


def calls(**expected: float) -> dict[str, float]:
    zero = dict.fromkeys(
        ("ok", "llm_timeout", "llm_http_4xx", "llm_http_5xx", "llm_unreachable", "timed"), 0.0
    )
    return zero | expected


async def ask(base_url: str | None) -> str | None:
    """One message through an engine whose rule asks the model at ``base_url`` (None: no
    model configured); the fallback reason."""
    config = LlmConfig(base_url=base_url, model="m", timeout_seconds=5) if base_url else None
    compiled = one_rule("{min_length: 1}", reply=LLM_RULE)
    outcome = await respond_once(config, compiled, message(), Clock())
    return outcome.fallback_reason


class TestLlm:
    async def test_an_answer_is_ok(self) -> None:
        watch = llm_calls()
        async with FakeChatServer(reply="Prices start at 5 EUR.") as llm:
            assert await ask(llm.base_url) is None
        assert watch.delta() == calls(ok=1, timed=1)

    @pytest.mark.parametrize(
        ("status", "delay", "reason", "label"),
        [
            (503, 0.0, "llm_http_503", "llm_http_5xx"),
            (500, 0.0, "llm_http_500", "llm_http_5xx"),
            (429, 0.0, "llm_http_429", "llm_http_4xx"),
            (200, 2.0, "llm_timeout", "llm_timeout"),
        ],
    )
    async def test_a_failed_call_counts_its_reason_with_the_http_class(
        self, status: int, delay: float, reason: str, label: str
    ) -> None:
        """The fallback keeps the exact reason; the label keeps only the status class."""
        watch = llm_calls()
        async with FakeChatServer(status=status) as llm:
            llm.delay = delay
            assert await ask(llm.base_url) == reason
        assert watch.delta() == calls(**{label: 1, "timed": 1})

    async def test_unreachable_and_not_configured(self) -> None:
        """A closed port is a call that failed; no LLM configured is no call at all."""
        async with FakeChatServer() as llm:
            base_url = llm.base_url
        watch = llm_calls()
        assert await ask(base_url) == "llm_unreachable"
        assert await ask(None) == "llm_not_configured"
        assert watch.delta() == calls(llm_unreachable=1, timed=1)
