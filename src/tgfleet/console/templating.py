"""The console's Jinja2 environment: autoescaped templates from the package, rendered whole
or block by block (``jinja2-fragments``) for htmx's partial swaps.

Every string a person reads goes through ``_()`` (gettext): the callables installed here read
the request's language from :mod:`tgfleet.console.i18n`, so one environment serves every
language. Numbers and dates go through the ``number``, ``ratio`` and ``moment`` filters (the
reader's locale).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from jinja2_fragments import render_block
from jinja2_fragments.fastapi import Jinja2Blocks

from tgfleet.console import domain_texts, i18n
from tgfleet.console.assets import Vendor, static_url
from tgfleet.console.chart import traffic_svg

#: Observed states and the badge class (colour) each is shown with.
STATE_TONES: dict[str, str] = {
    "online": "ok",
    "starting": "busy",
    "reconnecting": "busy",
    "stopping": "busy",
    "flood_wait": "warn",
    "unassigned": "warn",
    "quarantined": "bad",
    "error": "bad",
    "stopped": "idle",
}


#: Each observed state's name as a person reads it (the badge's text; ``data-state`` keeps
#: the code).
STATE_NAMES: dict[str, str] = {
    "online": i18n.N_("online"),
    "starting": i18n.N_("starting"),
    "reconnecting": i18n.N_("reconnecting"),
    "stopping": i18n.N_("stopping"),
    "flood_wait": i18n.N_("flood wait"),
    "unassigned": i18n.N_("unassigned"),
    "quarantined": i18n.N_("quarantined"),
    "error": i18n.N_("error"),
    "stopped": i18n.N_("stopped"),
}


def state_name(state: str | None) -> str:
    """``state`` in the reader's language (an unknown code as it is)."""
    code = state or "stopped"
    return i18n.gettext(STATE_NAMES[code]) if code in STATE_NAMES else code.replace("_", " ")


def iso(moment: datetime | None) -> str:
    """ISO 8601 in UTC, what ``<time datetime>`` carries (the page shows it in the viewer's
    zone)."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def percent(ratio: float) -> str:
    return i18n.ratio(ratio)


def tone(state: str | None) -> str:
    return STATE_TONES.get(state or "stopped", "idle")


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("tgfleet.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.gettext,
        i18n.ngettext,
        newstyle=True,
        pgettext=i18n.pgettext,
        npgettext=i18n.npgettext,
    )
    environment.globals["language"] = i18n.current
    environment.globals["languages"] = i18n.LANGUAGES
    environment.globals["static_url"] = static_url
    environment.globals["vendor"] = Vendor
    environment.globals["traffic_svg"] = traffic_svg
    environment.filters["iso"] = iso
    environment.filters["percent"] = percent
    environment.filters["tone"] = tone
    environment.filters["state_name"] = state_name
    environment.filters["audit_result"] = domain_texts.audit_result
    environment.filters["desired_state"] = domain_texts.desired_state
    environment.filters["vault_key_state"] = domain_texts.vault_key_state
    environment.filters["rotation_state"] = domain_texts.rotation_state
    environment.filters["number"] = i18n.number
    environment.filters["ratio"] = i18n.ratio
    environment.filters["moment"] = i18n.moment
    return environment


templates = Jinja2Blocks(env=_environment())


def render(name: str, context: dict[str, Any], *, block: str | None = None) -> str:
    """A template (or one of its blocks) as a string: what an SSE message carries."""
    environment = templates.env
    if block is None:
        return environment.get_template(name).render(context)
    return render_block(environment, name, block, context)
