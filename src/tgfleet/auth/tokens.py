"""Bearer credentials: short-lived JWTs (login) and named API tokens.

A JWT carries its user's ``token_epoch`` (claim ``epo``) at login; disabling the user or
changing their password increments the epoch in the database, so every JWT issued before is
refused from then on by every API process, even once the user is enabled again.

JWTs are HMAC-signed with the configured algorithm only: ``alg: none`` and every other
algorithm are rejected by passing exactly one algorithm to PyJWT. API tokens are 256-bit
random strings shown once; only their SHA-256 is stored (they are too long to brute-force,
so a slow hash buys nothing and would cost every request). Console session cookies are
stored the same way (``token_digest``).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from tgfleet.auth.exceptions import InvalidToken
from tgfleet.kit.clock import utcnow

API_TOKEN_PREFIX = "tgf_"  # noqa: S105 - a marker, not a secret
API_TOKEN_DISPLAY_LENGTH = 12
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti"]
#: The epoch claim: absent in tokens issued before it existed, which count as epoch 0.
EPOCH_CLAIM = "epo"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    issued_at: datetime
    expires_at: datetime
    token_id: str
    token_epoch: int


class JwtCodec:
    def __init__(self, secret: str, algorithm: str, ttl_seconds: int) -> None:
        self._secret = secret
        self.algorithm = algorithm
        self.ttl_seconds = ttl_seconds

    def issue(self, user_id: uuid.UUID, token_epoch: int, *, now: datetime | None = None) -> str:
        issued = now or utcnow()
        claims = {
            "sub": user_id.hex,
            EPOCH_CLAIM: token_epoch,
            "iat": int(issued.timestamp()),
            "exp": int((issued + timedelta(seconds=self.ttl_seconds)).timestamp()),
            "jti": secrets.token_hex(16),
            "typ": "access",
        }
        return jwt.encode(claims, self._secret, algorithm=self.algorithm)

    def decode(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self.algorithm],
                options={"require": REQUIRED_CLAIMS},
            )
            user_id = uuid.UUID(hex=str(claims["sub"]))
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the access token has expired; log in again") from exc
        except (jwt.InvalidTokenError, ValueError) as exc:
            raise InvalidToken("the access token is not valid") from exc
        epoch = claims.get(EPOCH_CLAIM, 0)
        if claims.get("typ") != "access" or type(epoch) is not int:
            raise InvalidToken("the access token is not valid")
        try:  # signed, yet absurd: an iat of -1e20 is not a date
            issued_at = datetime.fromtimestamp(int(claims["iat"]), tz=UTC)
            expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
        except (OverflowError, OSError, ValueError, TypeError) as exc:
            raise InvalidToken("the access token is not valid") from exc
        return AccessClaims(
            user_id=user_id,
            issued_at=issued_at,
            expires_at=expires_at,
            token_id=str(claims["jti"]),
            token_epoch=epoch,
        )


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def is_api_token(value: str) -> bool:
    return value.startswith(API_TOKEN_PREFIX)


def token_digest(value: str) -> str:
    """What is stored of a random token (an API token, a console session's cookie)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def api_token_display(value: str) -> str:
    return value[:API_TOKEN_DISPLAY_LENGTH]
