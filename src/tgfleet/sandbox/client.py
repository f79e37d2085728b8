"""A small typed async client for the sandbox control API (for tests, benchmarks, demos).

One method per endpoint. A 4xx/5xx answer raises `ControlError` carrying the API's
``error`` and ``detail``. Every request has a timeout.

    async with SandboxControl("http://127.0.0.1:8444") as control:
        rule = await control.add_fault("flood_wait", account="fleet_0001",
                                       method="messages.sendMessage", seconds=30, count=2)
"""

from __future__ import annotations

from typing import Any

import httpx

from tgfleet.kit.lifecycle import Lifecycle


class ControlError(Exception):
    """The control API refused a request."""

    def __init__(self, status_code: int, error: str, detail: str) -> None:
        super().__init__(f"{status_code} {error}: {detail}")
        self.status_code = status_code
        self.error = error
        self.detail = detail


AccountRef = int | str
GroupRef = int | str


class SandboxControl(Lifecycle):
    """Talks to one sandbox's control API at ``base_url``; ``async with`` closes it."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    def start(self) -> None:
        """Nothing to open: the HTTP client connects on first use."""

    async def stop(self) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self._http.request(method, path, json=body)
        if response.is_error:
            try:
                payload = response.json()
                error, detail = str(payload["error"]), str(payload["detail"])
            except (ValueError, KeyError, TypeError):
                error, detail = "http_error", response.text
            raise ControlError(response.status_code, error, detail)
        return response.json()

    # ---- faults

    async def add_fault(
        self,
        kind: str,
        *,
        account: AccountRef | None = None,
        group: GroupRef | None = None,
        method: str | None = None,
        seconds: int | None = None,
        count: int | None = None,
    ) -> dict[str, Any]:
        """Add a fault rule; returns the rule (``id``, ``kind``, ``code``, ``message``, …)."""
        body = {
            "kind": kind,
            "account": account,
            "group": group,
            "method": method,
            "seconds": seconds,
            "count": count,
        }
        result: dict[str, Any] = await self._request(
            "POST", "/faults", {k: v for k, v in body.items() if v is not None}
        )
        return result

    async def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request("GET", "/faults")
        return result

    async def clear_fault(self, rule_id: int) -> None:
        await self._request("DELETE", f"/faults/{rule_id}")

    async def clear_faults(self) -> int:
        """Remove every rule; returns how many there were."""
        result = await self._request("DELETE", "/faults")
        return int(result["cleared"])

    # ---- connection knobs

    async def drop(self, account: AccountRef) -> int:
        """Close every connection of ``account``; returns how many were closed."""
        result = await self._request("POST", f"/accounts/{account}/drop")
        return int(result["dropped"])

    async def refuse(self, account: AccountRef, seconds: float) -> None:
        await self._request("POST", f"/accounts/{account}/refuse", {"seconds": seconds})

    async def set_latency(self, account: AccountRef, seconds: float) -> None:
        await self._request("POST", f"/accounts/{account}/latency", {"seconds": seconds})

    # ---- world

    async def post_message(
        self,
        group: GroupRef,
        sender: int | str,
        text: str,
        *,
        reply_to_account: AccountRef | None = None,
    ) -> dict[str, Any]:
        """A simulated member posts; returns ``message_ids`` per account and ``pushed``."""
        body: dict[str, Any] = {"sender": sender, "text": text}
        if reply_to_account is not None:
            body["reply_to_account"] = reply_to_account
        result: dict[str, Any] = await self._request("POST", f"/groups/{group}/messages", body)
        return result

    # ---- observation

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/stats")
        return result

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/health")
        return result
