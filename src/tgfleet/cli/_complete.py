"""Shell completion values from the server the command would talk to.

Minimal: playbook names only. The functions never prompt and never print (completion
runs in the shell's key handler); on any failure they offer nothing.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from tgfleet.cli import _remote

#: Seconds one completion request may take: a TAB that hangs is worse than none.
TIMEOUT = 2.0
#: The most values offered for one TAB.
LIMIT = 50


def playbook_names(incomplete: str) -> list[str]:
    """Names of the playbooks starting with ``incomplete``, at most `LIMIT`."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.suppress(Exception, SystemExit):
        chosen = _remote.target()
        if chosen is None or not chosen.token:
            return []
        import httpx

        response = httpx.get(
            f"{chosen.server}/api/v1/playbooks",
            params={"limit": 500, "order": "name"},
            headers={"Authorization": f"Bearer {chosen.token}", "Accept": "application/json"},
            timeout=TIMEOUT,
        )
        items: list[dict[str, Any]] = response.json().get("items") or []
        names = [str(item.get("name") or "") for item in items]
        return [name for name in names if name and name.startswith(incomplete)][:LIMIT]
    return []
