"""The sandbox protocol core against real Telethon clients over loopback.

The dispatcher here is a minimal stand-in for the world model: one self user per auth key,
fixed pts/seq, and ``METHOD_NOT_SUPPORTED`` for everything else. Every client is a real,
unmodified ``TelegramClient`` with an offline ``StringSession`` holding a key the server knows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from telethon import errors, events, functions, types
from telethon.network.connection import (
    Connection,
    ConnectionTcpAbridged,
    ConnectionTcpFull,
    ConnectionTcpIntermediate,
)
from telethon.tl.tlobject import TLRequest

from tests.sandbox.live import serving, telethon_client
from tgfleet.sandbox import mtproto, transport
from tgfleet.sandbox.mtproto import Result
from tgfleet.sandbox.server import (
    CallContext,
    ConnectionInfo,
    SandboxServer,
    method_not_supported,
)
from tgfleet.sandbox.tl_objects import sandbox_config

SELF_ID = 1000
GROUP_ID = 3000
MEMBER_ID = 2000
PTS = 10
SEQ = 5
CONNECT_TRANSCRIPT = [
    "InvokeWithLayerRequest>InitConnectionRequest>help.GetConfigRequest",
    "users.GetUsersRequest",
    "updates.GetStateRequest",
    "updates.GetDifferenceRequest",
]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class World:
    """A test dispatcher: knows its keys, records what each connection asked for."""

    def __init__(self) -> None:
        self.keys: dict[int, bytes] = {}
        self.port = 0
        self.transcript: list[tuple[int, str]] = []
        self.opened: list[ConnectionInfo] = []
        self.closed: list[ConnectionInfo] = []
        self.explode: set[str] = set()
        self.hold: set[str] = set()
        self.seen = asyncio.Condition()

    def add_key(self) -> bytes:
        key = os.urandom(256)
        self.keys[mtproto.key_id_of(key)] = key
        return key

    def knows(self, auth_key_id: int) -> bytes | None:
        return self.keys.get(auth_key_id)

    def connection_opened(self, info: ConnectionInfo) -> None:
        self.opened.append(info)

    def connection_closed(self, info: ConnectionInfo) -> None:
        self.closed.append(info)

    def names(self, connection_id: int | None = None) -> list[str]:
        return [n for c, n in self.transcript if connection_id in {None, c}]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(10), self.seen:
            await self.seen.wait_for(predicate)

    async def call(self, ctx: CallContext, request: TLRequest) -> Result:
        name = mtproto.method_name(request)
        async with self.seen:
            self.transcript.append((ctx.connection.connection_id, ">".join((*ctx.wrappers, name))))
            self.seen.notify_all()
        if name in self.explode:
            raise RuntimeError("dispatcher bug")
        if name in self.hold:
            self.hold.discard(name)
            await asyncio.Event().wait()  # held until the connection drops
        if isinstance(request, functions.help.GetConfigRequest):
            return sandbox_config(2, self.port)
        if isinstance(request, functions.users.GetUsersRequest):
            return [
                types.User(id=SELF_ID, is_self=True, access_hash=77, first_name="Sandbox")
                for user in request.id
                if isinstance(user, types.InputUserSelf)
            ]
        if isinstance(request, functions.updates.GetStateRequest):
            return types.updates.State(pts=PTS, qts=0, date=now(), seq=SEQ, unread_count=0)
        if isinstance(request, functions.updates.GetDifferenceRequest):
            return types.updates.DifferenceEmpty(date=now(), seq=SEQ)
        if isinstance(request, functions.help.GetNearestDcRequest):
            return types.NearestDc(country="NL", this_dc=2, nearest_dc=2)
        raise method_not_supported(request)


@pytest.fixture
async def world() -> World:
    return World()


@pytest.fixture
async def server(world: World) -> AsyncIterator[SandboxServer]:
    async with serving(SandboxServer(world)) as sandbox:
        world.port = sandbox.port
        yield sandbox


async def dropped_and_back(server: SandboxServer, world: World, client: Any, key_id: int) -> None:
    """Drop the key's one connection: the client reconnects by itself and answers again."""
    assert await server.drop(key_id) == 1
    await world.wait_for(lambda: len(world.opened) == 2)
    assert (await client.get_me()).id == SELF_ID


