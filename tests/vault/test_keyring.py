"""The keyring: key file, environment key, passphrase, previous keys, and their refusals."""

from __future__ import annotations

import base64
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tgfleet.vault.exceptions import DecryptError, VaultKeyError
from tgfleet.vault.kek import Kek, Keyring, KeySource, kek_fingerprint
from tgfleet.vault.keyring import add_kek, init_key_file, load_keyring, retire_kek

# 0xf8..0xff encode to "+" and "/" in standard base64, "-" and "_" in the URL-safe alphabet.
ALPHABET_KEY = bytes(range(224, 256))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def load(
    tmp_path: Path,
    *,
    env_key: str | None = None,
    passphrase: str | None = None,
    previous_keys: str | None = None,
    salt_file: Path | None = None,
    allow_readable_key_file: bool = False,
) -> Keyring:
    return load_keyring(
        key_file=tmp_path / "vault.key",
        env_key=env_key,
        passphrase=passphrase,
        previous_keys=previous_keys,
        salt_file=salt_file or tmp_path / "vault.salt",
        allow_readable_key_file=allow_readable_key_file,
    )


def material(kek: Kek) -> bytes:
    assert kek.key is not None
    return kek.key


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "vault.key"
    init_key_file(path)
    return path


def rewrite_json(path: Path, document: object) -> None:
    path.write_text(json.dumps(document), encoding="utf-8")
    path.chmod(0o600)


class TestInitKeyFile:
    def test_creates_private_file_with_one_active_key(self, tmp_path: Path) -> None:
        """init writes a 0600 key file whose single key is the active one, and loads back."""
        path = tmp_path / "vault.key"
        created = init_key_file(path)
        assert mode_of(path) == 0o600
        assert created.source is KeySource.FILE
        loaded = load(tmp_path)
        assert loaded.active == created.active
        assert loaded.usable_ids() == {created.active.id}
        assert created.active.id == kek_fingerprint(material(created.active))
        assert not list(tmp_path.glob(".*.tmp"))

    def test_refuses_to_overwrite(self, key_file: Path) -> None:
        """A second init leaves the existing file byte for byte and says it exists."""
        before = key_file.read_bytes()
        with pytest.raises(VaultKeyError, match="already exists"):
            init_key_file(key_file)
        assert key_file.read_bytes() == before

    def test_missing_directory_is_a_vault_error(self, tmp_path: Path) -> None:
        """A key file in a directory that does not exist fails with the path, not a traceback."""
        path = tmp_path / "absent" / "vault.key"
        with pytest.raises(VaultKeyError, match="cannot create key file"):
            init_key_file(path)


