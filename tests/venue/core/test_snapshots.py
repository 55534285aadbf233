"""Snapshots and the order archive: a snapshot holds the live state, closed orders go once into
an archive, and a restart from both answers for every order ever placed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.venue.core.helpers import venue_config
from venue.core.commands import CancelOrder, PlaceOrder
from venue.core.snapshots import SnapshotError, load_latest_snapshot
from venue.service import Venue

SYMBOL = "IPABS-2025-1-A"


def _place(client_order_id: str, tif: str = "gtc", price: int = 995_000) -> PlaceOrder:
    return PlaceOrder("P-BRK1", client_order_id, SYMBOL, "buy", "limit", price, 10, tif)


def _snapshot_body(path: Path) -> dict:
    return json.loads(path.read_bytes().partition(b"\n")[2])


async def _trade(data_dir: Path, rounds: int) -> dict[str, dict]:
    """Rest one order and close two per round (an IOC that finds nothing, a cancel)."""
    venue = await Venue.open(venue_config(data_dir, snapshot_every_commands=5))
    reports = {}
    try:
        for n in range(rounds):
            reports[f"rest-{n}"] = await venue.submit(_place(f"rest-{n}"))
            reports[f"ioc-{n}"] = await venue.submit(_place(f"ioc-{n}", "ioc"))
            gone = await venue.submit(_place(f"gone-{n}"))
            reports[f"gone-{n}"] = await venue.submit(CancelOrder("P-BRK1", gone["order_id"]))
    finally:
        await venue.close()
    return reports


def test_a_snapshot_holds_only_live_orders_and_the_archive_each_closed_one_once(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    reports = asyncio.run(_trade(data_dir, 12))
    snapshots = data_dir / "snapshots"
    newest = sorted(snapshots.glob("snapshot-*.json"))[-1]
    live = _snapshot_body(newest)["orders"]
    assert {row[0] for row in live} == {reports[f"rest-{n}"]["order_id"] for n in range(12)}
    archived = [row[0] for path in sorted(snapshots.glob("orders-*.json"))
                for row in _snapshot_body(path)["orders"]]  # fmt: skip
    closed = {reports[f"{kind}-{n}"]["order_id"] for kind in ("ioc", "gone") for n in range(12)}
    assert sorted(archived) == sorted(closed)  # every closed order exactly once


def test_a_restart_answers_for_archived_orders_by_id_and_by_client_order_id(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    reports = asyncio.run(_trade(data_dir, 8))

    async def reopen() -> None:
        venue = await Venue.open(venue_config(data_dir, snapshot_every_commands=5))
        try:
            for name, report in reports.items():
                order = venue.exchange.orders[report["order_id"]]
                assert order.status == report["ord_status"], name
            # a retry of a closed order's client_order_id returns the original, unchanged
            seq = venue.exchange.seq
            again = await venue.submit(_place("ioc-3", "ioc"))
            assert again["order_id"] == reports["ioc-3"]["order_id"]
            assert again["ord_status"] == "canceled" and venue.exchange.seq == seq
            venue.exchange.validate()
        finally:
            await venue.close()

    asyncio.run(reopen())


def test_an_archive_newer_than_the_newest_snapshot_is_dropped_and_rebuilt(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    reports = asyncio.run(_trade(data_dir, 6))
    snapshots = data_dir / "snapshots"
    newest = sorted(snapshots.glob("snapshot-*.json"))[-1]
    newest.unlink()  # as if the crash came between the archive and its snapshot
    seq, _state = load_latest_snapshot(snapshots)
    assert all(int(path.name[7:19]) <= seq for path in snapshots.glob("orders-*.json"))

    async def reopen() -> None:
        venue = await Venue.open(venue_config(data_dir))
        try:
            for report in reports.values():
                assert venue.exchange.orders[report["order_id"]].status == report["ord_status"]
            venue.exchange.validate()
        finally:
            await venue.close()

    asyncio.run(reopen())


def test_a_corrupt_order_archive_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    asyncio.run(_trade(data_dir, 4))
    archive = sorted((data_dir / "snapshots").glob("orders-*.json"))[0]
    data = bytearray(archive.read_bytes())
    data[-5] ^= 0x01
    archive.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="checksum"):
        load_latest_snapshot(data_dir / "snapshots")
