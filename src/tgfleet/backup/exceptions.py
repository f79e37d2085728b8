from __future__ import annotations

from tgfleet.exceptions import AppError


class BackupError(AppError):
    """A backup could not be taken, verified or restored; the message says what to do."""

    code = "backup_failed"


class BackupFileError(BackupError):
    """The backup file is not a tgfleet backup, or is damaged or truncated."""

    code = "backup_damaged"


class BackupKeyMissing(BackupError):
    """The configured keys do not open what the backup's records need."""

    code = "backup_key_missing"
