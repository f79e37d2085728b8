"""The baseline of bench/fleet.py: a minimal hand-written Telethon replier, no tgfleet.

    python bench/_baseline_replier.py WORLD_YAML PORT [CONNECT_CONCURRENCY]

One ``TelegramClient`` per account of the world file (a ``StringSession`` holding the
account's auth key, ``flood_sleep_threshold=0``), all in this one process on one event
loop, each with an ``events.NewMessage(incoming=True)`` handler that answers every message
with ``await event.reply("ack " + text)`` (the text shape of the benchmark's playbook). No
limits, no state, no database: the least work a Telethon program does to answer.

It connects the clients (at most CONNECT_CONCURRENCY ``connect()`` calls at once, default
50, like the worker's start gate), prints one line ``baseline ready: N connected, F failed
in S s`` and serves until SIGTERM or SIGINT, then disconnects every client. It reads the
world file with PyYAML only, so its memory holds Telethon and nothing of tgfleet.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from telethon import TelegramClient, events
from telethon.crypto import AuthKey
from telethon.sessions import StringSession

CONNECT_TIMEOUT = 30.0
DISCONNECT_TIMEOUT = 30.0


def load_keys(world_path: Path) -> tuple[int, list[bytes]]:
    """The world's DC id and every account's auth key, in file order."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(world_path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506
    keys = [base64.b64decode(account["auth_key"]) for account in data["accounts"]]
    return int(data.get("dc_id", 2)), keys


def make_client(dc_id: int, key: bytes, port: int) -> TelegramClient:
    session = StringSession()
    session.set_dc(dc_id, "127.0.0.1", port)
    session.auth_key = AuthKey(data=key)
    return TelegramClient(session, 12345, "0" * 32, flood_sleep_threshold=0, catch_up=False)


async def on_message(event: Any) -> None:
    await event.reply(f"ack {event.raw_text}")


async def serve(world_path: Path, port: int, concurrency: int) -> None:
    dc_id, keys = load_keys(world_path)
    clients = [make_client(dc_id, key, port) for key in keys]
    for client in clients:
        client.add_event_handler(on_message, events.NewMessage(incoming=True))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    gate = asyncio.Semaphore(concurrency)
    failed = 0

    async def connect(client: TelegramClient) -> None:
        nonlocal failed
        async with gate:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await client.connect()
            except (OSError, TimeoutError, ConnectionError):
                failed += 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(connect(c) for c in clients))
        seconds = time.perf_counter() - started
        connected = sum(1 for c in clients if c.is_connected())
        print(
            f"baseline ready: {connected} connected, {failed} failed in {seconds:.2f} s",
            flush=True,
        )
        await stop.wait()
    finally:
        async with asyncio.timeout(DISCONNECT_TIMEOUT):
            await asyncio.gather(
                *(c.disconnect() for c in clients if c.is_connected()), return_exceptions=True
            )


def main() -> int:
    logging.basicConfig(level=logging.CRITICAL)
    if len(sys.argv) not in {3, 4}:
        print(__doc__, file=sys.stderr)
        return 2
    concurrency = int(sys.argv[3]) if len(sys.argv) == 4 else 50
    asyncio.run(serve(Path(sys.argv[1]), int(sys.argv[2]), concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
