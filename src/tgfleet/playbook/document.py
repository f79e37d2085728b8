"""The playbook document: its YAML schema and a parser whose errors name the line.

The YAML is read with a loader that keeps YAML 1.2 core scalars (only ``true``/``false``
are booleans, ``18:00`` stays a string instead of becoming the sexagesimal number 1080) and
refuses duplicate keys. Every node's line is remembered by its path, so a pydantic error at
``rules.0.reply.templates`` is reported as ``line 7, rules[0].reply.templates: ...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from tgfleet.kit.yaml_guard import (
    DuplicateKeys,
    Position,
    YamlRefused,
    closest_key,
    error_line,
    format_path,
    load,
)
from tgfleet.kit.yaml_guard import line_of as kit_line_of
from tgfleet.playbook._regex import RegexRefused, compile_regex
from tgfleet.playbook.exceptions import PlaybookInvalid

MAX_SOURCE_BYTES = 256 * 1024
#: Scalars and collections in one playbook (a few hundred rules of a few dozen values).
MAX_NODES = 50_000
MAX_RULES = 200
MAX_TEMPLATES = 50
#: Templates in all rules together (an LLM rule's prompt and fallback count): 1,000 compile
#: in about a second; 8,000 took 10-30 s and their garbage collection paused the event
#: loop for 300-450 ms.
MAX_TOTAL_TEMPLATES = 1000
MAX_TEMPLATE_CHARS = 8192
MAX_KEYWORDS = 200
MAX_REGEX_CHARS = 1000
MAX_TYPING_SECONDS = 10.0
MAX_MESSAGE_CHARS = 4096

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

Path = tuple[str | int, ...]


# --- YAML: core-schema scalars, duplicate keys refused -------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars: no yes/no/on/off booleans, no sexagesimal."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


#: Where a node sits in the YAML: its 1-based line (a key's, for a mapping entry), the line
#: its value starts on and, for scalars, its style.
Located = Position


def _load(source: str) -> tuple[Any, dict[Path, Located]]:
    """Parse ``source``; return the data and the position of every path (key lines for values)."""
    try:
        document = load(source, max_nodes=MAX_NODES, loader=_Loader)
    except YamlRefused as exc:
        raise PlaybookInvalid([f"line {exc.line}: {exc.message}"]) from None
    except DuplicateKeys as exc:
        problems = [f"line {line}, {_format_path(path)}: duplicate key" for path, line in exc.keys]
        raise PlaybookInvalid(problems) from None
    except yaml.MarkedYAMLError as exc:
        line, what = error_line(exc)
        raise PlaybookInvalid([f"line {line}: YAML syntax error: {what}"]) from None
    except yaml.YAMLError as exc:
        raise PlaybookInvalid([f"line 1: YAML error: {exc}"]) from None
    return document.data, document.positions


def _format_path(path: Path) -> str:
    return format_path(tuple(part for part in path if part != "")) or "(document)"


def line_of(lines: dict[Path, Located], path: Path) -> int:
    """The line of ``path``, or of its nearest ancestor present in the YAML."""
    return kit_line_of(lines, path)


def text_line(lines: dict[Path, Located], path: Path, line_in_text: int) -> int:
    """The YAML line of line ``line_in_text`` (1-based) of the string at ``path``."""
    located = lines.get(path)
    if located is None:
        return line_of(lines, path)
    # A block scalar (| or >) starts on the line after its indicator.
    start = located.value_line + 1 if located.style in {"|", ">"} else located.value_line
    return start + max(line_in_text, 1) - 1


# --- The schema -----------------------------------------------------------------------------


class Strict(BaseModel):
    """Unknown keys are errors; values are not coerced between types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)


NonEmpty = Annotated[str, StringConstraints(min_length=1)]
TemplateText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEMPLATE_CHARS)]


class LimitsSpec(Strict):
    """Rate limits; every field is optional and overrides the level above it."""

    min_interval_seconds: Annotated[float, Field(ge=0, le=3600)] | None = None
    account_hourly: Annotated[int, Field(ge=1, le=1000)] | None = None
    group_hourly: Annotated[int, Field(ge=1, le=1000)] | None = None
    probability: Annotated[float, Field(ge=0, le=1)] | None = None


