"""Per-request server CPU of the API benchmark's requests, in-process (issue 14 item 11).

The application of ``create_app`` (SQLite in a fresh data dir seeded as bench/api.py seeds
it: the bench admin and ``TGFLEET_BENCH_API_ACCOUNTS`` accounts, WARNING logs as ``tgfleet
run``) is called as ASGI directly, one request at a time, with no HTTP client or server in
the way, so the process CPU per request is the application's own: ``GET /api/v1/accounts``
(a page of 50 with the per-state counts) and ``POST /api/v1/accounts/{id}/start`` and
``/stop`` alternating, all with the admin JWT. ``--profile`` prints pyinstrument's call
tree of the event loop's thread for each kind (pyinstrument, a dev dependency; ``--all`` for
every frame), ``--sql`` the statements run. Run: ``.venv/bin/python bench/_api_profile.py
[--profile] [--sql] [N]`` (N requests of each kind, 300 by default). A tool for finding
where a request's CPU goes, not a benchmark with targets (bench/api.py is).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api as bench_api
from fleet import worker_env


async def call(app: Any, method: str, path: str, token: str, query: str = "") -> tuple[int, bytes]:
    """One request through the ASGI application; (status, body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-length", b"0"),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    status = 0
    body = bytearray()

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(body)


async def login(app: Any) -> str:
    payload = json.dumps({"username": bench_api.USERNAME, "password": bench_api.PASSWORD})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/auth/login",
        "raw_path": b"/api/v1/auth/login",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": payload.encode(), "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            answer.update(json.loads(message["body"]))

    await app(scope, receive, send)
    token: str = answer["access_token"]
    return token


async def measure(count: int, profile: bool) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from tgfleet.app import create_app
    from tgfleet.cli._local import load_settings

    app = create_app(load_settings())
    statements: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", on_execute)
    if profile:
        from pyinstrument import Profiler  # a dev dependency, imported only with --profile
    async with app.router.lifespan_context(app):
        asgi = app
        token = await login(asgi)
        status, body = await call(asgi, "GET", bench_api.READ_PATH, token)
        assert status == 200, body
        ids = [item["id"] for item in json.loads(body)["items"]]

        async def reads() -> None:
            for _ in range(count):
                status, _body = await call(asgi, "GET", bench_api.READ_PATH, token)
                assert status == 200

        async def writes() -> None:
            for n in range(count):
                action = "start" if n % 2 == 0 else "stop"
                path = f"{bench_api.READ_PATH}/{ids[n % len(ids)]}/{action}"
                status, body = await call(asgi, "POST", path, token)
                assert status == 200, body

        for name, work in (("GET /api/v1/accounts", reads), ("POST start|stop", writes)):
            await work()  # warm: first-call imports and caches
            statements.clear()
            profiler = Profiler(async_mode="enabled", interval=0.0005) if profile else None
            started = time.process_time()
            loop_cpu = time.thread_time()
            wall = time.perf_counter()
            if profiler is not None:
                profiler.start()
            await work()
            if profiler is not None:
                profiler.stop()
            cpu = (time.process_time() - started) / count * 1000
            loop_cpu = (time.thread_time() - loop_cpu) / count * 1000
            elapsed = (time.perf_counter() - wall) / count * 1000
            print(
                f"{name}: {cpu:.2f} ms CPU ({loop_cpu:.2f} ms on the event loop's thread), "
                f"{elapsed:.2f} ms wall, {len(statements) / count:.1f} SQL statements "
                f"per request ({count})"
            )
            if "--sql" in sys.argv:
                for text in dict.fromkeys(statements):
                    print("   ", " ".join(text.split())[:160])
            if profiler is not None:
                print(
                    profiler.output_text(unicode=False, color=False, show_all="--all" in sys.argv)
                )


def main() -> None:
    profile = "--profile" in sys.argv
    numbers = [a for a in sys.argv[1:] if a.isdigit()]
    count = int(numbers[0]) if numbers else 300
    with tempfile.TemporaryDirectory(prefix="tgfleet-api-profile-") as tmp:
        data_dir = Path(tmp) / "data"
        os.environ.update(worker_env(data_dir, base64.b64encode(os.urandom(32)).decode()))
        bench_api.seed(data_dir)
        asyncio.run(measure(count, profile))


if __name__ == "__main__":
    main()
