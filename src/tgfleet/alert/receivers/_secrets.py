"""Secrets kept out of results and logs: a receiver's bot token or webhook URL, replaced in
what it reports (:func:`scrub`) and in the HTTP libraries' log records (:func:`protect_secrets`),
and the parts of a secret URL that count as secret (:func:`url_secrets`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import parse_qsl, unquote

import httpx

REDACTED: Final = "[redacted]"
#: Shorter path segments and query values of a secret URL are not taken for secrets
#: (``api``, ``v1``, ``hooks``): redacting them everywhere would garble every message.
MIN_SECRET_PART: Final = 8
# A Bot API URL carries the token in its path: .../bot<token>/sendMessage.
_BOT_PATH = re.compile(r"/bot[^/\s\"'<>]+")


class _SecretScrubber(logging.Filter):
    """Rewrites log records of the HTTP libraries so no secret reaches a handler.

    httpx logs every request's URL at INFO ("HTTP Request: POST https://.../bot<token>/...");
    a logger's filters run where the record is made, before any handler or propagation,
    so the record is rewritten once for every destination.
    """

    def __init__(self) -> None:
        super().__init__("tgfleet-secret-scrubber")
        self.secrets: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message, self.secrets)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


_SCRUBBER: Final = _SecretScrubber()
# httpcore's loggers are children with their own names: a filter does not propagate.
_HTTP_LOGGERS: Final = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)


Secrets = Iterable[str] | Mapping[str, str]


def _replacements(secrets: Secrets) -> dict[str, str]:
    """``secrets`` as secret -> what replaces it ([redacted] unless a mapping says)."""
    if isinstance(secrets, Mapping):
        return {secret: shown for secret, shown in secrets.items() if secret}
    return dict.fromkeys((secret for secret in secrets if secret), REDACTED)


def protect_secrets(secrets: Secrets) -> None:
    """Keep ``secrets`` (and any Bot API token in a URL) out of the HTTP libraries' logs."""
    _SCRUBBER.secrets.update(_replacements(secrets))
    for name in _HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _SCRUBBER not in logger.filters:
            logger.addFilter(_SCRUBBER)


def scrub(text: str, secrets: Secrets = ()) -> str:
    """``text`` with every secret replaced (longest first: a URL before its path) and every
    ``/bot<token>`` path replaced by [redacted]."""
    replacements = _replacements(secrets)
    for secret in sorted(replacements, key=len, reverse=True):
        text = text.replace(secret, replacements[secret])
    return _BOT_PATH.sub(f"/bot{REDACTED}", text)


def redact_url(url: str) -> str:
    """What of a secret URL may be shown: ``scheme://host[:port]/…``."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return REDACTED
    if not (parsed.scheme and parsed.host):
        return REDACTED
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{host}{port}/…"


def url_secrets(url: str) -> dict[str, str]:
    """The parts of a secret URL (a webhook's path and query are its credentials) that are
    kept out of results and logs, each with what replaces it: the URL itself, as written and
    as httpx sends and logs it, by :func:`redact_url`; its user info, path and query, raw
    and decoded, and every path segment and query value of :data:`MIN_SECRET_PART` or more
    characters by [redacted] (a receiver may echo any of them in its error)."""
    shown = redact_url(url)
    secrets: dict[str, str] = {url: shown}
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return secrets
    secrets[str(parsed)] = shown
    raw_path = parsed.raw_path.decode("ascii", "replace")
    path, _, query = raw_path.partition("?")
    parts = {parsed.userinfo.decode("ascii", "replace"), raw_path, path, query, parsed.path}
    for segment in path.split("/"):
        parts |= {segment, unquote(segment)}
    for name, value in parse_qsl(query, keep_blank_values=True):
        parts |= {value, f"{name}={value}"}
    for part in parts:
        if len(part) >= MIN_SECRET_PART and part != "/":
            secrets.setdefault(part, REDACTED)
    return secrets
