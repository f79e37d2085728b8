"""A real tgfleet API server in a child process, for the contract tests: uvicorn serving
`create_app` on a loopback socket the parent bound (so the port is known before it starts
and nothing races for it), with the test suite's settings.

The child runs ``python -m tests.api_contract_server DB_URL DATA_DIR FD``.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import make_settings

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
REPO = Path(__file__).resolve().parent.parent
#: Fuzzed runs last minutes: a JWT must outlive them.
JWT_TTL_SECONDS = 86_400


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    log: Path


@asynccontextmanager
async def live_server(db_url: str, data_dir: Path) -> AsyncIterator[LiveServer]:
    """Serve the API on 127.0.0.1 until the block ends; the child's output goes to a log
    file beside ``data_dir`` (its tail is in the error if the server does not come up)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    log = data_dir.parent / "server.log"
    with log.open("wb") as output:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.api_contract_server",
            db_url,
            str(data_dir),
            str(listener.fileno()),
            pass_fds=(listener.fileno(),),
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    listener.close()  # the child holds its own copy
    server = LiveServer(base_url=f"http://127.0.0.1:{port}", log=log)
    try:
        await _wait_until_live(server, child)
        yield server
    finally:
        if child.returncode is None:
            child.terminate()
        try:
            await asyncio.wait_for(child.wait(), STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            child.kill()
            await asyncio.wait_for(child.wait(), STOP_TIMEOUT_SECONDS)


async def _wait_until_live(server: LiveServer, child: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as http:
        while time.monotonic() < deadline and child.returncode is None:
            try:
                if (await http.get("/livez")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)  # a child's start-up has no event to wait on
    tail = (await asyncio.to_thread(server.log.read_text, errors="replace"))[-4000:]
    msg = f"the API server did not come up (exit {child.returncode}):\n{tail}"
    raise RuntimeError(msg)


def main() -> None:
    import uvicorn

    from tgfleet.app import create_app
    from tgfleet.logging import configure_logging

    db_url, data_dir, fd = sys.argv[1:4]
    # Alerting runs as it does by default in production (the suite turns it off elsewhere).
    settings = make_settings(
        db_url, Path(data_dir), jwt_ttl_seconds=JWT_TTL_SECONDS, alerting_enabled=True
    )
    configure_logging(level="INFO")  # as `tgfleet run` does: no tracebacks with locals
    config = uvicorn.Config(
        create_app(settings), fd=int(fd), log_level="warning", access_log=False, lifespan="on"
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
