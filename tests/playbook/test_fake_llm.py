"""The fake chat-completions server speaks the protocol the real openai SDK expects."""

from __future__ import annotations

import openai
import pytest

from tests.fakes.openai_server import FakeChatServer


class TestFakeChatServer:
    async def test_the_sdk_gets_a_completion(self) -> None:
        """A completion parses in the real SDK; the server records body and auth header."""
        async with FakeChatServer(reply="Hi there") as llm:
            client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="sk-test", max_retries=0)
            try:
                completion = await client.chat.completions.create(
                    model="m1",
                    messages=[{"role": "user", "content": "hello"}],
                    max_tokens=10,
                    timeout=5,
                )
            finally:
                await client.close()
        assert completion.choices[0].message.content == "Hi there"
        assert completion.choices[0].finish_reason == "stop"
        assert completion.usage is not None
        assert llm.requests[0]["model"] == "m1"
        assert llm.requests[0]["max_tokens"] == 10
        assert llm.auth_headers == ["Bearer sk-test"]

    async def test_an_error_status_is_an_sdk_status_error(self) -> None:
        """``status`` answers with that HTTP error in OpenAI's error shape."""
        async with FakeChatServer(status=503) as llm:
            client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="k", max_retries=0)
            try:
                with pytest.raises(openai.APIStatusError) as caught:
                    await client.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": "x"}], timeout=5
                    )
            finally:
                await client.close()
        assert caught.value.status_code == 503
        assert "fake error 503" in caught.value.message

    async def test_a_slow_answer_times_out_in_the_sdk(self) -> None:
        """``delay`` longer than the client's timeout is an APITimeoutError."""
        async with FakeChatServer() as llm:
            llm.delay = 5.0
            client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="k", max_retries=0)
            try:
                with pytest.raises(openai.APITimeoutError):
                    await client.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": "x"}], timeout=0.2
                    )
            finally:
                await client.close()
