"""What the audit pages show, from the audit service: the log filtered by actor, action,
target and time range, paged by cursor; one record with every field; the chain's
verification and its first bad record."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditFilters, AuditRecordRead, AuditVerifyRead
from tgfleet.console.i18n import gettext as _
from tgfleet.console.i18n import ngettext
from tgfleet.exceptions import InvalidInput, NotFound

AUDIT_PAGE = 50
#: The longest value each filter takes (the API's and the columns' bounds).
FILTER_LIMITS: dict[str, int] = {"actor": 200, "action": 64, "target": 300}
#: A time filter's longest text (``2026-01-01T00:00:00.000000+00:00`` and some slack).
TIME_LIMIT = 40
#: What the route's query parameters accept at most, before the checks above name the field.
RAW_LIMIT = 1000
#: A record's sequence number in a URL: a PostgreSQL BIGINT.
SEQ_MAX = 2**63 - 1


class AuditRecordNotFound(NotFound):
    code = "audit_record_not_found"


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """The filters as typed (shown back in the form), what they mean, and what is wrong
    with them (field -> message, shown next to the field)."""

    actor: str = ""
    action: str = ""
    target: str = ""
    since: str = ""
    until: str = ""
    filters: AuditFilters = field(default_factory=AuditFilters)
    errors: dict[str, str] = field(default_factory=dict)

    def params(self, **changes: str | None) -> dict[str, str]:
        values: dict[str, str | None] = {}
        values |= {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "from": self.since,
            "to": self.until,
        }
        values |= changes
        return {name: value for name, value in values.items() if value}

    def url(self, **changes: str | None) -> str:
        query = urlencode(self.params(**changes))
        return "/audit" + (f"?{query}" if query else "")


def _text(name: str, raw: str, errors: dict[str, str]) -> str | None:
    value = raw.strip()
    if not value:
        return None
    limit = FILTER_LIMITS[name]
    if len(value) > limit:
        errors[name] = _("At most %(n)s characters.") % {"n": limit}
    elif not value.isprintable():
        errors[name] = _("Control characters are not allowed.")
    elif name == "action" and "*" in value[:-1]:
        errors[name] = _("Use * only at the end, for a prefix (vault.*).")
    return value


def _moment(name: str, raw: str, errors: dict[str, str]) -> datetime | None:
    """A time as a ``datetime-local`` field sends it (read as UTC) or ISO 8601 with a zone."""
    value = raw.strip()
    if not value:
        return None
    if len(value) > TIME_LIMIT:
        errors[name] = _("At most %(n)s characters.") % {"n": TIME_LIMIT}
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        errors[name] = _("Not a time: use 2026-01-31T14:00 (UTC) or ISO 8601 with a zone.")
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        errors[name] = _("Not a time: use 2026-01-31T14:00 (UTC) or ISO 8601 with a zone.")
        return None


def parse_query(actor: str, action: str, target: str, since: str, until: str) -> AuditQuery:
    errors: dict[str, str] = {}
    values = {
        "actor": _text("actor", actor, errors),
        "action": _text("action", action, errors),
        "target": _text("target", target, errors),
    }
    start = _moment("from", since, errors)
    end = _moment("to", until, errors)
    if start is not None and end is not None and end <= start:
        errors["to"] = _("The end must be after the start.")
    return AuditQuery(
        actor=actor.strip()[:RAW_LIMIT],
        action=action.strip()[:RAW_LIMIT],
        target=target.strip()[:RAW_LIMIT],
        since=since.strip()[:RAW_LIMIT],
        until=until.strip()[:RAW_LIMIT],
        filters=AuditFilters(**values, since=start, until=end),
        errors=errors,
    )


@dataclass(frozen=True, slots=True)
class AuditLog:
    query: AuditQuery
    cursor: str | None
    next_cursor: str | None
    #: The API's own reading of each record (``GET /api/v1/audit``).
    records: list[AuditRecordRead]


async def audit_log(session: AsyncSession, query: AuditQuery, cursor: str | None) -> AuditLog:
    """One page of records, newest first; none while a filter is refused."""
    if query.errors:
        return AuditLog(query=query, cursor=cursor, next_cursor=None, records=[])
    try:
        found = await audit_service.search(
            session, **dataclasses.asdict(query.filters), cursor=cursor, limit=AUDIT_PAGE
        )
    except InvalidInput:
        errors = {"cursor": _("This page link is broken: start again from the newest records.")}
        return AuditLog(
            query=dataclasses.replace(query, errors=errors),
            cursor=None,
            next_cursor=None,
            records=[],
        )
    return AuditLog(
        query=query,
        cursor=cursor,
        next_cursor=found.next_cursor,
        records=[AuditRecordRead.model_validate(entry) for entry in found.items],
    )


@dataclass(frozen=True, slots=True)
class RecordDetail:
    record: AuditRecordRead
    #: The details as indented JSON (autoescaped where shown).
    details_json: str


async def record_detail(session: AsyncSession, seq: int) -> RecordDetail:
    entry = await audit_service.get(session, seq) if 1 <= seq <= SEQ_MAX else None
    if entry is None:
        msg = _("No audit record %(seq)s: check the link, or find the record in the log.") % {
            "seq": seq
        }
        raise AuditRecordNotFound(msg)
    record = AuditRecordRead.model_validate(entry)
    return RecordDetail(
        record=record,
        details_json=json.dumps(record.details, indent=2, sort_keys=True, ensure_ascii=False),
    )


def verification_summary(result: AuditVerifyRead) -> str:
    """One sentence a person reads for the result."""
    if result.ok:
        return ngettext(
            "The chain is intact: %(num)s record checked.",
            "The chain is intact: %(num)s records checked.",
            result.count,
        ) % {"num": result.count}
    if result.first_bad_seq is not None:
        return _("The chain is broken at record %(seq)s.") % {"seq": result.first_bad_seq}
    return _("The chain could not be verified.")
