"""Parsing and validating playbook documents: every error names its line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tgfleet.playbook.document import MAX_RULES, MAX_SOURCE_BYTES
from tgfleet.playbook.engine import compile_playbook
from tgfleet.playbook.exceptions import PlaybookInvalid

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def problems(source: str) -> list[str]:
    with pytest.raises(PlaybookInvalid) as caught:
        compile_playbook(source)
    assert caught.value.status_code == 422
    assert caught.value.code == "playbook_invalid"
    return caught.value.problems


def rule(body: str) -> str:
    """A one-rule playbook; ``body`` is the rule's YAML, indented under ``- ``."""
    return "version: 1\nrules:\n  - name: r\n" + body


class TestValid:
    @pytest.mark.parametrize("name", ["support-faq.yaml", "community-welcome.yaml"])
    def test_examples_compile(self, name: str) -> None:
        """The shipped examples are valid playbooks with rules."""
        compiled = compile_playbook((EXAMPLES / name).read_text(), name=name, version=3)
        assert compiled.rules
        assert compiled.version == 3

    def test_defaults_and_overrides_merge(self) -> None:
        """Rule limits override defaults field by field; defaults override built-ins."""
        compiled = compile_playbook(
            "defaults:\n"
            "  limits: {min_interval_seconds: 5, account_hourly: 7}\n"
            "  typing_seconds: 2\n"
            "rules:\n"
            "  - name: a\n"
            "    when: {mention: true}\n"
            "    reply: {templates: [hi]}\n"
            "    limits: {account_hourly: 3}\n"
            "    responders: all\n"
        )
        (only,) = compiled.rules
        assert only.limits.as_dict() == {
            "min_interval_seconds": 5,
            "account_hourly": 3,
            "group_hourly": 20,
            "probability": 1.0,
        }
        assert only.typing_seconds == 2
        assert only.responders == "all"

    def test_unquoted_clock_times_stay_strings(self) -> None:
        """``to: 18:00`` is a time, not YAML 1.1's sexagesimal 1080."""
        compiled = compile_playbook(
            rule(
                "    when: {mention: true}\n"
                "    conditions: {time_window: {from: 09:00, to: 18:00}}\n"
                "    reply: {templates: [hi]}\n"
            )
        )
        window = compiled.rules[0].time_window
        assert window is not None
        assert (window.opens.hour, window.closes.hour) == (9, 18)


