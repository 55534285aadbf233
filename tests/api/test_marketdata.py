"""The book channel's snapshot + updates + checksum, and the client mirror that rebuilds from
them: after any sequence of book changes the mirror equals the venue's book level for level,
a missed update or a changed quantity is detected."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import matching
from venue.api.marketdata import (
    BOOK_DEPTH,
    BookChannel,
    BookGap,
    BookMirror,
    checksum,
)
from venue.domain import demo
from venue.domain.instruments import Instrument

INSTRUMENT = Instrument.from_wire(dict(demo.INSTRUMENTS[0]))
MID = INSTRUMENT.reference_price


def _channel(book: matching.OrderBook) -> BookChannel:
    return BookChannel(lambda: book.depth(BOOK_DEPTH), INSTRUMENT.format_price)


def test_the_documented_checksum_example() -> None:
    bids = [("100.1240", "30"), ("100.1230", "10")]
    asks = [("100.1260", "20")]
    assert checksum(bids, asks) == 283650777
    assert checksum([], []) == checksum((), ())  # "|" for an empty book


def test_only_the_top_ten_levels_count() -> None:
    bids = [(f"{100 - n}.0000", "10") for n in range(12)]
    changed_deep = [*bids[:10], ("1.0000", "99"), ("0.5000", "1")]
    assert checksum(bids, []) == checksum(changed_deep, [])
    assert checksum(bids, []) != checksum([("100.0000", "11"), *bids[1:]], [])


operations = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell", "cancel", "replace"]),
        st.integers(-70, 70),  # price offset from the mid, in ticks: past BOOK_DEPTH levels
        st.integers(1, 5),  # lots
        st.integers(0, 10_000),  # which resting order (cancel, replace)
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_a_mirror_rebuilt_from_updates_equals_the_book(steps) -> None:
    book = matching.OrderBook()
    channel = _channel(book)
    mirror = BookMirror()
    mirror.apply_snapshot(channel.snapshot())
    resting: list[int] = []
    for number, (action, offset, lots, pick) in enumerate(steps, start=1):
        if action in ("buy", "sell") or not resting:
            side = matching.BUY if action == "buy" else matching.SELL
            events = book.submit(number, side, MID + offset, lots * 10, matching.GTC, number % 3,
                                 False, matching.CANCEL_TAKER)  # fmt: skip
            if any(event[0] == matching.RESTED for event in events):
                resting.append(number)
        elif action == "cancel":
            book.cancel(resting.pop(pick % len(resting)))
        else:
            book.replace(resting[pick % len(resting)], MID + offset, lots * 10)
        resting = [order_id for order_id in resting if book.get(order_id) is not None]
        update = channel.update()
        if update is not None:
            mirror.apply_update(update)
        bids, asks = book.depth(BOOK_DEPTH)
        assert mirror.levels() == (
            [(INSTRUMENT.format_price(p), str(q)) for p, q, _n in bids],
            [(INSTRUMENT.format_price(p), str(q)) for p, q, _n in asks],
        )
    # a late subscriber's snapshot continues the same numbering
    late = BookMirror()
    late.apply_snapshot(channel.snapshot())
    assert late.levels() == mirror.levels() and late.seq == mirror.seq == channel.seq


def test_a_missed_update_is_a_gap_and_a_changed_quantity_a_mismatch() -> None:
    book = matching.OrderBook()
    channel = _channel(book)
    mirror = BookMirror()
    mirror.apply_snapshot(channel.snapshot())
    book.submit(1, matching.BUY, MID - 1, 10, matching.GTC, 1, False, matching.CANCEL_TAKER)
    first = channel.update()
    book.submit(2, matching.SELL, MID + 1, 20, matching.GTC, 2, False, matching.CANCEL_TAKER)
    second = channel.update()
    with pytest.raises(BookGap, match="expected seq"):
        mirror.apply_update(second)  # the first was missed
    mirror.apply_snapshot(channel.snapshot())  # resubscribed
    book.submit(3, matching.SELL, MID + 2, 30, matching.GTC, 2, False, matching.CANCEL_TAKER)
    third = channel.update()
    third["asks"][0][1] = "31"  # one quantity altered on the way
    with pytest.raises(BookGap, match="checksum"):
        mirror.apply_update(third)
    assert first["seq"] == 1 and second["seq"] == 2 and third["seq"] == 3
    assert channel.update() is None  # nothing changed since
