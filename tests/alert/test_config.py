"""The alerting configuration: Alertmanager's YAML shape, its defaults, and errors that name
the file, the line and the field."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from tgfleet.alert.config import (
    AlertingConfig,
    config_from_settings,
    default_config,
    load_config,
    parse_config,
)
from tgfleet.alert.durations import format_duration, parse_duration
from tgfleet.alert.exceptions import AlertingConfigError
from tgfleet.alert.matchers import Matcher, MatchType, parse_matchers
from tgfleet.alert.routing import DEFAULT_RECEIVER
from tgfleet.config import Settings

TOKEN = "987654321:AAE-the-secret-bot-token_value"
DEPLOY_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"


def yaml_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def problems(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(AlertingConfigError) as caught:
        parse_config(yaml_text(text), "alerting.yml", **kwargs)  # type: ignore[arg-type]
    assert caught.value.status_code == 500
    assert str(caught.value).startswith("invalid alerting configuration:\n")
    return caught.value.problems


FULL = f"""
global:
  resolve_timeout: 10m
  telegram_api_url: https://tg.example.org
route:
  receiver: ops
  group_by: [alertname, severity]
  group_wait: 45s
  repeat_interval: 2h
  routes:
    - receiver: oncall
      matchers: ['severity="critical"', '{{team=~"db|net", env!="dev"}}']
      group_wait: 5s
      continue: true
      routes:
        - receiver: hooks
          matchers: [account =~ "acc-.*"]
          group_by: ['...']
    - receiver: hooks
      match: {{severity: warning}}
      match_re: {{worker: "w[0-9]+"}}
      group_interval: 1m
receivers:
  - name: ops
  - name: oncall
    telegram_configs:
      - bot_token: "{TOKEN}"
        chat_id: -1001234567890
        message_thread_id: 7
        disable_notifications: true
  - name: hooks
    webhook_configs:
      - url: https://hooks.example.org/alerts
        max_alerts: 10
        send_resolved: false
    alertmanager_configs:
      - url: http://alertmanager.example.org:9093
        firing_ttl: 5h
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [alertname]
  - source_match: {{alertname: NoWorkersAlive}}
    target_match_re: {{alertname: "Worker.*"}}
