"""Names that operators read: normalised, visible, and (for usernames) no look-alikes.

A name is NFKC-normalised and stripped, then refused when it holds a character that does
not show or that changes how the rest shows: control and format characters (bidi controls
such as U+202E RIGHT-TO-LEFT OVERRIDE, zero-width spaces and joiners), line and paragraph
separators, private-use, surrogate and unassigned code points, spaces other than U+0020,
fillers and variation selectors, and runs of more than ``MAX_COMBINING_RUN`` combining
marks (stacked marks draw over their neighbours). ``evil\\u202egnp.exe`` is refused rather
than shown as ``evilexe.png``.

Two names are confusable when their Unicode TR39 skeletons are equal (``admin`` and
``\\u0430dmin`` with a Cyrillic a). The skeleton comes from ICU's spoof checker (PyICU),
the reference implementation of TR39, on the ICU data of the machine; ``skeleton_key`` is a
fixed-length digest of it for a unique column (a skeleton can be seven times longer than its
name).
"""

from __future__ import annotations

import hashlib
import unicodedata
from functools import lru_cache
from typing import Annotated

import icu  # type: ignore[import-untyped]  # PyICU ships no type information
from pydantic import AfterValidator, Field

#: General categories never allowed in a name: controls, format characters (bidi controls,
#: zero-width characters), surrogates, private use, unassigned, line/paragraph separators.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
#: Invisible or blank characters of other categories (Unicode's Default_Ignorable_Code_Point
#: outside Cf, and blanks that render as nothing).
INVISIBLE = frozenset(
    [
        *(0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0),
        *range(0x180B, 0x1810),  # Mongolian variation selectors and vowel separator
        *range(0xFE00, 0xFE10),  # variation selectors
        *range(0xE0100, 0xE01F0),  # variation selectors supplement
    ]
)
MAX_COMBINING_RUN = 4
DISPLAY_NAME_MAX = 100


def normalise_name(value: str) -> str:
    """NFKC and strip: the form a name is compared and stored in."""
    return unicodedata.normalize("NFKC", value).strip()


def _describe(char: str) -> str:
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')})"


def _hidden(char: str) -> bool:
    if char == " ":
        return False
    category = unicodedata.category(char)
    return category in FORBIDDEN_CATEGORIES or category == "Zs" or ord(char) in INVISIBLE


def name_problem(name: str) -> str | None:
    """Why the (normalised) ``name`` cannot be shown as is, or None when it can."""
    hidden = sorted({char for char in name if _hidden(char)})
    if hidden:
        listed = ", ".join(_describe(char) for char in hidden[:3])
        return f"must not contain invisible, control or text-direction characters: {listed}"
    run = 0
    for char in name:
        run = run + 1 if unicodedata.combining(char) else 0
        if run > MAX_COMBINING_RUN:
            return f"must not stack more than {MAX_COMBINING_RUN} combining marks on a letter"
    return None


def check_name(value: str, *, max_length: int, what: str = "name") -> str:
    """``value`` normalised, or ValueError saying what is wrong with it."""
    name = normalise_name(value)
    if not name:
        msg = f"{what} must not be empty or blank"
        raise ValueError(msg)
    if len(name) > max_length:  # NFKC can lengthen: one character may become eighteen
        msg = f"{what} must be at most {max_length} characters (after normalisation)"
        raise ValueError(msg)
    problem = name_problem(name)
    if problem:
        msg = f"{what} {problem}"
        raise ValueError(msg)
    return name


def sanitise_name(value: str, *, max_length: int, replacement: str = "_") -> str:
    """``value`` normalised with every character a name may not hold replaced, for names
    taken from elsewhere (file names, Telegram titles) rather than typed by an operator."""
    name = "".join(replacement if _hidden(char) else char for char in normalise_name(value)).strip()
    if name_problem(name):  # only a run of combining marks can be left: drop the marks
        name = "".join(char for char in name if not unicodedata.combining(char))
    return name[:max_length].strip()


class NameRules:
    """A pydantic ``AfterValidator`` for names: ``AfterValidator(NameRules(200, "label"))``."""

    def __init__(self, max_length: int, what: str = "name") -> None:
        self.max_length = max_length
        self.what = what

    def __call__(self, value: str) -> str:
        return check_name(value, max_length=self.max_length, what=self.what)


#: A name shown to operators (labels, titles, names of things), at most 100 characters.
DisplayName = Annotated[
    str,
    Field(min_length=1, max_length=DISPLAY_NAME_MAX),
    AfterValidator(NameRules(DISPLAY_NAME_MAX)),
]


@lru_cache(maxsize=1)
def _spoof_checker() -> icu.SpoofChecker:
    return icu.SpoofChecker()


def skeleton(value: str) -> str:
    """The Unicode TR39 skeleton of ``value``: equal skeletons look alike."""
    result: str = _spoof_checker().getSkeleton(0, value)
    return result


def skeleton_key(value: str) -> str:
    """A 64-character digest of ``value``'s skeleton, for a unique column."""
    return hashlib.sha256(skeleton(value).encode("utf-8")).hexdigest()


def confusable(first: str, second: str) -> bool:
    """Whether two strings look alike (equal TR39 skeletons)."""
    return skeleton(first) == skeleton(second)
