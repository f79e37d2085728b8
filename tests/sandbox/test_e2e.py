"""End to end: real Telethon clients against a full ``Sandbox``, faults driven over HTTP.

A small world is minted into ``tmp_path`` and served by the runner's ``Sandbox`` with the
real ``WorldDispatcher`` and no random traffic; every fault and member post goes through
``SandboxControl`` talking to the control API, and every client is an unmodified
``TelegramClient`` (``flood_sleep_threshold=0``) whose offline session holds an account's key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from telethon import errors, functions, types

from tests.sandbox import live
from tests.sandbox.live import collect, next_event, serving, wait_until
from tests.sandbox.live import connected as sandbox_connected
from tgfleet.sandbox.client import SandboxControl
from tgfleet.sandbox.mint import mint
from tgfleet.sandbox.mtproto import key_id_of
from tgfleet.sandbox.runner import Sandbox
from tgfleet.sandbox.world import World, WorldAccount, WorldGroup

GET_SELF = functions.users.GetUsersRequest([types.InputUserSelf()])
GET_STATE = functions.updates.GetStateRequest()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def world(tmp_path: Path) -> World:
    return await asyncio.to_thread(mint, tmp_path, accounts=3, groups=2, members=3)


@pytest.fixture
async def box(world: World) -> AsyncIterator[Sandbox]:
    async with serving(Sandbox(world, traffic=False), stop_within=15) as sandbox:
        yield sandbox


@pytest.fixture
async def control(box: Sandbox) -> AsyncIterator[SandboxControl]:
    async with SandboxControl(f"http://127.0.0.1:{box.control_port}") as client:
        yield client


# --------------------------------------------------------------------------- helpers


def requests(box: Sandbox) -> dict[str, int]:
    return box.server.stats().requests


def connected(
    box: Sandbox, account: WorldAccount, **kwargs: Any
) -> AbstractAsyncContextManager[Any]:
    """A real TelegramClient for ``account`` (``flood_sleep_threshold=0``), connected and past
    its initial catch-up."""
    return sandbox_connected(box.server, account.auth_key, flood_sleep_threshold=0, **kwargs)


def connected_pair(
    box: Sandbox, first: WorldAccount, second: WorldAccount, within: float = 30
) -> AbstractAsyncContextManager[tuple[Any, Any]]:
    """Both accounts' clients, connected, then ``within`` seconds for the block."""
    return live.connected_pair(
        box.server, first.auth_key, second.auth_key, within=within, flood_sleep_threshold=0
    )


def input_peer(group: WorldGroup) -> Any:
    if group.kind == "supergroup":
        assert group.access_hash is not None
        return types.InputPeerChannel(group.id, group.access_hash)
    return types.InputPeerChat(group.id)


def history(group: WorldGroup) -> Any:
    return functions.messages.GetHistoryRequest(
        peer=input_peer(group),
        offset_id=0,
        offset_date=None,
        add_offset=0,
        limit=5,
        max_id=0,
        min_id=0,
        hash=0,
    )


def send(group: WorldGroup, text: str, reply_to: int | None = None) -> Any:
    return functions.messages.SendMessageRequest(
        peer=input_peer(group),
        message=text,
        reply_to=None if reply_to is None else types.InputReplyToMessage(reply_to_msg_id=reply_to),
    )


def supergroup(world: World) -> WorldGroup:
    return next(g for g in world.groups if g.kind == "supergroup")


def basic_group(world: World) -> WorldGroup:
    return next(g for g in world.groups if g.kind == "basic")


def member_of(world: World, group: WorldGroup) -> int:
    return next(m for m in group.members if m in world.members_by_id)


# --------------------------------------------------------------------------- RPC faults


