"""The alerts pages: firing alerts grouped as the routing tree groups them (with what mutes
each), silences (create from an alert's row or blank, list, expire), the notification log
with each receiver's delivery results, and a test notification to a receiver. Each action
is its API twin's service, with the same permission and audit record; reads are audited as
the API's are (``alert.read``, ``silence.read``, ``alert.history.read``)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from tgfleet.alert import service as alert_service
from tgfleet.alert.runtime import send_test_notification
from tgfleet.audit import service as audit_service
from tgfleet.auth.dependencies import audit_context
from tgfleet.components import AppComponents
from tgfleet.console import views_alerts
from tgfleet.console.guard import AlertReader, AlertWriter, Viewer
from tgfleet.console.i18n import gettext as _
from tgfleet.console.pages import page
from tgfleet.console.web import redirect_with_flash
from tgfleet.exceptions import InvalidInput, NotFound, ServiceUnavailable
from tgfleet.kit.clock import utcnow
from tgfleet.kit.http import DbSession, Meta

router = APIRouter(include_in_schema=False)

Cursor = Annotated[str | None, Query(max_length=1100)]
Short = Annotated[str, Query(max_length=128)]
Names = Annotated[list[str], Query(alias="name")]
Operators = Annotated[list[str], Query(alias="op")]
Values = Annotated[list[str], Query(alias="value")]


async def _audit_read(session: DbSession, viewer: Viewer, meta: Meta, what: str) -> None:
    await audit_service.record(
        session, audit_context(viewer.principal, meta), action=f"{what}.read", target="alerting"
    )


@router.get("/alerts")
async def alerts(
    request: Request,
    viewer: AlertReader,
    components: AppComponents,
    session: DbSession,
    meta: Meta,
    cursor: Cursor = None,
) -> Response:
    runtime = components.alerting
    config = await views_alerts.alerting_config(components.settings, runtime)
    data = await views_alerts.firing(
        session, config, running=runtime is not None, cursor=cursor or None
    )
    await _audit_read(session, viewer, meta, "alert")
    return page(request, "alerts.html", viewer, {"data": data}, name="alerts")


@router.get("/alerts/silences")
async def silences(
    request: Request, viewer: AlertReader, session: DbSession, meta: Meta
) -> Response:
    data = await views_alerts.silences(session)
    await _audit_read(session, viewer, meta, "silence")
    return page(request, "alert_silences.html", viewer, {"data": data}, name="alerts")


@router.get("/alerts/silences/new")
async def new_silence(
    request: Request,
    viewer: AlertWriter,
    session: DbSession,
    names: Names = [],  # noqa: B006 - FastAPI copies a default list per request
    operators: Operators = [],  # noqa: B006
    values: Values = [],  # noqa: B006
    alert: Annotated[str, Query(max_length=16)] = "",
    duration: Annotated[str, Query(max_length=8)] = "1h",
    ends_at: Annotated[str, Query(max_length=32)] = "",
    comment: Annotated[str, Query(max_length=views_alerts.COMMENT_MAX)] = "",
    add: Annotated[str, Query(max_length=4)] = "",
    drop: Annotated[int | None, Query(ge=0, lt=views_alerts.MAX_MATCHERS)] = None,
) -> Response:
    """The silence form: prefilled from a firing alert's labels (``alert``: its
    fingerprint), or the rows as submitted so far (a row added or removed without
    JavaScript: the form's own GET buttons), or one blank row."""
    rows = views_alerts.rows_from_fields(names, operators, values)
    form = views_alerts.SilenceForm(
        rows=rows, duration=duration, ends_at=ends_at, comment=comment, alert=alert
    )
    if alert and not rows:
        labels = await views_alerts.alert_labels(session, alert)
        if labels is None:
            form.errors["matchers"] = _(
                "That alert no longer fires: write the matchers yourself, or go back to the "
                "firing alerts."
            )
        else:
            form.rows = views_alerts.rows_from_labels(labels)
    if drop is not None and drop < len(form.rows):
        del form.rows[drop]
    if add and len(form.rows) < views_alerts.MAX_MATCHERS:
        form.rows.append(views_alerts.MatcherRow())
    if not form.rows:
        form.rows.append(views_alerts.MatcherRow())
    return page(request, "alert_silence_form.html", viewer, {"form": form}, name="alerts")


@router.post("/alerts/silences")
async def create_silence(
    request: Request,
    viewer: AlertWriter,
    session: DbSession,
    meta: Meta,
    names: Annotated[list[str], Form(alias="name")] = [],  # noqa: B006
    operators: Annotated[list[str], Form(alias="op")] = [],  # noqa: B006
    values: Annotated[list[str], Form(alias="value")] = [],  # noqa: B006
    alert: Annotated[str, Form(max_length=16)] = "",
    duration: Annotated[str, Form(max_length=8)] = "",
    ends_at: Annotated[str, Form(max_length=32)] = "",
    comment: Annotated[str, Form(max_length=views_alerts.COMMENT_MAX)] = "",
) -> Response:
    """``POST /silences``'s service (``silence.create`` audited). A refused form comes back
    with the message next to the field, nothing written."""
    form = views_alerts.SilenceForm(
        rows=views_alerts.rows_from_fields(names, operators, values),
        duration=duration,
        ends_at=ends_at,
        comment=comment,
        alert=alert,
    )
    checked = views_alerts.check(form, utcnow())
    if checked is not None:
        matchers, end = checked
        try:
            row = await alert_service.create_silence(
                session,
                audit_context(viewer.principal, meta),
                matchers=matchers,
                starts_at=None,
                ends_at=end,
                comment=form.comment,
            )
        except InvalidInput as exc:
            form.errors[views_alerts.refusal_field(exc)] = exc.message
        else:
            return redirect_with_flash(
                "/alerts",
                _("Silence %(id)s created: it mutes the alerts its matchers match until %(end)s.")
                % {"id": row.id, "end": row.ends_at.strftime("%Y-%m-%d %H:%M UTC")},
            )
    if not form.rows:
        form.rows.append(views_alerts.MatcherRow())
    return page(
        request,
        "alert_silence_form.html",
        viewer,
        {"form": form},
        name="alerts",
        status_code=422,
    )


@router.post("/alerts/silences/{silence_id}/expire")
async def expire_silence(
    silence_id: uuid.UUID, viewer: AlertWriter, session: DbSession, meta: Meta
) -> Response:
    """``DELETE /silences/{id}``'s service (``silence.expire`` audited): it ends now."""
    try:
        await alert_service.expire_silence(
            session, audit_context(viewer.principal, meta), silence_id
        )
    except NotFound:
        return redirect_with_flash(
            "/alerts/silences", _("No silence %(id)s.") % {"id": silence_id}, "bad"
        )
    return redirect_with_flash(
        "/alerts/silences",
        _("Silence %(id)s expired: the alerts it muted notify again.") % {"id": silence_id},
    )


@router.get("/alerts/history")
async def history(
    request: Request,
    viewer: AlertReader,
    components: AppComponents,
    session: DbSession,
    meta: Meta,
    receiver: Short = "",
    alertname: Short = "",
    cursor: Cursor = None,
) -> Response:
    config = await views_alerts.alerting_config(components.settings, components.alerting)
    data = await views_alerts.history(
        session,
        receiver=receiver.strip(),
        alertname=alertname.strip(),
        cursor=cursor or None,
        receivers=[item.name for item in config.receivers],
    )
    await _audit_read(session, viewer, meta, "alert.history")
    return page(request, "alert_history.html", viewer, {"data": data}, name="alerts")


@router.post("/alerts/test")
async def send_test(
    viewer: AlertWriter,
    components: AppComponents,
    session: DbSession,
    meta: Meta,
    receiver: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """``POST /alerts/test``'s service (``alert.test`` audited): the answer says which
    integrations delivered, which failed and why, or that the receiver has none."""
    name = receiver.strip()
    if not name:
        return redirect_with_flash("/alerts#test", _("Choose the receiver to test."), "bad")
    try:
        results = await send_test_notification(
            components.alerting, session, audit_context(viewer.principal, meta), name
        )
    except (NotFound, ServiceUnavailable) as exc:
        return redirect_with_flash("/alerts#test", exc.message, "bad")
    text, level = views_alerts.delivery_answer(name, results)
    return redirect_with_flash("/alerts#test", text, level)
