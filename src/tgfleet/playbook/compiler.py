"""A playbook's compiled form, and ``compile_playbook`` that builds it from YAML.

``compile_playbook`` validates the document (:mod:`tgfleet.playbook.document`) and turns it
into an immutable :class:`CompiledPlaybook`: regexes (RE2, :mod:`tgfleet.playbook._regex`)
and Jinja templates (the bounded sandbox, :mod:`tgfleet.playbook._sandbox`) compiled once,
limits merged from the built-in ones, ``defaults`` and the rule's own. Every problem is
reported at once, each naming its line and field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import time as clock_time
from typing import Any, Literal
from zoneinfo import ZoneInfo

from jinja2 import Template, TemplateSyntaxError, meta

from tgfleet.kit.yaml_guard import format_path
from tgfleet.playbook._regex import (
    OFF_LOOP_PROGRAM_SIZE,
    Pattern,
    compile_regex,
    keywords_pattern,
)
from tgfleet.playbook._sandbox import ENVIRONMENT, LiteralLimitExceeded, compile_template
from tgfleet.playbook.document import (
    DAYS,
    DefaultsSpec,
    LimitsSpec,
    Located,
    Path,
    RuleSpec,
    line_of,
    parse,
    text_line,
)
from tgfleet.playbook.exceptions import PlaybookInvalid
from tgfleet.playbook.gate import Limits
from tgfleet.playbook.message import Message
from tgfleet.playbook.rendering import TEMPLATE_VARIABLES

# Built-in limits under the playbook's ``defaults.limits``.
BUILTIN_LIMITS = LimitsSpec(
    min_interval_seconds=30.0, account_hourly=30, group_hourly=20, probability=1.0
)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    opens: clock_time
    closes: clock_time
    zone: ZoneInfo
    days: frozenset[int]  # 0 = Monday

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone)
        now = local.time().replace(tzinfo=None)
        weekday = local.weekday()
        if self.opens < self.closes:
            return self.opens <= now < self.closes and weekday in self.days
        # Across midnight: the late part belongs to the day the window opened.
        if now >= self.opens:
            return weekday in self.days
        if now < self.closes:
            return (weekday - 1) % 7 in self.days
        return False


@dataclass(frozen=True, slots=True)
class LlmReply:
    system_prompt: Template
    model: str | None
    base_url: str | None
    max_tokens: int
    timeout_seconds: float | None
    fallback: Template | None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    line: int
    keywords: Pattern | None  # group 1 is the keyword found
    regex: Pattern | None
    mention: bool
    reply_to_me: bool
    new_member: bool
    min_length: int | None
    groups: frozenset[int] | None
    time_window: TimeWindow | None
    templates: tuple[Template, ...]
    llm: LlmReply | None
    limits: Limits
    typing_seconds: float
    responders: Literal["one", "all"]

    def trigger(self, message: Message) -> str | None:
        """Which trigger matches ``message`` (for the dry run's detail), or None."""
        if self.new_member and message.new_member:
            return "new_member"
        if self.mention and message.mentions_account:
            return "mention"
        if self.reply_to_me and message.reply_to_account:
            return "reply_to_me"
        if self.keywords is not None:
            found = self.keywords.search(message.text)
            if found:
                return f"keyword {found.group(1).lower()!r}"
        if self.regex is not None and self.regex.search(message.text):
            return "regex"
        if self.min_length is not None and len(message.text) >= self.min_length:
            return f"min_length {self.min_length}"
        return None


@dataclass(frozen=True, slots=True)
class CompiledPlaybook:
    """Immutable; built once per (playbook id, version) and shared by every account."""

    name: str
    version: int
    description: str
    rules: tuple[CompiledRule, ...]
    #: A regex large enough to take milliseconds: match in a thread (see ``_regex``).
    match_off_loop: bool = False

    def rule_named(self, name: str) -> CompiledRule | None:
        return next((rule for rule in self.rules if rule.name == name), None)


_ALLOWED_NAMES = TEMPLATE_VARIABLES | frozenset(ENVIRONMENT.globals)
_EMPTY_TEMPLATE = ENVIRONMENT.from_string("")


def _merge(*levels: LimitsSpec) -> Limits:
    values: dict[str, Any] = {}
    for level in levels:
        values.update(level.model_dump(exclude_none=True))
    return Limits(**values)


def compile_playbook(source: str, *, name: str = "", version: int = 0) -> CompiledPlaybook:
    """Validate and compile ``source``. Raises ``PlaybookInvalid`` (422) naming every
    problem's line and field; a template syntax error names the template's own line."""
    parsed = parse(source)
    spec, lines = parsed.spec, parsed.lines
    problems: list[tuple[int, str]] = []

    def template(text: str, path: Path) -> Template:
        def problem(line_in_text: int, message: str) -> Template:
            line = text_line(lines, path, line_in_text)
            problems.append((line, f"line {line}, {format_path(path)}: {message}"))
            return _EMPTY_TEMPLATE

        try:
            tree, compiled = compile_template(text)
        except TemplateSyntaxError as exc:
            return problem(exc.lineno, f"template syntax error: {exc.message}")
        except LiteralLimitExceeded as exc:
            return problem(exc.lineno, f"template over a limit: {exc.message}")
        except RecursionError:
            return problem(1, "the template is nested too deeply")
        unknown = sorted(meta.find_undeclared_variables(tree) - _ALLOWED_NAMES)
        if unknown:
            allowed = ", ".join(sorted(TEMPLATE_VARIABLES))
            return problem(1, f"unknown template variable {unknown[0]!r} (available: {allowed})")
        return compiled

    defaults = spec.defaults
    base_limits = _merge(BUILTIN_LIMITS, defaults.limits)
    rules: list[CompiledRule] = []
    for index, rule in enumerate(spec.rules):
        where: Path = ("rules", index)
        rules.append(_compile_rule(rule, where, lines, template, base_limits, defaults))
    if problems:
        problems.sort(key=lambda pair: pair[0])
        raise PlaybookInvalid([text for _, text in problems])
    return CompiledPlaybook(
        name=name,
        version=version,
        description=spec.description,
        rules=tuple(rules),
        match_off_loop=any(
            rule.regex is not None and rule.regex.programsize > OFF_LOOP_PROGRAM_SIZE
            for rule in rules
        ),
    )


def _compile_rule(
    rule: RuleSpec,
    where: Path,
    lines: Mapping[Path, Located],
    template: Callable[[str, Path], Template],
    base_limits: Limits,
    defaults: DefaultsSpec,
) -> CompiledRule:
    when = rule.when
    keywords = keywords_pattern(when.keywords) if when.keywords else None
    window = rule.conditions.time_window
    compiled_window = (
        TimeWindow(
            opens=window.opens,
            closes=window.closes,
            zone=ZoneInfo(window.timezone),
            days=frozenset(DAYS.index(day) for day in window.days),
        )
        if window is not None
        else None
    )
    reply = rule.reply
    templates = tuple(
        template(text, (*where, "reply", "templates", position))
        for position, text in enumerate(reply.templates or ())
    )
    llm = None
    if reply.llm is not None:
        spec = reply.llm
        llm_path = (*where, "reply", "llm")
        llm = LlmReply(
            system_prompt=template(spec.system_prompt, (*llm_path, "system_prompt")),
            model=spec.model,
            base_url=spec.base_url,
            max_tokens=spec.max_tokens,
            timeout_seconds=spec.timeout_seconds,
            fallback=(
                template(spec.fallback, (*llm_path, "fallback"))
                if spec.fallback is not None
                else None
            ),
        )
    merged = {**base_limits.as_dict(), **rule.limits.model_dump(exclude_none=True)}
    return CompiledRule(
        name=rule.name,
        line=line_of(dict(lines), where),
        keywords=keywords,
        regex=compile_regex(when.regex) if when.regex else None,
        mention=when.mention,
        reply_to_me=when.reply_to_me,
        new_member=when.new_member,
        min_length=when.min_length,
        groups=frozenset(rule.conditions.groups) if rule.conditions.groups else None,
        time_window=compiled_window,
        templates=templates,
        llm=llm,
        limits=Limits(**merged),
        typing_seconds=(
            rule.typing_seconds if rule.typing_seconds is not None else defaults.typing_seconds
        ),
        responders=rule.responders or defaults.responders,
    )
