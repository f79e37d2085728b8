from __future__ import annotations

from tgfleet.exceptions import AppError, Forbidden


class SignInRequired(AppError):
    """No console session, or one that ended (idle, expired, revoked, password changed):
    a page redirects to the sign-in form, htmx is told to go there."""

    status_code = 401
    code = "sign_in_required"


class CsrfRefused(Forbidden):
    """A state-changing request without this session's CSRF token, or from another site."""

    code = "csrf_refused"
    #: Its refusal is audited: the record must outlive the request's rollback.
    keeps_changes = True
