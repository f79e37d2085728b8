"""How listings are printed: ``-o table|wide|json|yaml``, tables that fit the terminal and
never cut a value when piped, colours only on a terminal, ``--watch`` in place, and the
confirmation a bulk action asks for.

JSON and YAML print the API's own shapes (the items of its listings, its objects), so a
script reads the same fields from ``tgfleet ... -o json`` as from the API. A table is for
people: on a terminal it fits the width (ids are never cut; long free text is), and
piped it prints every value in full, one row per line, so ``grep`` and ``awk`` see
whole ids.
"""

from __future__ import annotations

import enum
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.table import Table

from tgfleet.cli._runtime import EXIT_USAGE, console, err_console, fail


class Output(enum.StrEnum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"


#: The ``-o`` option every listing takes: ``output: Output = OUTPUT``.
OUTPUT: Any = typer.Option(
    Output.TABLE,
    "--output",
    "-o",
    help="table (fits the terminal), wide (every column), json or yaml (the API's shapes)",
    case_sensitive=False,
)
#: ``--yes`` on bulk and destructive actions.
YES: Any = typer.Option(False, "--yes", "-y", help="do it without asking (scripts, CI)")
#: ``--watch`` on the listings that change by themselves.
WATCH: Any = typer.Option(False, "--watch", "-w", help="refresh in place every --interval")
INTERVAL: Any = typer.Option(2.0, "--interval", min=0.5, help="seconds between refreshes")

Getter = str | Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Column:
    """One table column: its header, how to get the value from an API item (a dotted key
    or a function), and whether only ``-o wide`` shows it. ``key=True`` marks an id or a
    name a command takes back: never cut, never wrapped. ``min_width`` keeps a short
    column readable on a narrow terminal (cut to it, not to one character)."""

    header: str
    get: Getter
    wide: bool = False
    key: bool = False
    style: str | Callable[[Any], str | None] | None = None
    min_width: int | None = None

    def value(self, item: Mapping[str, Any]) -> Any:
        if callable(self.get):
            return self.get(item)
        value: Any = item
        for part in self.get.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return value


def text(value: Any) -> str:
    """A cell: '' for none, ISO-like local-free times, lists comma-joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(text(v) for v in value)
    if isinstance(value, Mapping):
        return ",".join(f"{k}={text(v)}" for k, v in value.items())
    return str(value)


def _moment(value: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def ago(value: str | None) -> str:
    """``2026-12-07T10:00:00Z`` as ``5m`` (kubectl's AGE); '' for none."""
    if not value:
        return ""
    at = _moment(value)
    if at is None:
        return value
    seconds = max(0, int((datetime.now(UTC) - at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def stamp(value: str | None) -> str:
    """An API time (``2026-12-07T10:00:00.123456Z``) to the second, in UTC; '' for none."""
    if not value:
        return ""
    at = _moment(value)
    return value if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(items: Iterable[Mapping[str, Any]], columns: Sequence[Column], *, wide: bool) -> Table:
    """The rows as a borderless table. On a terminal narrower than the table, the widest
    free-text columns give way first (cut with an ellipsis, never wrapped onto more lines);
    an id or name column (``key``) keeps its widest value whole. Piped, nothing is cut."""
    shown = [c for c in columns if wide or not c.wide]
    rows = [[(text(value := c.value(item)), value) for c in shown] for item in items]
    natural = [max([len(c.header), *(len(row[i][0]) for row in rows)]) for i, c in enumerate(shown)]
    widths = _fit(shown, natural, console.width if console.is_terminal else None)
    grid = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    grid.min_width = sum(widths) + 2 * (len(widths) - 1)  # `render` keeps keys whole with it
    for column, width in zip(shown, widths, strict=True):
        grid.add_column(column.header.upper(), no_wrap=True, overflow="ellipsis", width=width)
    for row in rows:
        cells = []
        for column, (cell, value) in zip(shown, row, strict=True):
            style = column.style(value) if callable(column.style) else column.style
            cells.append(f"[{style}]{_escape(cell)}[/{style}]" if style and cell else _escape(cell))
        grid.add_row(*cells)
    return grid


def _fit(columns: Sequence[Column], natural: list[int], room: int | None) -> list[int]:
    """Column widths within ``room`` characters (None: no limit): shrink the widest
    non-key column, one character at a time, down to its header (or ``min_width``)."""
    widths = list(natural)
    if room is None:
        return widths
    floors = [
        natural[i] if c.key else min(natural[i], max(len(c.header), c.min_width or 0, 3))
        for i, c in enumerate(columns)
    ]
    padding = 2 * (len(columns) - 1)
    while sum(widths) + padding > room:
        shrinkable = [i for i, w in enumerate(widths) if w > floors[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def _escape(cell: str) -> str:
    from rich.markup import escape

    return escape(cell)


def _plain_console() -> Console:
    """Piped: no colour, no width limit (a row is one line, every value whole)."""
    return Console(width=1_000_000, no_color=True, highlight=False, soft_wrap=True)


def emit(
    items: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    output: Output,
    *,
    document: Any = None,
    empty: str | None = None,
) -> None:
    """Print a listing. ``document`` is what json/yaml print (default: ``items``, the
    API's items as they came); ``empty`` is said on stderr when a table has no rows."""
    if output in {Output.JSON, Output.YAML}:
        dump(items if document is None else document, output)
        return
    if not items and empty:
        err_console.print(empty, soft_wrap=True)
        return
    render(table(items, columns, wide=output is Output.WIDE))


def render(renderable: RenderableType) -> None:
    """On a terminal, as rich draws it; piped, every line without its trailing padding (a
    table pads its last column), so scripts and diffs see the values only."""
    if console.is_terminal:
        # A table whose ids alone are wider than the terminal is printed whole (the
        # terminal wraps its lines), never with its ids cut.
        needed = renderable.min_width if isinstance(renderable, Table) else None
        if needed and needed > console.width:
            Console(width=needed, highlight=False, file=console.file).print(renderable)
        else:
            console.print(renderable)
        return
    plain = _plain_console()
    with plain.capture() as captured:
        plain.print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def dump(document: Any, output: Output) -> None:
    """``document`` as JSON (stable: the API's field names, 2-space indent) or YAML."""
    if output is Output.YAML:
        import yaml

        sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    else:
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def detail(item: Mapping[str, Any], fields: Sequence[Column], output: Output) -> None:
    """One object: ``FIELD  value`` lines for people, the API's object for json/yaml."""
    if output in {Output.JSON, Output.YAML}:
        dump(item, output)
        return
    grid = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for column in fields:
        if column.wide and output is not Output.WIDE:
            continue
        grid.add_row(column.header, _escape(text(column.value(item))))
    render(grid)


def watch(render_once: Callable[[], RenderableType], interval: float) -> None:
    """Redraw ``render_once()`` every ``interval`` seconds until Ctrl-C (exit 0): in place
    on a terminal, one block per refresh (with a time line) when piped."""
    try:
        if console.is_terminal:
            from rich.live import Live

            with Live(render_once(), console=console, auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(render_once(), refresh=True)
        else:
            while True:
                sys.stdout.write(f"# {datetime.now(UTC):%Y-%m-%d %H:%M:%S}Z\n")
                render(render_once())
                sys.stdout.flush()
                time.sleep(interval)
    except KeyboardInterrupt:
        return


def confirm(question: str, *, yes: bool) -> None:
    """Go on when ``--yes`` was given or the person at the terminal says yes; refuse
    (exit 2) when nobody can be asked, and stop (exit 1) on no."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise fail(f"{question} -- not confirmed: pass --yes to do it without asking", EXIT_USAGE)
    if not typer.confirm(question, default=False):
        raise fail("nothing done", 1)
