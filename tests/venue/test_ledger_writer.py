"""The ledger's writer process inside the real venue: a child of the service that signs,
appends and fsyncs blocks. Losing it must stop the venue (nothing acknowledged without its
block), and a restart must recover everything that was acknowledged."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from ledger.audit import verify_ledger
from tests.venue.core.helpers import venue_config
from venue.errors import VenueError
from venue.service import Venue


def test_a_killed_ledger_writer_process_stops_the_venue_and_a_restart_recovers(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        venue = await Venue.open(venue_config(data_dir))
        try:
            admitted = await venue.admit("P-NEW1", "New Bank", "interbank", "broker")
            assert admitted["participant_id"] == "P-NEW1"
            height = venue.ledger.height
            writer_pid = venue.ledger.writer_process_id
            assert writer_pid is not None and writer_pid != os.getpid()
            os.kill(writer_pid, signal.SIGKILL)
            with pytest.raises(VenueError) as caught:
                await venue.admit("P-NEW2", "Newer Bank", "exchange", "broker")
            assert caught.value.code == "state.venue_unavailable"
            assert venue.health()["status"] == "failed"
            assert venue.ledger.height >= height
        finally:
            await venue.close()
        reopened = await Venue.open(venue_config(data_dir))
        try:
            participants = reopened.exchange.participants
            assert "P-NEW1" in participants  # acknowledged: kept
            assert reopened.health()["status"] == "ok"
            # The command that failed was journaled before the ledger failed: recovery
            # re-appends its block rather than losing it or leaving the two disagreeing.
            assert "P-NEW2" in participants
            admitted = await reopened.admit("P-NEW3", "Newest Bank", "interbank", "broker")
            assert admitted["participant_id"] == "P-NEW3"
        finally:
            await reopened.close()

    asyncio.run(scenario())
    assert verify_ledger(data_dir / "ledger", workers=1).ok
