"""YAML that users write is screened before anything is built from it (issue 14, item 1):
no anchors or aliases (a few hundred bytes of nested aliases stand for billions of nodes),
bounded depth and size — in every loader: playbooks, the alerting configuration, worlds."""

from __future__ import annotations

import pytest
import yaml

from tgfleet.alert.config import parse_config
from tgfleet.alert.exceptions import AlertingConfigError
from tgfleet.kit.yaml_guard import (
    DuplicateKeys,
    Position,
    YamlRefused,
    error_line,
    line_of,
    load,
    screen,
)
from tgfleet.playbook.document import parse
from tgfleet.playbook.exceptions import PlaybookInvalid
from tgfleet.sandbox.world import WorldError
from tgfleet.sandbox.world_file import parse_world


def alias_bomb(last_key: str, levels: int = 6) -> str:
    """``levels`` of nine aliases each: 9**levels values when expanded."""
    lines = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, levels):
        aliases = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{aliases}]")
    lines.append(f"{last_key}: *l{levels - 1}")
    return "\n".join(lines) + "\n"


class TestScreen:
    def test_an_alias_is_refused_with_its_line(self) -> None:
        """The first anchor is named with its line; nothing is built."""
        with pytest.raises(YamlRefused) as refused:
            screen(alias_bomb("rules"), max_nodes=1000)
        assert refused.value.line == 1
        assert refused.value.message == "anchors (&name) are not allowed: write the value out"

    def test_an_alias_without_anchor_is_a_syntax_error_and_an_alias_is_refused(self) -> None:
        """An alias to an unknown anchor is YAML's own error; a known one is refused."""
        with pytest.raises(YamlRefused) as refused:
            screen("a: 1\nb: *a\n", max_nodes=1000)
        assert refused.value.message == "aliases (*name) are not allowed: write the value out"
        assert refused.value.line == 2

    def test_depth_and_size_are_bounded(self) -> None:
        with pytest.raises(YamlRefused) as deep:
            screen("rules: " + "[" * 20_000, max_nodes=10**6)
        assert deep.value.message == "nested deeper than 64 levels"
        with pytest.raises(YamlRefused) as wide:
            screen("[" + ", ".join(["1"] * 101) + "]", max_nodes=100)
        assert wide.value.message == "more than 100 values"
        screen("[" + ", ".join(["1"] * 99) + "]", max_nodes=100)  # within the bound

    def test_a_syntax_error_is_yamls_own(self) -> None:
        with pytest.raises(yaml.YAMLError):
            screen("a: [1, 2\n", max_nodes=100)


class TestLoad:
    def test_every_path_has_its_position(self) -> None:
        """A mapping entry points at its key; its value and a list item at themselves."""
        document = load("route:\n  receiver: ops\nitems:\n  - a\n  - |\n    text\n", max_nodes=100)
        assert document.data == {"route": {"receiver": "ops"}, "items": ["a", "text\n"]}
        positions = document.positions
        assert positions[()] == Position(1, 1)
        assert positions[("route",)] == Position(1, 2)
        assert positions[("route", "receiver")] == Position(2, 2)
        assert positions[("items", 1)] == Position(5, 5, "|")
        assert line_of(positions, ("route", "receiver", "missing", 3)) == 2
        assert line_of({}, ("anything",)) == 1

    def test_an_empty_document_is_none(self) -> None:
        assert load("# nothing\n", max_nodes=10).data is None

    def test_duplicate_keys_are_refused_unless_repeatable_or_allowed(self) -> None:
        """All repetitions, with their lines, before anything is built; or the last wins."""
        text = "a: 1\nb:\n  c: 1\n  c: 2\na: 3\n"
        with pytest.raises(DuplicateKeys) as repeated:
            load(text, max_nodes=100)
        assert repeated.value.keys == [(("b", "c"), 4), (("a",), 5)]
        with pytest.raises(DuplicateKeys) as still:
            load(text, max_nodes=100, repeatable_keys={"c"})
        assert still.value.keys == [(("a",), 5)]
        assert load(text, max_nodes=100, unique_keys=False).data == {"a": 3, "b": {"c": 2}}

    def test_the_screen_and_yaml_errors_come_through(self) -> None:
        with pytest.raises(YamlRefused):
            load("a: &x 1\n", max_nodes=100)
        with pytest.raises(yaml.MarkedYAMLError) as broken:
            load("a: 1\nb: [1, 2\n", max_nodes=100)
        line, what = error_line(broken.value)
        assert line == 3
        assert "flow sequence" in what


class TestLoaders:
    def test_a_playbook_alias_bomb_is_refused(self) -> None:
        with pytest.raises(PlaybookInvalid) as refused:
            parse(alias_bomb("rules"))
        assert refused.value.problems == [
            "line 1: anchors (&name) are not allowed: write the value out"
        ]

    def test_a_deeply_nested_playbook_is_refused_not_a_recursion_error(self) -> None:
        with pytest.raises(PlaybookInvalid) as refused:
            parse("rules: " + "[" * 20_000)
        assert refused.value.problems == ["line 1: nested deeper than 64 levels"]

    def test_an_alerting_alias_bomb_is_refused(self) -> None:
        with pytest.raises(AlertingConfigError) as refused:
            parse_config(alias_bomb("receivers"), source_name="alerting.yml")
        assert refused.value.problems == [
            "alerting.yml:1: anchors (&name) are not allowed: write the value out"
        ]

    def test_a_world_alias_bomb_is_refused(self) -> None:
        with pytest.raises(WorldError) as refused:
            parse_world(alias_bomb("accounts"), source="bomb.yaml")
        assert str(refused.value) == (
            "bomb.yaml line 1: anchors (&name) are not allowed: write the value out"
        )
