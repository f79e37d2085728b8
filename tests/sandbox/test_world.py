"""The world file (load, dump, validation), minting sessions, and the runtime WorldState."""

from __future__ import annotations

import base64
import copy
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from telethon.sessions import SQLiteSession

from tgfleet.sandbox.delivery import Delivery
from tgfleet.sandbox.mint import mint
from tgfleet.sandbox.rule_errors import (
    ChannelPrivate,
    ChatForbidden,
    ChatWriteForbidden,
    DifferenceTooLong,
    ReplyInvalid,
    SlowmodeWait,
    UserAlreadyParticipant,
)
from tgfleet.sandbox.state import WorldState
from tgfleet.sandbox.world import (
    TrafficSettings,
    World,
    WorldAccount,
    WorldError,
    WorldGroup,
    WorldMember,
)
from tgfleet.sandbox.world_file import dump_world, load_world, parse_world, world_to_dict

A1, A2, A3 = 1_000_001, 1_000_002, 1_000_003
M1, M2, M3 = 2_000_001, 2_000_002, 2_000_003
BASIC1, BASIC2 = 3_000_001, 3_000_002
SUPER, READ_ONLY = 1_500_000_001, 1_500_000_002


def make_world() -> World:
    """Three accounts, three members; two basic groups with different account sets, a
    supergroup, and a read-only supergroup where A3 is admin."""
    accounts = tuple(
        WorldAccount(
            id=uid,
            access_hash=uid * 7,
            first_name=f"Fleet {n}",
            username=f"fleet_000{n}",
            auth_key=bytes([n]) * 256,
            phone=f"9996620000{n}" if n == 1 else None,
        )
        for n, uid in enumerate((A1, A2, A3), start=1)
    )
    members = (
        WorldMember(id=M1, access_hash=11, first_name="Ada", last_name="Okafor", username="ada_o"),
        WorldMember(id=M2, access_hash=12, first_name="Boris"),
        WorldMember(id=M3, access_hash=13, first_name="Chen", username="chen_w"),
    )
    groups = (
        WorldGroup(id=BASIC1, kind="basic", title="Basic one", members=(A1, A2, M1), admins=(M1,)),
        WorldGroup(id=BASIC2, kind="basic", title="Basic two", members=(A1, M2)),
        WorldGroup(
            id=SUPER,
            kind="supergroup",
            title="Super",
            username="super_group",
            access_hash=99,
            members=(A1, A2, A3, M1, M2),
            admins=(A3,),
            slowmode_seconds=30,
        ),
        WorldGroup(
            id=READ_ONLY,
            kind="supergroup",
            title="Announcements",
            access_hash=98,
            members=(A1, A3, M1),
            admins=(A3,),
            read_only=True,
        ),
    )
    return World(
        accounts=accounts,
        members=members,
        groups=groups,
        traffic=TrafficSettings(seed=7, keywords=("price",)),
    )


