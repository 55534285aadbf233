"""The valuation helper: a tranche's yield and weighted average life at a clean price, under a
stated prepayment (CPR) and default (CDR) assumption, by projecting the deal's own waterfall.

Why: the disclosures exist so that investors can price what they cannot see. This module turns
the disclosed history into an assumption (``PoolModel.from_history``: the annualised default
rate and the pool's income rate of the published pool reports) and runs the deal's priority of
payments forward period by period with ``venue.domain.waterfall.run_waterfall`` -- the very
function the venue pays holders with, so the projection can never disagree with the deal's
terms. Pure: no clock, no I/O.

The pool model (one projected collection period of ``period_months`` months, ``dt`` its
ACT/365F year fraction, ``B`` the pool balance at its start, ``n`` the scheduled periods left)
---------------------------------------------------------------------------------------------
1. defaults ``D = B x (1 - (1 - CDR)^dt)`` -- written off with no recovery, as a defaulted
   line leaves the disclosed pool balance;
2. scheduled principal ``S = (B - D) / n`` (straight-line amortisation of the performing
   balance over the periods left; the last period takes all of it);
3. prepayments ``P = (B - D - S) x (1 - (1 - CPR)^dt)``;
4. income ``I = (B - D) x pool_rate x dt`` (the licence fees above principal);
5. collections ``S + P + I``; pool balance at the end ``B - D - S - P``.

Each of ``D``, ``S``, ``P``, ``I`` is rounded half up to the fen once; the powers are
``Decimal`` at 34 significant digits (deterministic everywhere). The payment date of a
projected period is its end; a tranche is paid interest on a payment date on or after its
next coupon date (exactly as ``distribute`` does), then its coupon period rolls; after its
final coupon (the coupon date that is its maturity) it accrues nothing more. The projection
runs until the pool's scheduled periods are done; whatever a tranche still owes then is a loss
(``Valuation.principal_lost``).

The measures (at ``settlement``, a date in the tranche's current coupon period)
------------------------------------------------------------------------------
* the amount paid: ``round_half_up(balance x (clean + accrued) / 100)`` fen, accrued per 100
  face from ``venue.domain.pricing.accrued_interest`` (the venue's own accrued);
* the yield ``y``: the rate at which the tranche's projected cash (interest, principal and any
  residual), discounted by ``(1 + y / f)^(f x t)`` with ``f`` the coupon frequency and ``t``
  the ACT/365F years from settlement to each payment date, is worth the amount paid. Solved by
  bisection in floats -- the only floats in the module -- and rounded half up at the edge to
  ``1e-4`` percent, the unit of ``coupon_rate`` (so 36_000 is 3.6000 %);
* the weighted average life: ``sum(principal_i x t_i) / sum(principal_i)``, exact
  (``Fraction``), ``t_i`` as above; residual cash is not principal and does not count.

Public API::

    @dataclass(frozen=True) PoolModel(cpr_ppm, cdr_ppm, pool_rate_ppm, remaining_periods,
                                      period_months=3)
        PoolModel.from_history(reports, *, cpr_ppm, remaining_periods, cdr_ppm=None,
                               pool_rate_ppm=None, period_months=3)
    annualised_default_rate_ppm(reports) -> int
    pool_income_rate_ppm(reports) -> int
    @dataclass(frozen=True) ProjectedPeriod(period_start, payment_date, pool_balance_start,
        defaults, scheduled, prepaid, income, pool_balance_end, waterfall)   .collections
    project(terms, state, instruments, model, *, first_period_start) -> tuple[ProjectedPeriod]
    @dataclass(frozen=True) CashFlow(payment_date, interest, principal, residual)  .total
    @dataclass(frozen=True) Valuation(symbol, settlement, clean_price, amount, yield_rate,
        wal_years, cash_flows, principal_lost)
    value_tranche(terms, state, instruments, symbol, *, clean_price, settlement, model,
                  first_period_start) -> Valuation
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Context, Decimal
from fractions import Fraction

from venue.domain.disclosures import PoolReport
from venue.domain.instruments import COUPON_RATE_PLACES, Instrument, add_months
from venue.domain.pricing import ACCRUED_SCALE, PPM, accrued_interest, round_half_away_from_zero
from venue.domain.waterfall import DealState, DealTerms, Waterfall, run_waterfall

_DECIMAL = Context(prec=34)
_RATE_SCALE = 100 * 10**COUPON_RATE_PLACES  # yield_rate units (1e-4 %) per 1
MAX_PROJECTED_PERIODS = 1_200  # a century of quarters: anything longer is a data error


def _year_fraction(start: date, end: date) -> Fraction:
    """ACT/365F: the projection's and the discounting's clock (module docstring)."""
    return Fraction((end - start).days, 365)


def _ppm_half_up(value: Decimal | Fraction) -> int:
    """A rate of 1 as a whole number of ppm, half up."""
    if isinstance(value, Fraction):
        return round_half_away_from_zero(value * PPM)
    return int((value * PPM).quantize(Decimal(1), rounding=ROUND_HALF_UP, context=_DECIMAL))


def _check_rate(value: object, name: str) -> int:
    if type(value) is not int or not 0 <= value < PPM:
        raise ValueError(f"{name} must be a whole number of ppm in [0, {PPM})")
    return value


def _new_defaults(reports: Sequence[PoolReport]) -> list[int]:
    """Per report, the balance that defaulted in its period: the rise of the tape's defaulted
    balance (a defaulted line stays on the tape). Before period 1 nothing had defaulted, so
    period 1 counts every default it shows; a fall (a recovery or a sale) counts as 0."""
    before = 0
    defaults = []
    for report in reports:
        defaults.append(max(0, report.totals.defaulted_balance - before))
        before = report.totals.defaulted_balance
    return defaults


def _check_history(reports: Sequence[PoolReport]) -> None:
    if not reports:
        raise ValueError("a history of at least one pool report is needed")
    for earlier, later in itertools.pairwise(reports):
        if later.period != earlier.period + 1 or later.period_start != earlier.period_end:
            raise ValueError("the reports must be one deal's consecutive periods, in order")


def annualised_default_rate_ppm(reports: Sequence[PoolReport]) -> int:
    """The constant default rate (CDR, ppm a year) the disclosed history shows.

    Each period's default fraction is its new defaults over its opening pool balance; the
    periods' survival ``prod(1 - d_k)`` over their ``T`` days is annualised as
    ``CDR = 1 - survival^(365 / T)`` -- the rate that, compounded as ``project`` compounds it,
    reproduces the history's defaults. Half up to the ppm.
    """
    _check_history(reports)
    survival = Fraction(1)
    days = 0
    for report, defaulted in zip(reports, _new_defaults(reports), strict=True):
        if report.pool_balance_start:
            survival *= 1 - Fraction(min(defaulted, report.pool_balance_start),
                                     report.pool_balance_start)  # fmt: skip
        days += (report.period_end - report.period_start).days
    if survival == 0:
        return PPM - 1  # everything defaulted: the largest rate a PoolModel takes
    base = _DECIMAL.divide(Decimal(survival.numerator), Decimal(survival.denominator))
    annual = _DECIMAL.power(base, _DECIMAL.divide(Decimal(365), Decimal(days)))
    return min(PPM - 1, _ppm_half_up(1 - annual))


def pool_income_rate_ppm(reports: Sequence[PoolReport]) -> int:
    """The pool's income rate (ppm a year) the history shows: each period's collections beyond
    the fall of its performing balance (``collected - (start - end - new defaults)``, at least
    0), over the pool balance outstanding (``sum(start_k x days_k / 365)``). Half up."""
    _check_history(reports)
    income = 0
    exposure = Fraction(0)
    for report, defaulted in zip(reports, _new_defaults(reports), strict=True):
        principal = report.pool_balance_start - report.totals.pool_balance - defaulted
        income += max(0, report.totals.collected - max(0, principal))
        exposure += report.pool_balance_start * _year_fraction(report.period_start,
                                                               report.period_end)  # fmt: skip
    if exposure == 0:
        return 0
    return min(PPM - 1, _ppm_half_up(Fraction(income) / exposure))


@dataclass(frozen=True, slots=True)
class PoolModel:
    """The projection's stated assumption (module docstring); rates in ppm a year."""

    cpr_ppm: int  # prepayments, of the performing balance left after scheduled principal
    cdr_ppm: int  # defaults, of the pool balance
    pool_rate_ppm: int  # income of the performing balance
    remaining_periods: int  # scheduled amortisation: straight line over this many periods
    period_months: int = 3

    def __post_init__(self) -> None:
        for name in ("cpr_ppm", "cdr_ppm", "pool_rate_ppm"):
            _check_rate(getattr(self, name), name)
        if type(self.remaining_periods) is not int or not (
            1 <= self.remaining_periods <= MAX_PROJECTED_PERIODS
        ):
            raise ValueError(f"remaining_periods must be in [1, {MAX_PROJECTED_PERIODS}]")
        if self.period_months not in (1, 3, 6, 12):
            raise ValueError("period_months is 1, 3, 6 or 12")

    @classmethod
    def from_history(
        cls,
        reports: Sequence[PoolReport],
        *,
        cpr_ppm: int,
        remaining_periods: int,
        cdr_ppm: int | None = None,
        pool_rate_ppm: int | None = None,
        period_months: int = 3,
    ) -> PoolModel:
        """A stated prepayment rate, with the default and income rates the disclosed history
        shows unless stated too -- so the servicer's disclosures serve pricing."""
        return cls(
            cpr_ppm,
            annualised_default_rate_ppm(reports) if cdr_ppm is None else cdr_ppm,
            pool_income_rate_ppm(reports) if pool_rate_ppm is None else pool_rate_ppm,
            remaining_periods,
            period_months,
        )


