"""Telegram's HTML: escaping, length as Telegram counts it, and splitting a long message.

A message may hold at most 4,096 characters after entity parsing. :func:`split_message`
cuts a longer text into messages that each fit and each parse on their own: it cuts at line
boundaries (inside a line only when one line alone is too long, then at a space if it can),
never inside a tag or an entity, closes the tags open at a cut and opens them again at the
start of the next message. Lengths are counted in UTF-16 code units of the raw text, tags
included, which is never less than what Telegram counts, so every part is accepted.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Final, Literal

TELEGRAM_MAX_LENGTH: Final = 4096
# "(12/345)\n" goes in front of each part of a split message; room is kept for it.
_MARKER_ROOM: Final = 16

_PIECE = re.compile(
    r"(?P<tag><(?P<close>/?)(?P<name>[a-zA-Z][a-zA-Z0-9-]*)(?:\s[^<>]*)?>)"
    r"|(?P<entity>&(?:#[0-9]+|#x[0-9a-fA-F]+|[a-zA-Z]+);)"
    r"|(?P<newline>\n)"
    r"|(?P<text>[^<&\n]+|&)"
    r"|(?P<bad><)"
)


class MessageFormatError(ValueError):
    """The text is not HTML Telegram can parse (so it cannot be split safely either)."""


def escape(text: str) -> str:
    """Escape a value for Telegram HTML text (``<``, ``>``, ``&``)."""
    return html.escape(text, quote=False)


def escape_attribute(text: str) -> str:
    """Escape a value for an attribute such as ``href`` (quotes as well)."""
    return html.escape(text, quote=True)


def telegram_length(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits and entity offsets."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclass(frozen=True, slots=True)
class _Piece:
    kind: Literal["open", "close", "entity", "newline", "text"]
    raw: str
    name: str = ""


def _pieces(text: str, *, html_mode: bool) -> list[_Piece]:
    return _html_pieces(text) if html_mode else _plain_pieces(text)


def _plain_pieces(text: str) -> list[_Piece]:
    pieces: list[_Piece] = []
    for index, line in enumerate(text.split("\n")):
        if index:
            pieces.append(_Piece("newline", "\n"))
        if line:
            pieces.append(_Piece("text", line))
    return pieces


def _html_pieces(text: str) -> list[_Piece]:
    pieces: list[_Piece] = []
    open_tags: list[str] = []
    for found in _PIECE.finditer(text):
        if found.group("bad") is not None:
            msg = f"unescaped '<' at offset {found.start()} (escape values with &lt;)"
            raise MessageFormatError(msg)
        if found.group("tag") is None:
            kind = next(k for k in ("entity", "newline", "text") if found.group(k) is not None)
            pieces.append(_Piece(kind, found.group()))  # type: ignore[arg-type]
            continue
        name = found.group("name").lower()
        if not found.group("close"):
            open_tags.append(name)
            pieces.append(_Piece("open", found.group(), name))
            continue
        if not open_tags or open_tags[-1] != name:
            expected = f"</{open_tags[-1]}>" if open_tags else "no end tag"
            msg = f"unmatched </{name}> at offset {found.start()}, expected {expected}"
            raise MessageFormatError(msg)
        open_tags.pop()
        pieces.append(_Piece("close", found.group(), name))
    if open_tags:
        raise MessageFormatError(f"<{open_tags[-1]}> is never closed")
    return pieces


def _closer(name: str) -> int:
    return len(name) + 3  # "</" name ">"


def _cut_text(raw: str, room: int) -> tuple[str, str]:
    """The longest head of ``raw`` within ``room`` UTF-16 units, at a space if one is in its
    second half; and the rest."""
    used = 0
    end = 0
    for index, char in enumerate(raw):
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > room:
            break
        used += width
        end = index + 1
    head = raw[:end]
    space = head.rfind(" ")
    if end < len(raw) and space >= len(head) // 2 and space > 0:
        end = space + 1
    return raw[:end], raw[end:]


def _visible(chunk: str, *, html_mode: bool) -> str:
    if not html_mode:
        return chunk
    return html.unescape(re.sub(r"<[^<>]*>", "", chunk))


class _Part:
    """One message being filled: the tags reopened in front, the pieces taken, and room
    kept for closing whatever is open at its end."""

    def __init__(self, reopened: list[_Piece], budget: int) -> None:
        self.prefix = "".join(piece.raw for piece in reopened)
        self.budget = budget
        self.used = telegram_length(self.prefix)
        self.open = list(reopened)
        self.closers = sum(_closer(piece.name) for piece in reopened)
        self.out: list[str] = []
        #: The state after the last newline taken: where to cut by preference.
        self.line_end: tuple[int, int, list[_Piece], int, int] | None = None

    def take(self, piece: _Piece, index: int) -> bool:
        """Take ``piece`` (the ``index``-th) if it fits with the closing tags it implies."""
        size = telegram_length(piece.raw)
        closers = self.closers
        if piece.kind == "open":
            closers += _closer(piece.name)
        elif piece.kind == "close":
            closers -= _closer(piece.name)
        if self.used + size + closers > self.budget:
            return False
        self.out.append(piece.raw)
        self.used += size
        self.closers = closers
        if piece.kind == "open":
            self.open.append(piece)
        elif piece.kind == "close":
            self.open.pop()
        elif piece.kind == "newline":
            self.line_end = (index + 1, len(self.out), list(self.open), closers, self.used)
        return True

    def back_to_line_end(self) -> int | None:
        """Drop what follows the last newline; the index to resume from (None: no newline)."""
        if self.line_end is None:
            return None
        resume, kept, self.open, self.closers, self.used = self.line_end
        del self.out[kept:]
        return resume

    def take_head(self, piece: _Piece) -> _Piece | None:
        """Take as much of a text piece as fits; the rest of it (None: nothing fitted)."""
        room = self.budget - self.used - self.closers
        if piece.kind != "text" or room <= 0:
            return None
        head, tail = _cut_text(piece.raw, room)
        if not head:
            return None
        self.out.append(head)
        self.used += telegram_length(head)
        return _Piece("text", tail)

    def text(self) -> str:
        closing = "".join(f"</{piece.name}>" for piece in reversed(self.open))
        return self.prefix + "".join(self.out) + closing


def split_message(
    text: str, *, limit: int = TELEGRAM_MAX_LENGTH, html_mode: bool = True
) -> list[str]:
    """``text`` as messages of at most ``limit`` UTF-16 units that each parse on their own.

    With more than one part, each starts with ``(k/n)``. Parts with nothing visible are
    dropped. Raises :class:`MessageFormatError` for HTML Telegram would refuse (an unescaped
    ``<``, unbalanced tags), whatever its length.
    """
    pieces = _pieces(text, html_mode=html_mode)
    if telegram_length(text) <= limit:
        return [text] if _visible(text, html_mode=html_mode).strip() else []
    if limit <= _MARKER_ROOM * 2:
        raise ValueError(f"limit {limit} is too small to split into")
    parts: list[str] = []
    reopened: list[_Piece] = []
    index = 0
    while index < len(pieces):
        part = _Part(reopened, limit - _MARKER_ROOM)
        while index < len(pieces) and part.take(pieces[index], index):
            index += 1
        if index < len(pieces):
            resume = part.back_to_line_end()
            if resume is not None:
                index = resume
            else:
                rest = part.take_head(pieces[index])
                if rest is not None:
                    pieces[index] = rest
                elif not part.out:
                    msg = "the tags open at this point leave no room for text"
                    raise MessageFormatError(msg)
        parts.append(part.text())
        reopened = part.open
    parts = [p for p in parts if _visible(p, html_mode=html_mode).strip()]
    if len(parts) > 1:
        parts = [f"({number}/{len(parts)})\n{p}" for number, p in enumerate(parts, 1)]
    return parts