class TestRpcFaults:
    @pytest.mark.timeout(60)
    async def test_flood_wait_for_the_next_k_calls(
        self, world: World, box: Sandbox, control: SandboxControl
    ) -> None:
        """FLOOD_WAIT_N fails the next k calls of the method with FloodWaitError(seconds=N),
        then the method works again; other accounts and methods are untouched."""
        alice, bob = world.accounts[0], world.accounts[1]
        group = supergroup(world)
        async with connected_pair(box, alice, bob, within=45) as (tg, other):
            rule = await control.add_fault(
                "flood_wait",
                account=alice.username,
                method="messages.getHistory",
                seconds=2,
                count=2,
            )
            assert rule["message"] == "FLOOD_WAIT_2"
            assert rule["remaining"] == 2
            # Telethon forgets flood waits of 3 s or less, so both calls reach the sandbox.
            for _ in range(2):
                with pytest.raises(errors.FloodWaitError) as caught:
                    await tg(history(group))
                assert caught.value.seconds == 2
            assert await control.faults() == []
            assert isinstance(await tg(history(group)), types.messages.ChannelMessages)
            assert requests(box)["messages.GetHistoryRequest"] == 3
            await other(history(group))  # another account never saw the rule

            # A longer wait on a distinct method: the seconds come through, and Telethon
            # then refuses that request type client-side without asking the sandbox.
            await control.add_fault(
                "flood_wait", account=alice.username, method="messages.getDialogs", seconds=30
            )
            dialogs = functions.messages.GetDialogsRequest(
                offset_date=None,
                offset_id=0,
                offset_peer=types.InputPeerEmpty(),
                limit=10,
                hash=0,
            )
            with pytest.raises(errors.FloodWaitError) as caught:
                await tg(dialogs)
            assert caught.value.seconds == 30
            asked = requests(box)["messages.GetDialogsRequest"]
            with pytest.raises(errors.FloodWaitError):
                await tg(dialogs)
            assert requests(box)["messages.GetDialogsRequest"] == asked
            assert isinstance(await other(dialogs), types.messages.Dialogs)

    @pytest.mark.timeout(40)
    async def test_frozen_account_is_a_420_without_seconds(
        self, world: World, box: Sandbox, control: SandboxControl
    ) -> None:
        """A frozen account gets 420 FROZEN_METHOD_INVALID: Telethon raises a FloodError
        (FrozenMethodInvalidError) that is not a FloodWaitError and carries no seconds."""
        alice, bob = world.accounts[0], world.accounts[1]
        async with connected_pair(box, alice, bob) as (tg, other):
            await control.add_fault("frozen", account=alice.username)
            for _ in range(2):  # from now on, not just once
                with pytest.raises(errors.FloodError) as caught:
                    await tg(GET_SELF)
                assert isinstance(caught.value, errors.FrozenMethodInvalidError)
                assert not isinstance(caught.value, errors.FloodWaitError)
                assert caught.value.code == 420
                assert getattr(caught.value, "seconds", None) is None
            [me] = await other(GET_SELF)
            assert me.id == bob.id

    @pytest.mark.timeout(40)
    @pytest.mark.parametrize(
        ("kind", "error"),
        [
            ("auth_key_unregistered", errors.AuthKeyUnregisteredError),
            ("session_revoked", errors.SessionRevokedError),
            ("user_deactivated_ban", errors.UserDeactivatedBanError),
        ],
    )
    async def test_unauthorized_from_now_on(
        self,
        world: World,
        box: Sandbox,
        control: SandboxControl,
        kind: str,
        error: type[Exception],
    ) -> None:
        """A 401 fault fails every call of that account from now on, as Telethon's own
        exception; another account keeps working."""
        alice, bob = world.accounts[0], world.accounts[1]
        async with connected_pair(box, alice, bob) as (tg, other):
            [me] = await tg(GET_SELF)
            assert me.id == alice.id
            rule = await control.add_fault(kind, account=alice.id)
            assert (rule["code"], rule["message"]) == (401, kind.upper())
            for request in (GET_SELF, GET_STATE, send(supergroup(world), "hi")):
                with pytest.raises(error):
                    await tg(request)
            [me] = await other(GET_SELF)
            assert me.id == bob.id
            assert [r["kind"] for r in await control.faults()] == [kind]

    @pytest.mark.timeout(40)
    async def test_chat_write_forbidden_only_in_that_group(
        self, world: World, box: Sandbox, control: SandboxControl
    ) -> None:
        """CHAT_WRITE_FORBIDDEN in one group fails sendMessage there only, for that account
        only; what did get sent shows in /stats."""
        alice, bob = world.accounts[0], world.accounts[1]
        banned, other_group = supergroup(world), basic_group(world)
        async with connected_pair(box, alice, bob) as (tg, other):
            await control.add_fault("chat_write_forbidden", account=alice.username, group=banned.id)
            for _ in range(2):
                with pytest.raises(errors.ChatWriteForbiddenError):
                    await tg(send(banned, "forbidden"))
            await tg(send(other_group, "allowed elsewhere"))
            await tg(history(banned))  # reading the group is not affected
            await other(send(banned, "bob may write"))
            sent = (await control.stats())["messages_sent"]
        assert [(m["group_id"], m["text"]) for m in sent[alice.username]] == [
            (other_group.id, "allowed elsewhere")
        ]
        assert [(m["group_id"], m["text"]) for m in sent[bob.username]] == [
            (banned.id, "bob may write")
        ]

    @pytest.mark.timeout(40)
    async def test_slowmode_wait(self, world: World, box: Sandbox, control: SandboxControl) -> None:
        """SLOWMODE_WAIT_N → SlowModeWaitError(seconds=N) for the next sendMessage in the
        group (count defaults to 1); the one after goes through."""
        alice = world.accounts[0]
        group = supergroup(world)
        async with connected(box, alice) as tg, asyncio.timeout(30):
            await control.add_fault(
                "slowmode_wait", account=alice.username, group=group.id, seconds=7
            )
            with pytest.raises(errors.SlowModeWaitError) as caught:
                await tg(send(group, "too soon"))
            assert caught.value.seconds == 7
            assert not isinstance(caught.value, errors.FloodWaitError)
            await tg(send(group, "later"))
            sent = (await control.stats())["messages_sent"][alice.username]
        assert [m["text"] for m in sent] == ["later"]


