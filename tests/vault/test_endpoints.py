"""The vault over HTTP: import, list, export, erase, tamper, RBAC, status (both databases)."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path
from zipfile import ZIP_STORED

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telethon.sessions import StringSession

from tests.factories import Credentials, auth_key, telethon_file, telethon_string, user_with_role
from tests.vault.test_archive import make_zip
from tgfleet.auth.service import Security
from tgfleet.config import Settings
from tgfleet.kit.db import unit_of_work

IMPORT = "/api/v1/accounts/import"


async def import_raw(
    client: httpx.AsyncClient, who: Credentials, data: bytes, name: str, label: str | None = None
) -> httpx.Response:
    params = {"name": name} | ({"label": label} if label else {})
    return await client.post(
        IMPORT,
        content=data,
        params=params,
        headers=who.headers | {"Content-Type": "application/octet-stream"},
    )


def zipped(members: dict[str, str]) -> bytes:
    """A zip (stored, not compressed) of text ``members`` by name."""
    return make_zip({name: text.encode() for name, text in members.items()}, compression=ZIP_STORED)


async def post_export(
    client: httpx.AsyncClient, who: Credentials, account_id: object, fmt: str, reason: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/accounts/{account_id}/session/export",
        json={"format": fmt, "reason": reason},
        headers=who.headers,
    )


async def sql(maker: async_sessionmaker[AsyncSession], statement: str, **params: object) -> None:
    async with unit_of_work(maker) as session:
        await session.execute(text(statement), params)


def key_forms(key: bytes) -> list[bytes]:
    """The ways an auth key could leak: raw, hex, base64 (standard and URL-safe)."""
    return [
        key,
        key.hex().encode(),
        base64.b64encode(key)[:40],
        base64.urlsafe_b64encode(key)[:40],
        key[:32],
    ]


class TestImport:
    async def test_raw_file_import_creates_an_account_without_key_material(
        self, client: httpx.AsyncClient, admin: Credentials, tmp_path: Path
    ) -> None:
        path = telethon_file(tmp_path, 1, name="support-bot.session")
        response = await import_raw(client, admin, path.read_bytes(), "support-bot.session")
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["imported"], report["failed"]) == (1, 0)
        assert report["results"][0]["label"] == "support-bot"
        account_id = report["results"][0]["account_id"]
        one = await client.get(f"/api/v1/accounts/{account_id}", headers=admin.headers)
        assert one.status_code == 200
        body = one.json()
        assert body["dc_id"] == 2
        assert body["session"]["state"] == "active"
        assert body["session"]["source_format"] == "telethon"
        listed = await client.get("/api/v1/accounts", headers=admin.headers)
        for leaked in key_forms(auth_key(1)):
            assert leaked not in one.content
            assert leaked not in listed.content

    async def test_string_import_with_label(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        response = await import_raw(
            client, admin, telethon_string(2).encode(), "x.txt", label="welcome desk"
        )
        assert response.json()["results"][0]["label"] == "welcome desk"

    async def test_multipart_files_and_zip_each_get_a_result(
        self, client: httpx.AsyncClient, admin: Credentials, tmp_path: Path
    ) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for seed in (10, 11, 12):
                archive.write(telethon_file(tmp_path, seed), f"batch/acct{seed}.session")
            archive.writestr("batch/notes.session", b"not a session at all")
        files = [
            ("files", ("one.session", telethon_file(tmp_path, 13).read_bytes())),
            ("files", ("string.txt", telethon_string(14).encode())),
            ("files", ("batch.zip", buffer.getvalue())),
        ]
        response = await client.post(IMPORT, files=files, headers=admin.headers)
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["imported"], report["failed"]) == (5, 1)
        failed = next(r for r in report["results"] if not r["ok"])
        assert failed["name"] == "batch/notes.session"
        assert failed["error"]
        accounts = (await client.get("/api/v1/accounts", headers=admin.headers)).json()["items"]
        assert len(accounts) == 5

    async def test_a_file_input_left_empty_is_no_file(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """An HTML form's file input with no file chosen sends a part with neither a file
        name nor content: it is no file, not an invalid one."""
        files = [
            ("files", ("", b"")),
            ("files", ("s.txt", telethon_string(15).encode())),
            ("files", ("empty.session", b"")),
        ]
        response = await client.post(IMPORT, files=files, headers=admin.headers)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [(r["name"], r["ok"]) for r in results] == [
            ("s.txt", True),
            ("empty.session", False),
        ]

    async def test_duplicate_key_is_refused_naming_the_account(
        self, client: httpx.AsyncClient, admin: Credentials, tmp_path: Path
    ) -> None:
        first = await import_raw(client, admin, telethon_string(3).encode(), "a.txt", label="alpha")
        assert first.json()["imported"] == 1
        again = await import_raw(
            client, admin, telethon_file(tmp_path, 3).read_bytes(), "b.session"
        )
        result = again.json()["results"][0]
        assert result["ok"] is False
        assert result["error"] == "duplicate_session"
        assert "'alpha'" in result["detail"]

    async def test_bad_file_gets_a_specific_error(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        response = await import_raw(
            client, admin, b"SQLite format 3\x00" + b"\x00" * 50, "t.session"
        )
        result = response.json()["results"][0]
        assert result["ok"] is False
        assert result["error"] in {"corrupt_session", "not_sqlite"}

    async def test_zip_slip_is_refused_whole(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        evil = {"ok.txt": telethon_string(20), "../../etc/evil.session": telethon_string(21)}
        response = await import_raw(client, admin, zipped(evil), "evil.zip")
        assert response.status_code == 400
        assert response.json()["error"] == "bad_archive"
        accounts = (await client.get("/api/v1/accounts", headers=admin.headers)).json()["items"]
        assert accounts == []

    async def test_upload_over_the_limit_is_413(self, tmp_path: Path, db_url: str) -> None:
        from tests.conftest import make_settings
        from tgfleet.app import create_app

        settings = make_settings(db_url, tmp_path / "data", import_max_upload_bytes=4096)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                admin = await user_with_role(
                    client, app.state.sessionmaker, app.state.security, "admin"
                )
                response = await import_raw(client, admin, b"x" * 10_000, "big.session")
        assert response.status_code == 413

    async def test_key_never_reaches_disk(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        tmp_path: Path,
        db_url: str,
    ) -> None:
        """After imports, no file of the data dir (SQLite database and WAL included) and no
        row of any table (PostgreSQL, as text) holds the key in any form."""
        uploads = tmp_path / "uploads"
        uploads.mkdir()
        await import_raw(client, admin, telethon_file(uploads, 30).read_bytes(), "a.session")
        await import_raw(client, admin, telethon_string(31).encode(), "b.txt")
        blobs: dict[str, bytes] = {}
        if db_url.startswith("sqlite"):
            database = Path(db_url.split("///", 1)[1])
            files = [p for p in settings.data_dir.rglob("*") if p.is_file()]
            files += [p for p in database.parent.glob(database.name + "*") if p.is_file()]
            assert any(p.name.endswith(".db") for p in files)
            blobs = {str(p): p.read_bytes() for p in files}
        else:
            async with sessionmaker() as session:
                for table in ("account", "session_secret", "audit_record", '"user"'):
                    rows = await session.execute(text(f"SELECT t::text FROM {table} t"))
                    blobs[table] = "\n".join(rows.scalars().all()).encode()
        assert blobs
        for where, content in blobs.items():
            for seed in (30, 31):
                for leaked in key_forms(auth_key(seed)):
                    assert leaked not in content, f"{where} holds key material"


class TestExportAndErase:
    async def _one(self, client: httpx.AsyncClient, admin: Credentials, seed: int) -> str:
        response = await import_raw(client, admin, telethon_string(seed).encode(), f"s{seed}.txt")
        account_id: str = response.json()["results"][0]["account_id"]
        return account_id

    async def test_export_string_round_trips_through_telethon(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        account_id = await self._one(client, admin, 40)
        response = await post_export(
            client, admin, account_id, "telethon-string", "move to new server"
        )
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        session = StringSession(response.text)
        assert session.auth_key is not None
        assert session.auth_key.key == auth_key(40)
        assert session.dc_id == 2
        audit = (
            await client.get(
                "/api/v1/audit", params={"action": "session.export"}, headers=admin.headers
            )
        ).json()["items"]
        assert audit[0]["details"]["reason"] == "move to new server"
        assert audit[0]["details"]["format"] == "telethon-string"
        for leaked in key_forms(auth_key(40)):
            assert leaked.decode("latin-1") not in str(audit)

    async def test_export_file_is_sqlite(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        account_id = await self._one(client, admin, 41)
        for fmt in ("telethon", "pyrogram"):
            response = await post_export(client, admin, account_id, fmt, "backup drill")
            assert response.status_code == 200
            assert response.content.startswith(b"SQLite format 3\x00")

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            ({"format": "telethon-string"}, 422),
            ({"format": "telethon-string", "reason": ""}, 422),
            ({"format": "gramjs", "reason": "because"}, 422),
        ],
    )
    async def test_export_needs_format_and_reason(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        body: dict[str, str],
        status: int,
    ) -> None:
        account_id = await self._one(client, admin, 42)
        response = await client.post(
            f"/api/v1/accounts/{account_id}/session/export", json=body, headers=admin.headers
        )
        assert response.status_code == status

    async def test_erase_destroys_the_secret(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        account_id = await self._one(client, admin, 43)
        erased = await client.delete(
            f"/api/v1/accounts/{account_id}/session", headers=admin.headers
        )
        assert erased.status_code == 204
        async with sessionmaker() as session:
            row = (
                await session.execute(
                    text("SELECT wrapped_key, ciphertext, nonce, kek_id, state FROM session_secret")
                )
            ).one()
        assert tuple(row) == (None, None, None, None, "erased")
        export = await post_export(client, admin, account_id, "telethon-string", "should fail")
        assert export.status_code == 404
        assert export.json()["error"] == "session_not_found"
        again = await client.delete(f"/api/v1/accounts/{account_id}/session", headers=admin.headers)
        assert again.status_code == 404
        # the same key can be imported again once erased
        reimport = await import_raw(client, admin, telethon_string(43).encode(), "again.txt")
        assert reimport.json()["imported"] == 1

    async def test_unknown_account(self, client: httpx.AsyncClient, admin: Credentials) -> None:
        missing = "00000000-0000-0000-0000-000000000000"
        response = await post_export(client, admin, missing, "telethon", "nothing")
        assert response.status_code == 404
        assert response.json()["error"] == "account_not_found"


class TestTamper:
    @pytest.mark.parametrize("column", ["ciphertext", "wrapped_key", "nonce"])
    async def test_flipped_byte_fails_is_audited_and_marks_unusable(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        sessionmaker: async_sessionmaker[AsyncSession],
        column: str,
    ) -> None:
        response = await import_raw(client, admin, telethon_string(50).encode(), "t.txt")
        account_id = response.json()["results"][0]["account_id"]
        async with sessionmaker() as session:
            value = (
                await session.execute(text(f"SELECT {column} FROM session_secret"))
            ).scalar_one()
        flipped = bytearray(value)
        flipped[len(flipped) // 2] ^= 0x01
        await sql(sessionmaker, f"UPDATE session_secret SET {column} = :v", v=bytes(flipped))
        export = await post_export(client, admin, account_id, "telethon-string", "tamper check")
        assert export.status_code == 409
        assert export.json()["error"] == "decrypt_failed"
        account = (await client.get(f"/api/v1/accounts/{account_id}", headers=admin.headers)).json()
        assert account["session"]["state"] == "tampered"
        audit = (
            await client.get(
                "/api/v1/audit", params={"action": "session.decrypt"}, headers=admin.headers
            )
        ).json()["items"]
        assert audit[0]["result"] == "failure"
        again = await post_export(client, admin, account_id, "telethon-string", "tamper check")
        assert again.status_code == 409
        assert "unusable" in again.json()["detail"]

    async def test_blob_moved_to_another_account_does_not_decrypt(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        a = (await import_raw(client, admin, telethon_string(51).encode(), "a.txt")).json()
        b = (await import_raw(client, admin, telethon_string(52).encode(), "b.txt")).json()
        a_id = a["results"][0]["account_id"].replace("-", "")
        b_id = b["results"][0]["account_id"]
        async with sessionmaker() as session:
            source = (
                await session.execute(
                    text(
                        "SELECT wrapped_key, nonce, ciphertext, kek_id FROM session_secret "
                        "WHERE account_id = :a"
                    ),
                    {"a": a_id},
                )
            ).one()
        await sql(
            sessionmaker,
            "UPDATE session_secret SET wrapped_key = :w, nonce = :n, ciphertext = :c, kek_id = :k "
            "WHERE account_id = :b",
            w=source[0],
            n=source[1],
            c=source[2],
            k=source[3],
            b=b_id.replace("-", ""),
        )
        export = await post_export(client, admin, b_id, "telethon-string", "moved blob")
        assert export.status_code == 409


class TestRbacAndStatus:
    async def test_operator_imports_but_cannot_export_viewer_only_reads(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        operator = await user_with_role(client, sessionmaker, security, "operator")
        viewer = await user_with_role(client, sessionmaker, security, "viewer")
        imported = await import_raw(client, operator, telethon_string(60).encode(), "o.txt")
        assert imported.status_code == 200
        account_id = imported.json()["results"][0]["account_id"]
        export_body = {"format": "telethon-string", "reason": "not allowed"}
        url = f"/api/v1/accounts/{account_id}/session/export"
        assert (
            await client.post(url, json=export_body, headers=operator.headers)
        ).status_code == 403
        assert (await client.post(url, json=export_body, headers=viewer.headers)).status_code == 403
        assert (await import_raw(client, viewer, b"x", "v.txt")).status_code == 403
        delete = await client.delete(
            f"/api/v1/accounts/{account_id}/session", headers=viewer.headers
        )
        assert delete.status_code == 403
        listed = await client.get("/api/v1/accounts", headers=viewer.headers)
        assert listed.status_code == 200
        assert len(listed.json()["items"]) == 1

    async def test_status_counts_secrets_per_key(
        self, app: FastAPI, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        for seed in (70, 71, 72):
            await import_raw(client, admin, telethon_string(seed).encode(), f"{seed}.txt")
        response = await client.get("/api/v1/vault/status", headers=admin.headers)
        assert response.status_code == 200
        body = response.json()
        assert body["source"] == "env"
        assert body["keks"][0]["id"] == body["active_kek_id"]
        assert body["keks"][0]["secrets"] == 3
        assert body["secrets_by_state"] == {"active": 3}
        assert "key" not in str(body["keks"][0].keys() - {"id"})


class TestImportChunks:
    async def test_same_names_get_distinct_labels_and_same_keys_fail_once(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """Within one upload: equal file names become acct, acct-2, acct-3 (also next to an
        existing acct-2); a key given twice is imported once and the copy is refused."""
        await import_raw(client, admin, telethon_string(80).encode(), "x.txt", label="acct-2")
        files = [
            ("files", ("a/acct.txt", telethon_string(81).encode())),
            ("files", ("b/acct.txt", telethon_string(82).encode())),
            ("files", ("c/acct.txt", telethon_string(83).encode())),
            ("files", ("copy.txt", telethon_string(81).encode())),
        ]
        report = (await client.post(IMPORT, files=files, headers=admin.headers)).json()
        assert [r["label"] for r in report["results"][:3]] == ["acct", "acct-3", "acct-4"]
        copy = report["results"][3]
        assert copy["error"] == "duplicate_session"
        assert "a/acct.txt" in copy["detail"]
        audit = (
            await client.get(
                "/api/v1/audit", params={"action": "session.import"}, headers=admin.headers
            )
        ).json()["items"]
        assert [r["result"] for r in audit] == [
            "failure",
            "success",
            "success",
            "success",
            "success",
        ]
        verified = await client.get("/api/v1/audit/verify", headers=admin.headers)
        assert verified.json()["ok"] is True


class TestRecoveryAndKeys:
    async def test_reimport_recovers_a_tampered_session(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """Importing the same session again is how an operator recovers a tampered secret:
        same account, next version, usable again."""
        first = await import_raw(client, admin, telethon_string(90).encode(), "r.txt")
        account_id = first.json()["results"][0]["account_id"]
        await sql(sessionmaker, "UPDATE session_secret SET nonce = :n", n=b"\x00" * 12)
        url = f"/api/v1/accounts/{account_id}/session/export"
        body = {"format": "telethon-string", "reason": "recovery drill"}
        assert (await client.post(url, json=body, headers=admin.headers)).status_code == 409
        again = await import_raw(client, admin, telethon_string(90).encode(), "r.txt")
        result = again.json()["results"][0]
        assert result["ok"] is True
        assert result["account_id"] == account_id
        account = (await client.get(f"/api/v1/accounts/{account_id}", headers=admin.headers)).json()
        assert (account["session"]["state"], account["session"]["version"]) == ("active", 2)
        exported = await client.post(url, json=body, headers=admin.headers)
        assert exported.status_code == 200
        assert StringSession(exported.text).auth_key.key == auth_key(90)

    async def test_missing_key_is_not_tampering(
        self, client: httpx.AsyncClient, admin: Credentials, db_url: str, tmp_path: Path
    ) -> None:
        """A process without the secret's KEK answers 503 and marks nothing; given the old
        key as a previous key it decrypts."""
        from pydantic import SecretStr

        from tests.conftest import TEST_VAULT_KEY, make_settings
        from tgfleet.app import create_app

        imported = await import_raw(client, admin, telethon_string(91).encode(), "k.txt")
        account_id = imported.json()["results"][0]["account_id"]
        other_key = base64.b64encode(b"\x07" * 32).decode()
        url = f"/api/v1/accounts/{account_id}/session/export"
        body = {"format": "telethon-string", "reason": "key check"}
        for previous, expected in ((None, 503), (SecretStr(TEST_VAULT_KEY), 200)):
            settings = make_settings(
                db_url,
                tmp_path / "other",
                vault_key=SecretStr(other_key),
                vault_previous_keys=previous,
            )
            other = create_app(settings)
            async with other.router.lifespan_context(other):
                transport = httpx.ASGITransport(app=other)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as peer:
                    response = await peer.post(url, json=body, headers=admin.headers)
            assert response.status_code == expected, response.text
            account = (
                await client.get(f"/api/v1/accounts/{account_id}", headers=admin.headers)
            ).json()
            assert account["session"]["state"] == "active"
        assert response.status_code == 200

    async def test_refused_upload_is_audited(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        absolute = {"/abs/path.session": telethon_string(92)}
        refused = await import_raw(client, admin, zipped(absolute), "abs.zip")
        assert refused.status_code == 400
        audit = (
            await client.get(
                "/api/v1/audit", params={"action": "session.import"}, headers=admin.headers
            )
        ).json()["items"]
        assert audit[0]["result"] == "failure"
        assert audit[0]["details"]["error"] == "bad_archive"