class TestKeyFile:
    def test_missing_file_says_how_to_create_one(self, tmp_path: Path) -> None:
        """Without any key, the message names `tgfleet vault init` and the two variables."""
        with pytest.raises(VaultKeyError) as caught:
            load(tmp_path)
        message = caught.value.message
        assert "`tgfleet vault init`" in message
        assert str(tmp_path / "vault.key") in message
        assert "TGFLEET_VAULT_KEY" in message
        assert "TGFLEET_VAULT_PASSPHRASE" in message

    def test_group_readable_file_refused(self, tmp_path: Path, key_file: Path) -> None:
        """A 0640 key file is refused with the chmod that fixes it."""
        key_file.chmod(0o640)
        with pytest.raises(VaultKeyError, match=f"chmod 600 {key_file}"):
            load(tmp_path)

    def test_readable_file_allowed_for_mounted_secrets(
        self, tmp_path: Path, key_file: Path
    ) -> None:
        """With allow_readable_key_file a 0644 file loads, and a warning names path and mode."""
        key_file.chmod(0o644)
        with capture_logs() as logs:
            keyring = load(tmp_path, allow_readable_key_file=True)
        assert keyring.source is KeySource.FILE
        warnings = [entry for entry in logs if entry["event"] == "vault.key_file_readable"]
        assert warnings == [
            {
                "event": "vault.key_file_readable",
                "log_level": "warning",
                "path": str(key_file),
                "mode": "0644",
            }
        ]

    def test_tampered_id_refused(self, tmp_path: Path, key_file: Path) -> None:
        """A key whose material was swapped (its id no longer matches) is refused."""
        document = json.loads(key_file.read_text())
        document["keys"][0]["key"] = b64(os.urandom(32))
        rewrite_json(key_file, document)
        with pytest.raises(VaultKeyError, match="does not match its id"):
            load(tmp_path)

    def test_bad_json_refused(self, tmp_path: Path, key_file: Path) -> None:
        """A truncated file is reported as invalid JSON with a position."""
        key_file.write_bytes(key_file.read_bytes()[:40])
        with pytest.raises(VaultKeyError, match=r"not valid JSON \(.* at line \d+ column \d+\)"):
            load(tmp_path)

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"format": "something-else"}, "not a tgfleet keyring"),
            ({"version": 2}, "format version 2 is not supported"),
            ({"version": "1"}, "format version '1' is not supported"),
            ({"active": "0123456789abcdef"}, '"active" names no key'),
            ({"keys": []}, '"keys" must be a non-empty list'),
        ],
    )
    def test_malformed_document_refused(
        self, tmp_path: Path, key_file: Path, change: dict[str, object], message: str
    ) -> None:
        """Each structural defect of the document has its own message."""
        document = json.loads(key_file.read_text())
        document.update(change)
        rewrite_json(key_file, document)
        with pytest.raises(VaultKeyError, match=message):
            load(tmp_path)

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"key": b64(b"\x00" * 16)}, "decodes to 16 bytes; a vault key is exactly 32"),
            ({"key": "not base64!"}, "is not base64"),
            ({"key": 42}, "key must be base64 text or null"),
            ({"id": "XYZ"}, "has no valid id"),
            ({"created_at": "2024-01-01T00:00:00"}, "created_at must be an ISO 8601 time"),
            ({"key": None}, "has no key material but is not marked retired"),
            ({"retired_at": "2024-01-01T00:00:00+00:00"}, "marked retired but still holds"),
        ],
    )
    def test_malformed_key_refused(
        self, tmp_path: Path, key_file: Path, change: dict[str, object], message: str
    ) -> None:
        """Each defect of a key entry has its own message, which never quotes the key."""
        document = json.loads(key_file.read_text())
        original = document["keys"][0]["key"]
        document["keys"][0].update(change)
        rewrite_json(key_file, document)
        with pytest.raises(VaultKeyError, match=message) as caught:
            load(tmp_path)
        assert original not in caught.value.message

    def test_duplicate_key_refused(self, tmp_path: Path, key_file: Path) -> None:
        """The same key listed twice is refused."""
        document = json.loads(key_file.read_text())
        document["keys"].append(document["keys"][0])
        rewrite_json(key_file, document)
        with pytest.raises(VaultKeyError, match="appears twice"):
            load(tmp_path)


class TestAddKek:
    def test_new_key_becomes_active_and_old_stays_usable(
        self, tmp_path: Path, key_file: Path
    ) -> None:
        """add_kek makes the new key active and keeps the previous one for decrypting."""
        old = load(tmp_path).active
        new = add_kek(key_file)
        keyring = load(tmp_path)
        assert keyring.active == new
        assert new.id != old.id
        assert keyring.usable_ids() == {old.id, new.id}
        assert keyring.get(old.id) == old
        assert [kek.id for kek in keyring.all()] == [old.id, new.id]
        assert mode_of(key_file) == 0o600

    def test_refuses_a_readable_file(self, key_file: Path) -> None:
        """add_kek checks the mode like load does, and leaves a loose file untouched."""
        key_file.chmod(0o644)
        before = key_file.read_bytes()
        with pytest.raises(VaultKeyError, match="chmod 600"):
            add_kek(key_file)
        assert key_file.read_bytes() == before

    def test_concurrent_adds_lose_no_key(self, tmp_path: Path, key_file: Path) -> None:
        """Eight simultaneous add_kek calls leave all eight new keys in the file."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            added = list(pool.map(lambda _: add_kek(key_file), range(8)))
        keyring = load(tmp_path)
        assert {kek.id for kek in added} <= keyring.usable_ids()
        assert len(keyring.all()) == 9


class TestRetireKek:
    def test_destroys_material_and_keeps_the_record(self, tmp_path: Path, key_file: Path) -> None:
        """The retired key's bytes leave the file; its id and dates stay; get() refuses it."""
        old = load(tmp_path).active
        old_key = material(old)
        add_kek(key_file)
        retire_kek(key_file, old.id)
        raw = key_file.read_text()
        for encoding in (b64(old_key), old_key.hex(), base64.urlsafe_b64encode(old_key).decode()):
            assert encoding not in raw
        keyring = load(tmp_path)
        retired = next(kek for kek in keyring.all() if kek.id == old.id)
        assert retired.key is None
        assert retired.created_at == old.created_at
        assert retired.retired_at is not None
        assert old.id not in keyring.usable_ids()
        assert keyring.find(old.id) is None
        with pytest.raises(DecryptError, match=f"{old.id} is not in the keyring"):
            keyring.get(old.id)
        assert mode_of(key_file) == 0o600

    def test_refuses_the_active_key(self, tmp_path: Path, key_file: Path) -> None:
        """Retiring the active key is refused and changes nothing."""
        active = load(tmp_path).active
        before = key_file.read_bytes()
        with pytest.raises(VaultKeyError, match="it is the active key-encryption key"):
            retire_kek(key_file, active.id)
        assert key_file.read_bytes() == before

    def test_unknown_id_refused(self, key_file: Path) -> None:
        """Retiring an id the file does not have names that id."""
        with pytest.raises(VaultKeyError, match="has no key-encryption key 0123456789abcdef"):
            retire_kek(key_file, "0123456789abcdef")

    def test_retiring_twice_changes_nothing(self, tmp_path: Path, key_file: Path) -> None:
        """A resumed rotation may retire again: the second call keeps the first retirement."""
        old = load(tmp_path).active
        add_kek(key_file)
        retire_kek(key_file, old.id)
        after_first = key_file.read_bytes()
        retire_kek(key_file, old.id)
        assert key_file.read_bytes() == after_first


