"""kit.names: names are normalised, visible, and look-alikes are found (no database)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from tgfleet.kit.names import (
    DisplayName,
    check_name,
    confusable,
    sanitise_name,
    skeleton,
    skeleton_key,
)


class Named(BaseModel):
    name: DisplayName


class TestCheckName:
    @pytest.mark.parametrize(
        ("raw", "shown"),
        [
            ("evil\u202egnp.exe", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
            ("a\u2066b", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
            ("ad\u200bmin", "U+200B (ZERO WIDTH SPACE)"),
            ("x\u00ady", "U+00AD (SOFT HYPHEN)"),
            ("line\u2028break", "U+2028 (LINE SEPARATOR)"),
            ("tab\there", "U+0009"),
            ("admin\u3164", "U+1160 (HANGUL JUNGSEONG FILLER)"),  # NFKC of U+3164
            ("a\ufe0fb", "U+FE0F (VARIATION SELECTOR-16)"),
            ("a\U000e0100b", "U+E0100 (VARIATION SELECTOR-17)"),
            ("\u2800blank", "U+2800 (BRAILLE PATTERN BLANK)"),
            ("ogham\u1680space", "U+1680 (OGHAM SPACE MARK)"),
            ("private\ue000use", "U+E000"),
            ("lone\ud800surrogate", "U+D800"),
        ],
    )
    def test_hidden_characters_are_refused_by_name(self, raw: str, shown: str) -> None:
        """Bidi controls, zero-width and format characters, separators, fillers, variation
        selectors, private-use and surrogate code points are refused, and the message names
        the code point."""
        with pytest.raises(ValueError, match="invisible, control or text-direction") as error:
            check_name(raw, max_length=100)
        assert shown in str(error.value)

    def test_normalised_with_nfkc_and_stripped(self) -> None:
        """Full-width letters, no-break spaces and ligatures become their plain forms."""
        assert check_name("  \uff21\uff4c\uff50\uff48\uff41\u00a0team\ufb01  ", max_length=100) == (
            "Alpha teamfi"
        )

    def test_stacked_combining_marks_are_refused(self) -> None:
        """A letter with more than four combining marks (text drawn over its neighbours)."""
        assert check_name("cafe\u0301", max_length=10) == "caf\u00e9"
        with pytest.raises(ValueError, match="combining marks"):
            check_name("z" + "\u0336" * 5, max_length=100)

    def test_length_counts_after_normalisation(self) -> None:
        """One character may expand under NFKC (U+FDFA is 18): the bound holds after it."""
        with pytest.raises(ValueError, match="at most 10 characters"):
            check_name("\ufdfa", max_length=10)

    def test_blank_is_refused(self) -> None:
        with pytest.raises(ValueError, match="empty or blank"):
            check_name(" \u3000 ", max_length=10)

    def test_display_name_type_in_a_schema(self) -> None:
        """DisplayName normalises valid names and turns a bad one into a validation error."""
        assert Named(name="\uff41bc").name == "abc"
        with pytest.raises(ValidationError, match="RIGHT-TO-LEFT OVERRIDE"):
            Named(name="evil\u202egnp.exe")


class TestSanitiseName:
    def test_hidden_characters_become_underscores(self) -> None:
        """Names taken from elsewhere (file names) keep their visible text."""
        assert sanitise_name("evil\u202egnp.exe", max_length=200) == "evil_gnp.exe"
        assert sanitise_name("a\x00b\tc", max_length=200) == "a_b_c"

    def test_stacked_marks_are_dropped_and_length_bounded(self) -> None:
        assert sanitise_name("z" + "\u0336" * 9 + "oo", max_length=200) == "zoo"
        bounded = sanitise_name("\ufdfa", max_length=5)  # 18 characters under NFKC
        assert 0 < len(bounded) <= 5
        assert bounded == bounded.strip()


class TestSkeleton:
    @pytest.mark.parametrize(
        ("first", "second"),
        [
            ("admin", "\u0430dmin"),  # Cyrillic a
            ("paypal", "\u0440\u0430yp\u0430l"),  # Cyrillic r-looking er and a
            ("rn", "m"),
            ("scope", "\u0455\u0441\u043e\u0440\u0435"),
        ],
    )
    def test_look_alikes_share_a_skeleton(self, first: str, second: str) -> None:
        """TR39: strings that look alike have equal skeletons (and skeleton keys)."""
        assert first != second
        assert confusable(first, second)
        assert skeleton_key(first) == skeleton_key(second)

    def test_different_names_differ(self) -> None:
        assert not confusable("alice", "bob")
        assert skeleton("admin") != skeleton("admins")
        assert len(skeleton_key("\uaf66" * 64)) == 64  # a skeleton 7x longer: a fixed key
