"""String sessions: Telethon's (``'1'`` + URL-safe base64) and Pyrogram's (URL-safe base64).

Strings are told apart by their length without base64 padding; see
``tgfleet.vault.formats`` for what each format carries and how it is represented.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct
from typing import Final

from tgfleet.vault.canonical import (
    CanonicalSession,
    FormatPolicy,
    SessionFormat,
    check_allowed_dc,
    check_auth_key,
    default_address,
)
from tgfleet.vault.exceptions import SessionStringError, UnknownFormatError

_TELETHON_STRING_VERSION: Final = "1"
_TELETHON_STRING_FORMAT: Final = ">B{}sH256s"
_PYROGRAM_STRING: Final = struct.Struct(">BI?256sQ?")
_PYROGRAM_LEGACY_32: Final = struct.Struct(">B?256sI?")
_PYROGRAM_LEGACY_64: Final = struct.Struct(">B?256sQ?")
# Session strings are told apart by their length without base64 padding; no two collide.
_TELETHON_IPV4_CHARS: Final = 352  # '1' + 351
_TELETHON_IPV6_CHARS: Final = 368  # '1' + 367
_PYROGRAM_CHARS: Final = 362
_PYROGRAM_LEGACY_32_CHARS: Final = 351
_PYROGRAM_LEGACY_64_CHARS: Final = 356
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def parse(text: str, policy: FormatPolicy) -> CanonicalSession:
    """A Telethon or Pyrogram string session (stripped of surrounding whitespace)."""
    if not text:
        raise UnknownFormatError("empty: expected a .session file or a string session")
    if any(char.isspace() for char in text):
        raise SessionStringError(
            "the text holds more than one word or line; put exactly one string session in each file"
        )
    core = text.rstrip("=")
    length = len(core)
    if length in (_TELETHON_IPV4_CHARS, _TELETHON_IPV6_CHARS):
        if core[0] != _TELETHON_STRING_VERSION:
            raise SessionStringError(
                f"a {len(text)}-character string looks like a Telethon string session, but "
                "those start with '1' (their format version)"
            )
        raw = _decode_base64(core[1:], padding=len(text) - length)
        return _parse_telethon_string(raw, policy)
    if length in (_PYROGRAM_CHARS, _PYROGRAM_LEGACY_32_CHARS, _PYROGRAM_LEGACY_64_CHARS):
        raw = _decode_base64(core, padding=len(text) - length)
        return _parse_pyrogram_string(raw, policy)
    raise SessionStringError(
        f"a string session of {len(text)} characters matches no known format: Telethon "
        "strings have 353 (IPv4) or 369 (IPv6) characters, Pyrogram strings 362 (legacy "
        "351 or 356); check that it was copied whole"
    )


def _decode_base64(body: str, *, padding: int) -> bytes:
    if not _BASE64URL.fullmatch(body):
        position = next(i for i, char in enumerate(body) if not _BASE64URL.fullmatch(char))
        raise SessionStringError(
            f"character {position + 1} is not URL-safe base64 (A-Z a-z 0-9 - _); "
            "the string was altered or is not a session"
        )
    needed = -len(body) % 4
    if padding not in (0, needed):
        raise SessionStringError(f"wrong base64 padding: {padding} '=' where {needed} fit")
    try:
        return base64.urlsafe_b64decode(body + "=" * needed)
    except binascii.Error:
        raise SessionStringError("the string is not valid base64") from None


def _parse_telethon_string(raw: bytes, policy: FormatPolicy) -> CanonicalSession:
    ip_length = len(raw) - struct.calcsize(_TELETHON_STRING_FORMAT.format(0))
    if ip_length not in (4, 16):
        raise SessionStringError(f"a Telethon string session of {len(raw)} bytes is malformed")
    dc_id, ip, port, auth_key = struct.unpack(_TELETHON_STRING_FORMAT.format(ip_length), raw)
    check_auth_key(auth_key)
    check_allowed_dc(dc_id, policy)
    return CanonicalSession(
        dc_id=dc_id,
        address=ipaddress.ip_address(ip).compressed,
        port=port,
        auth_key=auth_key,
        user_id=None,
        api_id=None,
        test_mode=False,
        is_bot=None,
        source_format=SessionFormat.TELETHON_STRING,
    )


def _parse_pyrogram_string(raw: bytes, policy: FormatPolicy) -> CanonicalSession:
    api_id: int
    if len(raw) == _PYROGRAM_STRING.size:
        dc_id, api_id, test_mode, auth_key, user_id, is_bot = _PYROGRAM_STRING.unpack(raw)
    elif len(raw) in (_PYROGRAM_LEGACY_32.size, _PYROGRAM_LEGACY_64.size):
        legacy = (
            _PYROGRAM_LEGACY_32 if len(raw) == _PYROGRAM_LEGACY_32.size else _PYROGRAM_LEGACY_64
        )
        dc_id, test_mode, auth_key, user_id, is_bot = legacy.unpack(raw)
        api_id = 0
    else:
        raise SessionStringError(f"a Pyrogram string session of {len(raw)} bytes is malformed")
    check_auth_key(auth_key)
    check_allowed_dc(dc_id, policy)
    address, port = default_address(dc_id, test_mode=test_mode)
    return CanonicalSession(
        dc_id=dc_id,
        address=address,
        port=port,
        auth_key=auth_key,
        user_id=user_id or None,
        api_id=api_id or None,
        test_mode=test_mode,
        is_bot=is_bot if user_id else None,
        source_format=SessionFormat.PYROGRAM_STRING,
    )


def emit_telethon(session: CanonicalSession) -> bytes:
    """A Telethon string session (ASCII): ``'1'`` + URL-safe base64 of ``>B{4|16}sH256s``."""
    ip = ipaddress.ip_address(session.address).packed
    packed = struct.pack(
        _TELETHON_STRING_FORMAT.format(len(ip)),
        session.dc_id,
        ip,
        session.port,
        session.auth_key,
    )
    return _TELETHON_STRING_VERSION.encode() + base64.urlsafe_b64encode(packed)


def emit_pyrogram(session: CanonicalSession) -> bytes:
    """A Pyrogram string session (ASCII); ``None`` ids become 0, ``is_bot=None`` False."""
    packed = _PYROGRAM_STRING.pack(
        session.dc_id,
        session.api_id or 0,
        session.test_mode,
        session.auth_key,
        session.user_id or 0,
        bool(session.is_bot),
    )
    return base64.urlsafe_b64encode(packed).rstrip(b"=")