class TestEnvKey:
    def test_standard_base64(self, tmp_path: Path) -> None:
        """A standard-alphabet key becomes the single active key; a key file is ignored."""
        init_key_file(tmp_path / "vault.key")
        encoded = b64(ALPHABET_KEY)
        assert "+" in encoded
        assert "/" in encoded
        keyring = load(tmp_path, env_key=encoded)
        assert keyring.source is KeySource.ENV
        assert keyring.active.key == ALPHABET_KEY
        assert keyring.usable_ids() == {kek_fingerprint(ALPHABET_KEY)}

    def test_urlsafe_unpadded_base64(self, tmp_path: Path) -> None:
        """The URL-safe alphabet, without padding and with stray whitespace, is the same key."""
        encoded = base64.urlsafe_b64encode(ALPHABET_KEY).decode().rstrip("=")
        assert "-" in encoded
        assert "_" in encoded
        keyring = load(tmp_path, env_key=f" {encoded}\n")
        assert keyring.active.key == ALPHABET_KEY

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            (b64(b"k" * 31), "TGFLEET_VAULT_KEY decodes to 31 bytes; a vault key is exactly 32"),
            (b64(b"k" * 33), "decodes to 33 bytes"),
            ("this is not base64 at all!", "TGFLEET_VAULT_KEY is not base64"),
            ("", "TGFLEET_VAULT_KEY is set but empty"),
        ],
    )
    def test_bad_key_refused(self, tmp_path: Path, value: str, message: str) -> None:
        """A key of the wrong length, or not base64, or empty, is refused specifically."""
        with pytest.raises(VaultKeyError, match=message) as caught:
            load(tmp_path, env_key=value)
        if value:
            assert value not in caught.value.message

    def test_env_and_passphrase_together_refused(self, tmp_path: Path) -> None:
        """Both sources at once is ambiguous and refused before any derivation."""
        with pytest.raises(VaultKeyError, match="set only one of"):
            load(tmp_path, env_key=b64(ALPHABET_KEY), passphrase="correct horse")
        assert not (tmp_path / "vault.salt").exists()


class TestPreviousKeys:
    def test_previous_keys_usable_but_not_active(self, tmp_path: Path) -> None:
        """Previous keys decrypt (get works) but the env key stays the one that wraps."""
        old, older = os.urandom(32), os.urandom(32)
        new = os.urandom(32)
        keyring = load(
            tmp_path,
            env_key=b64(new),
            previous_keys=f"{b64(old)}, {base64.urlsafe_b64encode(older).decode()},",
        )
        assert keyring.active.key == new
        assert keyring.usable_ids() == {kek_fingerprint(k) for k in (new, old, older)}
        assert keyring.get(kek_fingerprint(old)).key == old

    def test_previous_key_repeating_the_active_one(self, tmp_path: Path) -> None:
        """Listing the active key among the previous ones is harmless."""
        key = os.urandom(32)
        keyring = load(tmp_path, env_key=b64(key), previous_keys=b64(key))
        assert keyring.usable_ids() == {kek_fingerprint(key)}

    def test_bad_previous_key_named_by_position(self, tmp_path: Path) -> None:
        """A malformed previous key is reported by its position, never by its value."""
        with pytest.raises(VaultKeyError, match="TGFLEET_VAULT_PREVIOUS_KEYS entry 2 is not"):
            load(
                tmp_path,
                env_key=b64(os.urandom(32)),
                previous_keys=f"{b64(os.urandom(32))},???",
            )

    def test_previous_keys_with_key_file(self, tmp_path: Path, key_file: Path) -> None:
        """With a key file, previous keys join its keys (migrating from an environment key)."""
        extra = os.urandom(32)
        keyring = load(tmp_path, previous_keys=b64(extra))
        assert keyring.source is KeySource.FILE
        assert kek_fingerprint(extra) in keyring.usable_ids()
        assert keyring.active.key != extra