class TestConnect:
    @pytest.mark.timeout(30)
    @pytest.mark.parametrize(
        "connection",
        [ConnectionTcpFull, ConnectionTcpAbridged, ConnectionTcpIntermediate],
    )
    async def test_connect_and_get_me(
        self, server: SandboxServer, world: World, connection: type[Connection]
    ) -> None:
        """Each transport connects, and get_me returns the dispatcher's self user."""
        key = world.add_key()
        async with telethon_client(server.port, key, connection) as client, asyncio.timeout(20):
            await client.connect()
            me = await client.get_me()
            assert me.id == SELF_ID
            assert me.first_name == "Sandbox"
            assert await client.is_user_authorized()
        assert world.opened[0].transport.value in connection.__name__.lower()

    @pytest.mark.timeout(30)
    async def test_strict_salt_is_per_key(self, server: SandboxServer, world: World) -> None:
        """Salt 0 gets bad_server_salt once; reconnects and new clients use the key's salt."""
        key = world.add_key()
        key_id = mtproto.key_id_of(key)
        async with telethon_client(server.port, key) as client, asyncio.timeout(20):
            await client.connect()
            await world.wait_for(lambda: "updates.GetDifferenceRequest" in world.names())
            assert server.stats().bad_salts == {key_id: 1}
            # Telethon exposes its salt only on the sender's state.
            assert client._sender._state.salt == server.server_salt(key_id)
            await dropped_and_back(server, world, client, key_id)
            assert server.stats().bad_salts == {key_id: 1}
        async with telethon_client(server.port, key) as second, asyncio.timeout(20):
            await second.connect()
            assert second._sender._state.salt == server.server_salt(key_id)
        assert server.stats().bad_salts == {key_id: 2}

    @pytest.mark.timeout(30)
    async def test_unknown_auth_key(self, server: SandboxServer, world: World) -> None:
        """A key the dispatcher does not know gets transport -404: AuthKeyNotFound."""
        async with telethon_client(server.port, os.urandom(256)) as client, asyncio.timeout(20):
            with pytest.raises(errors.AuthKeyNotFound):
                await client.connect()
        assert world.opened == []

    @pytest.mark.timeout(60)
    async def test_many_clients_connect_concurrently(
        self, server: SandboxServer, world: World
    ) -> None:
        """200 clients connect at once and each gets its own self user (a scale smoke test)."""
        count = 200

        async def one() -> int:
            async with telethon_client(server.port, world.add_key()) as client:
                await client.connect()
                me = await client.get_me()
                return int(me.id)

        async with asyncio.timeout(45):
            ids = await asyncio.gather(*(one() for _ in range(count)))
        assert ids == [SELF_ID] * count
        assert server.stats().connections_opened == count


