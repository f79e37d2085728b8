"""The control API, the Sandbox runner and ``tgfleet sandbox`` against real sockets.

The world dispatcher (``methods.WorldDispatcher``) is built in parallel; until then these
tests run the Sandbox with the protocol tests' stand-in dispatcher, extended to consult the
fault registry, so faults still reach a real Telethon client as its own exceptions.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from telethon import errors, functions, types
from telethon.tl.tlobject import TLRequest

from tests.sandbox.live import serving, telethon_client
from tests.sandbox.test_protocol import World as ProtocolDispatcher
from tgfleet.exceptions import InvalidInput
from tgfleet.sandbox import mtproto
from tgfleet.sandbox.client import ControlError, SandboxControl
from tgfleet.sandbox.control import create_control_app
from tgfleet.sandbox.control_server import ControlServer
from tgfleet.sandbox.delivery import Delivery
from tgfleet.sandbox.faults import FaultRegistry
from tgfleet.sandbox.mint import mint
from tgfleet.sandbox.mtproto import Result
from tgfleet.sandbox.runner import Sandbox
from tgfleet.sandbox.server import CallContext, RpcFailure, SandboxServer
from tgfleet.sandbox.state import WorldState
from tgfleet.sandbox.world import TrafficSettings, World

GET_SELF = functions.users.GetUsersRequest([types.InputUserSelf()])


class FaultyDispatcher(ProtocolDispatcher):
    """The stand-in dispatcher, knowing the world's keys and asking the fault registry."""

    def __init__(self, state: WorldState, faults: FaultRegistry) -> None:
        super().__init__()
        self.faults = faults
        self.keys = {mtproto.key_id_of(a.auth_key): a.auth_key for a in state.world.accounts}
        self.account_by_key = {mtproto.key_id_of(a.auth_key): a.id for a in state.world.accounts}
        self.published: list[Delivery] = []
        self.got_deliveries = asyncio.Event()

    def attach(self, server: SandboxServer) -> None:
        self.server = server

    async def call(self, ctx: CallContext, request: TLRequest) -> Result:
        error = self.faults.before_call(
            self.account_by_key[ctx.auth_key_id], mtproto.method_name(request), None
        )
        if error is not None:
            raise RpcFailure(*error)
        return await super().call(ctx, request)

    async def publish(self, deliveries: Sequence[Delivery]) -> int:
        self.published.extend(deliveries)
        self.got_deliveries.set()
        return 0


@pytest.fixture
async def world(tmp_path: Path) -> World:
    return await asyncio.to_thread(mint, tmp_path, accounts=2, groups=2, members=3)


@pytest.fixture
async def sandbox(world: World) -> AsyncIterator[Sandbox]:
    async with serving(Sandbox(world, traffic=False, dispatcher_factory=FaultyDispatcher)) as box:
        assert isinstance(box.dispatcher, FaultyDispatcher)
        box.dispatcher.port = box.port
        yield box


@pytest.fixture
async def control(sandbox: Sandbox) -> AsyncIterator[SandboxControl]:
    async with SandboxControl(f"http://127.0.0.1:{sandbox.control_port}") as client:
        yield client


def published(sandbox: Sandbox) -> list[Delivery]:
    assert isinstance(sandbox.dispatcher, FaultyDispatcher)
    return sandbox.dispatcher.published


async def expect_error(status: int, call: object) -> ControlError:
    assert asyncio.iscoroutine(call)
    with pytest.raises(ControlError) as caught:
        await call
    assert caught.value.status_code == status, caught.value
    assert caught.value.error
    assert caught.value.detail
    return caught.value


