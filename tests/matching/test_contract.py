"""The engine contract (``matching/constants.py``), rule by rule, against both books.

Expected events are written out by hand as literal tuples, so these tests check the contract
itself rather than one implementation against the other. Every command goes through
``CheckedBook``, which runs ``validate()`` after it.
"""

from __future__ import annotations

import hashlib
import struct
from decimal import Decimal

import pytest

from matching import (
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
    REJECTED,
    REPLACED,
    RESTED,
    SELF_TRADE,
    SELL,
    UNKNOWN_ID,
    USER_CANCEL,
)
from tests.matching.conftest import CheckedBook, compiled_book_class, reference_book_class

EMPTY_HASH = hashlib.sha256(b"").hexdigest()


def book_state(book) -> tuple:
    """Everything observable about the resting orders, to assert "nothing changed"."""
    return (
        book.snapshot(),
        book.state_hash(),
        len(book),
        book.best_bid(),
        book.best_ask(),
        book.depth(1000),
    )


def fill_book(book, orders) -> None:
    """Rest ``(order_id, side, price, qty, owner)`` orders that must not cross anything."""
    for order_id, side, price, qty, owner in orders:
        assert book.submit(order_id, side, price, qty, owner=owner) == [
            (RESTED, order_id, price, qty)
        ]


# --------------------------------------------------------------------------- empty / one-sided


def test_empty_book_queries(book):
    assert len(book) == 0
    assert book.best_bid() is None
    assert book.best_ask() is None
    assert book.depth(5) == ([], [])
    assert book.get(1) is None
    assert book.snapshot() == []
    assert book.state_hash() == EMPTY_HASH
    assert book.expire_day() == []


def test_empty_book_cancel_and_replace_are_unknown(book):
    assert book.cancel(1) == [(REJECTED, 1, UNKNOWN_ID)]
    assert book.replace(1, 100, 5) == [(REJECTED, 1, UNKNOWN_ID)]
    assert len(book) == 0


@pytest.mark.parametrize("tif", [IOC, FOK])
def test_immediate_orders_on_empty_book_never_rest(book, tif):
    expected_reason = IOC_REMAINDER if tif == IOC else FOK_UNFILLABLE
    assert book.submit(1, BUY, 100, 5, tif=tif) == [(CANCELLED, 1, expected_reason, 5)]
    assert book.submit(2, SELL, 100, 5, tif=tif) == [(CANCELLED, 2, expected_reason, 5)]
    assert book.state_hash() == EMPTY_HASH


def test_one_sided_book_bids_only(book):
    fill_book(book, [(1, BUY, 100, 5, 0), (2, BUY, 102, 7, 0), (3, BUY, 101, 1, 0)])
    assert book.best_bid() == 102
    assert book.best_ask() is None
    assert book.depth(10) == ([(102, 7, 1), (101, 1, 1), (100, 5, 1)], [])
    # A sell that does not reach the best bid rests on the empty ask side.
    assert book.submit(4, SELL, 103, 2) == [(RESTED, 4, 103, 2)]
    assert book.best_ask() == 103


def test_one_sided_book_asks_only(book):
    fill_book(book, [(1, SELL, 100, 5, 0), (2, SELL, 99, 7, 0)])
    assert book.best_bid() is None
    assert book.best_ask() == 99
    assert book.depth(1) == ([], [(99, 7, 1)])


# ----------------------------------------------------------------------------------- matching


def test_resting_orders_and_get(book):
    assert book.submit(1, BUY, 100, 5, tif=DAY, owner=7, stp=CANCEL_BOTH) == [(RESTED, 1, 100, 5)]
    assert book.submit(2, SELL, 101, 3, owner=8, post_only=True, stp=CANCEL_MAKER) == [
        (RESTED, 2, 101, 3)
    ]
    assert book.get(1) == (BUY, 100, 5, 7, DAY, CANCEL_BOTH, False)
    assert book.get(2) == (SELL, 101, 3, 8, GTC, CANCEL_MAKER, True)
    assert book.get(3) is None
    assert len(book) == 2
    assert (book.best_bid(), book.best_ask()) == (100, 101)


def test_exact_fill_both_filled(book):
    fill_book(book, [(1, SELL, 100, 5, 0)])
    assert book.submit(2, BUY, 100, 5) == [(FILL, 1, 2, 100, 5), (FILLED, 1), (FILLED, 2)]
    assert len(book) == 0
    assert book.state_hash() == EMPTY_HASH


def test_fill_prints_at_maker_price(book):
    fill_book(book, [(1, SELL, 100, 5, 0), (2, BUY, 90, 5, 0)])
    assert book.submit(3, BUY, 105, 2) == [(FILL, 1, 3, 100, 2), (FILLED, 3)]
    assert book.submit(4, SELL, 80, 5) == [(FILL, 2, 4, 90, 5), (FILLED, 2), (FILLED, 4)]


def test_partial_fill_of_maker_keeps_it_at_the_front(book):
    fill_book(book, [(1, SELL, 100, 10, 0), (2, SELL, 100, 4, 0)])
    assert book.submit(3, BUY, 100, 3) == [(FILL, 1, 3, 100, 3), (FILLED, 3)]
    assert book.get(1) == (SELL, 100, 7, 0, GTC, CANCEL_TAKER, False)
    assert book.depth(1) == ([], [(100, 11, 2)])
    assert book.submit(4, BUY, 100, 8) == [
        (FILL, 1, 4, 100, 7),
        (FILLED, 1),
        (FILL, 2, 4, 100, 1),
        (FILLED, 4),
    ]


def test_taker_remainder_rests_at_its_own_price(book):
    fill_book(book, [(1, SELL, 100, 4, 0)])
    assert book.submit(2, BUY, 101, 10) == [(FILL, 1, 2, 100, 4), (FILLED, 1), (RESTED, 2, 101, 6)]
    assert (book.best_bid(), book.best_ask()) == (101, None)
    assert book.get(2) == (BUY, 101, 6, 0, GTC, CANCEL_TAKER, False)


def test_sell_taker_walks_bids_from_the_highest(book):
    fill_book(book, [(1, BUY, 98, 1, 0), (2, BUY, 100, 1, 0), (3, BUY, 99, 1, 0)])
    assert book.submit(4, SELL, 99, 5) == [
        (FILL, 2, 4, 100, 1),
        (FILLED, 2),
        (FILL, 3, 4, 99, 1),
        (FILLED, 3),
        (RESTED, 4, 99, 3),
    ]
    assert (book.best_bid(), book.best_ask()) == (98, 99)


def test_price_priority_beats_time_priority(book):
    fill_book(book, [(1, SELL, 101, 5, 0), (2, SELL, 100, 5, 0)])
    assert book.submit(3, BUY, 101, 5) == [(FILL, 2, 3, 100, 5), (FILLED, 2), (FILLED, 3)]


def test_fifo_among_many_orders_at_one_level(book):
    fill_book(book, [(order_id, SELL, 100, order_id, 0) for order_id in range(1, 11)])
    assert book.depth(1) == ([], [(100, 55, 10)])
    # 1 + 2 + 3 + 4 = 10, then 2 of order 5's 5.
    assert book.submit(50, BUY, 100, 12) == [
        (FILL, 1, 50, 100, 1),
        (FILLED, 1),
        (FILL, 2, 50, 100, 2),
        (FILLED, 2),
        (FILL, 3, 50, 100, 3),
        (FILLED, 3),
        (FILL, 4, 50, 100, 4),
        (FILLED, 4),
        (FILL, 5, 50, 100, 2),
        (FILLED, 50),
    ]
    assert book.depth(1) == ([], [(100, 43, 6)])
    assert [entry[1] for entry in book.snapshot()] == [5, 6, 7, 8, 9, 10]