# --------------------------------------------------------------------------- connection faults


class TestConnectionFaults:
    @pytest.mark.timeout(60)
    async def test_drop_reconnects_and_delivers_later_messages_once(
        self, world: World, box: Sandbox, control: SandboxControl
    ) -> None:
        """After a drop the client reconnects by itself; a message posted while it was
        disconnected and one posted after both arrive, each exactly once."""
        alice = world.accounts[0]
        group = basic_group(world)
        sender = member_of(world, group)
        async with connected(box, alice) as tg, asyncio.timeout(45):
            queue = collect(tg)
            opened = box.server.stats().connections_opened
            # Refuse first so the client cannot be back before the post.
            await control.refuse(alice.username, 1.0)
            assert await control.drop(alice.username) == 1
            posted = await control.post_message(group.id, sender, "while you were away")
            assert posted["pushed"] == 0
            await wait_until(lambda: box.server.stats().connections.get(_key(alice), 0) == 1)
            assert box.server.stats().connections_opened > opened
            await control.post_message(group.id, sender, "welcome back")
            texts = [(await next_event(queue)).raw_text for _ in range(2)]
            await asyncio.sleep(1.0)  # room for a duplicate to show up
            assert queue.empty()
            assert tg.is_connected()
        assert texts == ["while you were away", "welcome back"]

    @pytest.mark.timeout(60)
    async def test_drop_message_while_disconnected_arrives_without_further_traffic(
        self, world: World, box: Sandbox, control: SandboxControl
    ) -> None:
        """Issue 4: a dropped connection auto-reconnects with no message lost."""
        alice = world.accounts[0]
        group = basic_group(world)
        sender = member_of(world, group)
        async with connected(box, alice) as tg, asyncio.timeout(45):
            queue = collect(tg)
            await control.refuse(alice.username, 1.0)
            assert await control.drop(alice.username) == 1
            await control.post_message(group.id, sender, "while you were away")
            await wait_until(lambda: box.server.stats().connections.get(_key(alice), 0) == 1)
            event = await next_event(queue, within=10)
            assert event.raw_text == "while you were away"
            await asyncio.sleep(1.0)
            assert queue.empty()

    @pytest.mark.timeout(60)
    async def test_refuse_delays_reconnect(
        self, world: World, box: Sandbox, control: SandboxControl
    ) -> None:
        """A drop during a T-second refusal reconnects only after T; refusals are counted."""
        alice = world.accounts[0]
        refuse_for = 2.0
        async with connected(box, alice) as tg, asyncio.timeout(45):
            await control.refuse(alice.username, refuse_for)
            started = time.monotonic()
            assert await control.drop(alice.username) == 1
            await wait_until(lambda: box.server.stats().connections.get(_key(alice), 0) == 1, 20)
            elapsed = time.monotonic() - started
            [me] = await tg(GET_SELF)
            stats = await control.stats()
        assert elapsed >= refuse_for - 0.1
        assert me.id == alice.id
        assert stats["refused"][alice.username] >= 1

    @pytest.mark.timeout(40)
    async def test_added_latency(self, world: World, box: Sandbox, control: SandboxControl) -> None:
        """Added latency delays every answer to that account (0 clears it)."""
        alice, bob = world.accounts[0], world.accounts[1]
        async with connected_pair(box, alice, bob) as (tg, other):
            await control.set_latency(alice.username, 0.5)
            started = time.monotonic()
            await tg(GET_SELF)
            assert time.monotonic() - started >= 0.5
            started = time.monotonic()
            await other(GET_SELF)
            assert time.monotonic() - started < 0.5
            await control.set_latency(alice.username, 0)
            started = time.monotonic()
            await tg(GET_SELF)
            assert time.monotonic() - started < 0.5


# --------------------------------------------------------------------------- observation


def _key(account: WorldAccount) -> int:
    return key_id_of(account.auth_key)


