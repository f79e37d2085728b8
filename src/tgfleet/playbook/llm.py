"""Replies from an OpenAI-compatible model: where it lives, one call, and why it failed.

:class:`LlmClient` renders a rule's system prompt, asks the model (the configured one, or
the rule's own ``model``/``base_url``) and returns its answer, or raises :class:`LlmFailed`
with a reason (``llm_timeout``, ``llm_http_503``, ``llm_unreachable``...) that becomes the
outcome's ``fallback_reason``. Every call is counted and timed (``metrics.LLM_*``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import openai

from tgfleet import metrics
from tgfleet.playbook.compiler import LlmReply
from tgfleet.playbook.document import MAX_MESSAGE_CHARS
from tgfleet.playbook.rendering import describe, render_text

if TYPE_CHECKING:
    from tgfleet.config import Settings


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


class LlmFailed(Exception):
    """No answer from the model: ``reason`` for the outcome, ``detail`` for a reader."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class LlmClient:
    """The model calls of one engine: its configuration, one OpenAI client per endpoint."""

    def __init__(self, config: LlmConfig | None) -> None:
        self._config = config
        self._clients: dict[str, openai.AsyncOpenAI] = {}

    async def ask(self, spec: LlmReply, variables: dict[str, Any], question: str) -> str:
        """The model's answer to ``question`` under the rule's system prompt (rendered with
        ``variables``); raises :class:`LlmFailed` saying why there is none."""
        if self._config is None:
            raise LlmFailed("llm_not_configured", "no LLM is configured (TGFLEET_LLM_BASE_URL)")
        model = spec.model or self._config.model
        if not model:
            raise LlmFailed("llm_not_configured", "no model: set llm.model or TGFLEET_LLM_MODEL")
        try:
            system = render_text(spec.system_prompt, variables)
        except Exception as exc:  # noqa: BLE001 - any template failure means "do not ask"
            raise LlmFailed("llm_prompt_error", f"system prompt: {describe(exc)}") from None
        base_url = spec.base_url or self._config.base_url
        timeout = spec.timeout_seconds or self._config.timeout_seconds
        client = self._client(self._config, base_url)
        started = time.perf_counter()
        try:
            text = await _complete(
                client,
                model=model,
                system=system,
                question=question,
                max_tokens=spec.max_tokens,
                timeout_seconds=timeout,
            )
        except LlmFailed as failure:
            _observe_call(failure.reason, started)
            raise
        _observe_call("ok", started)
        return text

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

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
    """One call to the model: its answer, or LlmFailed saying why there is none."""
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
        raise LlmFailed(
            "llm_timeout", f"the model did not answer in {timeout_seconds:g} s"
        ) from None
    except openai.APIStatusError as exc:
        raise LlmFailed(
            f"llm_http_{exc.status_code}", f"the model answered HTTP {exc.status_code}"
        ) from None
    except openai.APIConnectionError:
        raise LlmFailed("llm_unreachable", "the model's endpoint cannot be reached") from None
    except openai.OpenAIError as exc:
        raise LlmFailed("llm_error", f"the model call failed ({type(exc).__name__})") from None
    choices = completion.choices
    content = choices[0].message.content if choices else None
    answer = (content or "").strip()[:MAX_MESSAGE_CHARS]
    if not answer:
        raise LlmFailed("llm_empty", "the model returned an empty answer")
    return answer


def _observe_call(reason: str, started: float) -> None:
    """Count and time one model call. The label is ``ok`` or the fallback reason, with an
    HTTP status reduced to its class (``llm_http_503`` is ``llm_http_5xx``), so it stays
    within a dozen values whatever the provider answers."""
    if reason.startswith("llm_http_"):
        reason = f"llm_http_{reason.removeprefix('llm_http_')[:1]}xx"
    metrics.LLM_REQUESTS.labels(reason).inc()
    metrics.LLM_DURATION.observe(time.perf_counter() - started)