def test_market_style_sweep_through_many_levels(book):
    # Two asks at each of 100..104 with quantities 1 and 2.
    orders = []
    for level in range(5):
        orders.append((10 + 2 * level, SELL, 100 + level, 1, 0))
        orders.append((11 + 2 * level, SELL, 100 + level, 2, 0))
    fill_book(book, orders)
    assert book.depth(10) == ([], [(100 + level, 3, 2) for level in range(5)])
    # A market-style buy: limit at the top of the range, IOC. 13 units: four full levels, then 1.
    assert book.submit(99, BUY, MAX_INT64, 13, tif=IOC) == [
        (FILL, 10, 99, 100, 1),
        (FILLED, 10),
        (FILL, 11, 99, 100, 2),
        (FILLED, 11),
        (FILL, 12, 99, 101, 1),
        (FILLED, 12),
        (FILL, 13, 99, 101, 2),
        (FILLED, 13),
        (FILL, 14, 99, 102, 1),
        (FILLED, 14),
        (FILL, 15, 99, 102, 2),
        (FILLED, 15),
        (FILL, 16, 99, 103, 1),
        (FILLED, 16),
        (FILL, 17, 99, 103, 2),
        (FILLED, 17),
        (FILL, 18, 99, 104, 1),
        (FILLED, 18),
        (FILLED, 99),
    ]
    assert book.depth(10) == ([], [(104, 2, 1)])
    # Sweeping everything that is left and more: the IOC remainder is cancelled.
    assert book.submit(98, BUY, MAX_INT64, 10, tif=IOC) == [
        (FILL, 19, 98, 104, 2),
        (FILLED, 19),
        (CANCELLED, 98, IOC_REMAINDER, 8),
    ]
    assert len(book) == 0


def test_market_style_sell_sweep_with_lowest_price(book):
    fill_book(book, [(1, BUY, 5, 2, 0), (2, BUY, 3, 2, 0), (3, BUY, 1, 2, 0)])
    assert book.submit(4, SELL, 1, 100, tif=IOC) == [
        (FILL, 1, 4, 5, 2),
        (FILLED, 1),
        (FILL, 2, 4, 3, 2),
        (FILLED, 2),
        (FILL, 3, 4, 1, 2),
        (FILLED, 3),
        (CANCELLED, 4, IOC_REMAINDER, 94),
    ]


def test_limit_price_stops_the_sweep(book):
    fill_book(book, [(1, SELL, 100, 1, 0), (2, SELL, 101, 1, 0), (3, SELL, 102, 1, 0)])
    assert book.submit(4, BUY, 101, 5) == [
        (FILL, 1, 4, 100, 1),
        (FILLED, 1),
        (FILL, 2, 4, 101, 1),
        (FILLED, 2),
        (RESTED, 4, 101, 3),
    ]
    assert (book.best_bid(), book.best_ask()) == (101, 102)


# ------------------------------------------------------------------------------------ IOC/FOK


def test_ioc_remainder_cancelled(book):
    fill_book(book, [(1, SELL, 100, 3, 0)])
    assert book.submit(2, BUY, 100, 5, tif=IOC) == [
        (FILL, 1, 2, 100, 3),
        (FILLED, 1),
        (CANCELLED, 2, IOC_REMAINDER, 2),
    ]
    assert len(book) == 0


def test_ioc_fully_filled(book):
    fill_book(book, [(1, SELL, 100, 9, 0)])
    assert book.submit(2, BUY, 100, 5, tif=IOC) == [(FILL, 1, 2, 100, 5), (FILLED, 2)]
    assert book.get(1)[2] == 4


def test_ioc_not_crossing_is_cancelled_whole(book):
    fill_book(book, [(1, SELL, 100, 3, 0)])
    before = book_state(book)
    assert book.submit(2, BUY, 99, 5, tif=IOC) == [(CANCELLED, 2, IOC_REMAINDER, 5)]
    assert book_state(book) == before


def test_fok_that_cannot_fill_leaves_the_book_untouched(book):
    fill_book(book, [(1, SELL, 100, 3, 0), (2, SELL, 101, 3, 0), (3, SELL, 103, 50, 0)])
    before = book_state(book)
    # 6 units cross at <= 102; 7 are wanted.
    assert book.submit(4, BUY, 102, 7, tif=FOK) == [(CANCELLED, 4, FOK_UNFILLABLE, 7)]
    assert book_state(book) == before


def test_fok_fills_exactly_across_levels(book):
    fill_book(book, [(1, SELL, 100, 3, 0), (2, SELL, 101, 3, 0), (3, SELL, 103, 50, 0)])
    assert book.submit(4, BUY, 102, 6, tif=FOK) == [
        (FILL, 1, 4, 100, 3),
        (FILLED, 1),
        (FILL, 2, 4, 101, 3),
        (FILLED, 2),
        (FILLED, 4),
    ]
    assert book.submit(5, SELL, 90, 1, tif=FOK) == [(CANCELLED, 5, FOK_UNFILLABLE, 1)]


def test_fok_partial_maker(book):
    fill_book(book, [(1, BUY, 100, 10, 0)])
    assert book.submit(2, SELL, 100, 4, tif=FOK) == [(FILL, 1, 2, 100, 4), (FILLED, 2)]
    assert book.get(1)[2] == 6


def test_fok_count_stops_at_self_order_for_cancel_taker_and_both(book):
    # Priority order: 1 (owner 2, qty 2), 2 (owner 1, qty 5), 3 (owner 3, qty 5).
    fill_book(book, [(1, SELL, 100, 2, 2), (2, SELL, 100, 5, 1), (3, SELL, 101, 5, 3)])
    before = book_state(book)
    for order_id, stp in ((10, CANCEL_TAKER), (11, CANCEL_BOTH)):
        assert book.submit(order_id, BUY, 101, 3, tif=FOK, owner=1, stp=stp) == [
            (CANCELLED, order_id, FOK_UNFILLABLE, 3)
        ]
        assert book_state(book) == before
    # Liquidity before the self order is enough: it fills there and never meets the self order.
    assert book.submit(12, BUY, 101, 2, tif=FOK, owner=1, stp=CANCEL_BOTH) == [
        (FILL, 1, 12, 100, 2),
        (FILLED, 1),
        (FILLED, 12),
    ]
    assert book.get(2) is not None


def test_fok_count_skips_self_orders_for_cancel_maker(book):
    fill_book(book, [(1, SELL, 100, 2, 2), (2, SELL, 100, 5, 1), (3, SELL, 101, 5, 3)])
    before = book_state(book)
    # Non-self liquidity is 2 + 5 = 7; the self order's 5 does not count.
    assert book.submit(10, BUY, 101, 8, tif=FOK, owner=1, stp=CANCEL_MAKER) == [
        (CANCELLED, 10, FOK_UNFILLABLE, 8)
    ]
    assert book_state(book) == before
    assert book.submit(11, BUY, 101, 7, tif=FOK, owner=1, stp=CANCEL_MAKER) == [
        (FILL, 1, 11, 100, 2),
        (FILLED, 1),
        (CANCELLED, 2, SELF_TRADE, 5),
        (FILL, 3, 11, 101, 5),
        (FILLED, 3),
        (FILLED, 11),
    ]
    assert len(book) == 0


