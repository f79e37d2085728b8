"""A first look at YAML that users write, before anything is built from it.

YAML anchors and aliases let a few hundred bytes stand for billions of nodes (a "billion
laughs" document: ``b: &b [*a, *a, ...]``); building them, or only walking the composed
graph, takes the memory and the event loop of the whole process. The documents tgfleet reads
(playbooks, the alerting configuration, sandbox worlds) need neither, so :func:`screen`
refuses every anchor and alias, and bounds the nesting depth and the number of nodes, by
reading the parser's events only: a stream in constant memory, before composition.

It also refuses, with their line, what would escape the loaders as something other than a
YAML error: characters YAML does not allow in a document (PyYAML's reader raises before
any line is known), and integer, float, boolean or timestamp scalars that PyYAML's
constructor cannot build (``ValueError`` for an integer past Python's digit limit or a 13th
month; ``IndexError``, ``KeyError`` or ``ValueError`` for an explicit ``!!int ''``,
``!!bool x`` or ``!!float a``).

:func:`load` is the one way tgfleet reads such a document: the screen, then composition,
then a :class:`Position` for every path (``("route", "routes", 0, "receiver")``) so that an
error found later in the data names its line (:func:`line_of`), then construction. Each
caller passes its loader (its scalar rules) and its node limit, and words the errors itself
(:func:`format_path` names a path as ``route.routes[0].receiver``, :func:`closest_key` the
field an unknown key may have meant).
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

MAX_DEPTH = 64

#: Where a value sits in a document: its keys and list indexes from the top.
Path = tuple[str | int, ...]


class YamlRefused(ValueError):
    """The document is refused before parsing it further; ``line`` is 1-based."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class DuplicateKeys(ValueError):
    """Mappings repeat keys; ``keys`` holds each repetition's path (ending in the key) and
    the 1-based line of the repeated key, in document order."""

    def __init__(self, keys: list[tuple[Path, int]]) -> None:
        super().__init__(f"{len(keys)} duplicate key(s)")
        self.keys = keys


@dataclass(frozen=True, slots=True)
class Position:
    """Where the node at a path sits (1-based lines).

    ``line`` is where an error about the path points: the key of a mapping entry, or the
    node itself for a list item and the top. ``value_line`` is where the node itself starts
    (a block scalar at its ``|`` or ``>``). ``style`` is a scalar's style (``|``, ``>``,
    ``'``, ``"``), ``None`` for a plain scalar and a collection.
    """

    line: int
    value_line: int
    style: str | None = None


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A loaded document: its data (``None`` for an empty one) and the position of each path."""

    data: Any
    positions: dict[Path, Position]


def load(
    text: str,
    *,
    max_nodes: int,
    loader: type[yaml.SafeLoader] = yaml.SafeLoader,
    max_depth: int = MAX_DEPTH,
    unique_keys: bool = True,
    repeatable_keys: Collection[str] = (),
) -> YamlDocument:
    """Screen ``text`` (see :func:`screen`), compose it, map every path to its
    :class:`Position`, then construct the data with ``loader``.

    Raises `YamlRefused` from the screen; `DuplicateKeys` (before anything is constructed)
    when ``unique_keys`` and a mapping repeats a key not in ``repeatable_keys`` (a later
    key otherwise wins, as in the data); ``yaml.YAMLError`` for what the loader refuses
    (``yaml.MarkedYAMLError`` with its line: see :func:`error_line`). A key is named by
    ``str()`` of its scalar value.
    """
    with contextlib.suppress(yaml.YAMLError):  # the loader below reports it with its line
        screen(text, max_nodes=max_nodes, max_depth=max_depth, loader=loader)
    composer = loader(text)
    try:
        root = composer.get_single_node()
        if root is None:
            return YamlDocument(None, {})
        line = root.start_mark.line + 1
        positions: dict[Path, Position] = {}
        duplicates: list[tuple[Path, int]] = []
        _map(root, (), line, positions, duplicates if unique_keys else None, repeatable_keys)
        if duplicates:
            raise DuplicateKeys(duplicates)
        return YamlDocument(composer.construct_document(root), positions)
    finally:
        composer.dispose()


def _map(
    node: yaml.Node,
    path: Path,
    line: int,
    positions: dict[Path, Position],
    duplicates: list[tuple[Path, int]] | None,
    repeatable: Collection[str],
) -> None:
    """Record ``node`` at ``path`` (``line``: where its errors point) and its children."""
    style = node.style if isinstance(node, yaml.ScalarNode) else None
    positions[path] = Position(line, node.start_mark.line + 1, style)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            key_line = key_node.start_mark.line + 1
            if duplicates is not None and key in seen and key not in repeatable:
                duplicates.append(((*path, key), key_line))
            seen.add(key)
            _map(value_node, (*path, key), key_line, positions, duplicates, repeatable)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _map(item, (*path, index), item.start_mark.line + 1, positions, duplicates, repeatable)


def line_of(positions: Mapping[Path, Position], path: Path) -> int:
    """The line of ``path``, or of its nearest ancestor in the document; 1 if none is."""
    for end in range(len(path), -1, -1):
        found = positions.get(path[:end])
        if found is not None:
            return found.line
    return 1


def format_path(path: Path) -> str:
    """``route.routes[0].receiver``; ``""`` for the top (callers name it their way)."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def closest_key(key: str, models: Iterable[type[BaseModel]]) -> str | None:
    """The field of ``models`` (by its alias, as written) closest to the unknown ``key``, for
    a "did you mean"; None when none is close."""
    names = {info.alias or name for model in models for name, info in model.model_fields.items()}
    close = difflib.get_close_matches(key, sorted(names), n=1)
    return close[0] if close else None


def error_line(error: yaml.MarkedYAMLError) -> tuple[int, str]:
    """The 1-based line of a loader's error and what it says (context and problem), without
    the snippet of the document its marks show: that could be a secret."""
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark is not None else 1
    return line, " ".join(part for part in (error.context, error.problem) if part)


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
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:timestamp": "a date or time",
}


def _check_scalar(probe: yaml.SafeLoader, event: yaml.ScalarEvent, line: int) -> None:
    """Build an integer, float, boolean or timestamp scalar as the loader will, and refuse it
    if that fails (a 5,000-digit integer is a ValueError; so are ``2001-13-45`` and
    ``!!float a``; ``!!int ''`` is an IndexError, ``!!bool x`` a KeyError)."""
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
    except (ValueError, OverflowError, AttributeError, TypeError, IndexError, KeyError):
        msg = f"{event.value[:40]!r} is not {kind} this server can read"
        raise YamlRefused(msg, line) from None
    finally:
        probe.constructed_objects.clear()
