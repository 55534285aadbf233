"""Differential tests: the same command stream into the reference and the compiled book.

After every command both books must have returned the same events and have the same
``state_hash()``, and both must pass ``validate()``. Streams use narrow price bands, few owners
and a small id space, so crossing, self-trade prevention, FOK counting, id reuse and
cancels/replaces of dead ids all happen often; a few out-of-range values keep the rejection paths
busy. A ``restore`` command rebuilds each book from the *other* book's snapshot mid-stream.

Commands may hold *symbolic* values, resolved against the reference book just before the command
runs: "the k-th resting order's id", "the current quantity plus one", "exactly the liquidity a
FOK order may take". A blind random stream almost never lands on those edges; symbolic values
land there often, while the streams stay cheap to generate and easy for hypothesis to shrink.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

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

LOW_PRICE, MIDDLE_PRICE, HIGH_PRICE = 94, 100, 106
MAX_LIVE_ID = 60
OWNERS = (0, 1, 2, 3)
EDGE_IDS = (0, -1, MAX_INT64, MAX_INT64 + 1)
EDGE_PRICES = (0, -3, 1, MAX_INT64, MAX_INT64 + 1)
EDGE_QTYS = (0, -1, MAX_INT64, MAX_INT64 + 1, 2**64)
TIFS = (GTC, DAY, IOC, FOK)
STP_MODES = (CANCEL_TAKER, CANCEL_MAKER, CANCEL_BOTH)


# ------------------------------------------------------------------------- symbolic values


@dataclass(frozen=True)
class RestingId:
    """The id of the resting order at ``index`` (modulo the count) in canonical order."""

    index: int


@dataclass(frozen=True)
class FokEdge:
    """A quantity ``delta`` away from the liquidity an order may take (see ``fok_sums``)."""

    which: int  # 0: all crossing liquidity, 1: all but self orders, 2: up to the first self order
    delta: int


@dataclass(frozen=True)
class OppositeBest:
    """A price ``aggression`` ticks through the opposite best (0: at it; -1: one short of it).

    With no opposite side, the middle of the band stands in for the best price.
    """

    aggression: int


@dataclass(frozen=True)
class CurrentQty:
    """A replace quantity ``delta`` away from the order's remaining quantity."""

    delta: int


@dataclass(frozen=True)
class CurrentPrice:
    """A replace at the order's current price."""


def fok_sums(book, side: int, price: int, owner: int) -> tuple[int, int, int]:
    """Crossing liquidity for an order, summed the three ways the FOK rule can count it.

    (all of it; all but self orders, as CANCEL_MAKER counts; up to the first self order, as
    CANCEL_TAKER and CANCEL_BOTH count).
    """
    total = not_self = before_self = 0
    self_met = False
    for entry_side, _, entry_price, qty, entry_owner, *_ in book.snapshot():
        crosses = price >= entry_price if side == BUY else price <= entry_price
        if entry_side == side or not crosses:
            continue
        total += qty
        if owner != 0 and entry_owner == owner:
            self_met = True
            continue
        not_self += qty
        if not self_met:
            before_self += qty
    return total, not_self, before_self


def resolve(command: Command, book) -> Command:
    """Replace the symbolic values in ``command`` by plain ints, reading ``book``."""
    kind, *arguments = command
    if kind in ("expire_day", "restore"):
        return command
    order_id = arguments[0]
    if isinstance(order_id, RestingId):
        resting = book.snapshot()
        order_id = resting[order_id.index % len(resting)][1] if resting else 1
    if kind == "cancel":
        return ("cancel", order_id)
    if kind == "replace":
        _, price, qty = arguments
        current = book.get(order_id) if 1 <= order_id <= MAX_INT64 else None
        side = current[0] if current else BUY
        if isinstance(price, CurrentPrice):
            price = current[1] if current else MIDDLE_PRICE
        elif isinstance(price, OppositeBest):
            price = _through_opposite_best(book, side, price.aggression)
        if isinstance(qty, CurrentQty):
            qty = max(1, current[2] + qty.delta) if current else 1
        return ("replace", order_id, price, qty)
    _, side, price, qty, tif, owner, post_only, stp = arguments
    if isinstance(price, OppositeBest):
        price = _through_opposite_best(book, side, price.aggression)
    if isinstance(qty, FokEdge):
        usable = side in (BUY, SELL) and 1 <= price <= MAX_INT64
        edge = fok_sums(book, side, price, owner)[qty.which] if usable else 0
        qty = max(1, edge + qty.delta)
    return ("submit", order_id, side, price, qty, tif, owner, post_only, stp)


def _through_opposite_best(book, side: int, aggression: int) -> int:
    if side == SELL:
        best = book.best_bid()
        return max(1, (MIDDLE_PRICE if best is None else best) - aggression)
    best = book.best_ask()
    return max(1, (MIDDLE_PRICE if best is None else best) + aggression)


# ------------------------------------------------------------------------------ the pair