def test_fok_owner_zero_counts_everything(book):
    fill_book(book, [(1, SELL, 100, 2, 0), (2, SELL, 100, 5, 0)])
    assert book.submit(3, BUY, 100, 7, tif=FOK, owner=0) == [
        (FILL, 1, 3, 100, 2),
        (FILLED, 1),
        (FILL, 2, 3, 100, 5),
        (FILLED, 2),
        (FILLED, 3),
    ]


def test_fok_liquidity_sum_above_int64_does_not_overflow(book):
    fill_book(book, [(1, SELL, 100, MAX_INT64, 0), (2, SELL, 100, MAX_INT64, 0)])
    fill_book(book, [(3, SELL, 101, MAX_INT64, 0)])
    assert book.submit(4, BUY, 101, MAX_INT64, tif=FOK) == [
        (FILL, 1, 4, 100, MAX_INT64),
        (FILLED, 1),
        (FILLED, 4),
    ]
    assert book.submit(5, BUY, 101, MAX_INT64, tif=FOK) == [
        (FILL, 2, 5, 100, MAX_INT64),
        (FILLED, 2),
        (FILLED, 5),
    ]


def test_fok_not_enough_with_huge_liquidity_beyond_price(book):
    fill_book(book, [(1, SELL, 100, 1, 0), (2, SELL, 101, MAX_INT64, 0)])
    before = book_state(book)
    assert book.submit(3, BUY, 100, 2, tif=FOK) == [(CANCELLED, 3, FOK_UNFILLABLE, 2)]
    assert book_state(book) == before


# ---------------------------------------------------------------------------------- post-only


def test_post_only_that_would_cross_is_rejected(book):
    fill_book(book, [(1, SELL, 100, 5, 1), (2, BUY, 98, 5, 2)])
    before = book_state(book)
    assert book.submit(3, BUY, 100, 5, post_only=True) == [(REJECTED, 3, POST_ONLY_WOULD_CROSS)]
    assert book.submit(4, BUY, 150, 5, post_only=True, owner=9) == [
        (REJECTED, 4, POST_ONLY_WOULD_CROSS)
    ]
    assert book.submit(5, SELL, 98, 5, post_only=True) == [(REJECTED, 5, POST_ONLY_WOULD_CROSS)]
    # Crossing only its own owner's liquidity is still crossing.
    assert book.submit(6, BUY, 100, 5, post_only=True, owner=1) == [
        (REJECTED, 6, POST_ONLY_WOULD_CROSS)
    ]
    assert book_state(book) == before


def test_post_only_that_does_not_cross_rests(book):
    fill_book(book, [(1, SELL, 100, 5, 0), (2, BUY, 98, 5, 0)])
    assert book.submit(3, BUY, 99, 5, post_only=True) == [(RESTED, 3, 99, 5)]
    assert book.submit(4, SELL, 100, 2, post_only=True) == [(RESTED, 4, 100, 2)]
    assert book.get(3) == (BUY, 99, 5, 0, GTC, CANCEL_TAKER, True)
    assert book.get(4) == (SELL, 100, 2, 0, GTC, CANCEL_TAKER, True)
    assert book.depth(2) == ([(99, 5, 1), (98, 5, 1)], [(100, 7, 2)])


def test_post_only_on_empty_opposite_side_rests(book):
    assert book.submit(1, SELL, 1, 5, post_only=True) == [(RESTED, 1, 1, 5)]
    assert book.submit(2, BUY, MAX_INT64, 5, post_only=True) == [
        (REJECTED, 2, POST_ONLY_WOULD_CROSS)
    ]


def test_post_only_with_ioc_or_fok_never_trades(book):
    fill_book(book, [(1, SELL, 100, 5, 0)])
    assert book.submit(2, BUY, 99, 5, tif=IOC, post_only=True) == [(CANCELLED, 2, IOC_REMAINDER, 5)]
    assert book.submit(3, BUY, 99, 5, tif=FOK, post_only=True) == [
        (CANCELLED, 3, FOK_UNFILLABLE, 5)
    ]
    assert book.submit(4, BUY, 100, 5, tif=FOK, post_only=True) == [
        (REJECTED, 4, POST_ONLY_WOULD_CROSS)
    ]


# -------------------------------------------------------------------- self-trade prevention

# Priority order on the ask side: 1 (owner 2, 3@100), 2 (owner 1, 5@100), 3 (owner 3, 5@101).
STP_BOOK = [(1, SELL, 100, 3, 2), (2, SELL, 100, 5, 1), (3, SELL, 101, 5, 3)]


def test_stp_cancel_taker_after_partial_fills(book):
    fill_book(book, STP_BOOK)
    assert book.submit(10, BUY, 101, 10, owner=1, stp=CANCEL_TAKER) == [
        (FILL, 1, 10, 100, 3),
        (FILLED, 1),
        (CANCELLED, 10, SELF_TRADE, 7),
    ]
    assert [entry[1] for entry in book.snapshot()] == [2, 3]
    assert book.get(10) is None


def test_stp_cancel_maker_after_partial_fills(book):
    fill_book(book, STP_BOOK)
    assert book.submit(10, BUY, 101, 10, owner=1, stp=CANCEL_MAKER) == [
        (FILL, 1, 10, 100, 3),
        (FILLED, 1),
        (CANCELLED, 2, SELF_TRADE, 5),
        (FILL, 3, 10, 101, 5),
        (FILLED, 3),
        (RESTED, 10, 101, 2),
    ]
    assert book.snapshot() == [(BUY, 10, 101, 2, 1, GTC, CANCEL_MAKER, 0)]


def test_stp_cancel_both_after_partial_fills(book):
    fill_book(book, STP_BOOK)
    assert book.submit(10, BUY, 101, 10, owner=1, stp=CANCEL_BOTH) == [
        (FILL, 1, 10, 100, 3),
        (FILLED, 1),
        (CANCELLED, 2, SELF_TRADE, 5),
        (CANCELLED, 10, SELF_TRADE, 7),
    ]
    assert [entry[1] for entry in book.snapshot()] == [3]


def test_stp_cancel_maker_removes_every_self_order_met(book):
    fill_book(
        book, [(1, BUY, 100, 1, 4), (2, BUY, 100, 1, 4), (3, BUY, 99, 1, 5), (4, BUY, 98, 1, 4)]
    )
    assert book.submit(9, SELL, 98, 3, owner=4, stp=CANCEL_MAKER, tif=IOC) == [
        (CANCELLED, 1, SELF_TRADE, 1),
        (CANCELLED, 2, SELF_TRADE, 1),
        (FILL, 3, 9, 99, 1),
        (FILLED, 3),
        (CANCELLED, 4, SELF_TRADE, 1),
        (CANCELLED, 9, IOC_REMAINDER, 2),
    ]
    assert len(book) == 0


