"""The message boxes of the running world: where its deliveries are numbered and kept.

An `AccountBox` is an account's common message box (basic groups: its own message ids, pts,
seq and backlog); a `ChannelBox` is a supergroup's (one id and pts sequence shared by every
member). `backlog_after` answers a difference request from either backlog.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from tgfleet.sandbox.delivery import Delivery
from tgfleet.sandbox.rule_errors import DifferenceTooLong


class AccountBox:
    """An account's common message box: basic-group ids, pts, seq, backlog."""

    def __init__(self, backlog_limit: int, history_limit: int) -> None:
        self.pts = 0
        self.qts = 0
        self.seq = 0
        self.last_message_id = 0
        self.backlog: deque[Delivery] = deque(maxlen=backlog_limit)
        self.history_limit = history_limit
        self.remember_limit = backlog_limit + history_limit
        self.history: dict[int, deque[Delivery]] = {}
        #: origin id → this account's message id, for translating replies.
        self.message_by_origin: OrderedDict[int, int] = OrderedDict()
        self.origin_by_message: dict[int, int] = {}

    def remember(self, origin_id: int, message_id: int) -> None:
        self.message_by_origin[origin_id] = message_id
        self.origin_by_message[message_id] = origin_id
        # Ids older than anything history or backlog keeps cannot be replied to any more.
        while len(self.message_by_origin) > self.remember_limit:
            _, old_message = self.message_by_origin.popitem(last=False)
            self.origin_by_message.pop(old_message, None)


class ChannelBox:
    """A supergroup's shared message ids, pts and backlog (stored once, viewed per account)."""

    def __init__(self, backlog_limit: int) -> None:
        self.pts = 0
        self.last_message_id = 0
        self.backlog: deque[Delivery] = deque(maxlen=backlog_limit)
        self.message_by_origin: OrderedDict[int, int] = OrderedDict()
        self.origin_by_message: dict[int, int] = {}


def backlog_after(
    backlog: deque[Delivery], pts: int, current_pts: int, what: str
) -> list[Delivery]:
    if pts >= current_pts:
        return []
    oldest_kept = backlog[0].pts - backlog[0].pts_count if backlog else current_pts
    if pts < oldest_kept:
        raise DifferenceTooLong(
            f"{what}: pts {pts} is older than the backlog (from {oldest_kept})",
            current_pts=current_pts,
        )
    out: list[Delivery] = []
    for event in reversed(backlog):
        if event.pts <= pts:
            break
        out.append(event)
    out.reverse()
    return out
