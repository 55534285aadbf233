"""Decimal strings <-> integers, at the edge only: cash, prices, rates, factors, quantities, dates.

Inside the venue every price, quantity and amount is an ``int`` (fen, ticks, units, micro-units);
the wire carries canonical decimal strings. This module is the one place that converts between
them, strictly, so that nothing downstream ever sees a float or a half-parsed value.

Accepted decimal syntax (``parse_scaled``): an optional ``-`` (only where negatives are allowed),
then ``0`` or digits without a leading zero, then optionally ``.`` and one or more digits, at most
``places`` of them. Nothing else: no ``+``, no exponent, no ``NaN``/``Infinity``, no whitespace,
no ``_`` separators, no ``.5``/``5.``, no non-ASCII digits, no floats or ints in place of strings,
no ``-0``. Too many places is refused (never rounded), and so is a magnitude above the caller's
limit (``validation.absurd_value``) -- including before any arithmetic, by capping text length.

Conversions are exact integer arithmetic; ``Decimal`` and ``float`` are not used at all.

Public API::

    CENTS_PER_YUAN = 100                    # fen per CNY
    MAX_CASH_FEN = 10**16                   # 100 trillion CNY: any larger cash figure is absurd
    MAX_QTY = 10**10                        # units: any larger quantity is absurd
    parse_scaled(text, *, places, field, code, max_abs,
                 allow_negative=False, allow_zero=False) -> int
    format_scaled(value: int, places: int) -> str
    parse_cny(text, *, field="amount", allow_zero=False, allow_negative=False) -> int   # fen
    format_cny(fen: int) -> str                                                         # "1234.50"
    parse_quantity(text, *, field="qty") -> int                                         # units
    format_quantity(units: int) -> str
    parse_iso_date(text, *, field) -> datetime.date
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import TypeVar

from venue.errors import ErrorCode, VenueError

_E = TypeVar("_E", bound=StrEnum)


def parse_enum(enum_type: type[_E], value: object, field: str, code: ErrorCode) -> _E:
    """Wire string -> enum member, or ``code``. Only exact member values are accepted."""
    if isinstance(value, str):
        try:
            return enum_type(value)
        except ValueError:
            pass
    allowed = ", ".join(member.value for member in enum_type)
    raise VenueError(code, f"{field} must be one of: {allowed}", field=field, allowed=allowed)


CENTS_PER_YUAN = 100
MAX_CASH_FEN = 10**16
MAX_QTY = 10**10
MAX_DECIMAL_TEXT_LENGTH = 40  # longer than any plausible figure; refused before any arithmetic

_DECIMAL = re.compile(r"(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?")
_QUANTITY = re.compile(r"[1-9][0-9]*|0")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _shown(value: object) -> str:
    """A short, safe rendering of a rejected value for error details (never echo a huge blob)."""
    text = value if isinstance(value, str) else f"<{type(value).__name__}>"
    return text if len(text) <= 48 else text[:45] + "..."


def parse_scaled(
    text: object,
    *,
    places: int,
    field: str,
    code: ErrorCode,
    max_abs: int,
    allow_negative: bool = False,
    allow_zero: bool = False,
) -> int:
    """Parse a strict decimal string into ``value * 10**places`` as an exact ``int``.

    ``code`` is the error code for malformed input (wrong type, bad syntax, too many places, a
    sign or zero that is not allowed); a magnitude above ``max_abs`` (in scaled units) raises
    ``validation.absurd_value``. Example: ``parse_scaled("12.5", places=2, ...) == 1250``.
    """
    if not isinstance(text, str):
        raise VenueError(code, f"{field} must be a decimal string", field=field, value=_shown(text))
    if len(text) > MAX_DECIMAL_TEXT_LENGTH:
        raise VenueError(
            ErrorCode.ABSURD_VALUE, f"{field} is absurdly long", field=field, value=_shown(text)
        )
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise VenueError(code, f"{field} is not a plain decimal string", field=field, value=text)
    sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
    if len(fraction) > places:
        raise VenueError(
            code, f"{field} has more than {places} decimal places", field=field, value=text
        )
    magnitude = int(whole + fraction.ljust(places, "0"))
    if sign and (not allow_negative or magnitude == 0):
        raise VenueError(code, f"{field} must not be negative", field=field, value=text)
    if magnitude == 0 and not allow_zero:
        raise VenueError(code, f"{field} must not be zero", field=field, value=text)
    if magnitude > max_abs:
        raise VenueError(
            ErrorCode.ABSURD_VALUE,
            f"{field} is beyond the plausible maximum {format_scaled(max_abs, places)}",
            field=field,
            value=text,
        )
    return -magnitude if sign else magnitude


def format_scaled(value: int, places: int) -> str:
    """The canonical decimal string of ``value / 10**places`` with exactly ``places`` places."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"format_scaled needs an int, got {type(value).__name__}")
    sign = "-" if value < 0 else ""
    digits = str(abs(value)).rjust(places + 1, "0")
    if places == 0:
        return sign + digits
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def parse_cny(
    text: object, *, field: str = "amount", allow_zero: bool = False, allow_negative: bool = False
) -> int:
    """A CNY decimal string with at most 2 places -> integer fen. ``"1234.5"`` -> ``123450``."""
    return parse_scaled(
        text,
        places=2,
        field=field,
        code=ErrorCode.BAD_AMOUNT,
        max_abs=MAX_CASH_FEN,
        allow_negative=allow_negative,
        allow_zero=allow_zero,
    )


def format_cny(fen: int) -> str:
    """Integer fen -> the canonical CNY string, exactly 2 places: ``123450`` -> ``"1234.50"``."""
    return format_scaled(fen, 2)


def parse_quantity(text: object, *, field: str = "qty") -> int:
    """A quantity string of whole units (``"1500"``) -> a positive ``int``, at most ``MAX_QTY``.

    Instrument rules (minimum, increment) are checked by ``Instrument.check_qty``, not here.
    """
    if not isinstance(text, str):
        raise VenueError(
            ErrorCode.BAD_QUANTITY,
            f"{field} must be a string of digits",
            field=field,
            value=_shown(text),
        )
    if len(text) > MAX_DECIMAL_TEXT_LENGTH:
        raise VenueError(
            ErrorCode.ABSURD_VALUE, f"{field} is absurdly long", field=field, value=_shown(text)
        )
    if _QUANTITY.fullmatch(text) is None or text == "0":
        raise VenueError(
            ErrorCode.BAD_QUANTITY,
            f"{field} must be a positive whole number of units",
            field=field,
            value=text,
        )
    units = int(text)
    if units > MAX_QTY:
        raise VenueError(
            ErrorCode.ABSURD_VALUE,
            f"{field} is beyond the plausible maximum {MAX_QTY}",
            field=field,
            value=text,
        )
    return units


def format_quantity(units: int) -> str:
    """Units -> the wire string (plain digits)."""
    return format_scaled(units, 0)


def parse_iso_date(text: object, *, field: str) -> date:
    """A strict ``YYYY-MM-DD`` string -> ``date`` (no week dates, no times, no compact form)."""
    if not isinstance(text, str) or _ISO_DATE.fullmatch(text) is None:
        raise VenueError(
            ErrorCode.BAD_DATE,
            f"{field} must be a date YYYY-MM-DD",
            field=field,
            value=_shown(text),
        )
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise VenueError(
            ErrorCode.BAD_DATE, f"{field} is not a real calendar date", field=field, value=text
        ) from None
