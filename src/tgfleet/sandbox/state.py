"""The running world (`WorldState`): what the MTProto server needs while it serves a world.

It keeps Telegram's update bookkeeping in plain Python (no TL objects) so it can be tested
alone:

- basic groups: message ids, pts and seq are **per account** (every member account sees
  the same message under its own id, as in Telegram's common message box);
- supergroups: one message id and pts sequence **per channel**, shared by all members;
- a bounded backlog per account and per channel, so ``updates.getDifference`` and
  ``updates.getChannelDifference`` return exactly the updates a client missed.

What it refuses raises a ``rule_errors.SandboxRuleError``; what it hands out are
``delivery.Delivery`` objects.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from tgfleet.sandbox.delivery import Delivery, EventKind, UpdateState
from tgfleet.sandbox.message_boxes import AccountBox, ChannelBox, backlog_after
from tgfleet.sandbox.rule_errors import (
    ChannelPrivate,
    ChatForbidden,
    ChatWriteForbidden,
    MessageEmpty,
    MessageTooLong,
    PeerInvalid,
    ReplyInvalid,
    SandboxRuleError,
    SlowmodeWait,
    UserAlreadyParticipant,
    UserInvalid,
)
from tgfleet.sandbox.world import BASIC_GROUP_MAX_MEMBERS, MESSAGE_MAX_CHARS, World, WorldGroup

_MENTION = re.compile(r"@([A-Za-z][A-Za-z0-9_]{4,31})")


class WorldState:
    """The running world: memberships, message ids, pts/seq and backlogs.

    Not thread-safe; the server calls it from its one event loop. ``clock`` gives the unix
    time used for message dates and slow mode. `sender_of` knows who sent each of the last
    ``sender_limit`` events world-wide (messages and joins).
    """

    def __init__(
        self,
        world: World,
        *,
        backlog_limit: int = 10_000,
        history_limit: int = 10_000,
        dedupe_limit: int = 100_000,
        sender_limit: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.world = world
        self._clock = clock
        self._backlog_limit = backlog_limit
        self._dedupe_limit = dedupe_limit
        self._accounts = {a.id: AccountBox(backlog_limit, history_limit) for a in world.accounts}
        self._channels = {
            g.id: ChannelBox(backlog_limit) for g in world.groups if g.kind == "supergroup"
        }
        self._members: dict[int, set[int]] = {g.id: set(g.members) for g in world.groups}
        self._admins: dict[int, frozenset[int]] = {g.id: frozenset(g.admins) for g in world.groups}
        self._users = {a.id for a in world.accounts} | {m.id for m in world.members}
        self._last_origin = 0
        #: (group, sender) → origin of the sender's latest message there.
        self._last_post: dict[tuple[int, int], int] = {}
        self._last_post_at: dict[tuple[int, int], float] = {}
        self._sent: OrderedDict[tuple[int, int], list[Delivery]] = OrderedDict()
        #: origin → sender of the last ``sender_limit`` origins. Origins are consecutive,
        #: so the one falling out is known and a plain dict stays bounded in O(1).
        self._sender_limit = max(1, sender_limit)
        self._sender_by_origin: dict[int, int] = {}

    # ---- reading

    def state(self, account_id: int) -> UpdateState:
        """``updates.getState`` for ``account_id``."""
        box = self._account(account_id)
        return UpdateState(pts=box.pts, qts=box.qts, seq=box.seq, date=int(self._clock()))

    def channel_pts(self, channel_id: int) -> int:
        """The current pts of a supergroup."""
        return self._channel(channel_id).pts

    def members_of(self, group_id: int) -> frozenset[int]:
        """Current member user ids of a group (joins included)."""
        return frozenset(self._group_members(group_id))

    def groups_of(self, account_id: int) -> list[WorldGroup]:
        """The groups ``account_id`` is in now, in world order (for ``getDialogs``)."""
        self._account(account_id)
        return [g for g in self.world.groups if account_id in self._members[g.id]]

    def difference(self, account_id: int, pts: int) -> list[Delivery]:
        """Basic-group deliveries after ``pts``, oldest first (``updates.getDifference``).

        Raises `DifferenceTooLong` when some of them have left the backlog.
        """
        box = self._account(account_id)
        return backlog_after(box.backlog, pts, box.pts, f"account {account_id}")

    def channel_difference(self, account_id: int, channel_id: int, pts: int) -> list[Delivery]:
        """Supergroup messages after ``pts`` as ``account_id`` sees them, oldest first."""
        box = self._channel(channel_id)
        self._require_member(channel_id, account_id)
        events = backlog_after(box.backlog, pts, box.pts, f"channel {channel_id}")
        return [_view(e, account_id, e.message_id, e.reply_to) for e in events]

    def history(
        self, account_id: int, group_id: int, limit: int = 100, offset_id: int = 0
    ) -> list[Delivery]:
        """Newest first, messages with id below ``offset_id`` (0: from the newest)."""
        self._require_member(group_id, account_id)
        if group_id in self._channels:
            source: Iterable[Delivery] = reversed(self._channels[group_id].backlog)
            view = True
        else:
            source = reversed(self._account(account_id).history.get(group_id, ()))
            view = False
        out: list[Delivery] = []
        for event in source:
            if len(out) >= limit:
                break
            if offset_id and event.message_id >= offset_id:
                continue
            out.append(
                _view(event, account_id, event.message_id, event.reply_to) if view else event
            )
        return out

    def sender_of(self, origin_id: int) -> int | None:
        """Who sent the event ``origin_id`` (a member or an account id); None when unknown
        or older than the last ``sender_limit`` events."""
        return self._sender_by_origin.get(origin_id)

    def last_origin(self, group_id: int, sender_id: int) -> int | None:
        """The ``origin_id`` of ``sender_id``'s latest message in a group (None: none yet)."""
        return self._last_post.get((group_id, sender_id))

    def last_message_id(self, group_id: int, sender_id: int, viewer_id: int) -> int | None:
        """The id under which ``viewer_id`` sees ``sender_id``'s latest message in a group."""
        origin = self._last_post.get((group_id, sender_id))
        if origin is None:
            return None
        return self._message_for(group_id, viewer_id, origin)

    # ---- writing

    def post(
        self,
        group_id: int,
        sender_id: int,
        text: str,
        *,
        reply_to_msg_id: int | None = None,
        reply_to_account: int | None = None,
        random_id: int | None = None,
    ) -> list[Delivery]:
        """Post a message; return one delivery per fleet account in the group.

        ``reply_to_msg_id`` is a message id in the sender's own view (for a simulated member
        in a basic group, which has no view, use ``reply_to_account``: the latest message of
        that account in the group). A repeated ``random_id`` from the same sender returns the
        first call's deliveries and posts nothing (a request re-sent after a reconnect).
        """
        if random_id is not None:
            earlier = self._sent.get((sender_id, random_id))
            if earlier is not None:
                return earlier
        group = self._group(group_id)
        self._require_member(group_id, sender_id)
        is_admin = sender_id in self._admins[group_id]
        if group.read_only and not is_admin:
            raise ChatWriteForbidden(f"user {sender_id} cannot write in group {group_id}")
        if not text.strip():
            raise MessageEmpty("message text is empty")
        if len(text) > MESSAGE_MAX_CHARS:
            raise MessageTooLong(f"message has {len(text)} characters, max {MESSAGE_MAX_CHARS}")
        now = self._clock()
        # Slow mode binds fleet accounts only: the simulated members are the sandbox's own
        # puppets, and their Poisson traffic must not bounce off it.
        if group.slowmode_seconds and not is_admin and sender_id in self._accounts:
            last = self._last_post_at.get((group_id, sender_id))
            if last is not None and now - last < group.slowmode_seconds:
                raise SlowmodeWait(math.ceil(group.slowmode_seconds - (now - last)))
        reply_origin = self._reply_origin(group_id, sender_id, reply_to_msg_id, reply_to_account)
        mentions = tuple(
            dict.fromkeys(
                uid
                for name in _MENTION.findall(text)
                if (uid := self.world.user_ids_by_username.get(name.lower())) is not None
            )
        )
        deliveries = self._emit(
            group_id, sender_id, "message", text, reply_origin, mentions, random_id, now
        )
        self._last_post_at[(group_id, sender_id)] = now
        if random_id is not None:
            self._sent[(sender_id, random_id)] = deliveries
            while len(self._sent) > self._dedupe_limit:
                self._sent.popitem(last=False)
        self._posted(group_id, sender_id, text, deliveries)
        return deliveries

    def _posted(self, group_id: int, sender_id: int, text: str, deliveries: list[Delivery]) -> None:
        """A new message was posted (a repeated ``random_id`` is not): a subclass observes
        it here (``runner.RecordingWorldState`` logs the fleet's)."""

    def join(self, group_id: int, user_id: int) -> list[Delivery]:
        """Add ``user_id`` to a group; the service message goes to every member account."""
        self._group(group_id)
        if user_id not in self._users:
            raise UserInvalid(f"unknown user {user_id}")
        members = self._members[group_id]
        if user_id in members:
            raise UserAlreadyParticipant(f"user {user_id} is already in group {group_id}")
        if group_id not in self._channels and len(members) >= BASIC_GROUP_MAX_MEMBERS:
            raise SandboxRuleError(f"basic group {group_id} is full")
        members.add(user_id)
        return self._emit(group_id, user_id, "join", "", None, (), None, self._clock())

    # ---- internals

    def _emit(
        self,
        group_id: int,
        sender_id: int,
        kind: EventKind,
        text: str,
        reply_origin: int | None,
        mentions: tuple[int, ...],
        random_id: int | None,
        now: float,
    ) -> list[Delivery]:
        self._last_origin += 1
        origin = self._last_origin
        self._sender_by_origin[origin] = sender_id
        self._sender_by_origin.pop(origin - self._sender_limit, None)
        date = int(now)
        recipients = [uid for uid in self._members[group_id] if uid in self._accounts]
        recipients.sort()
        out: list[Delivery] = []
        channel = self._channels.get(group_id)
        if channel is not None:
            channel.pts += 1
            channel.last_message_id += 1
            reply_to = None if reply_origin is None else channel.message_by_origin.get(reply_origin)
            event = Delivery(
                account_id=0,
                group_id=group_id,
                kind=kind,
                message_id=channel.last_message_id,
                pts=channel.pts,
                pts_count=1,
                seq=0,
                date=date,
                sender_id=sender_id,
                text=text,
                reply_to=reply_to,
                mentions=mentions,
                origin_id=origin,
                random_id=random_id,
                reply_to_origin=reply_origin,
            )
            channel.backlog.append(event)
            channel.message_by_origin[origin] = event.message_id
            channel.origin_by_message[event.message_id] = origin
            while len(channel.message_by_origin) > self._backlog_limit:
                _, old_message = channel.message_by_origin.popitem(last=False)
                channel.origin_by_message.pop(old_message, None)
            out = [_view(event, uid, event.message_id, reply_to) for uid in recipients]
        else:
            for uid in recipients:
                box = self._accounts[uid]
                box.pts += 1
                box.seq += 1
                box.last_message_id += 1
                delivery = Delivery(
                    account_id=uid,
                    group_id=group_id,
                    kind=kind,
                    message_id=box.last_message_id,
                    pts=box.pts,
                    pts_count=1,
                    seq=box.seq,
                    date=date,
                    sender_id=sender_id,
                    text=text,
                    reply_to=(
                        None if reply_origin is None else box.message_by_origin.get(reply_origin)
                    ),
                    mentions=mentions,
                    origin_id=origin,
                    random_id=random_id if uid == sender_id else None,
                    reply_to_origin=reply_origin,
                )
                box.backlog.append(delivery)
                box.history.setdefault(group_id, deque(maxlen=box.history_limit)).append(delivery)
                box.remember(origin, delivery.message_id)
                out.append(delivery)
        if kind == "message":
            self._last_post[(group_id, sender_id)] = origin
        return out

    def _reply_origin(
        self,
        group_id: int,
        sender_id: int,
        reply_to_msg_id: int | None,
        reply_to_account: int | None,
    ) -> int | None:
        if reply_to_account is not None:
            origin = self._last_post.get((group_id, reply_to_account))
            if origin is None:
                raise ReplyInvalid(f"user {reply_to_account} has no message in group {group_id}")
            return origin
        if reply_to_msg_id is None:
            return None
        origins = (
            self._channels[group_id].origin_by_message
            if group_id in self._channels
            else self._accounts[sender_id].origin_by_message
            if sender_id in self._accounts
            else {}
        )
        origin = origins.get(reply_to_msg_id)
        if origin is not None:
            return origin
        raise ReplyInvalid(f"no message {reply_to_msg_id} in group {group_id}")

    def _message_for(self, group_id: int, viewer_id: int, origin: int) -> int | None:
        if group_id in self._channels:
            return self._channels[group_id].message_by_origin.get(origin)
        box = self._accounts.get(viewer_id)
        return None if box is None else box.message_by_origin.get(origin)

    def _account(self, account_id: int) -> AccountBox:
        box = self._accounts.get(account_id)
        if box is None:
            raise UserInvalid(f"no fleet account {account_id}")
        return box

    def _channel(self, channel_id: int) -> ChannelBox:
        box = self._channels.get(channel_id)
        if box is None:
            raise PeerInvalid(f"no supergroup {channel_id}")
        return box

    def _group(self, group_id: int) -> WorldGroup:
        group = self.world.groups_by_id.get(group_id)
        if group is None:
            raise PeerInvalid(f"no group {group_id}")
        return group

    def _group_members(self, group_id: int) -> set[int]:
        self._group(group_id)
        return self._members[group_id]

    def _require_member(self, group_id: int, user_id: int) -> None:
        if user_id not in self._group_members(group_id):
            if group_id in self._channels:
                raise ChannelPrivate(f"user {user_id} is not in supergroup {group_id}")
            raise ChatForbidden(f"user {user_id} is not in group {group_id}")


def _view(event: Delivery, account_id: int, message_id: int, reply_to: int | None) -> Delivery:
    return Delivery(
        account_id=account_id,
        group_id=event.group_id,
        kind=event.kind,
        message_id=message_id,
        pts=event.pts,
        pts_count=event.pts_count,
        seq=event.seq,
        date=event.date,
        sender_id=event.sender_id,
        text=event.text,
        reply_to=reply_to,
        mentions=event.mentions,
        origin_id=event.origin_id,
        random_id=event.random_id if event.sender_id == account_id else None,
        reply_to_origin=event.reply_to_origin,
    )
