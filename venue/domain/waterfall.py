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
from typing import Any

from ledger import waterfall as _arithmetic
from ledger.waterfall import (
    DealState,
    FeePayment,
    HolderPayment,
    PrincipalPayment,
    TrancheDistribution,
    TrancheState,
    Waterfall,
    allocate,
    allocate_to_holders,
    run_waterfall,
)
from venue.domain.instruments import (
    COUPON_FREQUENCIES,
    FACTOR_SCALE,
    MAX_COUPON_RATE,
    MAX_FACE_PER_UNIT,
    DayCount,
    Instrument,
)
from venue.domain.money import MAX_QTY, parse_enum
from venue.errors import ErrorCode, VenueError

__all__ = [
    "DealState",
    "DealTerms",
    "FeePayment",
    "HolderPayment",
    "PrincipalPayment",
    "TrancheDistribution",
    "TrancheState",
    "TrancheTerms",
    "Waterfall",
    "allocate",
    "allocate_to_holders",
    "run_waterfall",
]

MAX_FEE_RATE_PPM = 100_000  # 10 % of the pool a year: any larger fee is a data error
MAX_TRANCHES = 20
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/\-]{0,63}")
_HEX_KEY = re.compile(r"[0-9a-f]{64}")
_PARTICIPANT = re.compile(r"P-[A-Z0-9]{1,16}")


def _terms_error(message: str, **details: Any) -> VenueError:
    return VenueError(ErrorCode.BAD_DEAL_TERMS, message, **details)


def _whole(value: object, field: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _terms_error(f"{field} must be a whole number in [{low}, {high}]", field=field)
    return value


@dataclass(frozen=True, slots=True)
class TrancheTerms(_arithmetic.TrancheTerms):
    """One tranche as the waterfall sees it, validated; units as in ``Instrument`` (module
    docstring). The fields and arithmetic are ``ledger.waterfall.TrancheTerms``'."""

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


@dataclass(frozen=True, slots=True)
class DealTerms(_arithmetic.DealTerms):
    """A deal's priority of payments, as stated at listing, validated (module docstring)."""

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
