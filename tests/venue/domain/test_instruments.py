"""Instrument reference data: validation on listing, tick grid, band, quantities, status, roll."""

from __future__ import annotations

import dataclasses
from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.venue.domain.helpers import instrument_wire, make_instrument
from venue.domain.instruments import (
    DayCount,
    Instrument,
    Side,
    TradingStatus,
    TrancheClass,
    add_months,
    isin_check_digit_ok,
    parse_side,
)
from venue.errors import VenueError


def listing_code(**overrides: object) -> str:
    with pytest.raises(VenueError) as caught:
        make_instrument(**overrides)
    return caught.value.code.value


def test_a_valid_listing_has_integer_fields_and_documented_defaults() -> None:
    instrument = make_instrument(pool_factor="0.784213", isin="US0378331005")
    assert instrument.symbol == "IPABS-2019-1-A"
    assert instrument.tranche_class is TrancheClass.SENIOR
    assert instrument.day_count is DayCount.ACT_365F
    assert instrument.coupon_rate == 50_000  # 5 % in 1e-4 percent
    assert instrument.pool_factor == 784_213
    assert instrument.face_per_unit == 10_000  # default 100.00 CNY in fen
    assert instrument.tick_size == 10_000  # default 0.0001 in 1e-8
    assert instrument.price_band_pct == 200  # 2.00 % in basis points
    assert instrument.reference_price == 1_000_000  # 100.0000 in ticks
    assert instrument.currency == "CNY"
    assert instrument.status is TradingStatus.OPEN
    assert instrument.accrual_start == date(2026, 8, 15)


def test_wire_round_trip_is_exact() -> None:
    wire = instrument_wire(
        isin="US0378331005",
        tick_size="0.005",
        reference_price="99.995",
        pool_factor="0.5",
        face_per_unit="50.00",
        status="halted",
    )
    instrument = Instrument.from_wire(wire)
    out = instrument.to_wire()
    assert out["tick_size"] == "0.005"
    assert out["reference_price"] == "99.995"
    assert out["pool_factor"] == "0.500000"
    assert out["face_per_unit"] == "50.00"
    assert out["coupon_rate"] == "5.0000"
    assert out["price_band_pct"] == "2.00"
    assert out["min_qty"] == "10"
    assert out["status"] == "halted"
    assert Instrument.from_wire(out) == instrument


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"symbol": "ipabs-a"}, "validation.bad_symbol"),
        ({"symbol": "IPABS--A"}, "validation.bad_symbol"),
        ({"symbol": "A" * 33}, "validation.bad_symbol"),
        ({"symbol": 7}, "validation.bad_reference_data"),
        ({"isin": "US0378331006"}, "validation.bad_isin"),  # wrong check digit
        ({"isin": "us0378331005"}, "validation.bad_isin"),
        ({"isin": 378331005}, "validation.bad_isin"),
        ({"deal_name": ""}, "validation.bad_reference_data"),
        ({"deal_name": " padded"}, "validation.bad_reference_data"),
        ({"underlying": "x" * 201}, "validation.bad_reference_data"),
        ({"tranche_class": "super-senior"}, "validation.bad_reference_data"),
        ({"seniority_rank": 0}, "validation.bad_reference_data"),
        ({"seniority_rank": True}, "validation.bad_reference_data"),
        ({"seniority_rank": "1"}, "validation.bad_reference_data"),
        ({"rating": "A A"}, "validation.bad_reference_data"),
        ({"currency": "USD"}, "validation.bad_reference_data"),
        ({"face_per_unit": "0"}, "validation.bad_reference_data"),
        ({"face_per_unit": "100.001"}, "validation.bad_reference_data"),
        ({"pool_factor": "0"}, "validation.bad_factor"),
        ({"pool_factor": "0.0000001"}, "validation.bad_factor"),
        ({"pool_factor": "1.000001"}, "validation.absurd_value"),
        ({"pool_factor": "-0.5"}, "validation.bad_factor"),
        ({"coupon_rate": "5.00001"}, "validation.bad_rate"),
        ({"coupon_rate": "100.0001"}, "validation.absurd_value"),
        ({"coupon_rate": 5.0}, "validation.bad_rate"),
        ({"coupon_frequency": 3}, "validation.bad_reference_data"),
        ({"day_count": "ACT/365"}, "validation.bad_reference_data"),
        ({"accrual_start": "2026-02-30"}, "validation.bad_date"),
        ({"next_coupon_date": "2026-08-15"}, "validation.bad_date"),  # not after accrual start
        ({"maturity_date": "2027-02-14"}, "validation.bad_date"),  # before the next coupon
        # semiannual: a period longer than two regular periods (12 months) is a data error
        ({"accrual_start": "2026-02-14"}, "validation.bad_date"),
        ({"maturity_date": "9999-12-31"}, "validation.bad_date"),
        ({"accrual_start": "1989-12-31"}, "validation.bad_date"),
        ({"tick_size": "0"}, "validation.bad_reference_data"),
        ({"tick_size": "0.000000001"}, "validation.bad_reference_data"),
        ({"tick_size": "1.01"}, "validation.absurd_value"),
        ({"min_qty": "0"}, "validation.bad_quantity"),
        ({"min_qty": 10}, "validation.bad_quantity"),
        ({"min_qty": "15"}, "validation.bad_reference_data"),  # not a multiple of 10
        ({"qty_increment": "10000000001"}, "validation.absurd_value"),
        ({"price_band_pct": "0"}, "validation.bad_rate"),
        ({"price_band_pct": "50.01"}, "validation.absurd_value"),
        ({"reference_price": "100.00005"}, "validation.price_off_tick"),
        ({"reference_price": "0"}, "validation.bad_price"),
        ({"reference_price": "1000.0001"}, "validation.absurd_value"),
        ({"status": "closed"}, "validation.bad_reference_data"),
        ({"symbol": None}, "validation.bad_parameter"),  # a required field missing
        ({"colour": "red"}, "validation.unknown_field"),
    ],
)
def test_every_bad_field_is_refused_with_its_code(overrides: dict, code: str) -> None:
    assert listing_code(**overrides) == code