"""


class TestParse:
    def test_full_configuration(self) -> None:
        """Every supported section reads with Alertmanager's names and meanings."""
        config = parse_config(yaml_text(FULL), "alerting.yml")
        assert config.source == "alerting.yml"
        assert config.global_.resolve_timeout == timedelta(minutes=10)
        assert config.global_.telegram_api_url == "https://tg.example.org"
        root = config.root_route
        assert root.receiver == "ops"
        assert root.group_by == ("alertname", "severity")
        assert (root.group_wait, root.group_interval) == (
            timedelta(seconds=45),
            timedelta(minutes=5),
        )
        assert root.repeat_interval == timedelta(hours=2)
        oncall, hooks = root.routes
        assert oncall.path == "route.routes[0]"
        assert oncall.continue_ is True
        assert [str(m) for m in oncall.matchers] == [
            'severity="critical"',
            'team=~"db|net"',
            'env!="dev"',
        ]
        (nested,) = oncall.routes
        assert nested.group_by_all is True
        assert nested.group_by == ()
        assert nested.group_wait == timedelta(seconds=5)  # inherited from its parent
        assert nested.matchers == (Matcher("account", MatchType.REGEX, "acc-.*"),)
        assert hooks.matchers == (
            Matcher("severity", MatchType.EQUAL, "warning"),
            Matcher("worker", MatchType.REGEX, "w[0-9]+"),
        )
        assert hooks.group_interval == timedelta(minutes=1)
        assert hooks.group_by == ("alertname", "severity")
        telegram = config.receiver("oncall").telegram_configs[0]
        assert telegram.bot_token is not None
        assert telegram.bot_token.get_secret_value() == TOKEN
        assert (telegram.chat_id, telegram.message_thread_id) == (-1001234567890, 7)
        assert telegram.disable_notifications is True
        assert (telegram.send_resolved, telegram.parse_mode) == (True, "HTML")
        webhook = config.receiver("hooks").webhook_configs[0]
        assert (webhook.max_alerts, webhook.send_resolved) == (10, False)
        assert config.receiver("hooks").alertmanager_configs[0].firing_ttl == timedelta(hours=5)
        first, second = config.inhibitions
        assert first.equal == ("alertname",)
        assert first.is_source({"severity": "critical"})
        assert first.is_target({"severity": "warning"})
        assert second.is_source({"alertname": "NoWorkersAlive"})
        assert second.is_target({"alertname": "WorkerDown"})
        assert not second.is_target({"alertname": "NoWorkersAlive"})
        assert config.warnings == ()

    def test_alertmanager_defaults(self) -> None:
        """Unset timers are Alertmanager's: 30s, 5m, 4h; resolve_timeout 5m; the Bot API."""
        config = parse_config("route: {receiver: r}\nreceivers: [{name: r}]\n")
        root = config.root_route
        assert (root.group_wait, root.group_interval, root.repeat_interval) == (
            timedelta(seconds=30),
            timedelta(minutes=5),
            timedelta(hours=4),
        )
        assert root.group_by == ()
        assert root.group_by_all is False
        assert config.global_.resolve_timeout == timedelta(minutes=5)
        assert config.global_.telegram_api_url == "https://api.telegram.org"

    def test_repeat_interval_rounded_up_with_a_warning(self) -> None:
        """repeat_interval acts as the next multiple of group_interval, and says so."""
        config = parse_config(
            yaml_text(
                """
                route:
                  receiver: r
                  group_interval: 2m
                  repeat_interval: 5m
                receivers: [{name: r}]
                """
            )
        )
        assert config.root_route.repeat_interval == timedelta(minutes=6)
        assert config.warnings == (
            (
                "alerting.yml:4: route.repeat_interval: 5m is not a multiple of group_interval "
                "2m; it acts as 6m"
            ),
        )

    def test_default_config_sends_nothing(self) -> None:
        """Without a file, every alert reaches the receiver 'default', which has no
        integrations."""
        config = default_config()
        assert config.receiver_names == (DEFAULT_RECEIVER,)
        assert config.receiver(DEFAULT_RECEIVER).integration_count == 0
        assert config.root_route.receiver == DEFAULT_RECEIVER
        assert config.root_route.matches({"alertname": "Anything"})

    def test_settings_select_the_file(self, tmp_path: Path) -> None:
        """TGFLEET_ALERTING_CONFIG names the file; unset, the default configuration."""
        assert config_from_settings(Settings()).receiver_names == (DEFAULT_RECEIVER,)
        path = tmp_path / "alerting.yml"
        path.write_text("route: {receiver: ops}\nreceivers: [{name: ops}]\n")
        config = config_from_settings(Settings(alerting_config=path))
        assert config.receiver_names == ("ops",)
        assert config.source == str(path)

    def test_token_file_relative_to_the_config_and_its_mode_warned(self, tmp_path: Path) -> None:
        """A relative bot_token_file is found next to the configuration; a file every user
        can read loads with a warning that is logged."""
        (tmp_path / "token").write_text(TOKEN + "\n")
        (tmp_path / "token").chmod(0o644)
        path = tmp_path / "alerting.yml"
        path.write_text(
            yaml_text(
                """
                route: {receiver: tg}
                receivers:
                  - name: tg
                    telegram_configs:
                      - bot_token_file: token
                        chat_id: -100
                """
            )
        )
        with capture_logs() as logs:
            config = load_config(path)
        token_file = config.receiver("tg").telegram_configs[0].bot_token_file
        assert token_file == tmp_path / "token"
        (warning,) = config.warnings
        assert warning.startswith(f"{path}:5: receivers[0].telegram_configs[0].bot_token_file: ")
        assert "readable by every user (mode 0644)" in warning
        assert [entry["event"] for entry in logs] == ["alert.config.warning"]
        (tmp_path / "token").chmod(0o600)
        assert load_config(path).warnings == ()

    def test_secrets_stay_out_of_reprs_and_dumps(self) -> None:
        """The bot token and a webhook URL never show in a repr, str or JSON dump."""
        config = parse_config(yaml_text(FULL))
        for text in (repr(config), str(config), config.model_dump_json()):
            assert TOKEN not in text
            assert "hooks.example.org/alerts" not in text

    def test_dump_uses_alertmanager_names(self) -> None:
        """A dump reads back as the same configuration (durations and matchers as text)."""
        config = parse_config(yaml_text(FULL.replace(TOKEN, "1:x")))
        dumped = config.model_dump(mode="json")
        assert "global" in dumped
        assert dumped["route"]["routes"][0]["continue"] is True
        assert dumped["route"]["group_wait"] == "45s"

    def test_shipped_alertmanager_config_is_a_tgfleet_config(self) -> None:
        """deploy/alertmanager/alertmanager.yml also loads as tgfleet's own configuration."""
        config = parse_config(DEPLOY_CONFIG.read_text(), DEPLOY_CONFIG.name, check_files=False)
        assert config.warnings == ()
        critical = config.root_route.routes[0]
        assert critical.receiver == "telegram-critical"
        assert critical.matches({"severity": "critical"})
        assert not critical.matches({"severity": "warning"})

    def test_model_validate_without_a_file_still_checks(self) -> None:
        """Built in code, the cross-field checks still run (without line numbers)."""
        with pytest.raises(ValidationError, match=r"route.receiver: unknown receiver 'x'"):
            AlertingConfig.model_validate(
                {"route": {"receiver": "x"}, "receivers": [{"name": "y"}]}
            )


