"""Hostile rules and messages: regexes run in linear time (RE2), templates in a bounded
sandbox, and neither stalls the event loop (issue 14, item 2)."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from types import FrameType

import httpx
import pytest
from structlog.testing import capture_logs

from tests.factories import Credentials
from tgfleet.playbook.engine import AccountInfo, Message, ReplyEngine, compile_playbook
from tgfleet.playbook.exceptions import PlaybookInvalid

ALICE = AccountInfo(
    id=uuid.UUID(int=1), label="alice", username="alice_bot", first_name="Alice", tg_user_id=501
)
EVIL_REGEX = "^(a+)+$"
#: 27 ``a`` and a ``!``: 13 s with Python's backtracking ``re``, doubling per extra ``a``.
EVIL_TEXT = "a" * 27 + "!"
#: Linear but large: 9,753 RE2 instructions, about 0.5 s on ``SLOW_TEXT`` (matched off the
#: event loop).
SLOW_REGEX = r"(?i)(?:\w+\s?){1,650}!"
SLOW_TEXT = "ab " * 1365
SECRET_BODY = "my-secret-message-body"
#: "privet" (hello) in Cyrillic, spelt with escapes: some of its letters look Latin.
HELLO = "\u043f\u0440\u0438\u0432\u0435\u0442"


def message(text: str) -> Message:
    return Message(
        text=text,
        chat_id=-1001500000001,
        chat_title="Group",
        message_id=1,
        sender_id=1000,
        sender_username="member",
        sender_first_name="Member",
        sender_last_name=None,
        at=datetime(2026, 3, 2, 12, 0, tzinfo=UTC),
        dedupe_key=f"k:{uuid.uuid4()}",
    )


def one_rule(when: str, template: str = "ok", name: str = "r") -> str:
    """One rule; the template is a block scalar whose text starts on line 7."""
    text = "".join(f"          {line}\n" for line in template.split("\n"))
    return (
        f"rules:\n  - name: {name}\n    when: {when}\n    reply:\n      templates:\n"
        f"        - |-\n{text}"
    )


def problems(source: str) -> list[str]:
    with pytest.raises(PlaybookInvalid) as caught:
        compile_playbook(source)
    return caught.value.problems


class TestRegex:
    async def test_catastrophic_pattern_matches_in_linear_time(self) -> None:
        """``^(a+)+$`` against 27 ``a`` and a ``!`` (13 s with backtracking) and against a
        4,000-character message is decided in well under 100 ms."""
        compiled = compile_playbook(one_rule(f"{{regex: '{EVIL_REGEX}'}}"))
        engine = ReplyEngine(None)
        for text in (EVIL_TEXT, "a" * 4000 + "!"):
            started = time.perf_counter()
            outcome = await engine.respond(compiled, message(text), ALICE, apply_limits=False)
            assert time.perf_counter() - started < 0.1
            assert outcome.reason == "no_rule_matched"
        fired = await engine.respond(compiled, message("a" * 27), ALICE, apply_limits=False)
        assert (fired.fired, fired.text) == (True, "ok")

    @pytest.mark.parametrize(
        ("pattern", "construct"),
        [
            (r"(a)\\1", "backreference \\1"),
            ("(?=x)y", "look-ahead"),
            ("(?!x)y", "negative look-ahead"),
            ("(?<=x)y", "look-behind"),
            ("(?<!x)y", "negative look-behind"),
            ("(?P<w>a)(?P=w)", "backreference (?P=name)"),
            ("(?>a)", "atomic group"),
            ("a++", "possessive"),
            ("(?x) a b", "verbose flag"),
            (r"a\\Z", "write \\z"),
        ],
    )
    def test_unsupported_syntax_is_refused_naming_rule_and_construct(
        self, pattern: str, construct: str
    ) -> None:
        """Syntax RE2 cannot run is refused at save; the problem names the line, the
        rule and the construct."""
        found = problems(one_rule(f'{{regex: "{pattern}"}}', name="pricing"))
        assert len(found) == 1
        assert found[0].startswith("line 3, rules[0].when.regex: rule 'pricing': ")
        assert construct in found[0]
        assert "RE2" in found[0]

    @pytest.mark.parametrize(
        ("pattern", "text", "matches"),
        [
            ("(?i)how much", "HOW MUCH is it", True),
            ("how much", "HOW MUCH is it", False),
            ("(?s)a.b", "a\nb", True),
            ("a.b", "a\nb", False),
            ("(?m)^b$", "a\nb\nc", True),
            ("^b$", "a\nb\nc", False),
            (r"\\p{Cyrillic}+", HELLO, True),
            (f"(?i){HELLO}", HELLO.upper(), True),
        ],
    )
    async def test_flags_map_to_re2(self, pattern: str, text: str, matches: bool) -> None:
        """Inline flags keep their meaning: i (case), s (dot matches newline), m (^ and $
        at lines); Unicode classes and case folding work."""
        compiled = compile_playbook(one_rule(f'{{regex: "{pattern}"}}'))
        outcome = await ReplyEngine(None).respond(
            compiled, message(text), ALICE, apply_limits=False
        )
        assert outcome.fired is matches

    def test_huge_programs_are_refused(self) -> None:
        """A pattern compiling to more than 10,000 RE2 instructions is refused at save
        (``(?:\\w+\\s?){1,1000}!`` took 0.7 s per 4,000-character message)."""
        found = problems(one_rule(r'{regex: "(?:\\w+\\s?){1,1000}!"}'))
        assert "compiles to 10003 RE2 instructions; the limit is 10000" in found[0]

    def test_large_programs_match_off_the_event_loop(self) -> None:
        """Only a playbook with a large pattern is matched in a thread."""
        assert compile_playbook(one_rule(f"{{regex: '{SLOW_REGEX}'}}")).match_off_loop
        assert not compile_playbook(one_rule("{regex: '(?i)how much'}")).match_off_loop
        assert not compile_playbook(one_rule("{keywords: [price]}")).match_off_loop

    def test_ascii_classes_next_to_unicode_are_refused(self) -> None:
        r"""``\b`` is ASCII-only in RE2: ``\b`` around a Cyrillic word would never match, so
        it is refused with the spelling to use instead."""
        found = problems(one_rule(f'{{regex: "\\\\b{HELLO}\\\\b"}}'))
        assert "only knows ASCII" in found[0]

    @pytest.mark.parametrize(
        ("text", "fires"),
        [
            (f"{HELLO.capitalize()}, world", True),
            (f"{HELLO}ik", False),
            (f"well, {HELLO.upper()}!", True),
            ("what price?", True),
            ("priceless", False),
        ],
    )
    async def test_keywords_are_unicode_whole_words(self, text: str, fires: bool) -> None:
        """Keywords are case-insensitive whole words in any script, as before RE2."""
        compiled = compile_playbook(one_rule(f"{{keywords: [{HELLO}, price]}}"))
        outcome = await ReplyEngine(None).respond(
            compiled, message(text), ALICE, apply_limits=False
        )
        assert outcome.fired is fires


#: Templates that ran for seconds or allocated hundreds of megabytes before the sandbox.
HOSTILE_TEMPLATES = {
    "nested_ranges": (
        "{% set n = 3000 %}{% for i in range(n // 3) %}{% for j in range(n // 3) %}"
        "{{ i }}{% endfor %}{% endfor %}"
    ),
    "repetition": "{% set n = 100000000 %}{{ (message.text * n)|length }}",
    "replace": "{{ message.text|replace('a', message.text) }}",
    "join": "{{ range(1000)|join(message.text) }}",
    "concat_doubling": (
        "{% set ns = namespace(s='xx') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"
    ),
    "list_doubling": (
        "{% set ns = namespace(s=[1]) %}{% for i in range(40) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}"
    ),
    "ljust": "{% set n = 100000000 %}{{ message.text.ljust(n) }}",
    "str_format": "{{ '{:>100000000}'.format(1) }}",
    "percent": "{% set n = 100000000 %}{{ ('%' ~ n ~ 's')|format(1) }}",
    "center": "{% set n = 100000000 %}{{ 'x'|center(n) }}",
    "power": "{% set n = 100000000 %}{{ 9 ** n }}",
    "to_bytes": "{% set n = 100000000 %}{{ (1).to_bytes(n, 'big') }}",
    "macro_fanout": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    ),
    "loops_over_text": (
        "{% for a in message.text %}{% for b in message.text %}{{ a }}{% endfor %}{% endfor %}"
    ),
    "output": "{% for i in range(1000) %}{{ message.text }}{% endfor %}",
    "repeated_list": "{% set n = 16000 %}{{ [message.text] * n }}",
    "printed_list": "{% set t = message.text %}{{ [t, t, t, t, t] }}",
    "quadratic_sum": "{% set n = 5000 %}{{ ([[1]] * n)|sum(start=[])|length }}",
    "list_as_text": "{% set t = message.text %}{{ [t, t, t, t, t]|string|length }}",
}


class TestTemplates:
    @pytest.mark.parametrize("template", HOSTILE_TEMPLATES.values(), ids=HOSTILE_TEMPLATES)
    async def test_hostile_template_fails_its_reply_quickly_and_small(self, template: str) -> None:
        """Each hostile template fails that one reply (``template_error``) within 100 ms
        and 10 MB, and the log names the rule and the reason, never the message text."""
        compiled = compile_playbook(one_rule("{min_length: 1}", template, name="hostile"))
        text = (SECRET_BODY + "a" * 4096)[:4096]
        tracemalloc.start()
        try:
            with capture_logs() as logs:
                started = time.perf_counter()
                outcome = await ReplyEngine(None).respond(
                    compiled, message(text), ALICE, apply_limits=False
                )
                elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert (outcome.fired, outcome.reason) == (False, "template_error")
        assert elapsed < 0.1
        assert peak < 10_000_000
        failures = [entry for entry in logs if entry["event"] == "playbook.template_failed"]
        assert len(failures) == 1
        assert failures[0]["rule"] == "hostile"
        assert SECRET_BODY not in repr(failures[0])

    @pytest.mark.parametrize(
        ("template", "expected"),
        [
            ("{% for i in range(100000) %}x{% endfor %}", "range() of 100000 numbers"),
            ("{{ (message.text * 100000000)|length }}", "repeats a value 100000000 times"),
            ("{{ 9 ** 100000000 }}", "raises to the power 100000000"),
            ("{{ 'x'|center(100000000) }}", "|center with 100000000"),
            (
                "{% for x in [1] recursive %}{{ loop([]) }}{% endfor %}",
                "recursive loops are not available",
            ),
            ("{{ message.text|urlize }}", "No filter named 'urlize'"),
            ("{{ lipsum(100) }}", "unknown template variable 'lipsum'"),
        ],
    )
    def test_literal_breaches_are_refused_at_save(self, template: str, expected: str) -> None:
        """A bound broken by the template's own literals is a validation error naming the
        template's line."""
        found = problems(one_rule("{min_length: 1}", template))
        assert len(found) == 1
        assert found[0].startswith("line 7, rules[0].reply.templates[0]: ")
        assert expected in found[0]

    @pytest.mark.parametrize(
        ("template", "reply"),
        [
            ("{{ 'ab' * 3 }}", "ababab"),
            ("{% for i in range(3) %}{{ i }}{% endfor %}", "012"),
            ("{{ ['a', 'b']|join(', ') }} {{ 'x' ~ sender.name|upper }}", "a, b xMEMBER"),
            ("{{ message.text.split()|length }} {{ '%05d'|format(42) }}", "2 00042"),
            ("{{ message.at.strftime('%Y') }} {{ sender.name|center(9)|trim }}", "2026 Member"),
            ("{{ message.text|replace('a', 'b')|wordwrap(4)|indent(2) }}", "bb\n  bb"),
        ],
    )
    async def test_ordinary_templates_still_render(self, template: str, reply: str) -> None:
        """The bounds leave ordinary templates alone."""
        compiled = compile_playbook(one_rule("{min_length: 1}", template))
        outcome = await ReplyEngine(None).respond(
            compiled, message("aa aa"), ALICE, apply_limits=False
        )
        assert (outcome.fired, outcome.text) == (True, reply)


