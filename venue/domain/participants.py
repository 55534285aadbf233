"""Participants, segments, roles, API-key scopes, credentials and request signing.

A participant trades in exactly one *segment* -- ``interbank`` or ``exchange`` -- and both segments
meet in the same book; every fill records both sides' segments. Roles say what a participant
does: ``broker`` and ``market_maker`` trade (and must have a segment); ``clerk`` (read-only audit),
``operator`` (runs the venue) and ``servicer`` (a deal's servicer: publishes its pool reports and
remits its collections, ``venue/domain/disclosures.py``) never trade and have no segment
(``segment is None``).

API keys carry *scopes*; ``DEFAULT_SCOPES`` gives each role its natural set:
broker/market_maker -> read, trade; clerk -> read, audit; operator -> read, audit, admin;
servicer -> read, disclose.

Request signing (SPEC section 4), shared by clients and the server so both compute the same bytes::

    message   = timestamp + "\\n" + METHOD + "\\n" + path_and_query + "\\n" + hex(sha256(body))
    signature = hex(HMAC-SHA256(key = secret as UTF-8, message as UTF-8))

``timestamp`` is the exact header text the client sent (the API layer decides its format and the
clock window), ``METHOD`` is upper-cased, ``path_and_query`` is the raw request target
(``/v1/orders?symbol=IPABS-2025-1-A``; no query -> just the path), ``body`` the raw bytes
(``b""`` for none).

An API key is one of two kinds, told apart by its stored *credential* string:

* HMAC: the credential is the shared secret (``vs_...``); the signature is the HMAC above (64
  hex characters). The venue must keep the secret to recompute it.
* Ed25519: the participant keeps the private key and registers only its public key; the
  credential is ``"ed25519:" + 64 hex`` and the signature is the Ed25519 signature of the same
  message (128 hex characters). Whoever holds the venue's data directory still cannot sign as
  the participant.

Public API::

    class Segment(StrEnum): INTERBANK, EXCHANGE
    class Role(StrEnum): BROKER, MARKET_MAKER, CLERK, OPERATOR, SERVICER   TRADING_ROLES
    class Scope(StrEnum): READ, TRADE, AUDIT, ADMIN, DISCLOSE              DEFAULT_SCOPES[role]
    @dataclass(frozen=True) class Participant(participant_id, name, role, segment=None)
        Participant.from_wire(data) -> Participant      .to_wire() -> dict     .can_trade: bool
    issue_api_key() -> tuple[str, str]                       # (key_id, secret) from `secrets`
    parse_scopes(values) -> frozenset[Scope]
    require_scope(granted, needed) -> None                   # auth.insufficient_scope
    signing_message(timestamp, method, path_and_query, body) -> bytes
    sign_request(secret, timestamp, method, path_and_query, body) -> str   # lowercase hex
    verify_signature(secret, timestamp, method, path_and_query, body, signature) -> bool
    parse_public_key(text) -> bytes                          # validation.bad_public_key
    ed25519_credential(public_key_hex) -> str                # "ed25519:<hex>"
    credential_kind(credential) -> "hmac" | "ed25519"
    sign_request_ed25519(private_key, timestamp, method, path_and_query, body) -> str
    verify_request(credential, timestamp, method, path_and_query, body, signature) -> bool
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from venue.domain.money import parse_enum
from venue.errors import ErrorCode, VenueError

_PARTICIPANT_ID = re.compile(r"P-[A-Z0-9]{1,16}")
MAX_NAME_LENGTH = 120


class Segment(StrEnum):
    INTERBANK = "interbank"
    EXCHANGE = "exchange"


class Role(StrEnum):
    BROKER = "broker"
    MARKET_MAKER = "market_maker"
    CLERK = "clerk"
    OPERATOR = "operator"
    SERVICER = "servicer"


class Scope(StrEnum):
    READ = "read"  # reference data, own orders/fills/balances, public market data
    TRADE = "trade"  # place, replace, cancel orders; mass quote
    AUDIT = "audit"  # ledger blocks, proofs, exports of every participant
    ADMIN = "admin"  # operator actions: list, admit, fund, halt/resume, factor updates
    DISCLOSE = "disclose"  # a servicer's pool reports (and the collections they remit)


TRADING_ROLES = frozenset({Role.BROKER, Role.MARKET_MAKER})

DEFAULT_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.BROKER: frozenset({Scope.READ, Scope.TRADE}),
    Role.MARKET_MAKER: frozenset({Scope.READ, Scope.TRADE}),
    Role.CLERK: frozenset({Scope.READ, Scope.AUDIT}),
    Role.OPERATOR: frozenset({Scope.READ, Scope.AUDIT, Scope.ADMIN}),
    Role.SERVICER: frozenset({Scope.READ, Scope.DISCLOSE}),
}


@dataclass(frozen=True, slots=True)
class Participant:
    """An admitted participant. ``participant_id`` looks like ``P-MM1`` (``P-`` + 1-16 A-Z/0-9).

    Invariant: trading roles have a segment; clerks, operators and servicers have none.
    """

    participant_id: str
    name: str
    role: Role
    segment: Segment | None = None

    def __post_init__(self) -> None:
        # Enum fields also accept their wire strings, converted once here.
        object.__setattr__(
            self, "role", parse_enum(Role, self.role, "role", ErrorCode.BAD_PARTICIPANT)
        )
        if self.segment is not None:
            object.__setattr__(
                self,
                "segment",
                parse_enum(Segment, self.segment, "segment", ErrorCode.BAD_PARTICIPANT),
            )
        if not isinstance(self.participant_id, str) or not _PARTICIPANT_ID.fullmatch(
            self.participant_id
        ):
            raise VenueError(
                ErrorCode.BAD_PARTICIPANT,
                "participant_id must be 'P-' followed by 1-16 upper-case letters or digits",
                field="participant_id",
            )
        if (
            not isinstance(self.name, str)
            or not self.name
            or len(self.name) > MAX_NAME_LENGTH
            or self.name != self.name.strip()
            or not self.name.isprintable()
        ):
            raise VenueError(
                ErrorCode.BAD_PARTICIPANT,
                f"name must be 1-{MAX_NAME_LENGTH} printable characters without outer spaces",
                field="name",
            )
        if self.can_trade and self.segment is None:
            raise VenueError(
                ErrorCode.BAD_PARTICIPANT,
                f"a {self.role.value} must belong to the interbank or exchange segment",
                field="segment",
            )
        if not self.can_trade and self.segment is not None:
            raise VenueError(
                ErrorCode.BAD_PARTICIPANT,
                f"a {self.role.value} does not trade and has no segment",
                field="segment",
            )

    @property
    def can_trade(self) -> bool:
        return self.role in TRADING_ROLES

    @classmethod
    def from_wire(cls, data: Mapping[str, object]) -> Participant:
        """From ``{"participant_id", "name", "role", "segment"}``; segment may be absent/null."""
        if not isinstance(data, Mapping):
            raise VenueError(ErrorCode.BAD_PARAMETER, "participant must be a JSON object")
        allowed = {"participant_id", "name", "role", "segment"}
        unknown = sorted(str(key) for key in set(data) - allowed)
        if unknown:
            raise VenueError(
                ErrorCode.UNKNOWN_FIELD,
                f"unknown participant field(s): {', '.join(unknown)}",
                fields=unknown,
            )
        missing = [name for name in ("participant_id", "name", "role") if name not in data]
        if missing:
            raise VenueError(
                ErrorCode.BAD_PARAMETER,
                f"missing participant field(s): {', '.join(missing)}",
                fields=missing,
            )
        segment = data.get("segment")
        return cls(
            participant_id=data["participant_id"],  # type: ignore[arg-type]  # __post_init__ checks
            name=data["name"],  # type: ignore[arg-type]
            role=parse_enum(Role, data["role"], "role", ErrorCode.BAD_PARTICIPANT),
            segment=None
            if segment is None
            else parse_enum(Segment, segment, "segment", ErrorCode.BAD_PARTICIPANT),
        )

    def to_wire(self) -> dict[str, object]:
        return {
            "participant_id": self.participant_id,
            "name": self.name,
            "role": self.role.value,
            "segment": None if self.segment is None else self.segment.value,
        }


def parse_scopes(values: Iterable[object]) -> frozenset[Scope]:
    """Wire scope names -> a frozenset of ``Scope``; an unknown name is
    ``validation.bad_parameter``."""
    scopes = set()
    for value in values:
        if not isinstance(value, str) or value not in Scope._value2member_map_:
            raise VenueError(
                ErrorCode.BAD_PARAMETER,
                f"unknown scope {value!r}; allowed: {', '.join(Scope)}",
                field="scopes",
            )
        scopes.add(Scope(value))
    return frozenset(scopes)


def require_scope(granted: Iterable[Scope], needed: Scope) -> None:
    """Refuse with ``auth.insufficient_scope`` unless ``needed`` is among ``granted``."""
    if needed not in frozenset(granted):
        raise VenueError(
            ErrorCode.INSUFFICIENT_SCOPE,
            f"this operation needs the '{needed.value}' scope",
            needed=needed.value,
        )


def issue_api_key() -> tuple[str, str]:
    """A fresh API key as ``(key_id, secret)``, both from ``secrets``.

    ``key_id`` = ``"vk_"`` + 16 hex characters (64 random bits; a public identifier sent in a
    header); ``secret`` = ``"vs_"`` + 43 URL-safe characters (256 random bits; never sent, only
    used as the HMAC key). The key's scopes are those of its participant's role
    (``DEFAULT_SCOPES``) unless the operator grants others.
    """
    return "vk_" + secrets.token_hex(8), "vs_" + secrets.token_urlsafe(32)


def signing_message(timestamp: str, method: str, path_and_query: str, body: bytes) -> bytes:
    """The exact bytes that are signed (module docstring)."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError("body must be bytes (the raw request body, b'' for none)")
    body_hash = hashlib.sha256(body).hexdigest()
    return f"{timestamp}\n{method.upper()}\n{path_and_query}\n{body_hash}".encode()