class TestRpc:
    @pytest.mark.timeout(30)
    async def test_unimplemented_method_fails_fast(
        self, server: SandboxServer, world: World
    ) -> None:
        """A method the dispatcher does not handle raises METHOD_NOT_SUPPORTED, not a hang."""
        async with telethon_client(server.port, world.add_key()) as client, asyncio.timeout(10):
            await client.connect()
            with pytest.raises(errors.RPCError) as raised:
                await client(functions.messages.GetAllStickersRequest(hash=0))
        assert raised.value.code == 400
        assert raised.value.message == "METHOD_NOT_SUPPORTED"
        assert server.stats().requests["messages.GetAllStickersRequest"] == 1

    @pytest.mark.timeout(30)
    async def test_dispatcher_exception_is_internal_error(
        self, server: SandboxServer, world: World
    ) -> None:
        """An unexpected exception in the dispatcher is answered 500 INTERNAL."""
        world.explode.add("help.GetNearestDcRequest")
        key = world.add_key()
        async with (
            telethon_client(
                server.port, key, request_retries=0, raise_last_call_error=True
            ) as client,
            asyncio.timeout(10),
        ):
            await client.connect()
            with pytest.raises(errors.ServerError) as raised:
                await client(functions.help.GetNearestDcRequest())
        assert raised.value.code == 500
        assert raised.value.message == "INTERNAL"

    @pytest.mark.timeout(30)
    async def test_ping_gets_pong(self, server: SandboxServer, world: World) -> None:
        """An explicit ping is answered with a top-level pong carrying the ping_id."""
        async with telethon_client(server.port, world.add_key()) as client, asyncio.timeout(10):
            await client.connect()
            pong = await client(functions.PingRequest(ping_id=4242))
        assert isinstance(pong, types.Pong)
        assert pong.ping_id == 4242


class TestUpdatesAndDrops:
    @pytest.mark.timeout(30)
    async def test_pushed_updates_fire_new_message(
        self, server: SandboxServer, world: World
    ) -> None:
        """A pushed Updates{UpdateNewMessage} in a basic group fires events.NewMessage."""
        key = world.add_key()
        received: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        async with telethon_client(server.port, key) as client, asyncio.timeout(20):

            async def on_message(event: Any) -> None:
                if not received.done():
                    received.set_result(event)

            client.add_event_handler(on_message, events.NewMessage)
            await client.connect()
            await world.wait_for(lambda: "updates.GetDifferenceRequest" in world.names())
            message = types.Message(
                id=1,
                peer_id=types.PeerChat(GROUP_ID),
                from_id=types.PeerUser(MEMBER_ID),
                date=now(),
                message="hello fleet",
            )
            updates = types.Updates(
                updates=[types.UpdateNewMessage(message=message, pts=PTS + 1, pts_count=1)],
                users=[types.User(id=MEMBER_ID, access_hash=55, first_name="Member")],
                chats=[types.Chat(GROUP_ID, "Group", types.ChatPhotoEmpty(), 3, now(), 1)],
                date=now(),
                seq=SEQ + 1,
            )
            assert await server.push(mtproto.key_id_of(key), updates) == 1
            event = await received
        assert event.raw_text == "hello fleet"
        assert event.chat_id == -GROUP_ID
        assert event.sender_id == MEMBER_ID
        assert "updates.GetDifferenceRequest" not in world.names()[len(CONNECT_TRANSCRIPT) :]

    @pytest.mark.timeout(30)
    async def test_drop_reconnects(self, server: SandboxServer, world: World) -> None:
        """After drop() the client reconnects by itself and later calls work."""
        key = world.add_key()
        key_id = mtproto.key_id_of(key)
        async with telethon_client(server.port, key) as client, asyncio.timeout(20):
            await client.connect()
            assert server.stats().connections == {key_id: 1}
            await dropped_and_back(server, world, client, key_id)
            assert server.stats().connections == {key_id: 1}
        assert server.stats().duplicate_use == {}

    @pytest.mark.timeout(30)
    async def test_connect_transcript(self, server: SandboxServer, world: World) -> None:
        """The exact requests Telethon 1.45 sends on connect, and on reconnect after a drop.

        If a Telethon upgrade changes either sequence, this fails: the sandbox's world model
        relies on it.
        """
        key = world.add_key()
        key_id = mtproto.key_id_of(key)
        world.hold.add("help.GetNearestDcRequest")
        async with telethon_client(server.port, key) as client, asyncio.timeout(20):
            await client.connect()
            await world.wait_for(lambda: len(world.transcript) >= len(CONNECT_TRANSCRIPT))
            first = world.opened[0].connection_id
            assert world.names(first) == CONNECT_TRANSCRIPT
            pending = asyncio.create_task(client(functions.help.GetNearestDcRequest()))
            await world.wait_for(lambda: "help.GetNearestDcRequest" in world.names())
            assert await server.drop(key_id) == 1
            nearest = await pending
            await world.wait_for(lambda: "users.GetUsersRequest" in world.names(first + 1))
            assert nearest.this_dc == 2
            assert world.names(first + 1) == ["help.GetNearestDcRequest", "users.GetUsersRequest"]
            assert world.opened[1].connection_id == first + 1

    @pytest.mark.timeout(30)
    async def test_duplicate_use_is_counted(self, server: SandboxServer, world: World) -> None:
        """A request on an older connection after a newer one of the same key was used counts."""
        key = world.add_key()
        key_id = mtproto.key_id_of(key)
        async with (
            telethon_client(server.port, key) as older,
            telethon_client(server.port, key) as newer,
            asyncio.timeout(20),
        ):
            await older.connect()
            await newer.connect()
            assert server.stats().duplicate_use == {}
            assert server.stats().connections == {key_id: 2}
            await older(functions.help.GetNearestDcRequest())
            assert server.stats().duplicate_use == {key_id: 1}

    @pytest.mark.timeout(30)
    async def test_latency_and_refusal_knobs(self, server: SandboxServer, world: World) -> None:
        """Refused connections are closed until the window ends; latency delays answers."""
        key = world.add_key()
        key_id = mtproto.key_id_of(key)
        server.refuse(key_id, 0.5)
        loop = asyncio.get_running_loop()
        async with telethon_client(server.port, key) as client, asyncio.timeout(20):
            started = loop.time()
            await client.connect()
            assert loop.time() - started >= 0.5
            server.set_latency(key_id, 0.3)
            started = loop.time()
            await client(functions.help.GetNearestDcRequest())
            assert loop.time() - started >= 0.3
        assert server.stats().refused[key_id] >= 1


