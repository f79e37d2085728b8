"""tgfleet: a self-hosted control plane for fleets of Telegram user accounts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    __version__: str


def __getattr__(name: str) -> str:
    """``tgfleet.__version__``, read from the installed metadata on first use: importing
    importlib.metadata (email, zipfile, csv...) cost every CLI command ~40 ms of its start,
    `tgfleet --help` included (issue 19)."""
    if name != "__version__":
        raise AttributeError(f"module 'tgfleet' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("tgfleet")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        found = "0.0.0"
    globals()["__version__"] = found
    return found
