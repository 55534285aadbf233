"""The authenticator's parts on their own, on injected clocks: the replay window, the token
bucket and its headers, and both key kinds against one credential table."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from venue.api.auth import Authenticator, RateLimited, RateLimiter, ReplayGuard
from venue.domain.participants import (
    Participant,
    Scope,
    ed25519_credential,
    sign_request,
    sign_request_ed25519,
)
from venue.errors import ErrorCode, VenueError


def test_a_signature_is_refused_again_until_its_timestamp_leaves_the_window():
    guard = ReplayGuard(window_ms=5_000)
    guard.check_and_remember("sig", timestamp_ms=1_000, now_ms=1_000)
    with pytest.raises(VenueError) as replay:
        guard.check_and_remember("sig", timestamp_ms=1_000, now_ms=5_999)
    assert replay.value.code is ErrorCode.REPLAYED_REQUEST
    # Forgotten once the timestamp is out of the window (the clock check refuses it then).
    guard.check_and_remember("sig", timestamp_ms=7_000, now_ms=7_000)


def test_the_token_bucket_refills_at_its_rate_and_says_when():
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    assert [limiter.take("k")[0] for _ in range(4)] == [True, True, True, False]
    allowed, remaining, retry_after = limiter.take("k")
    assert (allowed, remaining, retry_after) == (False, 0, 1)
    now[0] = 0.5  # one token back
    assert limiter.take("k")[:2] == (True, 0)
    assert limiter.take("other")[:2] == (True, 2)  # each key its own bucket
    assert limiter.headers(0, 2) == {
        "RateLimit-Policy": '"per-key";q=3;w=2',
        "RateLimit": '"per-key";r=0;t=2',
    }


class _Exchange:
    def __init__(self, credentials):
        self.credentials = credentials
        self.participants = {
            "P-BRK1": Participant("P-BRK1", "Broker", "broker", "interbank"),
        }


def test_hmac_and_ed25519_keys_and_the_clock_window():
    private_key = Ed25519PrivateKey.generate()
    public_hex = private_key.public_key().public_bytes_raw().hex()
    exchange = _Exchange(
        {
            "vk_hmac": ("P-BRK1", "vs_secret"),
            "vk_ed": ("P-BRK1", ed25519_credential(public_hex)),
        }
    )
    now = [1_000_000]
    auth = Authenticator(exchange, window_ms=5_000, rate=1, burst=2, clock_ms=lambda: now[0])
    body = b'{"x": 1}'

    def headers(key, signature, timestamp="1000000"):
        return {"VENUE-KEY": key, "VENUE-TIMESTAMP": timestamp, "VENUE-SIGNATURE": signature}

    hmac_signature = sign_request("vs_secret", "1000000", "POST", "/v1/orders", body)
    caller, rate_headers = auth.authenticate(
        headers("vk_hmac", hmac_signature), "POST", "/v1/orders", body
    )
    assert caller.participant_id == "P-BRK1" and Scope.TRADE in caller.scopes
    assert rate_headers["RateLimit"] == '"per-key";r=1;t=1'
    ed_signature = sign_request_ed25519(private_key, "1000000", "POST", "/v1/orders", body)
    caller, _ = auth.authenticate(headers("vk_ed", ed_signature), "POST", "/v1/orders", body)
    assert caller.key_id == "vk_ed"

    def refusal(header_values, target="/v1/orders"):
        with pytest.raises(VenueError) as error:
            auth.authenticate(header_values, "POST", target, body)
        return error.value.code

    # the HMAC signature under the Ed25519 key, and the Ed25519 one for another target
    assert refusal(headers("vk_ed", hmac_signature)) is ErrorCode.BAD_SIGNATURE
    assert refusal(headers("vk_ed", ed_signature), "/v1/orders?x=1") is ErrorCode.BAD_SIGNATURE
    assert refusal(headers("vk_hmac", hmac_signature, "994999")) is ErrorCode.STALE_TIMESTAMP
    assert refusal(headers("vk_hmac", hmac_signature, "1005001")) is ErrorCode.STALE_TIMESTAMP
    assert refusal({"VENUE-KEY": "vk_hmac"}) is ErrorCode.MISSING_CREDENTIALS
    assert refusal(headers("vk_gone", hmac_signature)) is ErrorCode.UNKNOWN_API_KEY

    def fresh(timestamp: int) -> dict:  # another correctly signed request
        signature = sign_request("vs_secret", str(timestamp), "POST", "/v1/orders", body)
        return headers("vk_hmac", signature, str(timestamp))

    auth.authenticate(fresh(1_000_001), "POST", "/v1/orders", body)  # the key's 2nd: in burst
    with pytest.raises(RateLimited) as limited:
        auth.authenticate(fresh(1_000_002), "POST", "/v1/orders", body)
    assert limited.value.headers["Retry-After"] == "1"
