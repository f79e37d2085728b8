"""Fuzzing the YAML loaders of documents users write: playbooks, the alerting configuration
and sandbox worlds.

Whatever the text, each loader either returns or raises its own error type (which the API
renders as a 4xx and the CLI as one line), within a time and memory bound. Generated texts
mix YAML's syntax (anchors, aliases, tags, directives, flow and block collections, block
scalars), odd scalars (huge integers, impossible timestamps, special floats, binary),
characters YAML refuses, and deep nesting; a second strategy dumps well-formed documents
shaped like each loader's input, so the fuzzing also reaches past the parser.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tgfleet.alert.config import parse_config
from tgfleet.alert.exceptions import AlertingConfigError
from tgfleet.playbook.document import parse as parse_playbook
from tgfleet.playbook.exceptions import PlaybookInvalid
from tgfleet.sandbox.world import WorldError
from tgfleet.sandbox.world_file import parse_world

#: Per document. The slowest here, 1,000+ nested ``[``, takes ~0.7 s (PyYAML's scanner looks
#: 1,024 characters ahead for a key before the screen can refuse the depth); others take ms.
TIME_BOUND_SECONDS = 3.0
#: Peak Python allocations while loading one document (texts are at most a few hundred KB).
MEMORY_BOUND_BYTES = 64 * 1024 * 1024
EXAMPLES = int(os.environ.get("TGFLEET_YAML_FUZZ_EXAMPLES", "150"))

Loader = Callable[[str], object]


def _alerting(text: str) -> object:
    return parse_config(text, check_files=False)


LOADERS: dict[str, tuple[Loader, type[Exception]]] = {
    "playbook": (parse_playbook, PlaybookInvalid),
    "alerting": (_alerting, AlertingConfigError),
    "world": (parse_world, WorldError),
}

TOKENS = [
    *"abc019:-?,[]{}&*!|>'\"#%@` \t\n\n\n  ",
    "rules",
    "route",
    "receivers",
    "accounts",
    "groups",
    "name",
    "when",
    "reply",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: ",
    "!!str ",
    "!!int ",
    "!!float ",
    "!!binary ",
    "!!timestamp ",
    "!!set ",
    "!!omap ",
    "!!python/object:os.system ",
    "!local ",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "---\n",
    "...\n",
    "~",
    "null",
    "yes",
    ".nan",
    "-.inf",
    "1e309",
    "0x_1F",
    "0o777",
    "1_000",
    "190:20:30",
    "2001-13-45",
    "2001-02-30T25:61:61Z",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01 00:00:00 +14:00",
    "9" * 5000,
    "-" + "9" * 5000,
    "1." + "0" * 400 + "1e-400",
    "\x00",
    "\x01",
    "\x7f",
    "\x85",
    "\u2028",
    "\ufeff",
    "\ud800",
    "\U0001f600",
    "\u202e",
]

LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=10),
    st.datetimes(),
    st.dates(),
)
DATA = st.recursive(
    LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
TOP_KEYS = [
    "rules",
    "defaults",
    "llm",
    "route",
    "receivers",
    "global",
    "inhibit_rules",
    "templates",
    "accounts",
    "groups",
    "members",
    "name",
    "when",
    "reply",
]


def _dump(data: Any) -> str:
    return yaml.dump(data, allow_unicode=True, sort_keys=False)  # tags for binary, dates


@st.composite
def token_soup(draw: st.DrawFn) -> str:
    return "".join(draw(st.lists(st.sampled_from(TOKENS), max_size=60)))


@st.composite
def shaped(draw: st.DrawFn) -> str:
    """A well-formed document whose top-level keys are those the loaders read."""
    keys = draw(st.lists(st.sampled_from(TOP_KEYS), min_size=1, max_size=4, unique=True))
    return _dump({key: draw(DATA) for key in keys})


@st.composite
def nested(draw: st.DrawFn) -> str:
    # Past the screen's depth limit (64); the 20,000-deep case is a fixed test below.
    depth = draw(st.integers(min_value=1, max_value=400))
    kind = draw(st.sampled_from(["flow-list", "flow-map", "block", "unclosed"]))
    if kind == "flow-list":
        return "rules: " + "[" * depth + "]" * depth
    if kind == "flow-map":
        return "rules: " + "{a: " * depth + "}" * depth
    if kind == "unclosed":
        return "rules: " + "[" * depth
    return "".join(" " * level + f"k{level}:\n" for level in range(depth))


@st.composite
def aliased(draw: st.DrawFn) -> str:
    """A billion-laughs shape (refused by the screen however small)."""
    width = draw(st.integers(min_value=2, max_value=12))
    levels = draw(st.integers(min_value=1, max_value=9))
    lines = ["a0: &a0 [x]"]
    for level in range(1, levels + 1):
        items = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{items}]")
    lines.append(f"rules: *a{levels}")
    return "\n".join(lines) + "\n"


TEXTS = st.one_of(token_soup(), shaped(), nested(), aliased(), st.text(max_size=200))


def _load_within_bounds(loader: Loader, error: type[Exception], text: str) -> bool:
    """Load ``text`` twice, timed and then under tracemalloc (which slows it several
    times); True when the loader refused it with ``error``. Any other exception fails."""
    started = time.perf_counter()
    try:
        loader(text)
    except error:
        refused = True
    else:
        refused = False
    elapsed = time.perf_counter() - started
    assert elapsed < TIME_BOUND_SECONDS, f"{elapsed:.2f} s for {text[:200]!r}"
    tracemalloc.start()
    try:
        loader(text)
    except error:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MEMORY_BOUND_BYTES, f"{peak:,} bytes for {text[:200]!r}"
    return refused


class TestYamlLoaders:
    @pytest.mark.parametrize("name", list(LOADERS))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(text=TEXTS)
    def test_only_the_loaders_error_within_bounds(self, name: str, text: str) -> None:
        """Any text: the loader returns or raises its own error type (no YAMLError,
        ValueError, RecursionError...), in under 2 s and 64 MB."""
        loader, error = LOADERS[name]
        _load_within_bounds(loader, error, text)

    @pytest.mark.parametrize("name", list(LOADERS))
    @pytest.mark.parametrize(
        "text",
        [
            "rules: \x85\x92",  # characters YAML's reader refuses
            "rules: [\x00]",
            "rules: \ud800",  # a lone surrogate: libyaml cannot encode it
            "rules: " + "9" * 5000,  # past Python's int-from-string limit
            "rules: 2001-13-45",  # a timestamp that is no date
            "rules: !!binary '!!!'",
            "rules: !!float a",  # explicit tags the constructor cannot build
            "rules: !!float ''",
            "rules: !!int ''",
            "rules: !!bool x",
            "rules: " + "[" * 20000,
            "rules: &a [1]\nx: *a\n",
        ],
        ids=[
            "reader",
            "nul",
            "surrogate",
            "huge-int",
            "bad-date",
            "bad-binary",
            "bad-float",
            "empty-float",
            "empty-int",
            "bad-bool",
            "deep",
            "alias",
        ],
    )
    def test_known_hostile_documents(self, name: str, text: str) -> None:
        """Documents that escaped the loaders (a ``ReaderError``, a ``ValueError`` from a
        huge integer, a 13th month or an explicit ``!!float a``, an ``IndexError`` from
        ``!!int ''``, a ``KeyError`` from ``!!bool x``) or stalled them are refused with their
        own error, within the bounds."""
        loader, error = LOADERS[name]
        assert _load_within_bounds(loader, error, text)
