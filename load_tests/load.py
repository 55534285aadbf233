"""The realistic mix, all at once, against ``venue serve``: market makers over WebSocket, brokers
over REST and market-data subscribers, open loop at a target rate (issue 13).

Run from the repository root::

    .venv/bin/python load_tests/load.py                        # ~45 s
    .venv/bin/python load_tests/load.py --rest-rate 400 --ws-rate 800 --seconds 20
    .venv/bin/python load_tests/load.py --subscribers 20 --seconds 5 --hello-seconds 3

Method
------
1. ``venue serve`` in its own process on a fresh data directory (``bench_rest.start_venue``: the
   demo seed, the per-key rate limit raised out of the way) on a free port of 127.0.0.1, and the
   minimal aiohttp app of ``bench_rest.py`` (``--hello-server``) beside it.
2. ``--subscribers`` market-data connections (default 200) in a process of their own
   (``bench_ws.py --subscribers-of``: each a ``LiveBook`` on ``book.IPABS-2025-1-A``, every
   update's sequence number and checksum checked; publish-to-receive from the ``epoch_us`` the
   venue stamps on each update).
3. The hello baseline: ``bench_rest.closed_loop`` against the hello app for ``--hello-seconds``
   (signed requests of an order's size, ``--rest-tasks`` keep-alive connections): ``hello_s``.
4. The mix, for ``--seconds`` after one second of warm-up, both interfaces at once:

   - market makers (P-MM1, P-MM2) over ``--ws-connections`` WebSocket connections with
     ``--ws-tasks`` tasks, each running ``bench_ws.Cycle``: a two-level two-sided
     ``mass_quote``, a resting GTC and the other maker's IOC one tick through it, a GTC far
     away and its cancel; scheduled at ``--ws-rate`` commands a second in all;
   - brokers (P-BRK1, P-BRK2) over REST with ``--rest-tasks`` tasks, each running
     :class:`BrokerCycle`: a GTC away from the market, its replace (price or quantity), its
     cancel, an IOC buy and an IOC sell through the makers' quotes; scheduled at
     ``--rest-rate`` requests a second in all.

   Open loop: each command's send time is fixed in advance (``bench_rest.paced_tasks``: tasks
   round robin, one command in flight per task) and its latency runs from that *scheduled*
   time to its answer, so a stall delays every command scheduled behind it and is counted in
   full rather than hidden by the generator waiting (coordinated omission). A refusal counts
   as an answer for latency; throughput counts acknowledged commands only. Prices, quantities
   and sides come from ``--seed``. ``rest_orders_s`` and ``ws_orders_s`` are acknowledged
   commands per second over the measured window: at a target rate the venue keeps up with,
   they equal the target; below it, the venue fell behind. ``ratio`` = rest_orders_s /
   hello_s. ``md_p99_ms`` is over every update received by every subscriber in the window.

Everything shares the machine (2 cores here): the load generator, the subscribers' process,
the venue and the ledger's writer process; the CPU each used per command is printed.

Last line (exactly)::

    RESULT rest_orders_s=<int> hello_s=<int> ratio=<float> ws_orders_s=<int> p99_rest_ms=<float> p99_ws_ms=<float> md_p99_ms=<float>
"""  # noqa: E501

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from load_tests import bench_rest, bench_ws  # noqa: E402
from load_tests.bench_rest import SYMBOL, instrument_of, percentile  # noqa: E402
from venue.client import VenueAPIError, VenueClient  # noqa: E402
from venue.ws_client import VenueSocket  # noqa: E402

MAKERS = ("P-MM1", "P-MM2")
BROKERS = ("P-BRK1", "P-BRK2")
WS_COMMANDS = frozenset({"order.place", "order.cancel", "order.replace", "mass_quote"})


