"""The security matrix, through the real server: every way of not being allowed is refused with
its own code and changes nothing (sequence number, balances, reservations and keys are
compared before and after each refusal)."""

from __future__ import annotations

import time

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.api.conftest import run
from tests.api.harness import RecordingClient, ServerThread
from venue.client import VenueAPIError
from venue.domain.participants import sign_request

MEZZ = "IPABS-2025-1-B"
ORDER = msgspec.json.encode(
    {"client_order_id": "sec-1", "symbol": MEZZ, "side": "buy", "qty": "10", "price": "98.0000"}
)


def state(server):
    """What a refusal must leave as it was."""

    def read():
        exchange = server.venue.exchange
        return (
            exchange.seq,
            dict(exchange.accounts.balances),
            dict(exchange.accounts.reservations),
            dict(exchange.credentials),
            len(exchange.orders),
        )

    return server.call(read)


async def _raw(client, method, target, body, headers):
    status, _headers, content = await client.send(method, target, body, headers)
    return status, msgspec.json.decode(content)


def _headers(key_id, secret, method, target, body, timestamp=None):
    timestamp = str(time.time_ns() // 1_000_000) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "VENUE-KEY": key_id,
        "VENUE-TIMESTAMP": timestamp,
        "VENUE-SIGNATURE": sign_request(secret, timestamp, method, target, body),
    }


def test_signature_matrix(server, clients):
    broker = server.credentials["P-BRK1"]
    key, secret = broker["key_id"], broker["secret"]
    now = time.time_ns() // 1_000_000
    cases = {
        "no signature": ({"Content-Type": "application/json"}, ORDER, "auth.missing_credentials"),
        "bad signature": (_headers(key, "vs_wrong", "POST", "/v1/orders", ORDER), ORDER,
                          "auth.bad_signature"),
        "stale timestamp": (_headers(key, secret, "POST", "/v1/orders", ORDER, str(now - 60_000)),
                            ORDER, "auth.stale_timestamp"),
        "future timestamp": (_headers(key, secret, "POST", "/v1/orders", ORDER,
                                      str(now + 60_000)), ORDER, "auth.stale_timestamp"),
        "timestamp not digits": (_headers(key, secret, "POST", "/v1/orders", ORDER, "1e12"),
                                 ORDER, "auth.stale_timestamp"),
        "unknown key": (_headers("vk_0000000000000000", secret, "POST", "/v1/orders", ORDER),
                        ORDER, "auth.unknown_api_key"),
        "body changed after signing": (_headers(key, secret, "POST", "/v1/orders", ORDER),
                                       ORDER.replace(b'"10"', b'"20"'), "auth.bad_signature"),
        "path changed after signing": (_headers(key, secret, "POST", "/v1/orders?x=1", ORDER),
                                       ORDER, "auth.bad_signature"),
    }  # fmt: skip

    async def attempt():
        results = {}
        async with clients() as client:
            for name, (headers, body, _code) in cases.items():
                results[name] = await _raw(client, "POST", "/v1/orders", body, headers)
        return results

    before = state(server)
    results = run(attempt())
    assert state(server) == before
    for name, (_h, _b, code) in cases.items():
        status, problem = results[name]
        assert (status, problem["code"]) == (401, code), name
        assert problem["status"] == 401 and problem["type"].endswith(code)


def test_a_replayed_request_is_refused(server, clients):
    async def attempt():
        async with clients("P-BRK1") as client:
            headers = client.sign("GET", "/v1/accounts", b"")
            first = await _raw(client, "GET", "/v1/accounts", b"", headers)
            second = await _raw(client, "GET", "/v1/accounts", b"", headers)
            body = msgspec.json.encode(
                {"client_order_id": "replay-1", "symbol": MEZZ, "side": "buy", "qty": "10",
                 "price": "98.1000"}
            )  # fmt: skip
            headers = {
                "Content-Type": "application/json",
                **client.sign("POST", "/v1/orders", body),
            }
            placed = await _raw(client, "POST", "/v1/orders", body, headers)
            middle = state(server)
            replayed = await _raw(client, "POST", "/v1/orders", body, headers)
            await client.cancel_all()
            return first, second, placed, middle, replayed

    first, second, placed, middle, replayed = run(attempt())
    assert first[0] == 200
    assert (second[0], second[1]["code"]) == (401, "auth.replayed_request")
    assert placed[0] == 201
    assert (replayed[0], replayed[1]["code"]) == (401, "auth.replayed_request")
    assert state(server)[0] == middle[0] + 1  # only the cancel-all happened after the replay


