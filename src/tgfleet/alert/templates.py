"""``message`` templates of the Telegram receiver: Jinja2, sandboxed, with Alertmanager's data
names; a Go template (Alertmanager's own syntax) is refused with a hint."""

from __future__ import annotations

import re

import jinja2
import jinja2.sandbox

__all__ = ["check_message_template", "message_template_environment"]


def message_template_environment(*, html: bool) -> jinja2.sandbox.SandboxedEnvironment:
    """The Jinja2 environment ``message`` templates run in: sandboxed, missing keys render
    empty (like Go's ``missingkey=zero``), values HTML-escaped in ``parse_mode: HTML``."""
    return jinja2.sandbox.SandboxedEnvironment(
        autoescape=html,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


_GO_TEMPLATE = re.compile(r"\{\{-?\s*(\.|template\b|range\b|end\b|define\b)")


def check_message_template(value: str | None) -> str | None:
    """``value`` if it is a Jinja2 template that parses, else ValueError (with a hint for a
    Go template, or the template's line)."""
    if value is None:
        return None
    if _GO_TEMPLATE.search(value):
        msg = (
            "looks like a Go template (Alertmanager's); tgfleet templates are Jinja2 with "
            "the same names: {{ .CommonLabels.alertname }} -> {{ CommonLabels.alertname }}, "
            "{{ range .Alerts.Firing }}...{{ end }} -> {% for a in Alerts.Firing %}...{% endfor %}"
        )
        raise ValueError(msg)
    try:
        message_template_environment(html=False).parse(value)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"template line {exc.lineno}: {exc.message}") from None
    return value
