"""Settings: one pydantic-settings model, read from ``TGFLEET_*`` environment variables.

Settings only: nothing here writes a file, and the only files read are the secrets in
``TGFLEET_SECRETS_DIR`` (pydantic-settings reads them: `Settings.load`). The data
directory's check is `tgfleet.kit.data_dir`'s (run at each process start); the generated JWT
secret is auth's (`tgfleet.auth.secret`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final

from pydantic import (
    DirectoryPath,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

#: More trusted proxies than this is a misconfiguration, not a deployment.
MAX_TRUSTED_PROXIES: Final = 64


class Environment(StrEnum):
    DEV = "dev"
    TEST = "test"
    PROD = "prod"


#: Telegram's production data centres (core.telegram.org/resources/cidr.txt; port 443).
DEFAULT_TELEGRAM_DCS: Final = (
    "1=149.154.175.53:443,2=149.154.167.51:443,3=149.154.175.100:443,"
    "4=149.154.167.91:443,5=91.108.56.130:443"
)


class _SecretsDirectory(BaseSettings):
    """``TGFLEET_SECRETS_DIR`` alone: read first, as it says where the other settings'
    files are."""

    model_config = SettingsConfigDict(
        env_prefix="TGFLEET_", extra="ignore", frozen=True, title="Settings"
    )

    secrets_dir: DirectoryPath | None = None


class Settings(BaseSettings):
    """Every setting of tgfleet; the README's configuration table lists them all."""

    model_config = SettingsConfigDict(env_prefix="TGFLEET_", extra="ignore", frozen=True)

    env: Environment = Environment.DEV
    data_dir: Path = Path("./data")
    secrets_dir: DirectoryPath | None = Field(
        default=None,
        description="read settings from the files in this directory named after their "
        "variables (e.g. /run/secrets/TGFLEET_JWT_SECRET); a variable wins over its file",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite+aiosqlite:///<data dir>/tgfleet.db",
    )
    database_password: SecretStr | None = Field(
        default=None,
        description="the database password, put into TGFLEET_DATABASE_URL (which then names "
        "none); for a password kept in a file of TGFLEET_SECRETS_DIR",
    )
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000

    jwt_secret: SecretStr | None = None
    jwt_algorithm: str = "HS256"
    jwt_ttl_seconds: Annotated[int, Field(ge=60, le=86400)] = 900

    max_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024

    login_throttle_threshold: Annotated[int, Field(ge=1)] = 5
    login_throttle_base_seconds: Annotated[float, Field(gt=0)] = 1.0
    login_throttle_max_seconds: Annotated[float, Field(gt=0)] = 900.0
    login_throttle_window_seconds: Annotated[float, Field(gt=0)] = 3600.0
    console_session_idle_seconds: Annotated[int, Field(ge=60)] = Field(
        default=1800, description="a console session ends after this long without a request"
    )
    console_session_max_seconds: Annotated[int, Field(ge=60)] = Field(
        default=43200,
        description="a console session ends this long after sign-in, however busy; at least "
        "the idle timeout",
    )
    console_secure_cookies: bool = Field(
        default=False,
        description="mark the console's cookies Secure even on plain HTTP requests (they are "
        "whenever the request is HTTPS)",
    )
    trusted_proxies: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = Field(
        default=(),
        max_length=MAX_TRUSTED_PROXIES,
        description="proxies (addresses or CIDRs, comma-separated) whose X-Forwarded-For "
        "and X-Forwarded-Proto are believed; empty: the connection's address is the client",
    )

    password_min_length: Annotated[int, Field(ge=8)] = 12
    argon2_time_cost: Annotated[int, Field(ge=1)] = 3
    argon2_memory_kib: Annotated[int, Field(ge=8)] = 65536
    argon2_parallelism: Annotated[int, Field(ge=1)] = 4

    db_pool_size: Annotated[int, Field(ge=1)] = 10
    db_max_overflow: Annotated[int, Field(ge=0)] = 10
    sqlite_busy_timeout_ms: Annotated[int, Field(ge=0)] = 5000

    vault_key_file: Path | None = Field(
        default=None, description="default: <data dir>/vault.key (created by `tgfleet vault init`)"
    )
    vault_key: SecretStr | None = Field(
        default=None, description="base64 of a 32-byte key-encryption key, instead of a key file"
    )
    vault_passphrase: SecretStr | None = Field(
        default=None, description="derive the key-encryption key with scrypt instead"
    )
    vault_previous_keys: SecretStr | None = Field(
        default=None, description="comma-separated base64 keys still usable while rotating"
    )
    vault_allow_readable_key_file: bool = Field(
        default=False, description="accept a key file others can read (read-only secret mounts)"
    )
    vault_extra_dc_ids: list[Annotated[int, Field(ge=1, le=255)]] = Field(
        default_factory=list, description="DC ids accepted besides 1-5 (the sandbox's), JSON list"
    )

    audit_key_file: Path | None = Field(
        default=None, description="default: <data dir>/audit.key (created on first use, 0600)"
    )
    audit_key: SecretStr | None = Field(
        default=None, description="base64 of a 32-byte audit key, instead of the audit key file"
    )
    audit_previous_keys: SecretStr | None = Field(
        default=None, description="comma-separated base64 audit keys that only verify (rotation)"
    )
    reply_text_retention_days: Annotated[int, Field(ge=0, le=3650)] = Field(
        default=7,
        description="days a sent reply's text is kept on its timeline event "
        "(then blanked, the event kept); 0 stores no reply text",
    )
    housekeeping_interval_seconds: Annotated[float, Field(gt=0)] = Field(
        default=600.0,
        description="how often an API process prunes old traffic and reply texts",
    )
    audit_checkpoints_enabled: bool = Field(
        default=True, description="API processes publish signed checkpoints of the chain head"
    )
    audit_checkpoint_every_records: Annotated[int, Field(ge=1)] = Field(
        default=1000, description="publish a checkpoint once this many records were appended"
    )
    audit_checkpoint_every_seconds: Annotated[float, Field(gt=0)] = Field(
        default=600.0, description="or once this long passed since the last, if any record was"
    )
    audit_checkpoint_file: Path | None = Field(
        default=None,
        description="JSON-lines file checkpoints are appended to "
        "(default: <data dir>/audit-checkpoints.jsonl)",
    )
    audit_checkpoint_stdout: bool = Field(
        default=False, description="also print each checkpoint as a JSON line on standard output"
    )
    audit_checkpoint_webhook_url: SecretStr | None = Field(
        default=None, description="also POST each checkpoint (JSON) to this URL"
    )

    import_max_file_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    import_max_upload_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    import_max_entries: Annotated[int, Field(ge=1)] = 10_000
    import_max_total_bytes: Annotated[int, Field(ge=1024)] = 512 * 1024 * 1024

    worker_id: str | None = Field(
        default=None,
        description="this worker's id (default: the host name, or <host>-2, -3... while live "
        "workers on the host hold it)",
    )
    worker_reconcile_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    worker_status_flush_seconds: Annotated[float, Field(gt=0, le=60)] = 0.2
    worker_connect_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 15.0
    worker_request_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 20.0
    worker_handler_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0
    worker_retry_budget: Annotated[int, Field(ge=1)] = Field(
        default=200, description="reconnect attempts a worker may make in a burst"
    )
    worker_retry_refill_per_second: Annotated[float, Field(gt=0)] = Field(
        default=5.0, description="reconnect attempts the budget regains per second"
    )
    worker_max_retry_seconds: Annotated[float, Field(gt=0)] = 60.0
    worker_max_reconnect_attempts: Annotated[int, Field(ge=1)] = Field(
        default=1000,
        description="attempts in one outage before an account goes to error (~16 h at the cap)",
    )
    worker_start_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 50
    worker_capacity: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=1000, description="most accounts this worker holds (PostgreSQL leases)"
    )
    lease_ttl_seconds: Annotated[float, Field(ge=3, le=600)] = Field(
        default=15.0, description="worker lease lifetime; renewed every third of it"
    )
    lease_grace_seconds: Annotated[float, Field(ge=0, le=600)] | None = Field(
        default=None,
        description="wait after a lease expired before another worker takes it "
        "(default: 2 s; the holder stopped its clients TTL/2 before its lease expired)",
    )
    lease_release_step: Annotated[int, Field(ge=1)] = Field(
        default=50, description="most accounts a worker hands over per renewal when above its share"
    )

    telegram_api_id: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="your app's api_id from my.telegram.org (the demo needs none)"
    )
    telegram_api_hash: SecretStr | None = Field(
        default=None, description="your app's api_hash from my.telegram.org"
    )

    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1"
    )
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None
    llm_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 20.0

    metrics_per_account: bool = Field(
        default=False,
        description="export per-account series (an account label: one series per account)",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="when set, /metrics needs 'Authorization: Bearer <token>'"
    )
    metrics_fleet_refresh_seconds: Annotated[float, Field(ge=0, le=300)] = Field(
        default=5.0, description="cache of the fleet-wide gauges read from the database"
    )
    worker_metrics_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a metrics/health port is meant to be scraped
        description="listen address of `tgfleet worker`'s /metrics and health port",
    )
    worker_metrics_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=9464, description="`tgfleet worker`'s /metrics and health port (0: a free one)"
    )

    health_cache_seconds: Annotated[float, Field(ge=0, le=300)] = Field(
        default=5.0, description="how long a /health answer is reused (0: never)"
    )
    health_check_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=2.0, description="each /health check's time limit (a check over it fails)"
    )
    health_disk_warn_bytes: Annotated[int, Field(ge=0)] = Field(
        default=1024**3, description="free space in the data dir below which /health warns"
    )
    health_disk_fail_bytes: Annotated[int, Field(ge=0)] = Field(
        default=100 * 1024**2, description="free space in the data dir below which /health fails"
    )
    health_online_warn_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.9, description="fleet online ratio below which /health warns"
    )
    health_online_fail_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5, description="fleet online ratio below which /health fails"
    )

    telegram_dcs: str = Field(
        default=DEFAULT_TELEGRAM_DCS,
        description="DC addresses the network monitor probes: 'id=host:port,...' (empty: off)",
    )
    network_probe_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    network_probe_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 3.0

    alerting_config: Path | None = Field(
        default=None,
        description="alerting configuration, Alertmanager's YAML shape (docs/alerting.md); "
        "default: every alert to a receiver with no integrations (nothing is sent)",
    )
    alerting_telegram_bot_token: SecretStr | None = Field(
        default=None,
        description="the bot token for telegram_configs that name none (instead of a file)",
    )
    alerting_enabled: bool = Field(
        default=True, description="run the alert evaluator in API processes (one leads)"
    )
    alerting_evaluation_interval_seconds: Annotated[float, Field(gt=0, le=300)] = Field(
        default=2.0, description="how often the fleet's conditions are turned into alerts"
    )
    alerting_online_ratio_threshold: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.9, description="FleetOnlineRatioLow fires below this online share"
    )
    alerting_flood_wait_threshold_seconds: Annotated[float, Field(ge=0)] = Field(
        default=300.0, description="AccountFloodWait fires for flood waits at least this long"
    )
    alerting_external_url: str = Field(
        default="", description="this tgfleet's URL, shown in notifications (externalURL)"
    )

    log_level: str = "INFO"
    log_json: bool | None = Field(default=None, description="default: JSON in prod")

    @model_validator(mode="after")
    def _telegram_app_pair(self) -> Settings:
        if (self.telegram_api_id is None) != (self.telegram_api_hash is None):
            msg = (
                "set both TGFLEET_TELEGRAM_API_ID and TGFLEET_TELEGRAM_API_HASH (from "
                "my.telegram.org), or neither (the sandbox needs none)"
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _database_password_has_a_url(self) -> Settings:
        if self.database_password is None:
            return self
        if self.database_url is None:
            msg = (
                "TGFLEET_DATABASE_PASSWORD is set but TGFLEET_DATABASE_URL is not: the "
                "password is for a PostgreSQL URL (postgresql+asyncpg://user@host:5432/db)"
            )
            raise ValueError(msg)
        try:
            url = make_url(self.database_url)
        except ArgumentError as exc:
            msg = "TGFLEET_DATABASE_URL is not a database URL"
            raise ValueError(msg) from exc
        if url.password is not None:
            msg = (
                "TGFLEET_DATABASE_URL carries a password and TGFLEET_DATABASE_PASSWORD is set "
                "too: keep one of them"
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _console_session_bounds(self) -> Settings:
        if self.console_session_max_seconds < self.console_session_idle_seconds:
            msg = (
                f"TGFLEET_CONSOLE_SESSION_MAX_SECONDS ({self.console_session_max_seconds}) "
                "must be at least TGFLEET_CONSOLE_SESSION_IDLE_SECONDS "
                f"({self.console_session_idle_seconds}): a session cannot idle out after its "
                "absolute end"
            )
            raise ValueError(msg)
        return self

    @field_validator("jwt_algorithm")
    @classmethod
    def _symmetric_algorithm(cls, value: str) -> str:
        allowed = {"HS256", "HS384", "HS512"}
        if value not in allowed:
            msg = f"must be one of {sorted(allowed)}"
            raise ValueError(msg)
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: object) -> object:
        if isinstance(value, str):  # the environment's form: "10.0.0.0/8, 127.0.0.1"
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("telegram_dcs")
    @classmethod
    def _dc_list(cls, value: str) -> str:
        parse_dcs(value)  # raises ValueError with the entry that is wrong
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            msg = "must be DEBUG, INFO, WARNING or ERROR"
            raise ValueError(msg)
        return upper

    @classmethod
    def load(cls) -> Settings:
        """The settings from the environment and, when ``TGFLEET_SECRETS_DIR`` names a
        directory, from the files in it named after a variable (``TGFLEET_JWT_SECRET``,
        ``TGFLEET_DATABASE_PASSWORD``...; the name's case is ignored, the value stripped): a
        mounted secret instead of a variable. A variable wins over its file."""
        directory = _SecretsDirectory().secrets_dir
        return cls(_secrets_dir=directory)

    @property
    def effective_database_url(self) -> str:
        if self.database_url and self.database_password is not None:
            url = make_url(self.database_url).set(
                password=self.database_password.get_secret_value()
            )
            return url.render_as_string(hide_password=False)
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'tgfleet.db'}"

    @property
    def effective_vault_key_file(self) -> Path:
        return self.vault_key_file or self.data_dir / "vault.key"

    @property
    def vault_salt_file(self) -> Path:
        return self.data_dir / "vault.salt"

    @property
    def effective_audit_key_file(self) -> Path:
        return self.audit_key_file or self.data_dir / "audit.key"

    @property
    def effective_audit_checkpoint_file(self) -> Path:
        return self.audit_checkpoint_file or self.data_dir / "audit-checkpoints.jsonl"

    @property
    def effective_log_json(self) -> bool:
        if self.log_json is not None:
            return self.log_json
        return self.env is Environment.PROD


