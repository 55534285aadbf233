"""The WebSocket API end to end through the real server on 127.0.0.1 (docs/WEBSOCKET.md), with
the SDK (``venue.ws_client``) and the third-party ``websockets`` client.

Every wait is for a behaviour (a push, an answer, an order's state) with a bound, never a
sleep standing in for one.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.api.conftest import run
from venue.api.server import WS_KEY
from venue.client import VenueAPIError
from venue.ws_client import VenueSocket

SENIOR = "IPABS-2025-1-A"
MEZZ = "IPABS-2025-1-B"


def _prices(server, symbol: str):
    """``price(offset)``: the decimal text of the reference price moved by ``offset`` ticks."""
    instrument = server.call(lambda: server.venue.exchange.instruments[symbol])
    return lambda offset: instrument.format_price(instrument.reference_price + offset)


def _ws_url(server) -> str:
    return server.base_url.replace("http", "ws", 1) + "/v1/ws"


async def _until(predicate, timeout: float = 10.0) -> None:
    """Wait (bounded) until ``await predicate()`` is true."""

    async def poll():
        while not await predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def _metric(server, name: str) -> float:
    with urllib.request.urlopen(server.base_url + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def _raw_call(ws, request: dict) -> dict:
    """Send one request on a ``websockets`` connection; its answer (pushes skipped)."""
    await ws.send(json.dumps(request))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if "channel" not in frame:
            return frame


# ---------------------------------------------------------------- login
def test_login_good_bad_signature_replay_stale_and_before_login(server, clients):
    async def flow():
        async with clients("P-MM1") as mm1:
            socket = await mm1.websocket(login=False)
            async with socket:
                with pytest.raises(VenueAPIError) as before:
                    await socket.ping()
                params = socket.login_params()
                bad = {**params, "signature": "0" * 64}
                with pytest.raises(VenueAPIError) as bad_signature:
                    await socket.login(bad)
                stale = socket.login_params()
                stale["timestamp"] = str(int(stale["timestamp"]) - 60_000)
                with pytest.raises(VenueAPIError) as stale_error:
                    await socket.login(stale)
                with pytest.raises(VenueAPIError) as wrong_nonce:
                    await socket.login({**params, "nonce": "another-nonce"})
                logged_in = await socket.login(params)
                with pytest.raises(VenueAPIError) as twice:
                    await socket.login(socket.login_params())
                pong = await socket.ping()
            # The same signed login again, on a new connection: a replay.
            replaying = await mm1.websocket(login=False)
            async with replaying:
                with pytest.raises(VenueAPIError) as replay:
                    await replaying.login(params)
            return before, bad_signature, stale_error, wrong_nonce, logged_in, twice, pong, replay

    before, bad, stale, wrong_nonce, logged_in, twice, pong, replay = run(flow())
    assert before.value.code == "auth.missing_credentials"
    assert (bad.value.code, bad.value.status) == ("auth.bad_signature", 401)
    assert stale.value.code == "auth.stale_timestamp"
    assert wrong_nonce.value.code == "auth.bad_signature"  # the nonce is what was signed
    assert logged_in["participant"] == "P-MM1" and logged_in["cancel_on_disconnect"] is True
    assert logged_in["scopes"] == ["read", "trade"]
    assert twice.value.code == "validation.bad_parameter"
    assert pong["pong"] is True
    assert replay.value.code == "auth.replayed_request"


def test_ed25519_key_logs_in_and_brokers_have_no_cancel_on_disconnect(server, clients):
    private_key = Ed25519PrivateKey.generate()
    public_hex = private_key.public_key().public_bytes_raw().hex()

    async def flow():
        async with clients("P-BRK2") as broker:
            issued = await broker.register_key(public_hex)
        ed_client = clients("P-BRK2", key_id=issued.key_id, secret=None, private_key=private_key)
        async with ed_client, await ed_client.websocket() as socket:
            return issued.key_id, socket.login_result

    key_id, result = run(flow())
    assert result["key"] == key_id and result["participant"] == "P-BRK2"
    assert result["cancel_on_disconnect"] is False


# ---------------------------------------------------------------- orders and pushes
def test_place_replace_cancel_round_trips_with_order_and_fill_pushes(server, clients):
    price = _prices(server, MEZZ)

    async def flow():
        async with clients("P-MM1") as mm1, clients("P-BRK1") as broker:
            socket = await mm1.websocket()
            async with socket:
                await socket.subscribe("orders", "fills", "trades." + MEZZ)
                placed = await socket.place_order(
                    MEZZ, "sell", "300", price(2), client_order_id="ws-sell-1"
                )
                new_push = await socket.next_push("orders")
                taker = await broker.place_order(MEZZ, "buy", "100", price=price(2))
                trade_push = await socket.next_push("orders")
                fill_push = await socket.next_push("fills")
                print_push = await socket.next_push("trades." + MEZZ)
                replaced = await socket.replace_order(placed["order_id"], price=price(3))
                replaced_push = await socket.next_push("orders")
                canceled = await socket.cancel_order(placed["order_id"])
                canceled_push = await socket.next_push("orders")
                with pytest.raises(VenueAPIError) as again:
                    await socket.cancel_order(placed["order_id"])
                other = await socket.place_order(MEZZ, "sell", "50", price(4))
                await socket.next_push("orders")
                all_canceled = await socket.cancel_all(MEZZ)
                rest_view = await broker.get_order(taker.order_id)
                return (
                    placed,
                    new_push,
                    taker,
                    trade_push,
                    fill_push,
                    print_push,
                    replaced,
                    replaced_push,
                    canceled,
                    canceled_push,
                    again,
                    other,
                    all_canceled,
                    rest_view,
                )

    (
        placed,
        new_push,
        taker,
        trade_push,
        fill_push,
        print_push,
        replaced,
        replaced_push,
        canceled,
        canceled_push,
        again,
        other,
        all_canceled,
        rest_view,
    ) = run(flow())
    assert (placed["ord_status"], placed["exec_type"], placed["price"]) == ("new", "new", price(2))
    assert placed["client_order_id"] == "ws-sell-1" and placed["leaves_qty"] == "300"
    assert new_push["channel"] == "orders" and new_push["data"]["exec_type"] == "new"
    assert new_push["data"]["order_id"] == placed["order_id"]
    trade = trade_push["data"]
    assert (trade["exec_type"], trade["cum_qty"], trade["leaves_qty"]) == ("trade", "100", "200")
    assert trade_push["seq"] == new_push["seq"] + 1
    [trade_id] = taker.trade_ids
    fill = fill_push["data"]
    assert (fill["trade_id"], fill["order_id"], fill["liquidity"]) == (
        trade_id,
        placed["order_id"],
        "maker",
    )
    assert (fill["side"], fill["last_qty"], fill["last_px"]) == ("sell", "100", price(2))
    assert print_push["data"]["trade_id"] == trade_id and print_push["data"]["qty"] == "100"
    assert replaced["exec_type"] == "replaced" and replaced["price"] == price(3)
    assert replaced_push["data"]["exec_type"] == "replaced"
    assert canceled["ord_status"] == "canceled" and canceled_push["data"]["exec_type"] == "canceled"
    assert (again.value.code, again.value.status) == ("matching.unknown_order", 404)
    assert all_canceled == [other["order_id"]]
    assert rest_view.trade_ids == [trade_id]


def test_mass_quote_round_trip_and_a_book_rebuilt_from_concurrent_updates_equals_rest(
    server, clients
):
    price = _prices(server, SENIOR)

    async def quoting(socket, name: str, rounds: int, side_offset: int) -> list[dict]:
        results = []
        for n in range(rounds):
            wiggle = n % 5
            bids = [(price(-10 - side_offset - wiggle - k), str(100 + 10 * k)) for k in range(3)]
            asks = [(price(10 + side_offset + wiggle + k), str(100 + 10 * k)) for k in range(3)]
            results.append(await socket.mass_quote(SENIOR, f"{name}-{n}", bids=bids, asks=asks))
        return results

    async def flow():
        async with clients("P-MM1") as mm1, clients("P-MM2") as mm2, clients(None) as public:
            s1, s2, watcher = await mm1.websocket(), await mm2.websocket(), await mm1.websocket()
            async with s1, s2, watcher:
                book = await watcher.book(SENIOR)
                first = await s1.mass_quote(
                    SENIOR, "mm1-first", bids=[(price(-5), "200")], asks=[(price(5), "200")]
                )
                done = await asyncio.gather(quoting(s1, "mm1", 60, 0), quoting(s2, "mm2", 60, 1))
                last_seq = server.call(lambda: server.app[WS_KEY].book_channels[SENIOR].seq)
                await book.wait_for(lambda b: b.mirror.seq == last_seq)
                rest_book = await public.book(SENIOR, depth=50)
                return first, done, book, rest_book

    first, done, book, rest_book = run(flow())
    assert first["quote_id"] == "mm1-first" and len(first["orders"]) == 2
    assert [o["client_order_id"] for o in first["orders"]] == ["mm1-first.b1", "mm1-first.a1"]
    second = done[0][0]
    assert sorted(second["canceled"]) == sorted(o["order_id"] for o in first["orders"])
    assert book.resyncs == 0 and book.updates >= 60
    bids, asks = book.levels()
    assert bids == [(level.price, level.qty) for level in rest_book.bids]
    assert asks == [(level.price, level.qty) for level in rest_book.asks]
    assert bids and asks


def test_a_forced_gap_is_detected_and_repaired_by_resubscribing(server, clients):
    price = _prices(server, SENIOR)

    async def flow():
        async with clients("P-MM2") as mm2, clients(None) as public:
            socket = await mm2.websocket()
            async with socket:
                book = await socket.book(SENIOR)
                deliver = socket._handlers[book.channel]
                dropped, seen = [], []

                def lossy(frame):  # lose the first update, as a network gap would
                    seen.append(frame)
                    if frame["type"] == "update" and not dropped:
                        dropped.append(frame["seq"])
                        return
                    deliver(frame)

                socket._handlers[book.channel] = lossy
                for n in range(3):
                    await socket.mass_quote(
                        SENIOR,
                        f"gap-{n}",
                        bids=[(price(-20 - n), "100")],
                        asks=[(price(20 + n), "100")],
                    )
                last_seq = server.call(lambda: server.app[WS_KEY].book_channels[SENIOR].seq)
                await book.wait_for(lambda b: b.mirror.seq == last_seq and b.resyncs == 1)
                rest_book = await public.book(SENIOR, depth=50)
                return dropped, book, rest_book, seen

    dropped, book, rest_book, seen = run(flow())
    assert len(dropped) == 1 and book.resyncs == 1
    # Updates carry the venue's publish time (Unix us, in seq order); snapshots do not.
    updates = [frame for frame in seen if frame["type"] == "update"]
    stamps = [frame["epoch_us"] for frame in updates]
    assert len(updates) >= 3 and all(type(stamp) is int for stamp in stamps)
    assert stamps == sorted(stamps) and [f["seq"] for f in updates] == sorted(
        f["seq"] for f in updates
    )
    assert all("epoch_us" not in frame for frame in seen if frame["type"] == "snapshot")
    bids, asks = book.levels()
    assert bids == [(level.price, level.qty) for level in rest_book.bids]
    assert asks == [(level.price, level.qty) for level in rest_book.asks]


# ---------------------------------------------------------------- cancel-on-disconnect, MMP
def test_cancel_on_disconnect_cancels_the_dropped_sessions_orders_and_only_its(server, clients):
    price = _prices(server, MEZZ)

    async def flow():
        async with clients("P-MM1") as mm1:
            keeper = await mm1.websocket()
            kept_off = await mm1.websocket()
            async with keeper, kept_off:
                assert await kept_off.set_cancel_on_disconnect(False) is False
                survivor = await keeper.place_order(MEZZ, "buy", "10", price(-30))
                not_cod = await kept_off.place_order(MEZZ, "buy", "10", price(-31))
                dropped = await connect(_ws_url(server))
                login = VenueSocket(mm1).login_params()
                await _raw_call(dropped, {"id": 0, "method": "login", "params": login})
                ids = []
                for n in range(3):
                    order = {
                        "client_order_id": f"cod-{n}",
                        "symbol": MEZZ,
                        "side": "buy",
                        "qty": "10",
                        "price": price(-32 - n),
                    }
                    answer = await _raw_call(
                        dropped, {"id": n + 1, "method": "order.place", "params": order}
                    )
                    ids.append(answer["result"]["order_id"])
                await kept_off.close()
                dropped.transport.abort()  # the connection drops: no close frame

                async def all_canceled():
                    states = [(await mm1.get_order(i)).ord_status for i in ids]
                    return states == ["canceled"] * 3

                await _until(all_canceled)
                orders = [await mm1.get_order(i) for i in ids]
                survivor_now = await mm1.get_order(survivor["order_id"])
                not_cod_now = await mm1.get_order(not_cod["order_id"])
                await keeper.cancel_all(MEZZ)
                return orders, survivor_now, not_cod_now

    orders, survivor, not_cod = run(flow())
    assert all(o.reason == "user_cancel" for o in orders)
    assert survivor.ord_status == "new" and not_cod.ord_status == "new"


def test_mmp_trips_pulls_the_quotes_refuses_new_ones_until_reset(server, clients):
    price = _prices(server, SENIOR)

    async def flow():
        async with clients("P-MM2") as mm2, clients("P-BRK1") as broker:
            socket = await mm2.websocket()
            async with socket:
                await socket.subscribe("orders")
                armed = await socket.set_mmp(SENIOR, 60_000, "150")
                quote = await socket.mass_quote(
                    SENIOR,
                    "mmp-1",
                    bids=[(price(-40), "100")],
                    asks=[(price(40), "100"), (price(41), "100")],
                )
                await broker.place_order(SENIOR, "buy", "200", price=price(41), time_in_force="ioc")
                pulled = await _pushes_until_status(socket, quote, "canceled")
                with pytest.raises(VenueAPIError) as refused:
                    await socket.mass_quote(SENIOR, "mmp-2", bids=[(price(-40), "100")])
                reset = await socket.reset_mmp(SENIOR)
                again = await socket.mass_quote(SENIOR, "mmp-3", bids=[(price(-40), "100")])
                await socket.set_mmp(SENIOR, 60_000, "0")
                await socket.cancel_all(SENIOR)
                return armed, quote, pulled, refused, reset, again

    armed, quote, pulled, refused, reset, again = run(flow())
    assert armed == {"symbol": SENIOR, "window_ms": 60_000, "qty_limit": "150"}
    bid_id = quote["orders"][0]["order_id"]
    assert pulled[bid_id]["reason"] == "mmp_triggered"
    assert refused.value.code == "risk.mmp_triggered" and refused.value.status == 422
    assert reset["triggered"] is False
    assert again["orders"][0]["ord_status"] == "new"


async def _pushes_until_status(socket, quote, status: str) -> dict[int, dict]:
    """The latest pushed report of each of the quote's orders, once all have ``status``
    (filled ones excepted)."""
    ids = {o["order_id"] for o in quote["orders"]}
    latest: dict[int, dict] = {}
    while True:
        push = await socket.next_push("orders")
        data = push["data"]
        if data["order_id"] in ids:
            latest[data["order_id"]] = data
        if len(latest) == len(ids) and all(
            d["ord_status"] in (status, "filled") for d in latest.values()
        ):
            return latest


# ---------------------------------------------------------------- slow consumers
def test_a_slow_consumer_is_dropped_and_counted_while_another_client_is_unaffected(server, clients):
    gateway = server.call(lambda: server.app[WS_KEY])
    price = _prices(server, SENIOR)
    before = _metric(server, "venue_ws_dropped_consumers_total")
    server.call(setattr, gateway, "send_queue_limit", 200)
    # Small kernel buffers on both ends, set before the connection exists (a receive buffer
    # shrunk after the handshake keeps the large window it advertised): the backlog then
    # reaches the venue's send queue within a few hundred frames, however loaded the machine.
    server.call(setattr, gateway, "socket_send_buffer", 4096)

    async def flow():
        async with clients("P-MM1") as mm1, clients("P-MM2") as mm2:
            login = VenueSocket(mm1).login_params()
            # A client that stops reading: websockets buffers 4 frames, then TCP fills up.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            # no keepalive pings of its own: the only close can be the venue's
            slow = await connect(
                _ws_url(server), sock=sock, max_queue=4, close_timeout=1, ping_interval=None
            )
            await _raw_call(slow, {"id": 1, "method": "login", "params": login})
            await slow.send(
                json.dumps(
                    {"id": 2, "method": "subscribe", "params": {"channels": ["book." + SENIOR]}}
                )
            )
            async with await mm2.websocket() as healthy:
                book = await healthy.book(SENIOR)
                ping = json.dumps({"id": 3, "method": "ping", "params": {}})
                for _ in range(100):  # pipelined pings whose answers it never reads
                    try:
                        await asyncio.gather(*(slow.send(ping) for _ in range(1000)))
                    except ConnectionClosed:
                        break
                await asyncio.wait_for(slow.wait_closed(), 30)
                quote = await healthy.mass_quote(SENIOR, "after-drop", bids=[(price(-50), "70")])
                last_seq = server.call(lambda: gateway.book_channels[SENIOR].seq)
                await book.wait_for(lambda b: b.mirror.seq == last_seq)
                bids = book.levels()[0]
                await healthy.cancel_all(SENIOR)
                mm1_sessions = server.call(
                    lambda: [s for s in gateway.sessions if s.participant_id == "P-MM1"]
                )
                return mm1_sessions, quote, bids, book.resyncs

    try:
        mm1_sessions, quote, bids, resyncs = run(flow())
    finally:
        server.call(setattr, gateway, "send_queue_limit", type(gateway).send_queue_limit)
        server.call(setattr, gateway, "socket_send_buffer", type(gateway).socket_send_buffer)
    assert _metric(server, "venue_ws_dropped_consumers_total") == before + 1
    assert mm1_sessions == []  # the slow session is gone (its connection closed: wait_closed)
    assert quote["orders"][0]["ord_status"] == "new"
    assert (price(-50), "70") in bids and resyncs == 0


# ---------------------------------------------------------------- third-party client, bad input
def test_the_websockets_package_logs_in_subscribes_and_places_an_order(server, clients):
    price = _prices(server, MEZZ)

    async def flow():
        async with clients("P-MM1") as mm1:
            login = VenueSocket(mm1).login_params()
        async with connect(_ws_url(server)) as ws:
            logged = await _raw_call(ws, {"id": "a", "method": "login", "params": login})
            subscribed = await _raw_call(
                ws, {"id": "b", "method": "subscribe", "params": {"channels": ["orders"]}}
            )
            order = {
                "client_order_id": "third-party-1",
                "symbol": MEZZ,
                "side": "buy",
                "qty": "10",
                "price": price(-60),
            }
            await ws.send(json.dumps({"id": 7, "method": "order.place", "params": order}))
            frames = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]
            cancel = await _raw_call(ws, {"id": 8, "method": "cancel_all", "params": {}})
            return logged, subscribed, frames, cancel

    logged, subscribed, frames, cancel = run(flow())
    assert logged == {"id": "a", "result": logged["result"]}
    assert logged["result"]["participant"] == "P-MM1"
    assert subscribed == {"id": "b", "result": {"subscribed": ["orders"]}}
    push, answer = frames  # the push of a command comes before its answer
    assert push["channel"] == "orders" and push["type"] == "report" and push["seq"] == 1
    assert answer["id"] == 7 and answer["result"]["client_order_id"] == "third-party-1"
    assert push["data"] == {**answer["result"], "exec_type": "new"}
    assert cancel["result"]["canceled"] == [answer["result"]["order_id"]]


def test_malformed_messages_get_error_codes_and_change_nothing(server, clients):
    seq_before = server.call(lambda: server.venue.exchange.seq)
    price = _prices(server, MEZZ)
    good = {
        "client_order_id": "bad-input-1",
        "symbol": MEZZ,
        "side": "buy",
        "qty": "10",
        "price": price(-70),
    }

    async def flow():
        async with clients("P-MM1") as mm1:
            login = VenueSocket(mm1).login_params()
        answers = {}
        async with connect(_ws_url(server), max_size=2**21) as ws:
            answers["before login"] = await _raw_call(
                ws, {"id": 1, "method": "order.place", "params": good}
            )
            await _raw_call(ws, {"id": 2, "method": "login", "params": login})
            cases = {
                "invalid json": "{not json",
                "not an object": "[1, 2]",
                "no id": json.dumps({"method": "ping"}),
                "unknown envelope field": json.dumps({"id": 1, "method": "ping", "x": 1}),
                "id of a wrong type": json.dumps({"id": [1], "method": "ping"}),
                "unknown method": json.dumps({"id": 3, "method": "order.explode"}),
                "params not an object": json.dumps({"id": 4, "method": "ping", "params": 5}),
                "wrong type": json.dumps(
                    {"id": 5, "method": "order.place", "params": {**good, "qty": 10}}
                ),
                "unknown param": json.dumps(
                    {"id": 6, "method": "order.place", "params": {**good, "colour": "red"}}
                ),
                "off-tick price": json.dumps(
                    {"id": 7, "method": "order.place", "params": {**good, "price": price(0) + "1"}}
                ),
                "unknown symbol": json.dumps(
                    {"id": 8, "method": "order.place", "params": {**good, "symbol": "NOPE"}}
                ),
                "bad quote": json.dumps(
                    {
                        "id": 9,
                        "method": "mass_quote",
                        "params": {
                            "symbol": MEZZ,
                            "quote_id": "x",
                            "bids": [[price(1), "10"]],
                            "asks": [[price(0), "10"]],
                        },
                    }
                ),
                "quote id with a space": json.dumps(
                    {
                        "id": 13,
                        "method": "mass_quote",
                        "params": {"symbol": MEZZ, "quote_id": "a b", "bids": [[price(-1), "10"]]},
                    }
                ),
                "unknown channel": json.dumps(
                    {"id": 10, "method": "subscribe", "params": {"channels": ["orders", "nope"]}}
                ),
                "lone surrogate": '{"id": 11, "method": "ping\\ud800"}',
                "oversized": json.dumps(
                    {"id": 12, "method": "ping", "params": {}, "pad": "x" * 70_000}
                ),
            }
            for name, text in cases.items():
                await ws.send(text)
                answers[name] = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(b"\x00binary")
            answers["binary"] = json.loads(await asyncio.wait_for(ws.recv(), 10))
            answers["still alive"] = await _raw_call(ws, {"id": 99, "method": "ping"})
        return answers

    answers = run(flow())
    codes = {name: answer.get("error", {}).get("code") for name, answer in answers.items()}
    assert codes == {
        "before login": "auth.missing_credentials",
        "invalid json": "validation.malformed_json",
        "not an object": "validation.bad_parameter",
        "no id": "validation.bad_parameter",
        "unknown envelope field": "validation.unknown_field",
        "id of a wrong type": "validation.bad_parameter",
        "unknown method": "validation.unknown_route",
        "params not an object": "validation.bad_parameter",
        "wrong type": "validation.bad_quantity",
        "unknown param": "validation.unknown_field",
        "off-tick price": "validation.price_off_tick",
        "unknown symbol": "validation.unknown_instrument",
        "bad quote": "matching.bad_quote",
        "quote id with a space": "validation.bad_parameter",
        "unknown channel": "validation.bad_parameter",
        "lone surrogate": "validation.malformed_json",
        "oversized": "validation.body_too_large",
        "binary": "validation.unsupported_media_type",
        "still alive": None,
    }
    assert answers["wrong type"]["id"] == 5 and answers["wrong type"]["error"]["field"] == "qty"
    assert answers["invalid json"]["id"] is None
    assert answers["still alive"]["result"]["pong"] is True
    assert server.call(lambda: server.venue.exchange.seq) == seq_before
    subscribers = server.call(lambda: server.app[WS_KEY].subscribers.get(("orders", "P-MM1")))
    assert not subscribers  # the refused subscribe subscribed nothing


def test_a_plain_get_is_refused_with_a_problem_document(server):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.base_url + "/v1/ws", timeout=10)
    problem = msgspec.json.decode(refused.value.read())
    assert refused.value.code == 400 and problem["code"] == "validation.bad_parameter"


def test_idle_and_never_logged_in_connections_are_closed_with_their_codes(server, clients):
    gateway = server.call(lambda: server.app[WS_KEY])
    server.call(setattr, gateway, "idle_timeout_s", 0.3)
    server.call(setattr, gateway, "login_timeout_s", 0.3)

    async def flow():
        async with clients("P-BRK1") as broker:
            login = VenueSocket(broker).login_params()
        async with connect(_ws_url(server)) as never:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(never.recv(), 10)
        async with connect(_ws_url(server)) as idle:
            await _raw_call(idle, {"id": 1, "method": "login", "params": login})
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(idle.recv(), 10)
        return (never.close_code, never.close_reason), (idle.close_code, idle.close_reason)

    try:
        never, idle = run(flow())
    finally:
        server.call(setattr, gateway, "idle_timeout_s", type(gateway).idle_timeout_s)
        server.call(setattr, gateway, "login_timeout_s", type(gateway).login_timeout_s)
    assert never == (4000, "log in first")
    assert idle[0] == 4001 and idle[1].startswith("idle")
