"""ABS tranche reference data (SPEC section 1): validated on listing, immutable afterwards.

An ``Instrument`` is a frozen dataclass holding every SPEC field as an integer, enum, string or
date. Every ``Instrument`` that exists is valid: ``__post_init__`` checks each field (a wrong
*type* is a programmer error and raises ``TypeError``; a wrong *value* raises ``VenueError``), so
``dataclasses.replace`` and the ``with_*`` methods re-validate too.

Units inside (the wire form in brackets, produced by ``to_wire`` and read by ``from_wire``):

==================  =========================================  ==========================
field               integer unit                               wire
==================  =========================================  ==========================
face_per_unit       fen of original face per unit (10000)      ``"100.00"``
pool_factor         micro-units: 1_000_000 = 1.0; (0, 1e6]     ``"0.784213"``
coupon_rate         1e-4 percent: 36000 = 3.6 % a year         ``"3.6000"``
tick_size           1e-8 of price per 100 face (10000=0.0001)  ``"0.0001"``
price_band_pct      basis points of the reference price        ``"2.00"`` (percent)
reference_price     ticks                                      ``"100.1250"``
min_qty, qty_incr.  units                                      ``"10"``
dates               ``datetime.date``                          ``"2026-11-15"``
==================  =========================================  ==========================

Prices are clean prices per 100 of *current* face. A price in ticks is an integer multiple of
``tick_size``: with tick ``0.0001``, ``"99.8750"`` is ``998750`` ticks. A price string may carry
at most 8 decimal places; one that is not on the grid is ``validation.price_off_tick``.

Price band: around ``reference_price`` (operator-set at listing, then the core moves it to each
last trade with ``with_reference_price``). The band edges are rounded *inward* onto the tick grid
so that no edge price is ever outside the exact band: lower = ceil(ref * (1 - pct)), at least 1
tick; upper = floor(ref * (1 + pct)). Both edges are inside the band (inclusive). A market order
becomes a limit order at the far edge: a buy at the upper edge, a sell at the lower edge.

Dates lie in 1990-01-01 .. 2199-12-31 (anything else is a typo: ``validation.bad_date``).
Coupon period: ``accrual_start < next_coupon_date <= maturity_date``, and the period is at most
two regular periods long (``2 x 12 / coupon_frequency`` months: a long first coupon at most).

Quantities: a valid quantity is ``>= min_qty``, a whole multiple of ``qty_increment`` and at most
``money.MAX_QTY``; listing requires ``min_qty`` to be a multiple of ``qty_increment``.

Public API::

    class Side(StrEnum): BUY="buy", SELL="sell"       parse_side(text) -> Side
    class TrancheClass(StrEnum), class DayCount(StrEnum), class TradingStatus(StrEnum)
    @dataclass(frozen=True) class Instrument:
        Instrument.from_wire(data: Mapping[str, object]) -> Instrument
        .to_wire() -> dict[str, object]
        .price_places: int                 # decimals shown for prices (4 for tick 0.0001)
        .max_price_ticks: int              # the absurd-price cap in ticks (price 1000 per 100)
        .parse_price(text) -> int          # ticks; bad_price / price_off_tick / absurd_value
        .format_price(ticks) -> str
        .check_price_ticks(ticks) -> int   # an internal tick count is positive and plausible
        .band_edges() -> tuple[int, int]   # (lower, upper) ticks, inclusive, rounded inward
        .check_in_band(ticks) -> int       # price_out_of_band
        .market_limit_ticks(side) -> int   # the band edge a market order is converted to
        .check_qty(qty) -> int             # bad_quantity / qty_below_min / qty_off_increment
        .check_open() -> None              # state.instrument_halted
        .with_factor(micro) / .with_status(status) / .with_reference_price(ticks) -> Instrument
        .following_coupon_date() -> date   # schedule anchored on maturity_date
        .with_next_coupon_period() -> Instrument   # the coupon roll; instrument_matured at the end
    add_months(day, months, end_of_month=False) -> date
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import lru_cache

from ledger.waterfall import add_months, following_coupon_date
from venue.domain.money import (
    MAX_QTY,
    format_quantity,
    format_scaled,
    parse_enum,
    parse_iso_date,
    parse_quantity,
    parse_scaled,
)
from venue.errors import ErrorCode, VenueError

PRICE_PLACES = 8
PRICE_SCALE = 10**PRICE_PLACES  # tick_size is counted in 1e-8 of price per 100 face
MAX_PRICE = 1000 * PRICE_SCALE  # 1000 per 100 face (10x par): any higher price is absurd
DEFAULT_TICK_SIZE = 10_000  # 0.0001
FACTOR_SCALE = 1_000_000  # pool_factor micro-units
COUPON_RATE_PLACES = 4  # coupon_rate in 1e-4 percent
MAX_COUPON_RATE = 100 * 10**COUPON_RATE_PLACES  # 100 % a year
BAND_PLACES = 2  # price_band_pct in hundredths of a percent = basis points
MAX_PRICE_BAND_BPS = 5_000  # 50 %
DEFAULT_FACE_PER_UNIT = 10_000  # fen: 100.00 CNY
MAX_FACE_PER_UNIT = 10**9  # fen: 10 million CNY per unit
COUPON_FREQUENCIES = (1, 2, 4, 12)  # payments a year
MAX_TEXT_LENGTH = 200
EARLIEST_DATE = date(1990, 1, 1)  # any reference date outside this range is a data error
LATEST_DATE = date(2199, 12, 31)

_SYMBOL = re.compile(r"[A-Z0-9]+(?:-[A-Z0-9]+)*")
_ISIN = re.compile(r"[A-Z]{2}[A-Z0-9]{9}[0-9]")
_RATING = re.compile(r"[A-Za-z0-9+\-]{1,16}")


class Side(StrEnum):
    """Order side. Wire values ``"buy"`` / ``"sell"``."""

    BUY = "buy"
    SELL = "sell"


class TrancheClass(StrEnum):
    SENIOR = "senior"
    MEZZANINE = "mezzanine"
    SUBORDINATED = "subordinated"
    EQUITY = "equity"


class DayCount(StrEnum):
    """Day-count conventions; the exact variants are documented in ``venue.domain.pricing``."""

    ACT_365F = "ACT/365F"
    ACT_360 = "ACT/360"
    THIRTY_360 = "30/360"
    ACT_ACT = "ACT/ACT"


class TradingStatus(StrEnum):
    OPEN = "open"
    HALTED = "halted"


def parse_side(text: object) -> Side:
    """``"buy"``/``"sell"`` -> ``Side``, else ``validation.bad_side``."""
    return parse_enum(Side, text, "side", ErrorCode.BAD_SIDE)


def isin_check_digit_ok(isin: str) -> bool:
    """ISO 6166: letters -> 10..35, then the Luhn check over the resulting digit string."""
    digits = "".join(str(int(char, 36)) for char in isin)
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _require_type(value: object, expected: type | tuple[type, ...], field: str) -> None:
    """Programmer-error guard: a field of the wrong Python type is a bug, not bad input."""
    if not isinstance(value, expected) or (isinstance(value, bool) and expected is int):
        raise TypeError(f"Instrument.{field} has type {type(value).__name__}")


def _check_range(value: int, low: int, high: int, field: str, code: ErrorCode) -> None:
    if not low <= value <= high:
        raise VenueError(code, f"{field} must be between {low} and {high}", field=field)


def _check_text(value: str, field: str) -> None:
    if (
        not value
        or len(value) > MAX_TEXT_LENGTH
        or value != value.strip()
        or not value.isprintable()
    ):
        raise VenueError(
            ErrorCode.BAD_REFERENCE_DATA,
            f"{field} must be 1-{MAX_TEXT_LENGTH} printable characters without outer spaces",
            field=field,
        )


@dataclass(frozen=True, slots=True)
class Instrument:
    """One listed ABS tranche. Field units: see the module docstring table."""

    symbol: str
    deal_name: str
    tranche_class: TrancheClass
    seniority_rank: int  # 1 = most senior in the deal's waterfall
    rating: str  # agency rating, e.g. "AAA", "AA+", or "NR" for unrated
    underlying: str  # e.g. "patent licence receivables"
    coupon_rate: int
    coupon_frequency: int
    day_count: DayCount
    accrual_start: date  # the last coupon date (or issue date) on or before trading
    next_coupon_date: date
    maturity_date: date
    min_qty: int
    qty_increment: int
    price_band_pct: int
    reference_price: int
    isin: str | None = None
    currency: str = "CNY"
    face_per_unit: int = DEFAULT_FACE_PER_UNIT
    pool_factor: int = FACTOR_SCALE
    tick_size: int = DEFAULT_TICK_SIZE
    status: TradingStatus = TradingStatus.OPEN

    def __post_init__(self) -> None:
        # Enum fields also accept their wire string ("halted"), converted here once.
        for field, enum_type in _ENUM_FIELDS:
            value = getattr(self, field)
            if isinstance(value, str) and not isinstance(value, enum_type):
                converted = parse_enum(enum_type, value, field, ErrorCode.BAD_REFERENCE_DATA)
                object.__setattr__(self, field, converted)
        for field in ("symbol", "deal_name", "rating", "underlying", "currency"):
            _require_type(getattr(self, field), str, field)
        for field in (
            "seniority_rank",
            "coupon_rate",
            "coupon_frequency",
            "min_qty",
            "qty_increment",
            "price_band_pct",
            "reference_price",
            "face_per_unit",
            "pool_factor",
            "tick_size",
        ):
            _require_type(getattr(self, field), int, field)
        for field in ("accrual_start", "next_coupon_date", "maturity_date"):
            _require_type(getattr(self, field), date, field)
        _require_type(self.tranche_class, TrancheClass, "tranche_class")
        _require_type(self.day_count, DayCount, "day_count")
        _require_type(self.status, TradingStatus, "status")
        if self.isin is not None:
            _require_type(self.isin, str, "isin")

        if len(self.symbol) > 32 or _SYMBOL.fullmatch(self.symbol) is None:
            raise VenueError(
                ErrorCode.BAD_SYMBOL,
                "symbol must be 1-32 upper-case letters/digits in hyphen-separated groups",
                field="symbol",
            )
        if self.isin is not None and (
            _ISIN.fullmatch(self.isin) is None or not isin_check_digit_ok(self.isin)
        ):
            raise VenueError(
                ErrorCode.BAD_ISIN, "isin is malformed or its check digit is wrong", field="isin"
            )
        _check_text(self.deal_name, "deal_name")
        _check_text(self.underlying, "underlying")
        if _RATING.fullmatch(self.rating) is None:
            raise VenueError(
                ErrorCode.BAD_REFERENCE_DATA,
                "rating must be 1-16 letters, digits, '+' or '-' (use NR for unrated)",
                field="rating",
            )
        if self.currency != "CNY":
            raise VenueError(ErrorCode.BAD_REFERENCE_DATA, "currency must be CNY", field="currency")
        _check_range(self.seniority_rank, 1, 99, "seniority_rank", ErrorCode.BAD_REFERENCE_DATA)
        _check_range(
            self.face_per_unit, 1, MAX_FACE_PER_UNIT, "face_per_unit", ErrorCode.BAD_REFERENCE_DATA
        )
        _check_range(self.pool_factor, 1, FACTOR_SCALE, "pool_factor", ErrorCode.BAD_FACTOR)
        _check_range(self.coupon_rate, 0, MAX_COUPON_RATE, "coupon_rate", ErrorCode.BAD_RATE)
        if self.coupon_frequency not in COUPON_FREQUENCIES:
            raise VenueError(
                ErrorCode.BAD_REFERENCE_DATA,
                f"coupon_frequency must be one of {COUPON_FREQUENCIES} payments a year",
                field="coupon_frequency",
            )
        for field in ("accrual_start", "next_coupon_date", "maturity_date"):
            if not EARLIEST_DATE <= getattr(self, field) <= LATEST_DATE:
                raise VenueError(
                    ErrorCode.BAD_DATE,
                    f"{field} must lie between {EARLIEST_DATE} and {LATEST_DATE}",
                    field=field,
                )
        if not self.accrual_start < self.next_coupon_date <= self.maturity_date:
            raise VenueError(
                ErrorCode.BAD_DATE,
                "dates must satisfy accrual_start < next_coupon_date <= maturity_date",
                field="next_coupon_date",
            )
        regular_months = 12 // self.coupon_frequency
        if self.next_coupon_date > add_months(self.accrual_start, 2 * regular_months):
            # a long first coupon spans at most two regular periods; longer is a data error
            raise VenueError(
                ErrorCode.BAD_DATE,
                "the coupon period accrual_start..next_coupon_date is longer than two regular "
                f"periods of {regular_months} months",
                field="next_coupon_date",
            )
        _check_range(self.tick_size, 1, PRICE_SCALE, "tick_size", ErrorCode.BAD_REFERENCE_DATA)
        _check_range(self.qty_increment, 1, MAX_QTY, "qty_increment", ErrorCode.BAD_REFERENCE_DATA)
        _check_range(self.min_qty, 1, MAX_QTY, "min_qty", ErrorCode.BAD_REFERENCE_DATA)
        if self.min_qty % self.qty_increment:
            raise VenueError(
                ErrorCode.BAD_REFERENCE_DATA,
                "min_qty must be a whole multiple of qty_increment",
                field="min_qty",
            )
        _check_range(
            self.price_band_pct, 1, MAX_PRICE_BAND_BPS, "price_band_pct", ErrorCode.BAD_RATE
        )
        self.check_price_ticks(self.reference_price, field="reference_price")

    # --- wire form ------------------------------------------------------------------------

    @classmethod
    def from_wire(cls, data: Mapping[str, object]) -> Instrument:
        """Build from the JSON/wire form (decimal strings, ISO dates); every field validated.

        Required: symbol, deal_name, tranche_class, seniority_rank, rating, underlying,
        coupon_rate, coupon_frequency, day_count, accrual_start, next_coupon_date, maturity_date,
        min_qty, qty_increment, price_band_pct, reference_price. Optional (default): isin (none),
        currency ("CNY"), face_per_unit ("100.00"), pool_factor ("1.000000"), tick_size
        ("0.0001"), status ("open"). Unknown keys are refused (``validation.unknown_field``) so a
        misspelt optional field is never silently ignored.
        """
        if not isinstance(data, Mapping):
            raise VenueError(ErrorCode.BAD_PARAMETER, "instrument must be a JSON object")
        unknown = sorted(str(key) for key in set(data) - set(_WIRE_FIELDS))
        if unknown:
            raise VenueError(
                ErrorCode.UNKNOWN_FIELD,
                f"unknown instrument field(s): {', '.join(unknown)}",
                fields=unknown,
            )
        missing = [name for name in _REQUIRED_WIRE_FIELDS if name not in data]
        if missing:
            raise VenueError(
                ErrorCode.BAD_PARAMETER,
                f"missing instrument field(s): {', '.join(missing)}",
                fields=missing,
            )

        def integer(name: str, low: int, high: int) -> int:
            value = data[name]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise VenueError(
                    ErrorCode.BAD_REFERENCE_DATA,
                    f"{name} must be an integer from {low} to {high}",
                    field=name,
                )
            return value

        def text(name: str) -> str:
            value = data[name]
            if not isinstance(value, str):
                raise VenueError(
                    ErrorCode.BAD_REFERENCE_DATA, f"{name} must be a string", field=name
                )
            return value

        tick_size = parse_scaled(
            data.get("tick_size", "0.0001"),
            places=PRICE_PLACES,
            field="tick_size",
            code=ErrorCode.BAD_REFERENCE_DATA,
            max_abs=PRICE_SCALE,
        )
        isin = data.get("isin")
        if isin is not None and not isinstance(isin, str):
            raise VenueError(ErrorCode.BAD_ISIN, "isin must be a string or null", field="isin")
        reference_units = parse_scaled(
            data["reference_price"],
            places=PRICE_PLACES,
            field="reference_price",
            code=ErrorCode.BAD_PRICE,
            max_abs=MAX_PRICE,
        )
        if reference_units % tick_size:
            raise VenueError(
                ErrorCode.PRICE_OFF_TICK,
                "reference_price is not on the tick grid",
                field="reference_price",
            )
        return cls(
            symbol=text("symbol"),
            isin=isin,
            deal_name=text("deal_name"),
            tranche_class=parse_enum(
                TrancheClass, data["tranche_class"], "tranche_class", ErrorCode.BAD_REFERENCE_DATA
            ),
            seniority_rank=integer("seniority_rank", 1, 99),
            rating=text("rating"),
            underlying=text("underlying"),
            currency=text("currency") if "currency" in data else "CNY",
            face_per_unit=parse_scaled(
                data.get("face_per_unit", "100.00"),
                places=2,
                field="face_per_unit",
                code=ErrorCode.BAD_REFERENCE_DATA,
                max_abs=MAX_FACE_PER_UNIT,
            ),
            pool_factor=parse_scaled(
                data.get("pool_factor", "1.000000"),
                places=6,
                field="pool_factor",
                code=ErrorCode.BAD_FACTOR,
                max_abs=FACTOR_SCALE,
            ),
            coupon_rate=parse_scaled(
                data["coupon_rate"],
                places=COUPON_RATE_PLACES,
                field="coupon_rate",
                code=ErrorCode.BAD_RATE,
                max_abs=MAX_COUPON_RATE,
                allow_zero=True,
            ),
            coupon_frequency=integer("coupon_frequency", 1, 12),
            day_count=parse_enum(
                DayCount, data["day_count"], "day_count", ErrorCode.BAD_REFERENCE_DATA
            ),
            accrual_start=parse_iso_date(data["accrual_start"], field="accrual_start"),
            next_coupon_date=parse_iso_date(data["next_coupon_date"], field="next_coupon_date"),
            maturity_date=parse_iso_date(data["maturity_date"], field="maturity_date"),
            tick_size=tick_size,
            min_qty=parse_quantity(data["min_qty"], field="min_qty"),
            qty_increment=parse_quantity(data["qty_increment"], field="qty_increment"),
            price_band_pct=parse_scaled(
                data["price_band_pct"],
                places=BAND_PLACES,
                field="price_band_pct",
                code=ErrorCode.BAD_RATE,
                max_abs=MAX_PRICE_BAND_BPS,
            ),
            reference_price=reference_units // tick_size,
            status=parse_enum(
                TradingStatus, data.get("status", "open"), "status", ErrorCode.BAD_REFERENCE_DATA
            ),
        )

    def to_wire(self) -> dict[str, object]:
        """The JSON/wire form: decimal strings, ISO dates; ``from_wire(to_wire())`` round-trips."""
        return {
            "symbol": self.symbol,
            "isin": self.isin,
            "deal_name": self.deal_name,
            "tranche_class": self.tranche_class.value,
            "seniority_rank": self.seniority_rank,
            "rating": self.rating,
            "underlying": self.underlying,
            "currency": self.currency,
            "face_per_unit": format_scaled(self.face_per_unit, 2),
            "pool_factor": format_scaled(self.pool_factor, 6),
            "coupon_rate": format_scaled(self.coupon_rate, COUPON_RATE_PLACES),
            "coupon_frequency": self.coupon_frequency,
            "day_count": self.day_count.value,
            "accrual_start": self.accrual_start.isoformat(),
            "next_coupon_date": self.next_coupon_date.isoformat(),
            "maturity_date": self.maturity_date.isoformat(),
            "tick_size": self._format_price_units(self.tick_size),
            "min_qty": format_quantity(self.min_qty),
            "qty_increment": format_quantity(self.qty_increment),
            "price_band_pct": format_scaled(self.price_band_pct, BAND_PLACES),
            "reference_price": self.format_price(self.reference_price),
            "status": self.status.value,
        }

    # --- prices ---------------------------------------------------------------------------

    @property
    def price_places(self) -> int:
        """Decimal places of the tick size (0.0001 -> 4; 0.0005 -> 4; 0.01 -> 2; 1 -> 0)."""
        places = PRICE_PLACES
        tick = self.tick_size
        while places > 0 and tick % 10 == 0:
            tick //= 10
            places -= 1
        return places

    @property
    def max_price_ticks(self) -> int:
        """The largest plausible price in ticks (1000 per 100 face, rounded down to the grid)."""
        return MAX_PRICE // self.tick_size

    def parse_price(self, text: object, *, field: str = "price") -> int:
        """A clean-price string per 100 face -> ticks.

        Errors: ``validation.bad_price`` (not a positive decimal with <= 8 places),
        ``validation.absurd_value`` (above 1000), ``validation.price_off_tick`` (off the grid).
        The band is *not* checked here: see ``check_in_band``.
        """
        units = parse_scaled(
            text, places=PRICE_PLACES, field=field, code=ErrorCode.BAD_PRICE, max_abs=MAX_PRICE
        )
        if units % self.tick_size:
            raise VenueError(
                ErrorCode.PRICE_OFF_TICK,
                f"{field} {text} is not a multiple of the tick size "
                f"{self._format_price_units(self.tick_size)}",
                field=field,
                value=text,
                tick_size=self._format_price_units(self.tick_size),
            )
        return units // self.tick_size

    def format_price(self, ticks: int) -> str:
        """Ticks -> the canonical price string with ``price_places`` decimals."""
        return self._format_price_units(ticks * self.tick_size)

    def _format_price_units(self, units: int) -> str:
        """1e-8 price units (always a multiple of the tick) -> string with ``price_places``."""
        places = self.price_places
        return format_scaled(units // 10 ** (PRICE_PLACES - places), places)

    def check_price_ticks(self, ticks: int, *, field: str = "price") -> int:
        """An internal tick count must be a positive int no larger than ``max_price_ticks``."""
        if not isinstance(ticks, int) or isinstance(ticks, bool):
            raise TypeError(f"{field} ticks must be an int, got {type(ticks).__name__}")
        if ticks <= 0:
            raise VenueError(ErrorCode.BAD_PRICE, f"{field} must be positive", field=field)
        if ticks > self.max_price_ticks:
            raise VenueError(
                ErrorCode.ABSURD_VALUE, f"{field} is beyond the plausible maximum", field=field
            )
        return ticks

    def band_edges(self) -> tuple[int, int]:
        """(lower, upper) band edges in ticks, inclusive, rounded inward onto the grid.

        lower = ceil(ref * (10000 - bps) / 10000), at least 1; upper = floor(ref * (10000 + bps)
        / 10000), at most ``max_price_ticks``. Integer arithmetic only.
        """
        return _band_edges(self.reference_price, self.price_band_pct, self.max_price_ticks)

    def check_in_band(self, ticks: int, *, field: str = "price") -> int:
        """Refuse a price outside ``band_edges()`` with ``validation.price_out_of_band``."""
        lower, upper = self.band_edges()
        if not lower <= ticks <= upper:
            raise VenueError(
                ErrorCode.PRICE_OUT_OF_BAND,
                f"{field} {self.format_price(ticks)} is outside the band "
                f"[{self.format_price(lower)}, {self.format_price(upper)}]",
                field=field,
                lower=self.format_price(lower),
                upper=self.format_price(upper),
            )
        return ticks

    def market_limit_ticks(self, side: Side | str) -> int:
        """The limit a market order is converted to: buy -> upper band edge, sell -> lower.

        ``side`` is a ``Side`` or its value; anything else is a programmer error (``ValueError``):
        wire input goes through ``parse_side`` first.
        """
        lower, upper = self.band_edges()
        return upper if Side(side) is Side.BUY else lower

    # --- quantities and status ------------------------------------------------------------

    def check_qty(self, qty: int, *, field: str = "qty") -> int:
        """A quantity in units must be positive, plausible, >= min_qty and on the increment."""
        if not isinstance(qty, int) or isinstance(qty, bool):
            raise TypeError(f"{field} must be an int, got {type(qty).__name__}")
        if qty <= 0:
            raise VenueError(ErrorCode.BAD_QUANTITY, f"{field} must be positive", field=field)
        if qty > MAX_QTY:
            raise VenueError(
                ErrorCode.ABSURD_VALUE,
                f"{field} is beyond the plausible maximum {MAX_QTY}",
                field=field,
            )
        if qty < self.min_qty:
            raise VenueError(
                ErrorCode.QTY_BELOW_MIN,
                f"{field} {qty} is below the minimum {self.min_qty}",
                field=field,
                min_qty=format_quantity(self.min_qty),
            )
        if qty % self.qty_increment:
            raise VenueError(
                ErrorCode.QTY_OFF_INCREMENT,
                f"{field} {qty} is not a multiple of {self.qty_increment}",
                field=field,
                qty_increment=format_quantity(self.qty_increment),
            )
        return qty

    def check_open(self) -> None:
        """Refuse order entry on a halted instrument (``state.instrument_halted``)."""
        if self.status is not TradingStatus.OPEN:
            raise VenueError(
                ErrorCode.INSTRUMENT_HALTED, f"{self.symbol} is halted", symbol=self.symbol
            )

    # --- changes (each returns a new, re-validated Instrument) ----------------------------

    def with_factor(self, pool_factor: int) -> Instrument:
        """A new pool factor in micro-units, 0 < f <= 1_000_000 (``validation.bad_factor``)."""
        return dataclasses.replace(self, pool_factor=pool_factor)

    def with_status(self, status: TradingStatus | str) -> Instrument:
        """A new trading status (``TradingStatus`` or its wire string ``"open"``/``"halted"``)."""
        return dataclasses.replace(self, status=status)

    def with_reference_price(self, ticks: int) -> Instrument:
        """Move the band's centre (operator action, or the core after each last trade).

        This runs on every fill, so it checks only the one field that changes (the rest of the
        instrument is already valid) instead of re-validating everything through
        ``dataclasses.replace``: a field-by-field copy with ``reference_price`` set is the same
        value ``replace`` would build, at a small fraction of the cost.
        """
        self.check_price_ticks(ticks, field="reference_price")
        moved = object.__new__(Instrument)
        for name in _FIELD_NAMES:
            object.__setattr__(moved, name, getattr(self, name))
        object.__setattr__(moved, "reference_price", ticks)
        return moved

    def following_coupon_date(self) -> date:
        """The scheduled coupon date after ``next_coupon_date``.

        The schedule is anchored on ``maturity_date`` (coupon dates are maturity minus whole
        multiples of ``12 / coupon_frequency`` months; if maturity is a month end, every coupon
        date is a month end; a day that does not exist in a month becomes that month's last day),
        so it never drifts. Raises ``state.instrument_matured`` when the next coupon is the last.
        """
        if self.next_coupon_date >= self.maturity_date:
            raise VenueError(
                ErrorCode.INSTRUMENT_MATURED,
                f"{self.symbol} has no coupon after {self.next_coupon_date} (maturity)",
                symbol=self.symbol,
            )
        return following_coupon_date(self.next_coupon_date, self.maturity_date,
                                     self.coupon_frequency)  # fmt: skip

    def with_next_coupon_period(self) -> Instrument:
        """Roll the accrual period: accrual_start = next_coupon_date, next = the following date.

        The core applies this (as a recorded reference-data change) once the trade date reaches
        ``next_coupon_date``; pricing refuses dates outside the current period
        (``state.coupon_roll_required``) rather than guessing.
        """
        return dataclasses.replace(
            self,
            accrual_start=self.next_coupon_date,
            next_coupon_date=self.following_coupon_date(),
        )


_FIELD_NAMES = tuple(field.name for field in dataclasses.fields(Instrument))


_ENUM_FIELDS = (
    ("tranche_class", TrancheClass),
    ("day_count", DayCount),
    ("status", TradingStatus),
)
_WIRE_FIELDS = (
    "symbol",
    "isin",
    "deal_name",
    "tranche_class",
    "seniority_rank",
    "rating",
    "underlying",
    "currency",
    "face_per_unit",
    "pool_factor",
    "coupon_rate",
    "coupon_frequency",
    "day_count",
    "accrual_start",
    "next_coupon_date",
    "maturity_date",
    "tick_size",
    "min_qty",
    "qty_increment",
    "price_band_pct",
    "reference_price",
    "status",
)
_REQUIRED_WIRE_FIELDS = (
    "symbol",
    "deal_name",
    "tranche_class",
    "seniority_rank",
    "rating",
    "underlying",
    "coupon_rate",
    "coupon_frequency",
    "day_count",
    "accrual_start",
    "next_coupon_date",
    "maturity_date",
    "min_qty",
    "qty_increment",
    "price_band_pct",
    "reference_price",
)


@lru_cache(maxsize=1024)
def _band_edges(reference_price: int, band_bps: int, max_price_ticks: int) -> tuple[int, int]:
    """``Instrument.band_edges`` (its docstring), memoised: asked for every order, and the
    reference price moves only when a trade prints at another price."""
    lower = -((-reference_price * (10_000 - band_bps)) // 10_000)
    upper = reference_price * (10_000 + band_bps) // 10_000
    return max(lower, 1), min(upper, max_price_ticks)