def test_a_long_first_coupon_of_up_to_two_periods_is_accepted() -> None:
    assert make_instrument(accrual_start="2026-02-15").accrual_start == date(2026, 2, 15)


def test_from_wire_needs_an_object() -> None:
    with pytest.raises(VenueError) as caught:
        Instrument.from_wire(["IPABS"])  # type: ignore[arg-type]
    assert caught.value.code.value == "validation.bad_parameter"


def test_direct_construction_with_a_wrong_type_is_a_programmer_error() -> None:
    instrument = make_instrument()
    with pytest.raises(TypeError):
        dataclasses.replace(instrument, min_qty="10")
    with pytest.raises(TypeError):
        dataclasses.replace(instrument, pool_factor=0.5)


def test_isin_check_digits_hand_checked() -> None:
    assert isin_check_digit_ok("US0378331005")  # Apple Inc.
    assert isin_check_digit_ok("DE000BAY0017")  # Bayer AG
    assert isin_check_digit_ok("AU0000XVGZA3")  # the ISO 6166 worked example
    assert not isin_check_digit_ok("US0378331004")
    assert not isin_check_digit_ok("DE000BAY0018")


# --- prices -------------------------------------------------------------------------------


def test_price_strings_become_ticks_on_the_grid() -> None:
    instrument = make_instrument()
    assert instrument.parse_price("99.8750") == 998_750
    assert instrument.parse_price("99.875") == 998_750
    assert instrument.parse_price("99.87500000") == 998_750
    assert instrument.parse_price("0.0001") == 1
    assert instrument.format_price(998_750) == "99.8750"
    assert instrument.format_price(1) == "0.0001"


def test_a_coarser_grid_uses_its_own_places() -> None:
    instrument = make_instrument(tick_size="0.005", reference_price="96.000")
    assert instrument.price_places == 3
    assert instrument.parse_price("96.005") == 19_201
    assert instrument.format_price(19_201) == "96.005"
    assert make_instrument(tick_size="0.01").price_places == 2
    assert make_instrument(tick_size="1", reference_price="100").price_places == 0


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("99.87505", "validation.price_off_tick"),
        ("99.123456789", "validation.bad_price"),
        ("0", "validation.bad_price"),
        ("-99.5", "validation.bad_price"),
        ("1e2", "validation.bad_price"),
        ("NaN", "validation.bad_price"),
        (99.5, "validation.bad_price"),
        ("1000.0001", "validation.absurd_value"),
        ("99" * 30, "validation.absurd_value"),
    ],
)
def test_bad_prices(text: object, code: str) -> None:
    with pytest.raises(VenueError) as caught:
        make_instrument().parse_price(text)
    assert caught.value.code.value == code


