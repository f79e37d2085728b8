"""ORM models, one module per table, all on one metadata (``Model.metadata``)."""

from tgfleet.kit.model import Model
from tgfleet.models.account import Account
from tgfleet.models.api_token import ApiToken
from tgfleet.models.audit_chain_head import AuditChainHead
from tgfleet.models.audit_record import AuditRecord
from tgfleet.models.login_throttle import LoginThrottle
from tgfleet.models.role import Role
from tgfleet.models.session_secret import SessionSecret
from tgfleet.models.user import User
from tgfleet.models.vault_rotation import VaultRotation

__all__ = [
    "Account",
    "ApiToken",
    "AuditChainHead",
    "AuditRecord",
    "LoginThrottle",
    "Model",
    "Role",
    "SessionSecret",
    "User",
    "VaultRotation",
]