class TestInvalid:
    def test_unknown_key_names_line_and_suggests(self) -> None:
        """An unknown key is an error on its own line, with the closest known key."""
        found = problems(
            rule("    when: {mention: true}\n    reply: {templates: [hi]}\n    limitz: {}\n")
        )
        assert found == ["line 6, rules[0].limitz: unknown key 'limitz' (did you mean 'limits'?)"]

    def test_both_templates_and_llm(self) -> None:
        """A reply gives exactly one of templates and llm."""
        found = problems(
            rule(
                "    when: {mention: true}\n"
                "    reply:\n"
                "      templates: [hi]\n"
                "      llm: {system_prompt: be brief}\n"
            )
        )
        assert found == ["line 5, rules[0].reply: give either templates or llm, not both"]

    def test_neither_templates_nor_llm(self) -> None:
        found = problems(rule("    when: {mention: true}\n    reply: {}\n"))
        assert found == ["line 5, rules[0].reply: give either templates or llm"]

    def test_empty_templates(self) -> None:
        found = problems(rule("    when: {mention: true}\n    reply:\n      templates: []\n"))
        assert found == ["line 6, rules[0].reply.templates: at least one template is required"]

    def test_bad_regex(self) -> None:
        """A regex that does not compile is refused at save, naming its line."""
        found = problems(rule("    when:\n      regex: '(unclosed'\n    reply: {templates: [x]}\n"))
        assert len(found) == 1
        assert found[0].startswith(
            "line 5, rules[0].when.regex: rule 'r': not a valid regular expression"
        )

    def test_template_syntax_error_names_the_template_line(self) -> None:
        """A Jinja syntax error on the 2nd line of a block scalar points at that YAML line."""
        found = problems(
            rule(
                "    when: {mention: true}\n"
                "    reply:\n"
                "      templates:\n"
                "        - |\n"
                "          Hello {{ sender.name }}\n"
                "          {% if %}\n"
            )
        )
        assert len(found) == 1
        assert found[0].startswith("line 9, rules[0].reply.templates[0]: template syntax error")

    def test_unknown_template_variable(self) -> None:
        """A typo in a variable name is caught at save, not when a reply is due."""
        found = problems(
            rule("    when: {mention: true}\n    reply: {templates: ['{{ sendr.name }}']}\n")
        )
        assert found == [
            (
                "line 5, rules[0].reply.templates[0]: unknown template variable 'sendr' "
                "(available: account, group, message, sender)"
            )
        ]

    def test_bad_time_zone(self) -> None:
        found = problems(
            rule(
                "    when: {mention: true}\n"
                "    conditions:\n"
                "      time_window:\n"
                '        from: "09:00"\n'
                '        to: "17:00"\n'
                "        timezone: Mars/Olympus\n"
                "    reply: {templates: [x]}\n"
            )
        )
        assert found == [
            (
                "line 9, rules[0].conditions.time_window.timezone: unknown time zone "
                "'Mars/Olympus' (use an IANA name such as Europe/Berlin)"
            )
        ]

    def test_bad_time(self) -> None:
        found = problems(
            rule(
                "    when: {mention: true}\n"
                "    conditions:\n"
                "      time_window:\n"
                '        from: "25:00"\n'
                '        to: "17:00"\n'
                "    reply: {templates: [x]}\n"
            )
        )
        assert found == [
            (
                "line 7, rules[0].conditions.time_window.from: '25:00' is not a time of day "
                'as "HH:MM" (00:00 to 23:59)'
            )
        ]

    def test_empty_rules(self) -> None:
        assert problems("version: 1\nrules: []\n") == [
            "line 2, rules: at least one rule is required"
        ]

    def test_missing_rules_and_trigger(self) -> None:
        """Missing keys point at their parent; a rule needs at least one trigger."""
        assert problems("version: 1\n") == ["line 1, rules: this key is required"]
        found = problems(rule("    when: {mention: false}\n    reply: {templates: [x]}\n"))
        assert found[0].startswith("line 4, rules[0].when: needs at least one trigger")

    def test_too_large(self) -> None:
        """The source size is capped before parsing."""
        source = "# " + "x" * MAX_SOURCE_BYTES + "\nrules: []\n"
        found = problems(source)
        assert found[0].startswith("line 1: the playbook is")

    def test_too_many_rules(self) -> None:
        rules = "".join(
            f"  - {{name: r{i}, when: {{mention: true}}, reply: {{templates: [x]}}}}\n"
            for i in range(MAX_RULES + 1)
        )
        found = problems("rules:\n" + rules)
        assert found[0].startswith("line 1, rules: List should have at most 200 items")

    def test_malformed_yaml_gives_the_parser_line(self) -> None:
        found = problems("version: 1\nrules:\n  - name: a: b\n")
        assert found == ["line 3: YAML syntax error: mapping values are not allowed here"]

    def test_duplicate_key(self) -> None:
        found = problems(
            rule("    when: {mention: true}\n    reply: {templates: [x]}\n    name: s\n")
        )
        assert found == ["line 6, rules[0].name: duplicate key"]

    def test_several_problems_one_line_each(self) -> None:
        """Every problem is reported, in line order."""
        found = problems(
            "rules:\n"
            "  - name: a\n"
            "    when: {keywords: [price], mention: yes}\n"
            "    reply: {templates: [x]}\n"
            "  - name: a\n"
            "    when: {mention: true}\n"
            "    reply: {templates: [x]}\n"
            "    typing_seconds: 60\n"
        )
        assert found == [
            "line 3, rules[0].when.mention: Input should be a valid boolean",
            "line 8, rules[1].typing_seconds: Input should be less than or equal to 10",
        ]

    def test_duplicate_rule_names(self) -> None:
        found = problems(
            "rules:\n"
            "  - {name: a, when: {mention: true}, reply: {templates: [x]}}\n"
            "  - {name: a, when: {mention: true}, reply: {templates: [y]}}\n"
        )
        assert found == [
            "line 3, rules[1].name: 'a' is already the name of rules[0]; rule names must be unique"
        ]

    def test_not_a_mapping(self) -> None:
        assert problems("- a\n- b\n")[0].startswith("line 1: a playbook is a YAML mapping")