def parse_dcs(value: str) -> dict[int, tuple[str, int]]:
    """``"1=149.154.175.53:443,2=..."`` -> {1: ("149.154.175.53", 443), ...}."""
    dcs: dict[int, tuple[str, int]] = {}
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        dc, sep, address = entry.partition("=")
        host, colon, port = address.rpartition(":")
        if not (sep and colon and dc.strip().isdigit() and host and port.isdigit()):
            raise ValueError(f"{entry!r} is not 'id=host:port' (e.g. 2=149.154.167.51:443)")
        number, port_number = int(dc), int(port)
        if not 1 <= port_number <= 65535:
            raise ValueError(f"{entry!r}: port {port_number} is out of range")
        if number in dcs:
            raise ValueError(f"DC {number} is listed twice")
        dcs[number] = (host.strip("[]"), port_number)
    return dcs


#: The CLI's client side (`tgfleet.cli._remote`): which server to talk to, not settings of
#: a tgfleet process.
CLI_CLIENT_VARIABLES = frozenset(
    {"TGFLEET_SERVER", "TGFLEET_TOKEN", "TGFLEET_CONTEXT", "TGFLEET_CONFIG"}
)


def unknown_settings(environ: Mapping[str, str]) -> list[str]:
    """``TGFLEET_*`` variables that name no setting (a typo would otherwise pass silently)."""
    known = {f"TGFLEET_{name.upper()}" for name in Settings.model_fields}
    known |= {"TGFLEET_TEST_DATABASE_URL"} | CLI_CLIENT_VARIABLES
    return sorted(name for name in environ if name.startswith("TGFLEET_") and name not in known)
