from __future__ import annotations

from tgfleet.exceptions import AppError, Conflict, Forbidden, InvalidInput, NotFound, Unauthorized


class InvalidCredentials(Unauthorized):
    """Wrong username or password: one message for both, so names cannot be probed."""

    code = "invalid_credentials"
    keeps_changes = True

    def __init__(self) -> None:
        super().__init__("invalid username or password")


class LoginThrottled(AppError):
    status_code = 429
    code = "login_throttled"
    keeps_changes = True

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many failed logins; try again in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class UserDisabled(Forbidden):
    """Right password, disabled user: said only after the password matched."""

    code = "user_disabled"
    keeps_changes = True

    def __init__(self) -> None:
        super().__init__("this user is disabled; ask an admin to enable it")


class InvalidToken(Unauthorized):
    code = "invalid_token"


class PermissionDenied(Forbidden):
    code = "permission_denied"


class AccessDenied(PermissionDenied):
    """A route guard said no. The denial is audited, so the unit of work keeps it."""

    keeps_changes = True


class UserNotFound(NotFound):
    code = "user_not_found"


class UserExists(Conflict):
    code = "user_exists"


class UsernameConfusable(UserExists):
    """The name looks like an existing user's (equal Unicode TR39 skeletons)."""

    code = "username_confusable"


class RoleNotFound(NotFound):
    code = "role_not_found"


class RoleExists(Conflict):
    code = "role_exists"


class RoleInUse(Conflict):
    code = "role_in_use"


class BuiltinRoleReadOnly(Forbidden):
    code = "builtin_role_read_only"


class TokenNotFound(NotFound):
    code = "token_not_found"


class ConsoleSessionNotFound(NotFound):
    """No console session of the caller's with that id (another user's is not found either:
    its existence is not told)."""

    code = "console_session_not_found"


class TokenExists(Conflict):
    code = "token_exists"


class InvalidUsername(InvalidInput):
    code = "invalid_username"


class WeakPassword(InvalidInput):
    code = "weak_password"


class InvalidScope(InvalidInput):
    code = "invalid_scope"


class LastAdmin(Conflict):
    """Refused: the change would leave no enabled user with the admin role."""

    code = "last_admin"