def test_scopes_and_other_participants_data(server, clients):
    async def attempt():
        refusals = {}
        async with (
            clients("P-BRK1") as owner,
            clients("P-BRK2") as other,
            clients("P-CLK1") as clerk,
        ):
            order = await owner.place_order(MEZZ, "buy", "10", price="98.2000")
            before = state(server)
            checks = {
                "broker lists an instrument": other.halt(MEZZ),
                "broker admits": other.admit("P-X1", "X Bank", "broker", "interbank"),
                "clerk places an order": clerk.place_order(MEZZ, "buy", "10", price="98.0000"),
                "clerk cancels": clerk.cancel_order(order.order_id),
                "clerk registers a key": clerk.register_key("ab" * 32),
                "another's order read": other.get_order(order.order_id),
                "another's order cancel": other.cancel_order(order.order_id),
                "another's order replace": other.replace_order(order.order_id, qty="20"),
                "another's account": other.accounts("P-BRK1"),
                "another's fills": other.fills(participant="P-BRK1"),
                "another's client order id": other.get_order_by_client_id(order.client_order_id),
            }
            for name, call in checks.items():
                try:
                    await call
                except VenueAPIError as error:
                    refusals[name] = (error.status, error.code)
                else:
                    refusals[name] = None
            after = state(server)
            # The clerk reads anyone's orders and accounts, and changes nothing.
            seen = await clerk.get_order(order.order_id)
            audited = await clerk.accounts("P-BRK1")
            everyone = await clerk.list_orders()
            await owner.cancel_order(order.order_id)
        return refusals, before, after, seen, audited, everyone, order

    refusals, before, after, seen, audited, everyone, order = run(attempt())
    assert before == after
    assert refusals == {
        "broker lists an instrument": (403, "auth.insufficient_scope"),
        "broker admits": (403, "auth.insufficient_scope"),
        "clerk places an order": (403, "auth.insufficient_scope"),
        "clerk cancels": (403, "auth.insufficient_scope"),
        "clerk registers a key": (403, "auth.insufficient_scope"),
        "another's order read": (403, "matching.not_order_owner"),
        "another's order cancel": (403, "matching.not_order_owner"),
        "another's order replace": (403, "matching.not_order_owner"),
        "another's account": (403, "auth.forbidden"),
        "another's fills": (403, "auth.forbidden"),
        "another's client order id": (404, "matching.unknown_order"),
    }
    assert seen.order_id == order.order_id and audited.participant == "P-BRK1"
    assert order.order_id in [o.order_id for o in everyone.orders]


def test_keys_rotate_and_a_revoked_key_opens_nothing(server, clients):
    private_key = Ed25519PrivateKey.generate()

    async def attempt():
        async with clients("P-OPS1") as operator:
            hmac_key = await operator.issue_key("P-BRK2")
            ed_key = await operator.issue_key(
                "P-BRK2", private_key.public_key().public_bytes_raw().hex()
            )
            async with clients("P-BRK2", key_id=hmac_key.key_id, secret=hmac_key.secret) as new:
                accounts = await new.accounts()
                await operator.revoke_key(hmac_key.key_id)
                before = state(server)
                try:
                    await new.place_order(MEZZ, "buy", "10", price="98.0000")
                except VenueAPIError as error:
                    refused = (error.status, error.code)
                after = state(server)
            async with clients(
                "P-BRK2", key_id=ed_key.key_id, secret=None, private_key=private_key
            ) as signer:
                keys = await signer.keys()
                # An HMAC-style signature under an Ed25519 key is simply a bad signature.
                target = "/v1/accounts"
                headers = _headers(ed_key.key_id, "anything", "GET", target, b"")
                wrong_kind = await _raw(signer, "GET", target, b"", headers)
            with pytest.raises(VenueAPIError) as unknown:
                await operator.revoke_key(hmac_key.key_id)
        return hmac_key, ed_key, accounts, refused, before, after, keys, wrong_kind, unknown.value

    hmac_key, ed_key, accounts, refused, before, after, keys, wrong_kind, unknown = run(attempt())
    assert hmac_key.key_type == "hmac" and hmac_key.secret.startswith("vs_")
    assert ed_key.key_type == "ed25519" and ed_key.secret is None
    assert accounts.participant == "P-BRK2"
    assert refused == (401, "auth.unknown_api_key") and before == after
    assert ed_key.key_id in {key.key_id for key in keys.keys}
    assert hmac_key.key_id not in {key.key_id for key in keys.keys}
    assert (wrong_kind[0], wrong_kind[1]["code"]) == (401, "auth.bad_signature")
    assert (unknown.status, unknown.code) == (404, "validation.unknown_key_id")


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A second venue whose keys may make 3 requests at once and 1 a second after that."""
    thread = ServerThread(
        tmp_path_factory.mktemp("limited") / "data",
        api_rate_limit_per_second=1,
        api_rate_limit_burst=3,
    ).start()
    yield thread
    thread.stop()


def test_rate_limit_answers_429_with_retry_after(limited, recorded):
    entry = limited.credentials["P-BRK1"]

    async def attempt():
        async with RecordingClient(
            limited.base_url, entry["key_id"], secret=entry["secret"], recorded=recorded
        ) as client:
            answers = []
            for _ in range(4):
                target = "/v1/accounts"
                status, headers, content = await client.send(
                    "GET", target, b"", client.sign("GET", target, b"")
                )
                answers.append((status, dict(headers), msgspec.json.decode(content)))
            return answers

    answers = run(attempt())
    assert [status for status, _h, _b in answers] == [200, 200, 200, 429]
    _status, headers, problem = answers[3]
    assert problem["code"] == "auth.rate_limited"
    assert int(headers["Retry-After"]) >= 1
    assert headers["RateLimit-Policy"] == '"per-key";q=3;w=3'
    assert headers["RateLimit"].startswith('"per-key";r=0;')
    assert answers[0][1]["RateLimit"].startswith('"per-key";r=2;')
