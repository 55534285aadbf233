"""Differential tests: the same command stream into the reference and the compiled book.

After every command both books must have returned the same events and have the same
``state_hash()``, and both must pass ``validate()``. Streams use a narrow price band, few owners
and a small id space, so crossing, self-trade prevention, FOK counting, id reuse and
cancels/replaces of dead ids all happen often; a few out-of-range values keep the rejection paths
busy. A ``restore`` command rebuilds each book from the *other* book's snapshot mid-stream.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import matching
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
from tests.matching.conftest import compiled_book_class

Command = tuple

LOW_PRICE, HIGH_PRICE = 95, 105
MAX_LIVE_ID = 24
OWNERS = (0, 1, 2, 3)
EDGE_IDS = (0, -1, MAX_INT64, MAX_INT64 + 1)
EDGE_PRICES = (0, -3, 1, MAX_INT64, MAX_INT64 + 1)
EDGE_QTYS = (0, -1, MAX_INT64, MAX_INT64 + 1, 2**64)
TIFS = (GTC, DAY, IOC, FOK)
STP_MODES = (CANCEL_TAKER, CANCEL_MAKER, CANCEL_BOTH)


class BookPair:
    """A reference and a compiled book fed the same commands, compared after each one."""

    def __init__(self) -> None:
        self.compiled_class = compiled_book_class()
        self.reference = matching.ReferenceOrderBook()
        self.compiled = self.compiled_class()

    def apply(self, command: Command, compare_state: bool = True) -> None:
        kind, *arguments = command
        if kind == "restore":
            self.restore_from_each_other()
        else:
            reference_events = getattr(self.reference, kind)(*arguments)
            compiled_events = getattr(self.compiled, kind)(*arguments)
            assert compiled_events == reference_events, command
            if kind != "expire_day":
                order_id = arguments[0]
                assert self.compiled.get(order_id) == self.reference.get(order_id), command
        if compare_state:
            self.compare()

    def compare(self) -> None:
        """Full comparison of the two books, and both books' own integrity checks."""
        self.reference.validate()
        self.compiled.validate()
        assert self.compiled.state_hash() == self.reference.state_hash()
        assert len(self.compiled) == len(self.reference)
        assert self.compiled.best_bid() == self.reference.best_bid()
        assert self.compiled.best_ask() == self.reference.best_ask()
        assert self.compiled.depth(3) == self.reference.depth(3)

    def restore_from_each_other(self) -> None:
        """Swap snapshots: each implementation restores the other's, which must round-trip."""
        reference_snapshot = self.reference.snapshot()
        compiled_snapshot = self.compiled.snapshot()
        assert compiled_snapshot == reference_snapshot
        self.reference = matching.ReferenceOrderBook.restore(compiled_snapshot)
        self.compiled = self.compiled_class.restore(reference_snapshot)
        assert self.reference.snapshot() == reference_snapshot
        assert self.compiled.snapshot() == reference_snapshot

    def run(self, commands: Iterable[Command], compare_every: int = 1) -> None:
        for index, command in enumerate(commands, start=1):
            self.apply(command, compare_state=index % compare_every == 0)
        self.compare()


# ------------------------------------------------------------------------ hypothesis streams


def _mostly(common: st.SearchStrategy, rare: Iterable, weight: int = 6) -> st.SearchStrategy:
    """``common`` about ``weight`` times as often as one of the ``rare`` edge values."""
    return st.one_of(*([common] * weight), st.sampled_from(tuple(rare)))


order_ids = _mostly(st.integers(1, MAX_LIVE_ID), EDGE_IDS, weight=12)
prices = _mostly(st.integers(LOW_PRICE, HIGH_PRICE), EDGE_PRICES, weight=12)
quantities = _mostly(st.integers(1, 12), EDGE_QTYS, weight=12)
sides = _mostly(st.sampled_from((BUY, SELL)), (2,), weight=20)
tifs = _mostly(st.sampled_from(TIFS), (4,), weight=20)
owners = _mostly(st.sampled_from(OWNERS), (MAX_INT64, -1), weight=20)
stp_modes = _mostly(st.sampled_from(STP_MODES), (3,), weight=20)