class TestErrors:
    def test_unknown_receiver(self) -> None:
        """A route to a receiver that does not exist names the known ones."""
        assert problems(
            """
            route:
              receiver: ops
              routes:
                - receiver: pager
            receivers:
              - name: ops
              - name: oncall
            """
        ) == [
            (
                "alerting.yml:4: route.routes[0].receiver: "
                "unknown receiver 'pager' (known: ops, oncall)"
            )
        ]

    def test_unknown_field_with_a_suggestion(self) -> None:
        """Unknown fields are refused, with the likely intended name."""
        assert problems(
            """
            route:
              receiver: ops
              group_wiat: 10s
            receivers: [{name: ops}]
            """
        ) == [
            (
                "alerting.yml:3: route.group_wiat: "
                "unknown field 'group_wiat' (did you mean 'group_wait'?)"
            )
        ]

    @pytest.mark.parametrize(
        ("field", "expected"),
        [
            ("email_configs: [{to: a@b.c}]", "email_configs is not supported by tgfleet"),
            ("slack_configs: []", "slack_configs is not supported by tgfleet"),
            ("http_config: {}", "http_config is not supported"),
        ],
    )
    def test_alertmanager_features_we_lack_are_named(self, field: str, expected: str) -> None:
        """Alertmanager fields tgfleet does not support are refused as such, not as typos."""
        (problem,) = problems(f"route: {{receiver: r}}\nreceivers:\n  - name: r\n    {field}\n")
        assert problem.startswith("alerting.yml:4: receivers[0].")
        assert expected in problem

    def test_duplicate_receiver_names(self) -> None:
        """Receiver names are unique."""
        assert problems("route: {receiver: a}\nreceivers:\n  - name: a\n  - name: a\n") == [
            "alerting.yml:4: receivers[1].name: receiver 'a' is already receivers[0]"
        ]

    @pytest.mark.parametrize("value", ["5 minutes", "30", "1.5h", "1m1h", "-5m", "''", "true"])
    def test_bad_durations(self, value: str) -> None:
        """Durations follow Alertmanager's format; a bare number has no unit."""
        (problem,) = problems(
            f"route:\n  receiver: r\n  group_wait: {value}\nreceivers: [{{name: r}}]\n"
        )
        assert problem.startswith("alerting.yml:3: route.group_wait: ")
        assert "duration like 30s, 5m, 4h or 1h30m" in problem

    def test_zero_intervals(self) -> None:
        """group_interval and repeat_interval must be positive."""
        assert problems(
            """
            route:
              receiver: r
              routes:
                - group_interval: 0s
                  repeat_interval: "0"
            receivers: [{name: r}]
            """
        ) == [
            "alerting.yml:4: route.routes[0].group_interval: must be greater than 0",
            "alerting.yml:5: route.routes[0].repeat_interval: must be greater than 0",
        ]

    @pytest.mark.parametrize(
        ("matcher", "expected"),
        [
            ("'severity'", "expected =, !=, =~ or !~"),
            ("'{a=\"b\"'", "missing closing '}'"),
            ("'a=~\"(\"'", "invalid regular expression"),
            ("'a=\"unterminated'", "unterminated quoted string"),
        ],
    )
    def test_bad_matchers(self, matcher: str, expected: str) -> None:
        """A matcher that does not parse is reported at its own list item."""
        (problem,) = problems(
            "route:\n  receiver: r\n  routes:\n    - matchers:\n        - a=b\n"
            f"        - {matcher}\nreceivers: [{{name: r}}]\n"
        )
        assert problem.startswith("alerting.yml:6: route.routes[0].matchers[1]: ")
        assert expected in problem

    def test_root_route_without_matchers_or_receiver(self) -> None:
        """The root route takes every alert: it needs a receiver and has no matchers."""
        assert problems("route: {matchers: ['a=b']}\nreceivers: [{name: r}]\n") == [
            "alerting.yml:1: route: the root route needs a receiver (every alert reaches it)"
        ]
        assert problems("route: {receiver: r, matchers: ['a=b']}\nreceivers: [{name: r}]\n") == [
            (
                "alerting.yml:1: route.matchers: the root route must not have matchers: every "
                "alert enters the tree there"
            )
        ]

    def test_group_by(self) -> None:
        """'...' stands alone; label names are label names."""
        assert problems("route: {receiver: r, group_by: ['...', a]}\nreceivers: [{name: r}]\n") == [
            "alerting.yml:1: route.group_by: '...' groups by every label and must be the only entry"
        ]
        (problem,) = problems("route: {receiver: r, group_by: [a-b]}\nreceivers: [{name: r}]\n")
        assert "'a-b' is not a label name" in problem

    def test_bot_token_exactly_once(self, tmp_path: Path) -> None:
        """The token comes from bot_token or bot_token_file: both or neither is an error,
        and the error never shows the token."""
        (tmp_path / "token").write_text(TOKEN)
        both = problems(
            f"""
            route: {{receiver: tg}}
            receivers:
              - name: tg
                telegram_configs:
                  - bot_token: "{TOKEN}"
                    bot_token_file: {tmp_path / "token"}
                    chat_id: 1
            """
        )
        assert both == [
            (
                "alerting.yml:5: receivers[0].telegram_configs[0].bot_token: give bot_token or "
                "bot_token_file, not both"
            )
        ]
        assert problems(
            "route: {receiver: tg}\nreceivers:\n  - name: tg\n    telegram_configs:\n"
            "      - chat_id: 1\n"
        ) == [
            (
                "alerting.yml:5: receivers[0].telegram_configs[0]: no bot token: set bot_token or "
                "bot_token_file (here or in global)"
            )
        ]
        # A global token serves every Telegram receiver that has none of its own.
        config = parse_config(
            f"global: {{telegram_bot_token: '{TOKEN}'}}\nroute: {{receiver: tg}}\n"
            "receivers:\n  - name: tg\n    telegram_configs:\n      - chat_id: 1\n"
        )
        assert config.receiver("tg").telegram_configs[0].bot_token is None

    @pytest.mark.parametrize(
        ("content", "expected"),
        [(None, "does not exist"), ("", "is empty"), ("  \n", "is empty")],
    )
    def test_token_file_must_hold_a_token(
        self, tmp_path: Path, content: str | None, expected: str
    ) -> None:
        """bot_token_file must exist and hold something."""
        path = tmp_path / "token"
        if content is not None:
            path.write_text(content)
        (problem,) = problems(
            f"route: {{receiver: tg}}\nreceivers:\n  - name: tg\n    telegram_configs:\n"
            f"      - bot_token_file: {path}\n        chat_id: 1\n"
        )
        assert problem == (
            f"alerting.yml:5: receivers[0].telegram_configs[0].bot_token_file: {path} {expected}"
        )
        # Checking a file meant for another host: the file is not read.
        parse_config(
            f"route: {{receiver: tg}}\nreceivers:\n  - name: tg\n    telegram_configs:\n"
            f"      - bot_token_file: {path}\n        chat_id: 1\n",
            check_files=False,
        )

    def test_chat_id_exactly_once(self, tmp_path: Path) -> None:
        """chat_id or chat_id_file, one of them; a chat id file holds an integer."""
        base = (
            "route: {receiver: tg}\nreceivers:\n  - name: tg\n    telegram_configs:\n"
            f"      - bot_token: '{TOKEN}'\n"
        )
        assert problems(base) == [
            (
                "alerting.yml:5: receivers[0].telegram_configs[0]: give exactly one of chat_id or "
                "chat_id_file"
            )
        ]
        (tmp_path / "chat").write_text("general\n")
        assert problems(base + f"        chat_id_file: {tmp_path / 'chat'}\n") == [
            (
                "alerting.yml:6: receivers[0].telegram_configs[0].chat_id_file: "
                f"{tmp_path / 'chat'} does not hold a chat id (an integer)"
            )
        ]

    def test_parse_mode_and_templates(self) -> None:
        """Markdown modes, Go templates and Jinja2 syntax errors are refused clearly."""
        base = (
            f"route: {{receiver: tg}}\nreceivers:\n  - name: tg\n    telegram_configs:\n"
            f"      - bot_token: '{TOKEN}'\n        chat_id: 1\n"
        )
        (markdown,) = problems(base + "        parse_mode: MarkdownV2\n")
        assert markdown.startswith("alerting.yml:7: receivers[0].telegram_configs[0].parse_mode: ")
        assert "MarkdownV2 is not supported" in markdown
        (go,) = problems(base + "        message: '{{ .CommonLabels.alertname }}'\n")
        assert "looks like a Go template" in go
        assert "{{ CommonLabels.alertname }}" in go
        (jinja,) = problems(base + "        message: '{% for a in Alerts %}'\n")
        assert jinja.startswith("alerting.yml:7: receivers[0].telegram_configs[0].message: ")
        assert "template line 1" in jinja
        for problem in (markdown, go, jinja):
            assert TOKEN not in problem

    def test_webhook_url(self) -> None:
        """A webhook has url or url_file, and the URL is http(s)."""
        assert problems(
            "route: {receiver: w}\nreceivers:\n  - name: w\n    webhook_configs:\n"
            "      - max_alerts: 1\n"
        ) == [
            "alerting.yml:5: receivers[0].webhook_configs[0]: give exactly one of url or url_file"
        ]
        assert problems(
            "route: {receiver: w}\nreceivers:\n  - name: w\n    webhook_configs:\n"
            "      - url: ftp://example.org/secret-path\n"
        ) == [
            (
                "alerting.yml:5: receivers[0].webhook_configs[0].url: must be an http:// or "
                "https:// URL"
            )
        ]

    def test_yaml_problems(self) -> None:
        """Duplicate keys, syntax errors, an empty file and a non-mapping are refused."""
        assert problems("route: {receiver: r}\nroute: {receiver: s}\nreceivers: [{name: r}]\n") == [
            "alerting.yml:2: route: duplicate key"
        ]
        (syntax,) = problems(f"route: {{receiver: r}}\nreceivers:\n  - name: [{TOKEN}\n")
        assert syntax.startswith("alerting.yml:4: invalid YAML: ")
        assert TOKEN not in syntax
        assert problems("") == [
            "alerting.yml:1: the file is empty; it needs at least route and receivers"
        ]
        assert problems("- a\n- b\n") == ["alerting.yml:1: the file must be a YAML mapping"]
        assert problems("receivers: [{name: r}]\n") == [
            "alerting.yml:1: route: required field is missing"
        ]

    def test_every_problem_reported_in_line_order(self) -> None:
        """All problems of a file come at once, in line order."""
        found = problems(
            """
            route:
              receiver: ops
              group_wait: soon
              routes:
                - receiver: nobody
            receivers:
              - name: ops
                webhook_configs:
                  - url: not-a-url
            """
        )
        assert [line.split(":")[1] for line in found] == ["3", "9"]
        # The cross-field checks run once the fields are valid.
        assert problems(
            "route: {receiver: ops, routes: [{receiver: nobody}]}\n"
            "receivers: [{name: ops}, {name: ops}]\n"
        ) == [
            "alerting.yml:1: route.routes[0].receiver: unknown receiver 'nobody' (known: ops)",
            "alerting.yml:2: receivers[1].name: receiver 'ops' is already receivers[0]",
        ]


