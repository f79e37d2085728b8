"""Password hashing (argon2id) and the password policy.

Hashing costs tens of milliseconds of CPU and 64 MiB by default, so it runs in a thread,
never on the event loop. A login for an unknown user verifies against a dummy hash with the
same parameters, so its timing matches a wrong password.
"""

from __future__ import annotations

import asyncio
import secrets
import string
import unicodedata
from functools import cached_property

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from tgfleet.auth.exceptions import WeakPassword

MAX_PASSWORD_LENGTH = 1024
GENERATED_ALPHABET = string.ascii_letters + string.digits


class Passwords:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int, min_length: int):
        self.hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=Type.ID,
        )
        self.min_length = min_length

    @cached_property
    def _dummy_hash(self) -> str:
        return self.hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` matches; with no hash, spend the same time and say no."""
        return await asyncio.to_thread(self._verify, password_hash, password)

    def _verify(self, password_hash: str | None, password: str) -> bool:
        target = password_hash if password_hash is not None else self._dummy_hash
        try:
            matched = self.hasher.verify(target, password)
        except (VerificationError, InvalidHashError):
            return False
        return matched and password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)

    def check_policy(self, password: str, *, username: str) -> None:
        """Raise WeakPassword with the first rule the password breaks."""
        if len(password) < self.min_length:
            msg = f"password must be at least {self.min_length} characters"
            raise WeakPassword(msg)
        if len(password) > MAX_PASSWORD_LENGTH:
            msg = f"password must be at most {MAX_PASSWORD_LENGTH} characters"
            raise WeakPassword(msg)
        if not password.strip():
            msg = "password must not be only blanks"
            raise WeakPassword(msg)
        normalised = unicodedata.normalize("NFKC", password).casefold()
        if normalised == unicodedata.normalize("NFKC", username).casefold():
            msg = "password must not be the username"
            raise WeakPassword(msg)
        if len(set(password)) < 4:
            msg = "password must use at least 4 different characters"
            raise WeakPassword(msg)

    def generate(self, length: int = 20) -> str:
        return "".join(
            secrets.choice(GENERATED_ALPHABET) for _ in range(max(length, self.min_length))
        )
