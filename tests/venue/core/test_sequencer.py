"""The batched sequencer through the real service: commands are batched, nothing is answered or
published before it is durable in both logs, answers come in sequence order, a refusal inside a
batch touches nothing else, and a failed log fails everything pending."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tests.venue.core.helpers import venue_config
from venue.core.commands import CancelOrder, PlaceOrder
from venue.errors import VenueError
from venue.service import Venue

SYMBOL = "IPABS-2025-1-A"
TRADERS = ("P-MM1", "P-MM2")


def _order(trader: str, n: int, side: str, price: int, tif: str = "gtc") -> PlaceOrder:
    return PlaceOrder(trader, f"{trader}-{n}", SYMBOL, side, "limit", price, 10, tif)


async def _open(tmp_path: Path) -> Venue:
    return await Venue.open(venue_config(tmp_path / "data", checkpoint_every_ms=20))


def test_concurrent_commands_are_batched_and_each_is_durable_before_it_is_answered(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        venue = await _open(tmp_path)
        violations: list[str] = []
        published: list[int] = []

        def on_events(events: list[tuple]) -> None:
            # at publication every fill block must already be durable
            for event in events:
                if event[0] == "fill":
                    trade_id = event[1]["trade_id"]
                    height = venue.ledger.find_fill(trade_id)
                    if height is None or height >= venue.ledger.durable_count:
                        violations.append(f"fill {trade_id} published before durable")
            published.append(venue.journal.durable_count)

        venue.sequencer.subscribe(on_events)
        batches_before = venue.sequencer.batches_run

        async def trader(index: int) -> None:
            who = TRADERS[index % 2]
            for n in range(40):
                side = "buy" if (index + n) % 2 else "sell"
                price = 1_001_250 + (5 if side == "buy" else -5)
                command = _order(who, index * 1000 + n, side, price, "ioc" if n % 3 else "gtc")
                try:
                    result = await venue.submit(command)
                except VenueError:
                    continue
                # answered: its journal record is durable, and so is every fill it made
                durable = venue.journal.durable_count
                tail = range(max(0, durable - 400), durable)
                if not any(command.client_order_id.encode() in venue.journal.read(n) for n in tail):
                    violations.append(f"{command.client_order_id} acknowledged before journaled")
                for trade_id in result["trade_ids"]:
                    height = venue.ledger.find_fill(trade_id)
                    if height is None or height >= venue.ledger.durable_count:
                        violations.append(f"{trade_id} acknowledged before durable")

        try:
            await asyncio.gather(*(trader(i) for i in range(32)))
            commands = 32 * 40
            batches = venue.sequencer.batches_run - batches_before
            assert batches < commands / 4, f"{batches} batches for {commands} commands"
            assert not violations, violations[:5]
            assert published == sorted(published)  # publications in sequence order
            assert published and published[-1] <= venue.journal.durable_count
        finally:
            await venue.close()

    asyncio.run(scenario())


def test_answers_come_in_sequence_order_and_a_refusal_changes_nothing_else(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        venue = await _open(tmp_path)
        order: list[str] = []
        try:
            resting = await venue.submit(_order("P-MM1", 1, "sell", 1_001_260))
            seq = venue.exchange.seq

            async def named(name: str, command) -> None:
                try:
                    await venue.submit(command)
                    order.append(name)
                except VenueError as error:
                    order.append(f"{name}:{error.code}")

            # submitted together: one batch; the middle one is refused
            await asyncio.gather(
                named("a", _order("P-MM2", 1, "buy", 1_001_200)),
                named("b", CancelOrder("P-MM2", resting["order_id"])),  # not its order
                named("c", _order("P-MM2", 2, "buy", 1_001_210)),
            )
            assert order == ["a", "b:matching.not_order_owner", "c"]
            assert venue.exchange.seq == seq + 2  # the refusal took no sequence number
            assert venue.exchange.orders[resting["order_id"]].is_open
            venue.exchange.validate()
        finally:
            await venue.close()

    asyncio.run(scenario())


def test_a_failed_journal_fails_every_pending_command_and_refuses_later_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        venue = await _open(tmp_path)
        try:
            journal = venue.journal

            def failing_append(payloads, on_done):
                raise OSError("disk on fire")

            monkeypatch.setattr(journal, "append_batch", failing_append)
            results = await asyncio.gather(
                *(venue.submit(_order("P-MM1", n, "sell", 1_001_300 + n)) for n in range(5)),
                return_exceptions=True,
            )
            assert all(isinstance(r, VenueError) for r in results), results
            assert {r.code for r in results} == {"state.venue_unavailable"}
            assert venue.sequencer.failed.is_set()
            with pytest.raises(VenueError, match="stopped"):
                await venue.submit(_order("P-MM1", 99, "sell", 1_001_400))
            assert venue.health()["status"] == "failed"
        finally:
            monkeypatch.undo()
            await venue.close()

    asyncio.run(scenario())


def test_no_ledger_block_is_written_before_its_command_is_durable_in_the_journal(
    tmp_path: Path,
) -> None:
    """A batch's blocks go to the ledger held, before its journal records are durable (so that
    signing overlaps the journal's fsync); the journal here takes 0.2 s to say durable, ample
    time for a leaking write gate to put the blocks on disk first."""

    async def scenario() -> None:
        venue = await _open(tmp_path)
        sequencer = venue.sequencer
        real_journal = sequencer.journal
        checked: list[tuple[int, int]] = []  # (ledger durable count, the batch's ledger size)

        class SlowJournal:
            def append_batch(self, records, on_done):
                def durable_later(first, count, error):
                    def fire():
                        batch = on_done.args[0]
                        if batch.ledger_size is not None:
                            checked.append((venue.ledger.durable_count, batch.ledger_size))
                        on_done(first, count, error)

                    threading.Timer(0.2, fire).start()

                return real_journal.append_batch(records, durable_later)

            def __getattr__(self, name):
                return getattr(real_journal, name)

        sequencer.journal = SlowJournal()
        try:
            resting = [venue.submit(_order("P-MM1", n, "sell", 1_001_260)) for n in range(1, 6)]
            await asyncio.gather(*resting)
            crossing = [
                venue.submit(_order("P-MM2", n, "buy", 1_001_260, "ioc")) for n in range(1, 6)
            ]
            results = await asyncio.gather(*crossing)
            assert all(result["cum_qty"] == 10 for result in results)
            assert checked, "no batch with ledger blocks went through"
            for durable, size in checked:
                assert durable < size, f"blocks below {size} were durable before the journal"
        finally:
            sequencer.journal = real_journal
            await venue.close()

    asyncio.run(scenario())
