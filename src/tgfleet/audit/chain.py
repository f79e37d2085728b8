"""The hash chain: ``hash = SHA-256(prev_hash || canonical_json(record))``.

The canonical form is JSON with sorted keys, no blanks, UTF-8, and timestamps as
``YYYY-MM-DDTHH:MM:SS.ffffffZ``, so the same record hashes the same on SQLite and
PostgreSQL and in an exported JSON-lines file.
"""

from __future__ import annotations

import hashlib
import json
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
