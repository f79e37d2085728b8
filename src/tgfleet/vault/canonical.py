"""The canonical session: one logged-in Telegram session, whatever format it came in.

``CanonicalSession`` validates every field on construction, with the checks the parsers
of every format share (each raising the specific ``SessionFormatError``); the import policy,
the fingerprint that finds a re-imported login, and the address Pyrogram would use for a DC
live here too. See ``tgfleet.vault.formats`` for the formats themselves.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from tgfleet.vault.exceptions import AddressError, AuthKeyError, CorruptSessionError, DcIdError

AUTH_KEY_BYTES: Final = 256

MAX_DC_ID: Final = 255  # both string formats store the dc id in one byte
MAX_USER_ID: Final = 2**63 - 1  # SQLite INTEGER is signed 64-bit
MAX_API_ID: Final = 2**31 - 1  # Telegram's api_id is a positive int32

# Pyrogram's DataCenter tables (pyrogram/session/internals/data_center.py, 2.0.106).
_PYROGRAM_PROD: Final = {
    1: "149.154.175.53",
    2: "149.154.167.51",
    3: "149.154.175.100",
    4: "149.154.167.91",
    5: "91.108.56.130",
    203: "91.105.192.100",
}
_PYROGRAM_TEST: Final = {1: "149.154.175.10", 2: "149.154.167.40", 3: "149.154.175.117"}
_PROD_PORT: Final = 443
_TEST_PORT: Final = 80
_UNKNOWN_DC_ADDRESS: Final = ("127.0.0.1", 443)

_AUTH_KEY_ID_PREFIX: Final = b"tgfleet/auth-key-id\x00"


class SessionFormat(StrEnum):
    """The session formats tgfleet reads and writes."""

    TELETHON = "telethon"
    PYROGRAM = "pyrogram"
    TELETHON_STRING = "telethon-string"
    PYROGRAM_STRING = "pyrogram-string"


@dataclass(frozen=True, slots=True)
class CanonicalSession:
    """One logged-in Telegram session, whatever format it came in.

    Construction validates every field (raising the specific ``SessionFormatError``) and
    normalises ``address`` to its compressed text form, so an instance can always be
    emitted. The auth key stays out of ``repr``.
    """

    dc_id: int
    address: str
    port: int
    auth_key: bytes = field(repr=False)
    user_id: int | None
    api_id: int | None
    test_mode: bool
    is_bot: bool | None
    source_format: SessionFormat

    def __post_init__(self) -> None:
        check_auth_key(self.auth_key)
        _check_dc_id(self.dc_id)
        object.__setattr__(self, "address", check_address(self.address))
        check_port(self.port)
        _check_optional_id(self.user_id, "user id", MAX_USER_ID)
        _check_optional_id(self.api_id, "api id", MAX_API_ID)
        if not isinstance(self.test_mode, bool) or not isinstance(self.is_bot, bool | None):
            raise CorruptSessionError("test_mode and is_bot must be booleans")
        if not isinstance(self.source_format, SessionFormat):
            raise CorruptSessionError("unknown source format")


@dataclass(frozen=True, slots=True)
class FormatPolicy:
    """What an import accepts. Configuration may add sandbox data-centre ids."""

    allowed_dc_ids: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    max_file_bytes: int = 1024 * 1024


DEFAULT_POLICY: Final = FormatPolicy()


def check_auth_key(value: object) -> bytes:
    if value is None or value in (b"", ""):
        raise AuthKeyError("there is no auth key: the session was never logged in")
    if not isinstance(value, bytes):
        raise AuthKeyError(f"the auth key is stored as {type(value).__name__}, not as bytes")
    if len(value) != AUTH_KEY_BYTES:
        raise AuthKeyError(
            f"the auth key is {len(value)} bytes; a Telegram auth key is exactly 256"
        )
    if not any(value):
        raise AuthKeyError("the auth key is all zeros: the session was never logged in")
    return value


def _check_dc_id(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DcIdError(f"the dc id {shown(value)} is not an integer")
    if not 1 <= value <= MAX_DC_ID:
        raise DcIdError(f"the dc id {value} is outside 1..{MAX_DC_ID}")
    return value


def check_allowed_dc(value: object, policy: FormatPolicy) -> int:
    dc_id = _check_dc_id(value)
    if dc_id not in policy.allowed_dc_ids:
        allowed = ", ".join(str(dc) for dc in sorted(policy.allowed_dc_ids))
        raise DcIdError(
            f"dc id {dc_id} is not an allowed data centre (allowed: {allowed}); add it to the "
            "configured sandbox dc ids if it is intended"
        )
    return dc_id


def check_address(value: object) -> str:
    if not isinstance(value, str):
        raise AddressError(f"the server address {shown(value)} is not text")
    # Fast path for the common case, a canonical dotted quad (decrypting runs this for
    # every account start): inet_pton is ~20x cheaper than ipaddress. Anything else,
    # including non-canonical IPv4 spellings, takes the full check below.
    try:
        if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, value)) == value:
            return value
    except OSError:
        pass
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise AddressError(
            f"the server address {shown(value)} is not an IPv4 or IPv6 address"
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise AddressError("a scoped IPv6 server address (with '%zone') cannot be stored")
    return address.compressed


def check_port(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65_535:
        raise AddressError(f"the port {shown(value)} is not in 1..65535")
    return value


def _check_optional_id(value: object, what: str, maximum: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise CorruptSessionError(f"the {what} {shown(value)} is outside 1..{maximum}")


def shown(value: object, *, limit: int = 40) -> str:
    """A short repr for a message: the value comes from an untrusted file."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def auth_key_fingerprint(auth_key: bytes) -> str:
    """Hex SHA-256 of the auth key under a domain-separation prefix.

    Stored in clear next to the encrypted record so a re-import of the same login is found
    without decrypting anything; the prefix keeps it distinct from any other hash of a key.
    """
    return hashlib.sha256(_AUTH_KEY_ID_PREFIX + auth_key).hexdigest()


def default_address(dc_id: int, *, test_mode: bool) -> tuple[str, int]:
    """The address Pyrogram would connect to for ``dc_id`` (its strings carry none).

    Production DCs use port 443, test DCs port 80, as in Pyrogram's DataCenter table. A dc
    id missing from the table (a sandbox id allowed by configuration) gets the placeholder
    ``127.0.0.1:443``: a loopback address never reaches Telegram by accident, and the
    runtime is expected to supply the sandbox's real address.
    """
    table = _PYROGRAM_TEST if test_mode else _PYROGRAM_PROD
    address = table.get(dc_id)
    if address is None:
        return _UNKNOWN_DC_ADDRESS
    return address, _TEST_PORT if test_mode else _PROD_PORT
