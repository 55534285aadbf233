"""The venue's async Python SDK: every REST endpoint as a method, requests signed, typed results.

::

    async with VenueClient("http://127.0.0.1:8080", key_id, secret=secret) as venue:
        order = await venue.place_order("IPABS-2025-1-A", "buy", "1000", price="100.1250")
        print(order.ord_status, order.avg_px)

A client signs with an HMAC key (``secret=``) or an Ed25519 key (``private_key=``, an
``Ed25519PrivateKey`` whose public half was registered), exactly as the venue checks
(``venue.domain.participants``, ``venue/api/auth.py``); unsigned clients can call the public
endpoints. Results are the API's own msgspec structs (``venue.api.schemas``), decoded and
checked; every refusal raises :class:`VenueAPIError` carrying the problem document's ``code``.
Connections are kept alive (one ``aiohttp.ClientSession``).

Signing: the timestamp is the local clock in Unix milliseconds; two requests with the same
signed message would carry the same signature, which the venue refuses as a replay, so the
client moves the timestamp on by one millisecond when it would sign the same message twice.

:meth:`VenueClient.verify_receipt` checks a receipt offline (``ledger.receipt``) against the
venue's public key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from yarl import URL

from ledger.receipt import VerifiedReceipt, verify_receipt
from venue.api import schemas
from venue.domain.participants import sign_request, sign_request_ed25519

T = TypeVar("T")
_ENCODER = msgspec.json.Encoder()


class VenueAPIError(Exception):
    """A refusal: the HTTP ``status`` and the problem document's stable ``code``, ``detail``
    and ``field``; ``problem`` is the whole document; ``retry_after`` (seconds) on a 429."""

    def __init__(self, status: int, problem: dict[str, Any], retry_after: int | None = None):
        self.status = status
        self.problem = problem
        self.code: str = problem.get("code", "unknown")
        self.detail: str = problem.get("detail", "")
        self.field: str | None = problem.get("field")
        self.retry_after = retry_after
        super().__init__(f"{status} {self.code}: {self.detail}")


class VenueClient:
    """One participant's (or an anonymous) connection to the venue."""

    def __init__(
        self,
        base_url: str,
        key_id: str | None = None,
        *,
        secret: str | None = None,
        private_key: Ed25519PrivateKey | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
    ) -> None:
        if (secret is not None) and (private_key is not None):
            raise ValueError("give an HMAC secret or an Ed25519 private key, not both")
        self.base_url = base_url.rstrip("/")
        self.key_id = key_id
        self._secret = secret
        self._private_key = private_key
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._last_ms = 0
        self._signed_this_ms: set[bytes] = set()

    async def __aenter__(self) -> VenueClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ transport
    def sign(self, method: str, target: str, body: bytes) -> dict[str, str]:
        """The three signature headers for a request (``target`` = path?query as sent)."""
        if self.key_id is None or (self._secret is None and self._private_key is None):
            raise ValueError("this client has no API key: it can call public endpoints only")
        now = time.time_ns() // 1_000_000
        message = f"{method}\n{target}\n".encode() + body
        if now > self._last_ms:
            self._last_ms, self._signed_this_ms = now, set()
        elif message in self._signed_this_ms:  # the same signature again: move on a ms
            self._last_ms, self._signed_this_ms = self._last_ms + 1, set()
        self._signed_this_ms.add(message)
        timestamp = str(self._last_ms)
        if self._private_key is not None:
            signature = sign_request_ed25519(self._private_key, timestamp, method, target, body)
        else:
            signature = sign_request(self._secret, timestamp, method, target, body)
        return {
            "VENUE-KEY": self.key_id,
            "VENUE-TIMESTAMP": timestamp,
            "VENUE-SIGNATURE": signature,
        }

    async def request(
        self,
        method: str,
        path: str,
        result: type[T] | None,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        signed: bool = True,
    ) -> Any:
        """One request; the decoded ``result`` struct (``None``: the text body), or raises
        :class:`VenueAPIError`."""
        params = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        target = path + ("?" + urlencode(params) if params else "")
        raw = b"" if body is None else _ENCODER.encode(body)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if signed:
            headers.update(self.sign(method, target, raw))
        status, reply_headers, content = await self.send(method, target, raw, headers)
        if status >= 400:
            retry_after = reply_headers.get("Retry-After")
            try:
                problem = msgspec.json.decode(content)
            except msgspec.DecodeError:
                problem = {"code": "unknown", "detail": content[:200].decode(errors="replace")}
            raise VenueAPIError(status, problem, int(retry_after) if retry_after else None)
        if result is None:
            return content.decode()
        return msgspec.json.decode(content, type=result)

    async def send(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, Any, bytes]:
        """Send one request exactly as given (the target is not re-encoded: it is what was
        signed); ``(status, headers, body)`` of the answer."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = URL(self.base_url + target, encoded=True)
        async with self._session.request(method, url, data=body or None, headers=headers) as reply:
            return reply.status, reply.headers, await reply.read()

    async def websocket(self, *, heartbeat_s: float = 15.0, login: bool = True):
        """A :class:`venue.ws_client.VenueSocket` on this venue, logged in with this client's
        key (the WebSocket API, docs/WEBSOCKET.md)."""
        from venue.ws_client import VenueSocket  # the WebSocket half imports this module

        return await VenueSocket(self, heartbeat_s=heartbeat_s).connect(login=login)

    # ------------------------------------------------------------------ public
    async def time(self) -> schemas.TimeView:
        return await self.request("GET", "/v1/time", schemas.TimeView, signed=False)

    async def instruments(self) -> list[schemas.InstrumentView]:
        listing = await self.request("GET", "/v1/instruments", schemas.InstrumentList, signed=False)
        return listing.instruments

    async def instrument(self, symbol: str) -> schemas.InstrumentView:
        return await self.request(
            "GET", f"/v1/instruments/{symbol}", schemas.InstrumentView, signed=False
        )

    async def book(self, symbol: str, depth: int = 10) -> schemas.BookView:
        return await self.request(
            "GET",
            f"/v1/instruments/{symbol}/book",
            schemas.BookView,
            query={"depth": depth},
            signed=False,
        )

    async def trades(self, symbol: str, limit: int = 50) -> schemas.TradeList:
        return await self.request(
            "GET",
            f"/v1/instruments/{symbol}/trades",
            schemas.TradeList,
            query={"limit": limit},
            signed=False,
        )

    async def checkpoint(self) -> str:
        return await self.request("GET", "/v1/ledger/checkpoint", None, signed=False)

    async def consistency(self, old_size: int, new_size: int | None = None):
        return await self.request(
            "GET",
            "/v1/ledger/consistency",
            schemas.ConsistencyView,
            query={"from": old_size, "to": new_size},
            signed=False,
        )

    async def ledger_public_key(self) -> schemas.PublicKeyView:
        return await self.request(
            "GET", "/v1/ledger/public-key", schemas.PublicKeyView, signed=False
        )

    # ------------------------------------------------------------------ orders
    async def place_order(
        self,
        symbol: str,
        side: str,
        qty: str,
        *,
        price: str | None = None,
        order_type: str = "limit",
        time_in_force: str = "gtc",
        post_only: bool = False,
        self_trade: str = "cancel_taker",
        client_order_id: str | None = None,
    ) -> schemas.OrderReport:
        """Place an order; ``client_order_id`` defaults to a fresh UUID (pass your own to retry
        safely: the same id and body returns the original order)."""
        body = schemas.PlaceOrderRequest(
            client_order_id=client_order_id or uuid.uuid4().hex,
            symbol=symbol,
            side=side,
            qty=qty,
            order_type=order_type,
            price=price,
            time_in_force=time_in_force,
            post_only=post_only,
            self_trade=self_trade,
        )
        return await self.request("POST", "/v1/orders", schemas.OrderReport, body=body)

    async def get_order(self, order_id: int) -> schemas.OrderReport:
        return await self.request("GET", f"/v1/orders/{order_id}", schemas.OrderReport)

    async def get_order_by_client_id(self, client_order_id: str) -> schemas.OrderReport:
        return await self.request(
            "GET", f"/v1/orders/by-client-id/{client_order_id}", schemas.OrderReport
        )

    async def list_orders(
        self,
        *,
        status: str = "open",
        symbol: str | None = None,
        side: str | None = None,
        participant: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> schemas.OrderList:
        query = {"status": status, "symbol": symbol, "side": side, "participant": participant}
        query.update(limit=limit, cursor=cursor)
        return await self.request("GET", "/v1/orders", schemas.OrderList, query=query)

    async def all_orders(self, **filters: Any) -> AsyncIterator[schemas.OrderReport]:
        """Every order matching ``filters`` (as ``list_orders``), page after page."""
        cursor = None
        while True:
            page = await self.list_orders(cursor=cursor, **filters)
            for order in page.orders:
                yield order
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel_order(self, order_id: int) -> schemas.OrderReport:
        return await self.request("DELETE", f"/v1/orders/{order_id}", schemas.OrderReport)

    async def replace_order(
        self, order_id: int, *, price: str | None = None, qty: str | None = None
    ) -> schemas.OrderReport:
        """New limit price and/or new *remaining* quantity."""
        body = schemas.ReplaceOrderRequest(price=price, qty=qty)
        return await self.request("PATCH", f"/v1/orders/{order_id}", schemas.OrderReport, body=body)

    async def cancel_all(self, symbol: str | None = None) -> list[int]:
        body = schemas.CancelAllRequest(symbol=symbol)
        result = await self.request(
            "POST", "/v1/orders/cancel-all", schemas.CancelAllResult, body=body
        )
        return result.canceled

    # ------------------------------------------------------------------ fills, accounts
    async def fills(
        self,
        *,
        symbol: str | None = None,
        order_id: int | None = None,
        participant: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> schemas.ExecutionList:
        query = {"symbol": symbol, "order_id": order_id, "participant": participant}
        query.update(limit=limit, cursor=cursor)
        return await self.request("GET", "/v1/fills", schemas.ExecutionList, query=query)

    async def accounts(self, participant: str | None = None) -> schemas.AccountView:
        return await self.request(
            "GET", "/v1/accounts", schemas.AccountView, query={"participant": participant}
        )

    async def receipt(self, trade_id: str) -> dict[str, Any]:
        """The receipt document of an own fill (as ``ledger.receipt`` reads it)."""
        receipt = await self.request("GET", f"/v1/fills/{trade_id}/receipt", schemas.Receipt)
        return msgspec.structs.asdict(receipt)

    async def verify_receipt(
        self, receipt: dict[str, Any], public_key: str | None = None
    ) -> VerifiedReceipt:
        """Check a receipt offline; ``public_key`` (hex) defaults to the venue's, fetched.

        A participant that trusts only a key it obtained out of band passes that key."""
        if public_key is None:
            public_key = (await self.ledger_public_key()).public_key
        return verify_receipt(receipt, public_key)

    # ------------------------------------------------------------------ keys
    async def keys(self) -> schemas.KeyList:
        return await self.request("GET", "/v1/keys", schemas.KeyList)

    async def register_key(self, public_key_hex: str) -> schemas.ApiKeyView:
        body = schemas.RegisterKeyRequest(public_key=public_key_hex)
        return await self.request("POST", "/v1/keys", schemas.ApiKeyView, body=body)

    async def revoke_own_key(self, key_id: str) -> schemas.RevokedKey:
        return await self.request("DELETE", f"/v1/keys/{key_id}", schemas.RevokedKey)

    # ------------------------------------------------------------------ operator
    async def list_instrument(self, **reference: Any) -> schemas.InstrumentView:
        body = schemas.ListInstrumentRequest(**reference)
        return await self.request(
            "POST", "/v1/admin/instruments", schemas.InstrumentView, body=body
        )

    async def participants(self) -> list[schemas.ParticipantView]:
        listing = await self.request("GET", "/v1/admin/participants", schemas.ParticipantList)
        return listing.participants

    async def admit(
        self,
        participant_id: str,
        name: str,
        role: str,
        segment: str | None = None,
        public_key: str | None = None,
    ) -> schemas.AdmittedView:
        body = schemas.AdmitRequest(
            participant_id=participant_id,
            name=name,
            role=role,
            segment=segment,
            public_key=public_key,
        )
        return await self.request("POST", "/v1/admin/participants", schemas.AdmittedView, body=body)

    async def issue_key(
        self, participant_id: str, public_key: str | None = None
    ) -> schemas.ApiKeyView:
        body = schemas.IssueKeyRequest(public_key=public_key)
        return await self.request(
            "POST", f"/v1/admin/participants/{participant_id}/keys", schemas.ApiKeyView, body=body
        )

    async def revoke_key(self, key_id: str) -> schemas.RevokedKey:
        return await self.request("DELETE", f"/v1/admin/keys/{key_id}", schemas.RevokedKey)

    async def deposit(self, participant: str, asset: str, amount: str) -> schemas.TransferView:
        body = schemas.TransferRequest(participant=participant, asset=asset, amount=amount)
        return await self.request("POST", "/v1/admin/deposits", schemas.TransferView, body=body)

    async def withdraw(self, participant: str, asset: str, amount: str) -> schemas.TransferView:
        body = schemas.TransferRequest(participant=participant, asset=asset, amount=amount)
        return await self.request("POST", "/v1/admin/withdrawals", schemas.TransferView, body=body)

    async def halt(self, symbol: str) -> schemas.InstrumentView:
        return await self.request(
            "POST", f"/v1/admin/instruments/{symbol}/halt", schemas.InstrumentView
        )

    async def resume(self, symbol: str) -> schemas.InstrumentView:
        return await self.request(
            "POST", f"/v1/admin/instruments/{symbol}/resume", schemas.InstrumentView
        )

    async def update_factor(self, symbol: str, pool_factor: str) -> schemas.InstrumentView:
        body = schemas.FactorRequest(pool_factor=pool_factor)
        return await self.request(
            "POST", f"/v1/admin/instruments/{symbol}/factor", schemas.InstrumentView, body=body
        )


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
