from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr

from tgfleet.auth.permissions import Permission
from tgfleet.kit.names import NameRules, name_problem, normalise_name
from tgfleet.kit.schema import RequestSchema, Schema

USERNAME_RULE = "1 to 64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit"
USERNAME_PATTERN = re.compile(r"^[^\W_][\w.@-]{0,63}$")
ROLE_NAME_RULE = "2 to 64 lower-case ASCII letters, digits, '-' or '_', starting with a letter"
ROLE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{1,63}$")


def normalise_username(value: str) -> str:
    """NFKC and case-fold, so 'Alice', 'ALICE' and its full-width form are one user."""
    return unicodedata.normalize("NFKC", value).strip().casefold()


def username_problem(name: str) -> str | None:
    """Why the normalised ``name`` cannot be a username, or None."""
    if not USERNAME_PATTERN.fullmatch(name):
        return f"username must be {USERNAME_RULE}"
    problem = name_problem(name)  # \w admits fillers such as U+3164 HANGUL FILLER
    return f"username {problem}" if problem else None


def _checked(
    normalise: Callable[[str], str], problem_of: Callable[[str], str | None]
) -> Callable[[str], str]:
    """A validator: ``normalise`` the value, then refuse it for the problem ``problem_of``
    names."""

    def check(value: str) -> str:
        normalised = normalise(value)
        problem = problem_of(normalised)
        if problem:
            raise ValueError(problem)
        return normalised

    return check


_username = _checked(normalise_username, username_problem)
#: Free text shown to operators: NFKC, nothing invisible or direction-changing.
_printable = _checked(normalise_name, name_problem)


def _role_name(value: str) -> str:
    if not ROLE_NAME_PATTERN.fullmatch(value):
        msg = f"role name must be {ROLE_NAME_RULE}"
        raise ValueError(msg)
    return value


Username = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_username)]
RoleName = Annotated[str, AfterValidator(_role_name)]
PasswordField = Annotated[SecretStr, Field(min_length=1, max_length=1024)]
TokenName = Annotated[
    str, Field(min_length=1, max_length=100), AfterValidator(NameRules(100, "token name"))
]
Description = Annotated[str, Field(max_length=300), AfterValidator(_printable)]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, resolved from a JWT, an API token, a console session, or the local
    CLI."""

    user_id: uuid.UUID | None
    username: str
    role: str
    permissions: frozenset[Permission]
    via: Literal["jwt", "api_token", "console", "cli"]
    token_name: str | None = None
    # A JWT's or a console session's: a credential change checks it under lock.
    token_epoch: int | None = None

    @property
    def actor(self) -> str:
        if self.via == "api_token":
            return f"token:{self.username}/{self.token_name}"
        if self.via == "cli":
            return f"cli:{self.username}"
        return f"user:{self.username}"


class LoginRequest(RequestSchema):
    # Not the Username type: a malformed name must get the same 401 as a wrong password.
    username: Annotated[str, Field(min_length=1, max_length=256)]
    password: PasswordField


class TokenResponse(Schema):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


class MeRead(Schema):
    id: uuid.UUID | None
    username: str
    role: str
    permissions: list[Permission]
    via: str
    token_name: str | None = None


class PasswordChange(RequestSchema):
    current_password: PasswordField
    new_password: PasswordField


class ApiTokenCreate(RequestSchema):
    name: TokenName
    expires_at: datetime | None = Field(default=None, description="absent: never expires")
    scopes: list[Permission] | None = Field(
        default=None, description="narrow the token to these permissions; absent: all of yours"
    )


class ApiTokenRead(Schema):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class ApiTokenCreated(ApiTokenRead):
    token: str = Field(description="the secret; shown only in this response")


class UserCreate(RequestSchema):
    username: Username
    role: RoleName
    password: PasswordField | None = Field(
        default=None, description="absent: a strong password is generated and returned once"
    )


class UserRead(Schema):
    id: uuid.UUID
    username: str
    role: str
    disabled: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class UserCreated(UserRead):
    generated_password: str | None = Field(
        default=None, description="present only when the server generated the password"
    )


class UserRoleChange(RequestSchema):
    role: RoleName


class PasswordReset(RequestSchema):
    password: PasswordField | None = Field(
        default=None, description="absent: a strong password is generated and returned once"
    )


class PasswordResetResult(Schema):
    username: str
    generated_password: str | None = None


class RoleCreate(RequestSchema):
    name: RoleName
    description: Description = ""
    permissions: list[Permission] = Field(min_length=1)


class RoleUpdate(RequestSchema):
    description: Description | None = None
    permissions: list[Permission] | None = Field(default=None, min_length=1)


class RoleRead(Schema):
    name: str
    description: str
    builtin: bool
    permissions: list[Permission]


class PermissionRead(Schema):
    code: Permission
    description: str
