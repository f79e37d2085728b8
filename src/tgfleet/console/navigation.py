"""The console's pages as the command palette finds them: each with its address, its name
(translated where shown) and the permission that reads it. A page whose route is not
mounted in this process is left out (:func:`mounted`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tgfleet.console.i18n import N_


@dataclass(frozen=True, slots=True)
class Page:
    path: str
    name: str  #: the English name (``gettext`` translates it where shown)
    permission: str | None  #: None: every signed-in user
    words: str = ""  #: other words a person may type to find it (English)


PAGES: tuple[Page, ...] = (
    Page("/", N_("Overview"), "account:read", "home dashboard fleet"),
    Page("/accounts", N_("Accounts"), "account:read", "sessions list table"),
    Page("/import", N_("Import sessions"), "session:import", "upload add"),
    Page("/playbooks", N_("Playbooks"), "playbook:read", "rules replies editor"),
    Page("/groups", N_("Groups"), "account:read", "chats replies enable disable"),
    Page("/alerts", N_("Alerts"), "alert:read", "firing notifications"),
    Page("/alerts/silences", N_("Silences"), "alert:read", "mute"),
    Page("/alerts/history", N_("Notification history"), "alert:read", "delivery receivers"),
    Page("/audit", N_("Audit log"), "audit:read", "records verify chain export"),
    Page("/vault", N_("Vault"), "vault:read", "keys rotation keyring"),
    Page("/workers", N_("Workers"), "account:read", "leases capacity heartbeat"),
    Page("/health/checks", N_("Health"), None, "checks status document"),
    Page("/users", N_("Users"), "user:read", "people accounts admin"),
    Page("/roles", N_("Roles"), "user:read", "permissions"),
    Page("/me", N_("My account"), None, "password tokens sessions profile language"),
    Page("/docs", N_("API documentation"), None, "swagger openapi"),
)


def mounted(routes: Iterable[object]) -> frozenset[str]:
    """The addresses this app serves to GET (console pages, /docs, and the rest)."""
    return frozenset(
        str(getattr(route, "path", ""))
        for route in routes
        if "GET" in (getattr(route, "methods", None) or ())
    )
