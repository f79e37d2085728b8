"""The sandbox's Telegram methods: answers requests from the `WorldState`, pushes its updates.

`WorldDispatcher` is the ``server.Dispatcher`` the MTProto server hands each request to, and
the ``ports.Publisher`` the traffic loop hands new deliveries to. It maps a connection's
auth key to its fleet account, asks the ``FaultPolicy`` whether the call must fail, then
answers with Telegram's own TL types and error names. World rule errors
(``SandboxRuleError``) become their ``rpc_error``; a method not listed in ``_HANDLERS``
gets ``400 METHOD_NOT_SUPPORTED``.

Every update and result carries the users and chats it mentions, so a Telethon client
resolves senders and chats from what it was sent, without further round trips.

The TL building is in small module-level functions (``_user``, ``_chat``, ``_message``,
``_updates_for``) that take the viewing account's id, because Telegram's objects differ per
viewer (``is_self``, ``out``, ``left``, message ids in basic groups).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject, TLRequest

from tgfleet.sandbox.mtproto import Result, key_id_of, method_name
from tgfleet.sandbox.ports import FaultPolicy
from tgfleet.sandbox.server import (
    CallContext,
    ConnectionInfo,
    RpcFailure,
    SandboxServer,
    method_not_supported,
)
from tgfleet.sandbox.world import (
    Delivery,
    DifferenceTooLong,
    SandboxRuleError,
    WorldAccount,
    WorldGroup,
    WorldMember,
    WorldState,
)

#: Most messages one ``updates.getDifference`` returns; more come as a ``differenceSlice``.
DIFFERENCE_LIMIT = 1000
#: Most messages one ``getHistory``/``getChannelDifference`` returns, as Telegram caps them.
HISTORY_LIMIT = 100
#: How many sent messages the dispatcher remembers having published (re-sends publish once).
PUBLISHED_MEMORY = 100_000

#: Added to every WorldState pts before a client sees it (see ``_client_pts``).
PTS_BASE = 1
UNDELIVERED_LIMIT = 1000  # per account; beyond it the client's own gap check fetches them

_MENTION = re.compile(r"@[A-Za-z][A-Za-z0-9_]{4,31}")
_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{4,31}")

Handler = Callable[["WorldDispatcher", WorldAccount, Any], Awaitable[Result]]


def _client_pts(world_pts: int) -> int:
    """The pts a client sees: Telethon reads pts 0 as "unknown" and then never asks
    getDifference, while `WorldState` counts from 0, so every pts is shifted by ``PTS_BASE``."""
    return world_pts + PTS_BASE


def _world_pts(client_pts: int) -> int:
    return max(0, client_pts - PTS_BASE)


def _date(unix: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(unix), tz=dt.UTC)


# --------------------------------------------------------------------------- TL building


def _user(world_user: WorldAccount | WorldMember, viewer_id: int) -> types.User:
    """A full ``user`` as ``viewer_id`` sees it (``is_self`` for the account itself)."""
    if isinstance(world_user, WorldAccount):
        return types.User(
            id=world_user.id,
            is_self=world_user.id == viewer_id,
            access_hash=world_user.access_hash,
            first_name=world_user.first_name,
            username=world_user.username,
            phone=world_user.phone if world_user.id == viewer_id else None,
        )
    return types.User(
        id=world_user.id,
        access_hash=world_user.access_hash,
        first_name=world_user.first_name,
        last_name=world_user.last_name,
        username=world_user.username,
    )


def _read_only_rights(group: WorldGroup) -> types.ChatBannedRights | None:
    if not group.read_only:
        return None
    return types.ChatBannedRights(until_date=None, send_messages=True, send_media=True)


def _chat(group: WorldGroup, members: frozenset[int], viewer_id: int, created: float) -> TLObject:
    """``chat`` for a basic group, ``channel`` (megagroup) for a supergroup."""
    left = viewer_id not in members
    if group.kind == "basic":
        return types.Chat(
            id=group.id,
            title=group.title,
            photo=types.ChatPhotoEmpty(),
            participants_count=len(members),
            date=_date(created),
            version=1,
            left=left,
            default_banned_rights=_read_only_rights(group),
        )
    return types.Channel(
        id=group.id,
        title=group.title,
        photo=types.ChatPhotoEmpty(),
        date=_date(created),
        megagroup=True,
        left=left,
        access_hash=group.access_hash,
        username=group.username,
        slowmode_enabled=bool(group.slowmode_seconds) or None,
        participants_count=len(members),
        default_banned_rights=_read_only_rights(group),
    )


def _peer(group: WorldGroup) -> types.PeerChat | types.PeerChannel:
    if group.kind == "basic":
        return types.PeerChat(chat_id=group.id)
    return types.PeerChannel(channel_id=group.id)


def _group_id_of(peer: types.PeerChat | types.PeerChannel) -> int:
    return int(peer.chat_id if isinstance(peer, types.PeerChat) else peer.channel_id)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _mention_entities(text: str) -> list[types.MessageEntityMention] | None:
    """``messageEntityMention`` for each @username, with offsets in UTF-16 code units."""
    entities = [
        types.MessageEntityMention(
            offset=_utf16_len(text[: match.start()]), length=_utf16_len(match.group())
        )
        for match in _MENTION.finditer(text)
    ]
    return entities or None


def _message(delivery: Delivery, group: WorldGroup) -> types.Message | types.MessageService:
    """The message of a delivery in its account's view: a text message or a join."""
    sender = types.PeerUser(user_id=delivery.sender_id)
    if delivery.kind == "join":
        return types.MessageService(
            id=delivery.message_id,
            peer_id=_peer(group),
            date=_date(delivery.date),
            out=delivery.out or None,
            from_id=sender,
            action=types.MessageActionChatAddUser(users=[delivery.sender_id]),
        )
    reply_to = (
        None
        if delivery.reply_to is None
        else types.MessageReplyHeader(reply_to_msg_id=delivery.reply_to)
    )
    return types.Message(
        id=delivery.message_id,
        peer_id=_peer(group),
        date=_date(delivery.date),
        message=delivery.text,
        out=delivery.out or None,
        mentioned=(delivery.account_id in delivery.mentions) or None,
        from_id=sender,
        reply_to=reply_to,
        entities=_mention_entities(delivery.text),
    )


