"""A venue started with ``--no-demo`` has no participant: ``venue admit-operator`` admits the
first operator into the stopped venue, whose key then opens the admin API (list an instrument,
admit a broker) once the venue serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matching
from tests.api.conftest import run
from tests.api.harness import RecordingClient, ServerThread
from tests.api.test_operator import NEW

ROOT = Path(__file__).resolve().parents[2]


def admit_operator(data_dir: Path, *options: str) -> subprocess.CompletedProcess:
    """``venue admit-operator`` in its own process (it configures logging as the CLI does)."""
    command = [sys.executable, "-m", "venue.cli", "admit-operator", "--data-dir", str(data_dir)]
    environment = None
    if matching.IMPLEMENTATION == "py":  # a build without the compiled engine (CI's second run)
        environment = {**os.environ, "VENUE_ALLOW_REFERENCE_ENGINE": "1"}
    return subprocess.run(
        [*command, *options], cwd=ROOT, capture_output=True, text=True, env=environment
    )


def test_admit_operator_then_list_and_admit_through_the_api(tmp_path):
    data_dir = tmp_path / "data"
    first = admit_operator(data_dir)
    assert first.returncode == 0, first.stderr
    operator = json.loads(first.stdout)
    assert (operator["participant_id"], operator["role"], operator["key_type"]) == (
        "P-OPS1",
        "operator",
        "hmac",
    )
    assert operator["scopes"] == ["admin", "audit", "read"]
    again = admit_operator(data_dir)
    assert again.returncode == 1 and "state.participant_exists" in again.stderr

    server = ServerThread(data_dir, seed_demo=False).start()
    try:
        beside = admit_operator(data_dir, "--participant-id", "P-OPS2")
        assert beside.returncode == 1 and "refusing to start" in beside.stderr  # it is running
        recorded: list = []

        async def flow():
            async with RecordingClient(
                server.base_url, operator["key_id"], secret=operator["secret"], recorded=recorded
            ) as client:
                listed = await client.list_instrument(**NEW)
                broker = await client.admit("P-BRK1", "First Broker", "broker", "interbank")
                return listed, broker, await client.participants()

        listed, broker, participants = run(flow())
    finally:
        server.stop()
    assert listed.symbol == NEW["symbol"]
    assert broker.secret.startswith("vs_")
    assert [p.participant_id for p in participants] == ["P-BRK1", "P-OPS1"]
