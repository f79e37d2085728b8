"""Vault errors. Every message is specific and never contains key material."""

from __future__ import annotations

from tgfleet.exceptions import AppError, ConfigError, Conflict, NotFound, ServiceUnavailable


class SessionFormatError(AppError):
    """An input is not a usable session. Subclasses say exactly why."""

    status_code = 400
    code = "invalid_session"


class NotSqliteError(SessionFormatError):
    code = "not_sqlite"


class ForeignSqliteError(SessionFormatError):
    """A SQLite database, but not a Telethon or Pyrogram session."""

    code = "foreign_sqlite"


class UnknownSchemaVersionError(SessionFormatError):
    code = "unknown_schema_version"


class SessionRowCountError(SessionFormatError):
    """The sessions table has no row, or several."""

    code = "session_row_count"


class AuthKeyError(SessionFormatError):
    """The auth key is missing or not 256 bytes."""

    code = "bad_auth_key"


class DcIdError(SessionFormatError):
    code = "bad_dc_id"


class AddressError(SessionFormatError):
    """Bad server address or port."""

    code = "bad_address"


class CorruptSessionError(SessionFormatError):
    """Truncated or corrupt file."""

    code = "corrupt_session"


class SessionStringError(SessionFormatError):
    """A string session of the wrong length or alphabet."""

    code = "bad_session_string"


class UnknownFormatError(SessionFormatError):
    code = "unknown_format"


class ImportTooLargeError(AppError):
    status_code = 413
    code = "import_too_large"


class ArchiveError(AppError):
    """A zip or folder refused: bad entry names, too many entries, a zip bomb."""

    status_code = 400
    code = "bad_archive"


class DuplicateSessionError(Conflict):
    code = "duplicate_session"


class VaultKeyError(ConfigError):
    """No usable key-encryption key: the message says how to provide one."""

    code = "vault_key_error"


class DecryptError(AppError):
    """A secret did not decrypt: tampered ciphertext, wrapped key, or a moved blob."""

    status_code = 409
    code = "decrypt_failed"
    keeps_changes = True  # the failure is audited and the secret marked unusable


class KeyUnavailable(ServiceUnavailable):
    """The KEK a secret names is not in this process's keyring: a configuration problem
    (a missing previous key, a stale process), not tampering. Nothing is marked."""

    code = "vault_key_unavailable"


class SessionNotFound(NotFound):
    code = "session_not_found"


class RotationInProgress(ServiceUnavailable):
    code = "rotation_in_progress"


class ReplaceNeedsOneSession(AppError):
    status_code = 422
    code = "one_session_expected"
