"""The demo seed is valid through the same doors as operator input, and live on its date."""

from __future__ import annotations

from collections import Counter
from datetime import date

from venue.domain import demo
from venue.domain.instruments import Instrument, Side, TrancheClass, add_months
from venue.domain.participants import Participant, Role, Segment
from venue.domain.pricing import (
    FeeSchedule,
    accrued_interest,
    accrued_upper,
    buy_reservation_fen,
)

INSTRUMENTS = {wire["symbol"]: Instrument.from_wire(wire) for wire in demo.INSTRUMENTS}
PARTICIPANTS = {wire["participant_id"]: Participant.from_wire(wire) for wire in demo.PARTICIPANTS}
FEES = FeeSchedule.from_wire(demo.FEE_SCHEDULE)


def test_wire_data_is_canonical() -> None:
    for wire in demo.INSTRUMENTS:
        assert INSTRUMENTS[wire["symbol"]].to_wire() == wire
    for wire in demo.PARTICIPANTS:
        assert PARTICIPANTS[wire["participant_id"]].to_wire() == wire
    assert FEES.to_wire() == demo.FEE_SCHEDULE


def test_one_ip_abs_deal_with_three_tranches_in_seniority_order() -> None:
    tranches = sorted(INSTRUMENTS.values(), key=lambda i: i.seniority_rank)
    assert [t.symbol for t in tranches] == ["IPABS-2025-1-A", "IPABS-2025-1-B", "IPABS-2025-1-C"]
    assert [t.tranche_class for t in tranches] == [
        TrancheClass.SENIOR,
        TrancheClass.MEZZANINE,
        TrancheClass.SUBORDINATED,
    ]
    assert [t.rating for t in tranches] == ["AAA", "AA", "NR"]
    assert len({t.deal_name for t in tranches}) == 1
    assert all("patent licence" in t.underlying for t in tranches)
    # coupons 3.5 % .. 6 %, rising down the waterfall
    rates = [t.coupon_rate for t in tranches]
    assert rates == sorted(rates)
    assert rates[0] >= 35_000 and rates[-1] <= 60_000
    assert tranches[0].pool_factor < 1_000_000  # the senior amortises


def test_every_tranche_is_live_on_the_demo_date() -> None:
    today = demo.AS_OF
    assert today.isoformat() == "2026-11-26"
    for instrument in INSTRUMENTS.values():
        assert instrument.accrual_start <= today < instrument.next_coupon_date
        assert date(2028, 1, 1) <= instrument.maturity_date <= date(2031, 12, 31)
        instrument.check_open()
        assert accrued_interest(instrument, today) > 0
        # both period ends are on the schedule anchored at maturity
        step = 12 // instrument.coupon_frequency
        schedule = {add_months(instrument.maturity_date, -k * step) for k in range(40)}
        assert {instrument.accrual_start, instrument.next_coupon_date} <= schedule
        # the reference price sits inside its own band
        instrument.check_in_band(instrument.reference_price)


def test_two_market_makers_and_two_brokers_across_both_segments_plus_staff() -> None:
    roles = Counter(p.role for p in PARTICIPANTS.values())
    assert roles == {Role.MARKET_MAKER: 2, Role.BROKER: 2, Role.CLERK: 1, Role.OPERATOR: 1}
    for role in (Role.MARKET_MAKER, Role.BROKER):
        segments = {p.segment for p in PARTICIPANTS.values() if p.role is role}
        assert segments == {Segment.INTERBANK, Segment.EXCHANGE}


def test_funding_goes_to_known_trading_participants_and_assets() -> None:
    assert len({(pid, asset) for pid, asset, _ in demo.FUNDING}) == len(demo.FUNDING)
    for participant_id, asset, amount in demo.FUNDING:
        assert PARTICIPANTS[participant_id].can_trade
        assert asset == "CNY" or asset in INSTRUMENTS
        assert isinstance(amount, int) and amount > 0
    funded_with_cash = {pid for pid, asset, _ in demo.FUNDING if asset == "CNY"}
    assert funded_with_cash == {p for p, v in PARTICIPANTS.items() if v.can_trade}
    # every tranche has holders, so both sides can trade from the first minute
    assert {asset for _, asset, _ in demo.FUNDING} >= set(INSTRUMENTS)


def test_every_trader_can_afford_a_minimum_lot_market_buy_in_every_tranche() -> None:
    cash = {pid: amount for pid, asset, amount in demo.FUNDING if asset == "CNY"}
    for instrument in INSTRUMENTS.values():
        limit = instrument.market_limit_ticks(Side.BUY)
        upper = accrued_upper(instrument, demo.AS_OF)
        for participant_id, available in cash.items():
            segment = PARTICIPANTS[participant_id].segment
            need = buy_reservation_fen(instrument, limit, instrument.min_qty, upper, FEES, segment)
            assert need <= available
