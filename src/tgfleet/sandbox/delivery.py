"""What the running world hands out: one update as one fleet account sees it, and its state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EventKind = Literal["message", "join"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One update as one fleet account sees it.

    Basic groups: ``message_id``, ``pts`` and ``seq`` are the account's own. Supergroups:
    ``message_id`` and ``pts`` are the channel's, shared by every member, and ``seq`` is 0
    (channel updates go out in ``Updates`` with seq 0, outside the account's seq).
    ``origin_id`` names the event across all accounts' views. ``mentions`` are the user
    ids @mentioned in the text; ``reply_to`` is a message id in this account's view (None if
    the account cannot see the replied message), ``reply_to_origin`` the replied message's
    ``origin_id`` (whoever views it; None if not a reply).
    """

    account_id: int
    group_id: int
    kind: EventKind
    message_id: int
    pts: int
    pts_count: int
    seq: int
    date: int
    sender_id: int
    text: str
    reply_to: int | None
    mentions: tuple[int, ...]
    origin_id: int
    random_id: int | None = None
    reply_to_origin: int | None = None

    @property
    def out(self) -> bool:
        """True when the account sent this message itself."""
        return self.sender_id == self.account_id


@dataclass(frozen=True, slots=True)
class UpdateState:
    """The answer to ``updates.getState`` for one account."""

    pts: int
    qts: int
    seq: int
    date: int
