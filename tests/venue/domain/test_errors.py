"""The error-code registry is the API's contract: stable, grouped, documented, enforced."""

from __future__ import annotations

import re

import pytest

from venue.errors import ERROR_CODES, ErrorCode, VenueError

SUBSYSTEMS = {"validation", "risk", "matching", "ledger", "auth", "state"}


def test_every_code_is_dotted_grouped_and_documented_on_one_line() -> None:
    assert len(ERROR_CODES) == len(ErrorCode)  # no two members share a code
    for code, meaning in ERROR_CODES.items():
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", code), code
        assert code.split(".")[0] in SUBSYSTEMS, code
        assert meaning and "\n" not in meaning and meaning.endswith("."), code


def test_codes_the_core_relies_on_exist_with_their_exact_spelling() -> None:
    expected = {
        "validation.unknown_instrument",
        "validation.unknown_participant",
        "validation.price_off_tick",
        "validation.price_out_of_band",
        "validation.bad_price",
        "validation.bad_quantity",
        "validation.qty_below_min",
        "validation.qty_off_increment",
        "validation.absurd_value",
        "validation.bad_parameter",
        "validation.bad_date",
        "validation.bad_factor",
        "risk.insufficient_cash",
        "risk.insufficient_units",
        "state.instrument_halted",
        "matching.duplicate_client_order_id",
        "matching.unknown_order",
        "matching.not_order_owner",
        "matching.post_only_would_cross",
        "auth.insufficient_scope",
        "auth.forbidden",
        "state.coupon_roll_required",
        "state.venue_unavailable",
        "ledger.proof_mismatch",
    }
    assert expected <= set(ERROR_CODES)


def test_subsystem_is_the_prefix() -> None:
    assert ErrorCode.INSUFFICIENT_CASH.subsystem == "risk"
    assert ErrorCode.PRICE_OFF_TICK.subsystem == "validation"


def test_venue_error_carries_code_message_and_details() -> None:
    error = VenueError(ErrorCode.QTY_BELOW_MIN, "qty 5 is below the minimum 10", field="qty")
    assert error.code is ErrorCode.QTY_BELOW_MIN
    assert error.to_dict() == {
        "code": "validation.qty_below_min",
        "message": "qty 5 is below the minimum 10",
        "details": {"field": "qty"},
    }
    assert str(error) == "validation.qty_below_min: qty 5 is below the minimum 10"


def test_a_registered_code_string_is_accepted_and_normalised() -> None:
    error = VenueError("risk.insufficient_units", "no short selling")
    assert error.code is ErrorCode.INSUFFICIENT_UNITS


def test_an_unregistered_code_is_a_programmer_error() -> None:
    with pytest.raises(ValueError):
        VenueError("risk.no_such_code", "typo")
