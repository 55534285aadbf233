"""The priority of payments: the README's worked period to the fen, carry-forward, pro rata,
the holder allocation rule, the terms' refusals, and properties over random deals."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from venue.domain.instruments import DayCount, Instrument
from venue.domain.waterfall import (
    DealState,
    DealTerms,
    PrincipalPayment,
    TrancheDistribution,
    TrancheState,
    TrancheTerms,
    Waterfall,
    allocate,
    allocate_to_holders,
    run_waterfall,
)
from venue.errors import ErrorCode, VenueError

KEY = "ab" * 32

# The README's worked deal: three tranches of 100.00 CNY units.
SENIOR = TrancheTerms("DEAL-A", 1, 500_000, 10_000, 36_000, DayCount.ACT_365F, 4)
MEZZ = TrancheTerms("DEAL-B", 2, 200_000, 10_000, 48_000, DayCount.ACT_ACT, 2)
SUB = TrancheTerms("DEAL-C", 3, 100_000, 10_000, 60_000, DayCount.THIRTY_360, 2)
TERMS = DealTerms(
    "DEAL", "P-SRV1", KEY, servicer_fee_ppm=5_000, trustee_fee_ppm=500,
    tranches=(SENIOR, MEZZ, SUB),
)  # fmt: skip
FACTORS = {"DEAL-A": 800_000, "DEAL-B": 1_000_000, "DEAL-C": 1_000_000}
COLLECTION_PERIOD = (date(2026, 11, 1), date(2027, 2, 1))
COUPON_PERIODS = {
    "DEAL-A": (date(2026, 11, 15), date(2027, 2, 15)),
    "DEAL-B": (date(2026, 8, 15), date(2027, 2, 15)),
    "DEAL-C": (date(2026, 8, 15), date(2027, 2, 15)),
}


def worked_period(collections: int = 400_000_000) -> Waterfall:
    state = DealState.at_listing(TERMS, FACTORS, pool_balance=7_200_000_000)
    return run_waterfall(
        TERMS,
        state,
        period=1,
        collections=collections,
        pool_balance_start=7_200_000_000,
        pool_balance_end=6_650_000_000,
        fee_period=COLLECTION_PERIOD,
        interest_periods=COUPON_PERIODS,
    )


def test_the_readme_worked_waterfall_to_the_fen() -> None:
    """README "A payment date worked by hand": every figure computed there by hand."""
    waterfall = worked_period()
    # fees: 72,000,000.00 x 0.50 % x 92/365 = 90,739.726 -> 90,739.73; x 0.05 % -> 9,073.97
    assert (waterfall.servicer_fee.due, waterfall.servicer_fee.paid) == (9_073_973, 9_073_973)
    assert (waterfall.trustee_fee.due, waterfall.trustee_fee.paid) == (907_397, 907_397)
    senior, mezz, sub = waterfall.tranches
    assert [t.balance_before for t in waterfall.tranches] == [4_000_000_000, 2_000_000_000,
                                                              1_000_000_000]  # fmt: skip
    # interest: A 40,000,000 x 3.6 % x 92/365 = 362,958.904 -> 362,958.90; B x 4.8 % / 2; C 6 % / 2
    assert (senior.interest_due, senior.interest_paid, senior.interest_shortfall) == (
        36_295_890, 36_295_890, 0,
    )  # fmt: skip
    assert (mezz.interest_paid, sub.interest_paid) == (48_000_000, 30_000_000)
    # principal due 70,000,000 - 66,500,000; 2,757,227.40 left for it, all to the senior
    assert waterfall.principal_due == 350_000_000
    assert (senior.principal_paid, senior.principal_shortfall) == (275_722_740, 74_277_260)
    assert (mezz.principal_paid, sub.principal_paid) == (0, 0)
    assert (mezz.principal_shortfall, sub.principal_shortfall) == (0, 0)
    assert waterfall.residual == 0
    assert waterfall.paid == waterfall.available == 400_000_000
    # the factor is derived: ceil(37,242,772.60 / 50,000,000.00, 6 places) = 0.744856
    assert (senior.balance_after, senior.factor_before, senior.factor_after) == (
        3_724_277_260, 800_000, 744_856,
    )  # fmt: skip
    assert (mezz.factor_after, sub.factor_after) == (1_000_000, 1_000_000)
    assert waterfall.state_after == DealState(
        1, 6_650_000_000,
        (TrancheState("DEAL-A", 3_724_277_260), TrancheState("DEAL-B", 2_000_000_000),
         TrancheState("DEAL-C", 1_000_000_000)),
    )  # fmt: skip


def test_the_readme_worked_holder_allocation() -> None:
    """The senior tranche's holders (README): the one fen left over goes to the largest
    remainder, P-BRK2's."""
    senior = worked_period().tranches[0]
    holdings = {"P-MM1": 200_000, "P-MM2": 150_000, "P-BRK2": 10_000, "external:issuer": 140_000}
    payments = {p.holder: (p.interest, p.principal) for p in
                allocate_to_holders(senior, holdings, SENIOR.units)}  # fmt: skip
    assert payments == {
        "P-BRK2": (725_918, 5_514_455),
        "P-MM1": (14_518_356, 110_289_096),
        "P-MM2": (10_888_767, 82_716_822),
        "external:issuer": (10_162_849, 77_202_367),
    }
    assert sum(i for i, _ in payments.values()) == senior.interest_paid
    assert sum(p for _, p in payments.values()) == senior.principal_paid


