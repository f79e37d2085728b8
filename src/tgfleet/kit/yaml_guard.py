"""A first look at YAML that users write, before anything is built from it.

YAML anchors and aliases let a few hundred bytes stand for billions of nodes (a "billion
laughs" document: ``b: &b [*a, *a, ...]``); building them, or only walking the composed
graph, takes the memory and the event loop of the whole process. The documents tgfleet reads
(playbooks, the alerting configuration, sandbox worlds) need neither, so :func:`screen`
refuses every anchor and alias, and bounds the nesting depth and the number of nodes, by
reading the parser's events only: a stream in constant memory, before composition.
"""

from __future__ import annotations

import yaml

MAX_DEPTH = 64


class YamlRefused(ValueError):
    """The document is refused before parsing it further; ``line`` is 1-based."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def screen(
    text: str,
    *,
    max_nodes: int,
    max_depth: int = MAX_DEPTH,
    loader: type[yaml.SafeLoader] = yaml.SafeLoader,
) -> None:
    """Raise `YamlRefused` for an anchor, an alias, nesting deeper than ``max_depth`` or more
    than ``max_nodes`` scalars and collections; a syntax error raises ``yaml.YAMLError`` as
    loading would."""
    nodes = depth = 0
    for event in yaml.parse(text, Loader=loader):
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if isinstance(event, yaml.AliasEvent):
            msg = "aliases (*name) are not allowed: write the value out"
            raise YamlRefused(msg, line)
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            msg = "anchors (&name) are not allowed: write the value out"
            raise YamlRefused(msg, line)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > max_depth:
                raise YamlRefused(f"nested deeper than {max_depth} levels", line)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            nodes += 1
            if nodes > max_nodes:
                raise YamlRefused(f"more than {max_nodes:,} values", line)