class TestDurations:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("30s", timedelta(seconds=30)),
            ("5m", timedelta(minutes=5)),
            ("4h", timedelta(hours=4)),
            ("1h30m", timedelta(minutes=90)),
            ("1d", timedelta(days=1)),
            ("2w", timedelta(weeks=2)),
            ("1y", timedelta(days=365)),
            ("1500ms", timedelta(milliseconds=1500)),
            ("1h0m5s", timedelta(hours=1, seconds=5)),
            ("0", timedelta(0)),
            (0, timedelta(0)),
        ],
    )
    def test_alertmanager_format(self, text: str | int, expected: timedelta) -> None:
        """Alertmanager's units, largest first, each at most once."""
        assert parse_duration(text) == expected

    @pytest.mark.parametrize(
        "text", ["", "30", 30, "1.5h", "5m30", "1m1h", "1h 30m", "-1s", True, 1.5]
    )
    def test_refused(self, text: object) -> None:
        """A bare number, a fraction, units out of order or spaces are not durations."""
        with pytest.raises(ValueError, match="duration like"):
            parse_duration(text)

    @given(st.integers(min_value=0, max_value=10**12))
    def test_format_round_trips(self, milliseconds: int) -> None:
        """format_duration writes what parse_duration reads back."""
        value = timedelta(milliseconds=milliseconds)
        assert parse_duration(format_duration(value)) == value

    def test_format(self) -> None:
        """The canonical spelling uses the largest units."""
        assert format_duration(timedelta(minutes=90)) == "1h30m"
        assert format_duration(timedelta(0)) == "0s"
        assert format_duration(timedelta(days=8)) == "1w1d"


