"""MTProto 2.0, server side: decrypt client messages, encrypt server messages, service replies.

Built on Telethon's own TL classes (``BinaryReader`` parses requests, ``bytes(obj)``
serializes replies) and crypto (``AES`` IGE, ``AuthKey.key_id``), so constructor ids always
match the installed client. The MTProto 2 KDF is copied from ``MTProtoState._calc_key``
because that helper is private.
"""

from __future__ import annotations

import os
import secrets
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, TypeAlias

from telethon.crypto import AES, AuthKey
from telethon.extensions import BinaryReader
from telethon.tl import functions, types
from telethon.tl.core import GzipPacked, MessageContainer
from telethon.tl.tlobject import TLObject

RPC_RESULT = 0xF35C6D01
VECTOR = 0x1CB5C415
BOOL_TRUE = 0x997275B5
BOOL_FALSE = 0xBC799737
BAD_SALT_CODE = 48
# A gzip-packed request larger than this, unpacked, is refused rather than inflated.
MAX_UNPACKED_SIZE = 16 * 1024 * 1024
MIN_PADDING = 12
MAX_PADDING = 1024

# Wrappers unwrapped through ``.query``; the server answers the inner request.
WRAPPERS: tuple[type[Any], ...] = (
    functions.InvokeWithLayerRequest,
    functions.InitConnectionRequest,
    functions.InvokeWithoutUpdatesRequest,
    functions.InvokeAfterMsgRequest,
    functions.InvokeAfterMsgsRequest,
    functions.InvokeWithMessagesRangeRequest,
    functions.InvokeWithTakeoutRequest,
)

Result: TypeAlias = TLObject | Sequence[TLObject] | bool
"""What a method returns: one object, a vector of objects, or a Bool."""


class ProtocolViolation(Exception):
    """A client packet that cannot be a valid MTProto 2.0 message (close the connection)."""


def key_id_of(auth_key: bytes) -> int:
    """The 64-bit auth_key_id (low 8 bytes of SHA-1) that prefixes every encrypted packet."""
    key_id: int = AuthKey(auth_key).key_id
    return key_id


def packet_key_id(packet: bytes) -> int:
    """The auth_key_id a client packet claims (0 for an unencrypted key-exchange packet)."""
    if len(packet) < 8:
        raise ProtocolViolation("packet shorter than an auth_key_id")
    (key_id,) = struct.unpack("<Q", packet[:8])
    return int(key_id)


def calc_key(auth_key: bytes, msg_key: bytes, *, client: bool) -> tuple[bytes, bytes]:
    """MTProto 2 AES key and IV; ``x=0`` for client-to-server, ``x=8`` for server-to-client."""
    x = 0 if client else 8
    sha256a = sha256(msg_key + auth_key[x : x + 36]).digest()
    sha256b = sha256(auth_key[x + 40 : x + 76] + msg_key).digest()
    aes_key = sha256a[:8] + sha256b[8:24] + sha256a[24:32]
    aes_iv = sha256b[:8] + sha256a[8:24] + sha256b[24:32]
    return aes_key, aes_iv


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """One decrypted client packet: the envelope and the (possibly container) body."""

    salt: int
    session_id: int
    msg_id: int
    seq_no: int
    body: bytes


def decrypt(auth_key: bytes, packet: bytes) -> ClientMessage:
    """Decrypt a client packet (``x=0``), verifying msg_key, length and padding."""
    encrypted = packet[24:]
    if len(encrypted) < 48 or len(encrypted) % 16:
        raise ProtocolViolation("encrypted data has a bad length")
    msg_key = packet[8:24]
    aes_key, aes_iv = calc_key(auth_key, msg_key, client=True)
    plain: bytes = AES.decrypt_ige(encrypted, aes_key, aes_iv)
    if sha256(auth_key[88:120] + plain).digest()[8:24] != msg_key:
        raise ProtocolViolation("msg_key mismatch")
    salt, session_id, msg_id, seq_no, length = struct.unpack("<qqqii", plain[:32])
    padding = len(plain) - 32 - length
    if length < 4 or length % 4 or not MIN_PADDING <= padding <= MAX_PADDING:
        raise ProtocolViolation("message length does not match the packet")
    return ClientMessage(salt, session_id, msg_id, seq_no, plain[32 : 32 + length])


