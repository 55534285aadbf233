"""Participants, roles/segments, scopes, API keys and the shared request signature."""

from __future__ import annotations

import pytest

from venue.domain.participants import (
    DEFAULT_SCOPES,
    Participant,
    Role,
    Scope,
    Segment,
    issue_api_key,
    parse_scopes,
    require_scope,
    sign_request,
    signing_message,
    verify_signature,
)
from venue.errors import VenueError


def participant_code(**wire: object) -> str:
    with pytest.raises(VenueError) as caught:
        Participant.from_wire(wire)
    return caught.value.code.value


def test_trading_participants_have_a_segment() -> None:
    maker = Participant.from_wire(
        {
            "participant_id": "P-MM1",
            "name": "Market Maker One",
            "segment": "interbank",
            "role": "market_maker",
        }
    )
    assert maker.role is Role.MARKET_MAKER
    assert maker.segment is Segment.INTERBANK
    assert maker.can_trade
    assert Participant.from_wire(maker.to_wire()) == maker


def test_clerks_and_operators_have_no_segment_and_do_not_trade() -> None:
    clerk = Participant.from_wire({"participant_id": "P-CLK1", "name": "Clerk", "role": "clerk"})
    assert clerk.segment is None and not clerk.can_trade
    assert clerk.to_wire() == {
        "participant_id": "P-CLK1",
        "name": "Clerk",
        "role": "clerk",
        "segment": None,
    }


def test_direct_construction_accepts_wire_strings_for_enums() -> None:
    broker = Participant("P-BRK1", "Broker", "broker", "exchange")  # type: ignore[arg-type]
    assert broker.role is Role.BROKER and broker.segment is Segment.EXCHANGE


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (
            {"participant_id": "MM1", "name": "x", "role": "broker", "segment": "exchange"},
            "validation.bad_participant",
        ),
        (
            {"participant_id": "P-mm1", "name": "x", "role": "broker", "segment": "exchange"},
            "validation.bad_participant",
        ),
        (
            {
                "participant_id": "P-" + "A" * 17,
                "name": "x",
                "role": "broker",
                "segment": "exchange",
            },
            "validation.bad_participant",
        ),
        (
            {"participant_id": "P-B1", "name": "", "role": "broker", "segment": "exchange"},
            "validation.bad_participant",
        ),
        (
            {
                "participant_id": "P-B1",
                "name": "bad\nname",
                "role": "broker",
                "segment": "exchange",
            },
            "validation.bad_participant",
        ),
        (
            {"participant_id": "P-B1", "name": "x", "role": "trader", "segment": "exchange"},
            "validation.bad_participant",
        ),
        (
            {"participant_id": "P-B1", "name": "x", "role": "broker", "segment": "otc"},
            "validation.bad_participant",
        ),
        (
            {"participant_id": "P-B1", "name": "x", "role": "broker"},
            "validation.bad_participant",
        ),  # a trading role needs a segment
        (
            {"participant_id": "P-O1", "name": "x", "role": "operator", "segment": "exchange"},
            "validation.bad_participant",
        ),  # a non-trading role has none
        (
            {"participant_id": 7, "name": "x", "role": "broker", "segment": "exchange"},
            "validation.bad_participant",
        ),
        (
            {"participant_id": "P-B1", "role": "broker", "segment": "exchange"},
            "validation.bad_parameter",
        ),
        (
            {
                "participant_id": "P-B1",
                "name": "x",
                "role": "broker",
                "segment": "exchange",
                "admin": True,
            },
            "validation.unknown_field",
        ),
    ],
)
def test_bad_participants(wire: dict, code: str) -> None:
    assert participant_code(**wire) == code


def test_default_scopes_per_role() -> None:
    assert DEFAULT_SCOPES[Role.BROKER] == {Scope.READ, Scope.TRADE}
    assert DEFAULT_SCOPES[Role.MARKET_MAKER] == {Scope.READ, Scope.TRADE}
    assert DEFAULT_SCOPES[Role.CLERK] == {Scope.READ, Scope.AUDIT}
    assert DEFAULT_SCOPES[Role.OPERATOR] == {Scope.READ, Scope.AUDIT, Scope.ADMIN}


def test_scopes_are_enforced() -> None:
    require_scope(DEFAULT_SCOPES[Role.BROKER], Scope.TRADE)
    with pytest.raises(VenueError) as caught:
        require_scope(DEFAULT_SCOPES[Role.CLERK], Scope.TRADE)
    assert caught.value.code.value == "auth.insufficient_scope"
    assert caught.value.details == {"needed": "trade"}


def test_parse_scopes() -> None:
    assert parse_scopes(["read", "audit", "read"]) == {Scope.READ, Scope.AUDIT}
    for bad in (["root"], ["READ"], [1]):
        with pytest.raises(VenueError) as caught:
            parse_scopes(bad)
        assert caught.value.code.value == "validation.bad_parameter"


def test_issued_keys_are_fresh_and_shaped() -> None:
    first, second = issue_api_key(), issue_api_key()
    assert first != second
    key_id, secret = first
    assert key_id.startswith("vk_") and len(key_id) == 19
    int(key_id[3:], 16)
    assert secret.startswith("vs_") and len(secret) == 46


# Expected signatures computed independently with coreutils and OpenSSL:
#   H=$(printf '%s' "$BODY" | sha256sum | cut -d' ' -f1)
#   printf '%s\n%s\n%s\n%s' "$TS" "$METHOD" "$TARGET" "$H" | openssl dgst -sha256 -hmac "$SECRET"
SECRET = "vs_demo-secret"
ORDER_BODY = b'{"symbol":"IPABS-2025-1-A","side":"buy","price":"100.1250","qty":"1000"}'
ORDER_SIGNATURE = "da168b6bcd50e9ad4cb42d1c18441e36bcd61c5dda08ed23917f30ea01cf62e2"
EMPTY_GET_SIGNATURE = "3e8328152b96cde4764b9b8c0042a94767d196e8051ff2a6545a9cb285ff4b4b"


def test_signing_message_layout() -> None:
    assert signing_message("1764158400", "get", "/v1/balances", b"") == (
        b"1764158400\nGET\n/v1/balances\n"
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_signatures_match_independent_vectors() -> None:
    assert (
        sign_request(SECRET, "2026-11-26T12:00:00Z", "POST", "/v1/orders?dry_run=1", ORDER_BODY)
        == ORDER_SIGNATURE
    )
    assert sign_request(SECRET, "1764158400", "GET", "/v1/balances", b"") == EMPTY_GET_SIGNATURE


def test_verify_signature_rejects_any_change() -> None:
    args = (SECRET, "2026-11-26T12:00:00Z", "POST", "/v1/orders?dry_run=1", ORDER_BODY)
    assert verify_signature(*args, ORDER_SIGNATURE)
    assert verify_signature(*args, ORDER_SIGNATURE.upper())
    assert not verify_signature(*args, ORDER_SIGNATURE[:-1] + "3")
    assert not verify_signature(*args, "")
    assert not verify_signature(*args, "é" * 64)
    assert not verify_signature("vs_other", *args[1:], ORDER_SIGNATURE)
    assert not verify_signature(SECRET, "2026-11-26T12:00:01Z", *args[2:], ORDER_SIGNATURE)
    assert not verify_signature(*args[:3], "/v1/orders", ORDER_BODY, ORDER_SIGNATURE)
    assert not verify_signature(*args[:4], ORDER_BODY + b" ", ORDER_SIGNATURE)


def test_body_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        sign_request(SECRET, "1", "GET", "/v1/x", "")  # type: ignore[arg-type]
