"""The guard of a console route that takes session files (the import page).

It differs from ``ConsoleGuard`` in two ways, both for the upload's sake:

- The body is read by the vault's own reader, in memory (``request.form()`` would spool
  large files, plaintext auth keys, to disk), and the CSRF field is taken from what it read;
  the fields read before a refusal (too large, a broken body) stay readable, so a refusal
  is audited only once the form is known to come from this console.
- The route's work commits in units of work of its own (as the API's import, whose guard
  is a ``StandaloneGuard``): the session and the permission are checked in short
  transactions, none held while the body arrives or the files are imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from tgfleet.auth.permissions import Permission
from tgfleet.components import AppComponents
from tgfleet.console.guard import ConsoleGuard, Viewer, signed_in
from tgfleet.console.web import CSRF_FIELD, CSRF_HEADER
from tgfleet.exceptions import AppError
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.http import Meta
from tgfleet.vault import service as vault_service

_STATE_KEY = "console_upload"


@dataclass(slots=True)
class Upload:
    """What a console upload held: its files and plain fields, or why it was refused."""

    files: list[vault_service.UploadedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    error: AppError | None = None


class UploadGuard(ConsoleGuard):
    """``ConsoleGuard`` for a route that takes files (see the module's docstring)."""

    async def __call__(  # type: ignore[override]  # no request unit of work: see above
        self, request: Request, components: AppComponents, meta: Meta
    ) -> Viewer:
        async with unit_of_work(components.sessionmaker, deferred=True) as session:
            viewer = await signed_in(request, components, session)
        upload = await _read(request, components)
        presented = request.headers.get(CSRF_HEADER) or upload.fields.get(CSRF_FIELD)
        async with unit_of_work(components.sessionmaker, deferred=True) as session:
            await self.authorize(request, session, meta, viewer, presented)
        return viewer


async def _read(request: Request, components: AppComponents) -> Upload:
    upload = Upload()
    try:
        upload.files, _ = await vault_service.read_upload(
            request.headers.get("content-type", ""),
            request.stream(),
            max_bytes=components.vault.settings.import_max_upload_bytes,
            default_name=vault_service.DEFAULT_UPLOAD_NAME,
            fields=upload.fields,
        )
    except vault_service.UPLOAD_ERRORS as exc:
        upload.files = []
        upload.error = vault_service.upload_error(exc)
    setattr(request.state, _STATE_KEY, upload)
    return upload


def received(request: Request) -> Upload:
    """The upload ``UploadGuard`` read for this request."""
    upload: Upload | None = getattr(request.state, _STATE_KEY, None)
    if upload is None:
        msg = "the route has no UploadGuard: its upload was not read"
        raise RuntimeError(msg)
    return upload


#: May import sessions (``session:import``), for a route that takes the files.
SessionUploader = Annotated[Viewer, Depends(UploadGuard(Permission.SESSION_IMPORT))]