def test_an_interest_shortfall_is_carried_and_paid_first_next_time() -> None:
    first = worked_period(collections=100_000_000)  # 1,000,000.00: short in the junior interest
    senior, _mezz, sub = first.tranches
    left_for_sub = 100_000_000 - 9_073_973 - 907_397 - 36_295_890 - 48_000_000
    assert (sub.interest_due, sub.interest_paid) == (30_000_000, left_for_sub)
    assert sub.interest_shortfall == 30_000_000 - left_for_sub
    assert first.principal_paid == 0 and senior.principal_shortfall == 350_000_000
    assert senior.factor_after == senior.factor_before == 800_000
    assert first.state_after.tranche("DEAL-C").interest_shortfall == sub.interest_shortfall

    # next period: only the senior's coupon is due; the junior's unpaid interest comes before
    # any principal
    second = run_waterfall(
        TERMS, first.state_after, period=2, collections=200_000_000,
        pool_balance_start=6_650_000_000, pool_balance_end=6_600_000_000,
        fee_period=(date(2027, 2, 1), date(2027, 5, 1)),
        interest_periods={"DEAL-A": (date(2027, 2, 15), date(2027, 5, 15))},
    )  # fmt: skip
    senior2, mezz2, sub2 = second.tranches
    assert mezz2.interest_due == 0 and mezz2.interest_shortfall == 0
    assert (sub2.interest_due, sub2.interest_paid) == (sub.interest_shortfall,) * 2
    # 40,000,000 x 3.6 % x 89/365 (15 Feb .. 15 May)
    assert senior2.interest_due == 35_112_329
    assert second.paid == 200_000_000
    assert second.principal_due == 7_000_000_000 - 6_600_000_000


def test_pro_rata_principal_shares_by_balance_by_largest_remainder() -> None:
    terms = DealTerms(
        "DEAL", "P-SRV1", KEY, 0, 0, (SENIOR, MEZZ, SUB), principal=PrincipalPayment.PRO_RATA
    )
    state = DealState.at_listing(terms, FACTORS, pool_balance=7_000_000_000)
    waterfall = run_waterfall(
        terms, state, period=1, collections=7, pool_balance_start=7_000_000_000,
        pool_balance_end=6_999_999_990, fee_period=COLLECTION_PERIOD, interest_periods={},
    )  # fmt: skip
    # 7 fen over balances 4:2:1 -> exactly 4, 2, 1; the other 3 fen due are short, shared alike
    assert [t.principal_paid for t in waterfall.tranches] == [4, 2, 1]
    assert sum(t.principal_shortfall for t in waterfall.tranches) == 3
    assert [t.principal_shortfall for t in waterfall.tranches] == [2, 1, 0]


def test_what_is_left_after_principal_is_the_residual_tranche_s() -> None:
    state = DealState.at_listing(TERMS, FACTORS, pool_balance=7_200_000_000)
    waterfall = run_waterfall(
        TERMS, state, period=1, collections=900_000_000, pool_balance_start=7_200_000_000,
        pool_balance_end=7_100_000_000, fee_period=COLLECTION_PERIOD,
        interest_periods=COUPON_PERIODS,
    )  # fmt: skip
    assert waterfall.principal_due == 0
    senior, mezz, sub = waterfall.tranches
    assert senior.residual == mezz.residual == 0
    assert sub.residual == 900_000_000 - 9_073_973 - 907_397 - 36_295_890 - 48_000_000 - 30_000_000
    assert waterfall.paid == 900_000_000


