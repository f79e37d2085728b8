"""Permission codes and the built-in roles (DESIGN §7).

Built-in roles take their permissions from here, not from the database, so a release that
adds a permission extends the built-in roles without a data migration.
"""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    ACCOUNT_READ = "account:read"
    ACCOUNT_WRITE = "account:write"
    ACCOUNT_CONTROL = "account:control"
    SESSION_IMPORT = "session:import"
    SESSION_EXPORT = "session:export"
    SESSION_DELETE = "session:delete"
    VAULT_READ = "vault:read"
    VAULT_ROTATE = "vault:rotate"
    PLAYBOOK_READ = "playbook:read"
    PLAYBOOK_WRITE = "playbook:write"
    ALERT_READ = "alert:read"
    ALERT_WRITE = "alert:write"
    AUDIT_READ = "audit:read"
    AUDIT_EXPORT = "audit:export"
    USER_READ = "user:read"
    USER_ADMIN = "user:admin"


PERMISSION_DESCRIPTIONS: dict[Permission, str] = {
    Permission.ACCOUNT_READ: "see accounts, their state and timeline",
    Permission.ACCOUNT_WRITE: "create, edit and delete accounts and their group settings",
    Permission.ACCOUNT_CONTROL: "start, stop and restart accounts",
    Permission.SESSION_IMPORT: "import session files and strings into the vault",
    Permission.SESSION_EXPORT: "export a decrypted session (audited, needs a reason)",
    Permission.SESSION_DELETE: "delete a session from the vault",
    Permission.VAULT_READ: "see the vault's keys (ids only) and what they wrap",
    Permission.VAULT_ROTATE: "rotate the vault's key-encryption keys",
    Permission.PLAYBOOK_READ: "see playbooks",
    Permission.PLAYBOOK_WRITE: "create and edit playbooks",
    Permission.ALERT_READ: "see alerts and silences",
    Permission.ALERT_WRITE: "create silences, send test alerts",
    Permission.AUDIT_READ: "read and verify the audit log",
    Permission.AUDIT_EXPORT: "export the audit log (audited, needs a reason)",
    Permission.USER_READ: "see users and roles",
    Permission.USER_ADMIN: "create users and roles, change roles, reset passwords",
}

ADMIN = "admin"
OPERATOR = "operator"
VIEWER = "viewer"
AUDITOR = "auditor"

BUILTIN_ROLES: dict[str, frozenset[Permission]] = {
    ADMIN: frozenset(Permission),
    OPERATOR: frozenset(
        {
            Permission.ACCOUNT_READ,
            Permission.ACCOUNT_WRITE,
            Permission.ACCOUNT_CONTROL,
            Permission.SESSION_IMPORT,
            Permission.PLAYBOOK_READ,
            Permission.PLAYBOOK_WRITE,
            Permission.ALERT_READ,
            Permission.ALERT_WRITE,
        }
    ),
    VIEWER: frozenset({Permission.ACCOUNT_READ, Permission.PLAYBOOK_READ, Permission.ALERT_READ}),
    AUDITOR: frozenset(
        {
            Permission.AUDIT_READ,
            Permission.ACCOUNT_READ,
            Permission.PLAYBOOK_READ,
            Permission.ALERT_READ,
            Permission.USER_READ,
            Permission.VAULT_READ,
        }
    ),
}

BUILTIN_DESCRIPTIONS: dict[str, str] = {
    ADMIN: "everything, including users, roles, session export and key rotation",
    OPERATOR: "runs the fleet: accounts, imports, playbooks, alerts; no export, no users",
    VIEWER: "read-only view of accounts, playbooks and alerts",
    AUDITOR: "reads the audit log, users and the fleet; changes nothing",
}


def parse_permissions(codes: list[str]) -> frozenset[Permission]:
    """Turn codes into permissions; raise ValueError naming every unknown code."""
    unknown = sorted({code for code in codes if code not in Permission._value2member_map_})
    if unknown:
        msg = f"unknown permission codes: {', '.join(unknown)}"
        raise ValueError(msg)
    return frozenset(Permission(code) for code in codes)
