"""A broker's whole day through the real server with the SDK: place, a partial fill against a
resting order, get by both ids, list with pagination, replace, cancel, cancel-all, fills,
balances and reservations to the fen, a receipt verified offline, idempotent retries, Ed25519
keys, public market data and metrics.

Expected money figures come from ``venue.domain.pricing`` (the rules the README's worked
example checks by hand), never from the API under test.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.receipt import verify_receipt
from tests.api.conftest import run
from venue.client import VenueAPIError
from venue.core.commands import CancelAll, PlaceOrder
from venue.core.order_entry import trade_date
from venue.domain import demo, pricing
from venue.domain.money import format_cny
from venue.domain.participants import Segment

SENIOR = "IPABS-2025-1-A"
MEZZ = "IPABS-2025-1-B"
FEES = pricing.FeeSchedule.from_wire(demo.FEE_SCHEDULE)
START_CASH = {"P-BRK1": 5_000_000_000, "P-MM2": 20_000_000_000}  # demo.FUNDING, fen


def test_place_partial_fill_get_list_replace_cancel_fills_balances_receipt(server, clients):
    instrument = server.call(lambda: server.venue.exchange.instruments[SENIOR])
    price = instrument.reference_price  # ticks: inside the band
    price_text = instrument.format_price(price)

    async def flow():
        async with clients("P-MM2") as maker, clients("P-BRK1") as broker:
            resting = await maker.place_order(SENIOR, "sell", "500", price=price_text)
            assert (resting.ord_status, resting.exec_type, resting.leaves_qty) == (
                "new",
                "new",
                "500",
            )
            assert (resting.reserved, resting.reserved_asset) == ("500", SENIOR)

            taker = await broker.place_order(
                SENIOR, "buy", "1000", price=price_text, client_order_id="brk1-buy-1"
            )
            assert taker.ord_status == "partially_filled" and taker.exec_type == "trade"
            assert (taker.cum_qty, taker.leaves_qty, taker.last_qty) == ("500", "500", "500")
            assert taker.last_px == price_text and len(taker.trade_ids) == 1
            trade_id = taker.trade_ids[0]

            by_id = await broker.get_order(taker.order_id)
            by_client = await broker.get_order_by_client_id("brk1-buy-1")
            assert by_id == by_client and by_id.exec_type == "order_status"
            assert by_id.trade_ids == [trade_id] and by_id.avg_px.startswith(price_text)

            fills = (await broker.fills()).fills
            maker_fills = (await maker.fills(symbol=SENIOR)).fills
            accounts = await broker.accounts()
            receipt = await broker.receipt(trade_id)
            return resting, taker, trade_id, fills, maker_fills, accounts, receipt

    _resting, taker, trade_id, fills, maker_fills, accounts, receipt = run(flow())

    # The fill, priced by the domain's rules on the trade date it printed on.
    day = trade_date(time.time_ns())
    expected = pricing.price_fill(
        instrument, price, 500, day, maker_segment=Segment.EXCHANGE,
        taker_segment=Segment.INTERBANK, aggressor_side="buy", fees=FEES,
    )  # fmt: skip
    [fill] = fills
    assert (fill.trade_id, fill.order_id, fill.side, fill.liquidity) == (
        trade_id,
        taker.order_id,
        "buy",
        "taker",
    )
    assert fill.settlement_amount == format_cny(expected.settlement_amount)
    assert fill.fee == format_cny(expected.buyer_fee)
    assert fill.cash == format_cny(-(expected.settlement_amount + expected.buyer_fee))
    assert (fill.segment, fill.counterparty_segment) == ("interbank", "exchange")
    [maker_fill] = maker_fills
    assert maker_fill.liquidity == "maker" and maker_fill.side == "sell"
    assert maker_fill.fee == format_cny(expected.seller_fee)  # a rebate: negative
    assert expected.seller_fee < 0
    assert taker.settlement_amount == format_cny(expected.settlement_amount)
    assert taker.fees == format_cny(expected.buyer_fee)

    # Balances and the remaining buy's reservation, to the fen.
    need = pricing.buy_reservation_fen(
        instrument, price, 500, pricing.accrued_upper(instrument, day), FEES, Segment.INTERBANK
    )
    cash = next(balance for balance in accounts.balances if balance.asset == "CNY")
    paid = expected.settlement_amount + expected.buyer_fee
    assert cash.balance == format_cny(START_CASH["P-BRK1"] - paid)
    assert cash.reserved == format_cny(need)
    assert cash.available == format_cny(START_CASH["P-BRK1"] - paid - need)
    units = next(balance for balance in accounts.balances if balance.asset == SENIOR)
    assert (units.balance, units.reserved) == ("500", "0")
    assert [(r.order_id, r.asset, r.amount) for r in accounts.reservations] == [
        (taker.order_id, "CNY", format_cny(need))
    ]
    assert taker.reserved == format_cny(need)

    # The receipt verifies offline against the key file in the data directory, with
    # ledger/receipt.py alone.
    public_key = (server.data_dir / "keys" / "ledger_ed25519.pub").read_text().strip()
    verified = verify_receipt(receipt, public_key)
    assert verified.trade_id == trade_id and verified.fill["settlement_amount"] == (
        expected.settlement_amount
    )

    async def amend_and_cancel():
        async with clients("P-BRK1") as broker:
            replaced = await broker.replace_order(taker.order_id, qty="300")
            after_replace = await broker.accounts()
            canceled = await broker.cancel_order(taker.order_id)
            after_cancel = await broker.accounts()
            with pytest.raises(VenueAPIError) as twice:
                await broker.cancel_order(taker.order_id)
            return replaced, after_replace, canceled, after_cancel, twice.value

    replaced, after_replace, canceled, after_cancel, twice = run(amend_and_cancel())
    assert (replaced.exec_type, replaced.leaves_qty, replaced.cum_qty) == ("replaced", "300", "500")
    need_300 = pricing.buy_reservation_fen(
        instrument, price, 300, pricing.accrued_upper(instrument, day), FEES, Segment.INTERBANK
    )
    assert after_replace.balances[0].reserved == format_cny(need_300)
    assert (canceled.ord_status, canceled.exec_type, canceled.leaves_qty) == (
        "canceled",
        "canceled",
        "0",
    )
    assert after_cancel.balances[0].reserved == "0.00" and after_cancel.reservations == []
    assert after_cancel.balances[0].balance == format_cny(START_CASH["P-BRK1"] - paid)
    assert (twice.status, twice.code) == (404, "matching.unknown_order")


def test_retry_with_the_same_client_order_id(server, clients):
    async def flow():
        async with clients("P-BRK2") as broker:
            first = await broker.place_order(
                MEZZ, "buy", "10", price="99.0000", client_order_id="retry-1"
            )
            again = await broker.place_order(
                MEZZ, "buy", "10", price="99.0000", client_order_id="retry-1"
            )
            with pytest.raises(VenueAPIError) as different:
                await broker.place_order(
                    MEZZ, "buy", "20", price="99.0000", client_order_id="retry-1"
                )
            await broker.cancel_all()
            return first, again, different.value

    first, again, different = run(flow())
    assert again.order_id == first.order_id and again.exec_type == "order_status"
    assert (different.status, different.code) == (409, "matching.duplicate_client_order_id")


def test_list_with_cursor_cancel_all_and_public_market_data(server, clients):
    async def flow():
        async with clients("P-MM1") as maker, clients(None) as public:
            placed = [
                await maker.place_order(MEZZ, "buy", "10", price=f"98.{9 - n}000") for n in range(5)
            ]
            placed.append(await maker.place_order(SENIOR, "sell", "10", price="101.0000"))
            pages, cursor = [], None
            while True:
                page = await maker.list_orders(symbol=MEZZ, limit=2, cursor=cursor)
                pages.append([order.order_id for order in page.orders])
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            everything = [o.order_id async for o in maker.all_orders(limit=4)]
            book = await public.book(MEZZ, depth=3)
            canceled_mezz = await maker.cancel_all(MEZZ)
            still_open = await maker.list_orders()
            canceled_rest = await maker.cancel_all()
            closed = await maker.list_orders(status="closed", symbol=MEZZ, side="buy")
            trades = await public.trades(SENIOR)
            instruments = await public.instruments()
            return (placed, pages, everything, book, canceled_mezz, still_open, canceled_rest,
                    closed, trades, instruments)  # fmt: skip

    (placed, pages, everything, book, canceled_mezz, still_open, canceled_rest, closed, trades,
     instruments) = run(flow())  # fmt: skip
    mezz_ids = [order.order_id for order in placed[:5]]
    assert pages == [mezz_ids[0:2], mezz_ids[2:4], mezz_ids[4:5]]
    assert everything == [order.order_id for order in placed]
    assert [(level.price, level.qty, level.orders) for level in book.bids] == [
        ("98.9000", "10", 1),
        ("98.8000", "10", 1),
        ("98.7000", "10", 1),
    ]
    assert sorted(canceled_mezz) == mezz_ids
    assert [order.order_id for order in still_open.orders] == [placed[5].order_id]
    assert canceled_rest == [placed[5].order_id]
    assert {order.order_id for order in closed.orders} >= set(mezz_ids)
    assert all(order.ord_status == "canceled" for order in closed.orders)
    # The first test's fill is the senior tranche's latest print.
    assert trades.trades and trades.trades[0].trade_id.startswith("T")
    senior = next(i for i in instruments if i.symbol == SENIOR)
    assert senior.factor_history[0].pool_factor == "0.784213"


def test_an_ed25519_key_signs_then_is_revoked(server, clients):
    private_key = Ed25519PrivateKey.generate()
    public_hex = private_key.public_key().public_bytes_raw().hex()

    async def flow():
        async with clients("P-BRK2") as broker:
            issued = await broker.register_key(public_hex)
            async with clients(
                "P-BRK2", key_id=issued.key_id, secret=None, private_key=private_key
            ) as signer:
                order = await signer.place_order(MEZZ, "buy", "10", price="97.5000")
                keys = await signer.keys()
                await broker.revoke_own_key(issued.key_id)
                with pytest.raises(VenueAPIError) as revoked:
                    await signer.get_order(order.order_id)
            await broker.cancel_order(order.order_id)
            return issued, order, keys, revoked.value

    issued, order, keys, revoked = run(flow())
    assert (issued.key_type, issued.secret) == ("ed25519", None)
    assert order.participant == "P-BRK2"
    assert {key.key_type for key in keys.keys} == {"hmac", "ed25519"}
    assert (revoked.status, revoked.code) == (401, "auth.unknown_api_key")
    # The venue keeps only the public key: nothing in its state could sign for it.
    credentials = server.call(lambda: dict(server.venue.exchange.credentials))
    assert issued.key_id not in credentials


def test_metrics_count_orders_fills_and_durability(server, clients):
    async def flow():
        async with clients("P-MM1") as maker:
            await maker.place_order(MEZZ, "buy", "10", price="98.0000", client_order_id="m-1")
            with pytest.raises(VenueAPIError):  # a refused placement
                await maker.place_order(MEZZ, "buy", "20", price="98.0000", client_order_id="m-1")
            await maker.cancel_all()
        async with clients("P-MM1", secret="vs_not-the-secret") as impostor:
            with pytest.raises(VenueAPIError):
                await impostor.accounts()

    run(flow())
    with urllib.request.urlopen(server.base_url + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    assert values['venue_orders_total{outcome="accepted"}'] >= 1
    assert values["venue_fills_total"] >= 0
    assert values["venue_journal_fsync_seconds_count"] >= 1
    assert values["venue_ledger_blocks"] >= 20  # genesis and the demo seed
    assert 'venue_http_requests_total{method="POST",route="/v1/orders",status="201"}' in values
    assert values['venue_orders_total{outcome="matching.duplicate_client_order_id"}'] >= 1
    assert values['venue_api_refusals_total{code="auth.bad_signature"}'] >= 1


def test_reads_wait_for_what_the_state_shows_to_be_durable(server):
    """The read barrier: ``Venue.settled`` returns only once every command applied before it
    is answered (durable), so a read never shows an order or a fill that could still be lost."""

    async def race():
        venue = server.venue
        placing = asyncio.ensure_future(
            venue.submit(PlaceOrder("P-MM1", "barrier-1", MEZZ, "buy", "limit", 981_000, 10))
        )
        await asyncio.sleep(0)  # the order is taken in (and applied) before the barrier
        await venue.settled()
        done_at_barrier = placing.done()
        report = await placing
        await venue.submit(CancelAll("P-MM1"))
        return done_at_barrier, report

    done_at_barrier, report = server.run(race())
    assert done_at_barrier and report["client_order_id"] == "barrier-1"
