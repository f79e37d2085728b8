"""The vault's services: what the endpoints, the CLI, the worker and other domains call.

This module is the vault's public entry (``from tgfleet.vault import service as
vault_service``); the work lives in modules named for what they hold:

- ``tgfleet.vault.vault``: the ``Vault`` a process holds (its keyring and import limits);
- ``tgfleet.vault.upload``: reading an upload (raw or multipart) into memory;
- ``tgfleet.vault.importing``: importing files, zips and folders;
- ``tgfleet.vault.replacing``: re-importing one account's session;
- ``tgfleet.vault.sessions``: decrypting, writing back, exporting, erasing and listing the
  stored sessions;
- ``tgfleet.vault.rotation``: key rotation and the key status.

Key material exists in plaintext only in memory, for as long as one call needs it. Every
import, export, erase, decrypt and rotation writes an audit record.
"""

from __future__ import annotations

from tgfleet.vault.importing import (
    ImportResult,
    audit_refused,
    check_totals,
    expand_path,
    expand_upload,
    import_entries,
    import_upload,
    label_from_name,
)
from tgfleet.vault.key_check import check_keys, keys_in_use
from tgfleet.vault.replacing import ReplaceResult, replace_session, replace_upload
from tgfleet.vault.rotation import KekStatus, RotationReport, VaultStatus, rotate, status
from tgfleet.vault.sessions import (
    Decrypted,
    Download,
    SecretSummary,
    decrypt,
    decrypt_many,
    erase,
    export,
    export_download,
    secret_versions,
    secrets_fingerprint,
    summaries,
    tampered,
    update_session,
)
from tgfleet.vault.upload import (
    DEFAULT_UPLOAD_NAME,
    UPLOAD_ERRORS,
    UploadedFile,
    read_upload,
    upload_error,
)
from tgfleet.vault.vault import Vault

__all__ = [
    "DEFAULT_UPLOAD_NAME",
    "UPLOAD_ERRORS",
    "Decrypted",
    "Download",
    "ImportResult",
    "KekStatus",
    "ReplaceResult",
    "RotationReport",
    "SecretSummary",
    "UploadedFile",
    "Vault",
    "VaultStatus",
    "audit_refused",
    "check_keys",
    "check_totals",
    "decrypt",
    "decrypt_many",
    "erase",
    "expand_path",
    "expand_upload",
    "export",
    "export_download",
    "import_entries",
    "import_upload",
    "keys_in_use",
    "label_from_name",
    "read_upload",
    "replace_session",
    "replace_upload",
    "rotate",
    "secret_versions",
    "secrets_fingerprint",
    "status",
    "summaries",
    "tampered",
    "update_session",
    "upload_error",
]
