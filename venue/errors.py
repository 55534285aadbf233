"""Business rejections: one exception type with a stable, documented machine code.

Every refusal of *input* (a bad price, an unknown instrument, too little cash, a missing scope) is a
``VenueError`` carrying an ``ErrorCode``. The code is a dotted string grouped by the subsystem that
refuses: ``validation.*`` (the request is malformed or violates reference data), ``risk.*`` (the
participant cannot afford it), ``matching.*`` (order-state rules), ``ledger.*`` (what the ledger
refuses or cannot find: blocks, trades, proofs, keys), ``auth.*`` (who may do what) and
``state.*`` (the venue's current state forbids it). Codes are part of the public API: never rename
one, only add. ``ErrorCode.meaning`` is a one-line explanation the API layer can publish, and
``ErrorCode.subsystem`` the group it can map to an HTTP status (HTTP itself lives only in
``venue/api``).

One registry: the ``ledger.*`` members are not written out here but taken from the ledger's own
table (``ledger.errors.LEDGER_CODES``), so that every code the ledger raises is registered exactly
once, with the meaning the ledger gives it. (The dependency goes venue -> ledger only.)

Programmer errors (a wrong type passed between our own modules, a broken invariant) are *not*
``VenueError``: they raise ``TypeError``/``ValueError``/``AssertionError`` as usual, so a bug is
never reported to a client as their mistake.

Public API::

    class ErrorCode(StrEnum)        # value = the dotted code; .meaning, .subsystem
    class VenueError(Exception)     # VenueError(code, message, **details); .code .message .details
                                    # code: ErrorCode or a registered code string
        .to_dict() -> {"code": str, "message": str, "details": dict}
    ERROR_CODES: dict[str, str]     # every code -> its one-line meaning (for docs / OpenAPI)
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from ledger.errors import LEDGER_CODES


class ErrorCode(StrEnum):
    """Every stable rejection code, with a one-line meaning.

    The member value is the wire code (e.g. ``"validation.price_off_tick"``); ``meaning`` is the
    human explanation. Grouped by subsystem; the prefix before the dot is ``subsystem``.
    """

    _ignore_ = "_members _code _meaning"  # the loop variables of the ledger section below
    meaning: str

    def __new__(cls, code: str, meaning: str) -> ErrorCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.meaning = meaning
        return member

    @property
    def subsystem(self) -> str:
        """The group before the dot: validation, risk, matching, ledger, auth or state."""
        return self.value.split(".", 1)[0]

    # --- validation: the request itself is malformed or breaks reference data ---------------
    BAD_PARAMETER = (
        "validation.bad_parameter",
        "A parameter is missing, of the wrong type or not one of the allowed values.",
    )
    UNKNOWN_FIELD = (
        "validation.unknown_field",
        "The request carries a field this operation does not accept.",
    )
    ABSURD_VALUE = (
        "validation.absurd_value",
        "A number is far outside any plausible range (too large or too many digits).",
    )
    BAD_DECIMAL = (
        "validation.bad_decimal",
        "A decimal string is malformed (digits, optional '-', at most the allowed places).",
    )
    BAD_AMOUNT = (
        "validation.bad_amount",
        "A cash amount is not a positive CNY decimal string with at most 2 places.",
    )
    BAD_PRICE = ("validation.bad_price", "A price is not a positive decimal string.")
    PRICE_OFF_TICK = (
        "validation.price_off_tick",
        "A price is not a whole multiple of the instrument's tick size.",
    )
    PRICE_OUT_OF_BAND = (
        "validation.price_out_of_band",
        "A price lies outside the instrument's price band around its reference price.",
    )
    BAD_QUANTITY = (
        "validation.bad_quantity",
        "A quantity is not a positive whole number of units.",
    )
    QTY_BELOW_MIN = (
        "validation.qty_below_min",
        "A quantity is below the instrument's minimum quantity.",
    )
    QTY_OFF_INCREMENT = (
        "validation.qty_off_increment",
        "A quantity is not a whole multiple of the instrument's quantity increment.",
    )
    BAD_DATE = (
        "validation.bad_date",
        "A date is not an ISO 8601 calendar date (YYYY-MM-DD) or is out of order.",
    )
    BAD_FACTOR = (
        "validation.bad_factor",
        "A pool factor is not a decimal in (0, 1] with at most 6 places.",
    )
    BAD_RATE = (
        "validation.bad_rate",
        "A coupon rate, fee rate or band percentage is malformed or out of range.",
    )
    BAD_FEE_SCHEDULE = (
        "validation.bad_fee_schedule",
        "A fee schedule could pay out net on a fill (some maker rebate exceeds some taker fee).",
    )
    BAD_SYMBOL = (
        "validation.bad_symbol",
        "An instrument symbol is not 1-32 upper-case letters, digits and single hyphens.",
    )
    BAD_ISIN = ("validation.bad_isin", "An ISIN is malformed or its check digit is wrong.")
    BAD_REFERENCE_DATA = (
        "validation.bad_reference_data",
        "An instrument field is malformed or inconsistent with another field.",
    )
    BAD_PARTICIPANT = (
        "validation.bad_participant",
        "A participant id, name, segment or role is malformed or inconsistent.",
    )
    BAD_SIDE = ("validation.bad_side", "An order side is not 'buy' or 'sell'.")
    UNKNOWN_INSTRUMENT = (
        "validation.unknown_instrument",
        "No instrument is listed under that symbol.",
    )
    UNKNOWN_PARTICIPANT = (
        "validation.unknown_participant",
        "No participant is admitted under that id.",
    )
    MALFORMED_JSON = (
        "validation.malformed_json",
        "The request body is not one well-formed UTF-8 JSON document.",
    )
    BODY_TOO_LARGE = (
        "validation.body_too_large",
        "The request body is larger than the venue accepts.",
    )
    UNSUPPORTED_MEDIA_TYPE = (
        "validation.unsupported_media_type",
        "The request body is not declared as application/json.",
    )
    UNKNOWN_ROUTE = ("validation.unknown_route", "No endpoint has this path.")
    METHOD_NOT_ALLOWED = (
        "validation.method_not_allowed",
        "The endpoint exists but does not accept this HTTP method.",
    )
    BAD_PUBLIC_KEY = (
        "validation.bad_public_key",
        "An Ed25519 public key is not 64 hexadecimal characters encoding a valid key.",
    )
    UNKNOWN_KEY_ID = (
        "validation.unknown_key_id",
        "No API key with this id is registered (never issued, or already revoked).",
    )
    BAD_ASSET_LINE = (
        "validation.bad_asset_line",
        "A servicer's tape line is malformed or breaks a status rule (venue/domain/disclosures).",
    )
    BAD_POOL_REPORT = (
        "validation.bad_pool_report",
        "A pool report is malformed, or its tape gives another root, asset count or totals.",
    )
    BAD_REPORT_SIGNATURE = (
        "validation.bad_report_signature",
        "The servicer's Ed25519 signature over a pool report does not verify with the deal's key.",
    )
    BAD_DEAL_TERMS = (
        "validation.bad_deal_terms",
        "A deal's terms (tranches, fees, priority of payments) are malformed or inconsistent.",
    )
    UNKNOWN_DEAL = ("validation.unknown_deal", "No deal with this id is listed.")
    UNITS_BEYOND_ISSUE = (
        "validation.units_beyond_issue",
        "The venue would hold more units of a deal's tranche than the deal has on issue.",
    )

    # --- risk: the participant cannot afford it -------------------------------------------
    INSUFFICIENT_CASH = (
        "risk.insufficient_cash",
        "Available cash does not cover the reservation or withdrawal (no overdraft).",
    )
    INSUFFICIENT_UNITS = (
        "risk.insufficient_units",
        "Available units do not cover the sell order (no short selling).",
    )
    MMP_TRIGGERED = (
        "risk.mmp_triggered",
        "Market maker protection pulled this participant's quotes in the instrument; no new "
        "quotes there until it is reset (mmp.reset).",
    )

    # --- matching: order-state rules -------------------------------------------------------
    DUPLICATE_CLIENT_ORDER_ID = (
        "matching.duplicate_client_order_id",
        "This client_order_id was already used by this participant with a different order body.",
    )
    DUPLICATE_ORDER_ID = (
        "matching.duplicate_order_id",
        "An order with this id is already resting.",
    )
    UNKNOWN_ORDER = (
        "matching.unknown_order",
        "No open order with this id (never existed, or already filled, cancelled or expired).",
    )
    NOT_ORDER_OWNER = ("matching.not_order_owner", "The order belongs to another participant.")
    POST_ONLY_WOULD_CROSS = (
        "matching.post_only_would_cross",
        "A post-only order (or replace) would take liquidity.",
    )
    NO_CHANGE = ("matching.no_change", "A replace asks for neither a new price nor a new quantity.")
    BAD_QUOTE = (
        "matching.bad_quote",
        "A mass quote's levels are malformed: too many, out of order, crossed, or empty.",
    )

    # --- ledger: every ledger.* code, derived from the ledger's own registry --------------------
    # ledger/errors.py's LEDGER_CODES defines them (the ledger raises them and owns their
    # meanings); each becomes a member named after its part behind the dot, upper-cased, e.g.
    # ledger.no_such_trade -> NO_SUCH_TRADE. A name clash with a member above fails at import.
    _members = vars()
    for _code, _meaning in LEDGER_CODES.items():
        _members[_code.split(".", 1)[1].upper()] = (_code, _meaning)

    # --- auth: who may do what ---------------------------------------------------------------
    MISSING_CREDENTIALS = (
        "auth.missing_credentials",
        "The request carries no API key, timestamp or signature.",
    )
    UNKNOWN_API_KEY = ("auth.unknown_api_key", "The API key is not known or has been revoked.")
    BAD_SIGNATURE = ("auth.bad_signature", "The request signature does not match the request.")
    STALE_TIMESTAMP = (
        "auth.stale_timestamp",
        "The request timestamp is outside the accepted clock window.",
    )
    REPLAYED_REQUEST = ("auth.replayed_request", "This signed request was already received.")
    INSUFFICIENT_SCOPE = (
        "auth.insufficient_scope",
        "The API key lacks the scope this operation needs.",
    )
    FORBIDDEN = ("auth.forbidden", "The participant may not act on this resource.")
    RATE_LIMITED = ("auth.rate_limited", "Too many requests for this API key; retry later.")

    # --- state: the venue's current state forbids it ------------------------------------------
    INSTRUMENT_HALTED = ("state.instrument_halted", "Trading in the instrument is halted.")
    INSTRUMENT_MATURED = (
        "state.instrument_matured",
        "The trade date is on or after the instrument's maturity date.",
    )
    INSTRUMENT_NOT_STARTED = (
        "state.instrument_not_started",
        "The trade date is before the instrument's first accrual start.",
    )
    COUPON_ROLL_REQUIRED = (
        "state.coupon_roll_required",
        "The trade date is past the instrument's current coupon period; roll it first.",
    )
    COUPON_ROLL_NOT_DUE = (
        "state.coupon_roll_not_due",
        "The instrument's current coupon period still contains the trade date.",
    )
    VENUE_UNAVAILABLE = (
        "state.venue_unavailable",
        "The venue stopped accepting commands after an internal failure (journal/ledger).",
    )
    INSTRUMENT_EXISTS = (
        "state.instrument_exists",
        "An instrument with this symbol is already listed.",
    )
    PARTICIPANT_EXISTS = (
        "state.participant_exists",
        "A participant with this id is already admitted.",
    )
    PARTICIPANT_CANNOT_TRADE = (
        "state.participant_cannot_trade",
        "The participant's role (clerk, operator) does not trade.",
    )
    DEAL_EXISTS = (
        "state.deal_exists",
        "A deal with this id, or with one of its tranches, is listed.",
    )
    REPORT_OUT_OF_SEQUENCE = (
        "state.report_out_of_sequence",
        "A pool report or distribution is not for the deal's next period (reports and "
        "distributions alternate, one period at a time).",
    )
    DISTRIBUTION_NOT_DUE = (
        "state.distribution_not_due",
        "The payment date is before the end of the reported collection period.",
    )
    FACTOR_FROM_WATERFALL = (
        "state.factor_from_waterfall",
        "The tranche belongs to a listed deal: its pool factor comes from the waterfall.",
    )
    FULL_REDEMPTION_UNSUPPORTED = (
        "state.full_redemption_unsupported",
        "The distribution would repay a tranche in full; retiring its units is not built yet.",
    )
    INTERNAL_ERROR = (
        "state.internal_error",
        "The venue failed to answer because of a fault of its own (never the request's).",
    )


ERROR_CODES: dict[str, str] = {code.value: code.meaning for code in ErrorCode}
"""Every code -> its one-line meaning, in declaration order (for docs, OpenAPI and tests)."""


class VenueError(Exception):
    """A business rejection: the input was refused and nothing changed.

    ``code`` is an ``ErrorCode`` (or its registered string value; stable, machine-readable),
    ``message`` says in plain words what was wrong with *this* input, ``details`` holds small
    JSON-safe facts (the field, the limit).
    """

    def __init__(self, code: ErrorCode | str, message: str, **details: Any) -> None:
        # A plain string must be a registered code: ErrorCode(code) raises ValueError otherwise,
        # so an unregistered code is caught as the programmer error it is.
        code = ErrorCode(code)
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe body the API layer puts into its problem document."""
        return {"code": self.code.value, "message": self.message, "details": dict(self.details)}

    def __repr__(self) -> str:
        return f"VenueError({self.code.value!r}, {self.message!r}, details={self.details!r})"
