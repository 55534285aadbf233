"""Ed25519 signing keys for the ledger: generation, 0600 storage, loading, public key text.

API:

- ``generate_private_key() -> Ed25519PrivateKey``
- ``save_private_key(key, path) -> None``: PKCS#8 PEM, created 0600 from the first byte (the
  file is opened with that mode, written to a temporary name, fsynced and renamed into place,
  then the directory is fsynced); refuses to overwrite an existing key (``KeyFileError``).
- ``load_private_key(path) -> Ed25519PrivateKey``: warns ``InsecureKeyPermissionsWarning`` if
  group or other permission bits are set; ``KeyFileError`` if unreadable or not Ed25519.
- ``public_key_bytes(key) -> bytes``: the raw 32-byte public key of a public or private key.
- ``key_id(public_key) -> str``: first 8 bytes of ``SHA-256(raw public key)``, as 16 hex chars.
  Every block names the key that signed it by this id. ``raw_key_id(key) -> bytes``: the same
  8 bytes unencoded, as the block header holds them.
- ``public_key_to_text(key) -> str``: 64 lowercase hex characters of the raw public key.
- ``public_key_from_text(text) -> Ed25519PublicKey``: accepts 64 hex characters, canonical
  standard base64 of the 32 raw bytes (``ledger.b64``), or a PEM ``PUBLIC KEY`` block.
- ``save_public_key(key, path)`` / ``load_public_key(path)``: the hex text plus a newline, 0644.
- ``ensure_public_key_file(signing_key, path)``: write the public key file if it is missing,
  else check that it holds ``signing_key``'s public key (the venue does this at every start).

Errors: ``KeyFileError`` (a ``ValueError``) with ``code`` ``"ledger.key_file"``,
``"ledger.key_format"`` or ``"ledger.public_key_mismatch"``.
"""

from __future__ import annotations

import os
import stat
import warnings
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import b64
from ledger.recordlog import fsync_directory

KEY_ID_BYTES = 8
PRIVATE_KEY_MODE = 0o600
# Where a venue data directory keeps its keys: DATA_DIR/keys/ledger_ed25519.{key,pub}.
KEYS_DIRECTORY = "keys"
SIGNING_KEY_FILE_NAME = "ledger_ed25519.key"
PUBLIC_KEY_FILE_NAME = "ledger_ed25519.pub"


class KeyFileError(ValueError):
    """A key file or key text could not be used; ``code`` names the reason class."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InsecureKeyPermissionsWarning(UserWarning):
    """A private key file is readable or writable by group or others."""


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 private key from the operating system's randomness."""
    return Ed25519PrivateKey.generate()


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key (RFC 8032 encoding) of ``key``."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte private key (for the writer process's pipe and the state file's MAC)."""
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def raw_key_id(key: Ed25519PrivateKey | Ed25519PublicKey | bytes) -> bytes:
    """The key id as the block header holds it: the first 8 bytes of SHA-256 of the raw 32-byte
    public key (``key`` may be those 32 bytes)."""
    raw = key if isinstance(key, bytes) else public_key_bytes(key)
    return sha256(raw).digest()[:KEY_ID_BYTES]


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey | bytes) -> str:
    """Key id: hex of :func:`raw_key_id` (16 lowercase hex characters)."""
    return raw_key_id(key).hex()