submits = st.tuples(
    st.just("submit"), order_ids, sides, prices, quantities, tifs, owners, st.booleans(), stp_modes
)
cancels = st.tuples(st.just("cancel"), order_ids)
replaces = st.tuples(st.just("replace"), order_ids, prices, quantities)
commands = st.one_of(
    submits,
    submits,
    submits,
    submits,
    cancels,
    replaces,
    replaces,
    st.just(("expire_day",)),
    st.just(("restore",)),
)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(commands, min_size=40, max_size=250))
def test_random_streams_agree(stream):
    BookPair().run(stream)


# ------------------------------------------------------------------ long deterministic stream


def seeded_stream(seed: int, length: int) -> list[Command]:
    """A reproducible stream with every command kind and attribute, deep book, frequent crosses.

    Cancels and replaces mostly name one of the last 64 ids submitted (often still resting), and
    new orders draw from a thousand ids, so reuse of dead ids happens too.
    """
    rng = random.Random(seed)
    recent_ids: list[int] = []
    stream: list[Command] = []
    for _ in range(length):
        roll = rng.random()
        if rng.random() < 0.01:
            order_id = rng.choice(EDGE_IDS)
        elif roll >= 0.6 and recent_ids and rng.random() < 0.8:
            order_id = rng.choice(recent_ids)
        else:
            order_id = rng.randint(1, 1000)
        side = rng.choice((BUY, SELL))
        # Buys mostly below sells, overlapping near 100: a deep book that still crosses often.
        # (A replace does not know its order's side, so its price spans both bands.)
        if roll < 0.6:
            price = rng.randint(88, 101) if side == BUY else rng.randint(99, 112)
        else:
            price = rng.randint(90, 110)
        if rng.random() < 0.01:
            price = rng.choice(EDGE_PRICES)
        qty = rng.randint(1, 50) if rng.random() > 0.01 else rng.choice(EDGE_QTYS)
        if roll < 0.6:
            recent_ids = [*recent_ids[-63:], order_id]
            stream.append(
                (
                    "submit",
                    order_id,
                    side,
                    price,
                    qty,
                    rng.choices(TIFS, weights=(4, 3, 2, 1))[0],
                    rng.choice((*OWNERS, MAX_INT64)),
                    rng.random() < 0.2,
                    rng.choice(STP_MODES),
                )
            )
        elif roll < 0.75:
            stream.append(("cancel", order_id))
        elif roll < 0.998:
            stream.append(("replace", order_id, price, qty))
        elif roll < 0.999:
            stream.append(("expire_day",))
        else:
            stream.append(("restore",))
    return stream


def event_signature(event: tuple) -> tuple:
    """An event's kind plus its reason or kept_priority flag: what the coverage check counts."""
    kind = event[0]
    if kind in (CANCELLED, REJECTED):
        return (kind, event[2])
    if kind == REPLACED:
        return (kind, event[4])
    return (kind,)


ALL_EVENT_SIGNATURES = {
    (FILL,),
    (RESTED,),
    (FILLED,),
    (REPLACED, 0),
    (REPLACED, 1),
    *((CANCELLED, reason) for reason in (USER_CANCEL, IOC_REMAINDER, FOK_UNFILLABLE)),
    *((CANCELLED, reason) for reason in (SELF_TRADE, EXPIRED)),
    *((REJECTED, reason) for reason in (POST_ONLY_WOULD_CROSS, DUPLICATE_ID, UNKNOWN_ID)),
    *((REJECTED, reason) for reason in (BAD_PRICE, BAD_QTY, BAD_PARAMETER)),
}


def test_long_seeded_stream_agrees():
    # Events and get() are compared after every command; the full state every 10 commands.
    pair = BookPair()
    pair.run(seeded_stream(seed=20260621, length=50_000), compare_every=10)


def test_seeded_stream_exercises_every_event():
    # Guards the generator: a stream that stopped producing some event would test less.
    book = matching.ReferenceOrderBook()
    seen = set()
    peak_resting = 0
    for kind, *arguments in seeded_stream(seed=20260621, length=50_000):
        if kind != "restore":
            seen.update(event_signature(event) for event in getattr(book, kind)(*arguments))
            peak_resting = max(peak_resting, len(book))
    assert seen == ALL_EVENT_SIGNATURES
    assert peak_resting >= 50