def sign_request(secret: str, timestamp: str, method: str, path_and_query: str, body: bytes) -> str:
    """HMAC-SHA256 of ``signing_message`` under the UTF-8 ``secret``, as lowercase hex."""
    message = signing_message(timestamp, method, path_and_query, body)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str, timestamp: str, method: str, path_and_query: str, body: bytes, signature: str
) -> bool:
    """Constant-time comparison of ``signature`` with the expected one (case-insensitive hex).

    Only the signature is checked here; clock window and replay are the API layer's job.
    """
    expected = sign_request(secret, timestamp, method, path_and_query, body)
    if not isinstance(signature, str) or not signature.isascii():
        return False
    return hmac.compare_digest(expected, signature.lower())


ED25519_PREFIX = "ed25519:"
_PUBLIC_KEY_HEX = re.compile(r"[0-9a-f]{64}")


def parse_public_key(text: object) -> bytes:
    """A registered Ed25519 public key: 64 lowercase hex characters of a valid key -> 32 bytes."""
    if isinstance(text, str) and _PUBLIC_KEY_HEX.fullmatch(text):
        raw = bytes.fromhex(text)
        try:
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            pass
        else:
            return raw
    raise VenueError(
        ErrorCode.BAD_PUBLIC_KEY,
        "public_key must be 64 lowercase hex characters (a raw Ed25519 public key)",
        field="public_key",
    )


