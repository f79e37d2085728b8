"""Where a process's key-encryption keys (KEKs, see ``tgfleet.vault.kek``) come from, and the
key file that holds them.

Sources, in order of precedence (``load_keyring``):

1. **Environment key** (``TGFLEET_VAULT_KEY``): base64, standard or URL-safe alphabet,
   padding optional, of exactly 32 bytes. It becomes the single active KEK. Create one with
   ``openssl rand -base64 32``.
2. **Passphrase** (``TGFLEET_VAULT_PASSPHRASE``): the KEK is
   ``scrypt(passphrase, salt, n=2**15, r=8, p=1, length=32)``; the passphrase is NFC
   normalised and UTF-8 encoded, so the same words typed on another system give the same key.
   The 16-byte salt lives in ``salt_file`` (32 hex characters and a newline), created 0600 on
   first use and never replaced. The salt is not secret, but it is as precious as the key:
   lose it and the passphrase derives a different KEK. Back it up with the database.
3. **Key file** (the default, created by ``tgfleet vault init``): JSON, mode 0600::

       {"format": "tgfleet-keyring", "version": 1, "active": "<id>",
        "keys": [{"id": "<id>", "key": "<base64>" | null,
                  "created_at": "<ISO 8601>", "retired_at": "<ISO 8601>" | null}]}

   It holds every KEK ever created; a retired KEK keeps its id and dates, its key is null.
   A file that group or others can read is refused, unless ``allow_readable_key_file`` is
   set (a read-only Kubernetes secret mount), which logs ``vault.key_file_readable``.

Setting both the environment key and the passphrase is refused: the operator's intent is
unclear and guessing would encrypt under a key they may not keep. When either is set, a key
file is ignored. In every mode, ``TGFLEET_VAULT_PREVIOUS_KEYS`` (comma-separated base64 keys)
adds KEKs that still decrypt and re-wrap but never wrap anything new: rotating an environment
key means setting the new key, moving the old one to the previous keys, running
``tgfleet vault rotate``, then dropping the old one.

For environment and passphrase keys ``created_at`` is the time this process loaded them: the
material itself carries no date.

``load_keyring`` may derive a key with scrypt, about 0.1 s of CPU and 32 MiB of memory, and
reads files: async callers run it with ``asyncio.to_thread``.

Destroying a retired key's material means rewriting the key file without it. The old file's
blocks may survive on a journalling file system or an SSD, and a process that loaded the key
before it was retired keeps it in memory until it exits (Python cannot wipe ``bytes``).
Retirement stops tgfleet from using a key; it is not secure erasure.
"""

from __future__ import annotations

import json
import secrets
import stat
import unicodedata
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tgfleet import metrics
from tgfleet.kit.keyfile import (
    KEY_BYTES,
    create_key_file,
    decode_key,
    decode_key_list,
    encode_key,
    key_file_lock,
    parse_time,
    render_document,
    replace_key_file,
)
from tgfleet.logging import get_logger
from tgfleet.vault.exceptions import VaultKeyError
from tgfleet.vault.kek import (
    KEK_ID_LENGTH,
    PREVIOUS_KEYS_NAME,
    Kek,
    Keyring,
    KeySource,
    kek_fingerprint,
)

KEY_FILE_FORMAT = "tgfleet-keyring"
KEY_FILE_VERSION = 1
SALT_BYTES = 16
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1

ENV_KEY_NAME = "TGFLEET_VAULT_KEY"
PASSPHRASE_NAME = "TGFLEET_VAULT_PASSPHRASE"  # noqa: S105 - the name of a setting

_HEX_DIGITS = frozenset("0123456789abcdef")
_KIND = "a vault key"

log = get_logger(__name__)


def load_keyring(
    *,
    key_file: Path,
    env_key: str | None,
    passphrase: str | None,
    previous_keys: str | None,
    salt_file: Path,
    allow_readable_key_file: bool = False,
) -> Keyring:
    """The keyring from the environment key, the passphrase or the key file (in that order).

    Raises VaultKeyError with a message that says what to fix. Blocking (file I/O, and scrypt
    for a passphrase): async callers use ``asyncio.to_thread``. Sets
    ``tgfleet_vault_keys_loaded`` to the number of KEKs that can still unwrap (retired ones
    hold no material and are not counted).
    """
    if env_key is not None and passphrase is not None:
        msg = f"set only one of {ENV_KEY_NAME} and {PASSPHRASE_NAME}"
        raise VaultKeyError(msg)
    previous = _previous_keks(previous_keys)
    if env_key is not None:
        if not env_key.strip():
            msg = f"{ENV_KEY_NAME} is set but empty"
            raise VaultKeyError(msg)
        active = Kek.from_key(_decode(env_key, what=ENV_KEY_NAME))
        keyring = _with_previous(KeySource.ENV, active, [active], previous)
    elif passphrase is not None:
        if not passphrase:
            msg = f"{PASSPHRASE_NAME} is set but empty"
            raise VaultKeyError(msg)
        active = Kek.from_key(_derive_from_passphrase(passphrase, _salt(salt_file)))
        keyring = _with_previous(KeySource.PASSPHRASE, active, [active], previous)
    else:
        active_id, keks = _read_key_file(key_file, allow_readable=allow_readable_key_file)
        by_id = {kek.id: kek for kek in keks}
        keyring = _with_previous(KeySource.FILE, by_id[active_id], keks, previous)
    usable = len(keyring.usable_ids())
    metrics.VAULT_KEYS.set(usable)
    log.debug(
        "vault.keyring_loaded",
        source=keyring.source.value,
        active_kek_id=keyring.active.id,
        usable=usable,
    )
    return keyring


