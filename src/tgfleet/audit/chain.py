"""The hash chain: ``hash = SHA-256(prev_hash || canonical_json(record))``.

The canonical form is JSON with sorted keys, no blanks, UTF-8, and timestamps as
``YYYY-MM-DDTHH:MM:SS.ffffffZ``, so the same record hashes the same on SQLite and
PostgreSQL and in an exported JSON-lines file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tgfleet.kit.clock import isoformat

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class ChainedFields:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    result: str
    ip: str | None
    request_id: str | None
    details: dict[str, Any]

    @classmethod
    def of(cls, record: Any) -> ChainedFields:
        """The chained fields of anything that has them (a stored record, an exported row)."""
        return cls(**{name: getattr(record, name) for name in cls.__slots__})

    def canonical(self) -> bytes:
        document = {
            "seq": self.seq,
            "at": isoformat(self.at),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "result": self.result,
            "ip": self.ip,
            "request_id": self.request_id,
            "details": self.details,
        }
        return json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")


def chain_hash(prev_hash: str, fields: ChainedFields) -> str:
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(fields.canonical())
    return digest.hexdigest()


def open_document(
    text: str, *, format_name: str, version: int, bad: Callable[[str], Exception]
) -> dict[str, Any]:
    """A JSON object of ``format_name`` at ``version`` (the audit key file, a checkpoint);
    ``bad(reason)`` is raised otherwise. The reasons never quote the text."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise bad("not a JSON object") from None
    if not isinstance(document, dict) or document.get("format") != format_name:
        raise bad(f'not a {format_name} document (no "format": "{format_name}")')
    if document.get("version") != version:
        raise bad(f"format version {document.get('version')!r} is not supported")
    return document