async def create(client: httpx.AsyncClient, who: Credentials, name: str, source: str) -> str:
    response = await client.post(
        "/api/v1/playbooks", json={"name": name, "source": source}, headers=who.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def hostile_playbook() -> str:
    rules = [
        (
            f"  - name: evil_regex\n    when: {{regex: '{EVIL_REGEX}'}}\n"
            "    reply: {templates: [matched]}\n"
        )
    ]
    for index, template in enumerate(HOSTILE_TEMPLATES.values()):
        body = "".join(f"          {line}\n" for line in template.split("\n"))
        rules.append(
            f"  - name: t{index}\n    when: {{keywords: [trigger{index}]}}\n"
            f"    reply:\n      templates:\n        - |-\n{body}"
        )
    rules.append(
        f"  - name: slow_regex\n    when: {{regex: '{SLOW_REGEX}'}}\n"
        "    reply: {templates: [matched]}\n"
    )
    return "rules:\n" + "".join(rules)


class TestLivez:
    async def test_hostile_rules_and_messages_never_stall_livez(
        self, client: httpx.AsyncClient, operator: Credentials
    ) -> None:
        """The real app evaluates the catastrophic regex against the hostile message, a
        large (slow but linear) regex against a message that makes it slow, and every
        hostile template (dry runs: the worker's code path) while /livez is polled every
        10 ms: the largest gap between two answers stays under 100 ms."""
        playbook = await create(client, operator, "hostile", hostile_playbook())
        texts = [EVIL_TEXT, "a" * 4000 + "!", SLOW_TEXT] + [
            f"{SECRET_BODY} trigger{index} " + "a" * 4000 for index in range(len(HOSTILE_TEMPLATES))
        ]
        done = asyncio.Event()
        gaps: list[float] = []
        # Earlier tests' garbage is collected first: a full collection of a large heap
        # pauses any Python program, whatever the rules and messages.
        gc.collect()

        async def poll() -> None:
            last = time.perf_counter()
            while not done.is_set():
                response = await client.get("/livez")
                assert response.status_code == 200
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
                await asyncio.sleep(0.01)

        async def hostile() -> list[str]:
            reasons = []
            try:
                for text in texts:
                    response = await client.post(
                        f"/api/v1/playbooks/{playbook}/dry-run",
                        json={"message": {"text": text}},
                        headers=operator.headers,
                    )
                    assert response.status_code == 200, response.text
                    reasons.append(response.json()["reason"])
            finally:
                done.set()
            return reasons

        async with asyncio.timeout(60):
            reasons, _ = await asyncio.gather(hostile(), poll())
        # The large regex matches a run of letters and a "!"; nothing matches SLOW_TEXT.
        assert reasons[:3] == ["fired", "fired", "no_rule_matched"]
        assert set(reasons[3:]) == {"template_error"}
        assert len(gaps) > 10
        assert max(gaps) < 0.1, f"/livez stalled {max(gaps) * 1000:.0f} ms"


def _compiling() -> bool:
    """Whether a thread is compiling a playbook right now (read from its stack)."""
    for frame in sys._current_frames().values():
        probe: FrameType | None = frame
        while probe is not None:
            if probe.f_code.co_name == "compile_playbook":
                return True
            probe = probe.f_back
    return False


def big_playbook(rules: int = 50, templates: int = 20) -> str:
    """Legal but slow to compile: 1,000 templates, the most a playbook may have (a second
    or more)."""
    return "rules:\n" + "".join(
        f"- name: r{rule}\n  when: {{keywords: [w{rule}]}}\n  reply:\n    templates:\n"
        + "".join(f"    - '{{{{ sender.name }}}} {t}'\n" for t in range(templates))
        for rule in range(rules)
    )


class TestTemplateCount:
    def test_more_than_1000_templates_in_all_are_refused(self) -> None:
        """A playbook is at most 1,000 templates in all (8,000 compiled for 10-30 s and
        their garbage collection paused the event loop for 300-450 ms); 1,000 compile."""
        assert len(compile_playbook(big_playbook()).rules) == 50
        found = problems(big_playbook(rules=51))
        assert found == ["line 1, rules: the rules have 1020 templates in all; the limit is 1000"]


class TestCompileOutsideTransaction:
    async def test_another_write_completes_while_a_playbook_compiles(
        self, client: httpx.AsyncClient, operator: Credentials
    ) -> None:
        """While a large legal playbook is being compiled for a save, another write (a
        delete) completes: the save holds no transaction, and on SQLite no write lock,
        while it compiles (issue 14, item 1)."""
        other = await create(
            client,
            operator,
            "other",
            "rules:\n  - {name: a, when: {mention: true}, reply: {templates: [x]}}\n",
        )
        save = asyncio.create_task(
            client.post(
                "/api/v1/playbooks",
                json={"name": "big", "source": big_playbook()},
                headers=operator.headers,
            )
        )
        async with asyncio.timeout(30):
            while not _compiling():
                assert not save.done(), (await save).text
                await asyncio.sleep(0.005)
        deleted = await asyncio.wait_for(
            client.delete(f"/api/v1/playbooks/{other}", headers=operator.headers), 30
        )
        still_compiling = not save.done()
        saved = await asyncio.wait_for(save, 60)
        assert deleted.status_code == 204, deleted.text
        assert saved.status_code == 201, saved.text
        assert still_compiling, "the delete waited for the save's compilation"