def _portion(balance: int, rate_ppm: int, dt: Fraction) -> int:
    """``balance x (1 - (1 - rate)^dt)``, half up to the fen (Decimal power, module docstring)."""
    if not balance or not rate_ppm:
        return 0
    base = _DECIMAL.divide(Decimal(PPM - rate_ppm), Decimal(PPM))
    exponent = _DECIMAL.divide(Decimal(dt.numerator), Decimal(dt.denominator))
    survival = _DECIMAL.power(base, exponent)
    amount = _DECIMAL.multiply(Decimal(balance), 1 - survival)
    return min(balance, int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP, context=_DECIMAL)))


@dataclass(frozen=True, slots=True)
class ProjectedPeriod:
    """One projected collection period and its payment date's waterfall, all fen."""

    period_start: date
    payment_date: date  # the period's end
    pool_balance_start: int
    defaults: int
    scheduled: int
    prepaid: int
    income: int
    pool_balance_end: int
    waterfall: Waterfall

    @property
    def collections(self) -> int:
        return self.scheduled + self.prepaid + self.income


def project(
    terms: DealTerms,
    state: DealState,
    instruments: Mapping[str, Instrument],
    model: PoolModel,
    *,
    first_period_start: date,
) -> tuple[ProjectedPeriod, ...]:
    """The deal's future payment dates under ``model``, from ``state`` (the deal as it stands
    after its last distribution) and ``instruments`` (each tranche's current coupon period).

    ``first_period_start`` is where the next collection period starts (the last report's
    ``period_end``). Every payment date goes through ``run_waterfall``; the result has
    ``model.remaining_periods`` periods.
    """
    current = {}
    for tranche in terms.tranches:
        instrument = instruments[tranche.symbol]
        if instrument.coupon_rate != tranche.coupon_rate:
            raise ValueError(f"{tranche.symbol}: the instrument is not the deal's tranche")
        current[tranche.symbol] = instrument
    finished: set[str] = set()  # tranches past their final coupon
    pool = state.pool_balance
    periods = []
    start = first_period_start
    for index in range(model.remaining_periods):
        end = add_months(first_period_start, model.period_months * (index + 1))
        dt = _year_fraction(start, end)
        defaults = _portion(pool, model.cdr_ppm, dt)
        performing = pool - defaults
        left = model.remaining_periods - index
        scheduled = round_half_away_from_zero(Fraction(performing, left))
        prepaid = _portion(performing - scheduled, model.cpr_ppm, dt)
        income = round_half_away_from_zero(
            Fraction(performing * model.pool_rate_ppm, PPM) * dt
        )  # fmt: skip
        pool_end = performing - scheduled - prepaid
        due = {
            symbol: (instrument.accrual_start, instrument.next_coupon_date)
            for symbol, instrument in current.items()
            if symbol not in finished and instrument.next_coupon_date <= end
        }
        waterfall = run_waterfall(
            terms, state, period=state.period + 1, collections=scheduled + prepaid + income,
            pool_balance_start=pool, pool_balance_end=pool_end, fee_period=(start, end),
            interest_periods=due,
        )  # fmt: skip
        for symbol in due:
            instrument = current[symbol]
            if instrument.next_coupon_date < instrument.maturity_date:
                current[symbol] = instrument.with_next_coupon_period()
            else:
                finished.add(symbol)
        periods.append(
            ProjectedPeriod(
                start, end, pool, defaults, scheduled, prepaid, income, pool_end, waterfall
            )
        )
        state = waterfall.state_after
        pool = pool_end
        start = end
    return tuple(periods)


