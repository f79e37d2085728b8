"""The JWT signing secret: ``TGFLEET_JWT_SECRET``, or one generated on first use into the
data dir (``jwt_secret``, mode 0600) and read back by every later start."""

from __future__ import annotations

import secrets

from tgfleet.config import Settings
from tgfleet.exceptions import ConfigError
from tgfleet.kit.data_dir import ensure_data_dir, refuse_loose
from tgfleet.kit.files import write_private_file

JWT_SECRET_FILE = "jwt_secret"  # noqa: S105 - a file name


def jwt_secret(settings: Settings) -> str:
    """The JWT signing secret: from the setting, or generated once into the data dir (0600)."""
    if settings.jwt_secret is not None:
        value = settings.jwt_secret.get_secret_value()
        if len(value) < 32:
            msg = "TGFLEET_JWT_SECRET must be at least 32 characters"
            raise ConfigError(msg)
        return value
    path = ensure_data_dir(settings) / JWT_SECRET_FILE
    if path.exists():
        refuse_loose(path, 0o077, f"chmod 600 {path}")
        value = path.read_text(encoding="ascii").strip()
        if len(value) < 32:
            msg = f"{path} holds a secret shorter than 32 characters; delete it to regenerate"
            raise ConfigError(msg)
        return value
    value = secrets.token_urlsafe(48)
    write_private_file(path, value.encode("ascii"))
    return value