class TestMatchers:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('severity="critical"', [("severity", "=", "critical")]),
            ("severity = critical", [("severity", "=", "critical")]),
            ('{a="b", c!~"d|e",}', [("a", "=", "b"), ("c", "!~", "d|e")]),
            ('a=~"x", b!=y', [("a", "=~", "x"), ("b", "!=", "y")]),
            ('quote=~"She said: \\"Hi\\""', [("quote", "=~", 'She said: "Hi"')]),
            ('q="\\xf0\\x9f\\x99\\x82"', [("q", "=", "🙂")]),
            ('"any name"="v"', [("any name", "=", "v")]),
            ("empty=", [("empty", "=", "")]),
            ('empty=""', [("empty", "=", "")]),
        ],
    )
    def test_parse(self, text: str, expected: list[tuple[str, str, str]]) -> None:
        """Quoted or not, one or several, with or without braces, as Alertmanager reads."""
        assert [(m.name, m.type.value, m.value) for m in parse_matchers(text)] == expected

    @pytest.mark.parametrize("text", ['{a="b"', 'a="b"}', "=b", "a", 'a="b" c="d"', "", 'a=~"["'])
    def test_refused(self, text: str) -> None:
        """Malformed input is an error, never a matcher that matches something else."""
        with pytest.raises(ValueError, match=r".+"):
            parse_matchers(text)

    def test_semantics(self) -> None:
        """=, !=, =~, !~; a missing label matches as the empty string."""
        labels = {"severity": "warning", "team": "db"}
        assert Matcher.parse('severity="warning"').matches(labels)
        assert not Matcher.parse('severity!="warning"').matches(labels)
        assert Matcher.parse('missing=""').matches(labels)
        assert not Matcher.parse('missing!=""').matches(labels)
        assert Matcher.parse('team=~"db|net"').matches(labels)
        assert Matcher.parse('team!~"net"').matches(labels)

    def test_regex_is_anchored(self) -> None:
        """A regex must match the whole value, as in Alertmanager."""
        assert not Matcher.parse('severity=~"warn"').matches({"severity": "warning"})
        assert Matcher.parse('severity=~"warn.*"').matches({"severity": "warning"})
        # Anchoring wraps the whole alternation, not its first branch.
        assert not Matcher.parse('x=~"a|b"').matches({"x": "ab"})
        assert not Matcher.parse('x=~"a|b"').matches({"x": "xb"})
        assert Matcher.parse('x!~"warn"').matches({"x": "warning"})

    def test_alertmanager_api_flags(self) -> None:
        """is_regex and is_equal are the silence API's isRegex and isEqual."""
        flags = {
            text: (Matcher.parse(text).is_regex, Matcher.parse(text).is_equal)
            for text in ("a=b", "a!=b", "a=~b", "a!~b")
        }
        assert flags == {
            "a=b": (False, True),
            "a!=b": (False, False),
            "a=~b": (True, True),
            "a!~b": (True, False),
        }

    @given(
        name=st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True),
        value=st.text(max_size=30),
        kind=st.sampled_from([MatchType.EQUAL, MatchType.NOT_EQUAL]),
    )
    def test_str_round_trips(self, name: str, value: str, kind: MatchType) -> None:
        """str(matcher) parses back to the same matcher, whatever the value holds."""
        matcher = Matcher(name, kind, value)
        assert Matcher.parse(str(matcher)) == matcher