class BookPair:
    """A reference and a compiled book fed the same commands, compared after each one."""

    def __init__(self) -> None:
        self.compiled_class = compiled_book_class()
        self.reference = matching.ReferenceOrderBook()
        self.compiled = self.compiled_class()

    def apply(self, command: Command, compare_state: bool = True) -> None:
        command = resolve(command, self.reference)
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

    def run(self, stream: Iterable[Command], compare_every: int = 1) -> None:
        for index, command in enumerate(stream, start=1):
            self.apply(command, compare_state=index % compare_every == 0)
        self.compare()


# ------------------------------------------------------------------------ hypothesis streams


# Weights are drawn as a sampled flag (``st.one_of`` would not weight repeated branches), and
# every strategy is built once at import: building strategies inside a draw is slow.
USUALLY = st.sampled_from((True,) * 15 + (False,))
ALMOST_ALWAYS = st.sampled_from((True,) * 40 + (False,))
OFTEN = st.sampled_from((True, True, False))
SOMETIMES = st.sampled_from((True, False, False, False, False, False))

resting_ids = st.builds(RestingId, st.integers(0, 40))
fresh_ids = st.sampled_from(range(1, MAX_LIVE_ID + 1))
edge_ids = st.sampled_from(EDGE_IDS)
edge_prices = st.sampled_from(EDGE_PRICES)
edge_qtys = st.sampled_from(EDGE_QTYS)
near_opposite_best = st.builds(OppositeBest, st.sampled_from((-1, 0, 1)))
through_opposite_best = st.builds(OppositeBest, st.sampled_from((0, 1, 2, 3)))
small_quantities = st.sampled_from(range(1, 13))
fok_edges = st.builds(FokEdge, st.integers(0, 2), st.integers(-1, 1))
# Buys mostly below sells, overlapping in the middle: the book stays a few levels deep and
# still crosses often.
# (``sampled_from`` draws near-uniformly; ``st.integers`` leans hard towards small values.)
buy_prices = st.sampled_from(range(LOW_PRICE, MIDDLE_PRICE + 3))
sell_prices = st.sampled_from(range(MIDDLE_PRICE - 2, HIGH_PRICE + 1))
band_prices = st.sampled_from(range(LOW_PRICE, HIGH_PRICE + 1))
sides = st.sampled_from((BUY, SELL))
tifs = st.sampled_from((GTC, GTC, DAY, DAY, IOC, FOK))
owners = st.sampled_from(OWNERS)
edge_owners = st.sampled_from((MAX_INT64, -1))
replace_prices = st.one_of(band_prices, st.just(CurrentPrice()), near_opposite_best)
near_current_qty = st.builds(CurrentQty, st.integers(-1, 1))
stp_modes = st.sampled_from(STP_MODES)
command_kinds = st.sampled_from(
    ("submit",) * 16 + ("cancel",) * 3 + ("replace",) * 5 + ("expire_day", "restore")
)


def _pick(draw: st.DrawFn, flag: st.SearchStrategy, common, rare):
    """Draw from ``common`` when ``flag`` comes up True, else from ``rare``."""
    return draw(common if draw(flag) else rare)


def _draw_order_id(draw: st.DrawFn, kind: str):
    """Cancels/replaces mostly name a resting order; submits sometimes do (DUPLICATE_ID)."""
    if draw(SOMETIMES if kind == "submit" else OFTEN):
        return draw(resting_ids)
    return _pick(draw, USUALLY, fresh_ids, edge_ids)


@st.composite
def commands(draw: st.DrawFn) -> Command:
    """One command, possibly with symbolic values (resolved when it runs)."""
    kind = draw(command_kinds)
    if kind in ("expire_day", "restore"):
        return (kind,)
    order_id = _draw_order_id(draw, kind)
    if kind == "cancel":
        return ("cancel", order_id)
    quantity = _pick(draw, ALMOST_ALWAYS, small_quantities, edge_qtys)
    if kind == "replace":
        price = draw(replace_prices)
        price = price if draw(ALMOST_ALWAYS) else draw(edge_prices)
        if draw(OFTEN):
            quantity = draw(near_current_qty)
        return ("replace", order_id, price, quantity)
    side = draw(sides) if draw(ALMOST_ALWAYS) else 2
    tif = draw(tifs) if draw(ALMOST_ALWAYS) else 4
    price = draw(sell_prices if side == SELL else buy_prices)
    if tif in (IOC, FOK) and draw(OFTEN):
        price = draw(through_opposite_best)  # immediate orders mostly aim to trade
    elif draw(SOMETIMES):
        price = draw(near_opposite_best)
    if not draw(ALMOST_ALWAYS):
        price = draw(edge_prices)
    if not draw(OFTEN):
        quantity = draw(fok_edges)
    return (
        "submit",
        order_id,
        side,
        price,
        quantity,
        tif,
        draw(owners) if draw(ALMOST_ALWAYS) else draw(edge_owners),
        draw(SOMETIMES),
        draw(stp_modes) if draw(ALMOST_ALWAYS) else 3,
    )


