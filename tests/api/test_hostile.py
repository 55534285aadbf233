"""Hostile input, a bounded version of ``load_tests/hostile.py`` (issue 13) against the real
server on 127.0.0.1: schemathesis cases, mutated and random bodies, bad and replayed signatures,
oversized bodies, unknown routes and methods, a flood beyond one key's rate limit, slow sends,
and hostile WebSocket frames and logins. Never a 5xx or ``state.internal_error``, every refusal
with a stable code, the venue's state unchanged by all of it (and changed by the one valid
order sent on purpose, then unchanged by its replays), healthz up, memory reported."""

from __future__ import annotations

import asyncio
import hashlib
import resource

import pytest

from load_tests.hostile import Hostile, run
from tests.api.harness import ServerThread

# A rate limit the flood can exceed and the other phases (spread over three keys) do not.
SETTINGS = {"api_rate_limit_per_second": 300, "api_rate_limit_burst": 300}


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory):
    thread = ServerThread(tmp_path_factory.mktemp("venue") / "data", **SETTINGS).start()
    yield thread
    thread.stop()


def _state(server):
    def read():
        exchange = server.venue.exchange
        return hashlib.sha256(
            repr(
                (
                    exchange.seq,
                    sorted(exchange.accounts.balances.items()),
                    sorted(exchange.accounts.reservations.items(), key=repr),
                    sorted(exchange.credentials.items(), key=repr),
                    len(exchange.orders),
                    server.venue.journal.appended_count,
                    server.venue.ledger.height,
                )
            ).encode()
        ).hexdigest()

    return lambda: server.call(read)


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_hostile_input_is_refused_with_stable_codes_and_changes_nothing(limited_server):
    hostile = Hostile(limited_server.base_url, limited_server.credentials, seed=13)
    figures = asyncio.run(
        asyncio.wait_for(
            run(hostile, 2000, 2000, _state(limited_server), _rss, limited_server.port, 1.5,
                log=lambda line: None),
            timeout=120,
        )
    )  # fmt: skip
    tally = hostile.tally
    print(tally.report(), figures)
    assert figures["requests"] >= 2000 and figures["ws_messages"] >= 2000
    assert figures["errors_5xx"] == 0, tally.violations[:10]
    assert figures["unstable"] == 0, tally.violations[:10]
    assert tally.violations == []
    assert tally.accepted == []
    assert figures["state_changed"] == 0
    assert figures["deliberate_order_changed_state"]
    assert figures["health"] == "ok"
    assert any(code == "auth.rate_limited" for _status, code in tally.codes), "no flood 429"
    assert any(code == "auth.replayed_request" for _status, code in tally.codes)
    assert figures["rss_growth_pct"] < 50  # the test process's own, client included (reported)