def test_coarse_grid_refuses_finer_prices() -> None:
    with pytest.raises(VenueError) as caught:
        make_instrument(tick_size="0.005", reference_price="96.000").parse_price("96.001")
    assert caught.value.code.value == "validation.price_off_tick"
    assert caught.value.details["tick_size"] == "0.005"


def test_internal_tick_counts_are_checked() -> None:
    instrument = make_instrument()
    assert instrument.check_price_ticks(1) == 1
    assert instrument.max_price_ticks == 10_000_000  # 1000.0000
    for ticks, code in [
        (0, "validation.bad_price"),
        (-1, "validation.bad_price"),
        (10_000_001, "validation.absurd_value"),
    ]:
        with pytest.raises(VenueError) as caught:
            instrument.check_price_ticks(ticks)
        assert caught.value.code.value == code
    with pytest.raises(TypeError):
        instrument.check_price_ticks(1.0)  # type: ignore[arg-type]


# --- band ---------------------------------------------------------------------------------


def test_band_edges_exact_when_they_fall_on_the_grid() -> None:
    # 100.0000 +- 2 % -> [98.0000, 102.0000]
    assert make_instrument().band_edges() == (980_000, 1_020_000)


def test_band_edges_round_inward() -> None:
    # 99.5001 x 0.98 = 97.510098 -> up to 97.5101; 99.5001 x 1.02 = 101.490102 -> down to 101.4901
    instrument = make_instrument(reference_price="99.5001")
    assert instrument.band_edges() == (975_101, 1_014_901)
    instrument.check_in_band(975_101)
    instrument.check_in_band(1_014_901)
    for outside in (975_100, 1_014_902):
        with pytest.raises(VenueError) as caught:
            instrument.check_in_band(outside)
        assert caught.value.code.value == "validation.price_out_of_band"
        assert caught.value.details == {"field": "price", "lower": "97.5101", "upper": "101.4901"}


def test_band_edges_on_a_coarse_grid() -> None:
    # 96.000 +- 5 % = [91.2, 100.8] -> ticks of 0.005: [18240, 20160]
    instrument = make_instrument(tick_size="0.005", reference_price="96.000", price_band_pct="5.00")
    assert instrument.band_edges() == (18_240, 20_160)
    # 96.005 +- 5 %: 91.20475 -> up to 91.205 (18241); 100.80525 -> down to 100.805 (20161)
    assert instrument.with_reference_price(19_201).band_edges() == (18_241, 20_161)


def test_lower_edge_never_below_one_tick() -> None:
    instrument = make_instrument(reference_price="0.0001", price_band_pct="50.00")
    assert instrument.band_edges() == (1, 1)  # 0.00005 -> up to 0.0001; 0.00015 -> down to 0.0001


def test_market_orders_become_limits_at_the_far_edge() -> None:
    instrument = make_instrument(reference_price="99.5001")
    assert instrument.market_limit_ticks(Side.BUY) == 1_014_901
    assert instrument.market_limit_ticks(Side.SELL) == 975_101
    assert instrument.market_limit_ticks("buy") == 1_014_901
    with pytest.raises(ValueError):
        instrument.market_limit_ticks("sideways")


def test_parse_side() -> None:
    assert parse_side("buy") is Side.BUY
    assert parse_side("sell") is Side.SELL
    for bad in ("BUY", "b", "", None, 0):
        with pytest.raises(VenueError) as caught:
            parse_side(bad)
        assert caught.value.code.value == "validation.bad_side"


# --- quantities and status ----------------------------------------------------------------


def test_quantity_rules() -> None:
    instrument = make_instrument(min_qty="100", qty_increment="50")
    assert instrument.check_qty(100) == 100
    assert instrument.check_qty(150) == 150
    for qty, code in [
        (0, "validation.bad_quantity"),
        (-50, "validation.bad_quantity"),
        (50, "validation.qty_below_min"),
        (120, "validation.qty_off_increment"),
        (10**10 + 50, "validation.absurd_value"),
    ]:
        with pytest.raises(VenueError) as caught:
            instrument.check_qty(qty)
        assert caught.value.code.value == code, qty
    with pytest.raises(TypeError):
        instrument.check_qty(100.0)  # type: ignore[arg-type]


def test_halted_instruments_refuse_orders_and_resume() -> None:
    instrument = make_instrument()
    instrument.check_open()
    halted = instrument.with_status("halted")
    assert halted.status is TradingStatus.HALTED
    assert instrument.status is TradingStatus.OPEN  # the original is unchanged
    with pytest.raises(VenueError) as caught:
        halted.check_open()
    assert caught.value.code.value == "state.instrument_halted"
    halted.with_status(TradingStatus.OPEN).check_open()
    with pytest.raises(VenueError):
        instrument.with_status("paused")


