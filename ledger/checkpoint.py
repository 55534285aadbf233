"""Signed checkpoints in the C2SP formats: https://c2sp.org/tlog-checkpoint over
https://c2sp.org/signed-note, signed with Ed25519.

A checkpoint note looks like this (``\\n`` line ends; the last body line is optional)::

    abs-venue.example/ledger          <- origin (also the signing key's name)
    20852                             <- tree size, decimal, no leading zeros
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=   <- base64 RFC 6962 root hash
    time_ns 1764158400000000000       <- extension line: issue time, ns since the Unix epoch
                                      <- blank line
    — abs-venue.example/ledger Az3grlgt...=        <- em dash, key name, base64(keyhash || sig)

The signature is Ed25519 over the UTF-8 note text (everything before the blank line, including
the final newline). ``keyhash`` is the first 4 bytes of
``SHA-256(key name || 0x0A || 0x01 || raw public key)`` (0x01 = signed-note Ed25519 type).

API:

- ``Checkpoint(origin, size, root_hash, extensions=())`` with ``.timestamp_ns`` (from a
  ``time_ns`` extension line, or None) and ``.body() -> str``; ``make_checkpoint(origin, size,
  root_hash, timestamp_ns=None)``.
- ``sign_checkpoint(checkpoint, private_key, key_name=None) -> str``: the full signed note.
- ``parse_checkpoint(note) -> (Checkpoint, list[NoteSignature])``: strict syntax, no crypto.
- Generic signed notes: ``sign_note(text, private_key, key_name)``, ``split_note(note)``,
  ``open_note(note, public_key, key_name) -> text``.
- ``verify_checkpoint(note, public_key, key_name=None, origin=None) -> Checkpoint``: needs one
  valid signature by ``public_key`` under ``key_name`` (default: the checkpoint's origin).
- ``note_key_hash(name, public_key) -> bytes``; ``verifier_key(name, public_key) -> str`` (the
  signed-note verifier key string ``name+hex(keyhash)+base64(0x01 || key)``).

Every problem raises ``CheckpointError`` (a ``ValueError``) with a stable ``code``:
``checkpoint.malformed``, ``checkpoint.origin_mismatch``, ``checkpoint.unknown_key``,
``checkpoint.bad_signature``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import b64
from ledger.hasher import HASH_SIZE
from ledger.keys import public_key_bytes

ED25519_KEY_TYPE = b"\x01"
SIGNATURE_PREFIX = "\u2014 "  # em dash and a space start every signature line
TIMESTAMP_EXTENSION = "time_ns"
MAX_SIGNATURES = 100
_SIZE_PATTERN = re.compile(r"0|[1-9][0-9]{0,19}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


class CheckpointError(ValueError):
    """A checkpoint note is malformed, from another log, or not validly signed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log ``origin``, its ``size`` (leaves) and RFC 6962 ``root_hash``."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    @property
    def timestamp_ns(self) -> int | None:
        """Issue time from the ``time_ns <int>`` extension line, if present."""
        for line in self.extensions:
            name, _, value = line.partition(" ")
            if name == TIMESTAMP_EXTENSION and value.isdigit():
                return int(value)
        return None

    def body(self) -> str:
        """The note text that is signed: origin, size, base64 root, extension lines."""
        _check_name(self.origin, "origin")
        if type(self.size) is not int or not 0 <= self.size < 2**64:
            raise CheckpointError("checkpoint.malformed", "size must be an unsigned 64-bit int")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError("checkpoint.malformed", "root hash must be 32 bytes")
        for line in self.extensions:
            if not line or "\n" in line or _CONTROL.search(line):
                raise CheckpointError("checkpoint.malformed", "bad extension line")
        lines = [self.origin, str(self.size), b64.encode(self.root_hash)]
        return "\n".join([*lines, *self.extensions]) + "\n"


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, 4-byte key hash and the signature bytes."""

    name: str
    key_hash: bytes
    signature: bytes


def make_checkpoint(
    origin: str, size: int, root_hash: bytes, timestamp_ns: int | None = None
) -> Checkpoint:
    """A checkpoint, with a ``time_ns`` extension line when ``timestamp_ns`` is given."""
    extensions = () if timestamp_ns is None else (f"{TIMESTAMP_EXTENSION} {timestamp_ns}",)
    return Checkpoint(origin, size, bytes(root_hash), extensions)


def _check_name(name: str, what: str) -> None:
    """Signed-note key names: non-empty, no Unicode whitespace, no '+'."""
    if not name or "+" in name or any(char.isspace() for char in name) or _CONTROL.search(name):
        raise CheckpointError("checkpoint.malformed", f"{what} {name!r} is not a valid key name")


def note_key_hash(name: str, public_key: Ed25519PublicKey) -> bytes:
    """First 4 bytes of ``SHA-256(name || 0x0A || 0x01 || raw public key)``."""
    material = name.encode("utf-8") + b"\n" + ED25519_KEY_TYPE + public_key_bytes(public_key)
    return sha256(material).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """The signed-note verifier key string ``name+<hex keyhash>+<base64(0x01 || key)>``."""
    _check_name(name, "key name")
    encoded = b64.encode(ED25519_KEY_TYPE + public_key_bytes(public_key))
    return f"{name}+{note_key_hash(name, public_key).hex()}+{encoded}"


def sign_note(text: str, private_key: Ed25519PrivateKey, key_name: str) -> str:
    """A signed note: ``text`` (non-empty lines, ending in a newline), a blank line, and one
    Ed25519 signature line by ``key_name``."""
    _check_name(key_name, "key name")
    if not text.endswith("\n") or "\n\n" in text or text.startswith("\n") or _CONTROL.search(text):
        raise CheckpointError("checkpoint.malformed", "note text must be non-empty lines")
    signature = private_key.sign(text.encode("utf-8"))
    blob = note_key_hash(key_name, private_key.public_key()) + signature
    return f"{text}\n{SIGNATURE_PREFIX}{key_name} {b64.encode(blob)}\n"


def sign_checkpoint(
    checkpoint: Checkpoint, private_key: Ed25519PrivateKey, key_name: str | None = None
) -> str:
    """The complete signed checkpoint note, signed under ``key_name`` (default: the origin)."""
    name = checkpoint.origin if key_name is None else key_name
    return sign_note(checkpoint.body(), private_key, name)


def _b64(text: str, what: str) -> bytes:
    try:
        return b64.decode(text)
    except b64.Base64Error as error:
        raise CheckpointError("checkpoint.malformed", f"{what}: {error}") from error


def split_note(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text (with final newline) and parsed signature lines."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CheckpointError("checkpoint.malformed", "note is not UTF-8") from error
    if _CONTROL.search(note):
        raise CheckpointError("checkpoint.malformed", "note holds control characters")
    split = note.rfind("\n\n")
    if split < 0:
        raise CheckpointError("checkpoint.malformed", "no blank line before the signatures")
    text, signature_block = note[: split + 1], note[split + 2 :]
    if not signature_block.endswith("\n"):
        raise CheckpointError("checkpoint.malformed", "signature block must end with a newline")
    signatures = []
    for line in signature_block[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise CheckpointError("checkpoint.malformed", f"bad signature line {line!r}")
        name, space, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        _check_name(name, "signature key name")
        blob = _b64(encoded, "signature") if space else b""
        if len(blob) < 5:
            raise CheckpointError("checkpoint.malformed", "signature is too short")
        signatures.append(NoteSignature(name, blob[:4], blob[4:]))
    if len(signatures) > MAX_SIGNATURES:
        raise CheckpointError("checkpoint.malformed", "too many signatures")
    return text, signatures


def open_note(note: str | bytes, public_key: Ed25519PublicKey, key_name: str) -> str:
    """Return the note's text if it carries a valid Ed25519 signature by ``key_name``.

    Signatures by other keys are ignored, as signed-note prescribes.
    """
    text, signatures = split_note(note)
    expected_hash = note_key_hash(key_name, public_key)
    matching = [s for s in signatures if s.name == key_name and s.key_hash == expected_hash]
    if not matching:
        raise CheckpointError("checkpoint.unknown_key", f"no signature by key {key_name!r}")
    for signature in matching:
        try:
            public_key.verify(signature.signature, text.encode("utf-8"))
        except InvalidSignature:
            continue
        return text
    raise CheckpointError("checkpoint.bad_signature", "note signature does not verify")


def parse_checkpoint_body(text: str) -> Checkpoint:
    """Parse checkpoint note text strictly: origin, size, canonical base64 root, extensions."""
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint.malformed", "checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise CheckpointError("checkpoint.malformed", "body needs origin, size, root lines")
    origin, size_text, root_text, *extensions = lines
    _check_name(origin, "origin")
    if not _SIZE_PATTERN.fullmatch(size_text) or int(size_text) >= 2**64:
        raise CheckpointError("checkpoint.malformed", f"bad tree size {size_text!r}")
    root = _b64(root_text, "root hash")
    if len(root) != HASH_SIZE:
        raise CheckpointError("checkpoint.malformed", "root hash must be 32 bytes")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


def parse_checkpoint(note: str | bytes) -> tuple[Checkpoint, list[NoteSignature]]:
    """Parse a signed checkpoint note strictly (signatures are not verified here)."""
    text, signatures = split_note(note)
    return parse_checkpoint_body(text), signatures


def verify_checkpoint(
    note: str | bytes,
    public_key: Ed25519PublicKey,
    key_name: str | None = None,
    origin: str | None = None,
) -> Checkpoint:
    """Parse ``note`` and require a valid Ed25519 signature by ``public_key``.

    ``key_name`` defaults to the checkpoint's origin. If ``origin`` is given the checkpoint must
    name it.
    """
    checkpoint, _ = parse_checkpoint(note)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(
            "checkpoint.origin_mismatch", f"origin {checkpoint.origin!r} is not {origin!r}"
        )
    open_note(note, public_key, checkpoint.origin if key_name is None else key_name)
    return checkpoint
