"""Prometheus metrics (SPEC section 4): names prefixed ``venue_``, base units (seconds),
counters ending in ``_total``, and no unbounded labels: labels are route templates, methods,
status codes, outcomes and error codes, all from fixed sets (never an order, trade, account or
key id).

Each application has its own registry (so several venues in one process, as in the tests, do
not share counters); ``/metrics`` serves it in the Prometheus text format.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Order and durability latencies: 250 us to 2.5 s (the order path's p50 is a few ms).
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
)  # fmt: skip
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ApiMetrics:
    """The venue's metrics; the API and the sequencer's listeners feed them."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "venue_http_requests_total",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "venue_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.refusals = Counter(
            "venue_api_refusals_total",
            "Requests refused, by stable error code (auth, rate limit, validation, ...).",
            ["code"],
            registry=registry,
        )
        self.orders = Counter(
            "venue_orders_total",
            "Order placements by outcome: accepted, repeated (an idempotent retry) or the "
            "refusal's error code.",
            ["outcome"],
            registry=registry,
        )
        self.order_seconds = Histogram(
            "venue_order_latency_seconds",
            "Order placement from the request's arrival to its durable acknowledgement.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.fills = Counter("venue_fills_total", "Fills settled (durable).", registry=registry)
        self.journal_fsync_seconds = Histogram(
            "venue_journal_fsync_seconds",
            "A batch of commands from its hand-over to the journal to durable (write + fsync, "
            "group commit).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ledger_durable_seconds = Histogram(
            "venue_ledger_append_to_durable_seconds",
            "A batch of blocks from its append to the ledger until its last block is durable "
            "(signed, written, fsynced).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._ledger_blocks = Gauge(
            "venue_ledger_blocks",
            "Blocks appended to the ledger (genesis counted).",
            registry=registry,
        )
        self._ledger_durable = Gauge(
            "venue_ledger_durable_blocks", "Blocks durable in the ledger.", registry=registry
        )
        self._journal_commands = Gauge(
            "venue_journal_durable_commands", "Commands durable in the journal.", registry=registry
        )

    def watch(self, venue: Any) -> None:
        """Read the venue's gauges at scrape time; time its journal and ledger; count fills."""
        self._ledger_blocks.set_function(lambda: venue.ledger.height + 1)
        self._ledger_durable.set_function(lambda: venue.ledger.durable_count)
        self._journal_commands.set_function(lambda: venue.journal.durable_count)
        venue.journal_timing.observer = self.journal_fsync_seconds.observe
        venue.ledger_timing.observer = self.ledger_durable_seconds.observe
        venue.sequencer.subscribe(self._count_fills)

    def _count_fills(self, events: list[tuple]) -> None:
        fills = sum(1 for event in events if event[0] == "fill")
        if fills:
            self.fills.inc(fills)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
