from __future__ import annotations

from tgfleet.exceptions import AppError, ConfigError, ServiceUnavailable


class AuditWriteFailed(ServiceUnavailable):
    """The audit record could not be written, so the change it records was not made."""

    code = "audit_unavailable"


class AuditKeyError(ConfigError):
    """No usable audit key, or a key file that cannot be used: the message says how to fix it."""

    code = "audit_key_error"


class CheckpointError(AppError):
    """A checkpoint file or line that cannot be used as one."""

    code = "invalid_checkpoint"