class TestObservation:
    @pytest.mark.timeout(40)
    async def test_stats(self, world: World, box: Sandbox, control: SandboxControl) -> None:
        """/stats: live connections per account, requests per method, messages sent."""
        alice, bob = world.accounts[0], world.accounts[1]
        group = supergroup(world)
        async with connected_pair(box, alice, bob) as (tg, other):
            await tg(send(group, "one"))
            await tg(send(basic_group(world), "two"))
            await other(send(group, "three"))
            stats = await control.stats()
        assert stats["connections"] == {alice.username: 1, bob.username: 1}
        assert stats["connections_opened"] >= 2
        assert stats["requests"]["messages.SendMessageRequest"] == 3
        assert stats["requests"]["updates.GetDifferenceRequest"] >= 2
        assert stats["duplicate_use"] == {}
        sent = stats["messages_sent"]
        assert [m["text"] for m in sent[alice.username]] == ["one", "two"]
        assert [m["text"] for m in sent[bob.username]] == ["three"]
        assert world.accounts[2].username not in sent
        for message in sent[alice.username]:
            assert set(message) == {
                "group_id",
                "message_id",
                "at",
                "text",
                "origin_id",
                "reply_to_origin",
                "reply_to_sender",
            }
            assert abs(message["at"] - time.time()) < 60
        after = await control.stats()
        assert after["connections"] == {}

    @pytest.mark.timeout(40)
    async def test_same_auth_key_twice_is_duplicate_use(
        self, world: World, box: Sandbox, control: SandboxControl
    ) -> None:
        """Two clients on the same auth key at once: the older connection used after the
        newer one counts as duplicate use for that account (and only for it)."""
        alice, bob = world.accounts[0], world.accounts[1]
        async with (
            connected(box, alice) as first,
            connected(box, bob) as other,
            connected(box, alice) as second,
            asyncio.timeout(30),
        ):
            assert (await control.stats())["connections"][alice.username] == 2
            await second(GET_SELF)
            await first(GET_SELF)
            await other(GET_SELF)
            stats = await control.stats()
        assert stats["duplicate_use"].get(alice.username, 0) > 0
        assert bob.username not in stats["duplicate_use"]


class TestReplyObservation:
    """/stats says which message each fleet reply answered and whose it was, in world-wide
    origin ids (the ones ``POST /groups/{group}/messages`` answers), whatever the ids in
    each account's view."""

    @pytest.mark.timeout(40)
    @pytest.mark.parametrize("kind", ["basic", "supergroup"])
    async def test_reply_to_a_member_message(
        self, world: World, box: Sandbox, control: SandboxControl, kind: str
    ) -> None:
        """An account replies (through Telethon) to the id under which it received a
        member's message: logged with that message's origin and the member as sender."""
        alice = world.accounts[0]
        group = basic_group(world) if kind == "basic" else supergroup(world)
        member = member_of(world, group)
        other = basic_group(world) if kind == "supergroup" else supergroup(world)
        async with connected(box, alice) as tg, asyncio.timeout(30):
            queue = collect(tg)
            # Earlier traffic in both groups, so origin ids run ahead of the group's ids.
            await control.post_message(other.id, member_of(world, other), "elsewhere")
            await tg(send(group, "before"))
            posted = await control.post_message(group.id, member, "a question")
            while (event := await next_event(queue)).raw_text != "a question":
                pass
            assert event.id == posted["message_ids"][str(alice.id)] == 2
            await tg(send(group, "the answer", reply_to=event.id))
            sent = (await control.stats())["messages_sent"][alice.username]
        before, answer = sent
        assert posted["origin_id"] == 3
        assert (before["origin_id"], before["reply_to_origin"], before["reply_to_sender"]) == (
            2,
            None,
            None,
        )
        assert answer == {
            "group_id": group.id,
            "message_id": 3,
            "at": answer["at"],
            "text": "the answer",
            "origin_id": 4,
            "reply_to_origin": posted["origin_id"],
            "reply_to_sender": member,
        }

    @pytest.mark.timeout(40)
    async def test_reply_to_another_account_and_plain_messages(
        self, world: World, box: Sandbox, control: SandboxControl
    ) -> None:
        """A reply to a fleet account's message names that account as the sender; a
        message that replies to nothing has no reply origin or sender."""
        alice, bob = world.accounts[0], world.accounts[1]
        group = supergroup(world)
        async with connected_pair(box, alice, bob) as (tg, other):
            await other(send(group, "from bob"))
            bobs = (await control.stats())["messages_sent"][bob.username][0]
            await tg(send(group, "to bob", reply_to=bobs["message_id"]))
            await tg(send(group, "to nobody"))
            sent = (await control.stats())["messages_sent"][alice.username]
        assert [
            (m["text"], m["origin_id"], m["reply_to_origin"], m["reply_to_sender"]) for m in sent
        ] == [("to bob", 2, 1, bob.id), ("to nobody", 3, None, None)]
        assert (bobs["origin_id"], bobs["reply_to_origin"], bobs["reply_to_sender"]) == (
            1,
            None,
            None,
        )
