"""ORM models, one module per table, all on one metadata (``Model.metadata``)."""

from tgfleet.kit.model import Model
from tgfleet.models.api_token import ApiToken
from tgfleet.models.audit_chain_head import AuditChainHead
from tgfleet.models.audit_record import AuditRecord
from tgfleet.models.login_throttle import LoginThrottle
from tgfleet.models.role import Role
from tgfleet.models.user import User

__all__ = [
    "ApiToken",
    "AuditChainHead",
    "AuditRecord",
    "LoginThrottle",
    "Model",
    "Role",
    "User",
]
