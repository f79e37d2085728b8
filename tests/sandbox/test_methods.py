"""Telegram methods of the sandbox world against real Telethon clients over loopback.

Each test builds a small world (two fleet accounts, two simulated members, a basic group, a
supergroup and a read-only basic group), serves it with ``SandboxServer(WorldDispatcher(...))``
and drives unmodified ``TelegramClient`` s whose offline sessions hold the accounts' keys.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from telethon import errors, functions, types

from tests.sandbox.live import collect, connected_pair, next_event, serving
from tests.sandbox.live import connected as sandbox_connected
from tgfleet.sandbox import transport
from tgfleet.sandbox.dispatcher import WorldDispatcher
from tgfleet.sandbox.mtproto import key_id_of
from tgfleet.sandbox.server import CallContext, ConnectionInfo, SandboxServer
from tgfleet.sandbox.state import WorldState
from tgfleet.sandbox.world import World, WorldAccount, WorldGroup, WorldMember

ALICE = 1_000_001
BOB = 1_000_002
MEMBER = 2_000_001
OTHER_MEMBER = 2_000_002
BASIC = 3_000_001
READ_ONLY = 3_000_002
SUPER = 1_500_000_001
SUPER_HASH = 987654321
SUPER_USERNAME = "fleetlounge"
MEMBER_USERNAME = "member_one"
# Requests that would mean a pushed update was not self-contained.
ENTITY_FETCHES = (
    "updates.GetDifferenceRequest",
    "updates.GetChannelDifferenceRequest",
    "users.GetUsersRequest",
    "messages.GetMessagesRequest",
    "channels.GetMessagesRequest",
    "messages.GetDialogsRequest",
    "channels.GetChannelsRequest",
    "messages.GetChatsRequest",
)


def small_world() -> World:
    everyone = (ALICE, BOB, MEMBER, OTHER_MEMBER)
    return World(
        accounts=(
            WorldAccount(ALICE, 111, "Alice", "alice_fleet", os.urandom(256)),
            WorldAccount(BOB, 222, "Bob", "bob_fleet", os.urandom(256)),
        ),
        members=(
            WorldMember(MEMBER, 333, "Mia", "Member", MEMBER_USERNAME),
            WorldMember(OTHER_MEMBER, 444, "Otto"),
        ),
        groups=(
            WorldGroup(BASIC, "basic", "Basic group", everyone),
            WorldGroup(
                SUPER,
                "supergroup",
                "Lounge",
                everyone,
                username=SUPER_USERNAME,
                access_hash=SUPER_HASH,
            ),
            WorldGroup(
                READ_ONLY,
                "basic",
                "Announcements",
                (ALICE, BOB, MEMBER),
                admins=(MEMBER,),
                read_only=True,
            ),
        ),
    )


@dataclass
class Sandbox:
    world: World
    state: WorldState
    dispatcher: WorldDispatcher
    server: SandboxServer

    def key(self, account_id: int) -> bytes:
        return self.world.accounts_by_id[account_id].auth_key

    def requests(self) -> dict[str, int]:
        return self.server.stats().requests


class RecordingFaults:
    """A FaultPolicy that floods sendMessage and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, str, int | None]] = []

    def before_call(
        self, account_id: int, method: str, group_id: int | None
    ) -> tuple[int, str] | None:
        self.asked.append((account_id, method, group_id))
        if method == "messages.SendMessageRequest":
            return 420, "FLOOD_WAIT_30"
        return None


@asynccontextmanager
async def serve_sandbox(faults: RecordingFaults | None = None) -> AsyncIterator[Sandbox]:
    world = small_world()
    state = WorldState(world)
    dispatcher = WorldDispatcher(state, faults=faults)
    server = SandboxServer(dispatcher)
    dispatcher.attach(server)
    async with serving(server):
        yield Sandbox(world, state, dispatcher, server)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with serve_sandbox() as running:
        yield running


