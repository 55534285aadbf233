"""Strict decimal-string parsing at the edge: exact integers in, canonical strings out."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from venue.domain.money import (
    MAX_CASH_FEN,
    MAX_QTY,
    format_cny,
    format_scaled,
    parse_cny,
    parse_iso_date,
    parse_quantity,
    parse_scaled,
)
from venue.errors import ErrorCode, VenueError


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises(VenueError) as caught:
        call(*args, **kwargs)
    return caught.value.code.value


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("1", 100),
        ("0.01", 1),
        ("0.5", 50),
        ("1234.50", 123450),
        ("1234.5", 123450),
        ("100000000000000.00", MAX_CASH_FEN),
    ],
)
def test_cny_strings_become_exact_fen(text: str, fen: int) -> None:
    assert parse_cny(text) == fen


@pytest.mark.parametrize(
    "text",
    [
        "1.001",
        "1.",
        ".5",
        "+1",
        "1e3",
        "1E3",
        "NaN",
        "nan",
        "Infinity",
        " 1",
        "1 ",
        "1\n",
        "1_000",
        "01",
        "00.5",
        "1,5",
        "",
        "-",
        "0x10",
        "\u0661\u0662",
        "\uff11",
        "--1",
        "1.-5",
    ],
)
def test_malformed_cny_is_bad_amount(text: str) -> None:
    assert code_of(parse_cny, text) == "validation.bad_amount"


@pytest.mark.parametrize("value", [1.5, 100, None, True, b"1.00", ["1"]])
def test_non_strings_are_bad_amount_never_coerced(value: object) -> None:
    assert code_of(parse_cny, value) == "validation.bad_amount"


def test_sign_and_zero_rules() -> None:
    assert code_of(parse_cny, "-1.00") == "validation.bad_amount"
    assert code_of(parse_cny, "0") == "validation.bad_amount"
    assert code_of(parse_cny, "0.00") == "validation.bad_amount"
    assert parse_cny("0.00", allow_zero=True) == 0
    assert parse_cny("-12.34", allow_negative=True) == -1234
    # "-0" is not canonical even where negatives are allowed
    assert code_of(parse_cny, "-0.00", allow_negative=True, allow_zero=True) == (
        "validation.bad_amount"
    )


def test_absurd_magnitudes_are_refused_before_arithmetic() -> None:
    assert code_of(parse_cny, "100000000000000.01") == "validation.absurd_value"
    assert code_of(parse_cny, "9" * 41) == "validation.absurd_value"
    assert code_of(parse_cny, "9" * 10_000) == "validation.absurd_value"


def test_error_details_name_the_field() -> None:
    with pytest.raises(VenueError) as caught:
        parse_cny("12.345", field="withdraw_amount")
    assert caught.value.details["field"] == "withdraw_amount"
    assert caught.value.details["value"] == "12.345"


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "0.00"),
        (1, "0.01"),
        (10, "0.10"),
        (123450, "1234.50"),
        (-5, "-0.05"),
        (-123456, "-1234.56"),
    ],
)
def test_format_cny_is_canonical(fen: int, text: str) -> None:
    assert format_cny(fen) == text


def test_format_scaled_other_scales() -> None:
    assert format_scaled(784213, 6) == "0.784213"
    assert format_scaled(1_000_000, 6) == "1.000000"
    assert format_scaled(42, 0) == "42"
    with pytest.raises(TypeError):
        format_scaled(1.5, 2)  # type: ignore[arg-type]


@given(st.integers(min_value=-MAX_CASH_FEN, max_value=MAX_CASH_FEN))
def test_format_then_parse_round_trips(fen: int) -> None:
    assert parse_cny(format_cny(fen), allow_negative=True, allow_zero=True) == fen


def test_parse_scaled_uses_the_callers_code_and_places() -> None:
    assert (
        parse_scaled("0.784213", places=6, field="f", code=ErrorCode.BAD_FACTOR, max_abs=10**6)
        == 784213
    )
    assert (
        code_of(
            parse_scaled, "0.7842131", places=6, field="f", code=ErrorCode.BAD_FACTOR, max_abs=10**6
        )
        == "validation.bad_factor"
    )
    assert (
        code_of(
            parse_scaled, "1.000001", places=6, field="f", code=ErrorCode.BAD_FACTOR, max_abs=10**6
        )
        == "validation.absurd_value"
    )


@pytest.mark.parametrize(("text", "units"), [("1", 1), ("1500", 1500), ("10000000000", MAX_QTY)])
def test_quantities_are_whole_positive_units(text: str, units: int) -> None:
    assert parse_quantity(text) == units


@pytest.mark.parametrize("text", ["0", "-1", "1.0", "1.5", "01", " 1", "1e3", "", "+5"])
def test_bad_quantities(text: str) -> None:
    assert code_of(parse_quantity, text) == "validation.bad_quantity"


def test_quantity_type_and_magnitude() -> None:
    assert code_of(parse_quantity, 10) == "validation.bad_quantity"
    assert code_of(parse_quantity, 10.0) == "validation.bad_quantity"
    assert code_of(parse_quantity, "10000000001") == "validation.absurd_value"


def test_iso_dates_are_strict() -> None:
    assert parse_iso_date("2024-02-29", field="d") == date(2024, 2, 29)
    for text in [
        "2023-02-29",
        "2026-13-01",
        "2026-11-31",
        "20261126",
        "2026-W48-4",
        "2026-11-26T00:00:00",
        " 2026-11-26",
        "2026-1-5",
        "\u0662\u0660\u0662\u0666-\u0661\u0661-\u0662\u0666",
    ]:  # Arabic-Indic
        assert code_of(parse_iso_date, text, field="d") == "validation.bad_date", text
    assert code_of(parse_iso_date, None, field="d") == "validation.bad_date"
