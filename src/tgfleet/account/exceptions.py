from __future__ import annotations

from typing import ClassVar

from tgfleet.exceptions import AppError, Conflict, NotFound


class AccountNotFound(NotFound):
    code = "account_not_found"


class AccountLabelTaken(Conflict):
    code = "account_label_taken"


class AccountsNotFound(NotFound):
    """A bulk command named ids that do not exist; nothing was changed."""

    code = "accounts_not_found"


class GroupNotFound(NotFound):
    code = "group_not_found"


class InvalidBulkTarget(AppError):
    """A bulk request that names neither ids nor a filter, or both, or too many ids."""

    status_code: ClassVar[int] = 422
    code: ClassVar[str] = "invalid_bulk_target"


class EmptyFilter(AppError):
    """A filter with no field: refused so that nobody commands the whole fleet by accident
    (``{"all": true}`` says so explicitly)."""

    status_code: ClassVar[int] = 422
    code: ClassVar[str] = "empty_filter"


class InvalidGroupSettings(AppError):
    """Group settings that cannot hold together (a version without a playbook, chat id 0,
    ``create`` without chat ids...)."""

    status_code: ClassVar[int] = 422
    code: ClassVar[str] = "invalid_group_settings"


class GroupNeedsPlaybook(AppError):
    status_code: ClassVar[int] = 422
    code: ClassVar[str] = "group_needs_playbook"


class UnknownCommand(AppError):
    status_code: ClassVar[int] = 422
    code: ClassVar[str] = "unknown_command"


class UnknownSort(AppError):
    status_code: ClassVar[int] = 422
    code: ClassVar[str] = "unknown_sort"


class CursorSortMismatch(AppError):
    """A listing cursor made for another sort: continuing with it would skip or repeat."""

    status_code: ClassVar[int] = 422
    code: ClassVar[str] = "cursor_sort_mismatch"