class DefaultsSpec(Strict):
    limits: LimitsSpec = LimitsSpec()
    typing_seconds: Annotated[float, Field(ge=0, le=MAX_TYPING_SECONDS)] = 0.0
    responders: Literal["one", "all"] = "one"


class TriggerSpec(Strict):
    """When a rule fires: any one of these is enough."""

    keywords: (
        Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=100)]],
            Field(min_length=1, max_length=MAX_KEYWORDS),
        ]
        | None
    ) = None
    regex: Annotated[str, StringConstraints(min_length=1, max_length=MAX_REGEX_CHARS)] | None = None
    mention: bool = False
    reply_to_me: bool = False
    new_member: bool = False
    min_length: Annotated[int, Field(ge=1, le=MAX_MESSAGE_CHARS)] | None = None

    @field_validator("keywords")
    @classmethod
    def _keywords_have_words(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not word.strip() for word in value):
            msg = "a keyword must not be blank"
            raise ValueError(msg)
        return value

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_regex(value)
            except RegexRefused as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _some_trigger(self) -> TriggerSpec:
        if not (
            self.keywords
            or self.regex
            or self.mention
            or self.reply_to_me
            or self.new_member
            or self.min_length
        ):
            msg = (
                "needs at least one trigger: keywords, regex, mention, reply_to_me, "
                "new_member or min_length"
            )
            raise ValueError(msg)
        return self


class TimeWindowSpec(Strict):
    """Local time window; ``from`` later than ``to`` crosses midnight and belongs to the
    day it opens on (fri 22:00-02:00 covers Saturday 01:30)."""

    start: str = Field(alias="from")
    end: str = Field(alias="to")
    timezone: NonEmpty = "UTC"
    days: Annotated[list[Day], Field(min_length=1, max_length=7)] = list(DAYS)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock_time(cls, value: Any) -> Any:
        if isinstance(value, int):
            msg = 'write the time in quotes as "HH:MM"'
            raise ValueError(msg)  # noqa: TRY004 - pydantic turns ValueError into a field error
        if not isinstance(value, str) or not _TIME.match(value):
            msg = f'{value!r} is not a time of day as "HH:MM" (00:00 to 23:59)'
            raise ValueError(msg)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            msg = f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
            raise ValueError(msg) from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindowSpec:
        if self.start == self.end:
            msg = "from and to are the same time: the window would be empty"
            raise ValueError(msg)
        return self

    @property
    def opens(self) -> time:
        return time.fromisoformat(self.start)

    @property
    def closes(self) -> time:
        return time.fromisoformat(self.end)


class ConditionsSpec(Strict):
    groups: Annotated[list[int], Field(min_length=1, max_length=10_000)] | None = None
    time_window: TimeWindowSpec | None = None


class LlmSpec(Strict):
    """Ask an OpenAI-compatible model. The endpoint and key come from the settings."""

    model: NonEmpty | None = None
    base_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] | None = None
    system_prompt: TemplateText
    max_tokens: Annotated[int, Field(ge=1, le=4096)] = 200
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] | None = None
    fallback: TemplateText | None = None