def test_stp_mode_is_the_incoming_orders(book):
    assert book.submit(1, SELL, 100, 5, owner=1, stp=CANCEL_MAKER) == [(RESTED, 1, 100, 5)]
    assert book.submit(2, BUY, 100, 5, owner=1, stp=CANCEL_TAKER) == [(CANCELLED, 2, SELF_TRADE, 5)]
    assert book.get(1) is not None


def test_stp_cancel_taker_with_no_fill_first(book):
    fill_book(book, [(1, SELL, 100, 5, 1)])
    before = book_state(book)
    assert book.submit(2, BUY, 100, 5, owner=1, tif=IOC) == [(CANCELLED, 2, SELF_TRADE, 5)]
    assert book.submit(3, BUY, 100, 5, owner=1, tif=DAY) == [(CANCELLED, 3, SELF_TRADE, 5)]
    assert book_state(book) == before


def test_stp_only_on_crossing_orders(book):
    # A self order on the opposite side that the taker does not reach is left alone.
    fill_book(book, [(1, SELL, 100, 5, 0), (2, SELL, 101, 5, 1)])
    assert book.submit(3, BUY, 100, 8, owner=1, stp=CANCEL_BOTH) == [
        (FILL, 1, 3, 100, 5),
        (FILLED, 1),
        (RESTED, 3, 100, 3),
    ]
    assert book.get(2) is not None


def test_owner_zero_never_self_trades(book):
    fill_book(book, [(1, SELL, 100, 5, 0)])
    assert book.submit(2, BUY, 100, 5, owner=0, stp=CANCEL_BOTH) == [
        (FILL, 1, 2, 100, 5),
        (FILLED, 1),
        (FILLED, 2),
    ]


def test_same_owner_on_same_side_is_not_a_self_match(book):
    fill_book(book, [(1, BUY, 100, 5, 1)])
    assert book.submit(2, BUY, 100, 5, owner=1) == [(RESTED, 2, 100, 5)]
    assert book.depth(1) == ([(100, 10, 2)], [])


# --------------------------------------------------------------------------------- rejections

BAD_ORDER_IDS = [0, -1, MAX_INT64 + 1, 2**64, 2**200, -(2**63), -(2**200)]
BAD_PRICES_OR_QTYS = [0, -1, MAX_INT64 + 1, 2**64, 2**200, -(2**63), -(2**63) - 1]


@pytest.mark.parametrize("order_id", BAD_ORDER_IDS)
def test_order_id_out_of_range(book, order_id):
    fill_book(book, [(1, SELL, 100, 5, 0)])
    before = book_state(book)
    assert book.submit(order_id, BUY, 100, 5) == [(REJECTED, order_id, BAD_PARAMETER)]
    # The id check comes first: a bad price and qty do not change the reason.
    assert book.submit(order_id, BUY, 0, 0) == [(REJECTED, order_id, BAD_PARAMETER)]
    assert book_state(book) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("side", 2),
        ("side", -1),
        ("side", 2**64),
        ("tif", 4),
        ("tif", -1),
        ("tif", 2**70),
        ("stp", 3),
        ("stp", -1),
        ("owner", -1),
        ("owner", MAX_INT64 + 1),
        ("owner", 2**200),
    ],
)
def test_side_tif_stp_owner_out_of_range(book, field, value):
    fill_book(book, [(1, SELL, 100, 5, 0)])
    before = book_state(book)
    arguments = {"side": BUY, "tif": GTC, "stp": CANCEL_TAKER, "owner": 0}
    arguments[field] = value
    side = arguments.pop("side")
    assert book.submit(2, side, 100, 5, **arguments) == [(REJECTED, 2, BAD_PARAMETER)]
    # Checked before price and qty.
    assert book.submit(2, side, 0, 0, **arguments) == [(REJECTED, 2, BAD_PARAMETER)]
    assert book_state(book) == before


@pytest.mark.parametrize("price", BAD_PRICES_OR_QTYS)
def test_price_out_of_range(book, price):
    fill_book(book, [(1, SELL, 100, 5, 0)])
    before = book_state(book)
    assert book.submit(2, BUY, price, 5) == [(REJECTED, 2, BAD_PRICE)]
    assert book.submit(2, SELL, price, 0, tif=FOK) == [(REJECTED, 2, BAD_PRICE)]
    assert book_state(book) == before


@pytest.mark.parametrize("qty", BAD_PRICES_OR_QTYS)
def test_qty_out_of_range(book, qty):
    fill_book(book, [(1, SELL, 100, 5, 0)])
    before = book_state(book)
    assert book.submit(2, BUY, 100, qty) == [(REJECTED, 2, BAD_QTY)]
    # Checked before post-only crossing.
    assert book.submit(2, BUY, 100, qty, post_only=True) == [(REJECTED, 2, BAD_QTY)]
    assert book_state(book) == before


def test_rejection_check_order(book):
    fill_book(book, [(1, SELL, 100, 5, 0)])
    before = book_state(book)
    # Duplicate comes before a bad side/tif/stp/owner, price and qty.
    assert book.submit(1, 7, 0, 0, tif=9, owner=-1, stp=9) == [(REJECTED, 1, DUPLICATE_ID)]
    # But a bad id comes before duplicate detection (id 0 cannot rest anyway).
    assert book.submit(-1, 7, 0, 0) == [(REJECTED, -1, BAD_PARAMETER)]
    # Price before qty.
    assert book.submit(2, BUY, -5, -5) == [(REJECTED, 2, BAD_PRICE)]
    # Qty before post-only.
    assert book.submit(2, BUY, 100, 0, post_only=True) == [(REJECTED, 2, BAD_QTY)]
    assert book_state(book) == before


def test_duplicate_resting_id_is_rejected_without_fills(book):
    fill_book(book, [(1, SELL, 100, 5, 0), (2, BUY, 99, 5, 0)])
    before = book_state(book)
    assert book.submit(2, BUY, 100, 5) == [(REJECTED, 2, DUPLICATE_ID)]
    assert book.submit(1, BUY, 100, 5) == [(REJECTED, 1, DUPLICATE_ID)]
    assert book.submit(1, SELL, 100, 5, tif=FOK) == [(REJECTED, 1, DUPLICATE_ID)]
    assert book_state(book) == before


def test_ids_can_be_reused_once_no_longer_resting(book):
    fill_book(book, [(1, SELL, 100, 5, 0), (2, SELL, 101, 5, 0)])
    assert book.submit(3, BUY, 100, 5) == [(FILL, 1, 3, 100, 5), (FILLED, 1), (FILLED, 3)]
    assert book.cancel(2) == [(CANCELLED, 2, USER_CANCEL, 5)]
    # 1 was filled, 2 cancelled, 3 filled as taker, 4 an IOC that never rested.
    assert book.submit(4, BUY, 100, 1, tif=IOC) == [(CANCELLED, 4, IOC_REMAINDER, 1)]
    for order_id in (1, 2, 3, 4):
        assert book.submit(order_id, BUY, 90 + order_id, 1) == [
            (RESTED, order_id, 90 + order_id, 1)
        ]
    assert len(book) == 4