# ---------------------------------------------------------------- what the clients were told
@dataclass
class Acks:
    """Every acknowledgement the load's clients received, as the crash test needs them: one
    dict per answered command (``kind`` place | cancel | replace | mass_quote, ``participant``,
    the command's key and the answer's order fields), with the monotonic time it arrived."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"rest": 0, "ws": 0})
    refusals: dict[str, int] = field(default_factory=dict)  # by error code
    keep: bool = False  # keep the entries (the crash test); else count only

    def add(self, interface: str, entry: dict[str, Any]) -> None:
        self.counts[interface] += 1
        now = time.monotonic()
        self.times.append(now)
        if self.keep:
            entry["at"] = now
            self.entries.append(entry)

    def refused(self, error: VenueAPIError) -> None:
        self.refusals[error.code] = self.refusals.get(error.code, 0) + 1

    def since(self, moment: float) -> int:
        """Acknowledgements that arrived at or after ``moment`` (monotonic)."""
        times, count = self.times, 0
        for index in range(len(times) - 1, -1, -1):
            if times[index] < moment:
                break
            count += 1
        return count


def _order_fields(report: dict[str, Any]) -> dict[str, Any]:
    """The fields of an order report the crash test compares (wire form: quantities are
    decimal strings)."""
    return {
        "order_id": int(report["order_id"]),
        "client_order_id": report["client_order_id"],
        "ord_status": report["ord_status"],
        "cum_qty": int(report["cum_qty"]),
        "leaves_qty": int(report["leaves_qty"]),
        "trade_ids": list(report["trade_ids"]),
    }


class RecordingClient(VenueClient):
    """The SDK's REST client, noting every acknowledged order command in ``acks``."""

    def __init__(self, *args: Any, participant: str, acks: Acks, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.participant = participant
        self.acks = acks

    async def request(self, method: str, path: str, result, **kwargs: Any) -> Any:
        try:
            answer = await super().request(method, path, result, **kwargs)
        except VenueAPIError as error:
            self.acks.refused(error)
            raise
        if path.startswith("/v1/orders") and method in ("POST", "PATCH", "DELETE"):
            kind = {"POST": "place", "PATCH": "replace", "DELETE": "cancel"}[method]
            if path != "/v1/orders/cancel-all":
                report = msgspec.structs.asdict(answer)
                entry = {"kind": kind, "participant": self.participant}
                entry.update(_order_fields(report))
                self.acks.add("rest", entry)
        return answer


class RecordingSocket(VenueSocket):
    """The SDK's WebSocket session, noting every acknowledged command in ``acks``."""

    def __init__(self, client: VenueClient, *, participant: str, acks: Acks, **kwargs) -> None:
        super().__init__(client, **kwargs)
        self.participant = participant
        self.acks = acks

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        try:
            answer = await super().request(method, params)
        except VenueAPIError as error:
            self.acks.refused(error)
            raise
        if method in WS_COMMANDS:
            entry: dict[str, Any] = {"participant": self.participant}
            if method == "mass_quote":
                entry["kind"] = "mass_quote"
                entry["quote_id"] = answer["quote_id"]
                entry["orders"] = [_order_fields(report) for report in answer["orders"]]
                entry["canceled"] = list(answer["canceled"])
            else:
                entry["kind"] = method.removeprefix("order.")
                entry.update(_order_fields(answer))
            self.acks.add("ws", entry)
        return answer


# ---------------------------------------------------------------- the brokers
class BrokerCycle:
    """One broker task's REST requests in turn: a GTC away from the market, its replace, its
    cancel, then an IOC buy and an IOC sell through the market makers' quotes (so the broker's
    position stays flat and it trades with both makers)."""

    def __init__(self, number: int, instrument, clients: list[RecordingClient], seed: int):
        self.client = clients[number % len(clients)]
        self.random = random.Random(seed * 1_000_003 + number)
        self.text = instrument.format_price
        self.reference = instrument.reference_price
        # P-BRK1 starts with no units of the instrument, so its resting orders are bids.
        self.side = "buy" if self.client.participant == "P-BRK1" or number % 4 < 2 else "sell"
        self.step = 0
        self.resting: int | None = None
        self.price = 0
        self.held = 0  # units this task's IOCs bought less those they sold
        self.short_of = 10 if self.client.participant == "P-BRK1" else 0
        self.counts = {"place": 0, "replace": 0, "cancel": 0, "ioc": 0}

    async def next(self) -> None:
        kind = self.step % 5
        self.step += 1
        away = self.random.randint(6, 12) * (1 if self.side == "sell" else -1)
        if kind == 0:
            self.counts["place"] += 1
            qty = str(self.random.randint(2, 5) * 10)
            self.price = self.reference + away
            report = await self.client.place_order(
                SYMBOL, self.side, qty, price=self.text(self.price)
            )
            self.resting = report.order_id
        elif kind in (1, 2):
            order_id = self.resting
            if order_id is None:  # its placement was refused or not answered
                return
            if kind == 1:
                self.counts["replace"] += 1
                if self.random.random() < 0.5:
                    await self.client.replace_order(
                        order_id, price=self.text(self.reference + away)
                    )
                else:
                    await self.client.replace_order(order_id, qty="10")  # keeps priority
            else:
                self.counts["cancel"] += 1
                self.resting = None
                await self.client.cancel_order(order_id)
        else:
            self.counts["ioc"] += 1
            # P-BRK1 sells only units it bought: its IOC buys may find no offer to take.
            side = "buy" if kind == 3 or self.held < 10 <= self.short_of else "sell"
            through = self.reference + (4 if side == "buy" else -4)
            report = await self.client.place_order(
                SYMBOL, side, "10", price=self.text(through), time_in_force="ioc"
            )
            self.held += int(report.cum_qty) * (1 if side == "buy" else -1)


# ---------------------------------------------------------------- connecting
@dataclass
class Traders:
    """The load's connections to one venue: the brokers' REST clients (one shared session),
    the market makers' WebSocket sessions, and one REST client per maker."""

    session: aiohttp.ClientSession
    brokers: list[RecordingClient]
    makers: list[VenueClient]
    sockets: list[list[RecordingSocket]]  # per maker
    instrument: Any

    async def close(self) -> None:
        for side in self.sockets:
            for socket in side:
                await socket.close()
        for maker in self.makers:
            await maker.close()
        await self.session.close()


async def connect(
    url: str,
    credentials: dict[str, dict],
    acks: Acks,
    *,
    rest_tasks: int,
    ws_connections: int,
    timeout: float = 30.0,
) -> Traders:
    """Log the brokers and the market makers in (``ws_connections`` sockets, half each)."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=rest_tasks),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )
    brokers = [
        RecordingClient(url, credentials[pid]["key_id"], secret=credentials[pid]["secret"],
                        session=session, participant=pid, acks=acks)
        for pid in BROKERS
    ]  # fmt: skip
    makers = [
        VenueClient(url, credentials[pid]["key_id"], secret=credentials[pid]["secret"])
        for pid in MAKERS
    ]
    traders = Traders(session, brokers, makers, [[], []], None)
    try:
        traders.instrument = await instrument_of(brokers[0], SYMBOL)
        for number in range(ws_connections):
            maker = number % 2
            socket = RecordingSocket(makers[maker], participant=MAKERS[maker], acks=acks)
            traders.sockets[maker].append(await socket.connect())
    except BaseException:
        await traders.close()
        raise
    return traders


def cycles(traders: Traders, rest_tasks: int, ws_tasks: int, seed: int, quote_base: int = 0):
    """``(broker cycles, maker cycles)``: one per task. ``quote_base`` offsets the makers'
    quote ids (they must be new in every run against the same venue)."""
    brokers = [BrokerCycle(n, traders.instrument, traders.brokers, seed) for n in range(rest_tasks)]
    makers = []
    for number in range(ws_tasks):
        cycle = bench_ws.Cycle(
            number, traders.instrument, traders.sockets[number % 2], traders.sockets[1 - number % 2]
        )
        cycle.quotes = quote_base
        makers.append(cycle)
    return brokers, makers


def counts_of(all_cycles: list) -> dict[str, int]:
    totals: dict[str, int] = {}
    for cycle in all_cycles:
        for name, count in cycle.counts.items():
            totals[name] = totals.get(name, 0) + count
    return totals


async def paced_mix(
    brokers: list[BrokerCycle], makers: list, rest_rate: float, ws_rate: float, seconds: float
) -> tuple[list[float], list[float]]:
    """Both interfaces at once, each open loop at its rate: ``(REST latencies, WebSocket
    latencies)`` in ms from each command's scheduled send."""

    async def broker_step(number: int) -> None:
        await brokers[number].next()

    async def maker_step(number: int) -> None:
        await makers[number].next()

    rest, ws = await asyncio.gather(
        bench_rest.paced_tasks(rest_rate, seconds, len(brokers), broker_step),
        bench_rest.paced_tasks(ws_rate, seconds, len(makers), maker_step),
    )
    return rest, ws


def figures(latencies: list[float]) -> str:
    if not latencies:
        return "no commands"
    return (
        f"p50 {percentile(latencies, 0.5):.2f} ms, p99 {percentile(latencies, 0.99):.2f} ms, "
        f"p99.9 {percentile(latencies, 0.999):.2f} ms, max {max(latencies):.2f} ms"
    )


# ---------------------------------------------------------------- processes
def load_credentials(data_dir: Path) -> dict[str, dict]:
    document = json.loads((data_dir / "credentials.json").read_text())
    return {entry["participant_id"]: entry for entry in document["participants"]}


def start_subscribers(url: str, data_dir: Path, count: int, out: Path) -> subprocess.Popen:
    """``bench_ws``'s subscribers' process: ``count`` checked ``LiveBook`` s; returns once
    all hold their snapshot."""
    feed = subprocess.Popen(
        [sys.executable, str(ROOT / "load_tests" / "bench_ws.py"), "--subscribers-of", url,
         str(data_dir / "credentials.json"), str(count), str(out)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    if feed.stdout.readline().strip() != "ready":
        raise SystemExit(f"the subscribers did not start ({feed.wait()})")
    return feed


def stop_subscribers(feed: subprocess.Popen, out: Path) -> dict:
    """Tell the subscribers' process to write what it recorded and exit; that record."""
    feed.stdin.write("stop\n")
    feed.stdin.flush()
    feed.wait(timeout=120)
    return json.loads(out.read_text())


async def hello_baseline(hello_url: str, credentials: dict, tasks: int, seconds: float) -> float:
    """``bench_rest``'s hello phase: the aiohttp limit, requests answered a second."""
    connector = aiohttp.TCPConnector(limit=tasks)
    async with aiohttp.ClientSession(connector=connector) as session:
        clients = [
            VenueClient(hello_url, credentials[pid]["key_id"], secret=credentials[pid]["secret"],
                        session=session)
            for pid in MAKERS
        ]  # fmt: skip
        await bench_rest.closed_loop(clients, 1.0, tasks)  # warm-up
        started = time.perf_counter()
        answered, _ = await bench_rest.closed_loop(clients, seconds, tasks)
        return answered / (time.perf_counter() - started)


# ---------------------------------------------------------------- the run
async def run(args, url: str, hello_url: str, credentials: dict, pids: dict) -> dict[str, Any]:
    hello_rate = await hello_baseline(hello_url, credentials, args.rest_tasks, args.hello_seconds)
    print(f"hello: {hello_rate:,.0f} requests/s (closed loop, {args.rest_tasks} connections, "
          f"{args.hello_seconds} s)", flush=True)  # fmt: skip
    acks = Acks()
    traders = await connect(
        url, credentials, acks, rest_tasks=args.rest_tasks, ws_connections=args.ws_connections
    )
    try:
        brokers, makers = cycles(traders, args.rest_tasks, args.ws_tasks, args.seed)
        await paced_mix(brokers, makers, args.rest_rate, args.ws_rate, 1.0)  # warm-up
        for cycle in (*brokers, *makers):
            cycle.counts = dict.fromkeys(cycle.counts, 0)
        before_acks = dict(acks.counts)
        scraped = bench_rest.scrape(url)
        cpu_before = bench_rest.snapshot_cpu(pids)
        window_start = time.time_ns() // 1000
        started = time.perf_counter()
        rest, ws = await paced_mix(brokers, makers, args.rest_rate, args.ws_rate, args.seconds)
        elapsed = time.perf_counter() - started
        window = (window_start, time.time_ns() // 1000)
        cpu_after = bench_rest.snapshot_cpu(pids)
        inside = bench_rest.server_side(scraped, bench_rest.scrape(url))
    finally:
        await traders.close()
    rest_acked = acks.counts["rest"] - before_acks["rest"]
    ws_acked = acks.counts["ws"] - before_acks["ws"]
    result = {
        "hello_s": hello_rate,
        "rest_s": rest_acked / elapsed,
        "ws_s": ws_acked / elapsed,
        "p99_rest": percentile(rest, 0.99) if rest else float("nan"),
        "p99_ws": percentile(ws, 0.99) if ws else float("nan"),
        "window": window,
    }
    print(f"mix for {elapsed:.1f} s: REST target {args.rest_rate:,.0f}/s, WebSocket target "
          f"{args.ws_rate:,.0f}/s", flush=True)  # fmt: skip
    print(f"  REST: {rest_acked} acknowledged ({result['rest_s']:,.0f}/s) of {len(rest)} sent; "
          f"{counts_of(brokers)}; {figures(rest)}", flush=True)  # fmt: skip
    print(f"  WebSocket: {ws_acked} acknowledged ({result['ws_s']:,.0f}/s) of {len(ws)} sent; "
          f"{counts_of(makers)}; {figures(ws)}", flush=True)  # fmt: skip
    total = max(rest_acked + ws_acked, 1)
    print(f"  refusals by code (both interfaces, warm-up included): {acks.refusals}", flush=True)
    print(f"  CPU per command: {bench_rest.cpu_report(cpu_before, cpu_after, total)}", flush=True)
    print(f"  inside the venue (means): {inside}", flush=True)
    return result


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rest-rate", type=float, default=500.0, help="REST requests/s")
    parser.add_argument("--ws-rate", type=float, default=1000.0, help="WebSocket commands/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured mix")
    parser.add_argument("--hello-seconds", type=float, default=5.0)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--rest-tasks", type=int, default=32, help="brokers' connections")
    parser.add_argument("--ws-connections", type=int, default=8)
    parser.add_argument("--ws-tasks", type=int, default=64)
    parser.add_argument("--seed", type=int, default=13)
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 1 <= args.subscribers <= bench_ws.MAX_SUBSCRIBERS:
        parser.error(f"--subscribers is 1 to {bench_ws.MAX_SUBSCRIBERS}")
    if args.ws_connections < 2 or args.ws_tasks < args.ws_connections or args.rest_tasks < 1:
        parser.error("at least 2 WebSocket connections, a task for each, and one REST task")
    if min(args.rest_rate, args.ws_rate) <= 0 or args.seconds <= 0 or args.seconds > 3_600:
        parser.error("rates must be positive and --seconds at most an hour")


def main() -> None:
    arguments = parser()
    args = arguments.parse_args()
    check_args(arguments, args)
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="load-") as scratch:
        data_dir = Path(scratch) / "data"
        port, hello_port = bench_rest.free_port(), bench_rest.free_port()
        url, hello_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{hello_port}"
        venue = bench_rest.start_venue(data_dir, port)
        hello = subprocess.Popen(
            [sys.executable, str(ROOT / "load_tests" / "bench_rest.py"), "--hello-server",
             str(hello_port)], cwd=ROOT,
        )  # fmt: skip
        feed = None
        try:
            bench_rest.wait_until_up(url + "/healthz", venue)
            bench_rest.wait_until_up(hello_url + "/up", hello)
            credentials = load_credentials(data_dir)
            out = Path(scratch) / "subscribers.json"
            feed = start_subscribers(url, data_dir, args.subscribers, out)
            print(f"{args.subscribers} subscribers on {bench_ws.BOOK}", flush=True)
            pids = {**bench_rest.process_tree(venue.pid), "subscribers": feed.pid}
            result = asyncio.run(run(args, url, hello_url, credentials, pids))
            recorded = stop_subscribers(feed, out)
        finally:
            if feed is not None and feed.poll() is None:
                feed.kill()
            bench_rest.stop(venue, hello)
    md_text, md_p99 = bench_ws.push_latency(recorded, result["window"])
    print(f"market data: {recorded['updates']} updates applied and checked by "
          f"{args.subscribers} subscribers, {recorded['resyncs']} resyncs, "
          f"{recorded['closed']} closed by the venue; publish to receive: {md_text}",
          flush=True)  # fmt: skip
    print(f"load average at end: {os.getloadavg()[0]:.2f}", flush=True)
    ratio = result["rest_s"] / result["hello_s"]
    print(
        f"RESULT rest_orders_s={result['rest_s']:.0f} hello_s={result['hello_s']:.0f} "
        f"ratio={ratio:.3f} ws_orders_s={result['ws_s']:.0f} p99_rest_ms={result['p99_rest']:.3f} "
        f"p99_ws_ms={result['p99_ws']:.3f} md_p99_ms={md_p99:.3f}"
    )


if __name__ == "__main__":
    main()
