"""Who is calling: signed requests, the clock window, replay refusal and per-key rate limits.

A request is signed as ``venue/domain/participants.py`` defines (the message is
``timestamp \\n METHOD \\n path?query \\n sha256(body)``) and carries three headers:

* ``VENUE-KEY``: the API key id (``vk_`` + 16 hex);
* ``VENUE-TIMESTAMP``: Unix milliseconds, as decimal digits;
* ``VENUE-SIGNATURE``: lowercase hex, HMAC-SHA256 (64 characters) for an HMAC key or Ed25519
  (128 characters) for a registered public key.

Checks, in this order, each refused with its own code (401 unless said otherwise):
``auth.missing_credentials`` (a header is absent), ``auth.stale_timestamp`` (not digits, or
more than the clock window, default 5 s, from the venue's clock either way),
``auth.unknown_api_key`` (never issued, or revoked), ``auth.bad_signature``,
``auth.replayed_request`` (this exact signature was accepted before: it is remembered for as
long as its timestamp stays inside the window, so a replay is refused for as long as it could
otherwise be accepted), then the key's rate limit (429 ``auth.rate_limited``). The rate limit
is counted only for requests that authenticated, so nobody can use up another's budget by
sending garbage under their key id.

A client must therefore never send two requests with the same signature: requests that differ
in method, target or body differ anyway; the SDK moves the timestamp on by a millisecond when
it would sign the same message twice in one.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from venue.domain.participants import (
    DEFAULT_SCOPES,
    ED25519_PREFIX,
    Participant,
    Scope,
    verify_request,
)
from venue.errors import ErrorCode, VenueError

KEY_HEADER = "VENUE-KEY"
TIMESTAMP_HEADER = "VENUE-TIMESTAMP"
SIGNATURE_HEADER = "VENUE-SIGNATURE"
MAX_TIMESTAMP_DIGITS = 15
RATE_POLICY_NAME = "per-key"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the participant, the key it signed with and what it may do."""

    participant: Participant
    key_id: str
    scopes: frozenset[Scope]

    @property
    def participant_id(self) -> str:
        return self.participant.participant_id


class RateLimited(VenueError):
    """``auth.rate_limited``, with the headers its 429 answer carries (``Retry-After``)."""

    def __init__(self, message: str, headers: dict[str, str], retry_after: int) -> None:
        super().__init__(ErrorCode.RATE_LIMITED, message, retry_after_s=retry_after)
        self.headers = {**headers, "Retry-After": str(retry_after)}


