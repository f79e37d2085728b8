"""``tgfleet worker`` processes on one host (PostgreSQL): a busy metrics port and an id a
live worker holds are one line and exit 2; without ``--id`` several workers just work."""

from __future__ import annotations

import contextlib
import re
import socket
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.cli._process import busy_port, free_port, serving, tgfleet, tgfleet_env
from tgfleet.kit.db import create_engine

pytestmark = [
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
    pytest.mark.timeout(240),
]

RUNNING = re.compile(r"tgfleet worker (\S+) running")


def _worker_env(db_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return tgfleet_env(db_url, data_dir, **({"TGFLEET_WORKER_METRICS_PORT": "0"} | extra))


class TestWorkerStart:
    def test_busy_metrics_port_is_one_line(self, db_url: str, tmp_path: Path) -> None:
        """The metrics port another process holds (9464 for every worker by default): one
        line that says which setting to change, exit 2 (it was a 40-line traceback)."""
        with busy_port() as port:
            env = _worker_env(
                db_url,
                tmp_path / "data",
                TGFLEET_WORKER_METRICS_HOST="127.0.0.1",
                TGFLEET_WORKER_METRICS_PORT=str(port),
            )
            result = tgfleet(env, "worker")
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert f"cannot listen on 127.0.0.1:{port}: address already in use" in lines[0]
        assert "TGFLEET_WORKER_METRICS_PORT" in lines[0]

    def test_an_id_a_live_worker_holds_is_refused(self, db_url: str, tmp_path: Path) -> None:
        """A second worker with the id of a running one: one line naming the holder, exit 2,
        and the first keeps running (the second used to fence it off)."""
        env = _worker_env(db_url, tmp_path / "data")
        with serving(env, tmp_path / "first.log", "worker", "--id", "w1") as first:
            first.wait_for_line("running")
            result = tgfleet(env, "worker", "--id", "w1")
            assert result.returncode == 2
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, result.stderr
            assert (
                f"worker id 'w1' is held by a live worker (host {socket.gethostname()}"
                in (lines[0])
            )
            assert first.process.poll() is None

    def test_workers_without_an_id_each_take_their_own(self, db_url: str, tmp_path: Path) -> None:
        """Two workers started together on one host with no --id: both run, as the host
        name and ``<host>-2`` (they shared the host name and fenced each other off)."""
        host = socket.gethostname()
        with contextlib.ExitStack() as stack:
            workers = [
                stack.enter_context(
                    serving(
                        _worker_env(db_url, tmp_path / f"data{index}"),
                        tmp_path / f"worker{index}.log",
                        "worker",
                    )
                )
                for index in range(2)
            ]
            ids = set()
            for worker in workers:
                match = RUNNING.search(worker.wait_for_line("running"))
                assert match is not None
                ids.add(match.group(1))
            assert ids == {host, f"{host}-2"}
            assert all(worker.process.poll() is None for worker in workers)

    async def test_run_beside_a_worker_takes_the_next_id(self, db_url: str, tmp_path: Path) -> None:
        """`tgfleet run` on PostgreSQL registers its embedded worker like `tgfleet worker`:
        beside a live worker named after the host it becomes ``<host>-2``, and an id the
        live worker holds (TGFLEET_WORKER_ID) is refused with one line, exit 2."""
        host = socket.gethostname()
        env = _worker_env(db_url, tmp_path / "data")
        with serving(env, tmp_path / "worker.log", "worker") as first:
            first.wait_for_line("running")
            port = str(free_port())
            with serving(env, tmp_path / "run.log", "run", "--port", port) as run:
                run.wait_for_line("serving on")
                assert await _worker_ids(db_url) == {host, f"{host}-2"}
            refused = tgfleet(env | {"TGFLEET_WORKER_ID": host}, "run", "--port", port)
        assert refused.returncode == 2
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert f"worker id '{host}' is held by a live worker" in lines[0]


async def _worker_ids(db_url: str) -> set[str]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT id FROM worker WHERE state = 'running'"))
            return {row[0] for row in rows}
    finally:
        await engine.dispose()
