"""A deal's arithmetic: the priority of payments, the holders' shares, day counts and the coupon
calendar -- the one implementation the venue runs on each payment date and ``venue-audit
waterfall`` runs again from the ledger's blocks.

It lives in ``ledger/`` because the audit tool must not import ``venue/`` (the dependency goes
venue -> ledger only), and a rule the venue and the audit both need has one place (STYLE.md).
Pure and integer-only (fen, units, micro-unit factors, 1e-4 % coupons, ppm fee rates), exact
``Fraction`` year fractions; no clock, no I/O, nothing of HTTP, order books or instruments.
Arguments of the wrong type or out of range are programmer errors (``ValueError``): the venue
validates its input first (``venue.domain.waterfall``: the validated ``DealTerms`` and
``TrancheTerms`` are subclasses of the plain ones here, refusing bad terms with
``validation.bad_deal_terms``), and the audit reports a ``ValueError`` as the block's problem.

The rules, roundings and the holders-of-record split are documented in
``venue/domain/waterfall.py``'s module docstring (the reader's entry point); in short:

* fees, then interest by seniority, then principal (sequential or pro rata) up to what keeps the
  notes covered by the pool, then the residual to the most junior tranche; shortfalls carried;
* each fee and period interest half up to the fen; every split by ``allocate`` (largest
  remainder, ties to the smaller key), so shares add up exactly;
* a factor is ``ceil(balance x 1e6 / original face)``: 0 exactly when the tranche is repaid.

Day counts (``year_fraction``): ACT/365F, ACT/360, ISDA 30/360 Bond Basis, ACT/ACT ICMA over the
coupon period; day counts are their wire strings (``venue.domain.instruments.DayCount`` is a
``StrEnum`` of them). Coupon calendar (``following_coupon_date``): anchored on the maturity date.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from fractions import Fraction
from typing import Any, TypeVar

FACTOR_SCALE = 1_000_000  # pool factors in micro-units
PPM = 1_000_000  # fee rates in parts per million
COUPON_RATE_PLACES = 4  # coupon rates in 1e-4 percent
MAX_CASH_FEN = 10**16
ISSUER_ACCOUNT = "external:issuer"  # units on issue that are not on the venue
_RATE_DENOMINATOR = 100 * 10**COUPON_RATE_PLACES  # coupon_rate (1e-4 %) -> a fraction of 1
ACT_365F, ACT_360, THIRTY_360, ACT_ACT = "ACT/365F", "ACT/360", "30/360", "ACT/ACT"

K = TypeVar("K")


# ====================================================================== rounding, day counts
def round_half_away_from_zero(value: Fraction) -> int:
    """Nearest integer; an exact half goes away from zero (half up for non-negative values)."""
    return divide_rounding_half_away(value.numerator, value.denominator)


def divide_rounding_half_away(numerator: int, denominator: int) -> int:
    """``round_half_away_from_zero(numerator / denominator)`` for ``denominator > 0``, in ints
    (the hot path: it avoids building a ``Fraction`` per fill)."""
    magnitude = (2 * abs(numerator) + denominator) // (2 * denominator)
    return magnitude if numerator >= 0 else -magnitude


def days_30_360(start: date, end: date) -> int:
    """Day count under ISDA 30/360 Bond Basis."""
    d1 = 30 if start.day == 31 else start.day
    d2 = 30 if end.day == 31 and d1 == 30 else end.day
    return 360 * (end.year - start.year) + 30 * (end.month - start.month) + (d2 - d1)


def year_fraction(
    day_count: str,
    start: date,
    end: date,
    *,
    period_start: date,
    period_end: date,
    frequency: int,
) -> Fraction:
    """Exact year fraction from ``start`` to ``end`` (``start <= end``).

    ``period_start``/``period_end``/``frequency`` describe the coupon period and are used by
    ACT/ACT (ICMA) only.
    """
    if end < start:
        raise ValueError(f"year_fraction needs start <= end, got {start} > {end}")
    if day_count == ACT_365F:
        return Fraction((end - start).days, 365)
    if day_count == ACT_360:
        return Fraction((end - start).days, 360)
    if day_count == THIRTY_360:
        return Fraction(days_30_360(start, end), 360)
    if day_count == ACT_ACT:
        return Fraction((end - start).days, frequency * (period_end - period_start).days)
    raise TypeError(f"unknown day count {day_count!r}")


# ====================================================================== the coupon calendar
def _is_month_end(day: date) -> bool:
    return day.day == calendar.monthrange(day.year, day.month)[1]


def add_months(day: date, months: int, end_of_month: bool = False) -> date:
    """``day`` moved by whole months; a missing day (31 Apr) clamps to the month's last day.

    With ``end_of_month`` the result is always the last day of the target month.
    """
    month_index = day.year * 12 + day.month - 1 + months
    year, month = divmod(month_index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, last_day if end_of_month else min(day.day, last_day))


def following_coupon_date(next_coupon_date: date, maturity_date: date, frequency: int) -> date:
    """The scheduled coupon date after ``next_coupon_date`` (which must be before maturity).

    The schedule is anchored on ``maturity_date``: coupon dates are maturity minus whole
    multiples of ``12 / frequency`` months; if maturity is a month end, every coupon date is a
    month end; a day that does not exist in a month becomes that month's last day. So it never
    drifts.
    """
    if next_coupon_date >= maturity_date:
        raise ValueError(f"no coupon after {next_coupon_date} (maturity {maturity_date})")
    step = 12 // frequency
    end_of_month = _is_month_end(maturity_date)
    candidate, steps_back = maturity_date, 1
    while True:
        earlier = add_months(maturity_date, -steps_back * step, end_of_month)
        if earlier <= next_coupon_date:
            return candidate
        candidate, steps_back = earlier, steps_back + 1


@dataclass(frozen=True, slots=True)
class CouponPeriod:
    """A tranche's current coupon period ``[accrual_start, next_coupon_date)`` and maturity."""

    accrual_start: date
    next_coupon_date: date
    maturity_date: date
    frequency: int

    def rolled(self) -> CouponPeriod:
        """The next period (``following_coupon_date``); at maturity the period stays."""
        if self.next_coupon_date >= self.maturity_date:
            return self
        following = following_coupon_date(self.next_coupon_date, self.maturity_date,
                                           self.frequency)  # fmt: skip
        return CouponPeriod(self.next_coupon_date, following, self.maturity_date, self.frequency)


