"""The overview's traffic chart, drawn on the server as SVG: no chart library to load, no
script to run, readable without JavaScript, coloured by the stylesheet (dark mode too)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from tgfleet.account.activity import TrafficPoint
from tgfleet.console.i18n import gettext as _
from tgfleet.console.i18n import number

WIDTH = 600
HEIGHT = 160
LEFT = 36
BOTTOM = 18
TOP = 8


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 times a power of ten at or above ``value`` (at least 1)."""
    ceiling = 1
    while True:
        for step in (1, 2, 5):
            if step * ceiling >= value:
                return step * ceiling
        ceiling *= 10


def traffic_svg(points: Sequence[TrafficPoint]) -> Markup:
    """Messages received and replies sent per minute, oldest at the left."""
    if not points:
        return Markup("")
    top = _nice_ceiling(max(max(p.received, p.sent) for p in points))
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(points) - 1)

    def line(values: list[int]) -> str:
        return " ".join(
            f"{LEFT + i * step:.1f},{TOP + plot_h - (value / top) * plot_h:.1f}"
            for i, value in enumerate(values)
        )

    received = [p.received for p in points]
    sent = [p.sent for p in points]
    total_received, total_sent = sum(received), sum(sent)
    minutes = len(points)
    summary = escape(
        _(
            "%(received)s messages received and %(sent)s replies sent in the last %(minutes)s "
            "minutes; at most %(most_received)s received and %(most_sent)s sent in one minute."
        )
        % {
            "received": number(total_received),
            "sent": number(total_sent),
            "minutes": minutes,
            "most_received": number(max(received)),
            "most_sent": number(max(sent)),
        }
    )
    base = TOP + plot_h
    since, now = escape(_("-%(n)s min") % {"n": minutes}), escape(_("now"))
    words = {
        "received": escape(_("received")),
        "sent": escape(_("replies sent")),
        "hour": escape(_("in the last hour")),
    }
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="traffic-desc">',
        f'<title id="traffic-desc">{summary}</title>',
        f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH - 4}" y2="{base}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{top}</text>',
        f'<text x="{LEFT - 4}" y="{base}" text-anchor="end">0</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 4}">{since}</text>',
        f'<text x="{WIDTH - 4}" y="{HEIGHT - 4}" text-anchor="end">{now}</text>',
        f'<polyline class="received" points="{line(received)}"/>',
        f'<polyline class="sent" points="{line(sent)}"/>',
        "</svg>",
    ]
    legend = (
        f'<p class="legend"><span class="received">{words["received"]}</span> '
        f'<strong data-testid="received-hour">{total_received}</strong> · '
        f'<span class="sent">{words["sent"]}</span> '
        f'<strong data-testid="sent-hour">{total_sent}</strong> '
        f'<small class="muted">{words["hour"]}</small></p>'
    )
    # Numbers and the catalogue's texts, escaped: nothing a user wrote.
    return Markup(f'<div class="chart">{"".join(parts)}</div>{legend}')  # noqa: S704
