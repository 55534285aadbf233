"""Key generation, 0600 storage, permission warnings and public key text forms."""

from __future__ import annotations

import base64
import os
import stat
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from ledger.keys import (
    InsecureKeyPermissionsWarning,
    KeyFileError,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    public_key_bytes,
    public_key_from_text,
    public_key_to_text,
    save_private_key,
    save_public_key,
)


def test_saved_key_is_0600_and_loads_back_without_warning(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "keys" / "ledger_ed25519.key"
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        save_private_key(key, path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob(".*tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_private_key(path)
    assert public_key_bytes(loaded) == public_key_bytes(key)


def test_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    save_private_key(generate_private_key(), path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError) as caught:
        save_private_key(generate_private_key(), path)
    assert caught.value.code == "ledger.key_file"
    assert path.read_bytes() == before


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o666])
def test_loading_a_group_or_world_accessible_key_warns(tmp_path: Path, mode: int) -> None:
    key = generate_private_key()
    path = tmp_path / "k.key"
    save_private_key(key, path)
    path.chmod(mode)
    with pytest.warns(InsecureKeyPermissionsWarning, match=f"{mode:04o}"):
        loaded = load_private_key(path)
    assert public_key_bytes(loaded) == public_key_bytes(key)


def test_raw_32_byte_private_key_file_loads(tmp_path: Path) -> None:
    key = generate_private_key()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    path = tmp_path / "raw.key"
    path.write_bytes(raw)
    path.chmod(0o600)
    assert public_key_bytes(load_private_key(path)) == public_key_bytes(key)


def test_bad_key_files_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as missing:
        load_private_key(tmp_path / "absent.key")
    assert missing.value.code == "ledger.key_file"
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"not a key at all")
    garbage.chmod(0o600)
    with pytest.raises(KeyFileError) as bad:
        load_private_key(garbage)
    assert bad.value.code == "ledger.key_format"


def test_key_id_is_first_8_bytes_of_sha256_of_raw_key() -> None:
    raw = bytes(range(32))
    # SHA-256(00 01 .. 1f) starts 630dcd29 66c43366 (computed independently with sha256sum).
    assert key_id(raw) == "630dcd2966c43366"
    key = generate_private_key()
    assert key_id(key) == key_id(key.public_key()) == key_id(public_key_bytes(key))
    assert len(key_id(key)) == 16


def test_public_key_text_forms_round_trip(tmp_path: Path) -> None:
    key = generate_private_key()
    raw = public_key_bytes(key)
    text = public_key_to_text(key)
    assert text == raw.hex()
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    for form in (text, text.upper(), base64.b64encode(raw).decode(), pem, f"  {text}\n"):
        assert public_key_bytes(public_key_from_text(form)) == raw
    save_public_key(key, tmp_path / "ledger.pub")
    assert public_key_bytes(load_public_key(tmp_path / "ledger.pub")) == raw


@pytest.mark.parametrize("text", ["", "zz" * 32, "00" * 31, base64.b64encode(b"x" * 31).decode()])
def test_bad_public_key_text_is_a_key_format_error(text: str) -> None:
    with pytest.raises(KeyFileError) as caught:
        public_key_from_text(text)
    assert caught.value.code == "ledger.key_format"


def test_the_public_key_file_is_written_once_and_then_must_match(tmp_path: Path) -> None:
    from ledger.keys import ensure_public_key_file

    key, other = generate_private_key(), generate_private_key()
    path = tmp_path / "keys" / "ledger_ed25519.pub"
    ensure_public_key_file(key, path)
    assert path.read_text() == public_key_to_text(key) + "\n"
    ensure_public_key_file(key, path)  # matches: nothing to do
    path.write_text(public_key_to_text(other) + "\n")
    with pytest.raises(KeyFileError) as caught:
        ensure_public_key_file(key, path)
    assert caught.value.code == "ledger.public_key_mismatch"
    assert key_id(other) in str(caught.value) and key_id(key) in str(caught.value)
    assert path.read_text() == public_key_to_text(other) + "\n"  # never silently rewritten
    path.write_text("zz\n")
    with pytest.raises(KeyFileError) as unreadable:
        ensure_public_key_file(key, path)
    assert unreadable.value.code == "ledger.key_format"


def test_base64_public_key_text_must_be_canonical() -> None:
    """The public key text forms use the one strict decoder (ledger.b64)."""
    raw = public_key_bytes(generate_private_key())
    text = base64.b64encode(raw).decode()
    assert public_key_bytes(public_key_from_text(text)) == raw
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    spelled = text[:-2] + alphabet[alphabet.index(text[-2]) | 1] + "="  # pad bits set
    assert spelled != text and base64.b64decode(spelled) == raw
    for wrong in (spelled, text.rstrip("="), text[:20] + "\n" + text[20:]):
        with pytest.raises(KeyFileError) as caught:
            public_key_from_text(wrong)
        assert caught.value.code == "ledger.key_format"
