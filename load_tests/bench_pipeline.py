"""Pipeline benchmark: orders per second through ``Venue.submit`` (no network), end to end.

Every order goes the whole way a real one does: validation, risk, matching and settlement in the
exchange, the journal record made durable (write + fsync), every fill signed and made durable on
the ledger by its writer process, then the acknowledgement. Nothing is mocked.

Run from the repository root::

    .venv/bin/python load_tests/bench_pipeline.py                     # ~35 s
    .venv/bin/python load_tests/bench_pipeline.py --concurrency 64 --seconds 10

Method
------
1. A fresh data directory in a temporary folder, opened with the defaults (the demo seed,
   snapshots every 10,000 commands, checkpoints every 1,000 blocks / 1 s).
2. Closed loop (the maximum rate): ``--concurrency`` asyncio tasks (default 64) in the venue's own
   process, each placing a command and awaiting its acknowledgement before the next, for
   ``--seconds``. The mix, with a fixed seed, on ``IPABS-2025-1-A`` around its reference price:

   * 45 % resting quotes: GTC limits 1-4 ticks off the mid on the passive side (market makers);
   * 30 % crossing IOCs: 10 ticks through the mid, so they take the best resting quote;
   * 15 % cancels and 10 % replaces of the task's own resting orders (a replace moves the price
     5 ticks or shrinks the quantity); when a task has nothing resting it places a quote
     instead, and when it has 16 resting (a market maker's bounded set of live quotes) it
     cancels one instead of placing another, so the book stays at about a thousand orders.

   Each task trades as one of the four demo traders, and learns from a private order feed (a
   subscriber to the venue's events, as the WebSocket API's ``orders`` channel will be) when one
   of its resting orders has been filled or cancelled, as a market maker does. ``orders_s``
   counts acknowledged commands of every kind (places, cancels, replaces) per second;
   ``fills_s`` the fills (each one a signed ledger block) per second; the share of placed orders
   that traded is printed too.
3. Open loop (latency): the same mix scheduled at half the closed-loop rate for ``--paced-seconds``;
   each command's latency runs from its *scheduled* send time to its acknowledgement, so a stall
   delays the clock of every command behind it and is not hidden (coordinated omission). The
   sender wakes every 0.5 ms and sends what is due; that wait counts. ``p50_ms``/``p99_ms`` are
   from this phase.
4. The limit: the engine alone (``matching.OrderBook``) replaying the very engine calls the
   closed-loop phase made (same order ids, prices and quantities), ``engine_ops_s``.

CPU seconds of the venue process (all its threads) and of the ledger's writer process are printed
per command, which unlike a rate does not depend on what else the shared machine is doing.

Last line (exactly)::

    RESULT orders_s=<int> fills_s=<int> p50_ms=<float> p99_ms=<float> engine_ops_s=<int>
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matching
from venue.config import Config
from venue.core.commands import CancelOrder, PlaceOrder, ReplaceOrder
from venue.errors import VenueError
from venue.service import Venue

SEED = 20261203
SYMBOL = "IPABS-2025-1-A"
MID = 1_001_250  # the demo reference price, in ticks
TRADERS = ("P-MM1", "P-MM2", "P-BRK2", "P-MM1")  # who has units of A to sell
PACING_TICK_SECONDS = 0.0005
MAX_RESTING_PER_TASK = 16  # like a market maker's bounded set of live quotes


class OrderFeed:
    """The submitters' private order feed: a venue event listener (as the WebSocket API's
    ``orders`` channel will be) that tells each task when one of its resting orders has ended
    -- filled against, or cancelled -- so that it does not try to cancel or replace it."""

    def __init__(self) -> None:
        self.owners: dict[int, Mix] = {}  # resting order id -> the task that placed it
        self.ended: set[int] = set()  # ended before its task heard it was resting

    def __call__(self, events: list[tuple]) -> None:
        for event in events:
            if event[0] == "order" and event[1]["ord_status"] not in OPEN:
                order_id = event[1]["order_id"]
                owner = self.owners.pop(order_id, None)
                if owner is None:
                    self.ended.add(order_id)
                else:
                    owner.forget(order_id)


OPEN = ("new", "partially_filled")
FEED = OrderFeed()


class Mix:
    """The command mix of one task: its trader, its resting orders and a seeded RNG."""

    def __init__(self, trader: str, seed: int) -> None:
        self.trader = trader
        self.rng = random.Random(seed)
        self.resting: list[int] = []  # order ids, and each one's index in the list
        self.index: dict[int, int] = {}
        self.counter = 0
        self.prefix = f"b{seed}-"

    def next_command(self):
        rng = self.rng
        roll = rng.random()
        if len(self.resting) >= MAX_RESTING_PER_TASK and roll >= 0.25:
            roll = rng.random() * 0.15  # a full quote book: cancel instead of quoting more
        if self.resting and roll < 0.15:
            order_id = self.resting[rng.randrange(len(self.resting))]
            self.forget(order_id)
            return CancelOrder(self.trader, order_id)
        if self.resting and roll < 0.25:
            order_id = self.resting[rng.randrange(len(self.resting))]
            if rng.random() < 0.5:  # shrink to one lot (refused as no_change if it is one)
                return ReplaceOrder(self.trader, order_id, None, 10)
            return ReplaceOrder(self.trader, order_id, MID + rng.choice((-5, 5)), None)
        self.counter += 1
        side = rng.choice(("buy", "sell"))
        if roll < 0.55:  # a crossing IOC
            price = MID + 10 if side == "buy" else MID - 10
            tif = "ioc"
        else:  # a resting quote on the passive side
            offset = rng.randint(1, 4)
            price = MID - offset if side == "buy" else MID + offset
            tif = "gtc"
        qty = rng.randint(1, 5) * 10
        return PlaceOrder(self.trader, self.prefix + str(self.counter), SYMBOL, side, "limit",
                          price, qty, tif)  # fmt: skip

    def note(self, command, result) -> None:
        """Keep the task's own list of resting orders up to date from the acknowledgement."""
        if isinstance(command, PlaceOrder):
            order_id = result["order_id"]
            if result["ord_status"] in OPEN and order_id not in FEED.ended:
                self.index[order_id] = len(self.resting)
                self.resting.append(order_id)
                FEED.owners[order_id] = self
        elif isinstance(command, ReplaceOrder) and result["ord_status"] not in (
            "new", "partially_filled",
        ):  # fmt: skip
            self.forget(command.order_id)

    def forget(self, order_id: int) -> None:
        """An order is no longer resting (cancelled, filled, or dropped by a replace)."""
        index = self.index.pop(order_id, None)
        if index is None:
            return
        FEED.owners.pop(order_id, None)
        last = self.resting.pop()
        if last != order_id:  # move the last id into the hole
            self.resting[index] = last
            self.index[last] = index