class TestPassphrase:
    def test_salt_created_private_and_key_stable(self, tmp_path: Path) -> None:
        """The first load creates a 0600 hex salt; a second load derives the same key id."""
        first = load(tmp_path, passphrase="correct horse battery staple")
        salt_file = tmp_path / "vault.salt"
        assert mode_of(salt_file) == 0o600
        assert len(bytes.fromhex(salt_file.read_text())) == 16
        assert first.source is KeySource.PASSPHRASE
        second = load(tmp_path, passphrase="correct horse battery staple")
        assert second.active.id == first.active.id
        assert second.active.key == first.active.key

    def test_other_salt_other_key(self, tmp_path: Path) -> None:
        """The same passphrase with another salt file derives another key."""
        one = load(tmp_path, passphrase="correct horse battery staple")
        other = load(
            tmp_path, passphrase="correct horse battery staple", salt_file=tmp_path / "other.salt"
        )
        assert other.active.id != one.active.id

    def test_other_passphrase_other_key(self, tmp_path: Path) -> None:
        """Another passphrase with the same salt derives another key."""
        one = load(tmp_path, passphrase="correct horse battery staple")
        other = load(tmp_path, passphrase="correct horse battery stapler")
        assert other.active.id != one.active.id

    def test_unicode_normalisation(self, tmp_path: Path) -> None:
        """A passphrase typed precomposed or decomposed (NFC/NFD) derives the same key."""
        composed = load(tmp_path, passphrase="caf\u00e9 au lait")
        decomposed = load(tmp_path, passphrase="cafe\u0301 au lait")
        assert composed.active.id == decomposed.active.id

    def test_previous_keys(self, tmp_path: Path) -> None:
        """Previous keys work with a passphrase as with an environment key."""
        old = os.urandom(32)
        keyring = load(tmp_path, passphrase="correct horse", previous_keys=b64(old))
        assert keyring.usable_ids() == {keyring.active.id, kek_fingerprint(old)}

    def test_corrupt_salt_refused(self, tmp_path: Path) -> None:
        """A salt file that is not 16 hex bytes is refused, not silently replaced."""
        salt_file = tmp_path / "vault.salt"
        salt_file.write_text("abcd\n")
        with pytest.raises(VaultKeyError, match="must hold 32 hex characters"):
            load(tmp_path, passphrase="correct horse")
        assert salt_file.read_text() == "abcd\n"

    def test_empty_passphrase_refused(self, tmp_path: Path) -> None:
        """An empty passphrase is a configuration error, not a key."""
        with pytest.raises(VaultKeyError, match="TGFLEET_VAULT_PASSPHRASE is set but empty"):
            load(tmp_path, passphrase="")


class TestRepr:
    def test_no_key_material_in_repr_or_str(self, tmp_path: Path, key_file: Path) -> None:
        """repr() and str() of a Kek and a Keyring show ids, never key bytes in any encoding."""
        add_kek(key_file)
        keyring = load(tmp_path)
        texts = [repr(keyring), str(keyring)]
        for kek in keyring.all():
            texts += [repr(kek), str(kek)]
        rendered = "\n".join(texts)
        assert keyring.active.id in rendered
        for kek in keyring.all():
            key = material(kek)
            for encoding in (
                b64(key),
                base64.urlsafe_b64encode(key).decode(),
                key.hex(),
                repr(key),
            ):
                assert encoding not in rendered


class TestKeyringInvariants:
    def test_get_unknown_id_names_it(self) -> None:
        """get() of an id never loaded raises DecryptError naming the id; find() gives None."""
        kek = Kek.generate()
        keyring = Keyring(source=KeySource.ENV, active=kek, keks=[kek])
        assert keyring.find("0123456789abcdef") is None
        with pytest.raises(DecryptError, match="0123456789abcdef is not in the keyring"):
            keyring.get("0123456789abcdef")

    def test_retired_key_cannot_be_active(self) -> None:
        """A keyring whose active key is retired cannot be built."""
        kek = Kek.generate().retired()
        with pytest.raises(ValueError, match="is retired"):
            Keyring(source=KeySource.FILE, active=kek, keks=[kek])

    def test_kek_id_must_match_key(self) -> None:
        """A Kek whose id is not its key's fingerprint cannot be built."""
        with pytest.raises(ValueError, match="does not match"):
            Kek(id="0123456789abcdef", key=os.urandom(32), created_at=Kek.generate().created_at)