@pytest.mark.parametrize(
    "call",
    [
        lambda book: book.submit(1.0, BUY, 100, 5),
        lambda book: book.submit(1, "buy", 100, 5),
        lambda book: book.submit(1, BUY, 100.0, 5),
        lambda book: book.submit(1, BUY, Decimal(100), 5),
        lambda book: book.submit(1, BUY, 100, None),
        lambda book: book.submit(1, BUY, 100, "5"),
        lambda book: book.submit(1, BUY, 100, 5, tif=None),
        lambda book: book.submit(1, BUY, 100, 5, owner=1.5),
        lambda book: book.submit(1, BUY, 100, 5, stp="cancel_both"),
        lambda book: book.submit(1, BUY, 100, 5, post_only="yes"),
        lambda book: book.submit(1, BUY, 100, 5, post_only=None),
        lambda book: book.cancel("1"),
        lambda book: book.cancel(None),
        lambda book: book.replace(1, 100.5, 5),
        lambda book: book.replace(1, 100, 5.0),
        lambda book: book.replace("1", 100, 5),
        lambda book: book.get(1.0),
        lambda book: book.depth("5"),
    ],
)
def test_non_int_arguments_raise_type_error(book, call):
    fill_book(book, [(1, SELL, 100, 5, 0)])
    before = book_state(book)
    with pytest.raises(TypeError):
        call(book.raw)
    assert book_state(book) == before
    book.validate()


# ----------------------------------------------------------------------------- int64 bounds


def test_int64_boundary_values_are_accepted(book):
    assert book.submit(MAX_INT64, SELL, MAX_INT64, MAX_INT64, owner=MAX_INT64) == [
        (RESTED, MAX_INT64, MAX_INT64, MAX_INT64)
    ]
    assert book.submit(1, BUY, 1, 1, owner=0) == [(RESTED, 1, 1, 1)]
    assert book.get(MAX_INT64) == (SELL, MAX_INT64, MAX_INT64, MAX_INT64, GTC, CANCEL_TAKER, False)
    assert book.depth(1) == ([(1, 1, 1)], [(MAX_INT64, MAX_INT64, 1)])
    assert book.submit(2, BUY, MAX_INT64, MAX_INT64 - 1, owner=MAX_INT64 - 1) == [
        (FILL, MAX_INT64, 2, MAX_INT64, MAX_INT64 - 1),
        (FILLED, 2),
    ]
    assert book.get(MAX_INT64)[2] == 1
    assert book.submit(3, SELL, 1, MAX_INT64, tif=IOC) == [
        (FILL, 1, 3, 1, 1),
        (FILLED, 1),
        (CANCELLED, 3, IOC_REMAINDER, MAX_INT64 - 1),
    ]
    # Same owner MAX_INT64: self-trade prevention applies at the boundary value too.
    assert book.submit(4, BUY, MAX_INT64, 1, owner=MAX_INT64) == [(CANCELLED, 4, SELF_TRADE, 1)]


def test_level_total_above_int64(book):
    fill_book(book, [(order_id, BUY, 100, MAX_INT64, 0) for order_id in (1, 2, 3)])
    fill_book(book, [(4, SELL, 200, MAX_INT64, 0), (5, SELL, 200, 1, 0)])
    assert book.depth(5) == ([(100, 3 * MAX_INT64, 3)], [(200, MAX_INT64 + 1, 2)])
    assert book.replace(2, 100, 7) == [(REPLACED, 2, 100, 7, 1)]
    assert book.depth(5) == ([(100, 2 * MAX_INT64 + 7, 3)], [(200, MAX_INT64 + 1, 2)])
    assert book.submit(6, SELL, 100, MAX_INT64, tif=IOC) == [
        (FILL, 1, 6, 100, MAX_INT64),
        (FILLED, 1),
        (FILLED, 6),
    ]
    assert book.depth(5) == ([(100, MAX_INT64 + 7, 2)], [(200, MAX_INT64 + 1, 2)])


# -------------------------------------------------------------------------------------- cancel


def test_cancel_resting_order_reports_remaining(book):
    fill_book(book, [(1, SELL, 100, 10, 0), (2, SELL, 100, 1, 0)])
    assert book.submit(3, BUY, 100, 4) == [(FILL, 1, 3, 100, 4), (FILLED, 3)]
    assert book.cancel(1) == [(CANCELLED, 1, USER_CANCEL, 6)]
    assert book.cancel(1) == [(REJECTED, 1, UNKNOWN_ID)]
    assert book.depth(1) == ([], [(100, 1, 1)])
    assert book.cancel(2) == [(CANCELLED, 2, USER_CANCEL, 1)]
    assert book.best_ask() is None
    assert book.depth(1) == ([], [])


@pytest.mark.parametrize("order_id", [0, -1, 3, MAX_INT64, MAX_INT64 + 1, 2**200])
def test_cancel_unknown_id(book, order_id):
    fill_book(book, [(1, SELL, 100, 10, 0), (2, BUY, 99, 1, 0)])
    before = book_state(book)
    assert book.cancel(order_id) == [(REJECTED, order_id, UNKNOWN_ID)]
    assert book_state(book) == before


def test_cancel_of_filled_order_is_unknown(book):
    fill_book(book, [(1, SELL, 100, 1, 0)])
    book.submit(2, BUY, 100, 1)
    assert book.cancel(1) == [(REJECTED, 1, UNKNOWN_ID)]
    assert book.cancel(2) == [(REJECTED, 2, UNKNOWN_ID)]


def test_cancel_from_middle_of_level_keeps_fifo(book):
    fill_book(book, [(1, BUY, 100, 1, 0), (2, BUY, 100, 2, 0), (3, BUY, 100, 3, 0)])
    assert book.cancel(2) == [(CANCELLED, 2, USER_CANCEL, 2)]
    assert book.depth(1) == ([(100, 4, 2)], [])
    assert book.submit(4, SELL, 100, 4) == [
        (FILL, 1, 4, 100, 1),
        (FILLED, 1),
        (FILL, 3, 4, 100, 3),
        (FILLED, 3),
        (FILLED, 4),
    ]


# ------------------------------------------------------------------------------------- replace


@pytest.mark.parametrize("order_id", [0, -1, 99, MAX_INT64 + 1])
def test_replace_unknown_id_comes_first(book, order_id):
    fill_book(book, [(1, SELL, 100, 10, 0)])
    before = book_state(book)
    assert book.replace(order_id, 100, 5) == [(REJECTED, order_id, UNKNOWN_ID)]
    assert book.replace(order_id, 0, 0) == [(REJECTED, order_id, UNKNOWN_ID)]
    assert book_state(book) == before


def test_replace_bad_price_then_bad_qty(book):
    fill_book(book, [(1, SELL, 100, 10, 0), (2, SELL, 100, 1, 0)])
    before = book_state(book)
    for bad in BAD_PRICES_OR_QTYS:
        assert book.replace(1, bad, 5) == [(REJECTED, 1, BAD_PRICE)]
        assert book.replace(1, bad, bad) == [(REJECTED, 1, BAD_PRICE)]
        assert book.replace(1, 100, bad) == [(REJECTED, 1, BAD_QTY)]
        assert book.replace(1, 101, bad) == [(REJECTED, 1, BAD_QTY)]
    assert book_state(book) == before


def test_replace_down_keeps_priority(book):
    fill_book(book, [(1, BUY, 100, 10, 0), (2, BUY, 100, 10, 0)])
    assert book.replace(1, 100, 4) == [(REPLACED, 1, 100, 4, 1)]
    assert book.get(1) == (BUY, 100, 4, 0, GTC, CANCEL_TAKER, False)
    assert book.depth(1) == ([(100, 14, 2)], [])
    assert [entry[1] for entry in book.snapshot()] == [1, 2]
    assert book.submit(3, SELL, 100, 5) == [
        (FILL, 1, 3, 100, 4),
        (FILLED, 1),
        (FILL, 2, 3, 100, 1),
        (FILLED, 3),
    ]