@dataclass(frozen=True, slots=True)
class CashFlow:
    """What the whole tranche receives on one projected payment date, in fen."""

    payment_date: date
    interest: int
    principal: int
    residual: int

    @property
    def total(self) -> int:
        return self.interest + self.principal + self.residual


@dataclass(frozen=True, slots=True)
class Valuation:
    """A tranche at a clean price under a ``PoolModel`` (module docstring for each measure)."""

    symbol: str
    settlement: date
    clean_price: Decimal  # per 100 of current face
    amount: int  # fen paid for the whole tranche's current face, accrued included
    yield_rate: int  # 1e-4 percent a year, compounded at the coupon frequency
    wal_years: Fraction | None  # None when no principal is projected to be paid
    cash_flows: tuple[CashFlow, ...]
    principal_lost: int  # fen the tranche still owes when the pool is done

    @property
    def yield_percent(self) -> Decimal:
        return Decimal(self.yield_rate).scaleb(-COUPON_RATE_PLACES)


def _solve_yield(flows: Sequence[tuple[float, int]], amount: int, frequency: int) -> float:
    """The ``y`` at which ``sum(cash x (1 + y/f)^(-f t)) == amount``, by bisection.

    The value falls as ``y`` rises (every cash flow is >= 0 and some > 0), so the root is
    unique; it is bracketed in ``(-f, 10]`` (a yield above 1000 % is refused).
    """

    def excess(rate: float) -> float:
        log_base = math.log1p(rate / frequency) * frequency
        return sum(cash * math.exp(-log_base * years) for years, cash in flows) - amount

    low, high = -frequency * (1 - 1e-9), 10.0
    if excess(high) > 0:
        raise ValueError("the price is too low: the yield would exceed 1000 %")
    if excess(low) < 0:
        raise ValueError("the price is above every cash flow the tranche is projected to pay")
    for _ in range(200):
        middle = (low + high) / 2
        if excess(middle) > 0:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def value_tranche(
    terms: DealTerms,
    state: DealState,
    instruments: Mapping[str, Instrument],
    symbol: str,
    *,
    clean_price: Decimal,
    settlement: date,
    model: PoolModel,
    first_period_start: date,
) -> Valuation:
    """Yield and weighted average life of ``symbol`` bought at ``clean_price`` (per 100 of
    current face) on ``settlement``, projecting the deal with ``project`` (module docstring).

    ``settlement`` must lie in the tranche's current coupon period (the venue's accrued) and
    before the first projected payment date.
    """
    if not isinstance(clean_price, Decimal) or not clean_price.is_finite() or clean_price <= 0:
        raise ValueError("clean_price is a positive Decimal (per 100 of current face)")
    tranche = terms.tranche(symbol)
    instrument = instruments[symbol]
    balance = state.tranche(symbol).balance
    if balance <= 0:
        raise ValueError(f"{symbol} has no principal outstanding")
    accrued = Fraction(accrued_interest(instrument, settlement), ACCRUED_SCALE)
    amount = round_half_away_from_zero(balance * (Fraction(clean_price) + accrued) / 100)
    periods = project(terms, state, instruments, model, first_period_start=first_period_start)
    if periods[0].payment_date <= settlement:
        raise ValueError("settlement must come before the first projected payment date")
    index = [t.symbol for t in terms.tranches].index(tranche.symbol)
    cash_flows = []
    for period in periods:
        paid = period.waterfall.tranches[index]
        flow = CashFlow(period.payment_date, paid.interest_paid, paid.principal_paid,
                        paid.residual)  # fmt: skip
        if flow.total:
            cash_flows.append(flow)
    if not cash_flows:
        raise ValueError(f"{symbol} is projected to receive nothing: it has no yield")
    principal = sum(flow.principal for flow in cash_flows)
    wal = (
        sum(flow.principal * _year_fraction(settlement, flow.payment_date) for flow in cash_flows)
        / principal
        if principal
        else None
    )
    rate = _solve_yield(
        [(float(_year_fraction(settlement, f.payment_date)), f.total) for f in cash_flows],
        amount,
        tranche.coupon_frequency,
    )
    return Valuation(
        symbol=symbol,
        settlement=settlement,
        clean_price=clean_price,
        amount=amount,
        yield_rate=int(
            (Decimal(rate) * _RATE_SCALE).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        ),  # the float solver's result, rounded once at the edge
        wal_years=wal,
        cash_flows=tuple(cash_flows),
        principal_lost=periods[-1].waterfall.state_after.tranche(symbol).balance,
    )
