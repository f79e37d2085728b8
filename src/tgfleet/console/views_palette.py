"""The command palette (Ctrl/Cmd-K): the pages, accounts (by label, username or phone) and
playbooks (by name) matching what was typed, each only when the viewer may read it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account import service as account_service
from tgfleet.console import navigation
from tgfleet.console.guard import Viewer
from tgfleet.console.i18n import gettext as _
from tgfleet.console.templating import state_name
from tgfleet.playbook import service as playbook_service

#: Results per kind: the palette is for jumping, the list pages are for browsing.
PER_KIND = 8
#: Playbooks read to match by name (a fleet has tens; the list page pages through more).
PLAYBOOKS_READ = 500
#: What is typed is a search, bounded like the accounts page's.
MAX_QUERY = 100


@dataclass(frozen=True, slots=True)
class Hit:
    kind: str  #: page, account, playbook
    title: str
    detail: str
    url: str


@dataclass(frozen=True, slots=True)
class Results:
    query: str
    hits: list[Hit]


def _matches(query: str, *texts: str) -> bool:
    words = query.casefold().split()
    haystack = " ".join(texts).casefold()
    return all(word in haystack for word in words)


def pages(viewer: Viewer, query: str, mounted: frozenset[str]) -> list[Hit]:
    hits: list[Hit] = []
    seen: set[str] = set()
    for page in navigation.PAGES:
        if page.path not in mounted or page.name in seen:
            continue
        if page.permission is not None and not viewer.can(page.permission):
            continue
        title = _(page.name)
        if query and not _matches(query, title, page.name, page.words, page.path):
            continue
        seen.add(page.name)
        hits.append(Hit("page", title, page.path, page.path))
    return hits


async def search(
    session: AsyncSession, viewer: Viewer, query: str, mounted: frozenset[str]
) -> Results:
    query = " ".join(query.split())[:MAX_QUERY]
    hits = pages(viewer, query, mounted)
    if query and viewer.can("account:read"):
        listing = await account_service.list_accounts(session, cursor=None, limit=PER_KIND, q=query)
        for account in listing.items:
            status = listing.statuses.get(account.id)
            state = state_name(status.state.value if status is not None else "stopped")
            hits.append(
                Hit(
                    "account",
                    account.label,
                    " · ".join(part for part in (account.username or "", state) if part),
                    f"/accounts/{account.id}",
                )
            )
    if query and viewer.can("playbook:read"):
        found = await playbook_service.list_playbooks(session, cursor=None, limit=PLAYBOOKS_READ)
        named = [p for p in found.items if _matches(query, p.name)]
        hits.extend(
            Hit(
                "playbook",
                p.name,
                _("version %(n)s") % {"n": p.latest_version},
                f"/playbooks/{p.id}",
            )
            for p in named[:PER_KIND]
        )
    return Results(query=query, hits=hits)
