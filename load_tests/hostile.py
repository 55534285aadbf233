"""Hostile input against the served venue (issue 13): malformed and hostile REST requests and
WebSocket messages, bounded in count and time, on 127.0.0.1 only.

REST: schemathesis cases generated from ``/v1/openapi.json`` (positive and negative modes;
reads signed, commands signed only when the case breaks the schema, else signed badly or with a
clerk's key), hand-written mutations of valid bodies (wrong types, huge and negative numbers,
long strings, odd unicode, unknown and missing fields, random and truncated JSON, binary),
bad, stale, future, foreign and replayed signatures, oversized bodies, unknown routes and
methods, random queries, a flood beyond one key's rate limit, and slowloris-style slow sends.
WebSocket: random and mutated JSON requests before and after login, wrong types, huge numbers,
long strings, oversized text frames and binary frames, bad, stale and replayed logins.

Checked: no 5xx and no ``state.internal_error``; every refusal is a problem document (or a
WebSocket error) with a stable code; the venue's state (sequence number, journal and ledger
counts, every participant's balances and reservations, participants and keys) is the same
after as before, except for the valid signed requests sent on purpose (one order, then replayed
as hostile input); ``/healthz`` answers throughout; resident memory measured after a warm-up.

    .venv/bin/python load_tests/hostile.py                      # ~1-2 min: 10,000 + 10,000
    .venv/bin/python load_tests/hostile.py --rest 2000 --ws 2000 --seed 7

The last line: ``RESULT requests=<int> ws_messages=<int> errors_5xx=<int> unstable=<int>
state_changed=<0|1> accepted_hostile=<int> rss_growth_pct=<float>``. ``tests/api/test_hostile.py``
runs a smaller version against the in-process server.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import io
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yarl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from venue.domain.participants import sign_request  # noqa: E402

SENIOR, MEZZ = "IPABS-2025-1-A", "IPABS-2025-1-B"
TRADERS = ["P-BRK1", "P-BRK2", "P-MM1"]  # hostile signed requests spread over their keys
FLOODER = "P-MM2"  # the one key flooded beyond its rate limit
RATE_LIMIT = {"VENUE_API_RATE_LIMIT_PER_SECOND": "500", "VENUE_API_RATE_LIMIT_BURST": "500"}
MUTATING = {"POST", "PATCH", "DELETE", "PUT"}
WS_COMMANDS = {"order.place", "order.cancel", "order.replace", "mass_quote", "cancel_all"}
WS_COMMANDS |= {"mmp.set", "mmp.reset"}
WS_METHODS = sorted(WS_COMMANDS | {"ping", "subscribe", "unsubscribe", "cod.set", "login"})

# Values no field of any request accepts (prices and quantities are decimal strings within
# bounds, ids are short and URL-path safe, symbols are known, booleans are booleans).
HOSTILE_VALUES: list[Any] = [
    None, True, 0, -1, 10**30, -(10**30), 1e308, -1e-308, 3.5, [], {}, [1, 2], {"a": {"b": []}},
    "", "-1", "-0.0001", "9" * 40, "1e9", "NaN", "Infinity", "0x10", " 10", "10 ", "1_000",
    "x" * 5000, "\u202e\u0000\ud7ff", "\U0001f4b0" * 100, "\uff29\uff30\uff21\uff22\uff33",
    "\\u0000",
    "'; DROP TABLE", "../../etc/passwd", "%00", "\t\n\r", "é" * 300, "null",
]  # fmt: skip
ID_FIELDS = {"client_order_id", "quote_id", "name"}  # short free text: digits are valid there
BAD_IDS = [None, 0, [], {}, "", "x" * 5000, "a b", "\u202e", "é" * 300, "a/b", "\x00"]
ODD_TEXT = ["\u202e", "\u0000", "\ufeff", "\U0001f4b0", "\u00e9", "\u0301", "\uffff", "\x7f"]
ROUTE_TEMPLATES = [
    ("GET", "/v1/orders/{n}"), ("DELETE", "/v1/orders/{n}"), ("PATCH", "/v1/orders/{n}"),
    ("GET", "/v1/orders/by-client-id/{s}"), ("GET", "/v1/fills/{s}/receipt"),
    ("GET", "/v1/instruments/{s}"), ("GET", "/v1/instruments/{s}/book"),
    ("DELETE", "/v1/keys/{s}"), ("POST", "/v1/admin/participants/{s}/keys"),
    ("DELETE", "/v1/admin/keys/{s}"), ("POST", "/v1/admin/instruments/{s}/halt"),
]  # fmt: skip
QUERY_ROUTES = [
    "/v1/orders",
    "/v1/fills",
    "/v1/accounts",
    "/v1/ledger/consistency",
    f"/v1/instruments/{SENIOR}/book",
    f"/v1/instruments/{MEZZ}/trades",
]


def valid_bodies(counter: int) -> dict[tuple[str, str], dict[str, Any]]:
    """A valid body for each command route: mutated one field at a time, they become invalid."""
    return {
        ("POST", "/v1/orders"): {
            "client_order_id": f"h-{counter}",
            "symbol": MEZZ,
            "side": "buy",
            "qty": "10",
            "price": "98.0000",
            "time_in_force": "gtc",
            "post_only": False,
        },
        ("PATCH", "/v1/orders/1"): {"price": "98.0000", "qty": "10"},
        ("POST", "/v1/keys"): {"public_key": "ab" * 32},
        ("POST", "/v1/admin/deposits"): {
            "participant": "P-BRK1",
            "asset": "CNY",
            "amount": "10.00",
        },
        ("POST", "/v1/admin/withdrawals"): {
            "participant": "P-BRK1",
            "asset": "CNY",
            "amount": "10.00",
        },
        ("POST", f"/v1/admin/instruments/{MEZZ}/factor"): {"factor": "0.950000"},
        ("POST", "/v1/admin/participants"): {
            "participant_id": "P-NEW1",
            "name": "x",
            "role": "broker",
            "segment": "bank",
        },
    }


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**63, -(2**64), 10 ** rng.randrange(1, 60), rng.random()])
    if kind == 2:
        return "".join(rng.choice(ODD_TEXT + list("abc09.-")) for _ in range(rng.randrange(40)))
    if kind in (3, 4):
        return rng.choice(HOSTILE_VALUES)
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(5))]
    keys = [
        "symbol",
        "qty",
        "price",
        "side",
        "client_order_id",
        "order_id",
        "id",
        "method",
        "params",
        "amount",
        "participant",
        "channels",
        "x" * 300,
        "\u202e",
    ]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(6))}


def mutate(rng: random.Random, body: dict[str, Any]) -> bytes:
    """One hostile mutation of a valid JSON object, as bytes."""
    body = dict(body)
    choice = rng.randrange(10)
    if choice <= 4 and body:  # one field to a value no field accepts
        field = rng.choice(sorted(body))
        values = BAD_IDS if field in ID_FIELDS else HOSTILE_VALUES
        if field == "quote_id":  # any printable text is a quote id (docs/WEBSOCKET.md)
            values = [v for v in BAD_IDS if v not in ("a b", "a/b")]
        body[field] = rng.choice(values)
    elif choice == 5 and body:  # a required field missing (or every field)
        body.pop(rng.choice(sorted(body)))
        body = body if rng.random() < 0.8 else {}
        body["unknown_" + str(rng.randrange(9))] = 1  # ... and an unknown one
    elif choice == 6:  # an unknown field
        body[rng.choice(["colour", "\u202e", "qty ", "QTY", "x" * 200])] = "1"
    elif choice == 7:  # not an object
        return json.dumps(random_json(rng)).encode()
    elif choice == 8:  # truncated, or bytes that are not UTF-8 / not JSON
        raw = json.dumps(body).encode()
        return rng.choice(
            [
                raw[: rng.randrange(1, max(2, len(raw)))],
                b"\xff\xfe" + raw,
                raw.replace(b'"', b"'"),
                raw + b"}",
                b"{" * 3000,
                b"\x00" * 64,
                raw.replace(b":", b":NaN,", 1),
            ]
        )
    else:  # many mutations at once
        for _ in range(3):
            body[rng.choice(sorted(body) or ["x"])] = random_json(rng)
    return json.dumps(body, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


class Signer:
    """Signs as demo participants, never the same message twice in one millisecond."""

    def __init__(self, credentials: dict[str, dict[str, Any]]) -> None:
        self.credentials = credentials
        self.signed: set[tuple[str, str]] = set()

    def headers(
        self, participant: str, method: str, target: str, body: bytes, offset_ms: int = 0
    ) -> dict[str, str]:
        entry = self.credentials[participant]
        ms = time.time_ns() // 1_000_000 + offset_ms
        while (str(ms), method + target + hashlib.sha256(body).hexdigest()) in self.signed:
            ms += 1
        self.signed.add((str(ms), method + target + hashlib.sha256(body).hexdigest()))
        if len(self.signed) > 100_000:
            self.signed.clear()
        return {
            "VENUE-KEY": entry["key_id"],
            "VENUE-TIMESTAMP": str(ms),
            "VENUE-SIGNATURE": sign_request(entry["secret"], str(ms), method, target, body),
        }


class Tally:
    """Counts of answers by (status, code) and what broke the rules."""

    def __init__(self) -> None:
        self.codes: collections.Counter = collections.Counter()
        self.violations: list[str] = []
        self.accepted: list[str] = []  # hostile commands the venue accepted (should be none)
        self.errors_5xx = 0
        self.unstable = 0  # refusals without a stable code
        self.known_plain_400 = 0  # aiohttp's own 400 for a request it cannot parse (issue 9)
        self.requests = 0
        self.ws_messages = 0

    def rest(
        self,
        method: str,
        target: str,
        status: int,
        content_type: str,
        body: bytes,
        expect_refusal: bool,
    ) -> None:
        self.requests += 1
        code = None
        if status >= 400:
            if content_type.startswith("application/problem+json"):
                try:
                    code = json.loads(body).get("code")
                except ValueError:
                    code = None
                if not isinstance(code, str) or "." not in code:
                    self.unstable += 1
                    self.violations.append(f"{method} {target[:80]}: {status} without a code")
            elif status == 400 and content_type.startswith("text/plain"):
                self.known_plain_400 += 1
                code = "(aiohttp plain 400)"
            else:
                self.unstable += 1
                self.violations.append(f"{method} {target[:80]}: {status} {content_type}")
        if status >= 500 or code == "state.internal_error":
            self.errors_5xx += 1
            self.violations.append(f"{method} {target[:80]}: {status} {body[:200]!r}")
        if status < 400 and expect_refusal and method in MUTATING:
            self.accepted.append(f"{method} {target[:80]}: {status} {body[:160]!r}")
        self.codes[(status, code)] += 1

    def ws(self, method: Any, frame: dict[str, Any]) -> None:
        error = frame.get("error")
        if error is None:
            self.codes[("ws", "result")] += 1
            if method in WS_COMMANDS:
                self.accepted.append(f"ws {method}: {str(frame)[:160]}")
            return
        code = error.get("code") if isinstance(error, dict) else None
        if not isinstance(code, str) or "." not in code:
            self.unstable += 1
            self.violations.append(f"ws {method}: error without a code {str(frame)[:160]}")
        if code == "state.internal_error":
            self.errors_5xx += 1
            self.violations.append(f"ws {method}: {str(frame)[:200]}")
        self.codes[("ws", code)] += 1

    def report(self) -> str:
        lines = [
            f"  {status!s:>4} {code}: {count}"
            for (status, code), count in sorted(
                self.codes.items(), key=lambda item: (str(item[0][0]), str(item[0][1]))
            )
        ]
        return "\n".join(lines)


class Hostile:
    """The generators and their senders, against one venue at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        credentials: dict[str, dict[str, Any]],
        seed: int = 13,
        concurrency: int = 16,
    ) -> None:
        self.base_url = base_url
        self.ws_url = base_url.replace("http", "ws", 1) + "/v1/ws"
        self.signer = Signer(credentials)
        self.rng = random.Random(seed)
        self.concurrency = concurrency
        self.tally = Tally()
        self.counter = 0

    # ------------------------------------------------------------ REST sending
    async def send(self, session: aiohttp.ClientSession, request: tuple) -> None:
        method, target, body, headers, expect_refusal = request
        url = yarl.URL(self.base_url + target, encoded=True)
        try:
            data = io.BytesIO(body) if len(body) > 1 << 20 else body  # (aiohttp's advice)
            async with session.request(
                method, url, data=data, headers=headers, skip_auto_headers=["Content-Type"]
            ) as reply:
                content = await reply.read()
                self.tally.rest(
                    method,
                    target,
                    reply.status,
                    reply.headers.get("Content-Type", ""),
                    content,
                    expect_refusal,
                )
        except (ValueError, UnicodeError):  # a header the client library will not send
            self.tally.codes[("client", "unsendable")] += 1
        except aiohttp.ClientError as error:  # the server closed on us: count as a violation
            self.tally.requests += 1
            self.tally.codes[("conn", type(error).__name__)] += 1
            if not isinstance(error, aiohttp.ServerDisconnectedError) or len(body) < 1 << 20:
                self.tally.violations.append(f"{method} {target[:80]}: {error!r}")

    async def send_all(self, requests: list[tuple], concurrency: int | None = None) -> None:
        queue = collections.deque(requests)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker():
                while queue:
                    await self.send(session, queue.popleft())

            await asyncio.gather(*(worker() for _ in range(concurrency or self.concurrency)))

    # ------------------------------------------------------------ REST generators
    def signed(
        self,
        participant,
        method,
        target,
        body,
        content_type="application/json",
        expect_refusal=True,
        **sign,
    ) -> tuple:
        headers = self.signer.headers(participant, method, target, body, **sign)
        if content_type:
            headers["Content-Type"] = content_type
        return (method, target, body, headers, expect_refusal)

    def mutations(self, count: int) -> list[tuple]:
        """Mutated bodies of every command route, signed by the right participant."""
        out = []
        for _ in range(count):
            self.counter += 1
            (method, target), body = self.rng.choice(list(valid_bodies(self.counter).items()))
            who = "P-OPS1" if target.startswith("/v1/admin") else self.rng.choice(TRADERS)
            content_type = self.rng.choice(
                ["application/json"] * 8 + ["text/plain", None, "application/json; charset=latin-1"]
            )
            out.append(self.signed(who, method, target, mutate(self.rng, body), content_type))
        return out

    def bad_signatures(self, count: int) -> list[tuple]:
        """A valid order, signed wrongly: every way but one right signature."""
        out = []
        for index in range(count):
            self.counter += 1
            body = json.dumps(valid_bodies(self.counter)[("POST", "/v1/orders")]).encode()
            method, target = "POST", "/v1/orders"
            kind = index % 10
            if kind == 0:  # stale
                out.append(self.signed("P-BRK1", method, target, body, offset_ms=-60_000))
                continue
            if kind == 1:  # from the future
                out.append(self.signed("P-BRK1", method, target, body, offset_ms=60_000))
                continue
            headers = self.signer.headers("P-BRK1", method, target, body)
            headers["Content-Type"] = "application/json"
            if kind == 2:
                headers["VENUE-SIGNATURE"] = headers["VENUE-SIGNATURE"][::-1]
            elif kind == 3:
                headers["VENUE-SIGNATURE"] = headers["VENUE-SIGNATURE"].upper()[:-1] + "G"
            elif kind == 4:
                headers["VENUE-SIGNATURE"] = self.rng.choice(["", "0", "ab" * 600, "é", "\x7f"])
            elif kind == 5:
                headers["VENUE-KEY"] = self.rng.choice(["vk_" + "0" * 16, "", "x" * 4000, "é"])
            elif kind == 6:
                headers["VENUE-TIMESTAMP"] = self.rng.choice(["", "-1", "1e12", "9" * 40, "é"])
            elif kind == 7:
                headers.pop(self.rng.choice(sorted(k for k in headers if k.startswith("VENUE"))))
            elif kind == 8:  # signed for another target, or over another body
                body = body.replace(b'"10"', b'"11"')
            else:  # the clerk's key (no trade scope) with a valid signature
                headers = self.signer.headers("P-CLK1", method, target, body)
                headers["Content-Type"] = "application/json"
            out.append((method, target, body, headers, True))
        return out

    def routes_and_methods(self, count: int) -> list[tuple]:
        """Unknown routes and methods, odd path parameters, random queries."""
        out = []
        for index in range(count):
            kind = index % 4
            if kind == 0:
                method = self.rng.choice(["PUT", "TRACE", "OPTIONS", "FOO", "GET", "POST"])
                segment = "".join(
                    self.rng.choice("abz09%-._~") for _ in range(self.rng.randrange(1, 30))
                )
                target = self.rng.choice(
                    [
                        f"/v1/{segment}",
                        f"/{segment}",
                        f"/v1/orders/x/{segment}",
                        "/v1/../v1/orders",
                        "//v1//orders",
                        "/v1/ws/x",
                    ]
                )
                body = b""
            elif kind == 1:
                method, template = self.rng.choice(ROUTE_TEMPLATES)
                value = self.rng.choice(
                    [
                        "-1",
                        "0",
                        "9" * 40,
                        "1e3",
                        "%FF%FE",
                        "%00",
                        "%E2%80%AE",
                        "x" * 300,
                        "T" + "9" * 12,
                        "P-" + "Z" * 20,
                        "%2F..%2F",
                    ]
                )
                target = template.replace("{n}", value).replace("{s}", value)
                body = b"{}" if method in ("PATCH", "POST") else b""
            else:
                method, path = "GET", self.rng.choice(QUERY_ROUTES)
                keys = [
                    "limit",
                    "cursor",
                    "status",
                    "symbol",
                    "side",
                    "participant",
                    "from",
                    "to",
                    "depth",
                    "order_id",
                    "colour",
                    "limit",
                ]
                values = [
                    "-1",
                    "0",
                    "9" * 30,
                    "abc",
                    "",
                    "%FF",
                    "%00",
                    "1.5",
                    "open",
                    "T1",
                    "x" * 500,
                    "%E2%80%AE",
                    "P-CLK1",
                ]
                query = "&".join(
                    f"{self.rng.choice(keys)}={self.rng.choice(values)}"
                    for _ in range(self.rng.randrange(1, 5))
                )
                target = f"{path}?{query}"
                body = b""
            who = "P-OPS1" if "/admin/" in target else "P-BRK2"
            request = self.signed(who, method, target, body, content_type="application/json")
            if index % 8 == 3:  # the same unsigned
                request = (method, target, body, {}, True)
            out.append(request)
        return out

    def oversized(self, count: int) -> list[tuple]:
        out = []
        for index in range(count):
            size = [70_000, 300_000, 2_000_000][index % 3]
            self.counter += 1
            body = json.dumps(
                {
                    **valid_bodies(self.counter)[("POST", "/v1/orders")],
                    "client_order_id": "x" * size,
                }
            ).encode()
            out.append(self.signed("P-BRK1", "POST", "/v1/orders", body))
        return out

    def schemathesis_cases(self, count: int) -> list[tuple]:
        """Cases generated from the served document: reads and schema-breaking commands signed
        as a broker (the operator for admin routes); schema-valid commands signed badly or by
        the clerk, so that only refusals can come back."""
        import schemathesis
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st
        from hypothesis.errors import Unsatisfiable
        from schemathesis import GenerationMode

        schema = schemathesis.openapi.from_url(self.base_url + "/v1/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        per_operation = max(1, count // (2 * len(operations)))
        generated: list = []
        for mode in (GenerationMode.NEGATIVE, GenerationMode.POSITIVE):
            for operation in operations:
                cases: list = []

                @given(
                    case=operation.as_strategy(generation_mode=mode), append=st.just(cases.append)
                )
                @settings(
                    max_examples=per_operation,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    suppress_health_check=list(HealthCheck),
                )
                def collect(case, append):
                    append(case)

                try:
                    collect()
                except Unsatisfiable:
                    continue
                generated.extend((case, mode is GenerationMode.NEGATIVE) for case in cases)
        return [self._from_case(case, negative) for case, negative in generated]  # signed now

    def _from_case(self, case, negative: bool) -> tuple:
        import requests

        kwargs = case.as_transport_kwargs(base_url=self.base_url)
        body = b""
        if "json" in kwargs:
            body = json.dumps(kwargs.pop("json")).encode()
        elif kwargs.get("data") is not None:
            data = kwargs.pop("data")
            body = data if isinstance(data, bytes) else str(data).encode()
        headers = {k: str(v) for k, v in (kwargs.get("headers") or {}).items() if v is not None}
        headers = {k: v for k, v in headers.items() if not k.upper().startswith("VENUE-")}
        if body and "Content-Type" not in headers:
            headers["Content-Type"] = "application/json"
        prepared = requests.Request(
            kwargs["method"], kwargs["url"], params=kwargs.get("params"), data=body, headers=headers
        ).prepare()
        method, target = prepared.method, prepared.path_url
        who = "P-OPS1" if case.operation.path.startswith("/v1/admin") else "P-BRK2"
        signed = self.signer.headers(who, method, target, body)
        if method in MUTATING and (not negative or self._decodes(case.operation, body)):
            # a command the venue could accept: refused by auth or scope instead
            if self.rng.random() < 0.5:
                signed["VENUE-SIGNATURE"] = "0" * 64
            else:
                signed = self.signer.headers("P-CLK1", method, target, body)
        headers.update(signed)
        headers.pop("Content-Length", None)
        return (method, target, body, headers, True)

    @staticmethod
    def _decodes(operation, body: bytes) -> bool:
        """Whether the route's own request struct accepts ``body`` (schemathesis' negative
        mode sometimes breaks only what the signing replaces, or nothing that matters)."""
        import msgspec

        from venue.api.rest import ROUTES

        route = next(
            r for r in ROUTES if (r.method, r.path) == (operation.method.upper(), operation.path)
        )
        if route.body is None or (not body and route.body_optional):
            return True
        try:
            msgspec.json.decode(body or b"!", type=route.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        return True

    # ------------------------------------------------------------ floods and slow sends
    async def flood(self, participant: str, count: int) -> None:
        """``count`` signed reads from one key as fast as possible: beyond its burst, 429s."""
        requests = [
            self.signed(
                participant, "GET", f"/v1/orders?limit={1 + i % 50}", b"", content_type=None
            )
            for i in range(count)
        ]
        await self.send_all(requests, concurrency=64)

    async def slowloris(self, connections: int, seconds: float, port: int) -> dict[str, int]:
        """Connections that send their request a byte at a time (headers, then a body): the
        venue must keep answering others meanwhile (checked by the caller)."""
        outcome: collections.Counter = collections.Counter()

        async def one(index: int) -> None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                outcome["connect_failed"] += 1
                return
            body = b'{"client_order_id": "slow", "symbol": "' + MEZZ.encode() + b'"}'
            head = (
                f"POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                f"application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            data = head + body if index % 2 else head[:-2]  # half never finish their headers
            deadline = time.monotonic() + seconds
            try:
                for byte in data:
                    if time.monotonic() > deadline:
                        break
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(seconds / len(data))
                if index % 2:
                    answer = await asyncio.wait_for(reader.read(65536), 10)
                    status = answer.split(b" ", 2)[1].decode() if answer else "closed"
                    outcome[f"answered_{status}"] += 1
                else:
                    outcome["abandoned_mid_headers"] += 1
            except (TimeoutError, OSError):
                outcome["closed_by_venue"] += 1
            finally:
                writer.close()

        await asyncio.gather(*(one(i) for i in range(connections)))
        return dict(outcome)

    # ------------------------------------------------------------ WebSocket
    def login_params(self, participant: str, offset_ms: int = 0) -> dict[str, str]:
        nonce = os.urandom(12).hex()
        headers = self.signer.headers(participant, "GET", "/v1/ws", nonce.encode(), offset_ms)
        return {
            "key": headers["VENUE-KEY"],
            "timestamp": headers["VENUE-TIMESTAMP"],
            "nonce": nonce,
            "signature": headers["VENUE-SIGNATURE"],
        }

    def ws_params(self, method: str) -> Any:
        """Hostile params for a method: never a valid command."""
        valid = {
            "order.place": {
                "client_order_id": f"w-{self.rng.randrange(10**9)}",
                "symbol": MEZZ,
                "side": "buy",
                "qty": "10",
                "price": "98.0000",
            },
            "order.cancel": {"order_id": 1},
            "order.replace": {"order_id": 1, "price": "98.0"},
            "mass_quote": {
                "symbol": MEZZ,
                "quote_id": f"q{self.rng.randrange(10**9)}",
                "bids": [["98.0000", "10"]],
                "asks": [["99.0000", "10"]],
            },
            "cancel_all": {"symbol": MEZZ},
            "mmp.set": {"symbol": MEZZ, "window_ms": 1000, "qty_limit": "10"},
            "mmp.reset": {"symbol": MEZZ},
            "subscribe": {"channels": [f"book.{MEZZ}"]},
            "unsubscribe": {"channels": ["orders"]},
            "cod.set": {"enabled": True},
            "ping": {},
            "login": self.login_params("P-MM2"),
        }[method]
        if self.rng.random() < 0.2 and method not in WS_COMMANDS:
            return json.dumps(random_json(self.rng))
        text = mutate(self.rng, valid).decode("utf-8", "replace") or "null"  # may not be JSON
        if method == "cancel_all" and text.replace(" ", "") in ("{}", '{"symbol":null}'):
            return '{"symbol": 1}'  # (both are a valid cancel_all)
        return text

    def ws_frame(self) -> tuple[Any, str | bytes]:
        """(method, frame): a hostile frame."""
        kind = self.rng.randrange(20)
        request_id: Any = self.rng.choice([1, "a", -1, 2**70, 1.5, None, [], {}, "x" * 100, True])
        if kind == 0:
            return None, os.urandom(self.rng.randrange(1, 200))  # binary
        if kind == 1:
            return None, self.rng.choice(
                [
                    "",
                    "{",
                    "nul",
                    "[]",
                    "1",
                    '"x"',
                    "{}" * 1000,
                    r'"\ud800"',
                    "[" * 5000,
                    '{"id": 1}',
                ]
            )
        if kind == 2:
            return None, json.dumps(random_json(self.rng))
        if kind == 3:
            return None, json.dumps(
                {
                    "id": 1,
                    "method": "ping",
                    "params": {},
                    "x": "y" * self.rng.choice([70_000, 200_000]),
                }
            )
        method = self.rng.choice([*WS_METHODS, "nope", "x" * 100, "", "order.PLACE"])
        params = (
            self.ws_params(method) if method in WS_METHODS else json.dumps(random_json(self.rng))
        )
        fields = {"id": json.dumps(request_id), "method": json.dumps(method), "params": params}
        if kind == 4:
            fields["method"] = json.dumps(self.rng.choice(HOSTILE_VALUES))
        if kind == 5:  # a field missing (a command's params missing could be valid: its id)
            fields.pop(self.rng.choice(["id"] if method in WS_COMMANDS else sorted(fields)))
        text = "{" + ", ".join(f'"{name}": {value}' for name, value in fields.items()) + "}"
        return method, text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")

    async def ws_connection(self, participant: str, count: int, login: bool) -> None:
        """One connection (reconnecting if the venue closes it): ``count`` hostile frames,
        each answer read before the next frame (pushes skipped)."""
        sent = 0
        async with aiohttp.ClientSession() as session:
            while sent < count:
                async with session.ws_connect(self.ws_url, max_msg_size=0) as ws:
                    if login:
                        await ws.send_json(
                            {"id": 0, "method": "login", "params": self.login_params(participant)}
                        )
                        answer = await ws.receive_json(timeout=10)
                        if "result" not in answer:
                            self.tally.violations.append(f"ws login refused: {answer}")
                            return
                    while sent < count:
                        method, frame = self.ws_frame()
                        sent += 1
                        self.tally.ws_messages += 1
                        if isinstance(frame, bytes):
                            await ws.send_bytes(frame)
                        else:
                            await ws.send_str(frame)
                        if not await self._ws_answer(ws, method):
                            break  # closed by the venue: reconnect

    async def _ws_answer(self, ws, method) -> bool:
        while True:
            try:
                message = await ws.receive(timeout=10)
            except TimeoutError:
                self.tally.violations.append(f"ws {method}: no answer in 10 s")
                return False
            if message.type != aiohttp.WSMsgType.TEXT:
                self.tally.codes[("ws", f"closed {ws.close_code}")] += 1
                if ws.close_code not in (1009,):
                    self.tally.violations.append(f"ws {method}: closed {ws.close_code}")
                return False
            frame = json.loads(message.data)
            if "channel" in frame:
                continue
            self.tally.ws(method, frame)
            return True

    async def ws_logins(self, count: int) -> None:
        """Bad, stale, future, foreign and replayed logins, one connection each few."""
        good = self.login_params("P-MM1")
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(self.ws_url) as ws:  # the one good login
                await ws.send_json({"id": 0, "method": "login", "params": good})
                assert "result" in await ws.receive_json(timeout=10)
            for start in range(0, count, 50):
                async with session.ws_connect(self.ws_url) as ws:
                    for index in range(start, min(count, start + 50)):
                        kind = index % 6
                        params = dict(good)  # 0: the replay
                        if kind == 1:
                            params = self.login_params("P-MM1", offset_ms=-60_000)
                        elif kind == 2:
                            params = self.login_params("P-MM1", offset_ms=60_000)
                        elif kind == 3:
                            params = {**self.login_params("P-MM1"), "signature": "f" * 64}
                        elif kind == 4:
                            params = {**self.login_params("P-MM1"), "nonce": "other-nonce"}
                        elif kind == 5:
                            params[self.rng.choice(sorted(params))] = self.rng.choice(
                                HOSTILE_VALUES
                            )
                        self.tally.ws_messages += 1
                        await ws.send_json({"id": index, "method": "login", "params": params})
                        if not await self._ws_answer(ws, "bad-login"):
                            break


# ---------------------------------------------------------------- the run
async def healthz(base_url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(5)
    async with (
        aiohttp.ClientSession() as session,
        session.get(base_url + "/healthz", timeout=timeout) as reply,
    ):
        assert reply.status == 200, reply.status
        return await reply.json()


async def run(
    hostile: Hostile,
    rest: int,
    ws: int,
    state: Callable[[], Any],
    rss: Callable[[], int],
    port: int,
    slow_seconds: float = 5.0,
    log=print,
) -> dict[str, Any]:
    """Every phase against the venue; the figures (and ``hostile.tally``)."""
    tally = hostile.tally
    started = time.monotonic()
    # Warm-up: a slice of every kind, then the baseline memory and state.
    await hostile.send_all(hostile.mutations(rest // 20) + hostile.routes_and_methods(rest // 20))
    await hostile.ws_connection("P-MM2", ws // 20, login=True)
    rss_warm = rss()
    before = state()
    counts = f"{tally.requests} requests, {tally.ws_messages} ws messages"
    log(f"warm-up: {counts}, rss {rss_warm >> 20} MiB")

    phases = [
        ("schemathesis", lambda: hostile.schemathesis_cases(rest * 30 // 100)),
        ("mutated bodies", lambda: hostile.mutations(rest * 30 // 100)),
        ("bad signatures", lambda: hostile.bad_signatures(rest * 12 // 100)),
        ("routes, methods, queries", lambda: hostile.routes_and_methods(rest * 12 // 100)),
        ("oversized bodies", lambda: hostile.oversized(max(3, rest // 500))),
    ]
    for name, generate in phases:
        t0 = time.monotonic()
        requests = generate()
        t1 = time.monotonic()
        await hostile.send_all(requests)
        log(
            f"{name}: {len(requests)} requests (generated in {t1 - t0:.1f} s, sent in "
            f"{time.monotonic() - t1:.1f} s)"
        )
    flood = max(rest // 5, 1000, rest - tally.requests - 100)
    await hostile.flood(FLOODER, flood)
    log(f"flood: {flood} reads from one key")
    slow_task = asyncio.create_task(hostile.slowloris(40, slow_seconds, port))
    health_during = 0
    while not slow_task.done():
        await healthz(hostile.base_url)
        health_during += 1
        await asyncio.sleep(0.25)
    slow = slow_task.result()
    log(
        f"slowloris: 40 connections over {slow_seconds} s: {slow}; healthz answered "
        f"{health_during} times meanwhile"
    )

    per_connection = max(1, (ws - tally.ws_messages - ws // 10) // 8)
    await asyncio.gather(
        *(
            hostile.ws_connection(p, per_connection, login=login)
            for p, login in [
                ("P-MM1", True),
                ("P-MM2", True),
                ("P-BRK1", True),
                ("P-CLK1", True),
                ("P-OPS1", True),
                ("P-MM1", False),
                ("P-BRK2", False),
                ("P-BRK2", True),
            ]
        )
    )
    await hostile.ws_logins(max(0, ws - tally.ws_messages))
    log(f"websocket: {tally.ws_messages} messages")
    await asyncio.sleep(0.5)  # cancel-on-disconnect of the sessions (they placed nothing)
    after = state()
    rss_end = rss()
    state_changed = after != before

    # On purpose: one valid order (the state must change), then its replays (it must not).
    client_id = f"deliberate-{os.getpid()}-{int(time.time())}"
    body = json.dumps(
        {
            "client_order_id": client_id,
            "symbol": MEZZ,
            "side": "buy",
            "qty": "10",
            "price": "98.0000",
        }
    ).encode()
    valid = hostile.signed("P-BRK1", "POST", "/v1/orders", body, expect_refusal=False)
    await hostile.send_all([valid])
    placed = state()
    await hostile.send_all([valid] * 50, concurrency=4)  # replays: auth.replayed_request
    replayed = state()
    health = await healthz(hostile.base_url)
    return {
        "requests": tally.requests,
        "ws_messages": tally.ws_messages,
        "errors_5xx": tally.errors_5xx,
        "unstable": tally.unstable,
        "known_plain_400": tally.known_plain_400,
        "state_changed": int(state_changed or replayed != placed),
        "deliberate_order_changed_state": placed != after,
        "accepted_hostile": len(tally.accepted),
        "violations": len(tally.violations),
        "rss_warm_mib": rss_warm / 2**20,
        "rss_end_mib": rss_end / 2**20,
        "rss_growth_pct": 100.0 * (rss_end - rss_warm) / rss_warm,
        "seconds": time.monotonic() - started,
        "health": health["status"],
    }


# ---------------------------------------------------------------- standalone
def remote_state(base_url: str, signer: Signer) -> Callable[[], str]:
    """A hash of what the venue shows: /healthz's counts (sequence number, journal and ledger),
    every participant's balances and reservations (the clerk's audit reads), the participants
    and their keys (the operator's)."""
    import urllib.request

    participants = sorted(signer.credentials)

    def read(who: str, target: str) -> bytes:
        request = urllib.request.Request(
            base_url + target, headers=signer.headers(who, "GET", target, b"")
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.read()

    def state() -> str:
        with urllib.request.urlopen(base_url + "/healthz", timeout=10) as reply:
            health = json.load(reply)
        digest = hashlib.sha256(json.dumps(health, sort_keys=True).encode())
        for participant in participants:
            digest.update(read("P-CLK1", f"/v1/accounts?participant={participant}"))
        digest.update(read("P-OPS1", "/v1/admin/participants"))
        return f"seq={health['last_seq']} {digest.hexdigest()[:16]}"

    return state


def rss_of(pid: int) -> Callable[[], int]:
    def rss() -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rest", type=int, default=10_000, help="REST requests (at least)")
    parser.add_argument("--ws", type=int, default=10_000, help="WebSocket messages")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    args = parser.parse_args()
    import subprocess

    from load_tests.bench_rest import free_port, stop, wait_until_up

    with tempfile.TemporaryDirectory(prefix="hostile-") as scratch:
        data_dir, port = Path(scratch) / "data", free_port()
        log_path = Path(scratch) / "venue.log"
        environment = {**os.environ, **RATE_LIMIT, "VENUE_LOG_LEVEL": "WARNING"}
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "venue.cli",
                    "serve",
                    "--data-dir",
                    str(data_dir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=ROOT,
                env=environment,
                stderr=log_file,
                stdout=log_file,
            )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base_url + "/healthz", process)
            credentials = {
                entry["participant_id"]: entry
                for entry in json.loads((data_dir / "credentials.json").read_text())["participants"]
            }
            hostile = Hostile(base_url, credentials, seed=args.seed)
            state = remote_state(base_url, Signer(credentials))
            figures = asyncio.run(
                asyncio.wait_for(
                    run(
                        hostile,
                        args.rest,
                        args.ws,
                        state,
                        rss_of(process.pid),
                        port,
                        args.slow_seconds,
                    ),
                    timeout=900,
                )
            )
            alive = process.poll() is None
        finally:
            stop(process)
            logged = collections.Counter(
                (json.loads(line).get("level"), json.loads(line).get("logger"))
                for line in log_path.read_text().splitlines()
                if line.startswith("{")
            )
    tally = hostile.tally
    print("answers by status and code:")
    print(tally.report())
    for line in tally.violations[:20] + tally.accepted[:20]:
        print("  !", line)
    print(
        f"rss after warm-up {figures['rss_warm_mib']:.1f} MiB, at the end "
        f"{figures['rss_end_mib']:.1f} MiB; {figures['seconds']:.1f} s; server alive: {alive}; "
        f"aiohttp's plain 400s: {figures['known_plain_400']}; the deliberate order changed the "
        f"state: {figures['deliberate_order_changed_state']}"
    )
    print(f"the venue's log lines by level and logger: {dict(logged)}")
    print(
        f"RESULT requests={figures['requests']} ws_messages={figures['ws_messages']} "
        f"errors_5xx={figures['errors_5xx']} unstable={figures['unstable']} "
        f"state_changed={figures['state_changed']} accepted_hostile={figures['accepted_hostile']} "
        f"rss_growth_pct={figures['rss_growth_pct']:.1f}"
    )


if __name__ == "__main__":
    main()