class TestTransportCodecs:
    """The framing codecs on in-memory streams, including paths Telethon rarely takes."""

    @staticmethod
    def stream(data: bytes) -> asyncio.StreamReader:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return reader

    @pytest.mark.timeout(10)
    @pytest.mark.parametrize("size", [4, 504, 508, 4096])
    async def test_abridged_round_trip(self, size: int) -> None:
        """Short and long abridged lengths (one byte, or 0x7f and three) decode back."""
        payload = os.urandom(size)
        framed = transport.AbridgedCodec().encode(payload)
        codec = await transport.detect(self.stream(b"\xef" + framed))
        assert codec.kind is transport.TransportKind.ABRIDGED
        assert await codec.read_packet(self.stream(framed)) == payload

    @pytest.mark.timeout(10)
    async def test_full_detects_and_checks_crc(self) -> None:
        """TcpFull is detected from its first length word; a corrupted CRC is refused."""
        payload = os.urandom(64)
        framed = transport.FullCodec().encode(payload)
        reader = self.stream(framed + framed[:-1] + bytes([framed[-1] ^ 1]))
        codec = await transport.detect(reader)
        assert codec.kind is transport.TransportKind.FULL
        assert await codec.read_packet(reader) == payload
        with pytest.raises(transport.TransportError, match="CRC"):
            await codec.read_packet(reader)

    @pytest.mark.timeout(10)
    async def test_transport_error_is_a_four_byte_packet(self) -> None:
        """-429 is framed as one 4-byte packet holding the little-endian negative code."""
        codec = transport.IntermediateCodec()
        framed = codec.encode_error(transport.TRANSPORT_FLOOD)
        assert framed == (4).to_bytes(4, "little") + (-429).to_bytes(4, "little", signed=True)

    @pytest.mark.timeout(10)
    async def test_obfuscated_transport_is_refused(self) -> None:
        """Random first bytes (an obfuscated transport) are a TransportError, not a hang."""
        with pytest.raises(transport.TransportError):
            await transport.detect(self.stream(b"\x01\x02\x03\x05" + os.urandom(60)))
