"""`WorldDispatcher`: the sandbox's request handling and update pushing over a `WorldState`.

It is the ``server.Dispatcher`` the MTProto server hands each request to, and the
``ports.Publisher`` the traffic loop hands new deliveries to. It maps a connection's auth key
to its fleet account, asks the ``FaultPolicy`` whether the call must fail, then answers
through the method's function in ``methods.HANDLERS``. World rule errors
(``SandboxRuleError``) become their ``rpc_error``; a method not listed there gets
``400 METHOD_NOT_SUPPORTED``.

Every update and result carries the users and chats it mentions, so a Telethon client
resolves senders and chats from what it was sent, without further round trips; the
helpers the methods build them with (`WorldDispatcher.tl_entities` and friends) are here.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject, TLRequest

from tgfleet.sandbox.delivery import Delivery
from tgfleet.sandbox.methods import HANDLERS, HISTORY_LIMIT
from tgfleet.sandbox.mtproto import Result, key_id_of, method_name
from tgfleet.sandbox.ports import FaultPolicy
from tgfleet.sandbox.rule_errors import DifferenceTooLong, SandboxRuleError
from tgfleet.sandbox.server import (
    CallContext,
    ConnectionInfo,
    RpcFailure,
    SandboxServer,
    method_not_supported,
)
from tgfleet.sandbox.state import WorldState
from tgfleet.sandbox.tl_objects import (
    client_pts,
    message_update,
    tl_chat,
    tl_date,
    tl_dialog,
    tl_message,
    tl_user,
)
from tgfleet.sandbox.world import WorldAccount, WorldGroup, WorldMember

#: How many sent messages the dispatcher remembers having published (re-sends publish once).
PUBLISHED_MEMORY = 100_000
UNDELIVERED_LIMIT = 1000  # per account; beyond it the client's own gap check fetches them


class WorldDispatcher:
    """Telegram's methods (``methods.HANDLERS``) over a `WorldState`, for `SandboxServer`;
    publishes its deliveries.

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
        #: The unix time every group says it was created (the world's first state date).
        self.created = state.state(self.world.accounts[0].id).date if self.world.accounts else 0
        self._published: OrderedDict[int, None] = OrderedDict()
        # Deliveries an account missed while it had no live connection, in order. Telethon
        # does not ask for the difference after an automatic reconnect, so (like Telegram)
        # the server sends them once the account talks to it again.
        self._undelivered: dict[int, deque[Delivery]] = {}
        self._flushes: set[asyncio.Task[None]] = set()

    def attach(self, server: SandboxServer) -> None:
        """Push through ``server`` (call right after creating it with this dispatcher)."""
        self._server = server

    @property
    def attached(self) -> bool:
        """True once `attach` gave it a server to push through."""
        return self._server is not None

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
        handler = HANDLERS.get(type(request))
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
                return types.updates.DifferenceTooLong(pts=client_pts(exc.current_pts))
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
            reached = await server.push(key_id, self.updates_for(delivery, []))
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
            if await server.push(key_id, self.updates_for(delivery, [])) == 0:
                return
            if backlog and backlog[0] is delivery:
                backlog.popleft()

    # ---- entity helpers

    def _require_server(self) -> SandboxServer:
        if self._server is None:
            raise RuntimeError("WorldDispatcher.attach(server) was not called")
        return self._server

    def world_user(self, user_id: int) -> WorldAccount | WorldMember | None:
        return self.world.accounts_by_id.get(user_id) or self.world.members_by_id.get(user_id)

    def tl_users(self, user_ids: Iterable[int], viewer_id: int) -> list[types.User]:
        out: list[types.User] = []
        for user_id in dict.fromkeys(user_ids):
            world_user = self.world_user(user_id)
            if world_user is not None:
                out.append(tl_user(world_user, viewer_id))
        return out

    def tl_chats(self, group_ids: Iterable[int], viewer_id: int) -> list[TLObject]:
        return [
            tl_chat(
                self.world.groups_by_id[gid],
                self.state.members_of(gid),
                viewer_id,
                self.created,
            )
            for gid in dict.fromkeys(group_ids)
        ]

    def tl_entities(
        self, deliveries: Iterable[Delivery], viewer_id: int, extra_users: Iterable[int] = ()
    ) -> tuple[list[types.User], list[TLObject]]:
        listed = list(deliveries)
        user_ids = [d.sender_id for d in listed]
        user_ids += [uid for d in listed for uid in d.mentions]
        users = self.tl_users([*user_ids, *extra_users], viewer_id)
        return users, self.tl_chats((d.group_id for d in listed), viewer_id)

    def updates_for(self, delivery: Delivery, head: list[TLObject]) -> types.Updates:
        group = self.world.groups_by_id[delivery.group_id]
        users, chats = self.tl_entities([delivery], delivery.account_id)
        return types.Updates(
            updates=[*head, message_update(delivery, group)],
            users=users,
            chats=chats,
            date=tl_date(delivery.date),
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

    def group_from_peer(self, peer: object) -> WorldGroup:
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

    def user_from_input(
        self, account: WorldAccount, user: object, *, strict: bool
    ) -> WorldAccount | WorldMember | None:
        """The user an InputUser names; a wrong non-zero access_hash names nobody.

        Telethon asks ``users.getUsers`` with ``access_hash=0`` for ids it has not cached,
        so that is accepted unless ``strict``.
        """
        if isinstance(user, types.InputUserSelf | types.InputPeerSelf):
            return account
        if isinstance(user, types.InputUser | types.InputPeerUser):
            found = self.world_user(user.user_id)
            if found is None:
                return None
            if user.access_hash == found.access_hash or (not strict and user.access_hash == 0):
                return found
        return None

    def _channel_too_long(self, account: WorldAccount, request: Any) -> TLObject:
        group = self.group_from_peer(request.channel)
        newest = self.state.history(account.id, group.id, limit=HISTORY_LIMIT)
        users, chats = self.tl_entities(newest, account.id)
        if not chats:
            chats = self.tl_chats([group.id], account.id)
        top = newest[0].message_id if newest else 0
        dialog = tl_dialog(group, top, client_pts(self.state.channel_pts(group.id)))
        return types.updates.ChannelDifferenceTooLong(
            dialog=dialog,
            messages=[tl_message(d, group) for d in newest],
            chats=chats,
            users=users,
            final=True,
        )

    def messages_result(
        self, account: WorldAccount, group: WorldGroup, found: Sequence[Delivery | int]
    ) -> TLObject:
        """``messages.messages`` (basic) or ``messages.channelMessages`` (supergroup).

        ``found`` holds deliveries, or the bare id of a message that does not exist
        (answered ``messageEmpty``, as Telegram does).
        """
        deliveries = [d for d in found if isinstance(d, Delivery)]
        messages: list[TLObject] = [
            tl_message(d, group) if isinstance(d, Delivery) else types.MessageEmpty(id=d)
            for d in found
        ]
        users, chats = self.tl_entities(deliveries, account.id)
        if not chats:
            chats = self.tl_chats([group.id], account.id)
        if group.kind == "basic":
            return types.messages.Messages(messages=messages, topics=[], chats=chats, users=users)
        return types.messages.ChannelMessages(
            pts=client_pts(self.state.channel_pts(group.id)),
            count=len(messages),
            messages=messages,
            topics=[],
            chats=chats,
            users=users,
        )

    def message_by_id(
        self, account: WorldAccount, group: WorldGroup, message_id: int
    ) -> Delivery | None:
        found = self.state.history(account.id, group.id, limit=1, offset_id=message_id + 1)
        return found[0] if found and found[0].message_id == message_id else None

    def note_published(self, origin_id: int) -> bool:
        """Remember a sent message's origin; False if it was published before (a re-send)."""
        if origin_id in self._published:
            return False
        self._published[origin_id] = None
        while len(self._published) > PUBLISHED_MEMORY:
            self._published.popitem(last=False)
        return True

    def mtproto_port(self) -> int:
        """The port clients reach the server on (the world's own until one is bound)."""
        if self._server is not None and self._server.port:
            return self._server.port
        return self.world.port

    def require_in(self, account: WorldAccount, group: WorldGroup) -> None:
        if account.id not in self.state.members_of(group.id):
            if group.kind == "supergroup":
                raise RpcFailure(400, "CHANNEL_PRIVATE")
            raise RpcFailure(400, "CHAT_ID_INVALID")
