"""``tgfleet sandbox``: mint a sandbox world and run the local MTProto sandbox.

``tgfleet sandbox --world DIR/world.yaml`` (or ``tgfleet sandbox run --world ...`` with
every option) prints one line when it accepts clients, e.g.
``sandbox ready on 127.0.0.1:8443 (control 127.0.0.1:8444)`` (the real bound ports, also
with ``--port 0``), and serves until SIGINT or SIGTERM, then stops cleanly with status 0.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tgfleet.cli._runtime import fail

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from tgfleet.demo.seed import SeededFleet

app = typer.Typer(
    help="The local Telegram sandbox: a MTProto server real Telethon clients connect to.",
)

DEFAULT_PORT = 8443


@app.callback(invoke_without_command=True)
def serve_world(
    ctx: typer.Context,
    world: Path | None = typer.Option(
        None,
        "--world",
        exists=True,
        dir_okay=False,
        metavar="FILE",
        help="serve this world file (as `run`)",
    ),
    port: int | None = typer.Option(None, min=0, max=65535, help="MTProto port"),
    control_port: int | None = typer.Option(
        None, min=0, max=65535, metavar="PORT", help="control API port"
    ),
) -> None:
    """`tgfleet sandbox --world FILE --port P --control-port C` is `tgfleet sandbox run ...`
    with the other options at their defaults."""
    if ctx.invoked_subcommand is not None:
        return
    if world is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    run(
        world=world,
        port=port,
        control_port=control_port,
        host="127.0.0.1",
        allow_remote_control=False,
        traffic=True,
        log_level="WARNING",
    )


@app.command("run")
def run(
    world: Path = typer.Option(
        ..., "--world", exists=True, dir_okay=False, metavar="FILE", help="the world file"
    ),
    port: int | None = typer.Option(
        None, min=0, max=65535, help="MTProto port (default: the world's port; 0 picks one)"
    ),
    control_port: int | None = typer.Option(
        None,
        min=0,
        max=65535,
        metavar="PORT",
        help="control API port (default: --port + 1; 0 picks one)",
    ),
    host: str = typer.Option("127.0.0.1", help="listen address for both servers"),
    allow_remote_control: bool = typer.Option(
        False,
        "--allow-remote-control",
        help="let the unauthenticated control API bind a non-loopback host",
    ),
    traffic: bool = typer.Option(
        True, "--traffic/--no-traffic", help="simulated members chat at the world's rate"
    ),
    log_level: str = typer.Option("WARNING", help="log level (logs go to stderr)"),
) -> None:
    """Serve the sandbox for a world file until SIGINT/SIGTERM.

    \b
    Example:
      tgfleet sandbox run --world ./world/world.yaml --port 8443
    """
    from tgfleet.exceptions import AppError
    from tgfleet.logging import configure_logging

    configure_logging(level=log_level.upper())
    from tgfleet.sandbox.control_server import is_loopback

    if not allow_remote_control and not is_loopback(host):
        raise fail(
            f"the control API has no authentication; refusing to bind {host!r} "
            "(use a loopback address or --allow-remote-control)",
            2,
        )
    try:
        asyncio.run(_serve(world, port, control_port, host, allow_remote_control, traffic))
    except AppError as exc:
        raise fail(exc.message) from exc
    except OSError as exc:
        raise fail(f"cannot listen: {exc.strerror or exc}") from exc


async def _serve(  # the sandbox stack is imported here so other commands start fast
    world_path: Path,
    port: int | None,
    control_port: int | None,
    host: str,
    allow_remote_control: bool,
    traffic: bool,
) -> None:
    from tgfleet.sandbox.runner import Sandbox
    from tgfleet.sandbox.world_file import load_world

    world = await asyncio.to_thread(load_world, world_path)
    # Default: the world's port, the one its session files point at.
    mtproto_port = world.port if port is None else port
    if control_port is None:
        control_port = mtproto_port + 1 if mtproto_port else 0
    sandbox = Sandbox(
        world,
        host=host,
        port=mtproto_port,
        control_port=control_port,
        traffic=traffic,
        allow_remote_control=allow_remote_control,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with sandbox:
            typer.echo(
                f"sandbox ready on {host}:{sandbox.port} (control {host}:{sandbox.control_port})"
            )
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@app.command("mint")
def mint_world(
    accounts: int = typer.Option(..., min=1, help="fleet accounts (one .session each)"),
    groups: int = typer.Option(..., min=0, help="groups (basic and supergroups alternate)"),
    out: Path = typer.Option(..., file_okay=False, metavar="DIR", help="output directory"),
    members: int = typer.Option(5, min=0, help="simulated members per group"),
    port: int = typer.Option(DEFAULT_PORT, min=1, max=65535, help="port the sessions use"),
    address: str = typer.Option(
        "127.0.0.1",
        help="IP address the sessions use: where clients reach the sandbox (e.g. its fixed "
        "address on a compose network)",
    ),
    seed: int = typer.Option(0, help="seed for ids, names, layout and traffic"),
    force: bool = typer.Option(False, "--force", help="overwrite existing files"),
    demo_traffic: bool = typer.Option(
        False,
        "--demo-traffic",
        help="members chat as in `tgfleet run --demo`: faster, about what the example "
        "playbooks answer (prices, opening hours, shipping, rules)",
    ),
    keep_existing: bool = typer.Option(
        False,
        "--keep-existing",
        help="when DIR/world.yaml exists, keep that world and exit 0 (a one-shot service "
        "that runs at every start)",
    ),
) -> None:
    """Write a sandbox world: world.yaml and one .session per account.

    The session files (Telethon, mode 0600) point at the sandbox's --address and --port.

    \b
    Example:
      tgfleet sandbox mint --accounts 20 --groups 5 --out ./world
    """
    from tgfleet.demo.fleet import DEMO_TRAFFIC
    from tgfleet.exceptions import AppError
    from tgfleet.kit.listen import format_address
    from tgfleet.sandbox.mint import WORLD_FILE, mint

    if keep_existing and not force and (out / WORLD_FILE).is_file():
        typer.echo(f"kept the world in {out / WORLD_FILE}")
        return
    try:
        world = mint(
            out,
            accounts=accounts,
            groups=groups,
            members=members,
            port=port,
            seed=seed,
            force=force,
            address=address,
            traffic=DEMO_TRAFFIC if demo_traffic else None,
        )
    except AppError as exc:
        raise fail(exc.message) from exc
    supergroups = sum(1 for g in world.groups if g.kind == "supergroup")
    typer.echo(
        f"minted {_count(len(world.accounts), 'account')}, {_count(len(world.groups), 'group')} "
        f"({len(world.groups) - supergroups} basic, {_count(supergroups, 'supergroup')}), "
        f"{_count(len(world.members), 'simulated member')} -> {out / WORLD_FILE} "
        f"(sessions point at {format_address(address, port)})"
    )


def _count(number: int, noun: str) -> str:
    """``1 supergroup``, ``2 supergroups``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


