"""The seams between the sandbox's parts, so each can be built and tested on its own.

``server.SandboxServer`` speaks MTProto; a ``dispatcher.WorldDispatcher`` answers requests from
the ``state.WorldState``; a ``faults.FaultRegistry`` (driven by the HTTP control API) decides
which calls fail. The dispatcher consults a ``FaultPolicy``; the traffic loop hands new
deliveries to a ``Publisher``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tgfleet.sandbox.delivery import Delivery


class FaultPolicy(Protocol):
    def before_call(
        self, account_id: int, method: str, group_id: int | None
    ) -> tuple[int, str] | None:
        """An RPC error (code, message) this call must fail with, or None to run it.

        ``method`` is the TL request's qualified name as ``mtproto.method_name`` gives it
        (e.g. ``"messages.SendMessageRequest"``); ``group_id`` is the group the call targets,
        when it targets one. A rule with a count is consumed by the call it fails.
        """
        ...


class Publisher(Protocol):
    async def publish(self, deliveries: Sequence[Delivery]) -> int:
        """Push each delivery, as a full ``Updates`` with users and chats, to the live
        connections of its account; returns how many pushes reached a connection."""
        ...