class Tally:
    def __init__(self) -> None:
        self.acked = 0
        self.refused: dict[str, int] = {}
        self.placed = 0
        self.engine_calls: list[tuple] = []
        self.latencies: list[float] = []


async def run_command(venue: Venue, mix: Mix, tally: Tally, record_engine: bool) -> None:
    command = mix.next_command()
    try:
        result = await venue.submit(command)
    except VenueError as error:
        tally.refused[str(error.code)] = tally.refused.get(str(error.code), 0) + 1
        if error.code == "matching.unknown_order":
            mix.forget(command.order_id)  # it filled meanwhile
        return
    tally.acked += 1
    mix.note(command, result)
    if isinstance(command, PlaceOrder):
        tally.placed += 1
    if record_engine:
        tally.engine_calls.append(engine_call(command, result))


def _traded_share(venue: Venue, first_order_id: int) -> float:
    orders = [o for oid, o in venue.exchange.orders.items() if oid >= first_order_id]
    return sum(1 for o in orders if o.cum_qty) / max(1, len(orders))


async def closed_loop(venue: Venue, concurrency: int, seconds: float) -> tuple[Tally, float]:
    tally = Tally()
    mixes = [Mix(TRADERS[i % len(TRADERS)], SEED + i) for i in range(concurrency)]
    deadline = time.perf_counter() + seconds

    async def worker(mix: Mix) -> None:
        while time.perf_counter() < deadline:
            await run_command(venue, mix, tally, True)

    started = time.perf_counter()
    await asyncio.gather(*(worker(mix) for mix in mixes))
    return tally, time.perf_counter() - started


async def open_loop(venue: Venue, rate: float, seconds: float) -> Tally:
    """Send at ``rate`` commands/s from the schedule; latency from each scheduled send."""
    tally = Tally()
    mixes = [Mix(TRADERS[i % len(TRADERS)], SEED + 1000 + i) for i in range(64)]
    interval = 1.0 / rate
    total = int(rate * seconds)
    pending: set[asyncio.Task] = set()

    async def one(mix: Mix, scheduled: float) -> None:
        await run_command(venue, mix, tally, False)
        tally.latencies.append(time.perf_counter() - scheduled)

    start = time.perf_counter() + 0.01
    sent = 0
    while sent < total:
        now = time.perf_counter()
        while sent < total and start + sent * interval <= now:
            task = asyncio.create_task(one(mixes[sent % len(mixes)], start + sent * interval))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(PACING_TICK_SECONDS)
    await asyncio.gather(*pending)
    return tally


def engine_call(command, result) -> tuple:
    """The engine call an acknowledged command made, as a tuple of ints (kept for the engine
    replay; plain ints, so that the collector need not keep walking them)."""
    if isinstance(command, PlaceOrder):
        side = matching.BUY if command.side == "buy" else matching.SELL
        tif = matching.IOC if command.time_in_force == "ioc" else matching.GTC
        owner = TRADERS.index(command.participant) + 1
        return (0, result["order_id"], side, command.price, command.qty, tif, owner)
    if isinstance(command, CancelOrder):
        return (1, command.order_id)
    return (2, command.order_id, result["price"], result["leaves_qty"])


