"""The matching engine: one price-time-priority order book per instrument, integers only.

``OrderBook`` is the compiled book (``matching._book``, Cython) when it was built, else the
pure-Python reference book (``matching.reference``). ``IMPLEMENTATION`` says which: ``"c"`` or
``"py"``. Falling back is never silent: ``COMPILED_IMPORT_ERROR`` keeps the reason, the test suite
fails when the extension is missing unless the build was explicitly made without it
(``VENUE_NO_EXTENSIONS=1``), and ``venue serve`` refuses the fallback unless told to allow it.

The full contract (events, rules, ranges) is in ``matching/constants.py``.
"""

from matching.constants import (
    BAD_PARAMETER,
    BAD_PRICE,
    BAD_QTY,
    BUY,
    CANCEL_BOTH,
    CANCEL_MAKER,
    CANCEL_TAKER,
    CANCELLED,
    DAY,
    DUPLICATE_ID,
    EXPIRED,
    FILL,
    FILLED,
    FOK,
    FOK_UNFILLABLE,
    GTC,
    IOC,
    IOC_REMAINDER,
    MAX_INT64,
    POST_ONLY_WOULD_CROSS,
    REASON_NAMES,
    REJECTED,
    REPLACED,
    RESTED,
    SELF_TRADE,
    SELL,
    UNKNOWN_ID,
    USER_CANCEL,
    IntegrityError,
)
from matching.reference import OrderBook as ReferenceOrderBook

COMPILED_IMPORT_ERROR: ImportError | None = None
try:
    from matching._book import OrderBook
except ImportError as exc:  # the extension was not built; see module docstring
    COMPILED_IMPORT_ERROR = exc
    OrderBook = ReferenceOrderBook
    IMPLEMENTATION = "py"
else:
    IMPLEMENTATION = "c"

__all__ = [
    "BAD_PARAMETER",
    "BAD_PRICE",
    "BAD_QTY",
    "BUY",
    "CANCELLED",
    "CANCEL_BOTH",
    "CANCEL_MAKER",
    "CANCEL_TAKER",
    "COMPILED_IMPORT_ERROR",
    "DAY",
    "DUPLICATE_ID",
    "EXPIRED",
    "FILL",
    "FILLED",
    "FOK",
    "FOK_UNFILLABLE",
    "GTC",
    "IMPLEMENTATION",
    "IOC",
    "IOC_REMAINDER",
    "MAX_INT64",
    "POST_ONLY_WOULD_CROSS",
    "REASON_NAMES",
    "REJECTED",
    "REPLACED",
    "RESTED",
    "SELF_TRADE",
    "SELL",
    "UNKNOWN_ID",
    "USER_CANCEL",
    "IntegrityError",
    "OrderBook",
    "ReferenceOrderBook",
]
