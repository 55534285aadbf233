"""Accrued interest, settlement amounts, fees and buy reservations -- exact, integers out.

Everything here is exact rational arithmetic (``fractions.Fraction`` / integers); no float is
ever involved. Results are integers: ``accrued`` in 1e-10 per 100 face, amounts and fees in fen.

Day counts (year fraction from ``accrual_start`` to the trade date)
-------------------------------------------------------------------
* ``ACT/365F``: actual days / 365, whatever the year (leap years included).
* ``ACT/360``: actual days / 360.
* ``30/360``: ISDA 2006 section 4.16(f) "30/360 / Bond Basis": with D1/M1/Y1 the start and
  D2/M2/Y2 the trade date, D1 = 30 if D1 is 31; D2 = 30 if D2 is 31 *and* D1 (after that
  adjustment) is 30; days = 360 (Y2 - Y1) + 30 (M2 - M1) + (D2 - D1); fraction = days / 360.
  February's end is *not* adjusted (that is the "30/360 US" variant, not used here), so 28 or 29
  February counts as that day.
* ``ACT/ACT``: ICMA (ICMA Rule 251), with the instrument's current coupon period
  ``[accrual_start, next_coupon_date)`` as the reference period: fraction = actual days accrued /
  (coupon_frequency x actual days in the period). For a regular period this is exact ICMA, and
  every period after a roll is regular (the schedule is anchored on maturity). The known
  simplification: an irregular *listed* first period (a short or long first coupon) is used as its
  own reference period, where ICMA would split it into notional regular periods; list tranches
  with ``accrual_start`` = the last regular coupon date (as the demo does) to avoid it.

Trades are priced for settlement on the trade date (T+0): accrued runs from ``accrual_start``
(counted) to the trade date (not counted), so a trade on ``accrual_start`` has zero accrued. A
trade date must lie in ``[accrual_start, next_coupon_date)`` and before ``maturity_date``;
otherwise ``state.coupon_roll_required`` (the core rolls the instrument with
``Instrument.with_next_coupon_period``), ``state.instrument_not_started`` or
``state.instrument_matured``.

The rounding rule (the only one; each rounding happens once)
-------------------------------------------------------------
Round half up -- for a negative value (a maker rebate) half away from zero -- at three points:

1. ``accrued`` = coupon_rate(%) x year_fraction, per 100 face, rounded to 1e-10 and kept as an
   integer count of 1e-10 (this integer is what the fill's ledger block and the API show);
2. ``settlement_amount`` (fen) = qty x face_per_unit(fen) x pool_factor x (clean_price +
   accrued) / 100, computed exactly from the integers (clean price from ticks, factor from
   micro-units, accrued from step 1) and rounded once to the fen;
3. each fee (fen) = settlement_amount x rate, rounded once to the fen; rates are in parts per
   million of the settlement amount (ppm; 1 bp = 100 ppm), so a fee may use fractional basis
   points (wire ``"0.25"`` bp = 25 ppm). A negative maker rate is a rebate.

The buyer pays ``settlement_amount + buyer_fee``; the seller receives ``settlement_amount -
seller_fee``; the venue's fee account receives ``buyer_fee + seller_fee`` (never negative, see
``FeeSchedule``).

Buy reservations (why a fill can never fail to settle)
-----------------------------------------------------
A buy of ``qty`` at limit ``L`` reserves ``qty x (buy_cost_per_unit_upper + 2)`` fen, where
``buy_cost_per_unit_upper = ceil(U x (1 + r))``, ``U`` = the exact per-unit settlement amount at
price ``L`` with accrued ``A`` = ``accrued_upper`` and ``r`` = the larger of the buyer segment's
maker and taker rates (0 if both are rebates). Proof that this covers *any* split of ``qty`` into
fills ``q_i >= 1`` at prices ``<= L`` with accrued ``<= A``: the exact amount of fill ``i`` is
``E_i <= q_i U``; its rounded amount ``S_i <= E_i + 1/2``; its fee ``<= S_i r + 1/2``; so its
cost ``<= (E_i + 1/2)(1 + r) + 1/2 = E_i (1 + r) + 1 + r/2 <= q_i (ceil(U (1 + r)) + 2)`` because
fee rates are capped at 1 % (so ``1 + r/2 < 2``) and ``q_i >= 1``. Summing over fills gives the
bound. Being linear in the quantity, it also means that after any fill, reservation(old qty) -
cost(fill) >= reservation(remaining qty): the core may always reset an order's reservation to
``buy_reservation_fen(leaves_qty)`` and release the difference. ``accrued_upper(instrument,
day)`` is the accrued on the last day before ``next_coupon_date`` (accrued only grows within a
period under every day count here), i.e. the largest accrued any fill can carry until the coupon
roll; after a roll the core recomputes open buy reservations. A sell reserves exactly its units,
and needs no cash: its fee is at most 1 % of an amount it receives.

Public API::

    ACCRUED_SCALE = 10**10; PPM = 1_000_000; MAX_FEE_PPM = 10_000; ROUNDING_ALLOWANCE_FEN_PER_UNIT
    round_half_away_from_zero(value: Fraction) -> int
    days_30_360(start, end) -> int
    year_fraction(day_count, start, end, *, period_start, period_end, frequency) -> Fraction
    check_trade_date(instrument, trade_date) -> None
    accrued_interest(instrument, trade_date) -> int          # 1e-10 per 100 face
    accrued_upper(instrument, trade_date) -> int
    settlement_amount_fen(instrument, price_ticks, qty, accrued) -> int
    fee_fen(settlement_amount, rate_ppm) -> int
    @dataclass SegmentFees(maker_ppm, taker_ppm); @dataclass FeeSchedule(interbank, exchange)
        FeeSchedule.from_wire(data) / .to_wire() / .for_segment(segment)
    @dataclass FillPricing(price_ticks, qty, accrued, factor, settlement_amount, buyer_fee,
                           seller_fee, buyer_segment, seller_segment)
    price_fill(instrument, price_ticks, qty, trade_date, *, maker_segment, taker_segment,
               aggressor_side, fees) -> FillPricing
    buy_cost_per_unit_upper(instrument, limit_ticks, accrued_upper, fees, segment) -> int
    buy_reservation_fen(instrument, limit_ticks, qty, accrued_upper, fees, segment) -> int
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from ledger.waterfall import days_30_360 as days_30_360  # re-exported: the venue's names
from ledger.waterfall import (
    divide_rounding_half_away,
    year_fraction,
)
from ledger.waterfall import round_half_away_from_zero as round_half_away_from_zero
from venue.domain.instruments import (
    COUPON_RATE_PLACES,
    FACTOR_SCALE,
    PRICE_SCALE,
    DayCount,
    Instrument,
    Side,
)
from venue.domain.money import MAX_QTY, format_scaled, parse_scaled
from venue.domain.participants import Segment
from venue.errors import ErrorCode, VenueError

ACCRUED_SCALE = 10**10  # accrued is an integer count of 1e-10 per 100 face
# The largest accrued a valid instrument can reach: a 100 % coupon over a period of at most two
# years (two annual periods) under ACT/360 is below 2.04 per 1 of face, i.e. 204 per 100.
MAX_ACCRUED = 300 * ACCRUED_SCALE
PPM = 1_000_000  # fee rates are parts per million of the settlement amount; 1 bp = 100 ppm
MAX_FEE_PPM = 10_000  # 1 %: any larger fee or rebate rate is refused
ROUNDING_ALLOWANCE_FEN_PER_UNIT = 2  # see "Buy reservations" in the module docstring
FEE_BPS_PLACES = 2  # wire fee rates: basis points with up to 2 places (= ppm)


# Rounding and day counts are ``ledger.waterfall``'s (one implementation: the audit re-runs the
# waterfall with them); imported here under their names, as the rest of the venue uses them.
_divide_rounding_half_away = divide_rounding_half_away


def check_trade_date(instrument: Instrument, trade_date: date) -> None:
    """Refuse a trade date outside the instrument's current coupon period (module docstring)."""
    if trade_date >= instrument.maturity_date:
        raise VenueError(
            ErrorCode.INSTRUMENT_MATURED,
            f"{instrument.symbol} matures on {instrument.maturity_date}",
            symbol=instrument.symbol,
            trade_date=trade_date.isoformat(),
        )
    if trade_date < instrument.accrual_start:
        raise VenueError(
            ErrorCode.INSTRUMENT_NOT_STARTED,
            f"{instrument.symbol} accrues from {instrument.accrual_start}",
            symbol=instrument.symbol,
            trade_date=trade_date.isoformat(),
        )
    if trade_date >= instrument.next_coupon_date:
        raise VenueError(
            ErrorCode.COUPON_ROLL_REQUIRED,
            f"{instrument.symbol}: trade date {trade_date} is past the coupon date "
            f"{instrument.next_coupon_date}",
            symbol=instrument.symbol,
            trade_date=trade_date.isoformat(),
        )