def encrypt(
    auth_key: bytes, *, salt: int, session_id: int, msg_id: int, seq_no: int, body: bytes
) -> bytes:
    """Encrypt one server message (``x=8``) with 12..1024 bytes of random padding."""
    plain = struct.pack("<qqqii", salt, session_id, msg_id, seq_no, len(body)) + body
    pad = MIN_PADDING + (-(len(plain) + MIN_PADDING) % 16) + 16 * secrets.randbelow(4)
    plain += os.urandom(pad)
    msg_key = sha256(auth_key[96:128] + plain).digest()[8:24]
    aes_key, aes_iv = calc_key(auth_key, msg_key, client=False)
    encrypted: bytes = AES.encrypt_ige(plain, aes_key, aes_iv)
    return struct.pack("<Q", key_id_of(auth_key)) + msg_key + encrypted


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message out of a packet, after unpacking containers and gzip.

    ``obj`` is ``None`` when the constructor is unknown to the installed Telethon layer.
    """

    msg_id: int
    seq_no: int
    obj: object


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    unpacked = inflater.decompress(data, MAX_UNPACKED_SIZE)
    if inflater.unconsumed_tail:
        raise ProtocolViolation("gzip-packed request too large")
    return unpacked


def _read_object(body: bytes) -> object:
    from telethon.errors import TypeNotFoundError

    try:
        obj: object = BinaryReader(body).tgread_object()
    except TypeNotFoundError:
        return None
    except (struct.error, ValueError, IndexError, AssertionError) as exc:
        raise ProtocolViolation("undecodable message body") from exc
    if isinstance(obj, GzipPacked):
        return _read_object(_gunzip(obj.data))
    return obj


def unpack(msg_id: int, seq_no: int, body: bytes) -> list[InboundMessage]:
    """Split a message body into its messages: a container yields each inner one."""
    obj = _read_object(body)
    if isinstance(obj, MessageContainer):
        out: list[InboundMessage] = []
        for inner in obj.messages:
            inner_obj = inner.obj
            if isinstance(inner_obj, GzipPacked):
                inner_obj = _read_object(_gunzip(inner_obj.data))
            out.append(InboundMessage(inner.msg_id, inner.seq_no, inner_obj))
        return out
    return [InboundMessage(msg_id, seq_no, obj)]


@dataclass(frozen=True, slots=True)
class Unwrapped:
    """The inner request, the wrapper class names around it, and the layer if one was sent."""

    request: object
    wrappers: tuple[str, ...]
    layer: int | None


def unwrap(obj: object) -> Unwrapped:
    """Peel InvokeWithLayer / InitConnection / InvokeWithoutUpdates / InvokeAfterMsg(s)."""
    wrappers: list[str] = []
    layer: int | None = None
    while isinstance(obj, WRAPPERS):
        if isinstance(obj, functions.InvokeWithLayerRequest):
            layer = int(obj.layer)
        wrappers.append(type(obj).__name__)
        obj = obj.query
    return Unwrapped(obj, tuple(wrappers), layer)


def method_name(request: object) -> str:
    """A request's TL namespace and class, e.g. ``messages.SendMessageRequest``."""
    cls = type(request)
    namespace = cls.__module__.removeprefix("telethon.tl.functions").lstrip(".")
    return f"{namespace}.{cls.__name__}" if namespace else cls.__name__


def serialize_result(result: Result) -> bytes:
    """Serialize a method result: an object, a ``Vector<T>`` of objects, or a Bool."""
    if isinstance(result, bool):
        return struct.pack("<I", BOOL_TRUE if result else BOOL_FALSE)
    if isinstance(result, TLObject):
        return bytes(result)
    items = list(result)
    return struct.pack("<Ii", VECTOR, len(items)) + b"".join(bytes(item) for item in items)


def rpc_result(req_msg_id: int, result: bytes) -> bytes:
    """``rpc_result req_msg_id:long result:Object`` around already-serialized result bytes."""
    return struct.pack("<Iq", RPC_RESULT, req_msg_id) + result


def rpc_error(req_msg_id: int, code: int, message: str) -> bytes:
    """An ``rpc_error`` answer to request ``req_msg_id``."""
    return rpc_result(req_msg_id, bytes(types.RpcError(code, message)))


def bad_server_salt(bad_msg_id: int, bad_msg_seqno: int, new_salt: int) -> bytes:
    return bytes(types.BadServerSalt(bad_msg_id, bad_msg_seqno, BAD_SALT_CODE, new_salt))


def pong(req_msg_id: int, ping_id: int) -> bytes:
    return bytes(types.Pong(req_msg_id, ping_id))


def new_session_created(first_msg_id: int, server_salt: int) -> bytes:
    unique_id = struct.unpack("<q", os.urandom(8))[0]
    return bytes(types.NewSessionCreated(first_msg_id, unique_id, server_salt))


def new_salt() -> int:
    """A random signed 64-bit server salt, never 0 (Telethon's initial value)."""
    return struct.unpack("<q", os.urandom(8))[0] or 1


class MsgIdClock:
    """Server msg_ids: odd, strictly increasing, from the server clock.

    Replies (``rpc_result``, ``pong``, ``bad_server_salt``) are ``≡1 mod 4``; pushes and other
    service messages are ``≡3 mod 4``. ``skew`` shifts the clock to test the client's window.
    """

    def __init__(self) -> None:
        self._last = 0
        self.skew = 0.0

    def _next(self, residue: int) -> int:
        now = time.time() + self.skew
        base = int(now * 2**32) & ~3
        base = max(base, (self._last & ~3) + 4)
        self._last = base | residue
        return self._last

    def reply(self) -> int:
        return self._next(1)

    def push(self) -> int:
        return self._next(3)