def test_replace_same_qty_same_price_keeps_priority(book):
    fill_book(book, [(1, BUY, 100, 10, 0), (2, BUY, 100, 10, 0)])
    before = book_state(book)
    assert book.replace(1, 100, 10) == [(REPLACED, 1, 100, 10, 1)]
    assert book_state(book) == before


def test_replace_up_loses_priority(book):
    fill_book(book, [(1, BUY, 100, 10, 0), (2, BUY, 100, 10, 0)])
    assert book.replace(1, 100, 11) == [(REPLACED, 1, 100, 11, 0), (RESTED, 1, 100, 11)]
    assert [entry[1] for entry in book.snapshot()] == [2, 1]
    assert book.depth(1) == ([(100, 21, 2)], [])


def test_replace_increase_is_measured_against_remaining(book):
    fill_book(book, [(1, SELL, 100, 10, 0), (2, SELL, 100, 10, 0)])
    book.submit(3, BUY, 100, 6)
    assert book.get(1)[2] == 4
    # 5 is below the original 10 but above the remaining 4: an increase, priority lost.
    assert book.replace(1, 100, 5) == [(REPLACED, 1, 100, 5, 0), (RESTED, 1, 100, 5)]
    assert [entry[1] for entry in book.snapshot()] == [2, 1]


def test_replace_price_change_without_cross_loses_priority(book):
    fill_book(book, [(1, BUY, 100, 10, 0), (2, BUY, 99, 10, 0), (3, SELL, 105, 1, 0)])
    assert book.replace(1, 99, 3) == [(REPLACED, 1, 99, 3, 0), (RESTED, 1, 99, 3)]
    assert book.snapshot() == [
        (BUY, 2, 99, 10, 0, GTC, CANCEL_TAKER, 0),
        (BUY, 1, 99, 3, 0, GTC, CANCEL_TAKER, 0),
        (SELL, 3, 105, 1, 0, GTC, CANCEL_TAKER, 0),
    ]
    # Moving back to its old price: at the back there as well.
    assert book.replace(1, 100, 3) == [(REPLACED, 1, 100, 3, 0), (RESTED, 1, 100, 3)]
    assert book.best_bid() == 100


def test_replace_price_cross_trades(book):
    fill_book(book, [(1, BUY, 100, 10, 0), (2, SELL, 102, 3, 0), (3, SELL, 103, 3, 0)])
    assert book.replace(1, 103, 8) == [
        (REPLACED, 1, 103, 8, 0),
        (FILL, 2, 1, 102, 3),
        (FILLED, 2),
        (FILL, 3, 1, 103, 3),
        (FILLED, 3),
        (RESTED, 1, 103, 2),
    ]
    assert book.get(1) == (BUY, 103, 2, 0, GTC, CANCEL_TAKER, False)


def test_replace_price_cross_fills_completely(book):
    fill_book(book, [(1, SELL, 105, 2, 0), (2, BUY, 100, 9, 0)])
    assert book.replace(1, 100, 2) == [
        (REPLACED, 1, 100, 2, 0),
        (FILL, 2, 1, 100, 2),
        (FILLED, 1),
    ]
    assert book.get(1) is None
    assert book.get(2)[2] == 7


def test_replace_self_trade_uses_the_orders_own_stp(book):
    fill_book(book, [(1, SELL, 100, 2, 0), (2, SELL, 101, 5, 1)])
    assert book.submit(3, BUY, 99, 10, owner=1, stp=CANCEL_MAKER, tif=DAY) == [(RESTED, 3, 99, 10)]
    assert book.replace(3, 101, 10) == [
        (REPLACED, 3, 101, 10, 0),
        (FILL, 1, 3, 100, 2),
        (FILLED, 1),
        (CANCELLED, 2, SELF_TRADE, 5),
        (RESTED, 3, 101, 8),
    ]
    assert book.get(3) == (BUY, 101, 8, 1, DAY, CANCEL_MAKER, False)


def test_replace_self_trade_cancel_taker_removes_the_order(book):
    fill_book(book, [(1, SELL, 101, 5, 1), (2, BUY, 99, 10, 1)])
    assert book.replace(2, 101, 10) == [
        (REPLACED, 2, 101, 10, 0),
        (CANCELLED, 2, SELF_TRADE, 10),
    ]
    assert book.get(2) is None
    assert book.cancel(2) == [(REJECTED, 2, UNKNOWN_ID)]


def test_replace_post_only_that_would_cross_is_rejected_unchanged(book):
    fill_book(book, [(1, SELL, 105, 5, 0)])
    assert book.submit(2, BUY, 100, 5, post_only=True) == [(RESTED, 2, 100, 5)]
    fill_book(book, [(3, BUY, 100, 5, 0)])
    before = book_state(book)
    assert book.replace(2, 105, 5) == [(REJECTED, 2, POST_ONLY_WOULD_CROSS)]
    assert book.replace(2, 106, 1) == [(REJECTED, 2, POST_ONLY_WOULD_CROSS)]
    assert book_state(book) == before
    # Its priority was not touched: it is still first at 100.
    assert book.submit(4, SELL, 100, 1) == [(FILL, 2, 4, 100, 1), (FILLED, 4)]


def test_replace_post_only_without_cross_is_accepted(book):
    fill_book(book, [(1, SELL, 105, 5, 0)])
    book.submit(2, BUY, 100, 5, post_only=True)
    assert book.replace(2, 104, 6) == [(REPLACED, 2, 104, 6, 0), (RESTED, 2, 104, 6)]
    assert book.replace(2, 104, 1) == [(REPLACED, 2, 104, 1, 1)]
    assert book.get(2) == (BUY, 104, 1, 0, GTC, CANCEL_TAKER, True)


def test_replace_keeps_day_tif_for_expiry(book):
    assert book.submit(1, BUY, 100, 5, tif=DAY) == [(RESTED, 1, 100, 5)]
    assert book.replace(1, 101, 6) == [(REPLACED, 1, 101, 6, 0), (RESTED, 1, 101, 6)]
    assert book.expire_day() == [(CANCELLED, 1, EXPIRED, 6)]


def test_replace_filled_or_cancelled_is_unknown(book):
    fill_book(book, [(1, SELL, 100, 1, 0), (2, SELL, 100, 1, 0)])
    book.submit(3, BUY, 100, 1)
    book.cancel(2)
    assert book.replace(1, 100, 1) == [(REJECTED, 1, UNKNOWN_ID)]
    assert book.replace(2, 100, 1) == [(REJECTED, 2, UNKNOWN_ID)]
    assert book.replace(3, 100, 1) == [(REJECTED, 3, UNKNOWN_ID)]


# ------------------------------------------------------------------------------------- expiry


