"""Metric names in PromQL, and the sample names tgfleet exports: shared by the tests of the
Prometheus rules and of the Grafana dashboard.

:func:`metric_names` is a scanner, not a parser: it drops what cannot be a metric name
(string literals, comments, label matchers in braces, ranges and durations in brackets,
label lists after ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``,
Grafana variables, numbers) and keeps each remaining identifier that is neither a keyword,
an aggregation operator nor followed by ``(`` (a function call). What it cannot judge it
refuses (``{__name__=...}`` selectors) rather than guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

#: Series Prometheus writes itself for every target (not exported by any process).
PROMETHEUS_SERIES: Final = frozenset({"up"})

_KEYWORDS: Final = frozenset(
    {
        # binary and set operators, modifiers
        "and",
        "or",
        "unless",
        "atan2",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        # aggregation operators (may be followed by `by (...)` before their parenthesis)
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        # number literals
        "inf",
        "nan",
    }
)

# Strings ("...", '...', `...`) and comments, matched together so that a `#` inside a
# string is not a comment and a quote inside a comment is not a string.
_STRINGS_AND_COMMENTS: Final = re.compile(
    r"""
      "(?:\\.|[^"\\])*"     # "double-quoted", with escapes
    | '(?:\\.|[^'\\])*'     # 'single-quoted', with escapes
    | `[^`]*`               # `raw`
    | \#[^\n]*              # a comment, to the end of the line
    """,
    re.VERBOSE,
)
_BRACES: Final = re.compile(r"\{[^{}]*\}")
_BRACKETS: Final = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS: Final = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
# $var, ${var}, ${var:format}, [[var]] (the brackets are gone by then: [[var]] -> [])
_GRAFANA_VARIABLES: Final = re.compile(r"\$\{[^}]*\}|\$\w+")
# An identifier not glued to a preceding word character, dot or colon (so the `m` of `5m`,
# the `e3` of `1e3` and the `x1f` of `0x1f` are not names), with what follows it.
_IDENTIFIER: Final = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?")


class UnsupportedExpression(ValueError):
    """The expression selects metrics in a way this scanner does not read."""


def metric_names(expr: str) -> set[str]:
    """The metric names (and recording-rule names) an expression selects."""
    text = _STRINGS_AND_COMMENTS.sub(lambda m: " " if m.group(0).startswith("#") else '""', expr)
    if "__name__" in text:
        raise UnsupportedExpression(f"selects metrics by __name__: {expr!r}")
    text = _BRACES.sub("{}", text)
    text = _BRACKETS.sub("[]", text)
    text = _LABEL_LISTS.sub(lambda m: f" {m.group(1)} ", text)
    text = _GRAFANA_VARIABLES.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


#: Sample-name suffixes each metric type exposes in the text format (prometheus_client's
#: family names carry no suffix: Counter "tgfleet_replies_sent" -> "..._total").
_SUFFIXES: Final[dict[str, tuple[str, ...]]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


def exported_sample_names(collectors: Iterable[Collector] | None = None) -> frozenset[str]:
    """Every sample name the default registry (or ``collectors``) can expose: the names of
    the samples collected now, and each family's name with its type's suffixes (a labelled
    metric has no sample before its first use)."""
    families = (
        REGISTRY.collect()
        if collectors is None
        else (family for collector in collectors for family in collector.collect())
    )
    names: set[str] = set()
    for family in families:
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return frozenset(names)
