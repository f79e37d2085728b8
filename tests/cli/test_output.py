"""How listings print when piped: every value whole, no trailing padding, JSON as given."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from rich.console import Console

from tgfleet.cli import _output

COLUMNS = (
    _output.Column("id", "id", key=True),
    _output.Column("label", "label"),
    _output.Column("note", "status.note", wide=True),
)


def _items() -> list[dict[str, object]]:
    return [
        {"id": str(uuid.uuid4()), "label": "fleet_" + "x" * 150, "status": {"note": "wide one"}},
        {"id": str(uuid.uuid4()), "label": "b", "status": {"note": None}},
    ]


def test_a_piped_table_keeps_every_value_whole_and_no_trailing_blanks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    items = _items()
    _output.emit(items, COLUMNS, _output.Output.TABLE)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "LABEL"]
    assert [line.split()[:2] for line in lines[1:]] == [[i["id"], i["label"]] for i in items]
    assert all(line == line.rstrip() for line in lines)
    assert "wide one" not in "\n".join(lines)


def test_wide_adds_the_wide_columns(capsys: pytest.CaptureFixture[str]) -> None:
    _output.emit(_items(), COLUMNS, _output.Output.WIDE)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "LABEL", "NOTE"]
    assert lines[1].split()[2:] == ["wide", "one"]


def test_json_prints_the_items_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    items = _items()
    _output.emit(items, COLUMNS, _output.Output.JSON)
    assert json.loads(capsys.readouterr().out) == items


def test_an_empty_table_says_so_on_stderr_only(capsys: pytest.CaptureFixture[str]) -> None:
    _output.emit([], COLUMNS, _output.Output.TABLE, empty="no accounts")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "no accounts\n")


@pytest.mark.parametrize("width", [100, 70, 40])
def test_on_a_narrow_terminal_free_text_gives_way_and_ids_stay_whole(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A terminal of ``width`` columns: every id prints whole (even when the ids alone are
    wider than the terminal), free text is cut with an ellipsis, never wrapped."""
    terminal = io.StringIO()
    monkeypatch.setattr(
        _output,
        "console",
        Console(file=terminal, width=width, force_terminal=True, no_color=True),
    )
    items = [
        {"id": str(uuid.uuid4()), "label": "fleet_0001", "status": {"note": "n " * 40}}
        for _ in range(3)
    ]
    columns = (_output.Column("id", "id", key=True), _output.Column("note", "status.note"))
    _output.emit(items, columns, _output.Output.TABLE)
    lines = terminal.getvalue().splitlines()
    assert len(lines) == 1 + len(items)  # nothing wrapped onto a second line
    for line, item in zip(lines[1:], items, strict=True):
        assert line.startswith(f"{item['id']}  ")
    if width < 100:
        assert all(line.rstrip().endswith("…") for line in lines[1:])
