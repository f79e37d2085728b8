"""The Telegram objects the sandbox sends, built from the world as one account sees them.

Small functions (`tl_user`, `tl_chat`, `tl_message`, `message_update`) that take the viewing
account's id, because Telegram's objects differ per viewer (``is_self``, ``out``, ``left``,
message ids in basic groups); `sandbox_config` is the ``config`` of the sandbox's one DC.
"""

from __future__ import annotations

import datetime as dt
import re

from telethon.tl import types
from telethon.tl.tlobject import TLObject

from tgfleet.sandbox.delivery import Delivery
from tgfleet.sandbox.world import WorldAccount, WorldGroup, WorldMember

#: Added to every WorldState pts before a client sees it (see `client_pts`).
PTS_BASE = 1

_MENTION = re.compile(r"@[A-Za-z][A-Za-z0-9_]{4,31}")


def client_pts(world_pts: int) -> int:
    """The pts a client sees: Telethon reads pts 0 as "unknown" and then never asks
    getDifference, while `WorldState` counts from 0, so every pts is shifted by ``PTS_BASE``."""
    return world_pts + PTS_BASE


def world_pts(client_pts: int) -> int:
    return max(0, client_pts - PTS_BASE)


def tl_date(unix: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(unix), tz=dt.UTC)


def tl_user(world_user: WorldAccount | WorldMember, viewer_id: int) -> types.User:
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


def tl_chat(group: WorldGroup, members: frozenset[int], viewer_id: int, created: float) -> TLObject:
    """``chat`` for a basic group, ``channel`` (megagroup) for a supergroup."""
    left = viewer_id not in members
    if group.kind == "basic":
        return types.Chat(
            id=group.id,
            title=group.title,
            photo=types.ChatPhotoEmpty(),
            participants_count=len(members),
            date=tl_date(created),
            version=1,
            left=left,
            default_banned_rights=_read_only_rights(group),
        )
    return types.Channel(
        id=group.id,
        title=group.title,
        photo=types.ChatPhotoEmpty(),
        date=tl_date(created),
        megagroup=True,
        left=left,
        access_hash=group.access_hash,
        username=group.username,
        slowmode_enabled=bool(group.slowmode_seconds) or None,
        participants_count=len(members),
        default_banned_rights=_read_only_rights(group),
    )


def tl_peer(group: WorldGroup) -> types.PeerChat | types.PeerChannel:
    if group.kind == "basic":
        return types.PeerChat(chat_id=group.id)
    return types.PeerChannel(channel_id=group.id)


def group_id_of(peer: types.PeerChat | types.PeerChannel) -> int:
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


def tl_message(delivery: Delivery, group: WorldGroup) -> types.Message | types.MessageService:
    """The message of a delivery in its account's view: a text message or a join."""
    sender = types.PeerUser(user_id=delivery.sender_id)
    if delivery.kind == "join":
        return types.MessageService(
            id=delivery.message_id,
            peer_id=tl_peer(group),
            date=tl_date(delivery.date),
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
        peer_id=tl_peer(group),
        date=tl_date(delivery.date),
        message=delivery.text,
        out=delivery.out or None,
        mentioned=(delivery.account_id in delivery.mentions) or None,
        from_id=sender,
        reply_to=reply_to,
        entities=_mention_entities(delivery.text),
    )


def message_update(
    delivery: Delivery, group: WorldGroup
) -> types.UpdateNewMessage | types.UpdateNewChannelMessage:
    message = tl_message(delivery, group)
    if group.kind == "basic":
        return types.UpdateNewMessage(message, client_pts(delivery.pts), delivery.pts_count)
    return types.UpdateNewChannelMessage(message, client_pts(delivery.pts), delivery.pts_count)


def tl_state(pts: int, qts: int, date: float, seq: int) -> types.updates.State:
    """``updates.state`` for a world ``pts`` (shifted as `client_pts` does)."""
    return types.updates.State(
        pts=client_pts(pts), qts=qts, date=tl_date(date), seq=seq, unread_count=0
    )


def tl_dialog(group: WorldGroup, top_message: int, pts: int | None) -> types.Dialog:
    """The ``dialog`` of a group, read up to ``top_message`` (read marks are not modelled);
    ``pts`` is the client's pts of a supergroup, None for a basic group."""
    return types.Dialog(
        peer=tl_peer(group),
        top_message=top_message,
        read_inbox_max_id=top_message,
        read_outbox_max_id=top_message,
        unread_count=0,
        unread_mentions_count=0,
        unread_reactions_count=0,
        unread_poll_votes_count=0,
        notify_settings=types.PeerNotifySettings(),
        pts=pts,
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
