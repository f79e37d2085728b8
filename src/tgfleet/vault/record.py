"""The at-rest record: the compact binary form of a session that the vault encrypts."""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Final

from tgfleet.vault.canonical import AUTH_KEY_BYTES, CanonicalSession, SessionFormat
from tgfleet.vault.exceptions import CorruptSessionError, SessionFormatError

_RECORD_VERSION: Final = 1
# version, source format, flags, dc id, port
_RECORD_HEAD: Final = struct.Struct(">BBBHH")
_RECORD_USER_ID: Final = struct.Struct(">Q")
_RECORD_API_ID: Final = struct.Struct(">I")
_FORMAT_CODES: Final = {
    SessionFormat.TELETHON: 1,
    SessionFormat.PYROGRAM: 2,
    SessionFormat.TELETHON_STRING: 3,
    SessionFormat.PYROGRAM_STRING: 4,
}
_FORMATS_BY_CODE: Final = {code: fmt for fmt, code in _FORMAT_CODES.items()}
_FLAG_TEST_MODE: Final = 0x01
_FLAG_IPV6: Final = 0x02
_FLAG_USER_ID: Final = 0x04
_FLAG_API_ID: Final = 0x08
_FLAG_IS_BOT_KNOWN: Final = 0x10
_FLAG_IS_BOT: Final = 0x20
_FLAGS_ALL: Final = 0x3F


def to_record(session: CanonicalSession) -> bytes:
    """Serialise the canonical record: what the vault encrypts at rest.

    Layout (big-endian): version 1, source-format code, flags, dc id (H), port (H), the
    packed IP (4 or 16 bytes, per the IPv6 flag), the 256-byte auth key, then the user id
    (Q) and api id (I) when their flags are set. Integrity comes from the AEAD around it.
    """
    ip = ipaddress.ip_address(session.address).packed
    flags = (
        (_FLAG_TEST_MODE if session.test_mode else 0)
        | (_FLAG_IPV6 if len(ip) == 16 else 0)
        | (_FLAG_USER_ID if session.user_id is not None else 0)
        | (_FLAG_API_ID if session.api_id is not None else 0)
        | (_FLAG_IS_BOT_KNOWN if session.is_bot is not None else 0)
        | (_FLAG_IS_BOT if session.is_bot else 0)
    )
    parts = [
        _RECORD_HEAD.pack(
            _RECORD_VERSION,
            _FORMAT_CODES[session.source_format],
            flags,
            session.dc_id,
            session.port,
        ),
        ip,
        session.auth_key,
    ]
    if session.user_id is not None:
        parts.append(_RECORD_USER_ID.pack(session.user_id))
    if session.api_id is not None:
        parts.append(_RECORD_API_ID.pack(session.api_id))
    return b"".join(parts)


def from_record(data: bytes) -> CanonicalSession:
    """Inverse of :func:`to_record`; anything malformed raises ``CorruptSessionError``."""
    if len(data) < _RECORD_HEAD.size:
        raise CorruptSessionError("the stored session record is truncated")
    version, format_code, flags, dc_id, port = _RECORD_HEAD.unpack_from(data)
    if version != _RECORD_VERSION:
        raise CorruptSessionError(f"the stored session record has unknown version {version}")
    source_format = _FORMATS_BY_CODE.get(format_code)
    if source_format is None:
        raise CorruptSessionError(f"the stored session record has unknown format {format_code}")
    if flags & ~_FLAGS_ALL or (flags & _FLAG_IS_BOT and not flags & _FLAG_IS_BOT_KNOWN):
        raise CorruptSessionError("the stored session record has invalid flags")
    ip_length = 16 if flags & _FLAG_IPV6 else 4
    expected = (
        _RECORD_HEAD.size
        + ip_length
        + AUTH_KEY_BYTES
        + (_RECORD_USER_ID.size if flags & _FLAG_USER_ID else 0)
        + (_RECORD_API_ID.size if flags & _FLAG_API_ID else 0)
    )
    if len(data) != expected:
        raise CorruptSessionError(
            f"the stored session record is {len(data)} bytes; its flags say {expected}"
        )
    offset = _RECORD_HEAD.size
    ip = data[offset : offset + ip_length]
    offset += ip_length
    auth_key = data[offset : offset + AUTH_KEY_BYTES]
    offset += AUTH_KEY_BYTES
    user_id: int | None = None
    api_id: int | None = None
    if flags & _FLAG_USER_ID:
        (user_id,) = _RECORD_USER_ID.unpack_from(data, offset)
        offset += _RECORD_USER_ID.size
    if flags & _FLAG_API_ID:
        (api_id,) = _RECORD_API_ID.unpack_from(data, offset)
    try:
        return CanonicalSession(
            dc_id=dc_id,
            address=(
                socket.inet_ntop(socket.AF_INET, ip)
                if ip_length == 4
                else ipaddress.ip_address(ip).compressed
            ),
            port=port,
            auth_key=auth_key,
            user_id=user_id,
            api_id=api_id,
            test_mode=bool(flags & _FLAG_TEST_MODE),
            is_bot=bool(flags & _FLAG_IS_BOT) if flags & _FLAG_IS_BOT_KNOWN else None,
            source_format=source_format,
        )
    except SessionFormatError as exc:
        raise CorruptSessionError(f"the stored session record is invalid: {exc.message}") from None
