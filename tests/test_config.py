"""Settings and the data directory's safety checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from tgfleet.auth.secret import jwt_secret
from tgfleet.config import Environment, Settings, unknown_settings
from tgfleet.exceptions import ConfigError
from tgfleet.kit.data_dir import ensure_data_dir


class TestDefaults:
    def test_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in list(os.environ):
            if name.startswith("TGFLEET_"):
                monkeypatch.delenv(name)
        settings = Settings()
        assert settings.env is Environment.DEV
        assert (settings.host, settings.port) == ("127.0.0.1", 8000)
        assert settings.data_dir == Path("./data")
        assert settings.effective_database_url == (
            f"sqlite+aiosqlite:///{Path('./data').resolve() / 'tgfleet.db'}"
        )
        assert settings.max_body_bytes == 1024 * 1024

    def test_environment_prefix(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TGFLEET_PORT", "9001")
        monkeypatch.setenv("TGFLEET_ENV", "prod")
        settings = Settings()
        assert settings.port == 9001
        assert settings.effective_log_json is True

    @pytest.mark.parametrize(
        ("name", "value"),
        [("TGFLEET_PORT", "70000"), ("TGFLEET_ENV", "staging"), ("TGFLEET_JWT_ALGORITHM", "none")],
    )
    def test_bad_values_are_refused(
        self, monkeypatch: pytest.MonkeyPatch, name: str, value: str
    ) -> None:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError):
            Settings()

    def test_unknown_variables_are_reported(self) -> None:
        environ = {"TGFLEET_PORT": "1", "TGFLEET_PROT": "2", "TGFLEET_TEST_DATABASE_URL": "x"}
        assert unknown_settings(environ) == ["TGFLEET_PROT"]


class TestDataDir:
    def test_created_private(self, tmp_path: Path) -> None:
        target = tmp_path / "a" / "data"
        ensure_data_dir(Settings(data_dir=target))
        assert target.stat().st_mode & 0o777 == 0o700

    def test_loose_dir_is_refused_with_the_fix(self, tmp_path: Path) -> None:
        target = tmp_path / "open"
        target.mkdir(mode=0o755)
        target.chmod(0o755)
        with pytest.raises(ConfigError, match=f"chmod 700 {target}"):
            ensure_data_dir(Settings(data_dir=target))

    def test_file_instead_of_dir(self, tmp_path: Path) -> None:
        target = tmp_path / "file"
        target.write_text("x")
        with pytest.raises(ConfigError, match="not a directory"):
            ensure_data_dir(Settings(data_dir=target))

    def test_readable_sqlite_file_is_refused(self, tmp_path: Path) -> None:
        data = tmp_path / "data"
        data.mkdir(mode=0o700)
        database = data / "tgfleet.db"
        database.write_bytes(b"")
        database.chmod(0o644)
        with pytest.raises(ConfigError, match="chmod 600"):
            ensure_data_dir(Settings(data_dir=data))


class TestJwtSecret:
    def test_generated_once_private_and_reused(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path / "data")
        first = jwt_secret(settings)
        path = tmp_path / "data" / "jwt_secret"
        assert path.stat().st_mode & 0o777 == 0o600
        assert len(first) >= 32
        assert jwt_secret(settings) == first

    def test_configured_secret_wins_and_must_be_long(self, tmp_path: Path) -> None:
        good = Settings(data_dir=tmp_path / "d", jwt_secret=SecretStr("s" * 40))
        assert jwt_secret(good) == "s" * 40
        with pytest.raises(ConfigError, match="at least 32"):
            jwt_secret(Settings(data_dir=tmp_path / "d", jwt_secret=SecretStr("short")))

    def test_readable_secret_file_is_refused(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path / "data")
        jwt_secret(settings)
        (tmp_path / "data" / "jwt_secret").chmod(0o644)
        with pytest.raises(ConfigError, match="chmod 600"):
            jwt_secret(settings)

    def test_secret_is_not_in_repr(self) -> None:
        settings = Settings(jwt_secret=SecretStr("t" * 40))
        assert "t" * 40 not in repr(settings)


class TestSecretsDir:
    """TGFLEET_SECRETS_DIR: settings from mounted files (compose and Kubernetes secrets)."""

    @pytest.fixture(autouse=True)
    def _clean_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in list(os.environ):
            if name.startswith("TGFLEET_"):
                monkeypatch.delenv(name)

    def test_files_named_after_variables_are_read_stripped(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A file per variable (any case), its trailing newline dropped, as `echo` writes."""
        (tmp_path / "TGFLEET_JWT_SECRET").write_text("j" * 40 + "\n")
        (tmp_path / "tgfleet_vault_key").write_text("a2V5\n")
        monkeypatch.setenv("TGFLEET_SECRETS_DIR", str(tmp_path))
        settings = Settings.load()
        assert settings.jwt_secret is not None
        assert settings.jwt_secret.get_secret_value() == "j" * 40
        assert settings.vault_key is not None
        assert settings.vault_key.get_secret_value() == "a2V5"
        assert settings.secrets_dir == tmp_path

    def test_a_variable_wins_over_its_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "TGFLEET_JWT_SECRET").write_text("f" * 40)
        monkeypatch.setenv("TGFLEET_SECRETS_DIR", str(tmp_path))
        monkeypatch.setenv("TGFLEET_JWT_SECRET", "v" * 40)
        settings = Settings.load()
        assert settings.jwt_secret is not None
        assert settings.jwt_secret.get_secret_value() == "v" * 40

    def test_without_the_variable_no_file_is_read(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "TGFLEET_JWT_SECRET").write_text("f" * 40)
        monkeypatch.chdir(tmp_path)
        assert Settings.load().jwt_secret is None

    def test_a_missing_directory_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TGFLEET_SECRETS_DIR", str(tmp_path / "absent"))
        with pytest.raises(ValidationError, match="secrets_dir"):
            Settings.load()


class TestDatabasePassword:
    URL = "postgresql+asyncpg://tgfleet@db.internal:5432/tgfleet"

    def test_the_password_goes_into_the_url(self) -> None:
        """Characters a URL escapes survive (SQLAlchemy quotes them)."""
        settings = Settings(database_url=self.URL, database_password=SecretStr("p@ss:w/rd"))
        assert settings.effective_database_url == (
            "postgresql+asyncpg://tgfleet:p%40ss%3Aw%2Frd@db.internal:5432/tgfleet"
        )
        assert "p@ss" not in repr(settings)

    def test_from_a_secret_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "TGFLEET_DATABASE_PASSWORD").write_text("hunter2hunter2\n")
        monkeypatch.setenv("TGFLEET_SECRETS_DIR", str(tmp_path))
        monkeypatch.setenv("TGFLEET_DATABASE_URL", self.URL)
        assert Settings.load().effective_database_url == (
            "postgresql+asyncpg://tgfleet:hunter2hunter2@db.internal:5432/tgfleet"
        )

    def test_no_password_leaves_the_url_alone(self) -> None:
        assert Settings(database_url=self.URL).effective_database_url == self.URL

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            (None, "TGFLEET_DATABASE_URL is not"),
            ("postgresql+asyncpg://u:inline@h/db", "keep one of them"),
            ("not a url", "not a database URL"),
        ],
    )
    def test_refused_combinations(self, url: str | None, message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            Settings(database_url=url, database_password=SecretStr("x"))
