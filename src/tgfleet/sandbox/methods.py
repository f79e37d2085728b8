"""The Telegram methods the sandbox answers: one function per TL request, in `HANDLERS`.

Each takes the `WorldDispatcher`, the calling fleet account and the request, and answers
from the world's state with Telegram's own TL types and error names (``RpcFailure``, or a
``SandboxRuleError`` the dispatcher turns into its ``rpc_error``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject, TLRequest

from tgfleet.sandbox.delivery import Delivery
from tgfleet.sandbox.mtproto import Result
from tgfleet.sandbox.server import RpcFailure
from tgfleet.sandbox.tl_objects import (
    client_pts,
    group_id_of,
    sandbox_config,
    tl_date,
    tl_dialog,
    tl_message,
    tl_peer,
    tl_state,
    tl_user,
    world_pts,
)
from tgfleet.sandbox.world import WorldAccount

if TYPE_CHECKING:
    from tgfleet.sandbox.dispatcher import WorldDispatcher

#: Most messages one ``updates.getDifference`` returns; more come as a ``differenceSlice``.
DIFFERENCE_LIMIT = 1000
#: Most messages one ``getHistory``/``getChannelDifference`` returns, as Telegram caps them.
HISTORY_LIMIT = 100

_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{4,31}")

Handler = Callable[["WorldDispatcher", WorldAccount, Any], Awaitable[Result]]


async def get_config(dispatcher: WorldDispatcher, account: WorldAccount, request: Any) -> Result:
    del account, request
    return sandbox_config(dispatcher.world.dc_id, dispatcher.mtproto_port())


async def get_users(dispatcher: WorldDispatcher, account: WorldAccount, request: Any) -> Result:
    found = (dispatcher.user_from_input(account, u, strict=False) for u in request.id)
    return [tl_user(u, account.id) for u in found if u is not None]


async def get_full_user(dispatcher: WorldDispatcher, account: WorldAccount, request: Any) -> Result:
    user = dispatcher.user_from_input(account, request.id, strict=True)
    if user is None:
        raise RpcFailure(400, "USER_ID_INVALID")
    common = [
        g.id
        for g in dispatcher.state.groups_of(account.id)
        if user.id in dispatcher.state.members_of(g.id)
    ]
    full = types.UserFull(
        id=user.id,
        settings=types.PeerSettings(),
        notify_settings=types.PeerNotifySettings(),
        common_chats_count=len(common),
    )
    return types.users.UserFull(full_user=full, chats=[], users=[tl_user(user, account.id)])


async def get_state(dispatcher: WorldDispatcher, account: WorldAccount, request: Any) -> Result:
    del request
    state = dispatcher.state.state(account.id)
    return tl_state(state.pts, state.qts, state.date, state.seq)


async def get_difference(
    dispatcher: WorldDispatcher, account: WorldAccount, request: Any
) -> Result:
    current = dispatcher.state.state(account.id)
    missed = dispatcher.state.difference(account.id, world_pts(request.pts))
    if not missed:
        return types.updates.DifferenceEmpty(date=tl_date(current.date), seq=current.seq)
    part = missed[:DIFFERENCE_LIMIT]
    last = part[-1]
    groups = dispatcher.world.groups_by_id
    messages = [tl_message(d, groups[d.group_id]) for d in part]
    users, chats = dispatcher.tl_entities(part, account.id)
    found: dict[str, Any] = {
        "new_messages": messages,
        "new_encrypted_messages": [],
        "other_updates": [],
        "chats": chats,
        "users": users,
    }
    if len(part) < len(missed):
        intermediate = tl_state(last.pts, current.qts, last.date, last.seq)
        return types.updates.DifferenceSlice(**found, intermediate_state=intermediate)
    state = tl_state(current.pts, current.qts, current.date, current.seq)
    return types.updates.Difference(**found, state=state)


async def get_channel_difference(
    dispatcher: WorldDispatcher, account: WorldAccount, request: Any
) -> Result:
    group = dispatcher.group_from_peer(request.channel)
    missed = dispatcher.state.channel_difference(account.id, group.id, world_pts(request.pts))
    current_pts = client_pts(dispatcher.state.channel_pts(group.id))
    if not missed:
        return types.updates.ChannelDifferenceEmpty(pts=current_pts, final=True)
    limit = max(1, min(request.limit or HISTORY_LIMIT, HISTORY_LIMIT))
    part = missed[:limit]
    users, chats = dispatcher.tl_entities(part, account.id)
    return types.updates.ChannelDifference(
        pts=client_pts(part[-1].pts),
        new_messages=[tl_message(d, group) for d in part],
        other_updates=[],
        chats=chats,
        users=users,
        final=len(part) == len(missed),
    )


async def send_message(dispatcher: WorldDispatcher, account: WorldAccount, request: Any) -> Result:
    group = dispatcher.group_from_peer(request.peer)
    reply_to = request.reply_to
    reply_to_msg_id = (
        reply_to.reply_to_msg_id if isinstance(reply_to, types.InputReplyToMessage) else None
    )
    deliveries = dispatcher.state.post(
        group.id,
        account.id,
        request.message,
        reply_to_msg_id=reply_to_msg_id,
        random_id=request.random_id,
    )
    own = next(d for d in deliveries if d.account_id == account.id)
    if dispatcher.note_published(own.origin_id):
        others = [d for d in deliveries if d.account_id != account.id]
        if others and dispatcher.attached:
            await dispatcher.publish(others)
    return dispatcher.updates_for(own, [types.UpdateMessageID(own.message_id, request.random_id)])


async def get_dialogs(dispatcher: WorldDispatcher, account: WorldAccount, request: Any) -> Result:
    limit = max(1, min(request.limit or HISTORY_LIMIT, HISTORY_LIMIT))
    dialogs: list[types.Dialog] = []
    tops: list[Delivery] = []
    for group in dispatcher.state.groups_of(account.id)[:limit]:
        newest = dispatcher.state.history(account.id, group.id, limit=1)
        top = newest[0].message_id if newest else 0
        tops += newest
        channel_pts = dispatcher.state.channel_pts(group.id) if group.kind == "supergroup" else None
        dialogs.append(
            tl_dialog(group, top, None if channel_pts is None else client_pts(channel_pts))
        )
    groups = dispatcher.world.groups_by_id
    users, _ = dispatcher.tl_entities(tops, account.id)
    return types.messages.Dialogs(
        dialogs=dialogs,
        messages=[tl_message(d, groups[d.group_id]) for d in tops],
        chats=dispatcher.tl_chats((group_id_of(d.peer) for d in dialogs), account.id),
        users=users,
    )


async def get_history(dispatcher: WorldDispatcher, account: WorldAccount, request: Any) -> Result:
    group = dispatcher.group_from_peer(request.peer)
    limit = max(1, min(request.limit or HISTORY_LIMIT, HISTORY_LIMIT))
    offset_id = request.offset_id or 0
    if request.max_id and (not offset_id or request.max_id < offset_id):
        offset_id = request.max_id
    found = dispatcher.state.history(account.id, group.id, limit=limit, offset_id=offset_id)
    if request.min_id:
        found = [d for d in found if d.message_id > request.min_id]
    return dispatcher.messages_result(account, group, found)


async def get_messages(dispatcher: WorldDispatcher, account: WorldAccount, request: Any) -> Result:
    groups = [g for g in dispatcher.state.groups_of(account.id) if g.kind == "basic"]
    found: list[Delivery | int] = []
    for wanted in request.id:
        message_id = getattr(wanted, "id", None)
        if not isinstance(message_id, int):
            raise RpcFailure(400, "MESSAGE_IDS_EMPTY")
        hit = next(
            (d for g in groups if (d := dispatcher.message_by_id(account, g, message_id))),
            None,
        )
        found.append(hit if hit is not None else message_id)
    deliveries = [d for d in found if isinstance(d, Delivery)]
    by_group = dispatcher.world.groups_by_id
    messages: list[TLObject] = [
        tl_message(d, by_group[d.group_id]) if isinstance(d, Delivery) else types.MessageEmpty(id=d)
        for d in found
    ]
    users, chats = dispatcher.tl_entities(deliveries, account.id)
    return types.messages.Messages(messages=messages, topics=[], chats=chats, users=users)


async def get_channel_messages(
    dispatcher: WorldDispatcher, account: WorldAccount, request: Any
) -> Result:
    group = dispatcher.group_from_peer(request.channel)
    found: list[Delivery | int] = []
    for wanted in request.id:
        message_id = getattr(wanted, "id", None)
        if not isinstance(message_id, int):
            raise RpcFailure(400, "MESSAGE_IDS_EMPTY")
        hit = dispatcher.message_by_id(account, group, message_id)
        found.append(hit if hit is not None else message_id)
    return dispatcher.messages_result(account, group, found)


async def read_history(dispatcher: WorldDispatcher, account: WorldAccount, request: Any) -> Result:
    group = dispatcher.group_from_peer(request.peer)
    dispatcher.require_in(account, group)
    # Read marks are not modelled: nothing changes, so no pts is consumed.
    return types.messages.AffectedMessages(
        pts=client_pts(dispatcher.state.state(account.id).pts), pts_count=0
    )


async def read_channel_history(
    dispatcher: WorldDispatcher, account: WorldAccount, request: Any
) -> Result:
    dispatcher.require_in(account, dispatcher.group_from_peer(request.channel))
    return True


async def set_typing(dispatcher: WorldDispatcher, account: WorldAccount, request: Any) -> Result:
    dispatcher.require_in(account, dispatcher.group_from_peer(request.peer))
    return True


async def resolve_username(
    dispatcher: WorldDispatcher, account: WorldAccount, request: Any
) -> Result:
    name = str(request.username).removeprefix("@")
    if not _USERNAME.fullmatch(name):
        raise RpcFailure(400, "USERNAME_INVALID")
    user_id = dispatcher.world.user_ids_by_username.get(name.lower())
    if user_id is not None:
        return types.contacts.ResolvedPeer(
            peer=types.PeerUser(user_id=user_id),
            chats=[],
            users=dispatcher.tl_users([user_id], account.id),
        )
    for group in dispatcher.world.groups:
        if group.username is not None and group.username.lower() == name.lower():
            return types.contacts.ResolvedPeer(
                peer=tl_peer(group), chats=dispatcher.tl_chats([group.id], account.id), users=[]
            )
    raise RpcFailure(400, "USERNAME_NOT_OCCUPIED")


async def get_chats(dispatcher: WorldDispatcher, account: WorldAccount, request: Any) -> Result:
    groups = dispatcher.world.groups_by_id
    ids = [i for i in request.id if (g := groups.get(i)) is not None and g.kind == "basic"]
    return types.messages.Chats(chats=dispatcher.tl_chats(ids, account.id))


async def get_channels(dispatcher: WorldDispatcher, account: WorldAccount, request: Any) -> Result:
    ids = [dispatcher.group_from_peer(channel).id for channel in request.id]
    return types.messages.Chats(chats=dispatcher.tl_chats(ids, account.id))


async def get_full_chat(dispatcher: WorldDispatcher, account: WorldAccount, request: Any) -> Result:
    group = dispatcher.group_from_peer(types.InputPeerChat(chat_id=request.chat_id))
    dispatcher.require_in(account, group)
    members = sorted(dispatcher.state.members_of(group.id))
    admins = set(group.admins)
    created = tl_date(dispatcher.created)
    participants = [
        (types.ChatParticipantAdmin if uid in admins else types.ChatParticipant)(
            user_id=uid, inviter_id=uid, date=created
        )
        for uid in members
    ]
    full = types.ChatFull(
        id=group.id,
        about="",
        participants=types.ChatParticipants(chat_id=group.id, participants=participants, version=1),
        notify_settings=types.PeerNotifySettings(),
    )
    return types.messages.ChatFull(
        full_chat=full,
        chats=dispatcher.tl_chats([group.id], account.id),
        users=dispatcher.tl_users(members, account.id),
    )


async def get_full_channel(
    dispatcher: WorldDispatcher, account: WorldAccount, request: Any
) -> Result:
    group = dispatcher.group_from_peer(request.channel)
    dispatcher.require_in(account, group)
    newest = dispatcher.state.history(account.id, group.id, limit=1)
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
        pts=client_pts(dispatcher.state.channel_pts(group.id)),
        participants_count=len(dispatcher.state.members_of(group.id)),
        slowmode_seconds=group.slowmode_seconds or None,
    )
    return types.messages.ChatFull(
        full_chat=full, chats=dispatcher.tl_chats([group.id], account.id), users=[]
    )


HANDLERS: dict[type[TLRequest], Handler] = {
    functions.help.GetConfigRequest: get_config,
    functions.users.GetUsersRequest: get_users,
    functions.users.GetFullUserRequest: get_full_user,
    functions.updates.GetStateRequest: get_state,
    functions.updates.GetDifferenceRequest: get_difference,
    functions.updates.GetChannelDifferenceRequest: get_channel_difference,
    functions.messages.SendMessageRequest: send_message,
    functions.messages.GetDialogsRequest: get_dialogs,
    functions.messages.GetHistoryRequest: get_history,
    functions.messages.GetMessagesRequest: get_messages,
    functions.channels.GetMessagesRequest: get_channel_messages,
    functions.messages.ReadHistoryRequest: read_history,
    functions.channels.ReadHistoryRequest: read_channel_history,
    functions.messages.SetTypingRequest: set_typing,
    functions.contacts.ResolveUsernameRequest: resolve_username,
    functions.messages.GetChatsRequest: get_chats,
    functions.messages.GetFullChatRequest: get_full_chat,
    functions.channels.GetChannelsRequest: get_channels,
    functions.channels.GetFullChannelRequest: get_full_channel,
}
"""Method classes the sandbox answers; everything else is ``METHOD_NOT_SUPPORTED``."""
