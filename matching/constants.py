"""The matching-engine contract: constants, event shapes and rules shared by both books.

Both implementations -- the compiled ``matching._book.OrderBook`` and the pure-Python
``matching.reference.OrderBook`` -- follow this text exactly; the differential tests hold them to
it. The engine knows integers only: prices are positive integer ticks, quantities positive integer
units, ids and owners plain integers. It knows nothing of money, participants or I/O.

Value ranges
------------
``order_id``: 1 .. 2**63-1.  ``owner``: 0 .. 2**63-1 (0 = "no owner": self-trade prevention never
applies).  ``price``: 1 .. 2**63-1.  ``qty``: 1 .. 2**63-1.  ``side`` in {BUY, SELL}; ``tif`` in
{GTC, DAY, IOC, FOK}; ``stp`` in {CANCEL_TAKER, CANCEL_MAKER, CANCEL_BOTH}; ``post_only`` a bool.
An integer outside its range is a *rejection* (an event), never an exception and never a change
to the book. A value that is not an ``int`` (or ``bool`` for ``post_only``) is a programmer error
and raises ``TypeError``. Aggregates (level totals, FOK liquidity sums) must not overflow.

Events
------
``submit``, ``replace``, ``cancel`` and ``expire_day`` return a ``list`` of event tuples, in the
order they happened:

    (FILL, maker_id, taker_id, price, qty)          a trade, at the maker's price
    (RESTED, order_id, price, qty)                  the order now rests with ``qty`` remaining
    (FILLED, order_id)                              the order is completely filled (maker or taker)
    (CANCELLED, order_id, reason, qty)              ``qty`` = the remaining quantity removed
    (REJECTED, order_id, reason)                    nothing changed
    (REPLACED, order_id, price, qty, kept_priority) a replace was accepted; kept_priority is 0/1

A maker filled completely gets its ``(FILLED, maker_id)`` right after the ``FILL`` that finished it.

Submit: ``submit(order_id, side, price, qty, tif=GTC, owner=0, post_only=False, stp=CANCEL_TAKER)``
--------------------------------------------------------------------------------------------------
Checks, in this order, the first failure giving ``[(REJECTED, order_id, reason)]``:
 1. order_id out of range -> BAD_PARAMETER
 2. order_id resting in the book -> DUPLICATE_ID (an id no longer resting may be reused)
 3. side, tif, stp or owner out of range -> BAD_PARAMETER
 4. price out of range -> BAD_PRICE
 5. qty out of range -> BAD_QTY
 6. post_only and the price crosses the opposite best (buy price >= best ask, sell price <= best
    bid), whoever owns that liquidity -> POST_ONLY_WOULD_CROSS
Then, for FOK only: the liquidity it may trade with is counted before anything changes, walking
the crossing resting orders in priority order. A self order (same nonzero owner) ends the count for
CANCEL_TAKER and CANCEL_BOTH (matching would stop there) and is skipped for CANCEL_MAKER. If that
liquidity is less than qty: ``[(CANCELLED, id, FOK_UNFILLABLE, qty)]`` and nothing else happens.
Matching: walk the opposite side best price first, FIFO within a price, while the order crosses and
has quantity left. For each resting order met:
 - not a self match: trade ``min(remaining, maker_qty)`` at the maker's price -> FILL (+ FILLED for
   a finished maker);
 - a self match (``owner != 0 and maker owner == owner``), by the *incoming* order's stp:
   CANCEL_TAKER: ``(CANCELLED, taker, SELF_TRADE, remaining)``; matching stops; the taker is gone.
   CANCEL_MAKER: ``(CANCELLED, maker, SELF_TRADE, maker_qty)``; the maker is removed; go on.
   CANCEL_BOTH: ``(CANCELLED, maker, SELF_TRADE, maker_qty)`` then
   ``(CANCELLED, taker, SELF_TRADE, remaining)``; matching stops.
   Fills made before the self match stand.
Afterwards, unless the taker was cancelled by self-trade prevention: remaining 0 ->
``(FILLED, id)``; IOC -> ``(CANCELLED, id, IOC_REMAINDER, remaining)``; GTC/DAY ->
``(RESTED, id, price, remaining)`` at the back of its price level.

Replace: ``replace(order_id, price, qty)``  (qty = the new *remaining* quantity)
-------------------------------------------------------------------------------
Checks, first failure -> ``[(REJECTED, order_id, reason)]`` and the order stays exactly as it was:
order_id not resting -> UNKNOWN_ID; price out of range -> BAD_PRICE; qty out of range -> BAD_QTY.
 - Same price and qty <= current remaining: amended in place, time priority kept ->
   ``[(REPLACED, id, price, qty, 1)]``.
 - Otherwise (price change or quantity increase): if the order is post-only and the new price
   crosses the opposite best -> REJECTED POST_ONLY_WOULD_CROSS, order unchanged. Else the order
   leaves the book, ``(REPLACED, id, price, qty, 0)`` is emitted, and it is matched exactly like a
   fresh submit with the same id and the order's own tif, owner, post_only and stp (no FOK/IOC
   here: only GTC/DAY orders rest), ending in RESTED (at the back of the level), FILLED or a
   self-trade CANCELLED.

Cancel and expiry
-----------------
``cancel(order_id)``: resting -> ``[(CANCELLED, id, USER_CANCEL, remaining)]``; otherwise
``[(REJECTED, id, UNKNOWN_ID)]``.
``expire_day()``: every resting DAY order is removed, ``(CANCELLED, id, EXPIRED, remaining)`` each,
in canonical order (below).

Queries
-------
``best_bid()`` / ``best_ask()``: price or ``None``.  ``depth(levels)``: ``(bids, asks)``, each a
list of ``(price, total_qty, order_count)`` best first, at most ``levels`` each.
``get(order_id)``: ``(side, price, qty, owner, tif, stp, post_only)`` of a resting order or
``None``.  ``len(book)``: resting order count.  ``validate()``: raises ``IntegrityError`` naming
the first broken invariant.

Canonical order, state hash, snapshot
-------------------------------------
Canonical order = bids best (highest) price first, FIFO within a level; then asks best (lowest)
price first, FIFO within a level. ``snapshot()`` returns a list of
``(side, order_id, price, qty, owner, tif, stp, post_only)`` in canonical order (post_only as 0/1);
``OrderBook.restore(snapshot)`` rebuilds exactly that book (time priority included) and is
interchangeable between implementations. ``state_hash()`` = lowercase hex SHA-256 of the
concatenation over canonical order of ``struct.pack("<BqqqqBBB", side, order_id, price, qty, owner,
tif, stp, post_only)``: a function of the resting orders and their priority alone.
"""