def interest_periods_due(
    periods: Mapping[str, CouponPeriod], payment_date: date
) -> dict[str, tuple[date, date]]:
    """The coupon periods whose coupon falls on or before ``payment_date``: the tranches the
    waterfall pays interest to on that date (``run_waterfall``'s ``interest_periods``); each is
    then rolled once (``CouponPeriod.rolled``)."""
    return {
        symbol: (period.accrual_start, period.next_coupon_date)
        for symbol, period in periods.items()
        if period.next_coupon_date <= payment_date
    }


# ====================================================================== deal terms
class PrincipalPayment(StrEnum):
    """How the principal paid on a payment date is shared among the tranches."""

    SEQUENTIAL = "sequential"
    PRO_RATA = "pro_rata"


@dataclass(frozen=True, slots=True)
class TrancheTerms:
    """One tranche as the waterfall sees it (units on issue, face per unit in fen, coupon rate
    in 1e-4 % a year, day count as its wire string, coupons a year). Not validated here: the
    venue's subclass (``venue.domain.waterfall.TrancheTerms``) is."""

    symbol: str
    seniority_rank: int
    units: int  # units on issue
    face_per_unit: int  # fen
    coupon_rate: int  # 1e-4 percent a year
    day_count: str
    coupon_frequency: int

    @property
    def original_face(self) -> int:
        """Fen of original face: units on issue x face per unit."""
        return self.units * self.face_per_unit

    def balance_at(self, factor: int) -> int:
        """The principal balance in fen at a listed factor: ``floor(face x factor / 1e6)``."""
        return self.original_face * factor // FACTOR_SCALE

    def factor_of(self, balance: int) -> int:
        """The pool factor of a balance: ``ceil(balance x 1e6 / original face)``."""
        return -(-balance * FACTOR_SCALE // self.original_face)

    def to_record(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "seniority_rank": self.seniority_rank,
            "units": self.units,
            "face_per_unit": self.face_per_unit,
            "coupon_rate": self.coupon_rate,
            "day_count": str(self.day_count),
            "coupon_frequency": self.coupon_frequency,
        }


@dataclass(frozen=True, slots=True)
class DealTerms:
    """A deal's priority of payments as stated at listing; tranches most senior first. Not
    validated here (``venue.domain.waterfall.DealTerms`` is)."""

    deal_id: str
    servicer: str  # participant id of the servicer (receives the servicer fee)
    servicer_public_key: str  # 64 hex: the Ed25519 key its pool reports must be signed with
    servicer_fee_ppm: int  # per annum, of the pool balance
    trustee_fee_ppm: int
    tranches: tuple[TrancheTerms, ...]  # most senior first
    principal: PrincipalPayment = PrincipalPayment.SEQUENTIAL
    fee_day_count: str = ACT_365F

    @property
    def residual_symbol(self) -> str:
        """The most junior tranche: it receives what is left at the end of the waterfall."""
        return self.tranches[-1].symbol

    def tranche(self, symbol: str) -> TrancheTerms:
        for tranche in self.tranches:
            if tranche.symbol == symbol:
                return tranche
        raise KeyError(symbol)

    def to_record(self) -> dict[str, Any]:
        """JSON-safe form (journal, snapshot, the deal's ledger block)."""
        return {
            "deal_id": self.deal_id,
            "servicer": self.servicer,
            "servicer_public_key": self.servicer_public_key,
            "servicer_fee_ppm": self.servicer_fee_ppm,
            "trustee_fee_ppm": self.trustee_fee_ppm,
            "principal": str(self.principal),
            "fee_day_count": str(self.fee_day_count),
            "tranches": [tranche.to_record() for tranche in self.tranches],
        }

    @classmethod
    def plain_from_record(cls, record: Mapping[str, Any]) -> DealTerms:
        """The terms of a ``deal_listed`` block as the audit reads them: the record's fields,
        unchecked beyond their shape (``KeyError``/``TypeError``/``ValueError`` otherwise)."""
        tranches = tuple(TrancheTerms(**tranche) for tranche in record["tranches"])
        fields = {**record, "tranches": tranches}
        fields["principal"] = PrincipalPayment(record["principal"])
        return DealTerms(**fields)


# ====================================================================== state and results
@dataclass(frozen=True, slots=True)
class TrancheState:
    """A tranche between payment dates: principal balance and unpaid interest, in fen."""

    symbol: str
    balance: int
    interest_shortfall: int = 0


@dataclass(frozen=True, slots=True)
class DealState:
    """What a deal carries from one payment date to the next (module docstring)."""

    period: int  # the last distributed period, 0 before the first
    pool_balance: int  # the last reported pool balance
    tranches: tuple[TrancheState, ...]  # in the terms' order
    servicer_fee_shortfall: int = 0
    trustee_fee_shortfall: int = 0

    @classmethod
    def at_listing(
        cls, terms: DealTerms, factors: Mapping[str, int], pool_balance: int
    ) -> DealState:
        """The opening state: each tranche's balance at its listed factor (micro-units)."""
        if type(pool_balance) is not int or not 0 <= pool_balance <= MAX_CASH_FEN:
            raise ValueError(f"pool_balance must be a whole number of fen, got {pool_balance!r}")
        tranches = []
        for tranche in terms.tranches:
            factor = factors.get(tranche.symbol)
            if type(factor) is not int or not 1 <= factor <= FACTOR_SCALE:
                raise ValueError(
                    f"{tranche.symbol}: a listed factor is in [1, 1e6], not {factor!r}"
                )
            tranches.append(TrancheState(tranche.symbol, tranche.balance_at(factor)))
        return cls(0, pool_balance, tuple(tranches))

    def tranche(self, symbol: str) -> TrancheState:
        for tranche in self.tranches:
            if tranche.symbol == symbol:
                return tranche
        raise KeyError(symbol)

    def to_record(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "pool_balance": self.pool_balance,
            "tranches": [[t.symbol, t.balance, t.interest_shortfall] for t in self.tranches],
            "servicer_fee_shortfall": self.servicer_fee_shortfall,
            "trustee_fee_shortfall": self.trustee_fee_shortfall,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DealState:
        return cls(
            record["period"],
            record["pool_balance"],
            tuple(TrancheState(*entry) for entry in record["tranches"]),
            record["servicer_fee_shortfall"],
            record["trustee_fee_shortfall"],
        )


@dataclass(frozen=True, slots=True)
class FeePayment:
    """One fee on one payment date: due (this period's plus any unpaid), paid, left unpaid."""

    due: int
    paid: int
    shortfall: int

    def to_record(self) -> dict[str, int]:
        return {"due": self.due, "paid": self.paid, "shortfall": self.shortfall}


@dataclass(frozen=True, slots=True)
class TrancheDistribution:
    """What one tranche is due and paid on one payment date, all in fen (factors micro-units)."""

    symbol: str
    balance_before: int
    interest_due: int  # this period's interest plus unpaid interest carried forward
    interest_paid: int
    interest_shortfall: int  # carried to the next payment date
    principal_paid: int
    principal_shortfall: int  # its part of the principal due that could not be paid
    residual: int
    balance_after: int
    factor_before: int
    factor_after: int

    @property
    def cash(self) -> int:
        """Everything the tranche's holders receive on this date."""
        return self.interest_paid + self.principal_paid + self.residual

    def to_record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _DISTRIBUTION_FIELDS}


_DISTRIBUTION_FIELDS = tuple(TrancheDistribution.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Waterfall:
    """One payment date's whole computation; ``state_after`` is what the deal carries on."""

    period: int
    available: int
    servicer_fee: FeePayment
    trustee_fee: FeePayment
    principal_due: int
    tranches: tuple[TrancheDistribution, ...]
    state_after: DealState

    @property
    def principal_paid(self) -> int:
        return sum(tranche.principal_paid for tranche in self.tranches)

    @property
    def residual(self) -> int:
        return sum(tranche.residual for tranche in self.tranches)

    @property
    def paid(self) -> int:
        """Everything paid out: fees and every tranche's cash. Always ``available``."""
        return (
            self.servicer_fee.paid
            + self.trustee_fee.paid
            + sum(tranche.cash for tranche in self.tranches)
        )

    def to_record(self) -> dict[str, Any]:
        """JSON-safe form (the distribution block's payload carries it)."""
        return {
            "period": self.period,
            "available": self.available,
            "servicer_fee": self.servicer_fee.to_record(),
            "trustee_fee": self.trustee_fee.to_record(),
            "principal_due": self.principal_due,
            "principal_paid": self.principal_paid,
            "tranches": [tranche.to_record() for tranche in self.tranches],
        }


def allocate(total: int, weights: Mapping[K, int]) -> dict[K, int]:
    """Split ``total`` (>= 0) over ``weights`` (>= 0) by the largest remainder (docstring).

    Every key of ``weights`` gets a share (0 for weight 0); the shares sum to ``total``
    exactly. A positive ``total`` needs a positive sum of weights. Ties between equal
    remainders go to the smaller key, so keys must be mutually orderable (all str, or all int).
    """
    if type(total) is not int or total < 0:
        raise ValueError(f"allocate needs a whole total >= 0, got {total!r}")
    weight_sum = 0
    for key, weight in weights.items():
        if type(weight) is not int or weight < 0:
            raise ValueError(f"weight of {key!r} must be a whole number >= 0, got {weight!r}")
        weight_sum += weight
    if weight_sum == 0:
        if total:
            raise ValueError(f"cannot allocate {total} over weights that sum to zero")
        return dict.fromkeys(weights, 0)
    shares: dict[K, int] = {}
    remainders: list[tuple[int, K]] = []
    for key, weight in weights.items():
        share, remainder = divmod(total * weight, weight_sum)
        shares[key] = share
        remainders.append((remainder, key))
    left = total - sum(shares.values())  # < number of keys with a non-zero remainder
    if left:
        # the largest remainders first; among equal remainders the smaller key
        remainders.sort(key=lambda entry: (-entry[0], entry[1]))
        for _remainder, key in remainders[:left]:
            shares[key] += 1
    return shares


def _interest(balance: int, tranche: TrancheTerms, period: tuple[date, date]) -> int:
    """A tranche's interest for one coupon period on ``balance``, half up to the fen."""
    start, end = period
    fraction = year_fraction(
        tranche.day_count,
        start,
        end,
        period_start=start,
        period_end=end,
        frequency=tranche.coupon_frequency,
    )
    return round_half_away_from_zero(
        Fraction(balance * tranche.coupon_rate, _RATE_DENOMINATOR) * fraction
    )


def _fee(pool_balance: int, rate_ppm: int, day_count: str, period: tuple[date, date]) -> int:
    start, end = period
    fraction = year_fraction(day_count, start, end, period_start=start, period_end=end,
                             frequency=1)  # fmt: skip
    return round_half_away_from_zero(Fraction(pool_balance * rate_ppm, PPM) * fraction)


def _check_period(period: object, name: str) -> tuple[date, date]:
    if (
        not isinstance(period, tuple)
        or len(period) != 2
        or not all(type(day) is date for day in period)
        or not period[0] < period[1]
    ):
        raise ValueError(f"{name} must be a (start, end) pair of dates with start < end")
    return period


def run_waterfall(
    terms: DealTerms,
    state: DealState,
    *,
    period: int,
    collections: int,
    pool_balance_start: int,
    pool_balance_end: int,
    fee_period: tuple[date, date],
    interest_periods: Mapping[str, tuple[date, date]],
) -> Waterfall:
    """One payment date's priority of payments (module docstring), from disclosed figures.

    ``collections`` and the pool balances come from the period's signed report;
    ``fee_period`` is its collection period; ``interest_periods`` names the coupon period
    ``(start, end)`` of each tranche whose coupon falls on this payment date (the others get
    no interest now). ``period`` must follow ``state.period``. Arguments of the wrong type or
    out of range are programmer errors (``ValueError``): the venue checks its input first.
    """
    if [t.symbol for t in state.tranches] != [t.symbol for t in terms.tranches]:
        raise ValueError("the state's tranches are not the terms' tranches")
    if period != state.period + 1:
        raise ValueError(f"period {period} does not follow period {state.period}")
    for name, value in (("collections", collections), ("pool_balance_start", pool_balance_start),
                        ("pool_balance_end", pool_balance_end)):  # fmt: skip
        if type(value) is not int or not 0 <= value <= MAX_CASH_FEN:
            raise ValueError(f"{name} must be a whole number of fen in [0, {MAX_CASH_FEN}]")
    _check_period(fee_period, "fee_period")
    unknown = set(interest_periods) - {tranche.symbol for tranche in terms.tranches}
    if unknown:
        raise ValueError(f"interest periods for tranches not in the deal: {sorted(unknown)}")
    for symbol, coupon_period in interest_periods.items():
        _check_period(coupon_period, f"interest period of {symbol}")

    left = collections

    def pay(due: int) -> int:
        nonlocal left
        paid = min(left, due)
        left -= paid
        return paid

    fees = []
    for rate, carried in ((terms.servicer_fee_ppm, state.servicer_fee_shortfall),
                          (terms.trustee_fee_ppm, state.trustee_fee_shortfall)):  # fmt: skip
        due = _fee(pool_balance_start, rate, terms.fee_day_count, fee_period) + carried
        paid = pay(due)
        fees.append(FeePayment(due, paid, due - paid))
    servicer_fee, trustee_fee = fees

    interest_due, interest_paid = {}, {}
    for tranche, tranche_state in zip(terms.tranches, state.tranches, strict=True):
        coupon_period = interest_periods.get(tranche.symbol)
        current = 0 if coupon_period is None else _interest(
            tranche_state.balance, tranche, coupon_period
        )  # fmt: skip
        interest_due[tranche.symbol] = current + tranche_state.interest_shortfall
        interest_paid[tranche.symbol] = pay(interest_due[tranche.symbol])

    balances = {tranche.symbol: tranche.balance for tranche in state.tranches}
    principal_due = max(0, sum(balances.values()) - pool_balance_end)
    principal_paid_total = pay(principal_due)
    principal_paid = _share_principal(terms, balances, principal_paid_total)
    # the shortfall is shared like the principal would have been, out of what each still owes
    owed_after = {symbol: balances[symbol] - principal_paid[symbol] for symbol in balances}
    principal_shortfall = _share_principal(terms, owed_after, principal_due - principal_paid_total)

    residual = left
    distributions = []
    tranche_states = []
    for tranche, tranche_state in zip(terms.tranches, state.tranches, strict=True):
        symbol = tranche.symbol
        after = tranche_state.balance - principal_paid[symbol]
        shortfall = interest_due[symbol] - interest_paid[symbol]
        distributions.append(
            TrancheDistribution(
                symbol=symbol,
                balance_before=tranche_state.balance,
                interest_due=interest_due[symbol],
                interest_paid=interest_paid[symbol],
                interest_shortfall=shortfall,
                principal_paid=principal_paid[symbol],
                principal_shortfall=principal_shortfall[symbol],
                residual=residual if symbol == terms.residual_symbol else 0,
                balance_after=after,
                factor_before=tranche.factor_of(tranche_state.balance),
                factor_after=tranche.factor_of(after),
            )
        )
        tranche_states.append(TrancheState(symbol, after, shortfall))
    state_after = DealState(
        period,
        pool_balance_end,
        tuple(tranche_states),
        servicer_fee.shortfall,
        trustee_fee.shortfall,
    )
    return Waterfall(
        period,
        collections,
        servicer_fee,
        trustee_fee,
        principal_due,
        tuple(distributions),
        state_after,
    )


def _share_principal(terms: DealTerms, balances: Mapping[str, int], amount: int) -> dict[str, int]:
    """``amount`` (at most the balances' sum) over the tranches: sequential or pro rata."""
    if terms.principal is PrincipalPayment.PRO_RATA:
        by_rank = allocate(
            amount, {tranche.seniority_rank: balances[tranche.symbol] for tranche in terms.tranches}
        )
        return {tranche.symbol: by_rank[tranche.seniority_rank] for tranche in terms.tranches}
    shares = {}
    for tranche in terms.tranches:
        share = min(amount, balances[tranche.symbol])
        shares[tranche.symbol] = share
        amount -= share
    return shares


@dataclass(frozen=True, slots=True)
class HolderPayment:
    """One holder's cash from one tranche on one payment date, in fen."""

    holder: str
    interest: int
    principal: int
    residual: int

    @property
    def total(self) -> int:
        return self.interest + self.principal + self.residual


def allocate_to_holders(
    distribution: TrancheDistribution, holdings: Mapping[str, int], units_on_issue: int
) -> tuple[HolderPayment, ...]:
    """Split a tranche's interest, principal and residual over its holders of record by units.

    ``holdings`` maps each holder (account name) to its units; they must add up to
    ``units_on_issue`` (every unit has a holder of record, or the shares would not sum to the
    tranche's totals: ``ValueError``). Holders with no units are left out; the result is in
    holder order. Each of the three amounts is split on its own by ``allocate``.
    """
    holders = {holder: units for holder, units in sorted(holdings.items()) if units}
    if sum(holders.values()) != units_on_issue:
        raise ValueError(
            f"{distribution.symbol}: holders of record hold {sum(holders.values())} units, "
            f"{units_on_issue} are on issue"
        )
    interest = allocate(distribution.interest_paid, holders)
    principal = allocate(distribution.principal_paid, holders)
    residual = allocate(distribution.residual, holders)
    return tuple(
        HolderPayment(holder, interest[holder], principal[holder], residual[holder])
        for holder in holders
    )
