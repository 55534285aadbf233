"""WebSocket benchmark: market makers' mass quotes and orders, and book subscribers' push latency.

Run from the repository root::

    .venv/bin/python load_tests/bench_ws.py                   # ~40 s
    .venv/bin/python load_tests/bench_ws.py --subscribers 50 --seconds 5 --paced-seconds 5

Method
------
1. ``venue serve`` in its own process on a fresh data directory (the demo seed; the per-key
   rate limit raised out of the way), on a free port of 127.0.0.1 (``bench_rest.start_venue``).
2. ``--subscribers`` market-data connections (default 200, at most 1,000), in a process of
   their own (so their CPU is not the order generator's), logged in as the two brokers in turn,
   each holding ``book.IPABS-2025-1-A`` as the SDK's ``LiveBook`` (snapshot, then every update's
   sequence number and checksum checked; a gap resubscribes). Every book update the venue
   broadcasts carries ``epoch_us``, the time it was published; a subscriber's latency is its
   receive time minus that (one clock: the same machine).
3. Closed loop (the maximum rate): ``--connections`` WebSocket connections (default 8, half for
   P-MM1, half for P-MM2), ``--tasks`` asyncio tasks over them (default 64), each awaiting one
   command after another for ``--seconds``: commands of one connection are pipelined (every task
   on it has one in flight). Each task's cycle, with a fixed seed: a ``mass_quote`` replacing
   its maker's two-level quotes on both sides (two and three ticks off the reference price),
   then ``bench_rest.Orders``'s pair (a resting GTC at the reference price, an IOC of the other
   maker one tick through it, so about a quarter of the commands trade and settle as ledger
   blocks), then a GTC ten ticks away and its ``order.cancel``. Every command is answered only
   once durable (journal fsync, fill blocks signed and fsynced). ``ws_orders_s`` counts
   commands answered per second (each kind is printed).
4. Open loop (latency): the same cycle paced at half the closed-loop rate for
   ``--paced-seconds``; each command's latency runs from its *scheduled* send time
   (``bench_rest.paced_tasks``: a stall delays every command behind it and is counted).
   ``p99_ws_ms`` and ``md_p99_ms`` (publish to receive, over every subscriber) are from this
   phase; the closed loop's market-data figures are printed too.

The load generator, the subscribers' process, the venue and the ledger's writer process share
the machine (2 cores here): the CPU of each is printed per command.

Last line (exactly)::

    RESULT ws_orders_s=<int> p99_ws_ms=<float> md_subscribers=<int> md_p99_ms=<float>
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from load_tests.bench_rest import (  # noqa: E402
    SYMBOL,
    Orders,
    closed_tasks,
    cpu_report,
    free_port,
    instrument_of,
    paced_tasks,
    percentile,
    process_tree,
    scrape,
    server_side,
    snapshot_cpu,
    start_venue,
    stop,
    wait_until_up,
)
from venue.client import VenueClient  # noqa: E402
from venue.ws_client import LiveBook  # noqa: E402

MAX_SUBSCRIBERS = 1_000  # bounded: each is a connection (a file descriptor) on both sides
BOOK = "book." + SYMBOL


# ---------------------------------------------------------------- the market makers
class Cycle:
    """One task's commands in turn: a mass quote, ``Orders``'s resting limit and IOC, then an
    order far from the market and its cancel."""

    def __init__(self, number: int, instrument, makers: list, other_makers: list) -> None:
        self.number = number
        self.orders = Orders(number, instrument)
        self.first, self.second = makers, other_makers  # this task's maker's sockets, the other's
        self.text = instrument.format_price
        self.reference = instrument.reference_price
        self.step = 0
        self.quotes = 0
        self.far_order: int | None = None
        self.counts = {"mass_quote": 0, "order.place": 0, "order.cancel": 0}

    async def next(self) -> None:
        kind = self.step % 5
        self.step += 1
        first = self.first[(self.number // 2) % len(self.first)]
        second = self.second[(self.number // 2) % len(self.second)]
        if kind == 0:
            self.quotes += 1
            self.counts["mass_quote"] += 1
            ref, text = self.reference, self.text
            await first.mass_quote(
                SYMBOL,
                f"t{self.number}-{self.quotes}",
                bids=[(text(ref - 2), "10"), (text(ref - 3), "10")],
                asks=[(text(ref + 2), "10"), (text(ref + 3), "10")],
            )
        elif kind in (1, 2):
            self.counts["order.place"] += 1
            by_first, arguments = self.orders.next()
            await (first if by_first else second).place_order(SYMBOL, qty="10", **arguments)
        elif kind == 3:
            self.counts["order.place"] += 1
            side = self.orders.resting_side
            away = self.reference + (10 if side == "sell" else -10)
            report = await first.place_order(SYMBOL, side, "10", self.text(away))
            self.far_order = report["order_id"]
        else:
            self.counts["order.cancel"] += 1
            order_id, self.far_order = self.far_order, None
            if order_id is not None:  # None if its placement was refused
                await first.cancel_order(order_id)


def command_counts(cycles: list[Cycle]) -> dict[str, int]:
    totals = {name: 0 for name in cycles[0].counts}
    for cycle in cycles:
        for name, count in cycle.counts.items():
            totals[name] += count
            cycle.counts[name] = 0
    return totals


# ---------------------------------------------------------------- the subscribers
class TimedBook(LiveBook):
    """A ``LiveBook`` that also records, for every update, when the venue published it and how
    long it took to arrive."""

    def __init__(self, socket, symbol: str, published: array.array, late: array.array) -> None:
        super().__init__(socket, symbol)
        self.published, self.late = published, late

    def _on_frame(self, frame: dict) -> None:
        if frame["type"] == "update":
            now_us = time.time_ns() // 1000
            self.published.append(frame["epoch_us"])
            self.late.append(now_us - frame["epoch_us"])
        super()._on_frame(frame)


async def subscribers(url: str, credentials_file: str, count: int, out: str) -> None:
    """The subscribers' process: ``count`` logged-in ``TimedBook``s; prints ``ready`` once all
    hold their snapshot, and on a line on stdin (or its end) writes what they recorded to
    ``out`` (JSON: publish times and latencies in microseconds, updates, resyncs) and exits."""
    document = json.loads(Path(credentials_file).read_text())
    keys = {entry["participant_id"]: entry for entry in document["participants"]}
    clients = [
        VenueClient(url, keys[pid]["key_id"], secret=keys[pid]["secret"])
        for pid in ("P-BRK1", "P-BRK2")
    ]
    published, late = array.array("q"), array.array("q")
    sockets, books = [], []
    try:
        for number in range(count):
            socket = await clients[number % 2].websocket()
            sockets.append(socket)
            book = TimedBook(socket, SYMBOL, published, late)
            await book.start()
            books.append(book)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        Path(out).write_text(
            json.dumps(
                {
                    "published": published.tolist(),
                    "late": late.tolist(),
                    "updates": sum(book.updates for book in books),
                    "resyncs": sum(book.resyncs for book in books),
                    "closed": sum(socket.closed.is_set() for socket in sockets),
                }
            )
        )
    finally:
        for socket in sockets:
            with contextlib.suppress(Exception):
                await socket.close()
        for client in clients:
            await client.close()


def push_latency(recorded: dict, window: tuple[int, int]) -> tuple[str, float]:
    """Publish-to-receive figures of the updates published within ``window`` (Unix us)."""
    start, end = window
    lates = [
        late / 1000
        for published, late in zip(recorded["published"], recorded["late"], strict=True)
        if start <= published < end
    ]
    if not lates:
        return "no updates", float("nan")
    p99 = percentile(lates, 0.99)
    text = (
        f"{len(lates)} updates received, p50 {percentile(lates, 0.5):.2f} ms, p99 {p99:.2f} ms, "
        f"p99.9 {percentile(lates, 0.999):.2f} ms, max {max(lates):.2f} ms"
    )
    return text, p99


# ---------------------------------------------------------------- the run
async def run(args, url: str, credentials: dict, pids: dict[str, int]) -> dict:
    makers = [
        VenueClient(url, credentials[pid]["key_id"], secret=credentials[pid]["secret"])
        for pid in ("P-MM1", "P-MM2")
    ]
    sockets: list[list] = [[], []]
    figures = {}
    try:
        instrument = await instrument_of(makers[0], SYMBOL)
        for number in range(args.connections):
            sockets[number % 2].append(await makers[number % 2].websocket())
        cycles = [
            Cycle(n, instrument, sockets[n % 2], sockets[(n + 1) % 2]) for n in range(args.tasks)
        ]

        async def step(number: int) -> None:
            await cycles[number].next()

        await closed_tasks(1.0, args.tasks, step)  # warm-up
        command_counts(cycles)
        before = snapshot_cpu(pids)
        started, window_start = time.perf_counter(), time.time_ns() // 1000
        done, refused = await closed_tasks(args.seconds, args.tasks, step)
        elapsed = time.perf_counter() - started
        figures["closed"] = (window_start, time.time_ns() // 1000)
        rate = done / elapsed
        after = snapshot_cpu(pids)
        kinds = ", ".join(f"{n} {c}" for n, c in command_counts(cycles).items())
        print(f"closed loop: {done} commands answered in {elapsed:.1f} s ({rate:,.0f}/s), "
              f"{refused} refused; {kinds}", flush=True)  # fmt: skip
        print(f"  CPU per command: {cpu_report(before, after, done + refused)}", flush=True)

        paced_rate = rate / 2
        scraped = scrape(url)
        before = snapshot_cpu(pids)
        window_start = time.time_ns() // 1000
        latencies = await paced_tasks(paced_rate, args.paced_seconds, args.tasks, step)
        figures["paced"] = (window_start, time.time_ns() // 1000)
        after = snapshot_cpu(pids)
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        print(f"paced at {paced_rate:,.0f}/s: {len(latencies)} commands, p50 {p50:.2f} ms, "
              f"p99 {p99:.2f} ms, p99.9 {percentile(latencies, 0.999):.2f} ms, "
              f"max {max(latencies):.2f} ms", flush=True)  # fmt: skip
        print(f"  CPU per command: {cpu_report(before, after, len(latencies))}", flush=True)
        print(f"  inside the venue (means): {server_side(scraped, scrape(url))}", flush=True)
        figures.update(rate=rate, p99=p99)
    finally:
        for side in sockets:
            for socket in side:
                await socket.close()
        for maker in makers:
            await maker.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=8, help="market makers' connections")
    parser.add_argument("--tasks", type=int, default=64, help="commands in flight in all")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--subscribers-of", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribers_of:
        url, credentials_file, count, out = args.subscribers_of
        asyncio.run(subscribers(url, credentials_file, int(count), out))
        return
    if not 1 <= args.subscribers <= MAX_SUBSCRIBERS:
        parser.error(f"--subscribers is 1 to {MAX_SUBSCRIBERS}")
    if args.connections < 2 or args.tasks < args.connections:
        parser.error("at least 2 connections (one per maker) and a task for each")
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-ws-") as scratch:
        data_dir = Path(scratch) / "data"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        venue = start_venue(data_dir, port)
        feed = None
        try:
            wait_until_up(url + "/healthz", venue)
            credentials_file = data_dir / "credentials.json"
            document = json.loads(credentials_file.read_text())
            credentials = {entry["participant_id"]: entry for entry in document["participants"]}
            out = Path(scratch) / "subscribers.json"
            feed = subprocess.Popen(
                [sys.executable, __file__, "--subscribers-of", url, str(credentials_file),
                 str(args.subscribers), str(out)],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            if feed.stdout.readline().strip() != "ready":
                raise SystemExit(f"the subscribers did not start ({feed.wait()})")
            print(f"{args.subscribers} subscribers on {BOOK}", flush=True)
            pids = {**process_tree(venue.pid), "subscribers": feed.pid}
            figures = asyncio.run(run(args, url, credentials, pids))
            feed.stdin.write("stop\n")
            feed.stdin.flush()
            feed.wait(timeout=60)
            recorded = json.loads(out.read_text())
        finally:
            if feed is not None and feed.poll() is None:
                feed.kill()
            stop(venue)
    print(f"market data: {recorded['updates']} updates applied and checked by "
          f"{args.subscribers} subscribers, {recorded['resyncs']} resyncs, "
          f"{recorded['closed']} connections closed by the venue", flush=True)  # fmt: skip
    closed_text, _ = push_latency(recorded, figures["closed"])
    paced_text, md_p99 = push_latency(recorded, figures["paced"])
    print(f"  publish to receive, closed loop: {closed_text}", flush=True)
    print(f"  publish to receive, paced: {paced_text}", flush=True)
    print(
        f"RESULT ws_orders_s={figures['rate']:.0f} p99_ws_ms={figures['p99']:.3f} "
        f"md_subscribers={args.subscribers} md_p99_ms={md_p99:.3f}"
    )


if __name__ == "__main__":
    main()
