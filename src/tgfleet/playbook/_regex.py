"""Playbook regexes run on RE2: matching time is linear in the text, whatever the pattern.

Python's ``re`` backtracks: ``^(a+)+$`` against 27 ``a`` and a ``!`` took 13 s and doubled
with every further ``a``, on the event loop that serves every account. RE2 (``google-re2``)
has no backtracking, and so no backreferences, look-around, atomic groups or possessive
quantifiers; a pattern using one is refused when the playbook is saved, naming the
construct.

RE2's ``\\w``, ``\\d``, ``\\s`` and ``\\b`` are ASCII-only (Python's are Unicode): a pattern
that uses them next to non-ASCII text would silently never match, so it is refused with
the Unicode spelling to use instead.

Linear is not free: matching costs about the text's length times the pattern's compiled
size, and a counted repetition multiplies its group (``(?:\\w+\\s?){1,650}`` is 9,753
instructions and took 0.5 s on a 4,000-character message). Patterns over
``MAX_PROGRAM_SIZE`` instructions are refused; the engine matches a playbook with a pattern
over ``OFF_LOOP_PROGRAM_SIZE`` in a thread (RE2 releases the GIL while it matches), so even
a slow match never holds the event loop.
"""

from __future__ import annotations

import re
from typing import Protocol

import re2

#: RE2's own bound on a compiled program; a bigger pattern is refused at save.
MAX_PROGRAM_BYTES = 8 << 20
#: Compiled instructions of one ``regex`` (keywords: 2,700 to 3,700 for 1 to 200 words).
MAX_PROGRAM_SIZE = 10_000
#: Above this a pattern may take milliseconds per message: matched off the event loop.
OFF_LOOP_PROGRAM_SIZE = 1_000
#: Letters, digits and ``_``: what Python's Unicode ``\\w`` matches.
_WORD = r"\p{L}\p{N}_"

# An escape that RE2 reads as ASCII-only, outside or inside a character class.
_ASCII_CLASS = re.compile(r"\\\\|\\([wWdDsSbB])")

# RE2's parse errors, in its own words, and what to tell the author instead.
_CONSTRUCTS: tuple[tuple[str, str], ...] = (
    ("invalid perl operator: (?=", "look-ahead (?=...) is not supported"),
    ("invalid perl operator: (?!", "negative look-ahead (?!...) is not supported"),
    ("invalid perl operator: (?<=", "look-behind (?<=...) is not supported"),
    ("invalid perl operator: (?<!", "negative look-behind (?<!...) is not supported"),
    ("invalid perl operator: (?>", "the atomic group (?>...) is not supported"),
    ("invalid perl operator: (?#", "comments (?#...) are not supported"),
    (
        "invalid perl operator: (?x",
        "the verbose flag (?x) is not supported (flags: i, m, s, U)",
    ),
    ("bad repetition operator: ++", "possessive quantifiers (++, *+, ?+) are not supported"),
    ("bad repetition operator: *+", "possessive quantifiers (++, *+, ?+) are not supported"),
    ("bad repetition operator: ?+", "possessive quantifiers (++, *+, ?+) are not supported"),
    ("invalid escape sequence: \\Z", "\\Z is not supported; write \\z for the end of the text"),
    ("invalid repetition size", "a repetition count is over 1000"),
    ("pattern too large", "the pattern is too large to compile"),
)


class RegexRefused(ValueError):
    """A pattern RE2 cannot run; the message names the construct."""


class Match(Protocol):
    def group(self, index: int = 0, /) -> str: ...


class Pattern(Protocol):
    """What the engine uses of a compiled RE2 pattern."""

    @property
    def programsize(self) -> int: ...

    def search(self, text: str, /) -> Match | None: ...


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 writes every parse error to stderr otherwise
    options.max_mem = MAX_PROGRAM_BYTES
    return options


def compile_regex(pattern: str, *, max_size: int = MAX_PROGRAM_SIZE) -> Pattern:
    """Compile a playbook's ``regex``; raises ``RegexRefused`` saying what is unsupported."""
    _refuse_ascii_classes_with_unicode(pattern)
    try:
        compiled: Pattern = re2.compile(pattern, _options())
    except re2.error as exc:
        msg = f"{_explain(exc, pattern)} (playbook regexes are RE2, see docs/playbooks.md)"
        raise RegexRefused(msg) from None
    if compiled.programsize > max_size:
        msg = (
            f"the pattern compiles to {compiled.programsize} RE2 instructions; the limit is "
            f"{max_size} (a counted repetition such as {{1,1000}} multiplies its group)"
        )
        raise RegexRefused(msg)
    return compiled


def keywords_pattern(words: list[str]) -> Pattern:
    """Whole-word, case-insensitive alternatives, longest first; group 1 is the word.

    A word boundary is a letter, digit or ``_`` on neither side (Python's Unicode ``\\w``),
    spelt out because RE2's ``\\b`` only knows ASCII.
    """
    alternatives = "|".join(
        re2.escape(word.strip()) for word in sorted(set(words), key=len, reverse=True)
    )
    return compile_regex(
        rf"(?i)(?:^|[^{_WORD}])({alternatives})(?:[^{_WORD}]|$)", max_size=MAX_PROGRAM_BYTES
    )


_UNICODE_SPELLING = {
    "w": rf"[{_WORD}]",
    "W": rf"[^{_WORD}]",
    "d": r"\p{Nd}",
    "D": r"\P{Nd}",
    "s": r"[\s\p{Z}]",
    "S": r"[^\s\p{Z}]",
}


def _refuse_ascii_classes_with_unicode(pattern: str) -> None:
    if pattern.isascii():
        return
    for found in _ASCII_CLASS.finditer(pattern):
        letter = found.group(1)
        if letter is None:  # an escaped backslash
            continue
        if letter in "bB":
            msg = (
                f"\\{letter} only knows ASCII letters in RE2, so next to non-ASCII text it "
                f"never matches as meant; write (?:^|[^{_WORD}]) and (?:[^{_WORD}]|$) "
                "around the word, or use keywords"
            )
        else:
            msg = (
                f"\\{letter} only matches ASCII in RE2 and the pattern has non-ASCII text; "
                f"write {_UNICODE_SPELLING[letter]} instead"
            )
        raise RegexRefused(msg)


def _explain(error: re2.error, pattern: str) -> str:
    raw = error.args[0] if error.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if text.startswith("invalid escape sequence: \\") and text[-1:].isdigit():
        return f"the backreference {text.rpartition(': ')[2]} is not supported"
    if text.startswith("invalid perl operator: (?P") and "(?P=" in pattern:
        return "the backreference (?P=name) is not supported"
    for prefix, explanation in _CONSTRUCTS:
        if text.startswith(prefix):
            return explanation
    return f"not a valid regular expression: {text}"
