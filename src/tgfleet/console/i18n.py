"""The console's languages: the catalogue of the request's locale, for templates (``_()``,
``ngettext``) and for Python code that writes a sentence a person reads (a notice, a form
error): ``from tgfleet.console.i18n import gettext as _``.

The locale is chosen per request (:func:`use_locale`: the user's saved choice, else the
browser's ``Accept-Language``) and held in a context variable, so a render anywhere in the
request's task (a page, a block, an SSE message) speaks the same language.
"""

from __future__ import annotations

import contextvars
import gettext as _gettext
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from io import BytesIO

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime as _format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.support import Translations

#: The catalogues' domain (``locale/<code>/LC_MESSAGES/console.po``).
DOMAIN = "console"
#: The language every string is written in.
SOURCE = "en"


@dataclass(frozen=True, slots=True)
class Language:
    code: str  #: what a form posts, a user row stores and ``<html lang>`` carries
    babel: str  #: Babel's locale identifier (dates, numbers)
    label: str  #: the language's own name, as the switch shows it
    #: How a date and time is written (Babel's pattern or format name): operators read
    #: English times as ISO 8601 with a 24-hour clock.
    datetime_format: str = "medium"


#: The shipped languages, in the switch's order.
LANGUAGES: tuple[Language, ...] = (
    Language("en", "en", "English", "yyyy-MM-dd HH:mm:ss"),
    Language("zh-Hans", "zh_Hans_CN", "简体中文"),
)
BY_CODE = {language.code: language for language in LANGUAGES}
DEFAULT = BY_CODE[SOURCE]

_current: contextvars.ContextVar[Language] = contextvars.ContextVar(
    "console_language", default=DEFAULT
)


@cache
def catalogue(code: str) -> _gettext.NullTranslations:
    """The compiled catalogue of ``code`` (the ``.po`` file, compiled once in memory: the
    repository holds no binary ``.mo``); the source language translates to itself."""
    if code == SOURCE:
        return _gettext.NullTranslations()
    folder = resources.files("tgfleet.console") / "locale" / code.replace("-", "_")
    with (folder / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as source:
        parsed = read_po(source, locale=BY_CODE[code].babel)
    compiled = BytesIO()
    write_mo(compiled, parsed)
    compiled.seek(0)
    return Translations(fp=compiled, domain=DOMAIN)


def current() -> Language:
    return _current.get()


@contextmanager
def using(language: Language) -> Iterator[None]:
    """Speak ``language`` inside the block (a render for another audience, a test)."""
    token = _current.set(language)
    try:
        yield
    finally:
        _current.reset(token)


def use_locale(language: Language) -> None:
    """Speak ``language`` for the rest of this request's task."""
    _current.set(language)


def N_(message: str) -> str:  # noqa: N802 - gettext's conventional marker name
    """Mark ``message`` for the catalogue where it is defined (a table of texts); translate
    it with :func:`gettext` where it is shown."""
    return message


def gettext(message: str) -> str:
    return catalogue(_current.get().code).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return catalogue(_current.get().code).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """``message`` as read in ``context`` (a session's "active" is not a silence's)."""
    return catalogue(_current.get().code).pgettext(context, message)


def npgettext(context: str, singular: str, plural: str, n: int) -> str:
    return catalogue(_current.get().code).npgettext(context, singular, plural, n)


def negotiate(accept_language: str | None, saved: str | None = None) -> Language:
    """The user's saved choice when it is a shipped language, else the best match of the
    browser's ``Accept-Language`` (quality order; ``zh``, ``zh-CN``, ``zh-SG`` and
    ``zh-Hans`` read Simplified Chinese; ``zh-TW``/``zh-HK``/``zh-Hant`` do not), else
    English. A malformed header is ignored, never an error."""
    if saved and saved in BY_CODE:
        return BY_CODE[saved]
    for tag in _preferences(accept_language or ""):
        language = _match(tag)
        if language is not None:
            return language
    return DEFAULT


def _preferences(header: str) -> list[str]:
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:32]):
        tag, _, parameters = part.strip().partition(";")
        quality = 1.0
        name, _, value = parameters.strip().partition("=")
        if name.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                continue
        tag = tag.strip()
        if tag and len(tag) <= 35 and quality > 0:
            weighted.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def _match(tag: str) -> Language | None:
    lowered = tag.lower().replace("_", "-")
    primary, _, rest = lowered.partition("-")
    if primary == "en":
        return BY_CODE["en"]
    if primary != "zh":
        return None
    subtags = set(rest.split("-")) if rest else set()
    if "hant" in subtags or subtags & {"tw", "hk", "mo"}:
        return None  # Traditional Chinese: not shipped, English rather than the wrong script
    return BY_CODE["zh-Hans"]


def _locale() -> Locale:
    try:
        return Locale.parse(_current.get().babel)
    except (UnknownLocaleError, ValueError):  # pragma: no cover - shipped codes parse
        return Locale.parse(SOURCE)


def number(value: int | float) -> str:
    """A count or amount as the reader's locale writes it (``12,345``)."""
    return format_decimal(value, locale=_locale())


def ratio(value: float) -> str:
    """A ratio as a percentage in the reader's locale (``97.5%``)."""
    return format_percent(value, format="#,##0.0%", locale=_locale())


def moment(value: datetime | None) -> str:
    """A date and time in UTC as the reader's locale writes it (the page's script shows it
    in the viewer's zone; this is what is read without JavaScript)."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    pattern = _current.get().datetime_format
    return _format_datetime(value, format=pattern, tzinfo=UTC, locale=_locale()) + " UTC"
