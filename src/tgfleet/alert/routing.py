"""The routing tree and the inhibition rules as the dispatcher applies them: the configuration's
``route`` with every inherited value filled in (:class:`Route`) and its ``inhibit_rules`` with the
deprecated ``*_match`` maps folded into matchers (:class:`InhibitRule`)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from tgfleet.alert.matchers import Matcher, legacy_matchers

if TYPE_CHECKING:
    from tgfleet.alert.config import InhibitRuleConfig, RouteConfig

__all__ = [
    "DEFAULT_RECEIVER",
    "GROUP_BY_ALL",
    "InhibitRule",
    "Route",
    "resolve_inhibitions",
    "resolve_route",
]

#: The receiver of the configuration without a file (it has no integrations).
DEFAULT_RECEIVER: Final = "default"
#: group_by: ['...'] groups by every label (one group per alert).
GROUP_BY_ALL: Final = "..."


@dataclass(frozen=True, slots=True)
class Route:
    """A routing-tree node with every inherited value filled in (what the engine walks).

    ``group_by_all`` is ``group_by: ['...']``; ``repeat_interval`` is already rounded up to
    a multiple of ``group_interval``; ``path`` names the node in the file
    (``route.routes[1]``).
    """

    receiver: str
    group_by: tuple[str, ...]
    group_by_all: bool
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    matchers: tuple[Matcher, ...]
    continue_: bool
    routes: tuple[Route, ...]
    path: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every matcher of this node matches ``labels`` (children not considered)."""
        return all(matcher.matches(labels) for matcher in self.matchers)

    def walk(self) -> Iterator[Route]:
        """This node and its descendants, depth first, in file order."""
        yield self
        for child in self.routes:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """An inhibition rule with its deprecated ``*_match`` maps folded into matchers."""

    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...]
    path: str

    def is_source(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.source_matchers)

    def is_target(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.target_matchers)

    def equal_labels(self, source: Mapping[str, str], target: Mapping[str, str]) -> bool:
        """Missing and empty labels are the same thing, as in Alertmanager."""
        return all(source.get(name, "") == target.get(name, "") for name in self.equal)


def resolve_route(node: RouteConfig, parent: Route | None = None, path: str = "route") -> Route:
    """``node`` and its children as the dispatcher walks them: unset values inherited from
    ``parent``, else Alertmanager's defaults."""
    group_by: tuple[str, ...]
    if node.group_by is not None:
        group_by_all = node.group_by == [GROUP_BY_ALL]
        group_by = () if group_by_all else tuple(node.group_by)
    elif parent is not None:
        group_by, group_by_all = parent.group_by, parent.group_by_all
    else:
        group_by, group_by_all = (), False
    group_wait = _pick(
        node.group_wait, parent.group_wait if parent else None, timedelta(seconds=30)
    )
    group_interval = _pick(
        node.group_interval, parent.group_interval if parent else None, timedelta(minutes=5)
    )
    repeat = _pick(
        node.repeat_interval, parent.repeat_interval if parent else None, timedelta(hours=4)
    )
    receiver = node.receiver or (parent.receiver if parent is not None else DEFAULT_RECEIVER)
    this = Route(
        receiver=receiver,
        group_by=group_by,
        group_by_all=group_by_all,
        group_wait=group_wait,
        group_interval=group_interval,
        repeat_interval=_round_up(repeat, group_interval),
        matchers=node.all_matchers,
        continue_=node.continue_,
        routes=(),
        path=path,
    )
    children = tuple(
        resolve_route(child, this, f"{path}.routes[{index}]")
        for index, child in enumerate(node.routes)
    )
    object.__setattr__(this, "routes", children)
    return this


def _pick(own: timedelta | None, inherited: timedelta | None, default: timedelta) -> timedelta:
    if own is not None:
        return own
    return inherited if inherited is not None else default


def _round_up(repeat: timedelta, interval: timedelta) -> timedelta:
    if interval <= timedelta(0) or repeat <= timedelta(0):
        return repeat
    return interval * math.ceil(repeat / interval)


def resolve_inhibitions(rules: Sequence[InhibitRuleConfig]) -> tuple[InhibitRule, ...]:
    """``inhibit_rules`` with their deprecated ``*_match`` maps folded into matchers."""
    return tuple(
        InhibitRule(
            source_matchers=(
                *legacy_matchers(rule.source_match, rule.source_match_re),
                *(m for group in rule.source_matchers for m in group),
            ),
            target_matchers=(
                *legacy_matchers(rule.target_match, rule.target_match_re),
                *(m for group in rule.target_matchers for m in group),
            ),
            equal=tuple(rule.equal),
            path=f"inhibit_rules[{index}]",
        )
        for index, rule in enumerate(rules)
    )