def init_key_file(key_file: Path) -> Keyring:
    """Create ``key_file`` (0600) holding one fresh KEK; refuse to replace an existing file."""
    kek = Kek.generate()
    content = _render_key_file(kek.id, [kek])
    if not create_key_file(key_file, content, what="key file", error=VaultKeyError):
        msg = (
            f"key file {key_file} already exists; refusing to overwrite it, it may hold the "
            f"only copy of your keys (to add a key use `tgfleet vault rotate`)"
        )
        raise VaultKeyError(msg)
    log.info("vault.key_file_created", path=str(key_file), kek_id=kek.id)
    return Keyring(source=KeySource.FILE, active=kek, keks=[kek])


def add_kek(key_file: Path) -> Kek:
    """Append a fresh KEK to ``key_file`` and make it active; the previous ones stay usable.

    The file is rewritten atomically (0600) under a lock beside it, so two concurrent
    changes cannot lose one another's key.
    """
    with _key_file_lock(key_file):
        _, keks = _read_key_file(key_file, allow_readable=False)
        kek = Kek.generate()
        _write_key_file(key_file, kek.id, [*keks, kek])
    log.info("vault.kek_added", path=str(key_file), kek_id=kek.id)
    return kek


def retire_kek(key_file: Path, kek_id: str) -> None:
    """Destroy the material of a non-active KEK in ``key_file``, keeping its id and dates.

    Every data key wrapped by it must have been re-wrapped first (``tgfleet vault rotate``):
    anything still wrapped by it becomes undecryptable. Retiring a retired KEK does nothing,
    so an interrupted rotation can be resumed. The active KEK is refused.
    """
    with _key_file_lock(key_file):
        active_id, keks = _read_key_file(key_file, allow_readable=False)
        target = next((kek for kek in keks if kek.id == kek_id), None)
        if target is None:
            msg = f"key file {key_file} has no key-encryption key {kek_id}"
            raise VaultKeyError(msg)
        if kek_id == active_id:
            msg = (
                f"refusing to retire {kek_id}: it is the active key-encryption key; "
                f"add a new one first (`tgfleet vault rotate`)"
            )
            raise VaultKeyError(msg)
        if not target.usable:
            return
        _write_key_file(
            key_file, active_id, [kek.retired() if kek.id == kek_id else kek for kek in keks]
        )
    log.info("vault.kek_retired", path=str(key_file), kek_id=kek_id)


def _previous_keks(previous_keys: str | None) -> list[Kek]:
    keys = decode_key_list(
        previous_keys, setting=PREVIOUS_KEYS_NAME, kind=_KIND, error=VaultKeyError
    )
    return [Kek.from_key(key) for key in keys]


def _with_previous(source: KeySource, active: Kek, keks: list[Kek], previous: list[Kek]) -> Keyring:
    combined = {kek.id: kek for kek in keks}
    for kek in previous:
        known = combined.get(kek.id)
        # A previous key may repeat the active one, or bring back material that the key
        # file no longer has (migrating from a file to an environment key).
        if known is None or not known.usable:
            combined[kek.id] = kek
    return Keyring(source=source, active=active, keks=combined.values())


