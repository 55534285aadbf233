"""Replays of real NASDAQ order flow (LOBSTER sample files) through both books.

Messages become engine commands: a new limit order (type 1) is a GTC ``submit`` with the file's
id, side and price (LOBSTER's integer units, dollars x 10000); a partial cancel (2) or an
execution of a visible order (4) lowers the order's remaining quantity (a priority-keeping
``replace``, or a ``cancel`` when nothing remains); a delete (3) is a ``cancel``. Hidden
executions (5) and halts (7) do not touch the visible book and are skipped.

Two checks: the books agree with each other (events and ``state_hash``) on every message, and the
book we build agrees with the 10-level book NASDAQ published after each message, at every price
the files fully describe (see the AAPL test).

The samples are not in the repository (their terms: never copied into the project nor
redistributed). They are read in place from the directory named by the environment variable
``VENUE_LOBSTER_DIR`` when it is set and non-empty, else from ``../shared/data/lobster`` relative
to the repository root. When that directory is absent the whole module is skipped, with a reason
naming both places; a single missing file skips only its test.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

import matching
from matching import BUY, SELL
from tests.matching.conftest import compiled_book_class

REPO_ROOT = Path(__file__).resolve().parents[2]
LOBSTER_DIR = Path(
    os.environ.get("VENUE_LOBSTER_DIR") or REPO_ROOT.parent / "shared" / "data" / "lobster"
)
AAPL_MESSAGES = LOBSTER_DIR / "AAPL_2012-06-21_34200000_57600000_message_10.csv"
AAPL_BOOKS = LOBSTER_DIR / "AAPL_2012-06-21_34200000_57600000_orderbook_10.csv"
AMZN_MESSAGES = LOBSTER_DIR / "AMZN_2012-06-21_34200000_57600000_message_1.csv"

if not LOBSTER_DIR.is_dir():
    pytest.skip(
        f"LOBSTER samples not found at {LOBSTER_DIR}: set VENUE_LOBSTER_DIR or place them in "
        "../shared/data/lobster (relative to the repository root)",
        allow_module_level=True,
    )

NEW_ORDER, PARTIAL_CANCEL, DELETE, VISIBLE_EXECUTION = 1, 2, 3, 4
# Ids for the synthetic orders standing for liquidity that rested before the file starts;
# far above LOBSTER's own ids.
SYNTHETIC_ID_BASE = 10**12


@dataclass(frozen=True)
class Message:
    kind: int
    order_id: int
    size: int
    price: int
    side: int


def read_messages(path: Path) -> list[Message]:
    """The message file's rows; a header row (present in some copies) is skipped."""
    messages = []
    with path.open(newline="") as handle:
        for row in csv.reader(handle):
            if not row or not row[1].strip().isdigit():
                continue
            kind, order_id, size, price, direction = (int(field) for field in row[1:6])
            messages.append(Message(kind, order_id, size, price, BUY if direction == 1 else SELL))
    return messages


def read_books(path: Path) -> list[tuple[list[tuple[int, int]], list[tuple[int, int]]]]:
    """Each row as ``(bids, asks)`` lists of ``(price, size)``, best first, empty levels dropped."""
    books = []
    with path.open(newline="") as handle:
        for row in csv.reader(handle):
            values = [int(field) for field in row]
            asks, bids = [], []
            for level in range(0, len(values), 4):
                ask_price, ask_size, bid_price, bid_size = values[level : level + 4]
                if ask_size > 0:
                    asks.append((ask_price, ask_size))
                if bid_size > 0:
                    bids.append((bid_price, bid_size))
            books.append((bids, asks))
    return books