class TestWorldFile:
    def test_round_trip(self, tmp_path: Path) -> None:
        """dump_world then load_world gives an equal world, in a file only the owner reads."""
        world = make_world()
        path = tmp_path / "world.yaml"
        dump_world(world, path)
        assert load_world(path) == world
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_repr_hides_auth_key(self) -> None:
        """An account's repr never shows its auth key."""
        account = make_world().accounts[0]
        assert "auth_key" not in repr(account)
        assert repr(account.auth_key)[:20] not in repr(account)

    def test_defaults_fill_optional_fields(self) -> None:
        """A minimal file (no traffic, no dc/port) loads with the documented defaults."""
        world = parse_world("version: 1\naccounts: []\n")
        assert (world.dc_id, world.port, world.traffic) == (2, 8443, TrafficSettings())

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a WorldError naming the path."""
        with pytest.raises(WorldError, match="no such world file"):
            load_world(tmp_path / "nope.yaml")


def _block_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000)


def _set(path: tuple[str | int, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def apply(data: dict[str, Any]) -> None:
        target: Any = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return apply


def _delete(path: tuple[str | int, ...]) -> Callable[[dict[str, Any]], None]:
    def apply(data: dict[str, Any]) -> None:
        target: Any = data
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return apply


def _append(path: tuple[str | int, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def apply(data: dict[str, Any]) -> None:
        target: Any = data
        for part in path:
            target = target[part]
        target.append(value)

    return apply


_SHORT_KEY = base64.b64encode(b"\x05" * 255).decode()
_DUP_KEY = base64.b64encode(bytes([1]) * 256).decode()

# (mutation, message fragment "path: problem", text whose last occurrence is the bad line)
VALIDATION_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("version", _set(("version",), 9), "version: unsupported version 9", "version: 9"),
    (
        "unknown member",
        _set(("groups", 0, "members", 2), 2_000_099),
        "groups[0].members[2]: unknown user id 2000099",
        "2000099",
    ),
    (
        "admin not member",
        _append(("groups", 3, "admins"), M3),
        "groups[3].admins[1]: not a member of this group 2000003",
        "- 2000003",
    ),
    (
        "duplicate id",
        _set(("members", 1, "id"), M1),
        "members[1].id: duplicate id 2000001",
        "id: 2000001",
    ),
    (
        "account id range",
        _set(("accounts", 2, "id"), 2_500_000),
        "accounts[2].id: account id 2500000 outside 1000000..1999999",
        "2500000",
    ),
    (
        "supergroup id range",
        _set(("groups", 2, "id"), 3_000_009),
        "groups[2].id: supergroup id 3000009 outside",
        "3000009",
    ),
    (
        "key not base64",
        _set(("accounts", 1, "auth_key"), "not*base64"),
        "accounts[1].auth_key: not valid base64",
        "not*base64",
    ),
    (
        "key length",
        _set(("accounts", 1, "auth_key"), _SHORT_KEY),
        "accounts[1].auth_key: 255 bytes, expected 256",
        _SHORT_KEY,
    ),
    (
        "duplicate key",
        _set(("accounts", 2, "auth_key"), _DUP_KEY),
        "accounts[2].auth_key: same auth key as another account",
        _DUP_KEY,
    ),
    (
        "username short",
        _set(("members", 1, "username"), "abc"),
        "members[1].username: invalid username 'abc'",
        "username: abc",
    ),
    (
        "username starts with digit",
        _set(("accounts", 0, "username"), "1fleet"),
        "accounts[0].username: invalid username '1fleet'",
        "1fleet",
    ),
    (
        "username duplicate ignoring case",
        _set(("members", 2, "username"), "ADA_O"),
        "members[2].username: duplicate username 'ADA_O'",
        "ADA_O",
    ),
    (
        "negative rate",
        _set(("traffic", "messages_per_minute"), -1),
        "traffic.messages_per_minute: must not be negative",
        "messages_per_minute",
    ),
    (
        "ratio above one",
        _set(("traffic", "reply_ratio"), 1.5),
        "traffic.reply_ratio: must be between 0 and 1",
        "reply_ratio",
    ),
    (
        "missing field",
        _delete(("accounts", 1, "access_hash")),
        "accounts[1].access_hash: missing",
        "id: 1000002",
    ),
    (
        "unknown field",
        _set(("groups", 1, "colour"), "red"),
        "groups[1].colour: unknown field",
        "colour: red",
    ),
    (
        "wrong type",
        _set(("groups", 2, "read_only"), "yes"),
        "groups[2].read_only: expected true or false",
        "read_only: 'yes'",
    ),
    (
        "bad kind",
        _set(("groups", 1, "kind"), "channel"),
        "groups[1].kind: expected 'basic' or 'supergroup'",
        "kind: channel",
    ),
    (
        "slowmode in basic group",
        _set(("groups", 0, "slowmode_seconds"), 10),
        "groups[0].slowmode_seconds: slow mode needs a supergroup",
        "slowmode_seconds: 10",
    ),
]


class TestValidation:
    @pytest.mark.parametrize(
        ("mutate", "fragment", "marker"),
        [case[1:] for case in VALIDATION_CASES],
        ids=[case[0] for case in VALIDATION_CASES],
    )
    def test_error_names_field_and_line(
        self, mutate: Callable[[dict[str, Any]], None], fragment: str, marker: str
    ) -> None:
        """Each invalid world fails with the file name, the line, the field path and why."""
        data = copy.deepcopy(world_to_dict(make_world()))
        mutate(data)
        text = _block_yaml(data)
        line = text[: text.rindex(marker)].count("\n") + 1
        with pytest.raises(WorldError) as caught:
            parse_world(text, source="world.yaml")
        assert f"world.yaml line {line}: {fragment}" in caught.value.message
        assert caught.value.code == "bad_world"
        assert caught.value.status_code == 400

    def test_yaml_syntax_error_has_line(self) -> None:
        """Broken YAML is reported with its line, not as a traceback."""
        with pytest.raises(WorldError, match=r"world.yaml line 3: not valid YAML"):
            parse_world("version: 1\nport: 1\n  bad: x\n")

    def test_top_level_must_be_mapping(self) -> None:
        """A file that is a list or empty says so."""
        with pytest.raises(WorldError, match=r"\(top level\): expected a mapping"):
            parse_world("")


class TestMint:
    def test_sessions_open_in_telethon(self, tmp_path: Path) -> None:
        """Every session points at 127.0.0.1:port on the world's DC with the world's key."""
        world = mint(tmp_path, accounts=3, groups=2, port=9443, seed=1)
        assert load_world(tmp_path / "world.yaml") == world
        for account in world.accounts:
            path = tmp_path / f"{account.username}.session"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            session = SQLiteSession(str(path))
            try:
                assert (session.dc_id, session.server_address, session.port) == (
                    2,
                    "127.0.0.1",
                    9443,
                )
                assert session.auth_key.key == account.auth_key
            finally:
                session.close()
        assert stat.S_IMODE((tmp_path / "world.yaml").stat().st_mode) == 0o600

    def test_layout(self, tmp_path: Path) -> None:
        """Groups hold every account plus their own members; spare members exist to join."""
        world = mint(tmp_path, accounts=4, groups=3, members=2, seed=2)
        account_ids = {a.id for a in world.accounts}
        assert [g.kind for g in world.groups] == ["basic", "supergroup", "basic"]
        for group in world.groups:
            assert account_ids <= set(group.members)
            assert len(set(group.members) - account_ids) == 2
        in_groups = {uid for g in world.groups for uid in g.members}
        assert len([m for m in world.members if m.id not in in_groups]) == 2

    def test_big_fleet_gets_supergroups(self, tmp_path: Path) -> None:
        """With more people than a basic group holds, every group is a supergroup."""
        world = mint(tmp_path, accounts=250, groups=2, seed=3)
        assert {g.kind for g in world.groups} == {"supergroup"}

    def test_refuses_to_overwrite(self, tmp_path: Path) -> None:
        """A second mint into the same directory fails unless forced; forced, keys change."""
        first = mint(tmp_path, accounts=2, groups=1, seed=4)
        with pytest.raises(WorldError, match="exists"):
            mint(tmp_path, accounts=2, groups=1, seed=4)
        assert load_world(tmp_path / "world.yaml") == first
        second = mint(tmp_path, accounts=2, groups=1, seed=4, force=True)
        assert load_world(tmp_path / "world.yaml") == second
        session = SQLiteSession(str(tmp_path / "fleet_0001.session"))
        try:
            assert session.auth_key.key == second.accounts[0].auth_key
        finally:
            session.close()

    def test_refuses_stray_session(self, tmp_path: Path) -> None:
        """A leftover session file (an interrupted mint) also blocks an unforced mint."""
        (tmp_path / "fleet_0001.session").write_bytes(b"")
        with pytest.raises(WorldError, match=r"fleet_0001\.session exists"):
            mint(tmp_path, accounts=1, groups=1)

    def test_deterministic_but_for_keys(self, tmp_path: Path) -> None:
        """The same seed gives the same world except the auth keys, which are random."""
        one = mint(tmp_path / "a", accounts=3, groups=2, seed=5)
        two = mint(tmp_path / "b", accounts=3, groups=2, seed=5)
        assert {a.auth_key for a in one.accounts}.isdisjoint(a.auth_key for a in two.accounts)
        same_keys = tuple(
            replace(a, auth_key=b.auth_key) for a, b in zip(one.accounts, two.accounts, strict=True)
        )
        assert replace(one, accounts=same_keys) == two
        assert mint(tmp_path / "c", accounts=3, groups=2, seed=6).members != one.members


def _state(world: World | None = None, **kwargs: Any) -> WorldState:
    return WorldState(world or make_world(), clock=lambda: 1_700_000_000.0, **kwargs)


def _by_account(deliveries: list[Delivery]) -> dict[int, Delivery]:
    return {d.account_id: d for d in deliveries}


class TestWorldStateBookkeeping:
    def test_basic_group_pts_and_seq_per_account(self) -> None:
        """Each account's pts and seq advance by pts_count/1 with no gaps, its own sequence."""
        state = _state()
        seen: dict[int, list[Delivery]] = {A1: [], A2: []}
        for n in range(5):
            group = BASIC2 if n % 2 else BASIC1
            for d in state.post(group, M1 if group == BASIC1 else M2, f"hi {n}"):
                seen[d.account_id].append(d)
        for account, deliveries in seen.items():
            pts, seq = 0, 0
            for d in deliveries:
                assert d.pts == pts + d.pts_count
                assert d.seq == seq + 1
                pts, seq = d.pts, d.seq
            assert state.state(account).pts == pts
            assert state.state(account).seq == seq
        assert len(seen[A1]) == 5
        assert len(seen[A2]) == 3

    def test_basic_ids_per_account_channel_ids_shared(self) -> None:
        """A basic-group message has each account's own id; a channel message one shared id."""
        state = _state()
        state.post(BASIC2, M2, "only A1 sees this")
        basic = _by_account(state.post(BASIC1, M1, "both see this"))
        assert (basic[A1].message_id, basic[A2].message_id) == (2, 1)
        assert basic[A1].origin_id == basic[A2].origin_id
        channel = state.post(SUPER, M1, "channel")
        assert {d.account_id for d in channel} == {A1, A2, A3}
        assert {(d.message_id, d.pts, d.seq) for d in channel} == {(1, 1, 0)}
        # Channel traffic leaves the accounts' own pts alone.
        assert state.state(A1).pts == 2
        assert state.channel_pts(SUPER) == 1

    def test_channel_pts_sequence(self) -> None:
        """Channel pts and message ids count up by one per message, joins included."""
        state = _state()
        ptss = [state.post(SUPER, M1, f"m{n}")[0].pts for n in range(3)]
        ptss.append(state.join(SUPER, M3)[0].pts)
        assert ptss == [1, 2, 3, 4]

    def test_sender_gets_own_copy(self) -> None:
        """A fleet account's own message is delivered to it too, marked out, with random_id."""
        state = _state()
        mine = _by_account(state.post(BASIC1, A1, "from me", random_id=42))
        assert mine[A1].out
        assert mine[A1].random_id == 42
        assert not mine[A2].out
        assert mine[A2].random_id is None


