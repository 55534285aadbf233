"""Level-2 market data: a book channel's snapshot, its incremental updates and their checksum,
and the client-side mirror that rebuilds a book from them and proves it did.

Wire form (the WebSocket API's ``book.{symbol}`` channel, docs/WEBSOCKET.md)
-------------------------------------------------------------------------
Levels are ``[price, qty]`` pairs of decimal strings, exactly as the REST API formats them
(``Instrument.format_price``; quantities as integers of units), best first, at most
``BOOK_DEPTH`` per side. A ``snapshot`` message carries ``bids``, ``asks`` and ``checksum``; each
``update`` carries ``bids`` and ``asks`` holding only the levels that changed, with their new
*absolute* quantity (``"0"``: the level is gone from the top ``BOOK_DEPTH``), and the checksum
of the book after it. Messages of one channel carry contiguous sequence numbers (``seq``),
starting at the snapshot's, so a missed message is a visible gap.

The checksum is CRC-32 (IEEE 802.3, as ``zlib.crc32``) of the ASCII string::

    <bid levels>|<ask levels>

where each side is its top ``CHECKSUM_LEVELS`` levels, best first, as ``price:qty`` joined by
``,`` (an empty side is the empty string): for bids 100.1240:30 and 100.1230:10 and one ask
100.1260:20, the input is ``100.1240:30,100.1230:10|100.1260:20`` and the checksum 283650777.
A client that applied every update computes the same number from its own copy; a mismatch (or a
gap in ``seq``) means it must resubscribe for a new snapshot.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from typing import Any

BOOK_DEPTH = 50  # levels per side a book channel carries
CHECKSUM_LEVELS = 10  # levels per side the checksum covers

Level = tuple[str, str]  # (price, qty) as sent


def checksum(bids: Iterable[Level], asks: Iterable[Level]) -> int:
    """The CRC-32 of the top ``CHECKSUM_LEVELS`` levels (the input string is documented above)."""
    text = "|".join(
        ",".join(f"{price}:{qty}" for price, qty in list(side)[:CHECKSUM_LEVELS])
        for side in (bids, asks)
    )
    return zlib.crc32(text.encode("ascii"))


def _changes(old: list[Level], new: list[Level]) -> list[list[str]]:
    """Levels of ``new`` whose quantity differs from ``old``'s, and ``old``'s levels that are
    gone (quantity ``"0"``), best first as ``new`` orders them, the removals after."""
    before = dict(old)
    after = dict(new)
    changed = [[price, qty] for price, qty in new if before.get(price) != qty]
    changed += [[price, "0"] for price, _qty in old if price not in after]
    return changed


class BookChannel:
    """The server side of one ``book.{symbol}`` channel.

    ``depth()`` returns the book's current ``(bids, asks)`` as ``(price_ticks, qty, ...)``
    rows (``matching.OrderBook.depth(BOOK_DEPTH)``); ``price_text(ticks)`` formats a price.
    Call :meth:`update` whenever the book may have changed (the venue's ``("book", symbol)``
    event, once per batch): it returns the update message's body, or None if the top
    ``BOOK_DEPTH`` levels did not change. :meth:`snapshot` is what a new subscriber gets first.
    """

    def __init__(
        self, depth: Callable[[], tuple[list, list]], price_text: Callable[[int], str]
    ) -> None:
        self._depth = depth
        self._price_text = price_text
        self.seq = 0  # the sequence number of the last message built
        self._bids, self._asks = self._levels()

    def _levels(self) -> tuple[list[Level], list[Level]]:
        bids, asks = self._depth()
        text = self._price_text
        return (
            [(text(row[0]), str(row[1])) for row in bids[:BOOK_DEPTH]],
            [(text(row[0]), str(row[1])) for row in asks[:BOOK_DEPTH]],
        )

    def snapshot(self) -> dict[str, Any]:
        """The current book, numbered with the sequence of the last update sent: a subscriber
        applies the updates numbered after it."""
        return {
            "seq": self.seq,
            "bids": [list(level) for level in self._bids],
            "asks": [list(level) for level in self._asks],
            "checksum": checksum(self._bids, self._asks),
        }

    def update(self) -> dict[str, Any] | None:
        bids, asks = self._levels()
        if bids == self._bids and asks == self._asks:
            return None
        message = {
            "bids": _changes(self._bids, bids),
            "asks": _changes(self._asks, asks),
            "checksum": checksum(bids, asks),
        }
        self._bids, self._asks = bids, asks
        self.seq += 1
        message["seq"] = self.seq
        return message


class BookGap(Exception):
    """The mirror cannot go on: a sequence gap or a checksum mismatch; resubscribe."""


def _price_key(price: str) -> tuple[int, str]:
    """Sort key of a decimal price string (no exponent, no sign): by value."""
    whole, _, fraction = price.partition(".")
    return (int(whole), fraction.ljust(12, "0"))


class BookMirror:
    """The client side: a book rebuilt from a snapshot plus updates, every checksum checked.

    :meth:`apply_snapshot` starts (or restarts) it; :meth:`apply_update` raises
    :class:`BookGap` on a missing sequence number or a checksum that does not match, after
    which the caller resubscribes and applies the new snapshot.
    """

    def __init__(self) -> None:
        self.seq: int | None = None
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

    def apply_snapshot(self, message: dict[str, Any]) -> None:
        self.bids = {price: qty for price, qty in message["bids"]}
        self.asks = {price: qty for price, qty in message["asks"]}
        self.seq = message["seq"]
        self._check(message["checksum"])

    def apply_update(self, message: dict[str, Any]) -> None:
        if self.seq is None:
            raise BookGap("an update before any snapshot")
        if message["seq"] != self.seq + 1:
            raise BookGap(f"expected seq {self.seq + 1}, got {message['seq']}")
        for side, levels in ((self.bids, message["bids"]), (self.asks, message["asks"])):
            for price, qty in levels:
                if qty == "0":
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.seq = message["seq"]
        self._check(message["checksum"])

    def levels(self) -> tuple[list[Level], list[Level]]:
        """``(bids, asks)`` best first."""
        bids = sorted(self.bids.items(), key=lambda level: _price_key(level[0]), reverse=True)
        asks = sorted(self.asks.items(), key=lambda level: _price_key(level[0]))
        return bids, asks

    def _check(self, expected: int) -> None:
        bids, asks = self.levels()
        if checksum(bids, asks) != expected:
            self.seq = None
            raise BookGap("checksum mismatch: the rebuilt book differs from the venue's")
