"""A warm restart of ``tgfleet run --demo``: the fleet of the first start is found again,
not imported again (which the vault refused as duplicates, logged as 20 failures)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.demo_server import demo_env, demo_process

DEMO_ACCOUNTS = 20
LOG_TIMEOUT = 30.0


def _wait_for(log: Path, text: str) -> list[str]:
    """The log's lines once one contains ``text`` (the server logs it after /readyz)."""
    deadline = time.monotonic() + LOG_TIMEOUT
    while True:
        lines = log.read_text().splitlines()
        if any(text in line for line in lines):
            return lines
        assert time.monotonic() < deadline, f"no {text!r} in {LOG_TIMEOUT} s:\n{log.read_text()}"
        time.sleep(0.2)  # polling another process's log


def test_a_warm_restart_finds_the_fleet_and_logs_no_failed_import(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    with demo_process(tmp_path, env, first_log):
        first = _wait_for(first_log, "demo.ready")
    with demo_process(tmp_path, env, second_log):
        second = _wait_for(second_log, "demo.ready")

    imported = [line for line in first if "vault.imported" in line]
    assert len(imported) == 1
    assert f"imported={DEMO_ACCOUNTS}" in imported[0]
    assert "failed=0" in imported[0]
    assert [line for line in second if "vault.imported" in line] == []
    (sessions,) = [line for line in second if "demo.sessions" in line]
    assert f"already_managed={DEMO_ACCOUNTS}" in sessions
    assert "imported=0" in sessions
    assert "missing=0" in sessions
    (ready,) = [line for line in second if "demo.ready" in line]
    assert f"accounts={DEMO_ACCOUNTS}" in ready

    with sqlite3.connect(tmp_path / "data" / "tgfleet.db") as db:
        labels = [row[0] for row in db.execute("SELECT label FROM account ORDER BY label")]
        refused = db.execute(
            "SELECT count(*) FROM audit_record WHERE action = 'session.import' "
            "AND result <> 'success'"
        ).fetchone()[0]
    assert labels == [f"fleet_{i:04d}" for i in range(1, DEMO_ACCOUNTS + 1)]
    assert refused == 0  # no refused re-import in the audit log either