def ed25519_credential(public_key_hex: str) -> str:
    """The stored credential of an Ed25519 API key (checked with ``parse_public_key``)."""
    return ED25519_PREFIX + parse_public_key(public_key_hex).hex()


def credential_kind(credential: str) -> str:
    """``"ed25519"`` for a registered public key, ``"hmac"`` for a shared secret."""
    return "ed25519" if credential.startswith(ED25519_PREFIX) else "hmac"


def sign_request_ed25519(
    private_key: Ed25519PrivateKey, timestamp: str, method: str, path_and_query: str, body: bytes
) -> str:
    """The Ed25519 signature of ``signing_message`` as lowercase hex (128 characters)."""
    return private_key.sign(signing_message(timestamp, method, path_and_query, body)).hex()


_SIGNATURE_HEX = re.compile(r"[0-9a-fA-F]+")


def verify_request(
    credential: str,
    timestamp: str,
    method: str,
    path_and_query: str,
    body: bytes,
    signature: str,
    public_key: Ed25519PublicKey | None = None,
) -> bool:
    """Check a request signature against a stored credential of either kind.

    ``public_key`` may pass the already-loaded key of an Ed25519 credential (the API caches them:
    loading costs more than an HMAC).
    """
    if not credential.startswith(ED25519_PREFIX):
        return verify_signature(credential, timestamp, method, path_and_query, body, signature)
    if not (
        isinstance(signature, str) and len(signature) == 128 and _SIGNATURE_HEX.fullmatch(signature)
    ):
        return False
    if public_key is None:
        public_key = Ed25519PublicKey.from_public_bytes(
            bytes.fromhex(credential[len(ED25519_PREFIX) :])
        )
    try:
        public_key.verify(
            bytes.fromhex(signature), signing_message(timestamp, method, path_and_query, body)
        )
    except InvalidSignature:
        return False
    return True
