"""REST benchmark: signed order placement over HTTP, against a minimal aiohttp app as the limit.

Run from the repository root::

    .venv/bin/python load_tests/bench_rest.py                  # ~50 s
    .venv/bin/python load_tests/bench_rest.py --connections 64 --seconds 10

Method
------
1. ``venue serve`` in its own process on a fresh data directory (the demo seed; the per-key
   rate limit raised out of the way), on a free loopback port.
2. Closed loop (the maximum rate): ``--connections`` keep-alive connections (default 64) from
   this process, one asyncio task each, every task placing an order with the SDK
   (``venue.client``: a signed ``POST /v1/orders``) and awaiting its answer before the next, for
   ``--seconds``. The mix, with a fixed seed, on ``IPABS-2025-1-A`` at its reference price: each
   task alternates a resting GTC limit (a sell for half the tasks, a buy for the other half)
   and an IOC of the opposite side one tick through it, as two market makers (P-MM1, interbank;
   P-MM2, exchange) taking turns on opposite sides, so about half the orders trade (each fill a
   signed ledger block) and units and cash flow both ways. Every order is acknowledged only
   once durable (journal fsync, then the fill blocks signed and fsynced by the ledger's writer
   process), as in production. ``rest_orders_s`` counts orders answered 201 per second.
3. The limit, in the same run: a minimal aiohttp app in its own process answering a JSON
   ``POST`` with a small JSON document (nothing behind it), loaded the same way by the same
   client code (signed requests of the same size, same connections and tasks): ``hello_s``.
   ``ratio`` = rest_orders_s / hello_s: what the venue behind the HTTP layer costs.
4. Open loop (latency): orders scheduled at half the closed-loop rate for ``--paced-seconds``,
   spread over the same connections; each order's latency runs from its *scheduled* send time
   to its answer, so a stall delays every order behind it and is not hidden (coordinated
   omission). ``p99_rest_ms`` is from this phase.

The load generator shares the machine with the server (and the ledger's writer process): on 2
cores its own CPU is part of what is measured, for the venue and the hello app alike.

Last line (exactly)::

    RESULT rest_orders_s=<int> hello_s=<int> ratio=<float> p99_rest_ms=<float>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from venue.client import VenueAPIError, VenueClient  # noqa: E402
from venue.domain.instruments import Instrument  # noqa: E402

SYMBOL = "IPABS-2025-1-A"


class Hello(msgspec.Struct):
    ok: bool


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited early ({process.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def start_venue(data_dir: Path, port: int) -> subprocess.Popen:
    """``venue serve`` in its own process on ``data_dir`` (a fresh one: the demo is seeded) at
    127.0.0.1:``port``, the per-key rate limit raised out of the benchmark's way."""
    environment = {
        **os.environ,
        "VENUE_API_RATE_LIMIT_PER_SECOND": "10000000",
        "VENUE_API_RATE_LIMIT_BURST": "10000000",
        "VENUE_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "venue.cli", "serve", "--data-dir", str(data_dir), "--host",
         "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=environment,
    )  # fmt: skip