@settings(
    max_examples=300,
    deadline=None,  # one example replays up to 150 commands through two books
    # Long streams are the point here: slow and large examples are expected, not a smell.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(commands(), min_size=20, max_size=150))
def test_random_streams_agree(stream):
    BookPair().run(stream)


# ------------------------------------------------------------------ long deterministic stream


def seeded_stream(seed: int, length: int) -> list[Command]:
    """A reproducible stream with every command kind and attribute, deep book, frequent crosses.

    Cancels and replaces mostly name a resting order (symbolically) and new orders draw from a
    thousand ids, so duplicates and reuse of dead ids happen too. A third of FOK/IOC quantities
    sit on a FOK edge.
    """
    rng = random.Random(seed)
    stream: list[Command] = []
    for _ in range(length):
        roll = rng.random()
        if rng.random() < 0.01:
            order_id = rng.choice(EDGE_IDS)
        elif roll >= 0.6 and rng.random() < 0.8:
            order_id = RestingId(rng.randrange(1000))
        else:
            order_id = rng.randint(1, 1000)
        side = rng.choice((BUY, SELL))
        # Buys mostly below sells, overlapping near 100: a deep book that still crosses often.
        if roll < 0.6:
            price = rng.randint(88, 101) if side == BUY else rng.randint(99, 112)
        else:
            price = rng.choice((rng.randint(90, 110), CurrentPrice(), OppositeBest(0)))
        if rng.random() < 0.01:
            price = rng.choice(EDGE_PRICES)
        qty = rng.randint(1, 50) if rng.random() > 0.01 else rng.choice(EDGE_QTYS)
        if roll < 0.6:
            tif = rng.choices(TIFS, weights=(4, 3, 2, 1))[0]
            if tif in (IOC, FOK) and rng.random() < 0.33:
                qty = FokEdge(rng.randrange(3), rng.randint(-1, 1))
            stream.append(
                (
                    "submit",
                    order_id,
                    side,
                    price,
                    qty,
                    tif,
                    rng.choice((*OWNERS, MAX_INT64)),
                    rng.random() < 0.2,
                    rng.choice(STP_MODES),
                )
            )
        elif roll < 0.75:
            stream.append(("cancel", order_id))
        elif roll < 0.998:
            if rng.random() < 0.5:
                qty = CurrentQty(rng.randint(-1, 1))
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


def wide_price_stream(seed: int, length: int) -> list[Command]:
    """Thousands of price levels: levels made and emptied far from the touch, deep sweeps.

    Passive prices spread exponentially away from the middle (100,000 ticks), so the books hold
    over a thousand levels; marketable orders (5%) reach up to 3,000 ticks through the opposite
    best.
    Cancels and replaces name ids submitted earlier (live or dead).
    """
    rng = random.Random(seed)
    submitted: list[int] = []
    stream: list[Command] = []
    middle = 100_000

    def passive_price(side: int) -> int:
        distance = 1 + int(rng.expovariate(1 / 2_000))
        return middle - distance if side == BUY else middle + distance

    for order_id in range(1, length + 1):
        roll = rng.random()
        side = rng.choice((BUY, SELL))
        if roll < 0.55 or not submitted:
            submitted.append(order_id)
            tif = rng.choice((GTC, GTC, DAY))
            stream.append(
                (
                    "submit",
                    order_id,
                    side,
                    passive_price(side),
                    rng.randint(1, 100),
                    tif,
                    rng.randint(0, 20),
                    rng.random() < 0.1,
                    rng.choice(STP_MODES),
                )
            )
        elif roll < 0.8:
            stream.append(("cancel", rng.choice(submitted)))
        elif roll < 0.95:
            qty = CurrentQty(rng.randint(-5, 5)) if rng.random() < 0.5 else rng.randint(1, 100)
            stream.append(("replace", rng.choice(submitted), passive_price(side), qty))
        elif roll < 0.998:
            submitted.append(order_id)
            stream.append(
                (
                    "submit",
                    order_id,
                    side,
                    OppositeBest(rng.randint(0, 3_000)),
                    rng.randint(1, 250),
                    rng.choice(TIFS),
                    rng.randint(0, 20),
                    False,
                    rng.choice(STP_MODES),
                )
            )
        else:
            stream.append((rng.choice(("expire_day", "restore")),))
    return stream


def test_wide_price_stream_agrees():
    pair = BookPair()
    pair.run(wide_price_stream(seed=7, length=30_000), compare_every=100)
    levels = pair.reference.depth(len(pair.reference))
    assert len(levels[0]) + len(levels[1]) > 1_000  # the books really were deep


def test_seeded_stream_exercises_every_event():
    # Guards the generator: a stream that stopped producing some event would test less.
    book = matching.ReferenceOrderBook()
    seen = set()
    peak_resting = 0
    for command in seeded_stream(seed=20260621, length=50_000):
        kind, *arguments = resolve(command, book)
        if kind != "restore":
            seen.update(event_signature(event) for event in getattr(book, kind)(*arguments))
            peak_resting = max(peak_resting, len(book))
    assert seen == ALL_EVENT_SIGNATURES
    assert peak_resting >= 50