def test_allocate_breaks_ties_by_the_smaller_key() -> None:
    assert allocate(2, {"P-B": 1, "P-A": 1, "P-C": 1}) == {"P-A": 1, "P-B": 1, "P-C": 0}
    assert allocate(1, {3: 5, 1: 5}) == {1: 1, 3: 0}
    assert allocate(0, {"P-A": 0}) == {"P-A": 0}
    assert allocate(10, {"P-A": 0, "P-B": 3}) == {"P-A": 0, "P-B": 10}
    with pytest.raises(ValueError):
        allocate(1, {"P-A": 0})
    with pytest.raises(ValueError):
        allocate(-1, {"P-A": 1})


def test_holders_must_account_for_every_unit_on_issue() -> None:
    senior = worked_period().tranches[0]
    with pytest.raises(ValueError, match="on issue"):
        allocate_to_holders(senior, {"P-MM1": 200_000}, SENIOR.units)


def test_terms_from_an_instrument_and_through_their_record() -> None:
    instrument = Instrument.from_wire(
        {
            "symbol": "IPABS-2025-1-A", "deal_name": "demo", "tranche_class": "senior",
            "seniority_rank": 1, "rating": "AAA", "underlying": "licences",
            "coupon_rate": "3.6000", "coupon_frequency": 4, "day_count": "ACT/365F",
            "accrual_start": "2026-11-15", "next_coupon_date": "2027-02-15",
            "maturity_date": "2028-08-15", "min_qty": "10", "qty_increment": "10",
            "price_band_pct": "2.00", "reference_price": "100.1250", "pool_factor": "0.784213",
        }
    )  # fmt: skip
    tranche = TrancheTerms.from_instrument(instrument, 500_000)
    assert tranche == TrancheTerms("IPABS-2025-1-A", 1, 500_000, 10_000, 36_000,
                                   DayCount.ACT_365F, 4)  # fmt: skip
    # the listed factor survives floor (balance) then ceiling (factor)
    assert tranche.factor_of(tranche.balance_at(instrument.pool_factor)) == 784_213
    assert DealTerms.from_record(TERMS.to_record()) == TERMS
    state = worked_period().state_after
    assert DealState.from_record(state.to_record()) == state


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"deal_id": "-bad"}, "deal_id"),
        ({"servicer": "servicer"}, "servicer"),
        ({"servicer_public_key": "AB" * 32}, "servicer_public_key"),
        ({"servicer_fee_ppm": -1}, "servicer_fee_ppm"),
        ({"trustee_fee_ppm": 100_001}, "trustee_fee_ppm"),
        ({"fee_day_count": "ACT/ACT"}, "fee_day_count"),
        ({"tranches": (MEZZ, SENIOR)}, "tranches"),
        ({"tranches": ()}, "tranches"),
        ({"principal": "turbo"}, "principal"),
    ],
)
def test_bad_terms_are_refused_with_their_field(change: dict, field: str) -> None:
    record = {**TERMS.to_record(), **change}
    if "tranches" in change:
        record["tranches"] = [t.to_record() for t in change["tranches"]]
    with pytest.raises(VenueError) as caught:
        DealTerms.from_record(record)
    assert caught.value.code is ErrorCode.BAD_DEAL_TERMS
    assert caught.value.details["field"] == field


def test_a_tranche_too_small_for_a_micro_unit_factor_is_refused() -> None:
    with pytest.raises(VenueError) as caught:
        TrancheTerms("T", 1, 99, 10_000, 0, DayCount.ACT_360, 4)  # 9,900.00 CNY of face
    assert caught.value.code is ErrorCode.BAD_DEAL_TERMS


# --------------------------------------------------------------------------- properties

DAY_COUNTS = [DayCount.ACT_365F, DayCount.ACT_360, DayCount.THIRTY_360, DayCount.ACT_ACT]