class ReplySpec(Strict):
    templates: Annotated[list[TemplateText], Field(max_length=MAX_TEMPLATES)] | None = None
    llm: LlmSpec | None = None

    @field_validator("templates")
    @classmethod
    def _some_template(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            msg = "at least one template is required"
            raise ValueError(msg)
        return value

    @property
    def template_count(self) -> int:
        if self.llm is not None:
            return 1 + (self.llm.fallback is not None)
        return len(self.templates or ())

    @model_validator(mode="after")
    def _exactly_one(self) -> ReplySpec:
        if self.templates is None and self.llm is None:
            msg = "give either templates or llm"
            raise ValueError(msg)
        if self.templates is not None and self.llm is not None:
            msg = "give either templates or llm, not both"
            raise ValueError(msg)
        return self


class RuleSpec(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    when: TriggerSpec
    conditions: ConditionsSpec = ConditionsSpec()
    reply: ReplySpec
    limits: LimitsSpec = LimitsSpec()
    typing_seconds: Annotated[float, Field(ge=0, le=MAX_TYPING_SECONDS)] | None = None
    responders: Literal["one", "all"] | None = None


class PlaybookSpec(Strict):
    version: Literal[1] = 1
    description: str = ""
    defaults: DefaultsSpec = DefaultsSpec()
    rules: Annotated[list[RuleSpec], Field(max_length=MAX_RULES)]

    @field_validator("rules")
    @classmethod
    def _rules_present(cls, value: list[RuleSpec]) -> list[RuleSpec]:
        if not value:
            msg = "at least one rule is required"
            raise ValueError(msg)
        total = sum(rule.reply.template_count for rule in value)
        if total > MAX_TOTAL_TEMPLATES:
            msg = f"the rules have {total} templates in all; the limit is {MAX_TOTAL_TEMPLATES}"
            raise ValueError(msg)
        return value


#: Whose fields an unknown key may have meant.
_MODELS = (
    LimitsSpec,
    DefaultsSpec,
    TriggerSpec,
    TimeWindowSpec,
    ConditionsSpec,
    LlmSpec,
    ReplySpec,
    RuleSpec,
    PlaybookSpec,
)


# --- Parsing ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedPlaybook:
    spec: PlaybookSpec
    lines: dict[Path, Located]


def parse(source: str) -> ParsedPlaybook:
    """Parse and validate ``source``. Raises ``PlaybookInvalid`` with one line per problem."""
    size = len(source.encode("utf-8", errors="surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        msg = f"line 1: the playbook is {size} bytes; the limit is {MAX_SOURCE_BYTES} bytes"
        raise PlaybookInvalid([msg])
    data, lines = _load(source)
    if not isinstance(data, dict):
        msg = "line 1: a playbook is a YAML mapping with at least `rules:` (see docs/playbooks.md)"
        raise PlaybookInvalid([msg])
    try:
        spec = PlaybookSpec.model_validate(data)
    except ValidationError as exc:
        raise PlaybookInvalid(_describe(exc, lines, data)) from None
    first_named: dict[str, int] = {}
    duplicates: list[str] = []
    for index, rule in enumerate(spec.rules):
        if rule.name in first_named:
            line = line_of(lines, ("rules", index, "name"))
            duplicates.append(
                f"line {line}, rules[{index}].name: {rule.name!r} is already the name of "
                f"rules[{first_named[rule.name]}]; rule names must be unique"
            )
        first_named.setdefault(rule.name, index)
    if duplicates:
        raise PlaybookInvalid(duplicates)
    return ParsedPlaybook(spec=spec, lines=lines)


def _describe(
    error: ValidationError, lines: dict[Path, Located], data: dict[Any, Any]
) -> list[str]:
    problems: list[tuple[int, str]] = []
    for item in error.errors(include_url=False):
        path: Path = tuple(item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if path[:1] == ("rules",) and path[-2:] == ("when", "regex"):
            message = f"rule {_rule_name(data, path[1])!r}: {message}"
        if item["type"] == "extra_forbidden":
            key = str(path[-1]) if path else ""
            message = f"unknown key {key!r}"
            close = closest_key(key, _MODELS)
            if close:
                message += f" (did you mean {close!r}?)"
        elif item["type"] == "missing":
            message = "this key is required"
        elif item["type"] == "literal_error" and path and path[-1] == "version":
            message = "only schema version 1 exists"
        # Errors inside a Literal list report the index; unions report the member type.
        path = tuple(part for part in path if not _is_type_tag(part))
        line = line_of(lines, path)
        problems.append((line, f"line {line}, {_format_path(path)}: {message}"))
    problems.sort(key=lambda pair: pair[0])
    return list(dict.fromkeys(text for _, text in problems))


def _rule_name(data: dict[Any, Any], index: str | int) -> str:
    rules = data.get("rules")
    if isinstance(rules, list) and isinstance(index, int) and index < len(rules):
        rule = rules[index]
        if isinstance(rule, dict) and isinstance(rule.get("name"), str):
            return str(rule["name"])
    return f"#{index}"


def _is_type_tag(part: str | int) -> bool:
    return isinstance(part, str) and (
        part.startswith(("function-", "literal[")) or part in {"int", "float", "str"}
    )