def test_expire_day_with_mixed_tifs_in_canonical_order(book):
    # (id, side, price, tif) in submission order.
    for order_id, side, price, tif in [
        (1, BUY, 100, DAY),
        (2, BUY, 101, GTC),
        (3, SELL, 110, DAY),
        (4, BUY, 101, DAY),
        (5, SELL, 109, DAY),
        (6, BUY, 100, DAY),
        (7, SELL, 109, GTC),
        (8, SELL, 109, DAY),
        (9, BUY, 99, GTC),
    ]:
        assert book.submit(order_id, side, price, order_id, tif=tif) == [
            (RESTED, order_id, price, order_id)
        ]
    assert book.submit(10, BUY, 90, 1, tif=IOC) == [(CANCELLED, 10, IOC_REMAINDER, 1)]
    assert book.submit(11, BUY, 90, 1, tif=FOK) == [(CANCELLED, 11, FOK_UNFILLABLE, 1)]
    assert book.expire_day() == [
        (CANCELLED, 4, EXPIRED, 4),
        (CANCELLED, 1, EXPIRED, 1),
        (CANCELLED, 6, EXPIRED, 6),
        (CANCELLED, 5, EXPIRED, 5),
        (CANCELLED, 8, EXPIRED, 8),
        (CANCELLED, 3, EXPIRED, 3),
    ]
    assert [entry[1] for entry in book.snapshot()] == [2, 9, 7]
    assert book.expire_day() == []


def test_expire_day_reports_remaining_after_partial_fill(book):
    assert book.submit(1, SELL, 100, 10, tif=DAY) == [(RESTED, 1, 100, 10)]
    book.submit(2, BUY, 100, 3)
    assert book.expire_day() == [(CANCELLED, 1, EXPIRED, 7)]
    assert len(book) == 0


# ------------------------------------------------------------------------------------- depth


def test_depth_aggregates_and_limits(book):
    fill_book(
        book,
        [
            (1, BUY, 100, 1, 0),
            (2, BUY, 100, 2, 0),
            (3, BUY, 98, 3, 0),
            (4, BUY, 99, 4, 0),
            (5, SELL, 105, 5, 0),
            (6, SELL, 103, 6, 0),
            (7, SELL, 103, 7, 0),
        ],
    )
    assert book.depth(10) == (
        [(100, 3, 2), (99, 4, 1), (98, 3, 1)],
        [(103, 13, 2), (105, 5, 1)],
    )
    assert book.depth(2) == ([(100, 3, 2), (99, 4, 1)], [(103, 13, 2), (105, 5, 1)])
    assert book.depth(1) == ([(100, 3, 2)], [(103, 13, 2)])
    assert book.depth(0) == ([], [])
    assert len(book) == 7


# ---------------------------------------------------------------------- state hash, snapshot


def build_varied_book(book) -> None:
    """A book using every resting attribute: both sides, several levels, FIFO, flags."""
    commands = [
        (1, BUY, 100, 5, GTC, 1, False, CANCEL_TAKER),
        (2, BUY, 100, 6, DAY, 2, True, CANCEL_MAKER),
        (3, BUY, 99, 7, GTC, 0, False, CANCEL_BOTH),
        (4, SELL, 102, 8, DAY, 3, False, CANCEL_TAKER),
        (5, SELL, 101, 9, GTC, MAX_INT64, True, CANCEL_BOTH),
        (6, SELL, 101, 10, DAY, 1, False, CANCEL_MAKER),
        (7, BUY, 100, 11, GTC, 4, False, CANCEL_TAKER),
    ]
    for order_id, side, price, qty, tif, owner, post_only, stp in commands:
        assert book.submit(
            order_id, side, price, qty, tif=tif, owner=owner, post_only=post_only, stp=stp
        ) == [(RESTED, order_id, price, qty)]


VARIED_SNAPSHOT = [
    (BUY, 1, 100, 5, 1, GTC, CANCEL_TAKER, 0),
    (BUY, 2, 100, 6, 2, DAY, CANCEL_MAKER, 1),
    (BUY, 7, 100, 11, 4, GTC, CANCEL_TAKER, 0),
    (BUY, 3, 99, 7, 0, GTC, CANCEL_BOTH, 0),
    (SELL, 5, 101, 9, MAX_INT64, GTC, CANCEL_BOTH, 1),
    (SELL, 6, 101, 10, 1, DAY, CANCEL_MAKER, 0),
    (SELL, 4, 102, 8, 3, DAY, CANCEL_TAKER, 0),
]


def test_snapshot_is_in_canonical_order(book):
    build_varied_book(book)
    assert book.snapshot() == VARIED_SNAPSHOT


def test_state_hash_byte_format(book):
    build_varied_book(book)
    expected = hashlib.sha256(
        b"".join(struct.pack("<BqqqqBBB", *entry) for entry in VARIED_SNAPSHOT)
    ).hexdigest()
    assert book.state_hash() == expected


def test_state_hash_record_bytes_written_out(book):
    # One record, spelled byte by byte: side, then id, price, qty, owner as little-endian int64,
    # then tif, stp, post_only as single bytes.
    assert book.submit(MAX_INT64, SELL, 256, 5, tif=DAY, owner=1, post_only=True, stp=2) == [
        (RESTED, MAX_INT64, 256, 5)
    ]
    record = bytes.fromhex(
        "01ffffffffffffff7f000100000000000005000000000000000100000000000000010201"
    )
    assert book.state_hash() == hashlib.sha256(record).hexdigest()


def test_state_hash_depends_only_on_resting_orders(book, make_book):
    build_varied_book(book)
    other = make_book()
    # A different history (trades, cancels, amends, rejections) ending in the same resting
    # orders with the same priority.
    other.submit(1, BUY, 100, 9, owner=1)
    other.submit(50, SELL, 100, 2, tif=IOC)  # fills 2 of order 1, leaving 7
    other.replace(1, 100, 5)  # a decrease keeps priority
    other.submit(2, BUY, 100, 6, tif=DAY, owner=2, post_only=True, stp=CANCEL_MAKER)
    other.submit(7, BUY, 100, 11, owner=4)
    other.submit(3, BUY, 98, 7, stp=CANCEL_BOTH)
    other.replace(3, 99, 7)
    other.submit(8, SELL, 101, 1)
    other.submit(5, SELL, 101, 9, owner=MAX_INT64, post_only=True, stp=CANCEL_BOTH)
    other.cancel(8)
    other.submit(6, SELL, 101, 10, tif=DAY, owner=1, stp=CANCEL_MAKER)
    other.submit(4, SELL, 102, 8, tif=DAY, owner=3)
    other.submit(0, SELL, 102, 8)  # rejected: changes nothing
    other.cancel(99)  # rejected: changes nothing
    assert other.snapshot() == book.snapshot()
    assert other.state_hash() == book.state_hash()


def test_state_hash_sees_priority_and_every_field(book, make_book):
    build_varied_book(book)
    reference_hash = book.state_hash()
    reordered = make_book()
    build_varied_book(reordered)
    reordered.replace(1, 100, 6)  # increase: 1 goes behind 2 and 7
    reordered.replace(1, 100, 5)  # back to 5, but priority stays lost
    assert reordered.state_hash() != reference_hash
    assert reordered.depth(5) == book.depth(5)


