"""Auth services: what the endpoints, the CLI, the process and other domains call.

This module is auth's public entry (``from tgfleet.auth import service as auth_service``);
the work lives in modules named for what they hold:

- ``tgfleet.auth.security``: ``Security``, what the services need from the settings;
- ``tgfleet.auth.authentication``: password login with its throttle, and resolving a bearer
  credential (JWT or API token) to a principal;
- ``tgfleet.auth.console_sessions``: the web console's server-side sessions (a cookie token
  stored hashed, idle and absolute ends, a CSRF token per session);
- ``tgfleet.auth.credentials``: the caller's own password and API tokens;
- ``tgfleet.auth.users``: users as an admin manages them, and the first admin;
- ``tgfleet.auth.roles``: built-in and custom roles, and a role's permissions;
- ``tgfleet.auth._refusals``: refusals counted by reason in ``tgfleet_auth_denied_total``.

Every change is audited in the caller's unit of work (``tgfleet.audit.service.record``).
Services flush; the unit of work commits.
"""

from __future__ import annotations

from tgfleet.auth._refusals import DeniedReason, count_denied
from tgfleet.auth.authentication import (
    TOKEN_TOUCH_INTERVAL,
    IssuedToken,
    authenticate,
    login,
)
from tgfleet.auth.console_sessions import (
    ConsoleSession,
    ConsoleSessionInfo,
    OpenedConsoleSession,
    close_console_session,
    console_session,
    list_console_sessions,
    open_console_session,
    prune_console_sessions,
    revoke_console_session,
    verify_csrf,
)
from tgfleet.auth.credentials import (
    change_own_password,
    create_api_token,
    list_api_tokens,
    revoke_api_token,
)
from tgfleet.auth.roles import (
    create_role,
    delete_role,
    get_role,
    list_roles,
    role_permissions,
    update_role,
)
from tgfleet.auth.security import Security
from tgfleet.auth.users import (
    change_user_role,
    create_user,
    ensure_admin,
    get_user,
    list_users,
    reset_password,
    set_language,
    set_user_disabled,
)

__all__ = [
    "TOKEN_TOUCH_INTERVAL",
    "ConsoleSession",
    "ConsoleSessionInfo",
    "DeniedReason",
    "IssuedToken",
    "OpenedConsoleSession",
    "Security",
    "authenticate",
    "change_own_password",
    "change_user_role",
    "close_console_session",
    "console_session",
    "count_denied",
    "create_api_token",
    "create_role",
    "create_user",
    "delete_role",
    "ensure_admin",
    "get_role",
    "get_user",
    "list_api_tokens",
    "list_console_sessions",
    "list_roles",
    "list_users",
    "login",
    "open_console_session",
    "prune_console_sessions",
    "reset_password",
    "revoke_api_token",
    "revoke_console_session",
    "role_permissions",
    "set_language",
    "set_user_disabled",
    "update_role",
    "verify_csrf",
]
