"""The WebSocket API's limits on a venue of their own (docs/WEBSOCKET.md "Heartbeats, limits
and close codes"): the per-key rate limit after login, shared with REST, and a slow consumer's
close code as a client that does read sees it.

The rate limiter's clock is frozen for the test (no token comes back while it runs), so what is
refused depends on the count of requests alone, never on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.api.conftest import run
from tests.api.harness import RecordingClient, ServerThread
from tests.api.test_ws import _metric
from venue.api.server import API_KEY, WS_KEY
from venue.api.ws import CloseCode
from venue.client import VenueAPIError

SENIOR = "IPABS-2025-1-A"
BURST = 5


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A venue whose keys may make ``BURST`` requests at once (1 a second after that)."""
    thread = ServerThread(
        tmp_path_factory.mktemp("ws-limits") / "data",
        api_rate_limit_per_second=1,
        api_rate_limit_burst=BURST,
    ).start()
    yield thread
    thread.stop()


def _client(server, participant_id: str, recorded: list) -> RecordingClient:
    entry = server.credentials[participant_id]
    return RecordingClient(
        server.base_url, entry["key_id"], secret=entry["secret"], recorded=recorded
    )


def test_requests_after_login_share_the_keys_rest_bucket_and_are_refused_with_its_code(limited):
    def freeze():
        limiter = limited.app[API_KEY].auth.limiter
        frozen = limiter.clock()
        limiter.clock = lambda: frozen

    limited.call(freeze)
    seq_before = limited.call(lambda: limited.venue.exchange.seq)

    async def flow():
        recorded: list = []
        async with _client(limited, "P-MM1", recorded) as mm1:
            await mm1.accounts()  # REST: one token
            socket = await mm1.websocket()  # the login: one token
            async with socket:
                pongs = [await socket.ping() for _ in range(BURST - 2)]  # the rest of the bucket
                with pytest.raises(VenueAPIError) as limited_ping:
                    await socket.ping()
                with pytest.raises(VenueAPIError) as limited_order:
                    await socket.place_order(SENIOR, "buy", "10", "90.0000")
                with pytest.raises(VenueAPIError) as limited_rest:
                    await mm1.accounts()  # the same bucket, emptied over the WebSocket
                still_open = not socket.closed.is_set()
            # Another key's bucket is its own.
            async with _client(limited, "P-MM2", recorded) as mm2, await mm2.websocket() as other:
                other_pong = await other.ping()
        return (
            pongs,
            limited_ping.value,
            limited_order.value,
            limited_rest.value,
            still_open,
            other_pong,
        )

    pongs, ping_error, order_error, rest_error, still_open, other_pong = run(flow())
    assert len(pongs) == BURST - 2 and all(pong["pong"] for pong in pongs)
    assert (ping_error.code, ping_error.status) == ("auth.rate_limited", 429)
    assert ping_error.problem["details"]["retry_after_s"] >= 1
    assert order_error.code == "auth.rate_limited"
    assert (rest_error.code, rest_error.status) == ("auth.rate_limited", 429)
    assert still_open  # refused, not disconnected
    assert other_pong["pong"] is True
    # The refused order changed nothing.
    assert limited.call(lambda: limited.venue.exchange.seq) == seq_before


def test_a_slow_consumer_that_does_read_sees_close_code_4002_and_its_reason(limited):
    """Twenty order reports pushed in one batch overflow a send queue of five: the venue drops
    the connection, and a client reading everything receives the close frame (4002)."""

    def set_limits(burst: int, queue: int) -> int:
        auth, gateway = limited.app[API_KEY].auth, limited.app[WS_KEY]
        auth.limiter.clock = time.monotonic  # the other test froze it
        auth.limiter.burst, auth.limiter.rate = burst, burst
        previous, gateway.send_queue_limit = gateway.send_queue_limit, queue
        return previous

    limited.call(set_limits, 10_000, 5)
    instrument = limited.call(lambda: limited.venue.exchange.instruments[SENIOR])
    price = lambda offset: instrument.format_price(instrument.reference_price + offset)  # noqa: E731
    dropped_before = _metric(limited, "venue_ws_dropped_consumers_total")

    async def flow():
        recorded: list = []
        async with _client(limited, "P-MM2", recorded) as mm2, await mm2.websocket() as socket:
            await socket.subscribe("orders")
            with pytest.raises(ConnectionError):  # the answer never comes: dropped first
                await socket.mass_quote(
                    SENIOR,
                    "slow-1",
                    bids=[(price(-30 - k), "10") for k in range(10)],
                    asks=[(price(30 + k), "10") for k in range(10)],
                )
            await asyncio.wait_for(socket.closed.wait(), 10)
            return socket.close_code, socket.close_reason

    code, reason = run(flow())
    limited.call(set_limits, BURST, 10_000)
    assert code == CloseCode.SLOW_CONSUMER == 4002
    assert reason.startswith("slow consumer: ")
    assert _metric(limited, "venue_ws_dropped_consumers_total") == dropped_before + 1
