"""The deal's priority of payments: from a period's disclosed collections to tranches and holders.

Pure and integer-only (fen, units, micro-unit factors, 1e-4 % coupons, ppm fee rates); the
year fractions are ``venue.domain.pricing.year_fraction``'s, exact ``Fraction``s, and every
rounding is named below. Nothing here reads a clock or does I/O.

Deal terms (stated at listing, ``DealTerms``)
---------------------------------------------
The tranches in seniority order (rank 1 first; each with its units on issue, face per unit,
coupon rate, day count and coupon frequency, as its ``Instrument`` has them); the servicer
(participant id and its Ed25519 report key); the servicer's and the trustee's fees, each a rate
per annum in ppm of the pool balance (1 bp = 100 ppm, as fee rates are everywhere in the venue),
accrued over the collection period under ``fee_day_count``; and how principal is paid:
``sequential`` (default: all to the most senior tranche still outstanding, then the next) or
``pro_rata`` (in proportion to the tranches' balances). The most junior tranche is the
*residual* tranche: whatever is left at the end of the waterfall is paid to its holders.

The state a deal carries from one payment date to the next (``DealState``)
--------------------------------------------------------------------------
Each tranche's principal balance in fen (the authoritative figure; at listing
``floor(units x face x factor / 1e6)``) and its unpaid interest; the unpaid servicer and trustee
fees; the last reported pool balance; the last distributed period.

One payment date (``run_waterfall``)
------------------------------------
Available funds ``F`` = the period's disclosed collections. In order, each step paying
``min(what is left, what is due)`` and carrying what it cannot pay to the next payment date:

1. servicer fee: ``pool_balance_start x rate x year_fraction(period)``, plus any unpaid before;
2. trustee fee: likewise;
3. interest, tranche by tranche in seniority order: for a tranche whose coupon falls on this
   payment date, ``balance x coupon_rate x year_fraction(its coupon period)`` -- interest on its
   current face, exactly as the venue's accrued interest is priced -- plus its unpaid interest
   carried from before (no interest on interest); a tranche whose coupon is not due gets none
   and is not short;
4. principal: the principal due is ``max(0, sum of tranche balances - pool balance at the
   period's end)``, what keeps the notes covered by the pool: scheduled amortisation,
   prepayments and written-off defaults all lower the pool balance and so raise it. What is
   paid, ``min(what is left, principal due)``, goes sequentially or pro rata; the unpaid rest is
   the principal shortfall (reported per tranche; it is carried by the balances themselves,
   which stay above the pool, so it is due again next time);
5. residual: everything left goes to the residual tranche.

So the whole of ``F`` is paid out, every time: fees + interest + principal + residual = ``F``.

Roundings (each happens once, at one place)
-------------------------------------------
* each fee and each tranche's period interest is rounded half up to the fen (the venue's rule);
* a pro rata split of principal (and of its shortfall) over tranches, and every split of a
  tranche's interest, principal or residual over its holders, uses ``allocate``: the *largest
  remainder* method. Each share is first ``floor(total x weight / sum of weights)``; the fen
  left over (fewer than the number of shares) go one each to the largest remainders, ties to the
  smaller key (tranche rank, holder id in byte order). The shares add up exactly to the total;
  each is within one fen of its exact pro rata value.
* the new pool factor is derived from the balance, never typed in:
  ``ceil(balance x 1e6 / (units x face))`` micro-units -- rounded *up* so a tranche with any
  principal outstanding keeps a factor above zero, and 0 exactly when it is repaid in full. At
  listing this gives back the listed factor (terms require ``units x face >= 1e6`` fen, so the
  floor and the ceiling cannot drift apart by a micro-unit). Balances never rise, so factors
  never rise.

Holders of record (``allocate_to_holders``)
-------------------------------------------
A tranche's interest, principal and residual are each split over the holders of record by
units (``allocate``); the units given must be every unit on issue, so the holders' payments add
up exactly to the tranche's. (Which units count and when: the venue's ex-date rule, docs in
``venue/core/operations.py``.)

Public API::

    class PrincipalPayment(StrEnum): SEQUENTIAL, PRO_RATA
    @dataclass(frozen=True) TrancheTerms(symbol, seniority_rank, units, face_per_unit,
                                         coupon_rate, day_count, coupon_frequency)
        TrancheTerms.from_instrument(instrument, units)   .original_face   .factor_of(balance)
    @dataclass(frozen=True) DealTerms(deal_id, servicer, servicer_public_key, servicer_fee_ppm,
                                      trustee_fee_ppm, tranches, principal=SEQUENTIAL,
                                      fee_day_count=ACT_365F)
        .to_record() / DealTerms.from_record(dict)    .residual_symbol    .tranche(symbol)
    @dataclass(frozen=True) TrancheState(symbol, balance, interest_shortfall)
    @dataclass(frozen=True) DealState(period, pool_balance, tranches, servicer_fee_shortfall,
                                      trustee_fee_shortfall)
        DealState.at_listing(terms, factors, pool_balance)   .to_record() / from_record
    @dataclass(frozen=True) FeePayment(due, paid, shortfall)
    @dataclass(frozen=True) TrancheDistribution(symbol, balance_before, interest_due,
        interest_paid, interest_shortfall, principal_paid, principal_shortfall, residual,
        balance_after, factor_before, factor_after)          .cash
    @dataclass(frozen=True) Waterfall(period, available, servicer_fee, trustee_fee,
        principal_due, tranches, state_after)   .principal_paid .residual .paid .to_record()
    run_waterfall(terms, state, *, period, collections, pool_balance_start, pool_balance_end,
                  fee_period, interest_periods) -> Waterfall
    allocate(total, weights) -> dict[key, int]                  # largest remainder
    @dataclass(frozen=True) HolderPayment(holder, interest, principal, residual)  .total
    allocate_to_holders(distribution, holdings, units_on_issue) -> tuple[HolderPayment, ...]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from fractions import Fraction
from typing import Any, TypeVar

from venue.domain.instruments import (
    COUPON_FREQUENCIES,
    COUPON_RATE_PLACES,
    FACTOR_SCALE,
    MAX_COUPON_RATE,
    MAX_FACE_PER_UNIT,
    DayCount,
    Instrument,
)
from venue.domain.money import MAX_CASH_FEN, MAX_QTY, parse_enum
from venue.domain.pricing import PPM, round_half_away_from_zero, year_fraction
from venue.errors import ErrorCode, VenueError

MAX_FEE_RATE_PPM = 100_000  # 10 % of the pool a year: any larger fee is a data error
MAX_TRANCHES = 20
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/\-]{0,63}")
_HEX_KEY = re.compile(r"[0-9a-f]{64}")
_PARTICIPANT = re.compile(r"P-[A-Z0-9]{1,16}")
_RATE_DENOMINATOR = 100 * 10**COUPON_RATE_PLACES  # coupon_rate (1e-4 %) -> a fraction of 1

K = TypeVar("K")


def _terms_error(message: str, **details: Any) -> VenueError:
    return VenueError(ErrorCode.BAD_DEAL_TERMS, message, **details)


def _whole(value: object, field: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _terms_error(f"{field} must be a whole number in [{low}, {high}]", field=field)
    return value


class PrincipalPayment(StrEnum):
    """How the principal paid on a payment date is shared among the tranches."""

    SEQUENTIAL = "sequential"
    PRO_RATA = "pro_rata"


@dataclass(frozen=True, slots=True)
class TrancheTerms:
    """One tranche as the waterfall sees it; units as in ``Instrument`` (module docstring)."""

    symbol: str
    seniority_rank: int
    units: int  # units on issue
    face_per_unit: int  # fen
    coupon_rate: int  # 1e-4 percent a year
    day_count: DayCount
    coupon_frequency: int

    def __post_init__(self) -> None:
        if not isinstance(self.day_count, DayCount):
            day_count = parse_enum(DayCount, self.day_count, "day_count", ErrorCode.BAD_DEAL_TERMS)
            object.__setattr__(self, "day_count", day_count)
        if not isinstance(self.symbol, str) or _ID.fullmatch(self.symbol) is None:
            raise _terms_error("a tranche symbol is a name", field="symbol")
        _whole(self.seniority_rank, "seniority_rank", 1, 99)
        _whole(self.units, "units", 1, MAX_QTY)
        _whole(self.face_per_unit, "face_per_unit", 1, MAX_FACE_PER_UNIT)
        _whole(self.coupon_rate, "coupon_rate", 0, MAX_COUPON_RATE)
        if self.coupon_frequency not in COUPON_FREQUENCIES:
            raise _terms_error(f"coupon_frequency is one of {COUPON_FREQUENCIES}",
                               field="coupon_frequency")  # fmt: skip
        if self.original_face < FACTOR_SCALE:
            # below 1e6 fen a micro-unit of factor is more than a fen: factor and balance drift
            raise _terms_error(
                f"{self.symbol}: units x face_per_unit must be at least {FACTOR_SCALE} fen",
                field="units",
            )

    @classmethod
    def from_instrument(cls, instrument: Instrument, units: int) -> TrancheTerms:
        """The listed instrument's rank, face, coupon and day count, with its units on issue."""
        return cls(
            instrument.symbol,
            instrument.seniority_rank,
            units,
            instrument.face_per_unit,
            instrument.coupon_rate,
            instrument.day_count,
            instrument.coupon_frequency,
        )

    @property
    def original_face(self) -> int:
        """Fen of original face: units on issue x face per unit."""
        return self.units * self.face_per_unit

    def balance_at(self, factor: int) -> int:
        """The principal balance in fen at a listed factor: ``floor(face x factor / 1e6)``."""
        return self.original_face * factor // FACTOR_SCALE

    def factor_of(self, balance: int) -> int:
        """The pool factor of a balance: ``ceil(balance x 1e6 / original face)`` (docstring)."""
        return -(-balance * FACTOR_SCALE // self.original_face)

    def to_record(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "seniority_rank": self.seniority_rank,
            "units": self.units,
            "face_per_unit": self.face_per_unit,
            "coupon_rate": self.coupon_rate,
            "day_count": self.day_count.value,
            "coupon_frequency": self.coupon_frequency,
        }


@dataclass(frozen=True, slots=True)
class DealTerms:
    """A deal's priority of payments, as stated at listing (module docstring)."""

    deal_id: str
    servicer: str  # participant id of the servicer (receives the servicer fee)
    servicer_public_key: str  # 64 hex: the Ed25519 key its pool reports must be signed with
    servicer_fee_ppm: int  # per annum, of the pool balance
    trustee_fee_ppm: int
    tranches: tuple[TrancheTerms, ...]  # most senior first
    principal: PrincipalPayment = PrincipalPayment.SEQUENTIAL
    fee_day_count: DayCount = DayCount.ACT_365F

    def __post_init__(self) -> None:
        for field, enum_type in (("principal", PrincipalPayment), ("fee_day_count", DayCount)):
            value = getattr(self, field)
            if not isinstance(value, enum_type):
                parsed = parse_enum(enum_type, value, field, ErrorCode.BAD_DEAL_TERMS)
                object.__setattr__(self, field, parsed)
        if not isinstance(self.deal_id, str) or _ID.fullmatch(self.deal_id) is None:
            raise _terms_error("deal_id is a name (1-64 of A-Z a-z 0-9 . _ : / -)", field="deal_id")
        if not isinstance(self.servicer, str) or _PARTICIPANT.fullmatch(self.servicer) is None:
            raise _terms_error("servicer is a participant id", field="servicer")
        if not isinstance(self.servicer_public_key, str) or not _HEX_KEY.fullmatch(
            self.servicer_public_key
        ):
            raise _terms_error("servicer_public_key is 64 lowercase hex characters",
                               field="servicer_public_key")  # fmt: skip
        _whole(self.servicer_fee_ppm, "servicer_fee_ppm", 0, MAX_FEE_RATE_PPM)
        _whole(self.trustee_fee_ppm, "trustee_fee_ppm", 0, MAX_FEE_RATE_PPM)
        if self.fee_day_count is DayCount.ACT_ACT:
            # ICMA needs a coupon schedule; a pool fee has none
            raise _terms_error("fee_day_count is ACT/365F, ACT/360 or 30/360",
                               field="fee_day_count")  # fmt: skip
        if not isinstance(self.tranches, tuple) or not 1 <= len(self.tranches) <= MAX_TRANCHES:
            raise _terms_error(f"a deal has 1-{MAX_TRANCHES} tranches", field="tranches")
        for tranche in self.tranches:
            if type(tranche) is not TrancheTerms:
                raise TypeError("DealTerms.tranches holds TrancheTerms")
        ranks = [tranche.seniority_rank for tranche in self.tranches]
        if ranks != sorted(set(ranks)):
            raise _terms_error("tranches are listed most senior first, one per rank",
                               field="tranches")  # fmt: skip
        if len({tranche.symbol for tranche in self.tranches}) != len(self.tranches):
            raise _terms_error("each tranche is listed once", field="tranches")

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
            "principal": self.principal.value,
            "fee_day_count": self.fee_day_count.value,
            "tranches": [tranche.to_record() for tranche in self.tranches],
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DealTerms:
        """Inverse of ``to_record``; ``validation.bad_deal_terms`` for anything malformed."""
        if not isinstance(record, Mapping) or set(record) != _TERMS_FIELDS:
            raise _terms_error(f"deal terms have exactly the fields {sorted(_TERMS_FIELDS)}")
        tranches = record["tranches"]
        if not isinstance(tranches, list | tuple):
            raise _terms_error("tranches is a list", field="tranches")
        parsed = []
        for tranche in tranches:
            if not isinstance(tranche, Mapping) or set(tranche) != _TRANCHE_FIELDS:
                raise _terms_error(f"a tranche has exactly the fields {sorted(_TRANCHE_FIELDS)}")
            parsed.append(TrancheTerms(**tranche))
        return cls(**{**record, "tranches": tuple(parsed)})


_TERMS_FIELDS = frozenset(DealTerms.__dataclass_fields__)
_TRANCHE_FIELDS = frozenset(TrancheTerms.__dataclass_fields__)


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
        _whole(pool_balance, "pool_balance", 0, MAX_CASH_FEN)
        tranches = []
        for tranche in terms.tranches:
            factor = _whole(factors.get(tranche.symbol), f"{tranche.symbol} factor", 1,
                            FACTOR_SCALE)  # fmt: skip
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


def _fee(pool_balance: int, rate_ppm: int, day_count: DayCount, period: tuple[date, date]) -> int:
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