def _message_update(
    delivery: Delivery, group: WorldGroup
) -> types.UpdateNewMessage | types.UpdateNewChannelMessage:
    message = _message(delivery, group)
    if group.kind == "basic":
        return types.UpdateNewMessage(message, _client_pts(delivery.pts), delivery.pts_count)
    return types.UpdateNewChannelMessage(message, _client_pts(delivery.pts), delivery.pts_count)


# --------------------------------------------------------------------------- dispatcher


class WorldDispatcher:
    """Telegram's methods over a `WorldState`, for `SandboxServer`; publishes its deliveries.

    Create it, create the server with it, then ``attach(server)`` so ``publish`` (and the
    re-publishing of sent messages to other accounts) can push. Counters
    ``connections_opened`` / ``connections_closed`` are for observation.
    """

    def __init__(self, state: WorldState, *, faults: FaultPolicy | None = None) -> None:
        self.state = state
        self.world = state.world
        self.faults = faults
        self.connections_opened = 0
        self.connections_closed = 0
        self._server: SandboxServer | None = None
        self._accounts = {key_id_of(a.auth_key): a for a in self.world.accounts}
        self._key_ids = {a.id: key_id for key_id, a in self._accounts.items()}
        self._created = state.state(self.world.accounts[0].id).date if self.world.accounts else 0
        self._published: OrderedDict[int, None] = OrderedDict()
        # Deliveries an account missed while it had no live connection, in order. Telethon
        # does not ask for the difference after an automatic reconnect, so (like Telegram)
        # the server sends them once the account talks to it again.
        self._undelivered: dict[int, deque[Delivery]] = {}
        self._flushes: set[asyncio.Task[None]] = set()

    def attach(self, server: SandboxServer) -> None:
        """Push through ``server`` (call right after creating it with this dispatcher)."""
        self._server = server

    # ---- server.Dispatcher

    def knows(self, auth_key_id: int) -> bytes | None:
        account = self._accounts.get(auth_key_id)
        return None if account is None else account.auth_key

    def connection_opened(self, info: ConnectionInfo) -> None:
        del info
        self.connections_opened += 1

    def connection_closed(self, info: ConnectionInfo) -> None:
        del info
        self.connections_closed += 1

    async def call(self, ctx: CallContext, request: TLRequest) -> Result:
        """Answer one request for the account behind ``ctx.auth_key_id``."""
        account = self._accounts.get(ctx.auth_key_id)
        if account is None:
            raise RpcFailure(401, "AUTH_KEY_UNREGISTERED")
        name = method_name(request)
        if self.faults is not None:
            failure = self.faults.before_call(account.id, name, self._target_group_id(request))
            if failure is not None:
                raise RpcFailure(*failure)
        handler = _HANDLERS.get(type(request))
        if handler is None:
            raise method_not_supported(request)
        if isinstance(request, functions.updates.GetDifferenceRequest):
            self._forget_undelivered(account.id, channel_id=None)
        elif isinstance(request, functions.updates.GetChannelDifferenceRequest):
            self._forget_undelivered(account.id, channel_id=self._target_group_id(request))
        elif self._undelivered.get(account.id):
            self._schedule_flush(account.id)
        try:
            return await handler(self, account, request)
        except DifferenceTooLong as exc:
            if isinstance(request, functions.updates.GetDifferenceRequest):
                return types.updates.DifferenceTooLong(pts=_client_pts(exc.current_pts))
            return self._channel_too_long(account, request)
        except SandboxRuleError as exc:
            raise RpcFailure(*exc.rpc_error) from exc

    # ---- ports.Publisher

    async def publish(self, deliveries: Sequence[Delivery]) -> int:
        """Push each delivery as a full ``Updates`` to its account's live connections.

        Deliveries go out one ``Updates`` each, in order, so every one carries the next
        seq and pts of its account (or channel). Returns how many pushes reached a connection.
        """
        server = self._require_server()
        pushed = 0
        for delivery in deliveries:
            key_id = self._key_ids.get(delivery.account_id)
            if key_id is None:
                continue
            backlog = self._undelivered.get(delivery.account_id)
            if backlog:  # keep the order: this one goes out after the missed ones
                self._queue(delivery)
                continue
            reached = await server.push(key_id, self._updates_for(delivery, []))
            if reached == 0:
                self._queue(delivery)
            pushed += reached
        return pushed

    def _queue(self, delivery: Delivery) -> None:
        self._undelivered.setdefault(delivery.account_id, deque(maxlen=UNDELIVERED_LIMIT)).append(
            delivery
        )

    def _forget_undelivered(self, account_id: int, *, channel_id: int | None) -> None:
        """A difference request returns everything missed: drop what it covers."""
        backlog = self._undelivered.get(account_id)
        if not backlog:
            return
        keep = [
            d
            for d in backlog
            if (channel_id is None and self._is_channel(d))
            or (channel_id is not None and d.group_id != channel_id)
        ]
        backlog.clear()
        backlog.extend(keep)

    def _is_channel(self, delivery: Delivery) -> bool:
        return self.world.groups_by_id[delivery.group_id].kind == "supergroup"

    def _schedule_flush(self, account_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self._flush(account_id))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, account_id: int) -> None:
        """Send an account's missed deliveries, after the reply to the call that woke it."""
        await asyncio.sleep(0)
        server = self._require_server()
        backlog = self._undelivered.get(account_id)
        key_id = self._key_ids.get(account_id)
        while backlog and key_id is not None:
            delivery = backlog[0]
            if await server.push(key_id, self._updates_for(delivery, [])) == 0:
                return
            if backlog and backlog[0] is delivery:
                backlog.popleft()

    # ---- entity helpers

    def _require_server(self) -> SandboxServer:
        if self._server is None:
            raise RuntimeError("WorldDispatcher.attach(server) was not called")
        return self._server

    def _world_user(self, user_id: int) -> WorldAccount | WorldMember | None:
        return self.world.accounts_by_id.get(user_id) or self.world.members_by_id.get(user_id)

    def _users(self, user_ids: Iterable[int], viewer_id: int) -> list[types.User]:
        out: list[types.User] = []
        for user_id in dict.fromkeys(user_ids):
            world_user = self._world_user(user_id)
            if world_user is not None:
                out.append(_user(world_user, viewer_id))
        return out

    def _chats(self, group_ids: Iterable[int], viewer_id: int) -> list[TLObject]:
        return [
            _chat(
                self.world.groups_by_id[gid],
                self.state.members_of(gid),
                viewer_id,
                self._created,
            )
            for gid in dict.fromkeys(group_ids)
        ]

    def _entities(
        self, deliveries: Iterable[Delivery], viewer_id: int, extra_users: Iterable[int] = ()
    ) -> tuple[list[types.User], list[TLObject]]:
        listed = list(deliveries)
        user_ids = [d.sender_id for d in listed]
        user_ids += [uid for d in listed for uid in d.mentions]
        users = self._users([*user_ids, *extra_users], viewer_id)
        return users, self._chats((d.group_id for d in listed), viewer_id)

    def _updates_for(self, delivery: Delivery, head: list[TLObject]) -> types.Updates:
        group = self.world.groups_by_id[delivery.group_id]
        users, chats = self._entities([delivery], delivery.account_id)
        return types.Updates(
            updates=[*head, _message_update(delivery, group)],
            users=users,
            chats=chats,
            date=_date(delivery.date),
            seq=delivery.seq,
        )

    # ---- peers

    def _target_group_id(self, request: object) -> int | None:
        """The world group a request names, access unchecked (for the fault policy)."""
        for attr in ("peer", "channel", "chat_id"):
            value = getattr(request, attr, None)
            group_id = (
                value
                if isinstance(value, int)
                else getattr(value, "chat_id", None) or getattr(value, "channel_id", None)
            )
            if isinstance(group_id, int) and group_id in self.world.groups_by_id:
                return group_id
        return None

    def _group_from_peer(self, peer: object) -> WorldGroup:
        """The group an InputPeer/InputChannel names; checks a supergroup's access_hash."""
        if isinstance(peer, types.InputPeerChat):
            group = self.world.groups_by_id.get(peer.chat_id)
            if group is None or group.kind != "basic":
                raise RpcFailure(400, "CHAT_ID_INVALID")
            return group
        if isinstance(peer, types.InputPeerChannel | types.InputChannel):
            group = self.world.groups_by_id.get(peer.channel_id)
            if group is None or group.kind != "supergroup" or group.access_hash != peer.access_hash:
                raise RpcFailure(400, "CHANNEL_INVALID")
            return group
        # The world has no private chats or broadcast channels.
        raise RpcFailure(400, "PEER_ID_INVALID")

    def _user_from_input(
        self, account: WorldAccount, user: object, *, strict: bool
    ) -> WorldAccount | WorldMember | None:
        """The user an InputUser names; a wrong non-zero access_hash names nobody.

        Telethon asks ``users.getUsers`` with ``access_hash=0`` for ids it has not cached,
        so that is accepted unless ``strict``.
        """
        if isinstance(user, types.InputUserSelf | types.InputPeerSelf):
            return account
        if isinstance(user, types.InputUser | types.InputPeerUser):
            found = self._world_user(user.user_id)
            if found is None:
                return None
            if user.access_hash == found.access_hash or (not strict and user.access_hash == 0):
                return found
        return None

    def _channel_too_long(self, account: WorldAccount, request: Any) -> TLObject:
        group = self._group_from_peer(request.channel)
        newest = self.state.history(account.id, group.id, limit=HISTORY_LIMIT)
        users, chats = self._entities(newest, account.id)
        if not chats:
            chats = self._chats([group.id], account.id)
        top = newest[0].message_id if newest else 0
        dialog = types.Dialog(
            peer=_peer(group),
            top_message=top,
            read_inbox_max_id=top,
            read_outbox_max_id=top,
            unread_count=0,
            unread_mentions_count=0,
            unread_reactions_count=0,
            unread_poll_votes_count=0,
            notify_settings=types.PeerNotifySettings(),
            pts=_client_pts(self.state.channel_pts(group.id)),
        )
        return types.updates.ChannelDifferenceTooLong(
            dialog=dialog,
            messages=[_message(d, group) for d in newest],
            chats=chats,
            users=users,
            final=True,
        )

    def _messages_result(
        self, account: WorldAccount, group: WorldGroup, found: Sequence[Delivery | int]
    ) -> TLObject:
        """``messages.messages`` (basic) or ``messages.channelMessages`` (supergroup).

        ``found`` holds deliveries, or the bare id of a message that does not exist
        (answered ``messageEmpty``, as Telegram does).
        """
        deliveries = [d for d in found if isinstance(d, Delivery)]
        messages: list[TLObject] = [
            _message(d, group) if isinstance(d, Delivery) else types.MessageEmpty(id=d)
            for d in found
        ]
        users, chats = self._entities(deliveries, account.id)
        if not chats:
            chats = self._chats([group.id], account.id)
        if group.kind == "basic":
            return types.messages.Messages(messages=messages, topics=[], chats=chats, users=users)
        return types.messages.ChannelMessages(
            pts=_client_pts(self.state.channel_pts(group.id)),
            count=len(messages),
            messages=messages,
            topics=[],
            chats=chats,
            users=users,
        )

    def _message_by_id(
        self, account: WorldAccount, group: WorldGroup, message_id: int
    ) -> Delivery | None:
        found = self.state.history(account.id, group.id, limit=1, offset_id=message_id + 1)
        return found[0] if found and found[0].message_id == message_id else None

    def _note_published(self, origin_id: int) -> bool:
        """Remember a sent message's origin; False if it was published before (a re-send)."""
        if origin_id in self._published:
            return False
        self._published[origin_id] = None
        while len(self._published) > PUBLISHED_MEMORY:
            self._published.popitem(last=False)
        return True

    # ---- methods

    async def get_config(self, account: WorldAccount, request: Any) -> Result:
        del account, request
        return sandbox_config(self.world.dc_id, self._port())

    def _port(self) -> int:
        if self._server is not None and self._server.port:
            return self._server.port
        return self.world.port

    async def get_users(self, account: WorldAccount, request: Any) -> Result:
        found = (self._user_from_input(account, u, strict=False) for u in request.id)
        return [_user(u, account.id) for u in found if u is not None]

    async def get_full_user(self, account: WorldAccount, request: Any) -> Result:
        user = self._user_from_input(account, request.id, strict=True)
        if user is None:
            raise RpcFailure(400, "USER_ID_INVALID")
        common = [
            g.id for g in self.state.groups_of(account.id) if user.id in self.state.members_of(g.id)
        ]
        full = types.UserFull(
            id=user.id,
            settings=types.PeerSettings(),
            notify_settings=types.PeerNotifySettings(),
            common_chats_count=len(common),
        )
        return types.users.UserFull(full_user=full, chats=[], users=[_user(user, account.id)])

    async def get_state(self, account: WorldAccount, request: Any) -> Result:
        del request
        state = self.state.state(account.id)
        return types.updates.State(
            pts=_client_pts(state.pts),
            qts=state.qts,
            date=_date(state.date),
            seq=state.seq,
            unread_count=0,
        )

    async def get_difference(self, account: WorldAccount, request: Any) -> Result:
        current = self.state.state(account.id)
        missed = self.state.difference(account.id, _world_pts(request.pts))
        if not missed:
            return types.updates.DifferenceEmpty(date=_date(current.date), seq=current.seq)
        part = missed[:DIFFERENCE_LIMIT]
        last = part[-1]
        groups = self.world.groups_by_id
        messages = [_message(d, groups[d.group_id]) for d in part]
        users, chats = self._entities(part, account.id)
        if len(part) < len(missed):
            intermediate = types.updates.State(
                pts=_client_pts(last.pts),
                qts=current.qts,
                date=_date(last.date),
                seq=last.seq,
                unread_count=0,
            )
            return types.updates.DifferenceSlice(
                new_messages=messages,
                new_encrypted_messages=[],
                other_updates=[],
                chats=chats,
                users=users,
                intermediate_state=intermediate,
            )
        state = types.updates.State(
            pts=_client_pts(current.pts),
            qts=current.qts,
            date=_date(current.date),
            seq=current.seq,
            unread_count=0,
        )
        return types.updates.Difference(
            new_messages=messages,
            new_encrypted_messages=[],
            other_updates=[],
            chats=chats,
            users=users,
            state=state,
        )

    async def get_channel_difference(self, account: WorldAccount, request: Any) -> Result:
        group = self._group_from_peer(request.channel)
        missed = self.state.channel_difference(account.id, group.id, _world_pts(request.pts))
        current_pts = _client_pts(self.state.channel_pts(group.id))
        if not missed:
            return types.updates.ChannelDifferenceEmpty(pts=current_pts, final=True)
        limit = max(1, min(request.limit or HISTORY_LIMIT, HISTORY_LIMIT))
        part = missed[:limit]
        users, chats = self._entities(part, account.id)
        return types.updates.ChannelDifference(
            pts=_client_pts(part[-1].pts),
            new_messages=[_message(d, group) for d in part],
            other_updates=[],
            chats=chats,
            users=users,
            final=len(part) == len(missed),
        )

    async def send_message(self, account: WorldAccount, request: Any) -> Result:
        group = self._group_from_peer(request.peer)
        reply_to = request.reply_to
        reply_to_msg_id = (
            reply_to.reply_to_msg_id if isinstance(reply_to, types.InputReplyToMessage) else None
        )
        deliveries = self.state.post(
            group.id,
            account.id,
            request.message,
            reply_to_msg_id=reply_to_msg_id,
            random_id=request.random_id,
        )
        own = next(d for d in deliveries if d.account_id == account.id)
        if self._note_published(own.origin_id):
            others = [d for d in deliveries if d.account_id != account.id]
            if others and self._server is not None:
                await self.publish(others)
        return self._updates_for(own, [types.UpdateMessageID(own.message_id, request.random_id)])

    async def get_dialogs(self, account: WorldAccount, request: Any) -> Result:
        limit = max(1, min(request.limit or HISTORY_LIMIT, HISTORY_LIMIT))
        dialogs: list[types.Dialog] = []
        tops: list[Delivery] = []
        for group in self.state.groups_of(account.id)[:limit]:
            newest = self.state.history(account.id, group.id, limit=1)
            top = newest[0].message_id if newest else 0
            tops += newest
            dialogs.append(
                types.Dialog(
                    peer=_peer(group),
                    top_message=top,
                    read_inbox_max_id=top,
                    read_outbox_max_id=top,
                    unread_count=0,
                    unread_mentions_count=0,
                    unread_reactions_count=0,
                    unread_poll_votes_count=0,
                    notify_settings=types.PeerNotifySettings(),
                    pts=_client_pts(self.state.channel_pts(group.id))
                    if group.kind == "supergroup"
                    else None,
                )
            )
        groups = self.world.groups_by_id
        users, _ = self._entities(tops, account.id)
        return types.messages.Dialogs(
            dialogs=dialogs,
            messages=[_message(d, groups[d.group_id]) for d in tops],
            chats=self._chats((_group_id_of(d.peer) for d in dialogs), account.id),
            users=users,
        )

    async def get_history(self, account: WorldAccount, request: Any) -> Result:
        group = self._group_from_peer(request.peer)
        limit = max(1, min(request.limit or HISTORY_LIMIT, HISTORY_LIMIT))
        offset_id = request.offset_id or 0
        if request.max_id and (not offset_id or request.max_id < offset_id):
            offset_id = request.max_id
        found = self.state.history(account.id, group.id, limit=limit, offset_id=offset_id)
        if request.min_id:
            found = [d for d in found if d.message_id > request.min_id]
        return self._messages_result(account, group, found)

    async def get_messages(self, account: WorldAccount, request: Any) -> Result:
        groups = [g for g in self.state.groups_of(account.id) if g.kind == "basic"]
        found: list[Delivery | int] = []
        for wanted in request.id:
            message_id = getattr(wanted, "id", None)
            if not isinstance(message_id, int):
                raise RpcFailure(400, "MESSAGE_IDS_EMPTY")
            hit = next(
                (d for g in groups if (d := self._message_by_id(account, g, message_id))),
                None,
            )
            found.append(hit if hit is not None else message_id)
        deliveries = [d for d in found if isinstance(d, Delivery)]
        by_group = self.world.groups_by_id
        messages: list[TLObject] = [
            _message(d, by_group[d.group_id])
            if isinstance(d, Delivery)
            else types.MessageEmpty(id=d)
            for d in found
        ]
        users, chats = self._entities(deliveries, account.id)
        return types.messages.Messages(messages=messages, topics=[], chats=chats, users=users)

    async def get_channel_messages(self, account: WorldAccount, request: Any) -> Result:
        group = self._group_from_peer(request.channel)
        found: list[Delivery | int] = []
        for wanted in request.id:
            message_id = getattr(wanted, "id", None)
            if not isinstance(message_id, int):
                raise RpcFailure(400, "MESSAGE_IDS_EMPTY")
            hit = self._message_by_id(account, group, message_id)
            found.append(hit if hit is not None else message_id)
        return self._messages_result(account, group, found)

    async def read_history(self, account: WorldAccount, request: Any) -> Result:
        group = self._group_from_peer(request.peer)
        self._require_in(account, group)
        # Read marks are not modelled: nothing changes, so no pts is consumed.
        return types.messages.AffectedMessages(
            pts=_client_pts(self.state.state(account.id).pts), pts_count=0
        )

    async def read_channel_history(self, account: WorldAccount, request: Any) -> Result:
        self._require_in(account, self._group_from_peer(request.channel))
        return True

    async def set_typing(self, account: WorldAccount, request: Any) -> Result:
        self._require_in(account, self._group_from_peer(request.peer))
        return True

    def _require_in(self, account: WorldAccount, group: WorldGroup) -> None:
        if account.id not in self.state.members_of(group.id):
            if group.kind == "supergroup":
                raise RpcFailure(400, "CHANNEL_PRIVATE")
            raise RpcFailure(400, "CHAT_ID_INVALID")

    async def resolve_username(self, account: WorldAccount, request: Any) -> Result:
        name = str(request.username).removeprefix("@")
        if not _USERNAME.fullmatch(name):
            raise RpcFailure(400, "USERNAME_INVALID")
        user_id = self.world.user_ids_by_username.get(name.lower())
        if user_id is not None:
            return types.contacts.ResolvedPeer(
                peer=types.PeerUser(user_id=user_id),
                chats=[],
                users=self._users([user_id], account.id),
            )
        for group in self.world.groups:
            if group.username is not None and group.username.lower() == name.lower():
                return types.contacts.ResolvedPeer(
                    peer=_peer(group), chats=self._chats([group.id], account.id), users=[]
                )
        raise RpcFailure(400, "USERNAME_NOT_OCCUPIED")

    async def get_chats(self, account: WorldAccount, request: Any) -> Result:
        groups = self.world.groups_by_id
        ids = [i for i in request.id if (g := groups.get(i)) is not None and g.kind == "basic"]
        return types.messages.Chats(chats=self._chats(ids, account.id))

    async def get_channels(self, account: WorldAccount, request: Any) -> Result:
        ids = [self._group_from_peer(channel).id for channel in request.id]
        return types.messages.Chats(chats=self._chats(ids, account.id))

    async def get_full_chat(self, account: WorldAccount, request: Any) -> Result:
        group = self._group_from_peer(types.InputPeerChat(chat_id=request.chat_id))
        self._require_in(account, group)
        members = sorted(self.state.members_of(group.id))
        admins = set(group.admins)
        created = _date(self._created)
        participants = [
            (types.ChatParticipantAdmin if uid in admins else types.ChatParticipant)(
                user_id=uid, inviter_id=uid, date=created
            )
            for uid in members
        ]
        full = types.ChatFull(
            id=group.id,
            about="",
            participants=types.ChatParticipants(
                chat_id=group.id, participants=participants, version=1
            ),
            notify_settings=types.PeerNotifySettings(),
        )
        return types.messages.ChatFull(
            full_chat=full,
            chats=self._chats([group.id], account.id),
            users=self._users(members, account.id),
        )

    async def get_full_channel(self, account: WorldAccount, request: Any) -> Result:
        group = self._group_from_peer(request.channel)
        self._require_in(account, group)
        newest = self.state.history(account.id, group.id, limit=1)
        top = newest[0].message_id if newest else 0
        full = types.ChannelFull(
            id=group.id,
            about="",
            read_inbox_max_id=top,
            read_outbox_max_id=top,
            unread_count=0,
            chat_photo=types.PhotoEmpty(id=0),
            notify_settings=types.PeerNotifySettings(),
            bot_info=[],
            pts=_client_pts(self.state.channel_pts(group.id)),
            participants_count=len(self.state.members_of(group.id)),
            slowmode_seconds=group.slowmode_seconds or None,
        )
        return types.messages.ChatFull(
            full_chat=full, chats=self._chats([group.id], account.id), users=[]
        )