class Replay:
    """Feeds commands derived from LOBSTER messages to the reference and the compiled book."""

    def __init__(self, initial_snapshot: list | None = None) -> None:
        compiled_class = compiled_book_class()
        snapshot = initial_snapshot or []
        self.reference = matching.ReferenceOrderBook.restore(snapshot)
        self.compiled = compiled_class.restore(snapshot)
        # Price -> synthetic order id, per side, for liquidity that predates the file.
        self.synthetic_ids = {BUY: {}, SELL: {}}
        for side, order_id, price, *_ in snapshot:
            self.synthetic_ids[side][price] = order_id
        self.commands_sent = 0

    def command(self, name: str, *arguments: int) -> list:
        reference_events = getattr(self.reference, name)(*arguments)
        compiled_events = getattr(self.compiled, name)(*arguments)
        assert compiled_events == reference_events, (name, arguments)
        self.commands_sent += 1
        return reference_events

    def apply(self, message: Message) -> None:
        if message.kind == NEW_ORDER:
            self.command("submit", message.order_id, message.side, message.price, message.size)
        elif message.kind in (PARTIAL_CANCEL, VISIBLE_EXECUTION, DELETE):
            order_id = message.order_id
            if self.reference.get(order_id) is None:
                # An order from before the file: its liquidity is in the synthetic order.
                order_id = self.synthetic_ids[message.side].get(message.price, order_id)
            if message.kind == DELETE and order_id == message.order_id:
                self.command("cancel", order_id)
            else:
                self.reduce(order_id, message.price, message.size)

    def reduce(self, order_id: int, price: int, size: int) -> None:
        """Lower an order's remaining quantity by ``size``; cancel it when nothing is left."""
        resting = self.reference.get(order_id)
        if resting is None:
            self.command("cancel", order_id)  # unknown in both books: a rejection to compare
        elif resting[2] > size:
            self.command("replace", order_id, price, resting[2] - size)
        else:
            self.command("cancel", order_id)

    def compare(self) -> None:
        self.reference.validate()
        self.compiled.validate()
        assert self.compiled.state_hash() == self.reference.state_hash()


def synthetic_snapshot(bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> list[tuple]:
    """One GTC order per published level, standing for the liquidity resting there."""
    entries = []
    for side, levels in ((BUY, bids), (SELL, asks)):
        for price, size in levels:
            order_id = SYNTHETIC_ID_BASE + len(entries)
            entries.append((side, order_id, price, size, 0, matching.GTC, matching.CANCEL_TAKER, 0))
    return entries


@pytest.mark.skipif(not AAPL_MESSAGES.is_file(), reason="AAPL LOBSTER sample missing")
def test_aapl_replay_matches_the_published_book():
    messages = read_messages(AAPL_MESSAGES)
    books = read_books(AAPL_BOOKS)
    assert len(messages) == len(books) > 900
    # Row i is the book after message i: start from row 0 and replay messages 1 onwards.
    replay = Replay(synthetic_snapshot(*books[0]))
    # The message file only records events that touch the 10 published levels, so a price is
    # fully known only while it has stayed inside the published window in every row so far:
    # bids at or above the highest 10th-level bid seen, asks at or below the lowest 10th ask.
    lowest_known_bid, highest_known_ask = 0, matching.MAX_INT64
    compared_levels = 0
    for index, (message, (published_bids, published_asks)) in enumerate(
        zip(messages, books, strict=True)
    ):
        if index > 0:
            replay.apply(message)
            replay.compare()
        if len(published_bids) == 10:
            lowest_known_bid = max(lowest_known_bid, published_bids[-1][0])
        if len(published_asks) == 10:
            highest_known_ask = min(highest_known_ask, published_asks[-1][0])
        bids, asks = replay.reference.depth(len(replay.reference))
        ours = (
            [(price, total) for price, total, _ in bids if price >= lowest_known_bid],
            [(price, total) for price, total, _ in asks if price <= highest_known_ask],
        )
        theirs = (
            [level for level in published_bids if level[0] >= lowest_known_bid],
            [level for level in published_asks if level[0] <= highest_known_ask],
        )
        assert ours == theirs, message
        compared_levels += len(theirs[0]) + len(theirs[1])
    # The replay did real work: several known levels per row on average, and nearly every
    # message became a command.
    assert compared_levels > 5 * len(messages)
    assert replay.commands_sent > 0.9 * sum(message.kind != 5 for message in messages[1:])


@pytest.mark.skipif(not AMZN_MESSAGES.is_file(), reason="AMZN LOBSTER sample missing")
def test_amzn_full_day_replay_books_agree():
    # A whole trading day of new orders, cancels and executions (no pre-existing liquidity is
    # known for this level-1 file, so only the two books are compared).
    messages = read_messages(AMZN_MESSAGES)
    assert len(messages) > 50_000
    replay = Replay()
    for index, message in enumerate(messages):
        replay.apply(message)
        if index % 100 == 0:
            replay.compare()
    replay.compare()
    assert len(replay.reference) > 0