class TestWorldStateIdempotency:
    def test_same_random_id_same_deliveries(self) -> None:
        """A re-sent request (same sender, same random_id) returns the first answer, no new pts."""
        state = _state()
        first = state.post(BASIC1, A1, "once", random_id=7)
        pts = state.state(A1).pts
        assert state.post(BASIC1, A1, "once", random_id=7) == first
        assert state.state(A1).pts == pts
        assert len(state.history(A2, BASIC1)) == 1

    def test_random_id_is_per_sender(self) -> None:
        """Another sender's equal random_id is a new message."""
        state = _state()
        state.post(BASIC1, A1, "a", random_id=7)
        state.post(BASIC1, A2, "b", random_id=7)
        assert [d.text for d in state.history(A1, BASIC1)] == ["b", "a"]


class TestWorldStateDifference:
    def test_gap_returns_missed_exactly_once(self) -> None:
        """difference(pts) returns exactly the deliveries after pts; from the new pts, none."""
        state = _state()
        state.post(BASIC1, M1, "seen")
        known = state.state(A2).pts
        missed = [_by_account(state.post(BASIC1, M1, f"missed {n}"))[A2] for n in range(3)]
        got = state.difference(A2, known)
        assert got == missed
        assert state.difference(A2, got[-1].pts) == []
        assert state.difference(A2, known + 2) == missed[2:]

    def test_too_old_pts(self) -> None:
        """A pts older than the backlog is DifferenceTooLong with the current pts."""
        state = _state(backlog_limit=2)
        for n in range(3):
            state.post(BASIC1, M1, f"m{n}")
        assert len(state.difference(A2, 1)) == 2
        with pytest.raises(DifferenceTooLong) as caught:
            state.difference(A2, 0)
        assert caught.value.current_pts == 3

    def test_channel_difference(self) -> None:
        """channel_difference returns the missed channel messages in the caller's view."""
        state = _state()
        state.post(SUPER, M1, "seen")
        later = [state.post(SUPER, M2, f"later {n}") for n in range(2)]
        got = state.channel_difference(A2, SUPER, 1)
        assert [d.text for d in got] == ["later 0", "later 1"]
        assert [d.pts for d in got] == [2, 3]
        assert {d.account_id for d in got} == {A2}
        assert got == [_by_account(batch)[A2] for batch in later]
        assert state.channel_difference(A2, SUPER, 3) == []

    def test_channel_difference_needs_membership(self) -> None:
        """Asking about a supergroup one is not in is CHANNEL_PRIVATE."""
        state = _state()
        with pytest.raises(ChannelPrivate) as caught:
            state.channel_difference(A2, READ_ONLY, 0)
        assert caught.value.rpc_error == (400, "CHANNEL_PRIVATE")


