"""The valuation helper: a hand-checked projection, the yield against QuantLib, monotonicity in
price and prepayment, and the default assumption taken from a made-up disclosed history."""

from __future__ import annotations

import itertools
import math
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from venue.domain.disclosures import AssetLine, AssetStatus, build_report
from venue.domain.valuation import (
    PoolModel,
    annualised_default_rate_ppm,
    pool_income_rate_ppm,
    project,
    value_tranche,
)
from venue.domain.waterfall import DealState, DealTerms, TrancheTerms

from .helpers import make_instrument

KEY = "ab" * 32
START = date(2026, 11, 15)
SENIOR = make_instrument(
    symbol="HAND-A", coupon_rate="3.6000", coupon_frequency=4, day_count="ACT/365F",
    accrual_start="2026-11-15", next_coupon_date="2027-02-15", maturity_date="2030-08-15",
)  # fmt: skip
JUNIOR = make_instrument(
    symbol="HAND-R", tranche_class="subordinated", seniority_rank=2, rating="NR",
    coupon_rate="6.0000", coupon_frequency=2, day_count="30/360",
    accrual_start="2026-08-15", next_coupon_date="2027-02-15", maturity_date="2030-08-15",
)  # fmt: skip
INSTRUMENTS = {SENIOR.symbol: SENIOR, JUNIOR.symbol: JUNIOR}
UNITS = 1_000_000  # x 100.00 CNY face = 10,000,000,000 fen each
TERMS = DealTerms(
    "HAND-1", "P-SVC1", KEY, 0, 0,
    (TrancheTerms.from_instrument(SENIOR, UNITS), TrancheTerms.from_instrument(JUNIOR, UNITS)),
)  # fmt: skip
FACE = 10_000_000_000
STATE = DealState.at_listing(TERMS, {"HAND-A": 1_000_000, "HAND-R": 1_000_000}, 2 * FACE)


def model(cpr: int = 0, cdr: int = 0, periods: int = 4) -> PoolModel:
    return PoolModel(cpr_ppm=cpr, cdr_ppm=cdr, pool_rate_ppm=80_000, remaining_periods=periods)


def value(price: str = "100", **kwargs: int):
    return value_tranche(
        TERMS, STATE, INSTRUMENTS, "HAND-A", clean_price=Decimal(price), settlement=START,
        model=model(**kwargs), first_period_start=START,
    )  # fmt: skip


def test_no_defaults_no_prepayment_follows_the_schedule_by_hand() -> None:
    """Pool 200m CNY amortising straight line over 4 quarters (50m each), notes 100m + 100m:
    principal due is the notes' excess over the pool, so the senior gets 50m on each of the
    first two payment dates and is repaid; interest 3.6 % ACT/365F on its balance."""
    periods = project(TERMS, STATE, INSTRUMENTS, model(), first_period_start=START)
    assert [p.payment_date for p in periods] == [
        date(2027, 2, 15), date(2027, 5, 15), date(2027, 8, 15), date(2027, 11, 15)
    ]  # fmt: skip
    assert [p.scheduled for p in periods] == [5_000_000_000] * 4
    assert [p.defaults + p.prepaid for p in periods] == [0] * 4
    # income 200m x 8 % x 92/365 = 4,032,876.7123 CNY, half up to the fen
    assert periods[0].income == 403_287_671
    senior = [p.waterfall.tranches[0] for p in periods]
    assert [s.principal_paid for s in senior] == [5_000_000_000, 5_000_000_000, 0, 0]
    # 100m x 3.6 % x 92/365 = 907,397.2603 CNY; then 50m x 3.6 % x 89/365 = 438,904.1096 CNY
    assert [s.interest_paid for s in senior] == [90_739_726, 43_890_411, 0, 0]

    valuation = value()
    assert valuation.amount == FACE  # at par on a coupon date: no accrued
    # WAL = (50m x 92 + 50m x 181) / 100m / 365 days
    assert valuation.wal_years == Fraction(92 + 181, 2 * 365)
    assert valuation.principal_lost == 0
    # at par the yield is the coupon: within 0.01 bp (a quarter of ACT/365F days discounted by
    # (1 + y/4)^(4 t) differs from 1 + y t in the 8th digit, and the fen roundings)
    assert abs(valuation.yield_rate - 36_000) <= 1


def test_the_yield_agrees_with_quantlib() -> None:
    ql = pytest.importorskip("QuantLib")
    for price, cpr, cdr in (("100", 0, 0), ("98.5", 150_000, 20_000), ("101.25", 50_000, 0)):
        valuation = value(price, cpr=cpr, cdr=cdr, periods=12)
        leg = [
            ql.SimpleCashFlow(flow.total / 100, ql.Date(flow.payment_date.isoformat(), "%Y-%m-%d"))
            for flow in valuation.cash_flows
        ]
        settle = ql.Date(START.isoformat(), "%Y-%m-%d")
        oracle = ql.CashFlows.yieldRate(
            leg, valuation.amount / 100, ql.Actual365Fixed(), ql.Compounded, ql.Quarterly, False,
            settle, settle, 1e-12, 1000, 0.05,
        )  # fmt: skip
        assert abs(valuation.yield_rate - oracle * 1_000_000) <= 1, (price, cpr, cdr)