@pytest.mark.timeout(30)
class TestControlApi:
    async def test_health(self, sandbox: Sandbox, control: SandboxControl) -> None:
        """/health answers with the MTProto port clients use."""
        assert await control.health() == {"status": "ok", "port": sandbox.port}

    async def test_fault_rules_crud(self, sandbox: Sandbox, control: SandboxControl) -> None:
        """Rules are added by username or id, listed, cleared one by one or all at once."""
        rule = await control.add_fault(
            "flood_wait", account="fleet_0001", method="messages.sendMessage", seconds=30, count=2
        )
        assert rule["message"] == "FLOOD_WAIT_30"
        assert rule["account_id"] == sandbox.world.accounts[0].id
        assert rule["remaining"] == 2
        banned = await control.add_fault(
            "user_deactivated_ban", account=sandbox.world.accounts[1].id
        )
        assert (banned["code"], banned["remaining"]) == (401, None)
        group = sandbox.world.groups[0].id
        forbidden = await control.add_fault("chat_write_forbidden", group=group)
        assert forbidden["method"] == "messages.SendMessageRequest"
        assert [r["id"] for r in await control.faults()] == [
            rule["id"],
            banned["id"],
            forbidden["id"],
        ]
        await control.clear_fault(rule["id"])
        await expect_error(404, control.clear_fault(rule["id"]))
        assert await control.clear_faults() == 2
        assert await control.faults() == []

    async def test_fault_bad_input(self, control: SandboxControl) -> None:
        """Unknown kinds, missing fields and bad numbers are 400; unknown accounts 404."""
        await expect_error(400, control.add_fault("no_such_fault", account="fleet_0001"))
        await expect_error(400, control.add_fault("flood_wait", account="fleet_0001"))
        await expect_error(400, control.add_fault("session_revoked"))
        await expect_error(400, control.add_fault("slowmode_wait", seconds=5))
        await expect_error(
            400, control.add_fault("flood_wait", account="fleet_0001", seconds=5, count=0)
        )
        await expect_error(404, control.add_fault("frozen", account="nobody_here"))
        await expect_error(404, control.add_fault("chat_write_forbidden", group=3_999_999))
        assert await control.faults() == []

    async def test_connection_knobs(self, sandbox: Sandbox, control: SandboxControl) -> None:
        """drop/refuse/latency accept known accounts and reject unknown ones or bad seconds."""
        assert await control.drop("fleet_0001") == 0
        await control.refuse("fleet_0002", 0.5)
        await control.set_latency(sandbox.world.accounts[0].id, 0)
        await expect_error(404, control.drop("fleet_9999"))
        await expect_error(400, control.refuse("fleet_0001", -1))
        await expect_error(400, control.set_latency("fleet_0001", 10**9))

    async def test_member_post_is_published(
        self, sandbox: Sandbox, control: SandboxControl
    ) -> None:
        """A simulated member's post reaches every fleet account in the group via publish."""
        group = sandbox.world.groups[0]
        member = next(uid for uid in group.members if uid in sandbox.world.members_by_id)
        result = await control.post_message(group.id, member, "hello @fleet_0001")
        assert result["deliveries"] == len(sandbox.world.accounts)
        assert sorted(d.account_id for d in published(sandbox)) == sorted(
            a.id for a in sandbox.world.accounts
        )
        assert all(d.text == "hello @fleet_0001" for d in published(sandbox))
        # Stats log only what fleet accounts send, not members.
        assert (await control.stats())["messages_sent"] == {}

    async def test_member_post_bad_input(self, sandbox: Sandbox, control: SandboxControl) -> None:
        """Replies to nothing, outsiders, empty text are 400; unknown peers are 404."""
        group, other = sandbox.world.groups
        member = next(uid for uid in group.members if uid in sandbox.world.members_by_id)
        await expect_error(
            400, control.post_message(group.id, member, "hi", reply_to_account="fleet_0001")
        )
        await expect_error(400, control.post_message(other.id, member, "not my group"))
        await expect_error(400, control.post_message(group.id, member, "   "))
        await expect_error(404, control.post_message(group.id, "fleet_0001", "not a member"))
        await expect_error(404, control.post_message(group.id, 2_999_999, "who"))
        await expect_error(404, control.post_message(4_000_000, member, "where"))
        assert published(sandbox) == []

    async def test_sent_messages_are_logged_once(
        self, sandbox: Sandbox, control: SandboxControl
    ) -> None:
        """A fleet account's post is logged with its time; a re-sent random_id is not."""
        account = sandbox.world.accounts[0]
        group = sandbox.world.groups[1]
        for _ in range(2):
            sandbox.state.post(group.id, account.id, "from the fleet", random_id=42)
        sent = (await control.stats())["messages_sent"]
        assert list(sent) == [account.username]
        (message,) = sent[account.username]
        assert message["group_id"] == group.id
        assert message["text"] == "from the fleet"
        assert message["at"] > 0

    async def test_unknown_route_is_json_404(self, sandbox: Sandbox) -> None:
        """Even a path that does not exist answers {"error", "detail"}."""
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"http://127.0.0.1:{sandbox.control_port}/nope")
        assert response.status_code == 404
        assert set(response.json()) == {"error", "detail"}

    def test_refuses_non_loopback_without_flag(self, sandbox: Sandbox) -> None:
        """No auth means no public bind unless explicitly allowed."""
        app = create_control_app(sandbox)
        with pytest.raises(InvalidInput):
            ControlServer(app, host="0.0.0.0")  # noqa: S104 -- the bind under test
        assert ControlServer(app, host="0.0.0.0", allow_remote=True).host == "0.0.0.0"  # noqa: S104 -- same
        assert ControlServer(app, host="localhost").host == "127.0.0.1"