class ReplayGuard:
    """Signatures accepted within the clock window, each forgotten once its timestamp has
    left the window (then the clock check refuses it anyway). Memory is bounded by the
    accepted request rate times twice the window."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._seen: set[str] = set()
        self._expiry: deque[tuple[int, str]] = deque()

    def check_and_remember(self, signature: str, timestamp_ms: int, now_ms: int) -> None:
        expiry = self._expiry
        seen = self._seen
        while expiry and expiry[0][0] < now_ms:
            seen.discard(expiry.popleft()[1])
        if signature in seen:
            raise VenueError(ErrorCode.REPLAYED_REQUEST, "this signed request was already received")
        seen.add(signature)
        # Entries expire in arrival order only roughly (timestamps may differ by the window);
        # an entry kept a little longer than needed is harmless.
        expiry.append((timestamp_ms + self.window_ms, signature))


class RateLimiter:
    """A token bucket per API key: ``rate`` tokens a second, at most ``burst`` held; a request
    takes one. ``take`` answers what the ``RateLimit`` headers say."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill time]
        self.policy = f'"{RATE_POLICY_NAME}";q={burst};w={max(1, math.ceil(burst / rate))}'

    def take(self, key: str) -> tuple[bool, int, int]:
        """``(allowed, remaining, seconds until full)``; when refused, the last is the wait
        (at least 1 s) until one token is back."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [float(self.burst), now]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False, 0, max(1, math.ceil((1.0 - tokens) / self.rate))
        tokens -= 1.0
        bucket[0] = tokens
        return True, int(tokens), math.ceil((self.burst - tokens) / self.rate)

    def headers(self, remaining: int, reset: int) -> dict[str, str]:
        """The draft-ietf-httpapi-ratelimit-headers fields for one answer."""
        return {
            "RateLimit-Policy": self.policy,
            "RateLimit": f'"{RATE_POLICY_NAME}";r={remaining};t={reset}',
        }


class Authenticator:
    """Checks a request's signature headers against the exchange's registered credentials."""

    def __init__(
        self,
        exchange: Any,
        *,
        window_ms: int,
        rate: int,
        burst: int,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.exchange = exchange
        self.window_ms = window_ms
        self.clock_ms = clock_ms
        self.replays = ReplayGuard(window_ms)
        self.limiter = RateLimiter(rate, burst)
        self._public_keys: dict[str, tuple[str, Ed25519PublicKey]] = {}

    def authenticate(
        self, headers: Mapping[str, str], method: str, target: str, body: bytes
    ) -> tuple[Caller, dict[str, str]]:
        """The caller and the rate-limit headers for its answer, or a ``VenueError``.

        ``target`` is the raw request target (path and query, as sent and signed).
        """
        key_id = headers.get(KEY_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if not (key_id and timestamp and signature):
            raise VenueError(
                ErrorCode.MISSING_CREDENTIALS,
                f"sign the request: headers {KEY_HEADER}, {TIMESTAMP_HEADER} and "
                f"{SIGNATURE_HEADER} are required",
            )
        now_ms = self.clock_ms()
        if not (
            timestamp.isascii()
            and timestamp.isdigit()
            and len(timestamp) <= MAX_TIMESTAMP_DIGITS
            and abs(int(timestamp) - now_ms) <= self.window_ms
        ):
            raise VenueError(
                ErrorCode.STALE_TIMESTAMP,
                f"{TIMESTAMP_HEADER} must be Unix milliseconds within {self.window_ms} ms of "
                "the venue's clock",
                server_time_ms=now_ms,
            )
        entry = self.exchange.credentials.get(key_id)
        if entry is None:
            raise VenueError(ErrorCode.UNKNOWN_API_KEY, "unknown or revoked API key")
        participant_id, credential = entry
        if not verify_request(
            credential,
            timestamp,
            method,
            target,
            body,
            signature,
            self._public_key(key_id, credential),
        ):
            raise VenueError(ErrorCode.BAD_SIGNATURE, "the signature does not match the request")
        self.replays.check_and_remember(signature, int(timestamp), now_ms)
        rate_headers = self.charge(key_id)
        participant = self.exchange.participants[participant_id]
        return Caller(participant, key_id, DEFAULT_SCOPES[participant.role]), rate_headers

    def charge(self, key_id: str) -> dict[str, str]:
        """Take one token from ``key_id``'s bucket: the rate-limit headers for the answer, or
        ``RateLimited`` (``auth.rate_limited``) if it is empty. Signed REST requests and the
        WebSocket API's requests after login (``venue/api/ws.py``) share the one bucket."""
        allowed, remaining, reset = self.limiter.take(key_id)
        rate_headers = self.limiter.headers(remaining, reset)
        if not allowed:
            raise RateLimited(
                f"more than {self.limiter.burst} requests at once or {self.limiter.rate}/s "
                f"for this key; retry after {reset} s",
                rate_headers,
                reset,
            )
        return rate_headers

    def _public_key(self, key_id: str, credential: str) -> Ed25519PublicKey | None:
        """The loaded public key of an Ed25519 credential (cached: loading it costs more than
        the HMAC of an HMAC key); None for an HMAC credential."""
        if not credential.startswith(ED25519_PREFIX):
            return None
        cached = self._public_keys.get(key_id)
        if cached is None or cached[0] != credential:
            key = Ed25519PublicKey.from_public_bytes(
                bytes.fromhex(credential[len(ED25519_PREFIX) :])
            )
            cached = self._public_keys[key_id] = (credential, key)
        return cached[1]