class TestTokenFromTheEnvironment:
    TEXT = textwrap.dedent(
        """
        route: {receiver: ops}
        receivers:
          - name: ops
            telegram_configs:
              - chat_id: -100123
        """
    )

    def test_a_config_without_a_token_is_refused(self) -> None:
        with pytest.raises(AlertingConfigError, match="bot_token"):
            parse_config(self.TEXT)

    def test_the_environment_token_fills_in_and_the_file_wins(self, tmp_path: Path) -> None:
        config = parse_config(self.TEXT, default_bot_token="1:from-env")
        token = config.global_.telegram_bot_token
        assert token is not None
        assert token.get_secret_value() == "1:from-env"
        assert "from-env" not in repr(config)
        own = self.TEXT.replace("chat_id: -100123", 'chat_id: -100123\n        bot_token: "2:own"')
        mine = parse_config(
            "global: {telegram_bot_token: '3:file'}\n" + own, default_bot_token="1:env"
        )
        assert mine.global_.telegram_bot_token is not None
        assert mine.global_.telegram_bot_token.get_secret_value() == "3:file"

    def test_settings_pass_it(self, tmp_path: Path) -> None:
        path = tmp_path / "alerting.yml"
        path.write_text(self.TEXT)
        settings = Settings(
            alerting_config=path, alerting_telegram_bot_token=SecretStr("9:settings")
        )
        config = config_from_settings(settings)
        assert config.global_.telegram_bot_token is not None
        assert config.global_.telegram_bot_token.get_secret_value() == "9:settings"
