"""What the auth services need from the settings (password hashing, the JWT codec, the
login throttle's parameters, the console sessions' timeouts), built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field

from tgfleet.auth.passwords import Passwords
from tgfleet.auth.secret import jwt_secret
from tgfleet.auth.tokens import JwtCodec
from tgfleet.config import Settings


@dataclass(frozen=True)
class Security:
    """Everything the auth services need from the settings, built once per process."""

    passwords: Passwords
    jwt: JwtCodec
    throttle_threshold: int
    throttle_base_seconds: float
    throttle_max_seconds: float
    throttle_window_seconds: float
    console_idle_seconds: int
    console_max_seconds: int
    #: The JWT secret's bytes: the key of the console sessions' CSRF tokens (never shown).
    signing_key: bytes = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Security:
        secret = jwt_secret(settings)
        return cls(
            passwords=Passwords(
                time_cost=settings.argon2_time_cost,
                memory_kib=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
                min_length=settings.password_min_length,
            ),
            jwt=JwtCodec(secret, settings.jwt_algorithm, settings.jwt_ttl_seconds),
            throttle_threshold=settings.login_throttle_threshold,
            throttle_base_seconds=settings.login_throttle_base_seconds,
            throttle_max_seconds=settings.login_throttle_max_seconds,
            throttle_window_seconds=settings.login_throttle_window_seconds,
            console_idle_seconds=settings.console_session_idle_seconds,
            console_max_seconds=settings.console_session_max_seconds,
            signing_key=secret.encode("utf-8"),
        )

    def throttle_delay(self, failures: int) -> float:
        """Seconds to block after ``failures`` consecutive failures (0 below the threshold)."""
        if failures < self.throttle_threshold:
            return 0.0
        exponent = min(failures - self.throttle_threshold, 32)
        return float(min(self.throttle_base_seconds * 2**exponent, self.throttle_max_seconds))