def _derive_from_passphrase(passphrase: str, salt: bytes) -> bytes:
    kdf = Scrypt(salt=salt, length=KEY_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(unicodedata.normalize("NFC", passphrase).encode("utf-8"))


def _salt(salt_file: Path) -> bytes:
    """The salt from ``salt_file``, created on first use; a concurrent first use agrees."""
    if not salt_file.exists():
        salt = (secrets.token_bytes(SALT_BYTES).hex() + "\n").encode()
        # False: another process created it first; read theirs so both derive the same key
        if create_key_file(salt_file, salt, what="vault salt file", error=VaultKeyError):
            log.info("vault.salt_created", path=str(salt_file))
    try:
        text = salt_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read vault salt file {salt_file}: {exc}"
        raise VaultKeyError(msg) from None
    try:
        salt = bytes.fromhex(text)
    except ValueError:
        salt = b""
    if len(salt) != SALT_BYTES:
        msg = (
            f"vault salt file {salt_file} must hold {SALT_BYTES * 2} hex characters; it was "
            f"changed or corrupted (restore it from a backup: a new salt derives another key)"
        )
        raise VaultKeyError(msg)
    return salt


def _read_key_file(key_file: Path, *, allow_readable: bool) -> tuple[str, list[Kek]]:
    """The active id and every KEK of the key file, after checking its mode and content."""
    try:
        mode = stat.S_IMODE(key_file.stat().st_mode)
    except FileNotFoundError:
        msg = (
            f"no vault key: run `tgfleet vault init` to create {key_file}, "
            f"or set {ENV_KEY_NAME} or {PASSPHRASE_NAME}"
        )
        raise VaultKeyError(msg) from None
    except OSError as exc:
        msg = f"cannot read key file {key_file}: {exc.strerror}"
        raise VaultKeyError(msg) from None
    if mode & 0o077:
        if not allow_readable:
            msg = f"key file {key_file} has mode {mode:04o}, open to group or others; run: "
            msg += f"chmod 600 {key_file}"
            raise VaultKeyError(msg)
        log.warning("vault.key_file_readable", path=str(key_file), mode=f"{mode:04o}")
    try:
        raw = key_file.read_bytes()
    except OSError as exc:
        msg = f"cannot read key file {key_file}: {exc.strerror}"
        raise VaultKeyError(msg) from None
    return _parse_key_file(key_file, raw)


def _parse_key_file(key_file: Path, raw: bytes) -> tuple[str, list[Kek]]:
    def bad(reason: str) -> VaultKeyError:
        return VaultKeyError(f"key file {key_file}: {reason}")

    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        # The position only: the decoder's message never quotes the document.
        raise bad(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(document, dict) or document.get("format") != KEY_FILE_FORMAT:
        raise bad(f'not a tgfleet keyring (no "format": "{KEY_FILE_FORMAT}")')
    version = document.get("version")
    if type(version) is not int or version != KEY_FILE_VERSION:
        raise bad(f"format version {version!r} is not supported (this tgfleet reads 1)")
    entries = document.get("keys")
    if not isinstance(entries, list) or not entries:
        raise bad('"keys" must be a non-empty list')
    keks: list[Kek] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        kek = _parse_kek(entry, where=f"key file {key_file}: key {number}")
        if kek.id in seen:
            raise bad(f"key {kek.id} appears twice")
        seen.add(kek.id)
        keks.append(kek)
    active_id = document.get("active")
    if not isinstance(active_id, str) or active_id not in seen:
        raise bad(f'"active" names no key in the file ({active_id!r})')
    if next(kek for kek in keks if kek.id == active_id).key is None:
        raise bad(f"the active key {active_id} is retired")
    return active_id, keks


def _parse_kek(entry: object, *, where: str) -> Kek:
    if not isinstance(entry, dict):
        msg = f"{where} is not an object"
        raise VaultKeyError(msg)
    kek_id = entry.get("id")
    if (
        not isinstance(kek_id, str)
        or len(kek_id) != KEK_ID_LENGTH
        or not set(kek_id) <= _HEX_DIGITS
    ):
        msg = f"{where} has no valid id ({KEK_ID_LENGTH} lowercase hex characters)"
        raise VaultKeyError(msg)
    where = f"{where} ({kek_id})"
    created_at = _time(entry.get("created_at"), what=f"{where} created_at")
    retired_value = entry.get("retired_at")
    retired_at = None if retired_value is None else _time(retired_value, what=f"{where} retired_at")
    encoded = entry.get("key")
    if encoded is None:
        if retired_at is None:
            msg = f"{where} has no key material but is not marked retired"
            raise VaultKeyError(msg)
        return Kek(id=kek_id, key=None, created_at=created_at, retired_at=retired_at)
    if not isinstance(encoded, str):
        msg = f"{where}: key must be base64 text or null"
        raise VaultKeyError(msg)
    if retired_at is not None:
        msg = f"{where} is marked retired but still holds key material"
        raise VaultKeyError(msg)
    key = _decode(encoded, what=where)
    if kek_fingerprint(key) != kek_id:
        msg = f"{where}: the key does not match its id (the file was edited or corrupted)"
        raise VaultKeyError(msg)
    return Kek(id=kek_id, key=key, created_at=created_at, retired_at=None)


def _decode(text: str, *, what: str) -> bytes:
    return decode_key(text, what=what, kind=_KIND, error=VaultKeyError)


def _time(value: object, *, what: str) -> datetime:
    return parse_time(value, what=what, error=VaultKeyError)


def _render_key_file(active_id: str, keks: list[Kek]) -> bytes:
    return render_document(
        format_name=KEY_FILE_FORMAT,
        version=KEY_FILE_VERSION,
        active_id=active_id,
        keys=[
            {
                "id": kek.id,
                "key": None if kek.key is None else encode_key(kek.key),
                "created_at": kek.created_at.isoformat(),
                "retired_at": None if kek.retired_at is None else kek.retired_at.isoformat(),
            }
            for kek in keks
        ],
    )


def _write_key_file(key_file: Path, active_id: str, keks: list[Kek]) -> None:
    content = _render_key_file(active_id, keks)
    replace_key_file(key_file, content, what="key file", error=VaultKeyError)


def _key_file_lock(key_file: Path) -> AbstractContextManager[None]:
    return key_file_lock(key_file, error=VaultKeyError)