BUY = 0
SELL = 1

GTC = 0
DAY = 1
IOC = 2
FOK = 3

CANCEL_TAKER = 0
CANCEL_MAKER = 1
CANCEL_BOTH = 2

# Event kinds: the first element of every event tuple.
FILL = 0
RESTED = 1
FILLED = 2
CANCELLED = 3
REJECTED = 4
REPLACED = 5

# Reasons carried by CANCELLED events.
USER_CANCEL = 1
IOC_REMAINDER = 2
FOK_UNFILLABLE = 3
SELF_TRADE = 4
EXPIRED = 5
# Reasons carried by REJECTED events.
POST_ONLY_WOULD_CROSS = 6
DUPLICATE_ID = 7
UNKNOWN_ID = 8
BAD_PRICE = 9
BAD_QTY = 10
BAD_PARAMETER = 11

MAX_INT64 = 2**63 - 1

REASON_NAMES = {
    USER_CANCEL: "user_cancel",
    IOC_REMAINDER: "ioc_remainder",
    FOK_UNFILLABLE: "fok_unfillable",
    SELF_TRADE: "self_trade",
    EXPIRED: "expired",
    POST_ONLY_WOULD_CROSS: "post_only_would_cross",
    DUPLICATE_ID: "duplicate_id",
    UNKNOWN_ID: "unknown_id",
    BAD_PRICE: "bad_price",
    BAD_QTY: "bad_qty",
    BAD_PARAMETER: "bad_parameter",
}


class IntegrityError(Exception):
    """Raised by ``OrderBook.validate()`` when a book invariant is broken (a bug, never input)."""
