"""``tgfleet audit verify|checkpoint|rotate-key|export`` as real subprocesses: one clear line
each, the relabel attack found with the key and, through the checkpoint file, without it;
exports never write through a symlink or over a file without ``--force``. Both databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests.audit.attack import append_exports, relabel_exports
from tests.cli.test_cli import Cli
from tests.conftest import TEST_VAULT_KEY
from tgfleet.kit.db import create_sessionmaker


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return Cli(db_url, tmp_path / "data")


async def attack(cli: Cli, *, strip_macs: bool) -> int:
    engine = create_async_engine(cli.db_url)
    try:
        return await relabel_exports(create_sessionmaker(engine), strip_macs=strip_macs)
    finally:
        await engine.dispose()


async def exports(cli: Cli, count: int) -> None:
    engine = create_async_engine(cli.db_url)
    try:
        await append_exports(create_sessionmaker(engine), count)
    finally:
        await engine.dispose()


class TestVerify:
    async def test_the_relabel_attack_is_one_line_and_exit_1(self, cli: Cli) -> None:
        """With the audit key, ``audit verify`` names the first relabelled record."""
        await exports(cli, 5)
        ok = cli("audit", "verify")
        assert ok.returncode == 0, ok.stderr
        await attack(cli, strip_macs=False)
        broken = cli("audit", "verify")
        assert broken.returncode == 1
        assert broken.stdout == ""
        line = (
            "error: audit chain broken at seq 1: the MAC does not match: the record was "
            "rewritten without the audit key"
        )
        assert broken.stderr.strip().splitlines() == [line]

    async def test_without_the_key_the_checkpoint_file_finds_it(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        """``audit checkpoint`` publishes the head; a machine without the audit key, given
        the checkpoint file, says the MACs were not checked, and finds the attack even when
        every MAC was blanked."""
        await exports(cli, 4)
        published = cli("audit", "checkpoint")
        assert published.returncode == 0, published.stderr
        assert published.stdout.startswith("checkpoint seq 4 hash ")
        path = tmp_path / "data" / "audit-checkpoints.jsonl"
        assert json.loads(path.read_text())["seq"] == 4
        copy = tmp_path / "elsewhere.jsonl"
        copy.write_text(path.read_text())
        keyless = Cli(cli.db_url, tmp_path / "verifier")
        keyless.env.pop("TGFLEET_AUDIT_KEY")
        ok = keyless("audit", "verify", "--checkpoints", str(copy))
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == (
            "OK 4 records (4 keyed, 0 from before audit keys); MACs NOT checked (no audit "
            "key); 1 checkpoints matched"
        )
        assert not (tmp_path / "verifier" / "audit.key").exists()
        await attack(cli, strip_macs=True)
        broken = keyless("audit", "verify", "--checkpoints", str(copy))
        assert broken.returncode == 1
        assert len(broken.stderr.strip().splitlines()) == 1
        assert "audit chain broken at seq 4: the record differs from the checkpoint" in (
            broken.stderr
        )
        copy.write_text(copy.read_text().replace('"seq":4', '"seq":3'))
        forged = keyless("audit", "verify", "--checkpoints", str(copy))
        assert forged.returncode == 1
        assert "line 1: the signature does not verify" in forged.stderr


class TestRotateKey:
    def test_rotation_keeps_older_records_verifiable(self, cli: Cli, tmp_path: Path) -> None:
        """With a key file, ``rotate-key`` adds a key and makes it active; the rotation is
        itself audited under the new key; every record still verifies."""
        cli.env.pop("TGFLEET_AUDIT_KEY")
        first = cli("audit", "export", "-o", str(tmp_path / "a.jsonl"))
        assert first.returncode == 0, first.stderr
        key_file = tmp_path / "data" / "audit.key"
        old = json.loads(key_file.read_text())["active"]
        rotated = cli("audit", "rotate-key")
        assert rotated.returncode == 0, rotated.stderr
        new = json.loads(key_file.read_text())["active"]
        assert new != old
        assert rotated.stdout.startswith(f"audit key {new} is now active in {key_file}")
        verified = cli("audit", "verify")
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.startswith("OK 2 records (2 keyed")
        records = [json.loads(line) for line in cli("audit", "export").stdout.splitlines()]
        assert [(r["action"], r["key_id"]) for r in records[:2]] == [
            ("audit.export", old),
            ("audit.key.rotate", new),
        ]
        assert records[1]["details"] == {"previous": old}

    def test_an_environment_key_is_rotated_by_configuration(self, cli: Cli) -> None:
        """With TGFLEET_AUDIT_KEY there is no file to change: the command says what to do."""
        refused = cli("audit", "rotate-key")
        assert refused.returncode == 2
        assert "TGFLEET_AUDIT_PREVIOUS_KEYS" in refused.stderr


class TestExportOutput:
    def test_a_symlink_is_refused_and_its_target_untouched(self, cli: Cli, tmp_path: Path) -> None:
        """Issue 14 item 9: ``-o LINK`` followed the link, overwrote and chmodded its target.
        A symlink is refused, with or without ``--force``, for both exports."""
        target = tmp_path / "precious.txt"
        target.write_text("keep me\n")
        target.chmod(0o644)
        link = tmp_path / "link.jsonl"
        link.symlink_to(target)
        for extra in ((), ("--force",)):
            refused = cli("audit", "export", "-o", str(link), *extra)
            assert refused.returncode == 1
            assert refused.stderr.strip() == (
                f"error: {link} is a symbolic link; refusing to write through it"
            )
        session = cli(
            "session", "export", "acc", "--format", "telethon", "--out", str(link),
            "--reason", "moving host", "--force",
        )  # fmt: skip
        assert session.returncode == 1
        assert f"{link} is a symbolic link" in session.stderr
        assert target.read_text() == "keep me\n"
        assert target.stat().st_mode & 0o777 == 0o644
        dangling = tmp_path / "dangling.jsonl"
        dangling.symlink_to(tmp_path / "nowhere")
        assert cli("audit", "export", "-o", str(dangling)).returncode == 1
        assert not (tmp_path / "nowhere").exists()

    def test_an_existing_file_needs_force(self, cli: Cli, tmp_path: Path) -> None:
        """An existing file is refused without ``--force`` (left as it was); with it, the
        file is overwritten and made 0600."""
        out = tmp_path / "audit.jsonl"
        out.write_text("old\n")
        out.chmod(0o644)
        refused = cli("audit", "export", "-o", str(out))
        assert refused.returncode == 1
        assert refused.stderr.strip() == f"error: {out} exists; pass --force to overwrite it"
        assert out.read_text() == "old\n"
        forced = cli("audit", "export", "-o", str(out), "--force")
        assert forced.returncode == 0, forced.stderr
        assert out.read_text() == ""  # no record yet; this export's record comes after it
        assert out.stat().st_mode & 0o777 == 0o600


class TestServingNeedsTheKey:
    def test_a_server_with_a_bad_audit_key_stops_with_one_line(self, cli: Cli) -> None:
        """A process that would append records with no usable audit key does not start:
        one line saying what is wrong, exit 2, and the key never echoed."""
        cli.env |= {
            "TGFLEET_VAULT_KEY": TEST_VAULT_KEY,
            "TGFLEET_AUDIT_KEY": "c2hvcnQ=",
        }
        refused = cli("run", "--port", "0", "--no-worker")
        assert refused.returncode == 2, refused.stderr
        line = (
            "error: TGFLEET_AUDIT_KEY decodes to 5 bytes; an audit key is exactly 32 bytes "
            "(create one with: openssl rand -base64 32)"
        )
        assert refused.stderr.strip().splitlines() == [line]