class TestWorldStateHistory:
    @pytest.mark.parametrize("group", [BASIC1, SUPER])
    def test_newest_first_with_offset(self, group: int) -> None:
        """history is newest first; offset_id returns only older messages."""
        state = _state()
        for n in range(5):
            state.post(group, M1, f"m{n}")
        assert [d.text for d in state.history(A2, group, limit=2)] == ["m4", "m3"]
        older = state.history(A2, group, limit=10, offset_id=4)
        assert [d.message_id for d in older] == [3, 2, 1]
        assert [d.text for d in older] == ["m2", "m1", "m0"]

    def test_not_a_member(self) -> None:
        """A basic group one is not in cannot be read."""
        with pytest.raises(ChatForbidden):
            _state().history(A2, BASIC2)


class TestWorldStateRules:
    def test_read_only_group(self) -> None:
        """In a read-only group a non-admin account gets CHAT_WRITE_FORBIDDEN; an admin posts."""
        state = _state()
        with pytest.raises(ChatWriteForbidden) as caught:
            state.post(READ_ONLY, A1, "may I?")
        assert caught.value.rpc_error == (403, "CHAT_WRITE_FORBIDDEN")
        assert state.channel_pts(READ_ONLY) == 0
        assert len(state.post(READ_ONLY, A3, "announcement")) == 2

    def test_slowmode(self) -> None:
        """A non-admin account's second message inside the window is SLOWMODE_WAIT_<left>;
        admins and simulated members are not held back."""
        now = [1_700_000_000.0]
        state = WorldState(make_world(), clock=lambda: now[0])
        state.post(SUPER, A1, "first")
        now[0] += 12
        with pytest.raises(SlowmodeWait) as caught:
            state.post(SUPER, A1, "too soon")
        assert caught.value.rpc_error == (420, "SLOWMODE_WAIT_18")
        state.post(SUPER, A3, "admin")
        state.post(SUPER, A3, "admin again")
        state.post(SUPER, M1, "member")
        state.post(SUPER, M1, "member again")
        now[0] += 18
        state.post(SUPER, A1, "now fine")

    def test_replies_translate_per_account(self) -> None:
        """A reply points at the replied message's id in each recipient's own view."""
        state = _state()
        state.post(BASIC2, M2, "shifts A1's ids")
        original = _by_account(state.post(BASIC1, A2, "question"))
        reply = _by_account(state.post(BASIC1, M1, "answer", reply_to_account=A2))
        assert reply[A1].reply_to == original[A1].message_id == 2
        assert reply[A2].reply_to == original[A2].message_id == 1
        again = _by_account(state.post(BASIC1, A1, "me too", reply_to_msg_id=2))
        assert again[A2].reply_to == 1
        assert state.last_message_id(BASIC1, A2, A1) == 2

    def test_channel_reply_by_id(self) -> None:
        """In a supergroup a reply carries the shared message id for everyone."""
        state = _state()
        state.post(SUPER, M2, "noise")
        original = state.post(SUPER, A2, "question")[0].message_id
        reply = state.post(SUPER, M1, "answer", reply_to_msg_id=original)
        assert {d.reply_to for d in reply} == {original}

    def test_reply_origin_and_sender(self) -> None:
        """Every view of a reply names the replied message's origin, whatever its own ids;
        `sender_of` names who sent an origin and `last_origin` a sender's latest one."""
        state = _state()
        state.post(BASIC2, M2, "shifts A1's ids")
        question = state.post(BASIC1, M1, "question")[0].origin_id
        assert (question, state.last_origin(BASIC1, M1)) == (2, 2)
        reply = _by_account(state.post(BASIC1, A1, "answer", reply_to_msg_id=2))
        assert {d.reply_to_origin for d in reply.values()} == {question}
        assert (reply[A1].reply_to, reply[A2].reply_to) == (2, 1)
        channel = state.post(SUPER, A2, "in the channel")[0]
        assert channel.reply_to_origin is None
        answer = state.post(SUPER, M1, "re", reply_to_account=A2)
        assert {d.reply_to_origin for d in answer} == {channel.origin_id}
        assert [state.sender_of(o) for o in (1, question, reply[A1].origin_id)] == [M2, M1, A1]
        assert state.sender_of(channel.origin_id) == A2
        assert state.sender_of(99) is None
        assert state.last_origin(BASIC2, M1) is None

    def test_sender_of_is_bounded(self) -> None:
        """Only the last ``sender_limit`` origins keep their sender (joins count too)."""
        state = _state(sender_limit=3)
        origins = [state.post(SUPER, M1 if n % 2 else M2, f"m{n}")[0].origin_id for n in range(4)]
        origins.append(state.join(SUPER, M3)[0].origin_id)
        assert origins == [1, 2, 3, 4, 5]
        assert [state.sender_of(o) for o in origins] == [None, None, M2, M1, M3]
        assert len(state._sender_by_origin) == 3

    def test_bad_reply(self) -> None:
        """Replying to an unknown message, or to an account that never posted, is refused."""
        state = _state()
        with pytest.raises(ReplyInvalid):
            state.post(BASIC1, A1, "x", reply_to_msg_id=99)
        with pytest.raises(ReplyInvalid):
            state.post(SUPER, M1, "x", reply_to_account=A2)

    def test_mentions(self) -> None:
        """@usernames of known users become mention ids; unknown names are ignored."""
        state = _state()
        deliveries = state.post(SUPER, M1, "@fleet_0002 and @ADA_O, not @nobody_here")
        assert deliveries[0].mentions == (A2, M1)

    def test_join(self) -> None:
        """A join is a service event to every member account; the joiner can then post."""
        state = _state()
        joined = _by_account(state.join(BASIC1, M3))
        assert set(joined) == {A1, A2}
        assert joined[A1].kind == "join"
        assert joined[A1].sender_id == M3
        assert M3 in state.members_of(BASIC1)
        state.post(BASIC1, M3, "hello all")
        with pytest.raises(UserAlreadyParticipant):
            state.join(BASIC1, M3)

    def test_account_join_gets_future_messages(self) -> None:
        """An account that joins a group receives messages from then on."""
        state = _state()
        state.join(BASIC2, A2)
        assert [g.id for g in state.groups_of(A2)] == [BASIC1, BASIC2, SUPER]
        assert A2 in _by_account(state.post(BASIC2, M2, "welcome"))


def test_auth_keys_are_random_in_mint(tmp_path: Path) -> None:
    """Minted keys are 256 random bytes (not derived from the seed)."""
    world = mint(tmp_path, accounts=2, groups=0, seed=0)
    assert all(len(a.auth_key) == 256 for a in world.accounts)
    assert world.accounts[0].auth_key != world.accounts[1].auth_key
