"""C2SP signed-note checkpoints: format, known-answer vector, strict parsing, verification."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    make_checkpoint,
    note_key_hash,
    open_note,
    parse_checkpoint,
    sign_checkpoint,
    sign_note,
    verifier_key,
    verify_checkpoint,
)
from ledger.hasher import EMPTY_ROOT, leaf_hash
from ledger.keys import generate_private_key

# Known-answer vector published with golang.org/x/mod/sumdb/note (the signed-note reference
# implementation): signer key, verifier key, text, and the exact signed note it produces.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
    "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

KEY = generate_private_key()
ORIGIN = "abs-venue.example/ledger"
ROOT = leaf_hash(b"some block hash")


def _go_key() -> Ed25519PrivateKey:
    seed = base64.b64decode(GO_SIGNER_KEY.split("+", 4)[4])
    assert seed[0] == 1  # the Ed25519 type byte
    return Ed25519PrivateKey.from_private_bytes(seed[1:])


def test_signed_note_known_answer_vector() -> None:
    key = _go_key()
    assert verifier_key("PeterNeumann", key.public_key()) == GO_VERIFIER_KEY
    assert note_key_hash("PeterNeumann", key.public_key()).hex() == "c74f20a3"
    assert sign_note(GO_TEXT, key, "PeterNeumann") == GO_NOTE
    assert open_note(GO_NOTE, key.public_key(), "PeterNeumann") == GO_TEXT
    with pytest.raises(CheckpointError) as caught:
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), key.public_key(), "PeterNeumann")
    assert caught.value.code == "checkpoint.bad_signature"


def test_checkpoint_text_format() -> None:
    checkpoint = make_checkpoint(ORIGIN, 20852, ROOT, timestamp_ns=1_764_158_400_000_000_000)
    note = sign_checkpoint(checkpoint, KEY)
    lines = note.split("\n")
    assert lines[:4] == [
        ORIGIN,
        "20852",
        base64.b64encode(ROOT).decode(),
        "time_ns 1764158400000000000",
    ]
    assert lines[4] == ""
    assert lines[5].startswith(f"\u2014 {ORIGIN} ")
    assert lines[6] == "" and len(lines) == 7
    blob = base64.b64decode(lines[5].split(" ")[2])
    assert blob[:4] == note_key_hash(ORIGIN, KEY.public_key()) and len(blob) == 68


def test_sign_parse_verify_round_trip() -> None:
    checkpoint = make_checkpoint(ORIGIN, 7, ROOT, timestamp_ns=123)
    note = sign_checkpoint(checkpoint, KEY)
    parsed, signatures = parse_checkpoint(note)
    assert parsed == checkpoint and parsed.timestamp_ns == 123
    assert len(signatures) == 1 and signatures[0].name == ORIGIN
    assert verify_checkpoint(note, KEY.public_key(), origin=ORIGIN) == checkpoint
    assert verify_checkpoint(note.encode(), KEY.public_key()) == checkpoint
    empty = make_checkpoint(ORIGIN, 0, EMPTY_ROOT)
    assert verify_checkpoint(sign_checkpoint(empty, KEY), KEY.public_key()).timestamp_ns is None


def test_other_signatures_are_ignored_and_wrong_keys_refused() -> None:
    note = sign_checkpoint(make_checkpoint(ORIGIN, 7, ROOT), KEY)
    stranger = generate_private_key()
    cosigned = note + sign_note("x\n", stranger, "witness.example").split("\n\n")[1]
    assert verify_checkpoint(cosigned, KEY.public_key()).size == 7
    with pytest.raises(CheckpointError) as caught:
        verify_checkpoint(note, stranger.public_key())
    assert caught.value.code == "checkpoint.unknown_key"
    with pytest.raises(CheckpointError) as origin:
        verify_checkpoint(note, KEY.public_key(), origin="other.example/log")
    assert origin.value.code == "checkpoint.origin_mismatch"


def test_any_changed_body_byte_breaks_the_signature() -> None:
    note = sign_checkpoint(make_checkpoint(ORIGIN, 70, ROOT), KEY)
    body_end = note.index("\n\n")
    failures = []
    for position in range(body_end):
        if note[position] == "\n":
            continue
        replacement = "1" if note[position] != "1" else "2"
        tampered = note[:position] + replacement + note[position + 1 :]
        try:
            verify_checkpoint(tampered, KEY.public_key(), origin=ORIGIN)
        except CheckpointError:
            continue
        failures.append(position)
    assert not failures


@pytest.mark.parametrize(
    "note",
    [
        "",
        "origin\n1\nroot\n",  # no signatures
        f"{ORIGIN}\n01\n{base64.b64encode(ROOT).decode()}\n\n\u2014 a AAAAAAAA\n",
        f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n\n\u2014 a AAAAAAAA\n",
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n\n\u2014 a AAAAAAAA\n",
        f"{ORIGIN}\n1\n\n\u2014 a AAAAAAAA\n",
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}\n\n- a AAAAAAAA\n",
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}\n\n\u2014 a AAAA\n",
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}\n\n\u2014 a AAAAAAAA",
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}\x01\n\n\u2014 a AAAAAAAA\n",
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(CheckpointError) as caught:
        parse_checkpoint(note)
    assert caught.value.code == "checkpoint.malformed"


@pytest.mark.parametrize("origin", ["", "has space", "a+b", "tab\there"])
def test_bad_origins_cannot_be_signed(origin: str) -> None:
    with pytest.raises(CheckpointError):
        sign_checkpoint(Checkpoint(origin, 1, ROOT), KEY)