def sandbox_config(dc_id: int, port: int) -> types.Config:
    """A ``config`` with the values Telegram's DCs send, its one DC at 127.0.0.1:port."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return types.Config(
        date=now,
        expires=now + dt.timedelta(hours=1),
        test_mode=False,
        this_dc=dc_id,
        dc_options=[types.DcOption(id=dc_id, ip_address="127.0.0.1", port=port)],
        dc_txt_domain_name="apv3.stel.com",
        chat_size_max=200,
        megagroup_size_max=200000,
        forwarded_count_max=100,
        online_update_period_ms=210000,
        offline_blur_timeout_ms=5000,
        offline_idle_timeout_ms=30000,
        online_cloud_timeout_ms=300000,
        notify_cloud_delay_ms=30000,
        notify_default_delay_ms=1500,
        push_chat_period_ms=60000,
        push_chat_limit=2,
        edit_time_limit=172800,
        revoke_time_limit=2147483647,
        revoke_pm_time_limit=2147483647,
        rating_e_decay=2419200,
        stickers_recent_limit=200,
        channels_read_media_period=604800,
        call_receive_timeout_ms=20000,
        call_ring_timeout_ms=90000,
        call_connect_timeout_ms=30000,
        call_packet_timeout_ms=10000,
        me_url_prefix="https://t.me/",
        caption_length_max=1024,
        message_length_max=4096,
        webfile_dc_id=dc_id,
    )


_HANDLERS: dict[type[TLRequest], Handler] = {
    functions.help.GetConfigRequest: WorldDispatcher.get_config,
    functions.users.GetUsersRequest: WorldDispatcher.get_users,
    functions.users.GetFullUserRequest: WorldDispatcher.get_full_user,
    functions.updates.GetStateRequest: WorldDispatcher.get_state,
    functions.updates.GetDifferenceRequest: WorldDispatcher.get_difference,
    functions.updates.GetChannelDifferenceRequest: WorldDispatcher.get_channel_difference,
    functions.messages.SendMessageRequest: WorldDispatcher.send_message,
    functions.messages.GetDialogsRequest: WorldDispatcher.get_dialogs,
    functions.messages.GetHistoryRequest: WorldDispatcher.get_history,
    functions.messages.GetMessagesRequest: WorldDispatcher.get_messages,
    functions.channels.GetMessagesRequest: WorldDispatcher.get_channel_messages,
    functions.messages.ReadHistoryRequest: WorldDispatcher.read_history,
    functions.channels.ReadHistoryRequest: WorldDispatcher.read_channel_history,
    functions.messages.SetTypingRequest: WorldDispatcher.set_typing,
    functions.contacts.ResolveUsernameRequest: WorldDispatcher.resolve_username,
    functions.messages.GetChatsRequest: WorldDispatcher.get_chats,
    functions.messages.GetFullChatRequest: WorldDispatcher.get_full_chat,
    functions.channels.GetChannelsRequest: WorldDispatcher.get_channels,
    functions.channels.GetFullChannelRequest: WorldDispatcher.get_full_channel,
}
"""Method classes the sandbox answers; everything else is ``METHOD_NOT_SUPPORTED``."""