def accrued_interest(instrument: Instrument, trade_date: date) -> int:
    """Accrued interest per 100 face on ``trade_date``, in 1e-10, rounded half up (rule 1)."""
    check_trade_date(instrument, trade_date)
    return _accrued(
        instrument.day_count,
        instrument.accrual_start,
        instrument.next_coupon_date,
        instrument.coupon_frequency,
        instrument.coupon_rate,
        trade_date,
    )


@lru_cache(maxsize=4096)
def _accrued(
    day_count: DayCount,
    accrual_start: date,
    next_coupon_date: date,
    frequency: int,
    coupon_rate: int,
    trade_date: date,
) -> int:
    """Rule 1 for a checked trade date. Memoised on everything it depends on: every fill of a
    day in one tranche carries the same accrued, and the exact ``Fraction`` arithmetic is the
    costliest step of pricing a fill."""
    fraction = year_fraction(
        day_count,
        accrual_start,
        trade_date,
        period_start=accrual_start,
        period_end=next_coupon_date,
        frequency=frequency,
    )
    # coupon_rate is in 1e-4 percent; percent of 100 face is the rate itself in price terms:
    # accrued (1e-10 units) = coupon_rate / 1e4 x fraction x 1e10.
    return _divide_rounding_half_away(
        coupon_rate * fraction.numerator * (ACCRUED_SCALE // 10**COUPON_RATE_PLACES),
        fraction.denominator,
    )


def accrued_upper(instrument: Instrument, trade_date: date) -> int:
    """The largest accrued any fill can carry from ``trade_date`` until the coupon roll.

    That is the accrued on the day before ``next_coupon_date``: within one period accrued never
    decreases under any supported day count. ``trade_date`` must itself be tradable.
    """
    check_trade_date(instrument, trade_date)
    last_day = instrument.next_coupon_date - timedelta(days=1)
    return accrued_interest(instrument, max(last_day, trade_date))


# --- amounts and fees ---------------------------------------------------------------------

# settlement = qty * face(fen) * (factor / 1e6) * ((ticks * tick / 1e8) + accrued / 1e10) / 100
#            = qty * face * factor * (ticks * tick * 100 + accrued) / 1e18
_PRICE_TO_ACCRUED_UNITS = ACCRUED_SCALE // PRICE_SCALE  # 1e-8 price units -> 1e-10 units
_SETTLEMENT_DENOMINATOR = FACTOR_SCALE * ACCRUED_SCALE * 100


def _amount_per_unit_numerator(instrument: Instrument, price_ticks: int, accrued: int) -> int:
    """The exact per-unit settlement amount in fen is this over ``_SETTLEMENT_DENOMINATOR``."""
    dirty = price_ticks * instrument.tick_size * _PRICE_TO_ACCRUED_UNITS + accrued
    return instrument.face_per_unit * instrument.pool_factor * dirty


def settlement_amount_fen(instrument: Instrument, price_ticks: int, qty: int, accrued: int) -> int:
    """Rule 2: the settlement amount in fen, rounded once, half up."""
    _check_int(price_ticks, "price_ticks", 1, instrument.max_price_ticks)
    _check_int(qty, "qty", 1, MAX_QTY)
    _check_int(accrued, "accrued", 0, MAX_ACCRUED)
    return _divide_rounding_half_away(
        qty * _amount_per_unit_numerator(instrument, price_ticks, accrued), _SETTLEMENT_DENOMINATOR
    )


def fee_fen(settlement_amount: int, rate_ppm: int) -> int:
    """Rule 3: ``settlement_amount x rate_ppm / 1e6`` rounded half away from zero."""
    _check_int(settlement_amount, "settlement_amount", 0, None)
    _check_int(rate_ppm, "rate_ppm", -MAX_FEE_PPM, MAX_FEE_PPM)
    return _divide_rounding_half_away(settlement_amount * rate_ppm, PPM)


def _check_int(value: int, name: str, low: int, high: int | None) -> None:
    """Programmer-error guard for internal integers (wire input is validated at the edge)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name}={value} is outside [{low}, {high}]")


@dataclass(frozen=True, slots=True)
class SegmentFees:
    """Fee rates of one segment, in ppm of the settlement amount (1 bp = 100 ppm).

    ``maker_ppm`` may be negative (a rebate); both are within +-``MAX_FEE_PPM``.
    """

    maker_ppm: int
    taker_ppm: int

    def __post_init__(self) -> None:
        for name in ("maker_ppm", "taker_ppm"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int")
            if not -MAX_FEE_PPM <= value <= MAX_FEE_PPM:
                raise VenueError(
                    ErrorCode.BAD_RATE,
                    f"{name} must be within +-{MAX_FEE_PPM} ppm (1 %)",
                    field=name,
                )


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Maker/taker rates per segment.

    Invariant (``validation.bad_fee_schedule``): for every pair of segments, maker rate of one +
    taker rate of the other >= 0, so the venue never pays out net on a fill (rounding keeps it
    so: both fees round the same amount half away from zero, and |maker| <= taker).
    """

    interbank: SegmentFees
    exchange: SegmentFees

    def __post_init__(self) -> None:
        lowest_maker = min(self.interbank.maker_ppm, self.exchange.maker_ppm)
        lowest_taker = min(self.interbank.taker_ppm, self.exchange.taker_ppm)
        if lowest_maker + lowest_taker < 0:
            raise VenueError(
                ErrorCode.BAD_FEE_SCHEDULE,
                "a maker rebate exceeds a taker fee: the venue would pay out on some fills",
                lowest_maker_ppm=lowest_maker,
                lowest_taker_ppm=lowest_taker,
            )

    def for_segment(self, segment: Segment | str) -> SegmentFees:
        if type(segment) is not Segment:
            segment = Segment(segment)
        return self.interbank if segment is Segment.INTERBANK else self.exchange

    @classmethod
    def from_wire(cls, data: Mapping[str, object]) -> FeeSchedule:
        """From ``{"interbank": {"maker_bps": "-0.20", "taker_bps": "0.50"}, "exchange": ...}``.

        Rates are basis-point decimal strings with at most 2 places (``"0.25"`` = 25 ppm).
        """
        if not isinstance(data, Mapping) or set(data) != {"interbank", "exchange"}:
            raise VenueError(
                ErrorCode.BAD_FEE_SCHEDULE,
                "fee schedule must be an object with exactly 'interbank' and 'exchange'",
            )
        segments = {}
        for segment in ("interbank", "exchange"):
            rates = data[segment]
            if not isinstance(rates, Mapping) or set(rates) != {"maker_bps", "taker_bps"}:
                raise VenueError(
                    ErrorCode.BAD_FEE_SCHEDULE,
                    f"{segment} fees must be an object with exactly 'maker_bps' and 'taker_bps'",
                    field=segment,
                )
            segments[segment] = SegmentFees(
                **{
                    f"{kind}_ppm": parse_scaled(
                        rates[f"{kind}_bps"],
                        places=FEE_BPS_PLACES,
                        field=f"{segment}.{kind}_bps",
                        code=ErrorCode.BAD_RATE,
                        max_abs=MAX_FEE_PPM,
                        allow_negative=kind == "maker",
                        allow_zero=True,
                    )
                    for kind in ("maker", "taker")
                }
            )
        return cls(**segments)

    def to_wire(self) -> dict[str, dict[str, str]]:
        return {
            name: {
                "maker_bps": format_scaled(fees.maker_ppm, FEE_BPS_PLACES),
                "taker_bps": format_scaled(fees.taker_ppm, FEE_BPS_PLACES),
            }
            for name, fees in (("interbank", self.interbank), ("exchange", self.exchange))
        }


@dataclass(frozen=True, slots=True)
class FillPricing:
    """Everything a fill settles, as integers (units in the module docstring).

    ``accrued`` is in 1e-10 per 100 face, ``factor`` in micro-units, money in fen.
    """

    price_ticks: int
    qty: int
    accrued: int
    factor: int
    settlement_amount: int
    buyer_fee: int
    seller_fee: int
    buyer_segment: Segment
    seller_segment: Segment

    @property
    def buyer_pays(self) -> int:
        return self.settlement_amount + self.buyer_fee

    @property
    def seller_receives(self) -> int:
        return self.settlement_amount - self.seller_fee

    @property
    def venue_fee(self) -> int:
        """What the venue's fee account receives; never negative for a valid schedule."""
        return self.buyer_fee + self.seller_fee


def price_fill(
    instrument: Instrument,
    price_ticks: int,
    qty: int,
    trade_date: date,
    *,
    maker_segment: Segment | str,
    taker_segment: Segment | str,
    aggressor_side: Side | str,
    fees: FeeSchedule,
) -> FillPricing:
    """Price one fill: accrued, settlement amount and both fees (the rounding rule above).

    The aggressor (taker) pays its segment's taker rate, the resting side its segment's maker
    rate. ``aggressor_side`` is the taker's side: ``"buy"`` means the buyer is the taker.
    """
    # (an Enum call costs about a microsecond even on a member: skip it for members)
    if type(maker_segment) is not Segment:
        maker_segment = Segment(maker_segment)
    if type(taker_segment) is not Segment:
        taker_segment = Segment(taker_segment)
    buyer_is_taker = aggressor_side == Side.BUY  # a StrEnum member equals its value
    if not buyer_is_taker and aggressor_side != Side.SELL:
        raise ValueError(f"aggressor_side must be buy or sell, got {aggressor_side!r}")
    accrued = accrued_interest(instrument, trade_date)
    amount = settlement_amount_fen(instrument, price_ticks, qty, accrued)
    maker_fee = fee_fen(amount, fees.for_segment(maker_segment).maker_ppm)
    taker_fee = fee_fen(amount, fees.for_segment(taker_segment).taker_ppm)
    return FillPricing(
        price_ticks=price_ticks,
        qty=qty,
        accrued=accrued,
        factor=instrument.pool_factor,
        settlement_amount=amount,
        buyer_fee=taker_fee if buyer_is_taker else maker_fee,
        seller_fee=maker_fee if buyer_is_taker else taker_fee,
        buyer_segment=taker_segment if buyer_is_taker else maker_segment,
        seller_segment=maker_segment if buyer_is_taker else taker_segment,
    )


# --- buy reservations ---------------------------------------------------------------------


def buy_cost_per_unit_upper(
    instrument: Instrument,
    limit_ticks: int,
    accrued_upper: int,
    fees: FeeSchedule,
    segment: Segment | str,
) -> int:
    """ceil(U x (1 + r)) fen: the exact per-unit cost bound before rounding allowances.

    ``U`` is the exact per-unit settlement amount at ``limit_ticks`` with ``accrued_upper``, ``r``
    the buyer segment's larger fee rate (at least 0). See "Buy reservations" above.
    """
    _check_int(limit_ticks, "limit_ticks", 1, instrument.max_price_ticks)
    _check_int(accrued_upper, "accrued_upper", 0, MAX_ACCRUED)
    rates = fees.for_segment(segment)
    rate_upper = max(rates.maker_ppm, rates.taker_ppm, 0)
    numerator = _amount_per_unit_numerator(instrument, limit_ticks, accrued_upper)
    return -((-numerator * (PPM + rate_upper)) // (_SETTLEMENT_DENOMINATOR * PPM))  # ceil


def buy_reservation_fen(
    instrument: Instrument,
    limit_ticks: int,
    qty: int,
    accrued_upper: int,
    fees: FeeSchedule,
    segment: Segment | str,
) -> int:
    """Cash to reserve for a buy of ``qty`` at ``limit_ticks``; covers any split into fills.

    = ``qty x (buy_cost_per_unit_upper + ROUNDING_ALLOWANCE_FEN_PER_UNIT)``; proof and the
    after-fill property in the module docstring.
    """
    _check_int(qty, "qty", 1, MAX_QTY)
    per_unit = buy_cost_per_unit_upper(instrument, limit_ticks, accrued_upper, fees, segment)
    return qty * (per_unit + ROUNDING_ALLOWANCE_FEN_PER_UNIT)
