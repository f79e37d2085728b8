"""`Sandbox`: the whole sandbox in one object — world, faults, MTProto server, traffic, control.

    async with Sandbox(world, traffic=False) as sandbox:
        port, control_port = sandbox.port, sandbox.control_port
        ...

Composition: a `RecordingWorldState` (``WorldState`` that also logs every message a fleet
account sends), a ``FaultRegistry``, the world dispatcher (``dispatcher.WorldDispatcher``)
attached to a ``SandboxServer``, a traffic task that replays the seeded ``TrafficPlan`` in
real time, and the HTTP control API served in the same event loop. Every task is owned:
leaving the ``async with`` block cancels and awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, Self

from tgfleet.kit.lifecycle import cancel_and_wait
from tgfleet.logging import get_logger
from tgfleet.sandbox.control import SentMessage, create_control_app
from tgfleet.sandbox.control_server import ControlServer
from tgfleet.sandbox.delivery import Delivery
from tgfleet.sandbox.dispatcher import WorldDispatcher
from tgfleet.sandbox.faults import FaultRegistry
from tgfleet.sandbox.ports import Publisher
from tgfleet.sandbox.rule_errors import ReplyInvalid, SandboxRuleError
from tgfleet.sandbox.server import Dispatcher, SandboxServer
from tgfleet.sandbox.state import WorldState
from tgfleet.sandbox.traffic import TrafficEvent, TrafficPlan
from tgfleet.sandbox.world import World
from tgfleet.sandbox.world_file import load_world

log = get_logger(__name__)

#: How many sent messages the observation log keeps (oldest dropped first).
SENT_LOG_LIMIT = 100_000


class WorldDispatching(Dispatcher, Publisher, Protocol):
    """What the runner needs from the world dispatcher."""

    def attach(self, server: SandboxServer) -> None: ...


DispatcherFactory = Callable[[WorldState, FaultRegistry], WorldDispatching]


def world_dispatcher(state: WorldState, faults: FaultRegistry) -> WorldDispatching:
    """The real dispatcher (``dispatcher.WorldDispatcher``)."""
    return WorldDispatcher(state, faults=faults)


class RecordingWorldState(WorldState):
    """A ``WorldState`` that logs each new message a fleet account posts (bounded), with
    its origin and, for a reply, the replied message's origin and sender.

    A post re-sent with the same ``random_id`` returns the earlier deliveries and is not
    logged twice (``WorldState`` calls ``_posted`` for new messages only).
    """

    def __init__(self, world: World, *, sent_limit: int = SENT_LOG_LIMIT) -> None:
        super().__init__(world)
        self.sent: deque[SentMessage] = deque(maxlen=sent_limit)

    def _posted(self, group_id: int, sender_id: int, text: str, deliveries: list[Delivery]) -> None:
        if not deliveries or sender_id not in self.world.accounts_by_id:
            return
        own = next((d for d in deliveries if d.account_id == sender_id), deliveries[0])
        replied = own.reply_to_origin
        self.sent.append(
            SentMessage(
                sender_id,
                group_id,
                own.message_id,
                time.time(),
                text,
                origin_id=own.origin_id,
                reply_to_origin=replied,
                reply_to_sender=None if replied is None else self.sender_of(replied),
            )
        )


class Sandbox:
    """The sandbox: ``async with Sandbox(world) as sandbox:`` serves it (``sandbox.port``,
    ``sandbox.control_port``) until the block ends.

    ``port``/``control_port`` 0 pick free ports. ``traffic=False`` runs without the simulated
    members' random chatter (tests post through the control API instead). The control API
    binds ``control_host`` (default ``host``) and refuses a non-loopback address unless
    ``allow_remote_control``. Use `load` to read a world file off the event loop.
    """

    def __init__(
        self,
        world: World,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        control_host: str | None = None,
        control_port: int = 0,
        traffic: bool = True,
        traffic_seed: int | None = None,
        traffic_interval: float = 0.5,
        allow_remote_control: bool = False,
        sent_limit: int = SENT_LOG_LIMIT,
        dispatcher_factory: DispatcherFactory = world_dispatcher,
    ) -> None:
        self._world = world
        self._state = RecordingWorldState(world, sent_limit=sent_limit)
        self._faults = FaultRegistry()
        self.dispatcher = dispatcher_factory(self._state, self._faults)
        self._server = SandboxServer(self.dispatcher, host=host, port=port)
        self.dispatcher.attach(self._server)
        self.control = ControlServer(
            create_control_app(self),
            host=control_host or host,
            port=control_port,
            allow_remote=allow_remote_control,
        )
        self.traffic = traffic
        self.traffic_seed = traffic_seed
        self.traffic_interval = traffic_interval
        self._running: contextlib.AsyncExitStack | None = None

    @classmethod
    async def load(cls, path: Path, **options: Any) -> Self:
        """A sandbox for the world file at ``path`` (read in a thread)."""
        world = await asyncio.to_thread(load_world, path)
        return cls(world, **options)

    # ---- what the control API sees

    @property
    def world(self) -> World:
        return self._world

    @property
    def state(self) -> WorldState:
        return self._state

    @property
    def faults(self) -> FaultRegistry:
        return self._faults

    @property
    def server(self) -> SandboxServer:
        return self._server

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def control_port(self) -> int:
        return self.control.port

    async def publish(self, deliveries: Sequence[Delivery]) -> int:
        """Push deliveries to the accounts' live connections (through the dispatcher)."""
        return await self.dispatcher.publish(deliveries)

    def sent_messages(self) -> Sequence[SentMessage]:
        """Messages fleet accounts sent, oldest first (bounded by ``sent_limit``)."""
        return list(self._state.sent)

    # ---- lifecycle

    async def __aenter__(self) -> Self:
        """Bind the MTProto server and the control API, then start the traffic."""
        if self._running is not None:
            raise RuntimeError("the sandbox is already running")
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._server)
            await stack.enter_async_context(self.control)
            if self.traffic:
                task = asyncio.create_task(self._run_traffic(), name="sandbox-traffic")
                stack.push_async_callback(cancel_and_wait, task)
            log.info(
                "sandbox.ready",
                port=self.port,
                control_port=self.control_port,
                traffic=self.traffic,
            )
            self._running = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop the traffic, the control API and the server (and their connections)."""
        running, self._running = self._running, None
        if running is not None:
            await running.aclose()

    # ---- traffic

    async def _run_traffic(self) -> None:
        plan = TrafficPlan(self._world, self.traffic_seed)
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            await asyncio.sleep(self.traffic_interval)
            for event in plan.events_until(loop.time() - started):
                deliveries = self.apply(event)
                if not deliveries:
                    continue
                try:
                    await self.publish(deliveries)
                except Exception:  # a dispatcher bug must not end the traffic for good
                    log.exception("sandbox.traffic_publish_failed", group_id=event.group_id)

    def apply(self, event: TrafficEvent) -> list[Delivery]:
        """Apply one traffic event to the state; a reply with nothing to reply to becomes a
        plain post, and an event the world refuses is skipped (logged at debug)."""
        try:
            if event.kind == "join":
                return self._state.join(event.group_id, event.sender_id)
            try:
                return self._state.post(
                    event.group_id,
                    event.sender_id,
                    event.text,
                    reply_to_account=event.reply_to_account,
                )
            except ReplyInvalid:
                return self._state.post(event.group_id, event.sender_id, event.text)
        except SandboxRuleError as exc:
            log.debug("sandbox.traffic_skipped", kind=event.kind, reason=type(exc).__name__)
            return []