def save_private_key(key: Ed25519PrivateKey, path: str | os.PathLike[str]) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM to ``path`` with mode 0600, atomically.

    The temporary file is created by ``os.open`` with mode 0600 and ``O_EXCL``, so the key bytes
    are never in a file anyone else could read; an existing key is never overwritten (losing the
    venue's signing key would orphan the ledger), so an existing ``path`` is a ``KeyFileError``.
    """
    target = Path(path)
    if target.exists():
        raise KeyFileError("ledger.key_file", f"refusing to overwrite existing key {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(temporary, flags, PRIVATE_KEY_MODE)
    try:
        os.fchmod(descriptor, PRIVATE_KEY_MODE)  # umask can only remove bits; be explicit anyway
        os.write(descriptor, pem)
        os.fsync(descriptor)
    except BaseException:
        os.close(descriptor)
        temporary.unlink(missing_ok=True)
        raise
    os.close(descriptor)
    try:
        os.link(temporary, target)  # fails if target appeared meanwhile: never overwrite
    except FileExistsError:
        raise KeyFileError(
            "ledger.key_file", f"refusing to overwrite existing key {target}"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
    fsync_directory(target.parent)


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load a PEM (PKCS#8) or raw 32-byte Ed25519 private key from ``path``.

    Warns ``InsecureKeyPermissionsWarning`` when group/other permission bits are set, because the
    key signs the book of record; the key is still returned so an operator can fix the mode.
    """
    source = Path(path)
    try:
        mode = stat.S_IMODE(source.stat().st_mode)
        data = source.read_bytes()
    except OSError as error:
        raise KeyFileError("ledger.key_file", f"cannot read key {source}: {error}") from error
    if mode & 0o077:
        warnings.warn(
            f"private key {source} has mode {mode:04o}; it should be 0600",
            InsecureKeyPermissionsWarning,
            stacklevel=2,
        )
    try:
        if len(data) == 32:
            return Ed25519PrivateKey.from_private_bytes(data)
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise KeyFileError("ledger.key_format", f"{source} is not a usable key: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError("ledger.key_format", f"{source} is not an Ed25519 private key")
    return key


def public_key_to_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as 64 lowercase hex characters (the form used in blocks and files)."""
    return public_key_bytes(key).hex()


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """Parse a public key given as 64 hex chars, base64 of the 32 raw bytes, or PEM."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
            if not isinstance(key, Ed25519PublicKey):
                raise KeyFileError("ledger.key_format", "PEM key is not an Ed25519 public key")
            return key
        raw = bytes.fromhex(text) if len(text) == 64 else b64.decode(text)
        if len(raw) != 32:
            raise KeyFileError("ledger.key_format", "an Ed25519 public key is 32 bytes")
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, UnsupportedAlgorithm) as error:
        if isinstance(error, KeyFileError):
            raise
        raise KeyFileError("ledger.key_format", f"not an Ed25519 public key: {error}") from error


def save_public_key(
    key: Ed25519PrivateKey | Ed25519PublicKey, path: str | os.PathLike[str]
) -> None:
    """Write the public key's hex text and a newline to ``path`` (public, so mode 0644)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(public_key_to_text(key) + "\n")
    target.chmod(0o644)


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Read a public key file in any form ``public_key_from_text`` accepts."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise KeyFileError("ledger.key_file", f"cannot read public key {path}: {error}") from error
    return public_key_from_text(text)


def ensure_public_key_file(signing_key: Ed25519PrivateKey, path: str | os.PathLike[str]) -> None:
    """Write ``signing_key``'s public key to ``path`` if there is no such file; else check
    that the file holds exactly that key.

    The public key file is what participants check receipts and checkpoints against, so a file
    that names another key (edited, or copied from another venue) must stop the venue rather
    than be trusted or silently rewritten. ``KeyFileError``: ``ledger.public_key_mismatch``
    naming both key ids, or ``ledger.key_file`` / ``ledger.key_format`` if it is unreadable.
    """
    target = Path(path)
    if not target.exists():
        save_public_key(signing_key, target)
        return
    try:
        stored = load_public_key(target)
    except KeyFileError as error:
        raise KeyFileError(
            error.code,
            f"{target} does not hold a public key ({error}); delete it to have it written "
            "again from the signing key",
        ) from error
    if public_key_bytes(stored) != public_key_bytes(signing_key):
        raise KeyFileError(
            "ledger.public_key_mismatch",
            f"{target} holds key {key_id(stored)}, but the signing key is "
            f"{key_id(signing_key)}: receipts would be checked against the wrong key; restore "
            "the file, or delete it to have it written again from the signing key",
        )
