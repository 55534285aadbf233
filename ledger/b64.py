"""The one base64 codec of the ledger: standard alphabet, padded, strict, canonical.

Everything the ledger, the audit and a participant's receipt check decode -- checkpoint roots
and signature lines (C2SP signed notes), receipts' blocks and proof hashes, public keys given
as text -- goes through :func:`decode`, so that one text is accepted or refused the same way
everywhere. Strict means: only ``A-Z a-z 0-9 + /`` and ``=`` padding to a multiple of four
characters, no whitespace or line breaks, and canonical (the unused low bits of the last
character zero), so that every byte string has exactly one accepted text. A verifier that
accepted a second spelling of a signature would accept a note whose bytes differ from the one
that was signed.

Standard library only: it travels with ``receipt.py``, ``hasher.py`` and ``proof.py`` to an
outside verifier.
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["Base64Error", "decode", "encode"]


class Base64Error(ValueError):
    """Text that is not canonical standard base64; callers re-raise it with their own code."""


def encode(data: bytes) -> str:
    """Standard, padded base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


def decode(text: object) -> bytes:
    """The bytes of canonical standard base64 ``text``; :class:`Base64Error` otherwise."""
    if not isinstance(text, str):
        raise Base64Error("not a string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Base64Error("not standard padded base64") from None
    if encode(raw) != text:  # e.g. non-zero pad bits: another spelling of the same bytes
        raise Base64Error("not canonical base64")
    return raw