def test_with_factor_and_reference_price_revalidate() -> None:
    instrument = make_instrument()
    assert instrument.with_factor(500_000).pool_factor == 500_000
    assert instrument.pool_factor == 1_000_000
    for bad in (0, 1_000_001):
        with pytest.raises(VenueError) as caught:
            instrument.with_factor(bad)
        assert caught.value.code.value == "validation.bad_factor"
    assert instrument.with_reference_price(998_750).band_edges() == (978_775, 1_018_725)
    with pytest.raises(VenueError) as caught:
        instrument.with_reference_price(0)
    assert caught.value.code.value == "validation.bad_price"


# --- coupon schedule ----------------------------------------------------------------------


def test_add_months_clamps_and_keeps_month_ends() -> None:
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2023, 1, 31), 1) == date(2023, 2, 28)
    assert add_months(date(2024, 8, 31), -6) == date(2024, 2, 29)
    assert add_months(date(2025, 2, 28), 3, end_of_month=True) == date(2025, 5, 31)
    assert add_months(date(2026, 11, 15), -12) == date(2025, 11, 15)


def test_coupon_roll_follows_the_maturity_anchored_schedule() -> None:
    instrument = make_instrument()  # semiannual, 15 Feb / 15 Aug, maturity 2029-08-15
    rolled = instrument.with_next_coupon_period()
    assert (rolled.accrual_start, rolled.next_coupon_date) == (date(2027, 2, 15), date(2027, 8, 15))


def test_month_end_schedule_does_not_drift_through_february() -> None:
    instrument = make_instrument(
        coupon_frequency=4,
        accrual_start="2026-08-31",
        next_coupon_date="2026-11-30",
        maturity_date="2028-08-31",
    )
    dates = []
    for _ in range(4):
        instrument = instrument.with_next_coupon_period()
        dates.append(instrument.next_coupon_date)
    assert dates == [date(2027, 2, 28), date(2027, 5, 31), date(2027, 8, 31), date(2027, 11, 30)]


def test_day_30_schedule_clamps_in_february_only() -> None:
    instrument = make_instrument(
        coupon_frequency=4,
        accrual_start="2027-08-30",
        next_coupon_date="2027-11-30",
        maturity_date="2028-08-30",
    )
    assert instrument.following_coupon_date() == date(2028, 2, 29)
    assert instrument.with_next_coupon_period().following_coupon_date() == date(2028, 5, 30)


def test_no_roll_past_maturity() -> None:
    instrument = make_instrument(accrual_start="2029-02-15", next_coupon_date="2029-08-15")
    with pytest.raises(VenueError) as caught:
        instrument.with_next_coupon_period()
    assert caught.value.code.value == "state.instrument_matured"


# --- properties over many grids -----------------------------------------------------------

TICKS = ["0.0001", "0.0005", "0.001", "0.005", "0.01", "0.05", "0.25", "1", "0.00000001"]


@settings(max_examples=300, deadline=None)
@given(tick=st.sampled_from(TICKS), data=st.data())
def test_price_text_round_trips_on_every_grid(tick: str, data: st.DataObject) -> None:
    instrument = make_instrument(tick_size=tick, reference_price="100")
    ticks = data.draw(st.integers(1, instrument.max_price_ticks))
    assert instrument.parse_price(instrument.format_price(ticks)) == ticks


@settings(max_examples=300, deadline=None)
@given(
    tick=st.sampled_from(TICKS),
    band_bps=st.integers(1, 5_000),
    data=st.data(),
)
def test_band_edges_are_the_outermost_grid_prices_inside_the_exact_band(
    tick: str, band_bps: int, data: st.DataObject
) -> None:
    instrument = make_instrument(tick_size=tick, reference_price="100")
    reference = data.draw(st.integers(1, instrument.max_price_ticks))
    instrument = dataclasses.replace(instrument, reference_price=reference, price_band_pct=band_bps)
    lower, upper = instrument.band_edges()
    exact_lower = Fraction(reference * (10_000 - band_bps), 10_000)
    exact_upper = Fraction(reference * (10_000 + band_bps), 10_000)
    assert lower <= reference <= upper
    assert exact_lower <= lower and (lower == 1 or lower - 1 < exact_lower)
    assert upper <= exact_upper
    assert upper == instrument.max_price_ticks or upper + 1 > exact_upper
