"""MTProto transport framing: TcpFull, TcpAbridged and TcpIntermediate.

The transport is detected from the first bytes a client sends: ``0xef`` is abridged,
``0xeeeeeeee`` is intermediate, ``0xdddddddd`` is padded intermediate, and anything else is
the first length word of a TcpFull packet. Obfuscated transports are not supported.

Transport errors (``-404`` unknown auth key, ``-429`` flood) are the 4-byte little-endian
negative code sent as one packet in the connection's framing; Telethon reads a 4-byte packet
as ``InvalidBufferError`` with that code.
"""

from __future__ import annotations

import asyncio
import enum
import os
import struct
from zlib import crc32

ABRIDGED_TAG = 0xEF
INTERMEDIATE_TAG = b"\xee\xee\xee\xee"
PADDED_INTERMEDIATE_TAG = b"\xdd\xdd\xdd\xdd"
# Telegram caps a packet at about 1 MiB; anything far above it is garbage or an attack.
MAX_PACKET_SIZE = 2 * 1024 * 1024
AUTH_KEY_UNKNOWN = -404
TRANSPORT_FLOOD = -429


class TransportKind(enum.StrEnum):
    FULL = "full"
    ABRIDGED = "abridged"
    INTERMEDIATE = "intermediate"
    PADDED_INTERMEDIATE = "padded_intermediate"


class TransportError(Exception):
    """The client broke the framing (bad length, bad CRC, unknown transport)."""


class PacketCodec:
    """Reads client packets and frames server packets for one connection.

    A codec holds per-connection state (the TcpFull counters), so create one per connection.
    """

    kind: TransportKind

    async def read_packet(self, reader: asyncio.StreamReader) -> bytes:
        raise NotImplementedError

    def encode(self, payload: bytes) -> bytes:
        raise NotImplementedError

    def encode_error(self, code: int) -> bytes:
        """Frame a transport error code (negative, e.g. ``AUTH_KEY_UNKNOWN``)."""
        return self.encode(struct.pack("<i", code))


def _check_length(length: int) -> int:
    if length <= 0 or length > MAX_PACKET_SIZE:
        raise TransportError(f"packet length {length} out of range")
    return length


class FullCodec(PacketCodec):
    """``len:int32 | seq:int32 | payload | crc32``; ``len`` counts the 12 framing bytes."""

    kind = TransportKind.FULL

    def __init__(self, first_word: bytes = b"") -> None:
        self._pending = first_word
        self._recv_seq = 0
        self._send_seq = 0

    async def read_packet(self, reader: asyncio.StreamReader) -> bytes:
        head = self._pending + await reader.readexactly(8 - len(self._pending))
        self._pending = b""
        length, seq = struct.unpack("<ii", head)
        if length < 12:
            raise TransportError(f"TcpFull length {length} below 12")
        rest = await reader.readexactly(_check_length(length) - 8)
        payload, (crc,) = rest[:-4], struct.unpack("<I", rest[-4:])
        if crc32(head + payload) != crc:
            raise TransportError("TcpFull CRC mismatch")
        if seq != self._recv_seq:
            raise TransportError(f"TcpFull seq {seq}, expected {self._recv_seq}")
        self._recv_seq += 1
        return payload

    def encode(self, payload: bytes) -> bytes:
        head = struct.pack("<ii", len(payload) + 12, self._send_seq)
        self._send_seq += 1
        return head + payload + struct.pack("<I", crc32(head + payload))


class AbridgedCodec(PacketCodec):
    """Length/4 in one byte, or ``0x7f`` and length/4 in three little-endian bytes."""

    kind = TransportKind.ABRIDGED

    async def read_packet(self, reader: asyncio.StreamReader) -> bytes:
        (words,) = await reader.readexactly(1)
        if words >= 0x7F:
            words = int.from_bytes(await reader.readexactly(3), "little")
        return await reader.readexactly(_check_length(words * 4))

    def encode(self, payload: bytes) -> bytes:
        words = len(payload) // 4
        if words < 0x7F:
            return bytes([words]) + payload
        return b"\x7f" + words.to_bytes(3, "little") + payload


class IntermediateCodec(PacketCodec):
    """``len:int32 | payload``."""

    kind = TransportKind.INTERMEDIATE

    async def read_packet(self, reader: asyncio.StreamReader) -> bytes:
        (length,) = struct.unpack("<i", await reader.readexactly(4))
        return await reader.readexactly(_check_length(length))

    def encode(self, payload: bytes) -> bytes:
        return struct.pack("<i", len(payload)) + payload


class PaddedIntermediateCodec(IntermediateCodec):
    """Intermediate with 0..3 random bytes after each payload (ignored on read)."""

    kind = TransportKind.PADDED_INTERMEDIATE

    async def read_packet(self, reader: asyncio.StreamReader) -> bytes:
        packet = await super().read_packet(reader)
        return packet[: len(packet) - len(packet) % 4]

    def encode(self, payload: bytes) -> bytes:
        return super().encode(payload + os.urandom(os.urandom(1)[0] % 4))


async def detect(reader: asyncio.StreamReader) -> PacketCodec:
    """Read the first bytes of a connection and return the codec for its transport."""
    first = await reader.readexactly(1)
    if first[0] == ABRIDGED_TAG:
        return AbridgedCodec()
    word = first + await reader.readexactly(3)
    if word == INTERMEDIATE_TAG:
        return IntermediateCodec()
    if word == PADDED_INTERMEDIATE_TAG:
        return PaddedIntermediateCodec()
    (length,) = struct.unpack("<i", word)
    if length < 12 or length > MAX_PACKET_SIZE or length % 4:
        raise TransportError("unknown or obfuscated transport")
    return FullCodec(word)
