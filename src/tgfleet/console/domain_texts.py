"""Texts the domains write in English that the console shows a person: the permissions'
descriptions, the built-in roles' descriptions, the health document's fixed words, an
account's desired state and control actions, the vault's key and rotation states, an audit
record's result. Each is listed here (``N_()``, or ``pgettext`` where one English word reads
two ways), so the catalogue carries it, and translated where the console shows it (the view
layer or a template filter calls the functions below in the request's language).

The domains keep their English: the API answers in it and the database stores it. A listed
text must be the domain's text exactly (tests/console/test_domain_texts.py compares them),
so a domain that changes or adds one fails a test instead of leaving English on a Chinese
page. A text this module does not know (a custom role's own description, a health check's
output with a measured number in it, a domain error's message) is shown as the domain wrote
it.
"""

from __future__ import annotations

from typing import Final

from tgfleet.account.schemas import ControlAction
from tgfleet.audit import service as audit_service
from tgfleet.auth.permissions import (
    ADMIN,
    AUDITOR,
    OPERATOR,
    PERMISSION_DESCRIPTIONS,
    VIEWER,
    Permission,
)
from tgfleet.console.i18n import N_, gettext, pgettext
from tgfleet.models.account import DesiredState
from tgfleet.models.vault_rotation import RotationState

#: Every permission's description (``PERMISSION_DESCRIPTIONS``), for the catalogue.
PERMISSION_TEXTS: Final[dict[Permission, str]] = {
    Permission.ACCOUNT_READ: N_("see accounts, their state and timeline"),
    Permission.ACCOUNT_WRITE: N_("create, edit and delete accounts and their group settings"),
    Permission.ACCOUNT_CONTROL: N_("start, stop and restart accounts"),
    Permission.SESSION_IMPORT: N_("import session files and strings into the vault"),
    Permission.SESSION_EXPORT: N_("export a decrypted session (audited, needs a reason)"),
    Permission.SESSION_DELETE: N_("delete a session from the vault"),
    Permission.VAULT_READ: N_("see the vault's keys (ids only) and what they wrap"),
    Permission.VAULT_ROTATE: N_("rotate the vault's key-encryption keys"),
    Permission.PLAYBOOK_READ: N_("see playbooks"),
    Permission.PLAYBOOK_WRITE: N_("create and edit playbooks"),
    Permission.ALERT_READ: N_("see alerts and silences"),
    Permission.ALERT_WRITE: N_("create silences, send test alerts"),
    Permission.AUDIT_READ: N_("read and verify the audit log"),
    Permission.AUDIT_EXPORT: N_("export the audit log (audited, needs a reason)"),
    Permission.USER_READ: N_("see users and roles"),
    Permission.USER_ADMIN: N_("create users and roles, change roles, reset passwords"),
}

#: Every built-in role's description (``BUILTIN_DESCRIPTIONS``, what migration 0001 stored).
BUILTIN_ROLE_TEXTS: Final[dict[str, str]] = {
    ADMIN: N_("everything, including users, roles, session export and key rotation"),
    OPERATOR: N_("runs the fleet: accounts, imports, playbooks, alerts; no export, no users"),
    VIEWER: N_("read-only view of accounts, playbooks and alerts"),
    AUDITOR: N_("reads the audit log, users and the fleet; changes nothing"),
}

#: The health document's fixed texts: each process role's description and the checks'
#: outputs that carry no measured value.
HEALTH_TEXTS: Final[frozenset[str]] = frozenset(
    {
        N_("tgfleet API and console"),
        N_("tgfleet worker (account runtime)"),
        N_("tgfleet run: API, console and account runtime in one process"),
        N_("network monitor off (TGFLEET_TELEGRAM_DCS is empty)"),
        N_("not probed yet"),
        N_("the active key-encryption key is not usable"),
        N_("no notification sent yet"),
        N_(
            "no account runtime in this process (on SQLite `tgfleet run` runs the accounts; "
            "this process serves the API only)"
        ),
        N_("the account runtime of this process is not running"),
        N_("no account is desired running"),
        N_("the worker's lease is not fresh (not renewed for half its TTL, or fenced)"),
    }
)

#: The health checks' units (``observedUnit``), as a person reads them after a number.
HEALTH_UNITS: Final[dict[str, str]] = {
    "ms": N_("ms"),
    "bytes": N_("bytes"),
    "keys": N_("keys"),
    "workers": N_("workers"),
    "ratio": N_("ratio"),
}


def permission_description(code: Permission) -> str:
    """``code``'s description in the reader's language."""
    text = PERMISSION_TEXTS.get(code)
    return gettext(text) if text is not None else PERMISSION_DESCRIPTIONS[code]


def role_description(name: str, description: str, *, builtin: bool) -> str:
    """A role's description in the reader's language when it is a built-in role's own
    (unchanged) text; a custom role's description is what its author wrote."""
    if builtin and description and description == BUILTIN_ROLE_TEXTS.get(name):
        return gettext(description)
    return description


def health_text(text: str | None) -> str | None:
    """A health document's description or output, translated when it is a fixed text."""
    if text is not None and text in HEALTH_TEXTS:
        return gettext(text)
    return text


def health_unit(unit: str | None) -> str | None:
    """A health check's unit, translated when known (else the code as it is)."""
    if unit is not None and unit in HEALTH_UNITS:
        return gettext(HEALTH_UNITS[unit])
    return unit


def _state_words() -> dict[tuple[str, str], str]:
    """Each (kind, code) the functions below name, in the reader's language (``pgettext``:
    "running" is an account's desired state and a rotation's state, read differently)."""
    return {
        ("vault key", "active"): pgettext("vault key", "active"),
        ("vault key", "usable"): pgettext("vault key", "usable"),
        ("vault key", "retired"): pgettext("vault key", "retired"),
        ("vault key", "missing"): pgettext("vault key", "missing"),
        ("rotation", RotationState.RUNNING): pgettext("rotation", "running"),
        ("rotation", RotationState.DONE): pgettext("rotation", "done"),
        ("rotation", RotationState.DONE_WITH_FAILURES): pgettext("rotation", "done with failures"),
        ("rotation", RotationState.ABANDONED): pgettext("rotation", "abandoned"),
        ("desired", DesiredState.RUNNING): pgettext("desired state", "running"),
        ("desired", DesiredState.STOPPED): pgettext("desired state", "stopped"),
        ("action", ControlAction.START): pgettext("control action", "start"),
        ("action", ControlAction.STOP): pgettext("control action", "stop"),
        ("action", ControlAction.RESTART): pgettext("control action", "restart"),
        ("audit", audit_service.SUCCESS): pgettext("audit result", "success"),
        ("audit", audit_service.FAILURE): pgettext("audit result", "failure"),
        ("audit", audit_service.DENIED): pgettext("audit result", "denied"),
    }


def vault_key_state(state: str) -> str:
    """A key-encryption key's state (``vault.rotation.status``: active, usable, retired,
    missing) as a word in the reader's language; an unknown state as it is."""
    return _state_words().get(("vault key", state), state)


def rotation_state(state: str) -> str:
    """A key rotation's state (``RotationState``) as a word in the reader's language."""
    return _state_words().get(("rotation", state), state)


def desired_state(state: str) -> str:
    """An account's desired state (``DesiredState``) as a word in the reader's language."""
    return _state_words().get(("desired", state), state)


def control_action(action: str) -> str:
    """A start, stop or restart (``ControlAction``) as the reader's language names it."""
    return _state_words().get(("action", action), action)


def audit_result(result: str) -> str:
    """An audit record's result (success, failure, denied) in the reader's language."""
    return _state_words().get(("audit", result), result)
