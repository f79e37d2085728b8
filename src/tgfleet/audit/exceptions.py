from __future__ import annotations

from tgfleet.exceptions import ServiceUnavailable


class AuditWriteFailed(ServiceUnavailable):
    """The audit record could not be written, so the change it records was not made."""

    code = "audit_unavailable"