def connected(sandbox: Sandbox, account_id: int, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
    """A real TelegramClient for ``account_id``, connected and past its initial catch-up."""
    return sandbox_connected(sandbox.server, sandbox.key(account_id), **kwargs)


def alice_and_bob(sandbox: Sandbox) -> AbstractAsyncContextManager[tuple[Any, Any]]:
    """Alice's and Bob's clients, both connected, then 30 s for the block."""
    return connected_pair(sandbox.server, sandbox.key(ALICE), sandbox.key(BOB))


class TestConnect:
    @pytest.mark.timeout(30)
    async def test_get_me_is_the_account(self, sandbox: Sandbox) -> None:
        """connect + get_me returns the account the session's auth key belongs to."""
        async with connected(sandbox, BOB) as client, asyncio.timeout(20):
            me = await client.get_me()
        assert me.id == BOB
        assert me.is_self
        assert me.username == "bob_fleet"
        assert me.access_hash == 222


class TestUpdates:
    @pytest.mark.timeout(40)
    async def test_member_message_is_self_contained(self, sandbox: Sandbox) -> None:
        """A published member message fires NewMessage on both accounts, in a basic group and
        a supergroup, with sender and chat known and no entity fetch over the network."""
        async with alice_and_bob(sandbox) as (alice, bob):
            queues = [collect(alice), collect(bob)]
            before = {name: sandbox.requests().get(name, 0) for name in ENTITY_FETCHES}
            for group_id in (BASIC, SUPER):
                deliveries = sandbox.state.post(group_id, MEMBER, "hello @alice_fleet")
                assert await sandbox.dispatcher.publish(deliveries) == 2
                for queue, viewer in zip(queues, (ALICE, BOB), strict=True):
                    event = await next_event(queue)
                    assert event.raw_text == "hello @alice_fleet"
                    assert event.sender is not None
                    assert event.sender.id == MEMBER
                    assert event.sender.username == MEMBER_USERNAME
                    assert event.chat is not None
                    assert event.chat.id == group_id
                    assert event.message.mentioned == (viewer == ALICE)
            assert isinstance(event.chat, types.Channel)
            assert event.chat.megagroup
            await asyncio.sleep(0.6)  # longer than Telethon's gap timeout
            after = {name: sandbox.requests().get(name, 0) for name in ENTITY_FETCHES}
        assert after == before

    @pytest.mark.timeout(40)
    async def test_pts_gap_is_filled_exactly_once(self, sandbox: Sandbox) -> None:
        """A message one account was never pushed arrives through getDifference, once."""
        async with alice_and_bob(sandbox) as (alice, bob):
            alice_events, bob_events = collect(alice), collect(bob)
            diffs = sandbox.requests()["updates.GetDifferenceRequest"]
            missed = sandbox.state.post(BASIC, MEMBER, "first, never pushed to alice")
            await sandbox.dispatcher.publish([d for d in missed if d.account_id == BOB])
            later = sandbox.state.post(BASIC, OTHER_MEMBER, "second")
            await sandbox.dispatcher.publish(later)
            texts = [(await next_event(alice_events)).raw_text for _ in range(2)]
            bob_texts = [(await next_event(bob_events)).raw_text for _ in range(2)]
            await asyncio.sleep(1.0)
            assert alice_events.empty()
            assert bob_events.empty()
        assert texts == ["first, never pushed to alice", "second"]
        assert bob_texts == texts
        assert sandbox.requests()["updates.GetDifferenceRequest"] > diffs


class TestSendMessage:
    @pytest.mark.timeout(40)
    async def test_send_to_basic_group_and_supergroup(self, sandbox: Sandbox) -> None:
        """send_message returns the world's id; the other account gets it; history has it."""
        async with alice_and_bob(sandbox) as (alice, bob):
            bob_events = collect(bob)
            dialogs = await alice.get_dialogs()
            assert {d.id for d in dialogs} == {-BASIC, -READ_ONLY, int(f"-100{SUPER}")}
            for peer, group_id in ((-BASIC, BASIC), (int(f"-100{SUPER}"), SUPER)):
                text = f"hi from alice to {group_id}"
                sent = await alice.send_message(peer, text)
                [own] = sandbox.state.history(ALICE, group_id, limit=1)
                assert sent.id == own.message_id
                assert sent.out
                event = await next_event(bob_events)
                assert event.raw_text == text
                assert event.sender_id == ALICE
                [latest] = await alice.get_messages(peer)
                assert (latest.id, latest.raw_text) == (sent.id, text)
                [bob_view] = await bob.get_messages(peer)
                assert bob_view.id == event.id
                assert not bob_view.out

    @pytest.mark.timeout(40)
    async def test_reply_to_member_message(self, sandbox: Sandbox) -> None:
        """reply_to reaches the world; the other account sees it as a reply in its own ids."""
        async with alice_and_bob(sandbox) as (alice, bob):
            alice_events, bob_events = collect(alice), collect(bob)
            await sandbox.dispatcher.publish(sandbox.state.post(BASIC, MEMBER, "question?"))
            question = await next_event(alice_events)
            bob_question = await next_event(bob_events)
            sent = await alice.send_message(-BASIC, "answer", reply_to=question.id)
            assert sent.reply_to.reply_to_msg_id == question.id
            answer = await next_event(bob_events)
        assert answer.raw_text == "answer"
        assert answer.reply_to.reply_to_msg_id == bob_question.id

    @pytest.mark.timeout(30)
    async def test_same_random_id_posts_once(self, sandbox: Sandbox) -> None:
        """A sendMessage re-sent with the same random_id answers the same message, posts once."""
        key_id = key_id_of(sandbox.key(ALICE))
        info = ConnectionInfo(1, key_id, "test", transport.TransportKind.FULL, 0.0)
        ctx = CallContext(info, msg_id=1, session_id=1, wrappers=(), layer=None)
        request = functions.messages.SendMessageRequest(
            peer=types.InputPeerChannel(SUPER, SUPER_HASH), message="once", random_id=4242
        )
        first = await sandbox.dispatcher.call(ctx, request)
        second = await sandbox.dispatcher.call(ctx, request)
        assert isinstance(first, types.Updates)
        assert bytes(first.updates[0]) == bytes(second.updates[0])  # type: ignore[union-attr]
        assert first.updates[0].random_id == 4242
        history = sandbox.state.history(BOB, SUPER)
        assert [d.text for d in history] == ["once"]

    @pytest.mark.timeout(30)
    async def test_wrong_channel_hash_is_channel_invalid(self, sandbox: Sandbox) -> None:
        """An InputPeerChannel with the wrong access_hash is CHANNEL_INVALID."""
        async with connected(sandbox, ALICE) as alice, asyncio.timeout(20):
            with pytest.raises(errors.ChannelInvalidError):
                await alice(
                    functions.messages.SendMessageRequest(
                        peer=types.InputPeerChannel(SUPER, SUPER_HASH + 1), message="x"
                    )
                )

    @pytest.mark.timeout(30)
    async def test_read_only_group(self, sandbox: Sandbox) -> None:
        """A non-admin account sending to a read-only group gets ChatWriteForbiddenError."""
        async with connected(sandbox, ALICE) as alice, asyncio.timeout(20):
            with pytest.raises(errors.ChatWriteForbiddenError):
                await alice.send_message(-READ_ONLY, "may I?")
        assert sandbox.state.history(ALICE, READ_ONLY) == []


class TestOtherMethods:
    @pytest.mark.timeout(30)
    async def test_resolve_username(self, sandbox: Sandbox) -> None:
        """Usernames resolve to a member and to the supergroup; unknown ones are not occupied."""
        async with connected(sandbox, ALICE) as alice, asyncio.timeout(20):
            member = await alice.get_entity(MEMBER_USERNAME)
            lounge = await alice.get_entity(f"@{SUPER_USERNAME}")
            with pytest.raises(errors.UsernameNotOccupiedError):
                await alice(functions.contacts.ResolveUsernameRequest(username="nobody_here"))
        assert isinstance(member, types.User)
        assert (member.id, member.access_hash) == (MEMBER, 333)
        assert isinstance(lounge, types.Channel)
        assert (lounge.id, lounge.access_hash, lounge.megagroup) == (SUPER, SUPER_HASH, True)

    @pytest.mark.timeout(30)
    async def test_full_chat_and_channel(self, sandbox: Sandbox) -> None:
        """getFullChat lists participants; getFullChannel and getFullUser answer."""
        async with connected(sandbox, ALICE) as alice, asyncio.timeout(20):
            chat = await alice(functions.messages.GetFullChatRequest(chat_id=BASIC))
            channel = await alice(
                functions.channels.GetFullChannelRequest(types.InputChannel(SUPER, SUPER_HASH))
            )
            user = await alice(functions.users.GetFullUserRequest(types.InputUser(MEMBER, 333)))
        ids = {p.user_id for p in chat.full_chat.participants.participants}
        assert ids == {ALICE, BOB, MEMBER, OTHER_MEMBER}
        assert channel.full_chat.participants_count == 4
        assert user.full_user.common_chats_count == 3

    @pytest.mark.timeout(30)
    async def test_unimplemented_method_fails_fast(self, sandbox: Sandbox) -> None:
        """A method outside the sandbox's list raises METHOD_NOT_SUPPORTED, not a hang."""
        async with connected(sandbox, ALICE) as alice, asyncio.timeout(10):
            with pytest.raises(errors.RPCError) as raised:
                await alice(functions.messages.GetAllStickersRequest(hash=0))
        assert (raised.value.code, raised.value.message) == (400, "METHOD_NOT_SUPPORTED")


class TestFaults:
    @pytest.mark.timeout(30)
    async def test_flood_wait_from_policy(self) -> None:
        """The fault policy's (420, FLOOD_WAIT_30) on sendMessage is FloodWaitError(30)."""
        faults = RecordingFaults()
        async with (
            serve_sandbox(faults) as running,
            connected(running, ALICE, flood_sleep_threshold=0) as alice,
            asyncio.timeout(20),
        ):
            with pytest.raises(errors.FloodWaitError) as raised:
                await alice.send_message(-BASIC, "spam")
        assert raised.value.seconds == 30
        assert (ALICE, "messages.SendMessageRequest", BASIC) in faults.asked
        assert running.state.history(ALICE, BASIC) == []