@app.command("seed")
def seed_world(
    world: Path = typer.Option(
        ...,
        "--world",
        exists=True,
        dir_okay=False,
        metavar="FILE",
        help="the world file; the accounts' .session files are beside it (as minted)",
    ),
    start: bool = typer.Option(
        True, "--start/--no-start", help="start every account (workers bring them online)"
    ),
) -> None:
    """Put a sandbox world's fleet under management, as `run --demo` does.

    Imports its sessions through the vault, installs the example playbooks, enables replies
    in every group and starts every account. Audited like the API's changes; a rerun adds
    nothing twice. Needs a migrated database (`tgfleet db upgrade`).

    \b
    Example:
      tgfleet sandbox seed --world ./world/world.yaml
    """
    from tgfleet.cli._local import (
        cli_audit_context,
        load_audit_keys,
        load_settings,
        load_vault,
        require_current_schema,
        with_sessionmaker,
    )
    from tgfleet.demo.fleet import example_playbooks
    from tgfleet.demo.seed import seed_fleet
    from tgfleet.exceptions import AppError
    from tgfleet.sandbox.world_file import load_world

    settings = load_settings()
    require_current_schema(settings)
    vault = load_vault(settings)
    load_audit_keys(settings)
    try:
        loaded = load_world(world)
    except AppError as exc:
        raise fail(exc.message) from exc

    async def work(maker: async_sessionmaker[AsyncSession]) -> SeededFleet:
        return await seed_fleet(
            maker,
            vault,
            cli_audit_context(),
            loaded,
            world.parent,
            playbooks=example_playbooks(),
            start=start,
        )

    fleet = with_sessionmaker(settings, work)
    typer.echo(
        f"managing {len(fleet.account_ids)} accounts of {world} in {len(loaded.groups)} "
        f"groups with playbooks {', '.join(sorted(fleet.playbook_ids))}"
        + ("; every account started" if start else "")
    )
    if fleet.failed:
        raise fail(f"not imported and not found: {', '.join(fleet.failed)}")