def stop(*processes: subprocess.Popen) -> None:
    """SIGTERM each (a clean stop), then wait; killed if one has not stopped in 30 s."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def hello_server(port: int) -> None:
    """The baseline: a minimal aiohttp app answering a JSON POST (run in its own process)."""
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        body = await request.read()
        json.loads(body)
        return web.json_response({"ok": True})

    async def up(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hello", hello)
    app.router.add_get("/up", up)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class Orders:
    """The order mix of one task: a resting limit, then an IOC one tick through it, in turn."""

    def __init__(self, number: int, instrument: Instrument) -> None:
        self.resting_side = "sell" if number % 2 else "buy"
        self.instrument = instrument
        self.price = instrument.reference_price
        self.count = 0

    def next(self) -> tuple[bool, dict]:
        """``(placed by the task's first maker, place_order arguments)``."""
        self.count += 1
        if self.count % 2:
            return True, {"side": self.resting_side, "price": self._text(self.price)}
        side = "buy" if self.resting_side == "sell" else "sell"
        through = self.price + (1 if side == "buy" else -1)
        return False, {"side": side, "price": self._text(through), "time_in_force": "ioc"}

    def _text(self, ticks: int) -> str:
        return self.instrument.format_price(ticks)


async def closed_tasks(seconds: float, tasks: int, step) -> tuple[int, int]:
    """``tasks`` tasks, each awaiting ``step(number)`` back to back for ``seconds``:
    ``(steps that succeeded, steps refused with VenueAPIError)``. The closed loop of every
    API benchmark (``bench_ws.py`` drives it with WebSocket commands)."""
    done = refused = 0
    stop_at = time.perf_counter() + seconds

    async def task(number: int) -> None:
        nonlocal done, refused
        while time.perf_counter() < stop_at:
            try:
                await step(number)
                done += 1
            except VenueAPIError:
                refused += 1

    await asyncio.gather(*(task(n) for n in range(tasks)))
    return done, refused


async def closed_loop(clients, seconds: float, tasks: int, orders: list[Orders] | None = None):
    """``tasks`` tasks sending back to back for ``seconds``: orders (one mix per task) or, with
    no ``orders``, the hello request; ``(answered 2xx, refused)``."""

    async def step(number: int) -> None:
        first, second = clients[number % 2], clients[(number + 1) % 2]
        if orders is None:
            await first.request("POST", "/hello", Hello, body=_HELLO_BODY)
        else:
            by_first, arguments = orders[number].next()
            client = first if by_first else second
            await client.place_order(SYMBOL, qty="10", **arguments)

    return await closed_tasks(seconds, tasks, step)


# The hello phase uses the same number of tasks and a body of the same shape and size.
_HELLO_BODY = {
    "client_order_id": "0" * 32,
    "symbol": SYMBOL,
    "side": "sell",
    "qty": "10",
    "order_type": "limit",
    "price": "100.1250",
    "time_in_force": "gtc",
    "post_only": False,
    "self_trade": "cancel_taker",
}


async def paced_tasks(rate: float, seconds: float, tasks: int, step) -> list[float]:
    """Steps scheduled at ``rate`` a second in all, round robin over ``tasks`` tasks (each
    awaiting ``step(number)``, a refusal counted like an answer); the latency of each from its
    *scheduled* send time (ms), so a stall delays every step behind it and is not hidden
    (coordinated omission)."""
    latencies: list[float] = []
    interval = tasks / rate  # each task's own schedule
    start = time.perf_counter() + 0.1
    count = int(seconds * rate / tasks)

    async def task(number: int) -> None:
        for k in range(count):
            due = start + (k + number / tasks) * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            with contextlib.suppress(VenueAPIError):
                await step(number)
            latencies.append((time.perf_counter() - due) * 1000)

    await asyncio.gather(*(task(n) for n in range(tasks)))
    return latencies


async def paced(clients, rate: float, seconds: float, orders: list[Orders]) -> list[float]:
    """Orders scheduled at ``rate`` a second in all, round robin over the tasks; latency of
    each from its scheduled send time (ms)."""

    async def step(number: int) -> None:
        first, second = clients[number % 2], clients[(number + 1) % 2]
        by_first, arguments = orders[number].next()
        await (first if by_first else second).place_order(SYMBOL, qty="10", **arguments)

    return await paced_tasks(rate, seconds, len(orders), step)


async def instrument_of(client: VenueClient, symbol: str) -> Instrument:
    """The venue's instrument ``symbol`` (for its price formatting), from its REST view."""
    view = msgspec.structs.asdict(await client.instrument(symbol))
    for extra in ("band_lower", "band_upper", "factor_history"):
        del view[extra]
    return Instrument.from_wire(view)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> dict[str, int]:
    """The venue process and its children (the ledger's writer process), by name."""
    tree = {"venue": pid}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                tree[f"child {entry.name}"] = int(entry.name)
    return tree


def cpu_report(before: dict[str, float], after: dict[str, float], orders: int) -> str:
    return ", ".join(
        f"{name} {(after[name] - before[name]) * 1e6 / max(orders, 1):.0f} us"
        for name in after
        if name in before
    )


def snapshot_cpu(pids: dict[str, int]) -> dict[str, float]:
    cpu = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            cpu[name] = cpu_seconds(pid)
    cpu["load generator"] = sum(os.times()[:2])
    return cpu


TIMED = (
    "venue_order_latency_seconds",
    "venue_journal_fsync_seconds",
    "venue_ledger_append_to_durable_seconds",
)


def scrape(url: str) -> dict[str, float]:
    """The ``_sum`` and ``_count`` of the venue's own latency histograms, from ``/metrics``."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    values = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        timed = name.endswith(("_sum", "_count")) and name.rsplit("_", 1)[0] in TIMED
        if timed or name.startswith("venue_order_latency_seconds_bucket"):
            values[name] = float(value)
    return values


def server_side(before: dict[str, float], after: dict[str, float]) -> str:
    """Mean time of each durability step as the venue measured it, between two scrapes."""
    parts = []
    for name in TIMED:
        count = after[name + "_count"] - before[name + "_count"]
        total = after[name + "_sum"] - before[name + "_sum"]
        if count:
            parts.append(
                f"{name.removeprefix('venue_')} {total / count * 1000:.2f} ms x {count:.0f}"
            )
    # The order latency's p99 as the venue saw it: the first bucket holding 99 % of them.
    count = after["venue_order_latency_seconds_count"] - before["venue_order_latency_seconds_count"]
    for name in after:
        bucket = name.startswith("venue_order_latency_seconds_bucket")
        if bucket and count and after[name] - before.get(name, 0) >= 0.99 * count:
            bound = name.split('le="', 1)[1].rstrip('"}')
            parts.append(f"order p99 <= {float(bound) * 1000:g} ms")
            break
    return ", ".join(parts)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(
    args: argparse.Namespace, venue_url: str, hello_url: str, credentials, pids: dict[str, int]
) -> None:
    connector = aiohttp.TCPConnector(limit=args.connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        makers = [
            VenueClient(venue_url, credentials[pid]["key_id"], secret=credentials[pid]["secret"],
                        session=session)
            for pid in ("P-MM1", "P-MM2")
        ]  # fmt: skip
        instrument = await instrument_of(makers[0], SYMBOL)
        orders = [Orders(n, instrument) for n in range(args.connections)]
        await closed_loop(makers, 1.0, args.connections, orders)  # warm-up
        before = snapshot_cpu(pids)
        started = time.perf_counter()
        placed, refused = await closed_loop(makers, args.seconds, args.connections, orders)
        rest_rate = placed / (time.perf_counter() - started)
        after = snapshot_cpu(pids)
        print(f"rest: {placed} orders answered 201 in {args.seconds} s ({rest_rate:,.0f}/s), "
              f"{refused} refused", flush=True)  # fmt: skip
        print(f"  CPU per order: {cpu_report(before, after, placed + refused)}", flush=True)
        trades = await makers[0].trades(SYMBOL, limit=1)
        print(f"  last trade {trades.trades[0].trade_id if trades.trades else None}", flush=True)

    connector = aiohttp.TCPConnector(limit=args.connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        hello = [
            VenueClient(hello_url, credentials[pid]["key_id"], secret=credentials[pid]["secret"],
                        session=session)
            for pid in ("P-MM1", "P-MM2")
        ]  # fmt: skip
        await closed_loop(hello, 1.0, args.connections)
        before = snapshot_cpu(pids)
        started = time.perf_counter()
        answered, _ = await closed_loop(hello, args.seconds, args.connections)
        hello_rate = answered / (time.perf_counter() - started)
        after = snapshot_cpu(pids)
        print(f"hello: {answered} answered in {args.seconds} s ({hello_rate:,.0f}/s)", flush=True)
        print(f"  CPU per request: {cpu_report(before, after, answered)}", flush=True)

    connector = aiohttp.TCPConnector(limit=args.connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        makers = [
            VenueClient(venue_url, credentials[pid]["key_id"], secret=credentials[pid]["secret"],
                        session=session)
            for pid in ("P-MM1", "P-MM2")
        ]  # fmt: skip
        rate = rest_rate / 2
        scraped = scrape(venue_url)
        latencies = await paced(makers, rate, args.paced_seconds, orders)
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        p999 = percentile(latencies, 0.999)
        print(f"paced at {rate:,.0f}/s: {len(latencies)} orders, p50 {p50:.2f} ms, "
              f"p99 {p99:.2f} ms, p99.9 {p999:.2f} ms, max {max(latencies):.2f} ms",
              flush=True)  # fmt: skip
        print(f"  inside the venue (means): {server_side(scraped, scrape(venue_url))}", flush=True)
    ratio = rest_rate / hello_rate
    print(
        f"RESULT rest_orders_s={rest_rate:.0f} hello_s={hello_rate:.0f} ratio={ratio:.3f} "
        f"p99_rest_ms={p99:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--hello-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hello_server:
        hello_server(args.hello_server)
        return
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-rest-") as scratch:
        data_dir = Path(scratch) / "data"
        venue_port, hello_port = free_port(), free_port()
        venue = start_venue(data_dir, venue_port)
        hello = subprocess.Popen(
            [sys.executable, __file__, "--hello-server", str(hello_port)], cwd=ROOT
        )
        try:
            wait_until_up(f"http://127.0.0.1:{venue_port}/healthz", venue)
            wait_until_up(f"http://127.0.0.1:{hello_port}/up", hello)
            document = json.loads((data_dir / "credentials.json").read_text())
            credentials = {entry["participant_id"]: entry for entry in document["participants"]}
            pids = {**process_tree(venue.pid), "hello app": hello.pid}
            asyncio.run(
                run(args, f"http://127.0.0.1:{venue_port}", f"http://127.0.0.1:{hello_port}",
                    credentials, pids)
            )  # fmt: skip
        finally:
            stop(venue, hello)


if __name__ == "__main__":
    main()
