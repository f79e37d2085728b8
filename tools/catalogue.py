"""The console's translation catalogues: extract every string from the code and templates
(``babel.cfg``), and keep each shipped language's ``.po`` complete.

    python tools/catalogue.py update   # merge new strings into every catalogue (untranslated)
    python tools/catalogue.py check    # fail when a string is missing, untranslated or stale

``make lint`` runs ``check``: a string added without its translation fails the build, and so
does a translation whose string is gone (an obsolete entry) or whose placeholders differ.
"""

from __future__ import annotations

import re
import sys
from io import BytesIO
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "babel.cfg"
LOCALES = ROOT / "src" / "tgfleet" / "console" / "locale"
DOMAIN = "console"
KEYWORDS = {**DEFAULT_KEYWORDS, "N_": None}
#: ``%(name)s`` placeholders: a translation must keep exactly the source's.
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def extract() -> Catalog:
    """Every string the console shows, as the code and the templates hold them."""
    with CONFIG.open() as config:
        method_map, options_map = parse_mapping_cfg(config)  # type: ignore[no-untyped-call]
    catalogue = Catalog(project="tgfleet", domain=DOMAIN)
    for filename, lineno, message, comments, context in extract_from_dir(
        ROOT, method_map, options_map, keywords=KEYWORDS, comment_tags=("Translators:",)
    ):
        catalogue.add(
            message,
            None,
            [(filename, lineno)],
            auto_comments=comments,
            context=context,
        )
    return catalogue


def catalogues() -> list[Path]:
    return sorted(LOCALES.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def read(path: Path) -> Catalog:
    with path.open("rb") as source:
        return read_po(source, locale=path.parent.parent.name)


def write(path: Path, catalogue: Catalog) -> None:
    buffer = BytesIO()
    write_po(buffer, catalogue, width=100, omit_header=False, sort_output=True, no_location=True)
    path.write_bytes(buffer.getvalue())


def update() -> None:
    template = extract()
    for path in catalogues():
        catalogue = read(path)
        created = catalogue.creation_date  # kept: an update is no new catalogue
        catalogue.update(template, no_fuzzy_matching=True)
        catalogue.creation_date = created
        catalogue.obsolete.clear()
        write(path, catalogue)
        print(f"{path.relative_to(ROOT)}: {len(catalogue)} strings")


def problems(template: Catalog, catalogue: Catalog) -> list[str]:
    wanted = {(message.id, message.context) for message in template if message.id}
    have = {(message.id, message.context): message for message in catalogue if message.id}
    found = [f"missing: {key!r}" for key in sorted(wanted - have.keys(), key=str)]
    found += [f"no longer used: {key!r}" for key in sorted(have.keys() - wanted, key=str)]
    for key in sorted(wanted & have.keys(), key=str):
        message = have[key]
        source = message.id
        sources = [
            str(part) for part in (source if isinstance(source, tuple | list) else (source,))
        ]
        raw = message.string
        strings = [str(part or "") for part in (raw if isinstance(raw, tuple | list) else (raw,))]
        if not all(strings) or message.fuzzy:
            found.append(f"untranslated: {key!r}")
            continue
        expected = {name for source in sources for name in PLACEHOLDER.findall(source)}
        found += [
            f"placeholders differ: {key!r} -> {string!r}"
            for string in strings
            if set(PLACEHOLDER.findall(string)) != expected
        ]
    return found


def check() -> int:
    template = extract()
    failed = 0
    for path in catalogues():
        listed = problems(template, read(path))
        for line in listed:
            print(f"{path.relative_to(ROOT)}: {line}", file=sys.stderr)
        failed += len(listed)
    if failed:
        print(
            f"{failed} catalogue problem(s): run `python tools/catalogue.py update`, then "
            "translate the empty entries",
            file=sys.stderr,
        )
        return 1
    print(f"catalogues complete: {len(template)} strings, {len(catalogues())} language(s)")
    return 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["update"]:
        update()
        return 0
    if argv[1:] == ["check"]:
        return check()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
