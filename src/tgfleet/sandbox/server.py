"""The sandbox's asyncio MTProto server: connections, salts, sessions, and always an answer.

The server knows nothing about users or chats. Each decoded request goes to a
``Dispatcher`` (the world model), and whatever it returns or raises becomes the reply:
``RpcFailure`` is an ``rpc_error``, any other exception is ``500 INTERNAL`` (logged), and a
call that outlives ``call_timeout`` is ``-503 Timeout``. Pings, acks and salts are handled
here. Fault knobs (``refuse``, ``set_latency``, ``drop``) are plain methods for the control
API to call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol, Self

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject, TLRequest

from tgfleet.logging import get_logger
from tgfleet.sandbox import mtproto, transport
from tgfleet.sandbox.mtproto import Result

log = get_logger(__name__)

PING_REQUESTS = (functions.PingRequest, functions.PingDelayDisconnectRequest)


class RpcFailure(Exception):
    """Raised by a dispatcher to answer a request with ``rpc_error(code, message)``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


def method_not_supported(request: object) -> RpcFailure:
    """The error for a method the sandbox does not implement (raise it from ``call``)."""
    del request  # the name is recorded in stats; Telegram's error carries no detail
    return RpcFailure(400, "METHOD_NOT_SUPPORTED")


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One client TCP connection, once its first packet named a known auth key."""

    connection_id: int
    auth_key_id: int
    peer: str
    transport: transport.TransportKind
    opened_at: float


@dataclass(frozen=True, slots=True)
class CallContext:
    """Where a request came from: its connection, msg_id, session, wrappers and layer."""

    connection: ConnectionInfo
    msg_id: int
    session_id: int
    wrappers: tuple[str, ...]
    layer: int | None

    @property
    def auth_key_id(self) -> int:
        return self.connection.auth_key_id


class Dispatcher(Protocol):
    """What the server needs from the world model.

    ``knows`` returns the 256-byte auth key for a key id, or ``None`` (the client then gets
    the transport error ``-404``). ``call`` answers one unwrapped request; it raises
    ``RpcFailure`` for a Telegram error and ``method_not_supported(request)`` for a method it
    does not handle. ``connection_opened``/``connection_closed`` are for observation.
    """

    def knows(self, auth_key_id: int) -> bytes | None: ...

    async def call(self, ctx: CallContext, request: TLRequest) -> Result: ...

    def connection_opened(self, info: ConnectionInfo) -> None: ...

    def connection_closed(self, info: ConnectionInfo) -> None: ...


@dataclass(frozen=True, slots=True)
class SandboxStats:
    """A snapshot: live connections and counters per key, requests per method name."""

    connections: dict[int, int]
    requests: dict[str, int]
    duplicate_use: dict[int, int]
    bad_salts: dict[int, int]
    refused: dict[int, int]
    connections_opened: int
    opened: dict[int, int]  # connection attempts per key (refused ones included)


@dataclass
class _KeyState:
    """Per auth key: one server salt for all its connections, the layer, fault knobs."""

    auth_key: bytes
    salt: int = field(default_factory=mtproto.new_salt)
    layer: int | None = None
    refuse_until: float = 0.0
    latency: float = 0.0
    newest_used_connection: int = 0


class _Connection:
    def __init__(
        self,
        server: SandboxServer,
        info: ConnectionInfo,
        key: _KeyState,
        codec: transport.PacketCodec,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.info = info
        self.key = key
        self.codec = codec
        self.writer = writer
        self.session_id: int | None = None
        self.announced_session: int | None = None
        self.out_seq = 0
        self.write_lock = asyncio.Lock()
        self.calls: set[asyncio.Task[None]] = set()

    def _seq_no(self, *, content_related: bool) -> int:
        if content_related:
            self.out_seq += 1
            return self.out_seq * 2 - 1
        return self.out_seq * 2

    async def send(self, body: bytes, *, push: bool = False, content_related: bool = True) -> None:
        """Encrypt and write one top-level message; raises ``OSError``/timeout on failure."""
        if self.session_id is None:
            raise ConnectionError("no session yet")
        async with asyncio.timeout(self.server.write_timeout), self.write_lock:
            clock = self.server.clock
            packet = mtproto.encrypt(
                self.key.auth_key,
                salt=self.key.salt,
                session_id=self.session_id,
                msg_id=clock.push() if push else clock.reply(),
                seq_no=self._seq_no(content_related=content_related),
                body=body,
            )
            self.writer.write(self.codec.encode(packet))
            await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


class SandboxServer:
    """An MTProto 2.0 server for Telethon clients whose auth keys the dispatcher knows.

    ``async with SandboxServer(dispatcher) as server:`` binds (port 0 picks a free port; the
    bound one is ``server.port``); leaving the block closes the listener and cancels every
    connection task. Reads time out after ``idle_timeout`` seconds without a packet
    (Telethon pings every 60 s).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        idle_timeout: float = 180.0,
        write_timeout: float = 10.0,
        call_timeout: float = 60.0,
    ) -> None:
        self.dispatcher = dispatcher
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.call_timeout = call_timeout
        self.clock = mtproto.MsgIdClock()
        self._keys: dict[int, _KeyState] = {}
        self._connections: dict[int, dict[int, _Connection]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._requests: Counter[str] = Counter()
        self._duplicate_use: Counter[int] = Counter()
        self._bad_salts: Counter[int] = Counter()
        self._refused: Counter[int] = Counter()
        self._attempts: Counter[int] = Counter()
        self._opened = 0

    async def __aenter__(self) -> Self:
        """Start listening (``port`` becomes the bound port)."""
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, limit=2**16, backlog=4096
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("sandbox.listening", host=self.host, port=self.port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop listening and cancel every connection task, waiting for them to end."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None

    # -- fault knobs -------------------------------------------------------------------

    def _key(self, auth_key_id: int) -> _KeyState | None:
        state = self._keys.get(auth_key_id)
        if state is None:
            auth_key = self.dispatcher.knows(auth_key_id)
            if auth_key is None:
                return None
            state = self._keys[auth_key_id] = _KeyState(auth_key)
        return state

    def refuse(self, auth_key_id: int, seconds: float) -> None:
        """Close new connections of this key at their first packet for ``seconds``."""
        state = self._key(auth_key_id)
        if state is not None:
            state.refuse_until = time.monotonic() + seconds

    def set_latency(self, auth_key_id: int, seconds: float) -> None:
        """Delay every answer to this key's requests by ``seconds`` (0 to clear)."""
        state = self._key(auth_key_id)
        if state is not None:
            state.latency = max(0.0, seconds)

    def server_salt(self, auth_key_id: int) -> int | None:
        """The salt this key's clients must use (for tests and observation)."""
        state = self._keys.get(auth_key_id)
        return None if state is None else state.salt

    async def drop(self, auth_key_id: int) -> int:
        """Close every live connection of a key; return how many were closed."""
        conns = list(self._connections.get(auth_key_id, {}).values())
        for conn in conns:
            conn.close()
        return len(conns)

    async def push(self, auth_key_id: int, updates: TLObject) -> int:
        """Send an Updates object to every live connection of a key; return how many got it."""
        body = bytes(updates)
        delivered = 0
        for conn in list(self._connections.get(auth_key_id, {}).values()):
            if conn.session_id is None:
                continue
            try:
                await conn.send(body, push=True)
            except (OSError, TimeoutError) as exc:
                log.info("sandbox.push_failed", key_id=auth_key_id, error=type(exc).__name__)
                conn.close()
            else:
                delivered += 1
        return delivered

    def stats(self) -> SandboxStats:
        return SandboxStats(
            connections={k: len(v) for k, v in self._connections.items() if v},
            requests=dict(self._requests),
            duplicate_use=dict(self._duplicate_use),
            bad_salts=dict(self._bad_salts),
            refused=dict(self._refused),
            connections_opened=self._opened,
            opened=dict(self._attempts),
        )

    # -- connection handling -----------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 -- always inside the server's task
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (asyncio.IncompleteReadError, OSError, TimeoutError):
            pass  # the client went away or idled out: nothing to answer
        except transport.TransportError as exc:
            log.info("sandbox.transport_error", error=str(exc))
        except mtproto.ProtocolViolation as exc:
            log.info("sandbox.protocol_violation", error=str(exc))
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(self.write_timeout):
                    await writer.wait_closed()

    async def _read(self, codec: transport.PacketCodec, reader: asyncio.StreamReader) -> bytes:
        async with asyncio.timeout(self.idle_timeout):
            return await codec.read_packet(reader)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(self.idle_timeout):
            codec = await transport.detect(reader)
        packet = await self._read(codec, reader)
        key_id = mtproto.packet_key_id(packet)
        key = self._key(key_id) if key_id else None
        if key is not None:
            self._attempts[key_id] += 1
        if key is None:
            async with asyncio.timeout(self.write_timeout):
                writer.write(codec.encode_error(transport.AUTH_KEY_UNKNOWN))
                await writer.drain()
            log.info("sandbox.unknown_key", key_id=key_id)
            return
        if key.refuse_until > time.monotonic():
            self._refused[key_id] += 1
            log.info("sandbox.refused", key_id=key_id)
            return
        peer = writer.get_extra_info("peername")
        info = ConnectionInfo(next(self._ids), key_id, str(peer), codec.kind, time.time())
        conn = _Connection(self, info, key, codec, writer)
        self._connections.setdefault(key_id, {})[info.connection_id] = conn
        self._opened += 1
        self.dispatcher.connection_opened(info)
        try:
            while True:
                if mtproto.packet_key_id(packet) != key_id:
                    raise mtproto.ProtocolViolation("auth key changed on a connection")
                await self._handle_packet(conn, mtproto.decrypt(key.auth_key, packet))
                packet = await self._read(codec, reader)
        finally:
            for task in list(conn.calls):
                task.cancel()
            await asyncio.gather(*conn.calls, return_exceptions=True)
            self._connections[key_id].pop(info.connection_id, None)
            self.dispatcher.connection_closed(info)

    async def _handle_packet(self, conn: _Connection, message: mtproto.ClientMessage) -> None:
        key = conn.key
        conn.session_id = message.session_id
        if message.salt != key.salt:
            self._bad_salts[conn.info.auth_key_id] += 1
            body = mtproto.bad_server_salt(message.msg_id, message.seq_no, key.salt)
            await conn.send(body, content_related=False)
            return
        if conn.announced_session != message.session_id:
            conn.announced_session = message.session_id
            body = mtproto.new_session_created(message.msg_id, key.salt)
            await conn.send(body, push=True, content_related=False)
        for inbound in mtproto.unpack(message.msg_id, message.seq_no, message.body):
            await self._handle_message(conn, inbound)

    async def _handle_message(self, conn: _Connection, inbound: mtproto.InboundMessage) -> None:
        obj = inbound.obj
        if isinstance(obj, types.MsgsAck):
            return
        if obj is None:
            await conn.send(mtproto.rpc_error(inbound.msg_id, 400, "INPUT_METHOD_INVALID"))
            return
        if isinstance(obj, PING_REQUESTS):
            await conn.send(mtproto.pong(inbound.msg_id, obj.ping_id))
            return
        self._note_use(conn)
        unwrapped = mtproto.unwrap(obj)
        if unwrapped.layer is not None:
            conn.key.layer = unwrapped.layer
        ctx = CallContext(
            connection=conn.info,
            msg_id=inbound.msg_id,
            session_id=conn.session_id or 0,
            wrappers=unwrapped.wrappers,
            layer=conn.key.layer,
        )
        self._requests[mtproto.method_name(unwrapped.request)] += 1
        task = asyncio.create_task(self._call(conn, ctx, unwrapped.request))
        conn.calls.add(task)
        task.add_done_callback(conn.calls.discard)

    def _note_use(self, conn: _Connection) -> None:
        key = conn.key
        if key.newest_used_connection > conn.info.connection_id:
            self._duplicate_use[conn.info.auth_key_id] += 1
        else:
            key.newest_used_connection = conn.info.connection_id

    async def _call(self, conn: _Connection, ctx: CallContext, request: TLRequest) -> None:
        name = mtproto.method_name(request)
        try:
            if conn.key.latency:
                await asyncio.sleep(conn.key.latency)
            async with asyncio.timeout(self.call_timeout):
                result = await self.dispatcher.call(ctx, request)
            body = mtproto.rpc_result(ctx.msg_id, mtproto.serialize_result(result))
        except RpcFailure as failure:
            body = mtproto.rpc_error(ctx.msg_id, failure.code, failure.message)
        except TimeoutError:
            log.warning("sandbox.call_timeout", method=name, key_id=ctx.auth_key_id)
            body = mtproto.rpc_error(ctx.msg_id, -503, "Timeout")
        except Exception:  # any dispatcher bug must still get an answer, never silence
            log.exception("sandbox.call_failed", method=name, key_id=ctx.auth_key_id)
            body = mtproto.rpc_error(ctx.msg_id, 500, "INTERNAL")
        try:
            await conn.send(body)
        except (OSError, TimeoutError, ConnectionError):
            conn.close()  # the client re-sends the request on its next connection