@st.composite
def deals(draw: st.DrawFn) -> tuple[DealTerms, DealState]:
    count = draw(st.integers(1, 4))
    tranches, factors = [], {}
    for rank in range(1, count + 1):
        face = draw(st.sampled_from([100, 10_000, 1_000_000]))
        units = draw(st.integers(-(-1_000_000 // face), 10**7))  # at least 1e6 fen of face
        tranche = TrancheTerms(
            f"T{rank}", rank, units, face, draw(st.integers(0, 150_000)),
            draw(st.sampled_from(DAY_COUNTS)), draw(st.sampled_from([1, 2, 4, 12])),
        )  # fmt: skip
        tranches.append(tranche)
        factors[tranche.symbol] = draw(st.integers(1, 1_000_000))
    terms = DealTerms(
        "D", "P-SRV", KEY, draw(st.integers(0, 20_000)), draw(st.integers(0, 5_000)),
        tuple(tranches), principal=draw(st.sampled_from(PrincipalPayment)),
    )  # fmt: skip
    notes = sum(t.balance_at(factors[t.symbol]) for t in tranches)
    pool = draw(st.integers(0, 2 * notes))
    return terms, DealState.at_listing(terms, factors, pool)


def _check_distribution(waterfall: Waterfall, terms: DealTerms, collections: int) -> None:
    assert waterfall.available == collections == waterfall.paid
    for fee in (waterfall.servicer_fee, waterfall.trustee_fee):
        assert 0 <= fee.paid <= fee.due and fee.shortfall == fee.due - fee.paid
    for tranche, terms_of in zip(waterfall.tranches, terms.tranches, strict=True):
        assert 0 <= tranche.interest_paid <= tranche.interest_due
        assert tranche.interest_shortfall == tranche.interest_due - tranche.interest_paid
        assert 0 <= tranche.principal_paid <= tranche.balance_before
        assert tranche.principal_shortfall >= 0
        assert tranche.balance_after == tranche.balance_before - tranche.principal_paid
        assert tranche.factor_after <= tranche.factor_before
        assert (tranche.factor_after == 0) == (tranche.balance_after == 0)
        assert tranche.factor_after == terms_of.factor_of(tranche.balance_after)
    assert waterfall.principal_paid + sum(t.principal_shortfall for t in waterfall.tranches) == (
        waterfall.principal_due
    )
    # nothing junior is paid while anything senior is short
    short = waterfall.servicer_fee.shortfall or waterfall.trustee_fee.shortfall
    for tranche in waterfall.tranches:
        if short:
            assert tranche.interest_paid == 0
        short = short or tranche.interest_shortfall
    if short:
        assert waterfall.principal_paid == 0
    if waterfall.principal_paid < waterfall.principal_due:
        assert waterfall.residual == 0


@settings(max_examples=150, deadline=None)
@given(deals(), st.lists(st.tuples(st.integers(0, 10**11), st.integers(0, 10**9)), min_size=1,
                         max_size=5))  # fmt: skip
def test_payments_conserve_cash_and_factors_never_rise(deal, periods) -> None:
    terms, state = deal
    start = date(2026, 1, 1)
    for number, (collections, pool_drop) in enumerate(periods, start=1):
        end = date(2026 + number, 1, 1)
        pool_end = max(0, state.pool_balance - pool_drop)
        coupons = {
            t.symbol: (start, end) for t in terms.tranches if (number + t.seniority_rank) % 2
        }
        waterfall = run_waterfall(
            terms, state, period=number, collections=collections,
            pool_balance_start=state.pool_balance, pool_balance_end=pool_end,
            fee_period=(start, end), interest_periods=coupons,
        )  # fmt: skip
        _check_distribution(waterfall, terms, collections)
        state, start = waterfall.state_after, end


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 10**12),
    st.dictionaries(
        st.text("ABCDEFGH", min_size=1, max_size=3), st.integers(0, 10**9), min_size=1, max_size=12
    ),
)
def test_allocation_sums_exactly_and_each_share_is_within_a_fen(total, weights) -> None:
    if sum(weights.values()) == 0:
        weights = {**weights, "Z": 1}
    shares = allocate(total, weights)
    assert set(shares) == set(weights)
    assert sum(shares.values()) == total
    weight_sum = sum(weights.values())
    for key, share in shares.items():
        exact = Fraction(total * weights[key], weight_sum)
        assert exact - 1 < share < exact + 1


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 10**10), st.integers(0, 10**10), st.integers(0, 10**9),
    st.lists(st.integers(1, 10**6), min_size=1, max_size=20),
)  # fmt: skip
def test_holder_payments_sum_to_the_tranche_totals(interest, principal, residual, units) -> None:
    distribution = TrancheDistribution(
        "T", 10**12, interest, interest, 0, principal, 0, residual, 10**12 - principal, 1, 1
    )
    holdings = {f"P-H{index}": amount for index, amount in enumerate(units)}
    payments = allocate_to_holders(distribution, holdings, sum(units))
    assert sum(p.interest for p in payments) == interest
    assert sum(p.principal for p in payments) == principal
    assert sum(p.residual for p in payments) == residual
    assert sum(p.total for p in payments) == distribution.cash
