"""The data directory's privacy check: everything that must stay private (the SQLite
database, the generated JWT secret, the vault and audit key files) lives in it, so it is
created 0700, and a process refuses to start on a directory or secret file that group or
others can reach, with a message that says how to fix it.
"""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from tgfleet.config import Settings
from tgfleet.exceptions import ConfigError


def ensure_data_dir(settings: Settings) -> Path:
    """Create the data dir 0700, or refuse one that group or others can reach; refuse a
    SQLite database file that group or others can reach."""
    path = settings.data_dir
    if not path.exists():
        path.mkdir(mode=0o700, parents=True)
        path.chmod(0o700)  # mkdir's mode is masked by the umask
    if not path.is_dir():
        msg = f"TGFLEET_DATA_DIR {path} exists but is not a directory"
        raise ConfigError(msg)
    refuse_loose(path, 0o077, f"chmod 700 {path}")
    database = sqlite_path(settings.effective_database_url)
    if database is not None and database.exists():
        refuse_loose(database, 0o077, f"chmod 600 {database}")
    return path


def sqlite_path(database_url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other databases and in-memory SQLite."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def refuse_loose(path: Path, forbidden_bits: int, fix: str) -> None:
    """Raise `ConfigError` (naming ``fix``) when ``path``'s mode has any of ``forbidden_bits``."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & forbidden_bits:
        msg = f"{path} has mode {mode:04o}, open to group or others; run: {fix}"
        raise ConfigError(msg)
