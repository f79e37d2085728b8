"""Read an import upload into memory: raw bytes (one file or a zip) or multipart/form-data.

Starlette spools large multipart files to a temporary file on disk; a session upload holds
a plaintext auth key, so this parser keeps every part in memory instead, under a byte cap.
The import endpoint and the console's import page both read their uploads here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException

from tgfleet.exceptions import AppError
from tgfleet.vault.exceptions import ArchiveError, ImportTooLargeError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_PARTS = 10_000
#: The name of a raw (non-multipart) upload whose client named none.
DEFAULT_UPLOAD_NAME = "upload.session"
#: What refuses an upload while it is read: a bad multipart body, more than the byte cap
#: (ours, or the body limit middleware's 413 raised from the stream).
UPLOAD_ERRORS = (ArchiveError, ImportTooLargeError, HTTPException)


def upload_error(exc: Exception) -> AppError:
    """One of ``UPLOAD_ERRORS`` as the error its refusal is audited with."""
    if isinstance(exc, AppError):
        return exc
    detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
    return ImportTooLargeError(str(detail))


@dataclass(slots=True)
class UploadedFile:
    name: str
    data: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class _State:
    files: list[UploadedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, bytes] = field(default_factory=dict)
    current: UploadedFile | None = None
    #: The current file part came without a file name (a form's file input left empty).
    unnamed: bool = False
    current_field: tuple[str, bytearray] | None = None
    total: int = 0


async def read_upload(
    content_type: str,
    body: AsyncIterator[bytes],
    *,
    max_bytes: int,
    default_name: str,
    fields: dict[str, str] | None = None,
) -> tuple[list[UploadedFile], dict[str, str]]:
    """Files and plain form fields of the request body, all in memory. A file part with
    neither a file name nor content (an HTML form's file input with no file chosen) is no
    file. ``fields``, when given, is filled as the fields arrive: the ones read before a
    refusal stay readable (the console checks its CSRF field with them)."""
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raw = bytearray()
        async for chunk in body:
            raw += chunk
            if len(raw) > max_bytes:
                raise ImportTooLargeError(f"the upload is larger than {max_bytes} bytes")
        return [UploadedFile(name=default_name, data=raw)], {}
    boundary = options.get(b"boundary")
    if not boundary:
        raise ArchiveError("multipart/form-data without a boundary")
    state = _State(fields={} if fields is None else fields)
    parser = MultipartParser(boundary, _callbacks(state, max_bytes))
    async for chunk in body:
        parser.write(chunk)
    parser.finalize()
    return state.files, state.fields


def _callbacks(state: _State, max_bytes: int) -> MultipartCallbacks:
    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def on_header_end() -> None:
        state.headers[bytes(state.header_field).decode("latin-1").lower()] = bytes(
            state.header_value
        )
        state.header_field.clear()
        state.header_value.clear()

    def on_headers_finished() -> None:
        _disposition, params = parse_options_header(state.headers.get("content-disposition"))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is not None:
            if len(state.files) >= MAX_PARTS:
                raise ArchiveError(f"more than {MAX_PARTS} files in one upload")
            state.current = UploadedFile(name=filename.decode("utf-8", "replace") or "upload")
            state.unnamed = not filename
            state.files.append(state.current)
        else:
            state.current_field = (name, bytearray())
        state.headers.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state.total += end - start
        if state.total > max_bytes:
            raise ImportTooLargeError(f"the upload is larger than {max_bytes} bytes")
        if state.current is not None:
            state.current.data += data[start:end]
        elif state.current_field is not None:
            state.current_field[1].extend(data[start:end])

    def on_part_end() -> None:
        if state.current is not None and state.unnamed and not state.current.data:
            state.files.pop()
        if state.current_field is not None:
            name, value = state.current_field
            state.fields[name] = value.decode("utf-8", "replace")
        state.current = None
        state.current_field = None

    return cast(
        "MultipartCallbacks",
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
