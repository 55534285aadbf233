"""The reference book's own integrity check: ``validate()`` must notice every broken invariant.

The whole suite relies on ``validate()`` after every step, so it has to be able to fail. These
tests break the reference book's internals on purpose (the compiled book's internals are C
structs, out of reach from Python) and expect ``IntegrityError``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from matching import BUY, IOC, SELL, IntegrityError, ReferenceOrderBook


def sample_book() -> ReferenceOrderBook:
    book = ReferenceOrderBook()
    book.submit(1, BUY, 100, 5)
    book.submit(2, BUY, 100, 6)
    book.submit(3, BUY, 99, 7)
    book.submit(4, SELL, 101, 8)
    book.validate()
    return book


def move_ask_below_bid(book: ReferenceOrderBook) -> None:
    order = book._orders[4]
    del book._asks[101]
    order.price = 100
    book._asks[100] = {4: order}


CORRUPTIONS: dict[str, Callable[[ReferenceOrderBook], None]] = {
    "empty level": lambda book: book._bids.__setitem__(50, {}),
    "zero quantity": lambda book: setattr(book._orders[1], "qty", 0),
    "negative quantity": lambda book: setattr(book._orders[3], "qty", -1),
    "order on wrong level": lambda book: setattr(book._orders[2], "price", 99),
    "order on wrong side": lambda book: setattr(book._orders[4], "side", BUY),
    "missing from index": lambda book: book._orders.pop(3),
    "only in index": lambda book: book._orders.__setitem__(9, book._orders[1]),
    "level key mismatch": lambda book: book._bids[100].__setitem__(7, book._bids[100].pop(2)),
    "immediate tif resting": lambda book: setattr(book._orders[1], "tif", IOC),
    "bad stp": lambda book: setattr(book._orders[1], "stp", 7),
    "negative owner": lambda book: setattr(book._orders[1], "owner", -1),
    "crossed book": move_ask_below_bid,
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_validate_detects_corruption(corrupt):
    book = sample_book()
    corrupt(book)
    with pytest.raises(IntegrityError):
        book.validate()


def test_repr_names_the_implementation():
    assert repr(sample_book()) == "<reference OrderBook orders=4 best_bid=100 best_ask=101>"
