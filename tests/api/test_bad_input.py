"""The bad-input matrix, through the real server: malformed JSON, wrong types, missing and
unknown fields, huge numbers, long strings, odd unicode, wrong media types, oversized bodies,
unknown routes and methods, bad queries and paths. Each gets a 4xx problem document with its
stable code (and the offending field where there is one), and changes nothing."""

from __future__ import annotations

import json

import msgspec

from tests.api.conftest import run
from tests.api.test_security import state

MEZZ = "IPABS-2025-1-B"
GOOD = {"client_order_id": "bad-1", "symbol": MEZZ, "side": "buy", "qty": "10", "price": "98.0"}


def order(**changes) -> bytes:
    body = {**GOOD, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


# name: (method, target, body, content type, expected status, code, field)
BODIES = {
    "truncated JSON": (b'{"client_order_id": "x", ', 400, "validation.malformed_json", None),
    "not UTF-8": (b'{"symbol": "\xff\xfe"}', 400, "validation.malformed_json", None),
    "NaN token": (b'{"qty": NaN}', 400, "validation.malformed_json", None),
    "empty body": (b"", 400, "validation.malformed_json", None),
    "an array": (b"[1, 2, 3]", 400, "validation.bad_parameter", None),
    "a string": (b'"buy"', 400, "validation.bad_parameter", None),
    "deeply nested": (b"[" * 5000 + b"]" * 5000, 400, None, None),
    "qty as a number": (order(qty=10), 400, "validation.bad_quantity", "qty"),
    "price as a float": (order(price=98.0), 400, "validation.bad_price", "price"),
    "post_only as text": (order(post_only="yes"), 400, "validation.bad_parameter", "post_only"),
    "missing side": (order(side=...), 400, "validation.bad_parameter", "side"),
    "unknown field": (order(colour="red"), 400, "validation.unknown_field", "colour"),
    "unknown side": (order(side="short"), 400, "validation.bad_side", "side"),
    "negative qty": (order(qty="-10"), 400, "validation.bad_quantity", "qty"),
    "zero qty": (order(qty="0"), 400, "validation.bad_quantity", "qty"),
    "huge qty": (order(qty="9" * 20), 400, "validation.absurd_value", "qty"),
    "qty as a huge number": (order(qty=10**400), 400, "validation.bad_quantity", "qty"),
    "exponent price": (order(price="9.8e1"), 400, "validation.bad_price", "price"),
    "absurd price": (order(price="99999.0000"), 400, "validation.absurd_value", "price"),
    "price of 50 digits": (order(price="1" * 50), 400, "validation.bad_price", "price"),
    "price off the tick": (order(price="98.00001"), 400, "validation.price_off_tick", "price"),
    "price off the band": (order(price="10.0000"), 400, "validation.price_out_of_band", "price"),
    "long client_order_id": (order(client_order_id="x" * 10_000), 400,
                             "validation.bad_parameter", "client_order_id"),
    "client_order_id with a space": (order(client_order_id="a b"), 400,
                                     "validation.bad_parameter", "client_order_id"),
    "right-to-left override": (order(client_order_id="ab\u202ecd"), 400,
                               "validation.bad_parameter", "client_order_id"),
    "lone surrogate": (order(client_order_id="\ud800"), 400, None, None),
    "NUL character": (order(client_order_id="a\u0000b"), 400, "validation.bad_parameter",
                      "client_order_id"),
    "emoji": (order(client_order_id="\U0001f4b0"), 400, "validation.bad_parameter",
              "client_order_id"),
    "fullwidth symbol": (order(symbol="\uff29\uff30\uff21\uff22\uff33"), 400,
                         "validation.bad_symbol", "symbol"),
    "unknown symbol": (order(symbol="NOPE-1"), 404, "validation.unknown_instrument", None),
    "over the body limit": (order(client_order_id="x" * 70_000), 413,
                            "validation.body_too_large", None),
}  # fmt: skip


def test_bad_order_bodies(server, clients):
    async def attempt():
        results = {}
        async with clients("P-BRK1") as client:
            for name, (body, *_expected) in BODIES.items():
                headers = {"Content-Type": "application/json"}
                headers.update(client.sign("POST", "/v1/orders", body))
                status, _headers, content = await client.send("POST", "/v1/orders", body, headers)
                results[name] = (status, _headers.get("Content-Type"), content)
        return results

    before = state(server)
    results = run(attempt())
    assert state(server) == before
    for name, (_body, status, code, field) in BODIES.items():
        got_status, content_type, content = results[name]
        assert got_status == status, (name, content)
        assert content_type.startswith("application/problem+json"), name
        problem = msgspec.json.decode(content)
        if code is not None:
            assert problem["code"] == code, (name, problem)
        assert problem["code"].split(".")[0] in ("validation", "risk"), (name, problem)
        if field is not None:
            assert problem["field"] == field, (name, problem)


# name: (method, target, body, content type, status, code)
REQUESTS = {
    "wrong media type": ("POST", "/v1/orders", order(), "text/plain", 415,
                         "validation.unsupported_media_type"),
    "unknown route": ("GET", "/v1/nope", b"", None, 404, "validation.unknown_route"),
    "unknown method": ("PUT", "/v1/orders", b"", None, 405, "validation.method_not_allowed"),
    "order id not a number": ("GET", "/v1/orders/abc", b"", None, 400,
                              "validation.bad_parameter"),
    "order id of 30 digits": ("GET", "/v1/orders/" + "9" * 30, b"", None, 400,
                              "validation.bad_parameter"),
    "no such order": ("GET", "/v1/orders/999999", b"", None, 404, "matching.unknown_order"),
    "unknown query parameter": ("GET", "/v1/orders?colour=red", b"", None, 400,
                                "validation.unknown_field"),
    "limit of zero": ("GET", "/v1/orders?limit=0", b"", None, 400, "validation.bad_parameter"),
    "limit not a number": ("GET", "/v1/fills?limit=ten", b"", None, 400,
                           "validation.bad_parameter"),
    "parameter twice": ("GET", "/v1/orders?limit=1&limit=2", b"", None, 400,
                        "validation.bad_parameter"),
    "bad status": ("GET", "/v1/orders?status=sleeping", b"", None, 400,
                   "validation.bad_parameter"),
    "bad cursor": ("GET", "/v1/orders?cursor=T1", b"", None, 400, "validation.bad_parameter"),
    "depth too large": ("GET", "/v1/instruments/IPABS-2025-1-B/book?depth=1000", b"", None,
                        400, "validation.bad_parameter"),
    "percent-encoded garbage": ("GET", "/v1/instruments/%FF%FE", b"", None, 404,
                                "validation.unknown_instrument"),
    "trade id malformed": ("GET", "/v1/fills/T1/receipt", b"", None, 400,
                           "validation.bad_parameter"),
    "no such trade": ("GET", "/v1/fills/T999999999999/receipt", b"", None, 404,
                      "ledger.no_such_trade"),
    "consistency from beyond": ("GET", "/v1/ledger/consistency?from=5&to=999999", b"", None,
                                400, "ledger.bad_tree_size"),
    "replace with nothing": ("PATCH", "/v1/orders/1", b"{}", "application/json", 409,
                             "matching.no_change"),
    "cancel-all of an unknown symbol": ("POST", "/v1/orders/cancel-all",
                                        b'{"symbol": "NOPE"}', "application/json", 404,
                                        "validation.unknown_instrument"),
}  # fmt: skip


def test_bad_requests(server, clients):
    async def attempt():
        results = {}
        async with clients("P-BRK1") as client:
            for name, (method, target, body, content_type, *_rest) in REQUESTS.items():
                headers = {"Content-Type": content_type} if content_type else {}
                headers.update(client.sign(method, target, body))
                status, _headers, content = await client.send(method, target, body, headers)
                results[name] = (status, msgspec.json.decode(content))
        return results

    before = state(server)
    results = run(attempt())
    assert state(server) == before
    for name, (*_request, status, code) in REQUESTS.items():
        assert results[name][0] == status, (name, results[name])
        assert results[name][1]["code"] == code, (name, results[name])
