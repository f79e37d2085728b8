from __future__ import annotations

from tgfleet.exceptions import Conflict, NotFound


class AccountNotFound(NotFound):
    code = "account_not_found"


class AccountLabelTaken(Conflict):
    code = "account_label_taken"
