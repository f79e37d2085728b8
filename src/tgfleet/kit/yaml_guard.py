"""A first look at YAML that users write, before anything is built from it.

YAML anchors and aliases let a few hundred bytes stand for billions of nodes (a "billion
laughs" document: ``b: &b [*a, *a, ...]``); building them, or only walking the composed
graph, takes the memory and the event loop of the whole process. The documents tgfleet reads
(playbooks, the alerting configuration, sandbox worlds) need neither, so :func:`screen`
refuses every anchor and alias, and bounds the nesting depth and the number of nodes, by
reading the parser's events only: a stream in constant memory, before composition.

It also refuses, with their line, what would escape the loaders as something other than a
YAML error: characters YAML does not allow in a document (PyYAML's reader raises before
any line is known), and integer or timestamp scalars that PyYAML's constructor cannot build
(``ValueError`` for an integer past Python's digit limit or a 13th month).
"""

from __future__ import annotations

from collections.abc import Iterator

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
    probe = loader("")  # resolves and builds single scalars as the caller's loader will
    for event, line in _events(text, loader):
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
        if isinstance(event, yaml.ScalarEvent):
            _check_scalar(probe, event, line)


def _events(text: str, loader: type[yaml.SafeLoader]) -> Iterator[tuple[yaml.Event, int]]:
    """The parser's events with their 1-based lines."""
    try:
        for event in yaml.parse(text, Loader=loader):
            yield event, event.start_mark.line + 1 if event.start_mark is not None else 1
    except yaml.reader.ReaderError as exc:  # raised before the first event: no line known
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else "a character"
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise YamlRefused(f"{char} is not allowed in a YAML document", line) from None
    except UnicodeEncodeError as exc:  # libyaml's loaders encode the text first
        line = text.count("\n", 0, exc.start) + 1
        char = f"U+{ord(text[exc.start]):04X}"
        raise YamlRefused(f"{char} (a lone surrogate) is not allowed in text", line) from None


_CONSTRUCTED = {
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:timestamp": "a date or time",
}


def _check_scalar(probe: yaml.SafeLoader, event: yaml.ScalarEvent, line: int) -> None:
    """Build an integer or timestamp scalar as the loader will, and refuse it if that fails
    (a 5,000-digit integer is a ValueError; so is ``2001-13-45``)."""
    tag = event.tag
    if tag is None or tag == "!":
        tag = probe.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
    kind = _CONSTRUCTED.get(tag)
    if kind is None:
        return
    node = yaml.ScalarNode(tag, event.value, style=event.style)
    try:
        probe.construct_object(node)
    except yaml.YAMLError:
        return  # the loader reports it with its line
    except (ValueError, OverflowError, AttributeError, TypeError):
        msg = f"{event.value[:40]!r} is not {kind} this server can read"
        raise YamlRefused(msg, line) from None
    finally:
        probe.constructed_objects.clear()