@pytest.mark.timeout(60)
class TestFaultsReachTelethon:
    async def test_faults_and_observation(self, sandbox: Sandbox, control: SandboxControl) -> None:
        """Injected faults surface as Telethon's own errors; stats see the connection."""
        account = sandbox.world.accounts[0]
        async with telethon_client(sandbox.port, account.auth_key, flood_sleep_threshold=0) as tg:
            async with asyncio.timeout(15):
                await tg.connect()
                await tg(GET_SELF)
                stats = await control.stats()
                assert stats["connections"] == {account.username: 1}
                assert stats["requests"]["users.GetUsersRequest"] >= 1

                await control.add_fault(
                    "flood_wait", account=account.username, method="help.getNearestDc", seconds=17
                )
                with pytest.raises(errors.FloodWaitError) as flood:
                    await tg(functions.help.GetNearestDcRequest())
                assert flood.value.seconds == 17
                assert await control.faults() == []  # count 1: consumed by that call
                await tg(GET_SELF)  # other methods were never affected

                rule = await control.add_fault("user_deactivated_ban", account=account.id)
                with pytest.raises(errors.UserDeactivatedBanError):
                    await tg(GET_SELF)
                await control.clear_fault(rule["id"])
                await tg(GET_SELF)

                assert await control.drop(account.username) == 1


@pytest.mark.timeout(30)
async def test_traffic_loop_publishes(world: World) -> None:
    """With traffic on, simulated members' messages reach publish in real time."""
    busy = replace(world, traffic=TrafficSettings(seed=1, messages_per_minute=1200))
    box = Sandbox(busy, traffic=True, traffic_interval=0.05, dispatcher_factory=FaultyDispatcher)
    assert isinstance(box.dispatcher, FaultyDispatcher)
    async with asyncio.timeout(15), box:
        await box.dispatcher.got_deliveries.wait()
    assert all(d.kind in {"message", "join"} for d in published(box))


CLI = [sys.executable, "-m", "tgfleet", "sandbox"]


@pytest.mark.timeout(90)
async def test_cli_mint_then_run(tmp_path: Path) -> None:
    """`sandbox mint` writes a world; `sandbox run` prints the real ports, serves /health,
    and exits 0 on SIGTERM."""
    out = tmp_path / "world"
    env = {**os.environ, "TGFLEET_LOG_LEVEL": "WARNING"}
    mint_proc = await asyncio.create_subprocess_exec(
        *CLI, "mint", "--accounts", "2", "--groups", "2", "--out", str(out), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        stdout, stderr = await mint_proc.communicate()
    assert mint_proc.returncode == 0, stderr.decode()
    assert "minted 2 accounts, 2 groups" in stdout.decode()

    proc = await asyncio.create_subprocess_exec(
        *CLI, "--world", str(out / "world.yaml"), "--port", "0", "--control-port", "0",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode().strip()
        assert line.startswith("sandbox ready on 127.0.0.1:"), line
        control_port = int(line.rsplit(":", 1)[1].rstrip(")"))
        mtproto_port = int(line.split()[3].rsplit(":", 1)[1])
        assert 0 not in {control_port, mtproto_port}
        async with SandboxControl(f"http://127.0.0.1:{control_port}") as control:
            assert await control.health() == {"status": "ok", "port": mtproto_port}
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.timeout(60)
async def test_real_dispatcher_end_to_end(world: World) -> None:
    """With the real WorldDispatcher: a Telethon account sends, is logged in stats, and a
    sendMessage fault surfaces as ChatWriteForbiddenError."""
    account = world.accounts[0]
    group = next(g for g in world.groups if g.kind == "supergroup")
    async with (
        asyncio.timeout(30),
        Sandbox(world, traffic=False) as box,
        SandboxControl(f"http://127.0.0.1:{box.control_port}") as control,
        telethon_client(box.port, account.auth_key, flood_sleep_threshold=0) as tg,
    ):
        await tg.connect()
        me = await tg.get_me()
        assert me.id == account.id
        assert group.username is not None
        chat = await tg.get_entity(group.username)
        await tg.send_message(chat, "hello from the fleet")
        sent = (await control.stats())["messages_sent"][account.username]
        assert [m["text"] for m in sent] == ["hello from the fleet"]
        await control.add_fault("chat_write_forbidden", account=account.username, group=group.id)
        with pytest.raises(errors.ChatWriteForbiddenError):
            await tg.send_message(chat, "forbidden")
        assert len((await control.stats())["messages_sent"][account.username]) == 1
