"""Refusals on the wire: RFC 9457 ``application/problem+json`` with the venue's stable codes.

The venue core refuses with :class:`venue.errors.VenueError` (a code, a message, details) and
knows nothing of HTTP; this module is the one place a code becomes a status. The status follows
the code's subsystem, with a few codes that name a missing thing answered 404 wherever they
arise, so that a client can branch on the status and log the code:

==============  ======  ===================================================================
subsystem       status  exceptions
==============  ======  ===================================================================
validation.*    400     unknown_instrument, unknown_participant, unknown_route,
                        unknown_key_id 404; method_not_allowed 405; body_too_large 413;
                        unsupported_media_type 415
risk.*          422
matching.*      409     unknown_order 404; not_order_owner 403
ledger.*        409     no_such_trade, no_such_block 404; bad_tree_size, bad_height 400
auth.*          401     insufficient_scope, forbidden 403; rate_limited 429
state.*         409     venue_unavailable 503; internal_error 500
==============  ======  ===================================================================

A problem document: ``type`` (a URI naming the code), ``title`` (the code's one-line meaning),
``status``, ``detail`` (what was wrong with *this* request), ``code``, ``instance`` (the request
path), ``field`` (the offending field, when there is one) and ``details`` (small facts: limits,
allowed values). Nothing in it echoes more than a short, sanitised piece of the request.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from venue.api.schemas import Problem
from venue.errors import ErrorCode, VenueError

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://abs-venue.example/problems/"

SUBSYSTEM_STATUS = {
    "validation": 400,
    "risk": 422,
    "matching": 409,
    "ledger": 409,
    "auth": 401,
    "state": 409,
}
CODE_STATUS = {
    ErrorCode.UNKNOWN_INSTRUMENT: 404,
    ErrorCode.UNKNOWN_PARTICIPANT: 404,
    ErrorCode.UNKNOWN_ROUTE: 404,
    ErrorCode.UNKNOWN_KEY_ID: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.BODY_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.UNKNOWN_ORDER: 404,
    ErrorCode.NOT_ORDER_OWNER: 403,
    ErrorCode.NO_SUCH_TRADE: 404,
    ErrorCode.NO_SUCH_BLOCK: 404,
    ErrorCode.BAD_TREE_SIZE: 400,
    ErrorCode.BAD_HEIGHT: 400,
    ErrorCode.INSUFFICIENT_SCOPE: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.VENUE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL_ERROR: 500,
}


def status_of(code: ErrorCode) -> int:
    """The HTTP status a refusal with ``code`` is answered with (the table above)."""
    return CODE_STATUS.get(code) or SUBSYSTEM_STATUS[code.subsystem]


def _safe(value: Any, depth: int = 0) -> Any:
    """A JSON-safe, short copy of a detail value: strings cut to 80 characters with anything
    that is not printable (lone surrogates, controls) escaped; other scalars as they are."""
    if isinstance(value, str):
        if not value.isprintable():
            value = value.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
            value = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in value)
        return value if len(value) <= 80 else value[:77] + "..."
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, list | tuple) and depth < 2:
        return [_safe(item, depth + 1) for item in value[:20]]
    if isinstance(value, dict) and depth < 2:
        return {str(key): _safe(item, depth + 1) for key, item in list(value.items())[:20]}
    return _safe(str(value))


def problem(error: VenueError, instance: str) -> tuple[int, bytes]:
    """``(status, body)`` of the problem document for ``error`` at path ``instance``."""
    status = status_of(error.code)
    details = {key: _safe(value) for key, value in error.details.items()}
    field = details.pop("field", None)
    document = Problem(
        type=PROBLEM_TYPE_BASE + error.code.value,
        title=error.code.meaning,
        status=status,
        detail=_safe(error.message),
        code=error.code.value,
        instance=_safe(instance),
        field=field if isinstance(field, str) else None,
        details=details,
    )
    return status, msgspec.json.encode(document)


# msgspec's validation messages: "Expected `str`, got `int` - at `$.price`",
# "Object missing required field `qty`", "Object contains unknown field `foo`".
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_NAMED = re.compile(r"field `([^`]*)`")
# The code a wrongly formed field gets: the one the venue core gives the same mistake.
FIELD_CODES = {
    "price": ErrorCode.BAD_PRICE,
    "reference_price": ErrorCode.BAD_PRICE,
    "qty": ErrorCode.BAD_QUANTITY,
    "side": ErrorCode.BAD_SIDE,
    "symbol": ErrorCode.BAD_SYMBOL,
    "amount": ErrorCode.BAD_AMOUNT,
    "pool_factor": ErrorCode.BAD_FACTOR,
    "participant": ErrorCode.BAD_PARTICIPANT,
    "participant_id": ErrorCode.BAD_PARTICIPANT,
    "name": ErrorCode.BAD_PARTICIPANT,
    "isin": ErrorCode.BAD_ISIN,
    "public_key": ErrorCode.BAD_PUBLIC_KEY,
    "accrual_start": ErrorCode.BAD_DATE,
    "next_coupon_date": ErrorCode.BAD_DATE,
    "maturity_date": ErrorCode.BAD_DATE,
}


def validation_error(error: msgspec.ValidationError, where: str) -> VenueError:
    """The refusal of a body or query msgspec did not accept, naming the field.

    ``where`` is ``"body"`` or ``"query"``.
    """
    message = str(error)
    if "unknown field" in message:
        named = _NAMED.search(message)
        field = named.group(1) if named else None
        return VenueError(
            ErrorCode.UNKNOWN_FIELD,
            f"the {where} carries a field this operation does not accept",
            field=field,
        )
    if "missing required field" in message:
        named = _NAMED.search(message)
        field = named.group(1) if named else None
        return VenueError(
            ErrorCode.BAD_PARAMETER, f"the {where} lacks the required field {field}", field=field
        )
    at = _AT.search(message)
    field = at.group(1) if at else None
    top = field.split(".", 1)[0].split("[", 1)[0] if field else None
    code = FIELD_CODES.get(top or "", ErrorCode.BAD_PARAMETER)
    reason = _AT.sub("", message) if at else message
    if field is None:
        return VenueError(ErrorCode.BAD_PARAMETER, f"the {where} must be a JSON object: {reason}")
    return VenueError(code, f"{field}: {reason}", field=field)