@settings(max_examples=25, deadline=None)
@given(
    low=st.decimals(min_value=80, max_value=120, places=4),
    step=st.decimals(min_value=Decimal("0.05"), max_value=5, places=4),
    cpr=st.integers(0, 300_000),
)
def test_a_higher_price_gives_a_lower_yield(low: Decimal, step: Decimal, cpr: int) -> None:
    cheap = value(str(low), cpr=cpr, periods=12)
    dear = value(str(low + step), cpr=cpr, periods=12)
    assert dear.amount > cheap.amount
    assert dear.yield_rate < cheap.yield_rate
    assert dear.cash_flows == cheap.cash_flows  # the price changes nothing projected


@pytest.mark.parametrize("cdr", [0, 30_000])
def test_faster_prepayment_shortens_the_sequential_senior(cdr: int) -> None:
    wals = [value(cpr=cpr, cdr=cdr, periods=20).wal_years for cpr in (0, 50_000, 200_000, 500_000)]
    assert all(later < earlier for earlier, later in itertools.pairwise(wals)), wals


def test_defaults_cost_the_residual_tranche_first() -> None:
    clean = value_tranche(
        TERMS,
        STATE,
        INSTRUMENTS,
        "HAND-R",
        clean_price=Decimal(90),
        settlement=START,
        model=model(periods=8),
        first_period_start=START,
    )
    losing = value_tranche(TERMS, STATE, INSTRUMENTS, "HAND-R", clean_price=Decimal(90),
                           settlement=START, model=model(cdr=100_000, periods=8),
                           first_period_start=START)  # fmt: skip
    assert losing.yield_rate < clean.yield_rate
    assert value(cdr=100_000, periods=8).principal_lost == 0  # the senior is still covered


def _line(asset: str, balance: int, collected: int, status: str = "performing") -> AssetLine:
    return AssetLine(asset, "LIC-" + asset, "PAT-" + asset, collected, collected, balance,
                     30 if status == "defaulted" else 0, AssetStatus(status))  # fmt: skip


def _history(defaults_by_period: list[list[str]], ends: list[date]) -> list:
    """Ten receivables of 1,000.00 CNY, each collecting 20.00 CNY a period; the named ones
    default in the period named (and stay on the tape, defaulted)."""
    defaulted: set[str] = set()
    reports = []
    start, pool = date(2026, 1, 1), 1_000_000
    for period, (newly, end) in enumerate(zip(defaults_by_period, ends, strict=True), 1):
        defaulted |= set(newly)
        lines = [
            _line(f"L{i:02}", 100_000, 0 if f"L{i:02}" in defaulted else 2_000,
                  "defaulted" if f"L{i:02}" in defaulted else "performing")
            for i in range(10)
        ]  # fmt: skip
        report = build_report("HIST-1", period, start, end, pool, lines, KEY)
        reports.append(report)
        start, pool = end, report.totals.pool_balance
    return reports


YEAR = [date(2026, 4, 1), date(2026, 7, 1), date(2026, 10, 1), date(2027, 1, 1)]  # 365 days


def test_the_default_rate_of_a_made_up_year_of_reports() -> None:
    # 100,000 of 1,000,000 defaults in Q1, 100,000 of 900,000 in Q2: survival 0.9 x 8/9 = 0.8
    reports = _history([["L03"], ["L07"], [], []], YEAR)
    assert [r.totals.defaulted_balance for r in reports] == [100_000, 200_000, 200_000, 200_000]
    assert annualised_default_rate_ppm(reports) == 200_000
    assert PoolModel.from_history(reports, cpr_ppm=0, remaining_periods=8).cdr_ppm == 200_000
    # a stated default rate wins over the history's
    stated = PoolModel.from_history(reports, cpr_ppm=0, remaining_periods=8, cdr_ppm=5)
    assert stated.cdr_ppm == 5
    assert annualised_default_rate_ppm(_history([[], [], [], []], YEAR)) == 0


def test_a_part_year_history_is_annualised() -> None:
    reports = _history([["L03"], ["L07"]], YEAR[:2])  # 181 days, survival 0.8
    expected = 1 - 0.8 ** (365 / 181)
    assert abs(annualised_default_rate_ppm(reports) - expected * 1_000_000) <= 1


def test_the_pool_income_rate_of_the_history() -> None:
    reports = _history([["L03"], ["L07"], [], []], YEAR)
    # collections (the balances never amortise, so all of it is income): 9, 8, 8, 8 lines of
    # 2,000 fen (a line defaulting in a period collects nothing in it); outstanding:
    # 1,000,000 x 90/365 + 900,000 x 91/365 + 800,000 x 184/365
    income = 2_000 * (9 + 8 + 8 + 8)
    exposure = Fraction(1_000_000 * 90 + 900_000 * 91 + 800_000 * 184, 365)
    assert pool_income_rate_ppm(reports) == round(Fraction(income) / exposure * 1_000_000)
    model = PoolModel.from_history(reports, cpr_ppm=0, remaining_periods=8)
    assert model.pool_rate_ppm == pool_income_rate_ppm(reports)


def test_the_history_must_be_consecutive() -> None:
    reports = _history([["L03"], ["L07"], [], []], YEAR)
    with pytest.raises(ValueError, match="consecutive"):
        annualised_default_rate_ppm([reports[0], reports[2]])
    with pytest.raises(ValueError, match="at least one"):
        annualised_default_rate_ppm([])


def test_more_defaults_in_the_history_mean_a_higher_rate() -> None:
    rates = [
        annualised_default_rate_ppm(_history([names, [], [], []], YEAR))
        for names in ([], ["L01"], ["L01", "L02"], ["L01", "L02", "L03"])
    ]
    assert rates == sorted(set(rates))
    assert math.isclose(rates[1], 100_000)  # one in ten over exactly a year
