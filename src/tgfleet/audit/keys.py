"""The audit keys: secrets that key the chain, held with the vault keys, never in the database.

Each audit key is 32 random bytes. Two keys are derived from it with HKDF-SHA256:

- a **MAC key**: every record's ``mac = HMAC-SHA256(mac key, "tgfleet/audit-record\\0" ||
  hash)``, so whoever holds only the database cannot recompute the records they change;
- an **Ed25519 signing key**: it signs the checkpoints published outside the database. Its
  public key verifies them without any secret.

A key's id is the first 16 hex characters of ``SHA-256("tgfleet/audit-key-id\\0" || public
key)``: a checkpoint carries its public key, so anyone can check that it matches the id the
records name.

Sources, in order (``load``):

1. ``TGFLEET_AUDIT_KEY`` (base64 of 32 bytes) is the active key;
2. otherwise the audit key file (``TGFLEET_AUDIT_KEY_FILE``, default ``<data dir>/audit.key``),
   JSON, mode 0600, created on first use beside ``vault.key``::

       {"format": "tgfleet-audit-keys", "version": 1, "active": "<id>",
        "keys": [{"id": "<id>", "key": "<base64>", "created_at": "<ISO 8601>"}]}

``TGFLEET_AUDIT_PREVIOUS_KEYS`` (comma-separated base64) adds keys that verify but never key
anything new. Unlike a vault key, an audit key is never retired: the records it keyed need it
to verify for as long as they are kept.

A process holds one keyring (``configure``/``install``): the services that append records
take no key argument, so the entry points configure it once (the app at start-up, the CLI
in ``load_settings``) and the first append loads it, off the event loop. A key file is
looked at again every few seconds, so ``tgfleet audit rotate-key`` reaches running
processes without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tgfleet.audit.chain import open_document
from tgfleet.audit.exceptions import AuditKeyError
from tgfleet.config import Settings
from tgfleet.kit import keyfile
from tgfleet.logging import get_logger

KEY_ID_LENGTH = 16
KEY_FILE_FORMAT = "tgfleet-audit-keys"
KEY_FILE_VERSION = 1
ENV_KEY_NAME = "TGFLEET_AUDIT_KEY"
PREVIOUS_KEYS_NAME = "TGFLEET_AUDIT_PREVIOUS_KEYS"

_KIND = "an audit key"
_ID_DOMAIN = b"tgfleet/audit-key-id\x00"
_MAC_INFO = b"tgfleet/audit-record-mac"
_SIGNING_INFO = b"tgfleet/audit-checkpoint-signing"
_RECORD_MAC_DOMAIN = b"tgfleet/audit-record\x00"

log = get_logger(__name__)


def key_id_of(public_key: bytes) -> str:
    """The id of an audit key, from its Ed25519 public key (so a verifier without the secret
    can tie a checkpoint's public key to the ids the records carry)."""
    return hashlib.sha256(_ID_DOMAIN + public_key).hexdigest()[:KEY_ID_LENGTH]


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


@dataclass(frozen=True, slots=True)
class AuditKey:
    """One audit key. ``repr`` shows the id only."""

    secret: bytes = field(repr=False)
    created_at: datetime
    id: str = field(init=False)
    public_key: bytes = field(init=False, repr=False)
    _mac_key: bytes = field(init=False, repr=False)
    _signing_key: Ed25519PrivateKey = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != keyfile.KEY_BYTES:
            msg = f"an audit key is {keyfile.KEY_BYTES} bytes, got {len(self.secret)}"
            raise ValueError(msg)
        signing = Ed25519PrivateKey.from_private_bytes(_derive(self.secret, _SIGNING_INFO))
        public = signing.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        object.__setattr__(self, "_signing_key", signing)
        object.__setattr__(self, "_mac_key", _derive(self.secret, _MAC_INFO))
        object.__setattr__(self, "public_key", public)
        object.__setattr__(self, "id", key_id_of(public))

    @classmethod
    def generate(cls) -> AuditKey:
        return cls(secrets.token_bytes(keyfile.KEY_BYTES), keyfile.now_in_seconds())

    def record_mac(self, record_hash: str) -> str:
        """The record's MAC: HMAC-SHA256 over its (public) chain hash."""
        message = _RECORD_MAC_DOMAIN + record_hash.encode("ascii")
        return hmac.new(self._mac_key, message, hashlib.sha256).hexdigest()

    def sign(self, message: bytes) -> bytes:
        return self._signing_key.sign(message)


def public_key_from(encoded: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64; ValueError if it is not one."""
    raw = base64.b64decode(encoded, validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


class AuditKeyring:
    """The audit keys this process holds: one active (keys every new record), the others to
    verify. Immutable."""

    __slots__ = ("_active", "_keys", "source")

    def __init__(self, *, source: str, active: AuditKey, keys: Iterable[AuditKey]) -> None:
        self.source = source
        self._active = active
        self._keys = {key.id: key for key in keys}
        self._keys.setdefault(active.id, active)

    @property
    def active(self) -> AuditKey:
        return self._active

    def find(self, key_id: str) -> AuditKey | None:
        return self._keys.get(key_id)

    def ids(self) -> list[str]:
        return list(self._keys)

    def __repr__(self) -> str:
        active = self._active.id
        return f"AuditKeyring(source={self.source!r}, active={active!r}, keys={len(self._keys)})"


def load(settings: Settings, *, create: bool = True) -> AuditKeyring:
    """The audit keyring from ``TGFLEET_AUDIT_KEY`` or the audit key file.

    With ``create`` a missing key file is created with one fresh key (concurrent first uses
    agree on one file); without it a missing file is an ``AuditKeyError``. Blocking: async
    callers use ``asyncio.to_thread``.
    """
    previous = _previous_keys(settings)
    if settings.audit_key is not None:
        active = AuditKey(
            _decode(settings.audit_key.get_secret_value(), ENV_KEY_NAME), keyfile.now_in_seconds()
        )
        return AuditKeyring(source="env", active=active, keys=[active, *previous])
    path = settings.effective_audit_key_file
    if create and not path.exists():
        _create_key_file(path)
    active_id, keys = _read_key_file(path)
    by_id = {key.id: key for key in keys}
    return AuditKeyring(source="file", active=by_id[active_id], keys=[*keys, *previous])


def add_key(path: Path) -> AuditKey:
    """Append a fresh key to the audit key file and make it active; earlier keys stay (they
    verify the records they keyed). Atomic, under the same kind of lock as the vault key file."""
    with keyfile.key_file_lock(path, error=AuditKeyError):
        _, keys = _read_key_file(path)
        key = AuditKey.generate()
        content = _render(key.id, [*keys, key])
        keyfile.replace_key_file(path, content, what="audit key file", error=AuditKeyError)
    log.info("audit.key_added", path=str(path), key_id=key.id)
    return key


def _decode(text: str, what: str) -> bytes:
    return keyfile.decode_key(text, what=what, kind=_KIND, error=AuditKeyError)


def _previous_keys(settings: Settings) -> list[AuditKey]:
    text = settings.audit_previous_keys
    keys = keyfile.decode_key_list(
        None if text is None else text.get_secret_value(),
        setting=PREVIOUS_KEYS_NAME,
        kind=_KIND,
        error=AuditKeyError,
    )
    return [AuditKey(key, keyfile.now_in_seconds()) for key in keys]


def _render(active_id: str, keys: list[AuditKey]) -> bytes:
    return keyfile.render_document(
        format_name=KEY_FILE_FORMAT,
        version=KEY_FILE_VERSION,
        active_id=active_id,
        keys=[
            {
                "id": key.id,
                "key": keyfile.encode_key(key.secret),
                "created_at": key.created_at.isoformat(),
            }
            for key in keys
        ],
    )


def _create_key_file(path: Path) -> None:
    key = AuditKey.generate()
    # False: another process created it first; read theirs
    if keyfile.create_key_file(
        path, _render(key.id, [key]), what="audit key file", error=AuditKeyError
    ):
        log.info("audit.key_file_created", path=str(path), key_id=key.id)


def _read_key_file(path: Path) -> tuple[str, list[AuditKey]]:
    def bad(reason: str) -> AuditKeyError:
        return AuditKeyError(f"audit key file {path}: {reason}")

    try:
        mode = path.stat().st_mode & 0o777
        raw = path.read_bytes()
    except FileNotFoundError:
        msg = (
            f"no audit key: {path} does not exist (it is created on first use; set "
            f"{ENV_KEY_NAME} or TGFLEET_AUDIT_KEY_FILE to use another)"
        )
        raise AuditKeyError(msg) from None
    except OSError as exc:
        raise bad(f"cannot read it: {exc.strerror}") from None
    if mode & 0o077:
        raise bad(f"mode {mode:04o} is open to group or others; run: chmod 600 {path}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("not UTF-8 text") from None
    document = open_document(text, format_name=KEY_FILE_FORMAT, version=KEY_FILE_VERSION, bad=bad)
    entries = document.get("keys")
    if not isinstance(entries, list) or not entries:
        raise bad('"keys" must be a non-empty list')
    keys: list[AuditKey] = []
    for number, entry in enumerate(entries, start=1):
        where = f"audit key file {path}: key {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise bad(f"key {number} has no base64 key")
        key = AuditKey(_decode(entry["key"], where), _parse_created(entry, where))
        if entry.get("id") != key.id:
            raise bad(f"key {number}'s id does not match its key (the file was edited)")
        keys.append(key)
    active_id = document.get("active")
    if not any(key.id == active_id for key in keys):
        raise bad(f'"active" names no key in the file ({active_id!r})')
    return str(active_id), keys


def _parse_created(entry: dict[str, object], where: str) -> datetime:
    return keyfile.parse_time(
        entry.get("created_at"), what=f"{where} created_at", error=AuditKeyError
    )


RELOAD_CHECK_SECONDS = 5.0


@dataclass(slots=True)
class _ProcessKeys:
    """The process's keyring: set by ``install``, or loaded from the settings given to
    ``configure`` on first use and reloaded when its key file changes (``rotate-key``)."""

    keyring: AuditKeyring | None = None
    settings: Settings | None = None
    file_version: tuple[int, int] | None = None  # (inode, mtime) of the key file loaded
    checked_at: float = 0.0


_process = _ProcessKeys()
# A thread lock: loads run in worker threads.
_load_lock = threading.Lock()


def configure(settings: Settings) -> None:
    """Load this process's audit keys from ``settings`` on first use (no I/O now)."""
    with _load_lock:
        _process.settings, _process.keyring, _process.file_version = settings, None, None


def install(keyring: AuditKeyring | None) -> None:
    """Use ``keyring`` in this process (None: nothing, appends fail closed)."""
    with _load_lock:
        _process.settings, _process.keyring, _process.file_version = None, keyring, None


def installed() -> AuditKeyring | None:
    """The keyring already loaded in this process, if any (no I/O)."""
    return _process.keyring


def load_configured() -> AuditKeyring:
    """The configured keyring, loaded now if it was not, or reloaded if its key file was
    replaced since (a key file that became unusable keeps the keys already loaded, with a
    warning). Blocking."""
    with _load_lock:
        settings, keyring = _process.settings, _process.keyring
        if settings is None:
            if keyring is None:
                msg = "no audit key is configured in this process"
                raise AuditKeyError(msg)
            return keyring
        _process.checked_at = time.monotonic()
        path = settings.effective_audit_key_file
        if keyring is None:
            keyring = load(settings)
            _process.keyring = keyring
            _process.file_version = _file_version(path) if keyring.source == "file" else None
            return keyring
        if keyring.source != "file":
            return keyring
        version = _file_version(path)
        if version == _process.file_version:
            return keyring
        try:
            reloaded = load(settings, create=False)
        except AuditKeyError as exc:
            log.warning("audit.key_reload_failed", error=exc.message)
            return keyring
        _process.keyring, _process.file_version = reloaded, version
        log.info("audit.keys_reloaded", path=str(path), active_key_id=reloaded.active.id)
        return reloaded


def _file_version(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


async def current() -> AuditKeyring:
    """This process's keyring, loading it (off the loop) the first time and looking for a
    rotated key file every ``RELOAD_CHECK_SECONDS``; ``AuditKeyError`` if none is configured,
    so an append fails closed rather than writing an unkeyed record."""
    keyring = _process.keyring
    if keyring is not None and (
        _process.settings is None
        or keyring.source != "file"
        or time.monotonic() - _process.checked_at < RELOAD_CHECK_SECONDS
    ):
        return keyring
    return await asyncio.to_thread(load_configured)
