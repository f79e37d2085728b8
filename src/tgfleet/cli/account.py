"""``tgfleet account``: the accounts under management."""

from __future__ import annotations

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account import service as account_service
from tgfleet.cli._local import load_settings, run_in_session
from tgfleet.cli._runtime import console
from tgfleet.models import Account
from tgfleet.vault import service as vault_service

app = typer.Typer(help="Accounts under management.", no_args_is_help=True)


@app.command("list")
def list_accounts() -> None:
    """Print id, label, user id, dc and state of every account."""
    settings = load_settings()

    async def work(
        session: AsyncSession,
    ) -> list[tuple[Account, vault_service.SecretSummary | None]]:
        rows: list[tuple[Account, vault_service.SecretSummary | None]] = []
        cursor: str | None = None
        while True:
            page = await account_service.list_accounts(session, cursor=cursor, limit=500)
            secrets = await vault_service.summaries(session, [a.id for a in page.items])
            rows += [(a, secrets.get(a.id)) for a in page.items]
            if page.next_cursor is None:
                return rows
            cursor = page.next_cursor

    table = Table("id", "label", "user id", "dc", "state", "session")
    for account, secret in run_in_session(settings, work, read_only=True):
        table.add_row(
            str(account.id),
            account.label,
            str(account.tg_user_id or ""),
            str(account.dc_id or ""),
            account.desired_state,
            secret.state if secret else "none",
        )
    console.print(table)