def test_snapshot_restore_round_trip(book, book_class):
    build_varied_book(book)
    restored = book_class.restore(book.snapshot())
    restored.validate()
    assert restored.snapshot() == VARIED_SNAPSHOT
    assert restored.state_hash() == book.state_hash()
    assert restored.depth(10) == book.depth(10)
    assert len(restored) == len(book)
    for order_id in range(1, 9):
        assert restored.get(order_id) == book.get(order_id)
    # Priority survived: the same command gives the same events in both.
    assert (
        restored.submit(9, SELL, 99, 30)
        == book.submit(9, SELL, 99, 30)
        == [
            (FILL, 1, 9, 100, 5),
            (FILLED, 1),
            (FILL, 2, 9, 100, 6),
            (FILLED, 2),
            (FILL, 7, 9, 100, 11),
            (FILLED, 7),
            (FILL, 3, 9, 99, 7),
            (FILLED, 3),
            (RESTED, 9, 99, 1),
        ]
    )
    assert restored.expire_day() == book.expire_day()
    assert restored.state_hash() == book.state_hash()


def test_restore_empty_snapshot(book_class):
    restored = book_class.restore([])
    assert len(restored) == 0
    assert restored.state_hash() == EMPTY_HASH


def test_restore_accepts_literal_snapshot(book_class):
    restored = book_class.restore(VARIED_SNAPSHOT)
    restored.validate()
    assert restored.snapshot() == VARIED_SNAPSHOT
    assert restored.get(5) == (SELL, 101, 9, MAX_INT64, GTC, CANCEL_BOTH, True)
    assert restored.submit(5, BUY, 1, 1) == [(REJECTED, 5, DUPLICATE_ID)]
    assert restored.replace(5, 100, 1) == [(REJECTED, 5, POST_ONLY_WOULD_CROSS)]


# ---------------------------------------------------------------- argument-type readings
# The contract says a non-int (or non-bool post_only) raises TypeError. Both books read that
# strictly: ``bool`` is not accepted where an int is meant, and post_only must be a real bool.


@pytest.mark.parametrize(
    "call",
    [
        lambda book: book.submit(True, BUY, 100, 5),
        lambda book: book.submit(1, True, 100, 5),
        lambda book: book.submit(1, BUY, True, 5),
        lambda book: book.submit(1, BUY, 100, True),
        lambda book: book.submit(1, BUY, 100, 5, owner=False),
        lambda book: book.submit(1, BUY, 100, 5, post_only=1),
        lambda book: book.submit(1, BUY, 100, 5, post_only=0),
        lambda book: book.cancel(True),
        lambda book: book.replace(1, 100, True),
        lambda book: book.depth(True),
    ],
)
def test_bool_for_int_and_int_for_post_only_raise_type_error(book, call):
    fill_book(book, [(1, SELL, 100, 5, 0)])
    before = book_state(book)
    with pytest.raises(TypeError):
        call(book.raw)
    assert book_state(book) == before


def test_depth_with_negative_levels_is_empty(book):
    fill_book(book, [(1, SELL, 100, 5, 0), (2, BUY, 99, 5, 0)])
    assert book.depth(-1) == ([], [])
    assert book.depth(-(2**70)) == ([], [])
    assert book.depth(2**70) == ([(99, 5, 1)], [(100, 5, 1)])


def test_owner_zero_on_one_side_only_is_not_a_self_match(book):
    fill_book(book, [(1, SELL, 100, 5, 0), (2, SELL, 100, 5, 3)])
    assert book.submit(3, BUY, 100, 2, owner=3, stp=CANCEL_BOTH) == [
        (FILL, 1, 3, 100, 2),
        (FILLED, 3),
    ]
    assert book.submit(4, BUY, 100, 8, owner=0, stp=CANCEL_BOTH) == [
        (FILL, 1, 4, 100, 3),
        (FILLED, 1),
        (FILL, 2, 4, 100, 5),
        (FILLED, 2),
        (FILLED, 4),
    ]


def test_replace_post_only_increase_at_same_price_loses_priority(book):
    fill_book(book, [(1, SELL, 105, 5, 0)])
    book.submit(2, BUY, 100, 5, post_only=True)
    fill_book(book, [(3, BUY, 100, 5, 0)])
    assert book.replace(2, 100, 9) == [(REPLACED, 2, 100, 9, 0), (RESTED, 2, 100, 9)]
    assert [entry[1] for entry in book.snapshot()] == [3, 2, 1]


# ------------------------------------------------------------------------------ restore


@pytest.mark.parametrize(
    ("snapshot", "error"),
    [
        ([(BUY, 1, 100, 5, 0, GTC, 0, 0), (BUY, 1, 99, 5, 0, GTC, 0, 0)], ValueError),
        ([(BUY, 1, 100, 5, 0, GTC, 0, 0), (SELL, 2, 100, 5, 0, GTC, 0, 0)], ValueError),
        ([(BUY, 1, 100, 5, 0, IOC, 0, 0)], ValueError),
        ([(BUY, 1, 100, 5, 0, FOK, 0, 0)], ValueError),
        ([(2, 1, 100, 5, 0, GTC, 0, 0)], ValueError),
        ([(BUY, 0, 100, 5, 0, GTC, 0, 0)], ValueError),
        ([(BUY, 1, 0, 5, 0, GTC, 0, 0)], ValueError),
        ([(BUY, 1, 100, 0, 0, GTC, 0, 0)], ValueError),
        ([(BUY, 1, 100, MAX_INT64 + 1, 0, GTC, 0, 0)], ValueError),
        ([(BUY, 1, 100, 5, -1, GTC, 0, 0)], ValueError),
        ([(BUY, 1, 100, 5, 0, GTC, 3, 0)], ValueError),
        ([(BUY, 1, 100, 5, 0, GTC, 0, 2)], ValueError),
        ([(BUY, 1, 100, 5, 0, GTC, 0)], ValueError),
        ([(BUY, 1, 100.0, 5, 0, GTC, 0, 0)], TypeError),
        ([(BUY, "1", 100, 5, 0, GTC, 0, 0)], TypeError),
    ],
)
def test_restore_rejects_a_bad_snapshot(book_class, snapshot, error):
    with pytest.raises(error):
        book_class.restore(snapshot)


def test_restore_takes_fifo_from_list_order(book_class):
    # Levels are ordered by price whatever the list order; within a level, list order is FIFO.
    restored = book_class.restore(
        [
            (SELL, 5, 101, 1, 0, GTC, 0, 0),
            (BUY, 3, 99, 1, 0, DAY, 0, 0),
            (BUY, 2, 100, 1, 0, GTC, 0, True),
            (BUY, 1, 100, 1, 0, GTC, 0, 0),
        ]
    )
    restored.validate()
    assert [entry[1] for entry in restored.snapshot()] == [2, 1, 3, 5]
    assert restored.get(2) == (BUY, 100, 1, 0, GTC, 0, True)


def test_snapshots_are_interchangeable_between_implementations(book_class):
    reference_class = reference_book_class()
    compiled_class = compiled_book_class()
    source = book_class()
    build_varied_book(CheckedBook(source))
    source.submit(20, SELL, 100, 3)  # partial fill, so a remaining qty differs from the original
    into_reference = reference_class.restore(source.snapshot())
    into_compiled = compiled_class.restore(source.snapshot())
    for restored in (into_reference, into_compiled):
        restored.validate()
        assert restored.snapshot() == source.snapshot()
        assert restored.state_hash() == source.state_hash()
    command = (21, SELL, 99, 25)
    assert (
        into_reference.submit(*command) == into_compiled.submit(*command) == source.submit(*command)
    )
    assert into_reference.state_hash() == into_compiled.state_hash() == source.state_hash()
