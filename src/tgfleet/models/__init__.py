"""ORM models, one module per table, all on one metadata (``Model.metadata``), and the
enums of their state columns (each defined once, with its table)."""

from tgfleet.kit.model import Model
from tgfleet.models.account import Account, DesiredState
from tgfleet.models.account_event import AccountEvent
from tgfleet.models.account_group import AccountGroup
from tgfleet.models.account_lease import AccountLease
from tgfleet.models.account_status import AccountState, AccountStatus
from tgfleet.models.alert import Alert
from tgfleet.models.api_token import ApiToken
from tgfleet.models.audit_chain_head import AuditChainHead
from tgfleet.models.audit_record import AuditRecord
from tgfleet.models.console_session import ConsoleSession
from tgfleet.models.login_throttle import LoginThrottle
from tgfleet.models.notification import Notification
from tgfleet.models.playbook import Playbook
from tgfleet.models.playbook_version import PlaybookVersion
from tgfleet.models.reply_claim import ReplyClaim
from tgfleet.models.reply_window import ReplyWindow
from tgfleet.models.role import Role
from tgfleet.models.session_secret import SecretState, SessionSecret
from tgfleet.models.silence import Silence
from tgfleet.models.traffic_minute import TrafficMinute
from tgfleet.models.user import User
from tgfleet.models.vault_rotation import RotationState, VaultRotation
from tgfleet.models.worker import Worker, WorkerState

__all__ = [
    "Account",
    "AccountEvent",
    "AccountGroup",
    "AccountLease",
    "AccountState",
    "AccountStatus",
    "Alert",
    "ApiToken",
    "AuditChainHead",
    "AuditRecord",
    "ConsoleSession",
    "DesiredState",
    "LoginThrottle",
    "Model",
    "Notification",
    "Playbook",
    "PlaybookVersion",
    "ReplyClaim",
    "ReplyWindow",
    "Role",
    "RotationState",
    "SecretState",
    "SessionSecret",
    "Silence",
    "TrafficMinute",
    "User",
    "VaultRotation",
    "Worker",
    "WorkerState",
]