def engine_limit(ops: list[tuple], repeats: int = 3) -> float:
    """Replay the engine calls of the closed-loop phase on a bare ``matching.OrderBook``."""
    best = 0.0
    for _ in range(repeats):
        book = matching.OrderBook()
        submit, cancel, replace = book.submit, book.cancel, book.replace
        started = time.perf_counter()
        for op in ops:
            if op[0] == 0:
                submit(op[1], op[2], op[3], op[4], op[5], op[6], False, matching.CANCEL_TAKER)
            elif op[0] == 1:
                cancel(op[1])
            else:
                replace(op[1], op[2], op[3])
        best = max(best, len(ops) / (time.perf_counter() - started))
    return best


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def cpu_seconds() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds of each of this process's threads, by thread name (``/proc``); the system
    (kernel) part also under ``NAME (sys)``."""
    ticks = os.sysconf("SC_CLK_TCK")
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    seconds: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = names.get(int(task.name), "other").split(":")[0].rstrip("_0123456789")
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        seconds[name] = seconds.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
        system = f"{name} (sys)"
        seconds[system] = seconds.get(system, 0.0) + int(fields[12]) / ticks
    return seconds


def child_cpu_seconds(pid: int | None) -> float:
    """CPU seconds of a live child (``/proc``): RUSAGE_CHILDREN counts only reaped ones."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(args: argparse.Namespace) -> None:
    print(f"load average at start: {os.getloadavg()}", flush=True)
    print(f"matching engine: {matching.IMPLEMENTATION}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        config = Config(data_dir=Path(tmp) / "data")
        if args.snapshot_every:
            config = dataclasses.replace(config, snapshot_every_commands=args.snapshot_every)
        venue = await Venue.open(config)
        venue.sequencer.subscribe(FEED)
        gc.freeze()
        try:
            first_order = venue.exchange.next_order_id
            height0 = venue.ledger.height
            writer = venue.ledger.writer_process_id
            cpu0, child0 = cpu_seconds()[0], child_cpu_seconds(writer)
            threads0 = thread_cpu_seconds()
            tally, elapsed = await closed_loop(venue, args.concurrency, args.seconds)
            cpu1, child1 = cpu_seconds()[0], child_cpu_seconds(writer)
            threads1 = thread_cpu_seconds()
            fills = venue.ledger.height - height0
            orders_s = tally.acked / elapsed
            fills_s = fills / elapsed
            print(
                f"closed loop: {tally.acked} commands acknowledged in {elapsed:.2f} s by "
                f"{args.concurrency} submitters = {orders_s:,.0f}/s; {fills} fills = "
                f"{fills_s:,.0f}/s; {tally.placed} orders placed, "
                f"{_traded_share(venue, first_order):.0%} of them traded; refused: "
                f"{tally.refused or 'none'}",
                flush=True,
            )
            print(
                f"  CPU per command: venue process {1e6 * (cpu1 - cpu0) / tally.acked:.1f} us, "
                f"ledger writer process {1e6 * (child1 - child0) / tally.acked:.1f} us",
                flush=True,
            )
            per_thread = {
                name: 1e6 * (threads1[name] - threads0.get(name, 0.0)) / tally.acked
                for name in threads1
            }
            print(
                "  by thread (us per command): "
                + ", ".join(f"{name} {us:.1f}" for name, us in sorted(per_thread.items()) if us),
                flush=True,
            )
            rate = orders_s / 2
            paced = await open_loop(venue, rate, args.paced_seconds)
            lat = paced.latencies
            p50, p99 = percentile(lat, 0.5) * 1e3, percentile(lat, 0.99) * 1e3
            print(
                f"open loop at {rate:,.0f}/s for {args.paced_seconds} s: {len(lat)} commands; "
                f"latency from the scheduled send p50 {p50:.2f} ms, p90 "
                f"{percentile(lat, 0.9) * 1e3:.2f}, p99 {p99:.2f}, p99.9 "
                f"{percentile(lat, 0.999) * 1e3:.2f}, max {max(lat) * 1e3:.2f} ms; refused: "
                f"{paced.refused or 'none'}",
                flush=True,
            )
        finally:
            await venue.close()
    engine_ops_s = engine_limit(tally.engine_calls)
    print(f"engine alone on the same {len(tally.engine_calls)} calls: {engine_ops_s:,.0f}/s")
    print(f"load average at end: {os.getloadavg()}", flush=True)
    print(
        f"RESULT orders_s={orders_s:.0f} fills_s={fills_s:.0f} p50_ms={p50:.3f} "
        f"p99_ms={p99:.3f} engine_ops_s={engine_ops_s:.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument(
        "--snapshot-every", type=int, default=0, help="commands between snapshots (0: default)"
    )
    asyncio.run(main(parser.parse_args()))
