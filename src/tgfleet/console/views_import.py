"""The import page's data: what it says about the limits, the pasted strings as files, and
an import's result per file with the way to the new accounts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.account import service as account_service
from tgfleet.config import Settings
from tgfleet.console.i18n import N_, gettext
from tgfleet.kit.db import unit_of_work
from tgfleet.vault import service as vault_service

#: A file's result code when it was imported; any other is the API's error code
#: (``ImportReport.results[].error``: duplicate_session, not_sqlite, bad_session_string...).
IMPORTED = "imported"
#: Result codes shown as a warning rather than a failure (nothing is wrong with the file).
_WARN_CODES = frozenset({"duplicate_session"})
#: Each result code as the badge names it (the row's detail says more, in the API's words);
#: a code not listed shows as it is.
CODE_NAMES: dict[str, str] = {
    IMPORTED: N_("imported"),
    "failed": N_("failed"),
    "invalid_session": N_("invalid session"),
    "not_sqlite": N_("not an SQLite file"),
    "foreign_sqlite": N_("another program's SQLite file"),
    "unknown_schema_version": N_("unknown session version"),
    "session_row_count": N_("not exactly one session"),
    "bad_auth_key": N_("bad auth key"),
    "bad_dc_id": N_("bad data centre"),
    "bad_address": N_("bad server address"),
    "corrupt_session": N_("damaged session"),
    "bad_session_string": N_("bad session string"),
    "unknown_format": N_("unknown format"),
    "import_too_large": N_("too large"),
    "bad_archive": N_("bad zip"),
    "duplicate_session": N_("already imported"),
    "vault_key_error": N_("vault key error"),
    "vault_key_unavailable": N_("vault key unavailable"),
}


@dataclass(frozen=True, slots=True)
class ImportLimits:
    upload_mib: float
    files: int
    file_kib: float


def limits(settings: Settings) -> ImportLimits:
    return ImportLimits(
        upload_mib=settings.import_max_upload_bytes / 2**20,
        files=settings.import_max_entries,
        file_kib=settings.import_max_file_bytes / 2**10,
    )


def strings_as_files(text: str) -> list[vault_service.UploadedFile]:
    """The session strings pasted into the form, one a line (blank lines skipped), as the
    files the API would take for them: ``string-1.txt``, ``string-2.txt``... by line."""
    lines = [line.strip() for line in text.splitlines()]
    return [
        vault_service.UploadedFile(name=f"string-{number}.txt", data=bytearray(line.encode()))
        for number, line in enumerate((line for line in lines if line), start=1)
    ]


@dataclass(frozen=True, slots=True)
class ImportRow:
    name: str
    code: str
    code_name: str  #: the code in the reader's language
    tone: str
    detail: str | None
    account_id: uuid.UUID | None
    label: str | None


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    rows: list[ImportRow]
    imported: int
    failed: int
    #: The accounts table filtered to exactly the imported accounts (their labels' common
    #: prefix selects them and no other account), or None: then the rows link each one.
    table_link: str | None


def _row(result: vault_service.ImportResult) -> ImportRow:
    code = IMPORTED if result.ok else (result.error or "failed")
    return ImportRow(
        name=result.name,
        code=code,
        code_name=gettext(CODE_NAMES[code]) if code in CODE_NAMES else code.replace("_", " "),
        tone="ok" if result.ok else "warn" if code in _WARN_CODES else "bad",
        detail=result.detail,
        account_id=result.account_id,
        label=result.label,
    )


def common_prefix(labels: Sequence[str]) -> str:
    """The longest text every label starts with ("" for none)."""
    if not labels:
        return ""
    first, last = min(labels), max(labels)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]


async def outcome(
    sessionmaker: async_sessionmaker[AsyncSession],
    results: Sequence[vault_service.ImportResult],
) -> ImportOutcome:
    """The result table of an import, read after it committed."""
    accounts = {r.account_id: r.label or "" for r in results if r.ok and r.account_id}
    link = None
    prefix = common_prefix(list(accounts.values()))
    if prefix:
        async with unit_of_work(sessionmaker, read_only=True) as session:
            matching = sum((await account_service.state_counts(session, label=prefix)).values())
        if matching == len(accounts):
            link = "/accounts?" + urlencode({"label": prefix})
    imported = sum(r.ok for r in results)
    return ImportOutcome(
        rows=[_row(result) for result in results],
        imported=imported,
        failed=len(results) - imported,
        table_link=link,
    )
