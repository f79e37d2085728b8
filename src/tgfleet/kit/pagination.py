"""Cursor pagination: an opaque cursor carries the sort key of the last item returned."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import Field

from tgfleet.exceptions import InvalidInput
from tgfleet.kit.schema import Schema

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


T = TypeVar("T")


class Page(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="pass as ?cursor= to get the next page; null on the last"
    )


def encode_cursor(key: dict[str, Any]) -> str:
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        msg = "cursor is not one this API returned"
        raise InvalidInput(msg) from exc
    if not isinstance(value, dict):
        msg = "cursor is not one this API returned"
        raise InvalidInput(msg)
    return value


S = TypeVar("S", bound=Schema)


@dataclass(frozen=True, slots=True)
class Slice(Generic[T]):
    """What a service returns for one page: ORM rows and the cursor for the next page."""

    items: list[T]
    next_cursor: str | None


def slice_rows(rows: list[T], limit: int, key: Callable[[T], dict[str, Any]]) -> Slice[T]:
    """Cut ``limit + 1`` fetched rows into a page and the cursor that continues after it."""
    if len(rows) > limit:
        return Slice(items=rows[:limit], next_cursor=encode_cursor(key(rows[limit - 1])))
    return Slice(items=rows, next_cursor=None)


def to_page(result: Slice[Any], schema: type[S]) -> Page[S]:
    return Page[schema](  # type: ignore[valid-type]
        items=[schema.model_validate(item) for item in result.items],
        next_cursor=result.next_cursor,
    )
