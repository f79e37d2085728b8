"""``tgfleet sandbox mint --address`` and ``tgfleet sandbox seed``: the compose demo's world
(sessions pointing at the sandbox's fixed address) put under management by a one-shot
service that runs at every start."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telethon.sessions import SQLiteSession

from tests.cli._process import tgfleet, tgfleet_env
from tests.conftest import TEST_AUDIT_KEY, make_settings
from tgfleet.audit.schemas import AuditContext
from tgfleet.demo.fleet import DEMO_TRAFFIC
from tgfleet.kit.db import unit_of_work
from tgfleet.models import Account, AccountGroup, AuditRecord, Playbook, PlaybookVersion
from tgfleet.models.account import DesiredState
from tgfleet.sandbox.mint import mint
from tgfleet.sandbox.world_file import load_world
from tgfleet.vault import service as vault_service
from tgfleet.vault.service import Vault

ADDRESS = "172.28.0.10"
PORT = "9443"


def _mint(env: dict[str, str], out: Path, *extra: str) -> str:
    done = tgfleet(
        env,
        "sandbox", "mint", "--accounts", "3", "--groups", "2", "--members", "2",
        "--out", str(out), "--address", ADDRESS, "--port", PORT, *extra,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


class TestMintAddress:
    def test_sessions_point_at_the_address(self, tmp_path: Path) -> None:
        """Every minted session names the given IP address and port; so does the summary.
        With --demo-traffic the world's members chat as in `tgfleet run --demo`."""
        env = tgfleet_env("sqlite+aiosqlite:///unused.db", tmp_path / "data")
        out = _mint(env, tmp_path / "world", "--demo-traffic")
        assert load_world(tmp_path / "world" / "world.yaml").traffic == DEMO_TRAFFIC
        assert f"(sessions point at {ADDRESS}:{PORT})" in out
        files = sorted((tmp_path / "world").glob("*.session"))
        assert len(files) == 3
        for path in files:
            session = SQLiteSession(str(path))
            try:
                assert (session.dc_id, session.server_address, session.port) == (
                    2,
                    ADDRESS,
                    int(PORT),
                )
            finally:
                session.close()

    def test_a_host_name_is_refused(self, tmp_path: Path) -> None:
        """The vault stores addresses, so a name would be refused at import: refused now."""
        env = tgfleet_env("sqlite+aiosqlite:///unused.db", tmp_path / "data")
        done = tgfleet(
            env, "sandbox", "mint", "--accounts", "1", "--groups", "0",
            "--out", str(tmp_path / "world"), "--address", "sandbox",
        )  # fmt: skip
        assert done.returncode == 1
        assert "'sandbox' is not an IP address" in done.stderr
        assert not (tmp_path / "world").exists()

    def test_keep_existing_keeps_the_world(self, tmp_path: Path) -> None:
        """A rerun with --keep-existing leaves the first world's files as they were."""
        env = tgfleet_env("sqlite+aiosqlite:///unused.db", tmp_path / "data")
        _mint(env, tmp_path / "world")
        before = {p.name: p.read_bytes() for p in (tmp_path / "world").iterdir()}
        again = _mint(env, tmp_path / "world", "--keep-existing")
        assert again.startswith("kept the world in ")
        assert {p.name: p.read_bytes() for p in (tmp_path / "world").iterdir()} == before


class TestSeed:
    async def test_a_world_is_managed_once_however_often_seeded(
        self, db_url: str, tmp_path: Path, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Seeded twice (a compose restart): three accounts running with their sessions at
        the sandbox's address, the two example playbooks at version 1, replies enabled in
        each group for its members, audited by the CLI; nothing doubled by the rerun."""
        env = tgfleet_env(db_url, tmp_path / "data", TGFLEET_AUDIT_KEY=TEST_AUDIT_KEY)
        mint(tmp_path / "world", accounts=3, groups=2, members=2, port=int(PORT), address=ADDRESS)
        world = str(tmp_path / "world" / "world.yaml")
        for _ in range(2):
            done = tgfleet(env, "sandbox", "seed", "--world", world)
            assert done.returncode == 0, done.stderr
            assert "managing 3 accounts" in done.stdout
            assert "playbooks community-welcome, support-faq" in done.stdout

        vault = Vault.load(make_settings(db_url, tmp_path / "data"))
        context = AuditContext(actor="test", ip=None, request_id=None)
        async with unit_of_work(maker) as session:
            accounts = (await session.scalars(select(Account).order_by(Account.label))).all()
            assert [(a.label, a.desired_state) for a in accounts] == [
                (f"fleet_000{i}", DesiredState.RUNNING) for i in (1, 2, 3)
            ]
            for account in accounts:
                record = await vault_service.decrypt(
                    session, vault, context, account.id, purpose="test"
                )
                assert (record.address, record.port) == (ADDRESS, int(PORT))
            playbooks = (await session.scalars(select(Playbook).order_by(Playbook.name))).all()
            assert [(p.name, p.latest_version) for p in playbooks] == [
                ("community-welcome", 1),
                ("support-faq", 1),
            ]
            versions = await session.scalar(select(func.count()).select_from(PlaybookVersion))
            assert versions == 2
            groups = (await session.scalars(select(AccountGroup))).all()
            # Two groups, every fleet account a member of each.
            assert len(groups) == 6
            assert all(g.enabled and g.playbook_id is not None for g in groups)
            assert {g.playbook_id for g in groups} == {p.id for p in playbooks}
            actors = set(await session.scalars(select(AuditRecord.actor)))
            actions = set(await session.scalars(select(AuditRecord.action)))
        assert all(actor.startswith("cli:") for actor in actors - {"test"})
        assert {"session.import", "playbook.create"} <= actions

    def test_an_unmigrated_database_is_refused(self, tmp_path: Path) -> None:
        """Before `tgfleet db upgrade` the seed says so and changes nothing (exit 2)."""
        env = tgfleet_env(
            f"sqlite+aiosqlite:///{tmp_path / 'data' / 'empty.db'}",
            tmp_path / "data",
            TGFLEET_AUDIT_KEY=TEST_AUDIT_KEY,
        )
        mint(tmp_path / "world", accounts=1, groups=0, address=ADDRESS)
        done = tgfleet(env, "sandbox", "seed", "--world", str(tmp_path / "world" / "world.yaml"))
        assert done.returncode == 2
        assert "run `tgfleet db upgrade` first" in done.stderr


class TestMintMessages:
    def test_the_summary_counts_in_the_singular_and_plural(self, tmp_path: Path) -> None:
        env = tgfleet_env("sqlite+aiosqlite:///unused.db", tmp_path / "data")
        done = tgfleet(
            env, "sandbox", "mint", "--accounts", "1", "--groups", "2", "--members", "1",
            "--out", str(tmp_path / "world"),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(
            "minted 1 account, 2 groups (1 basic, 1 supergroup), 3 simulated members -> "
        )

    def test_an_existing_world_names_the_force_option(self, tmp_path: Path) -> None:
        env = tgfleet_env("sqlite+aiosqlite:///unused.db", tmp_path / "data")
        _mint(env, tmp_path / "world")
        again = tgfleet(
            env, "sandbox", "mint", "--accounts", "3", "--groups", "2",
            "--out", str(tmp_path / "world"),
        )  # fmt: skip
        assert again.returncode == 1
        assert again.stderr == (
            f"error: {tmp_path / 'world' / 'world.yaml'} exists; pass --force to overwrite it\n"
        )
