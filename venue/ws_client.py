"""The WebSocket half of the SDK (docs/WEBSOCKET.md): a logged-in session, requests that await
their responses, pushes per channel, and a book that proves it rebuilt the venue's.

::

    async with VenueClient(url, key_id, secret=secret) as venue:
        async with await venue.websocket() as ws:
            book = await ws.book("IPABS-2025-1-A")
            quote = await ws.mass_quote("IPABS-2025-1-A", "q1", bids=[("100.1000", "500")],
                                        asks=[("100.2000", "500")])

:class:`VenueSocket` signs its login with the :class:`~venue.client.VenueClient`'s own key
(``VenueClient.sign``: HMAC or Ed25519, never the same signature twice), so the WebSocket and
REST sides share one credential and one replay rule. Requests carry increasing integer ids;
a refusal raises :class:`~venue.client.VenueAPIError` with the REST API's code and status.
Pushes are queued per channel (:meth:`VenueSocket.next_push`). :class:`LiveBook` applies a
``book.{symbol}`` channel to a :class:`~venue.api.marketdata.BookMirror`, which checks every
checksum and sequence number; on a gap or a mismatch it resubscribes and starts again from
the new snapshot (``resyncs`` counts how often).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec

from venue.api.errors import status_of
from venue.api.marketdata import BookGap, BookMirror
from venue.client import VenueAPIError
from venue.errors import ErrorCode

if TYPE_CHECKING:
    from venue.client import VenueClient

WS_PATH = "/v1/ws"
_ENCODER = msgspec.json.Encoder()


def _error(error: dict[str, Any]) -> VenueAPIError:
    code = error.get("code", "unknown")
    try:
        status = status_of(ErrorCode(code))
    except ValueError:
        status = 0
    problem = {
        "code": code,
        "detail": error.get("message", ""),
        "field": error.get("field"),
        "details": error.get("details", {}),
    }
    return VenueAPIError(status, problem)


class VenueSocket:
    """One WebSocket session. Use :meth:`connect` (or ``await client.websocket()``)."""

    def __init__(self, client: VenueClient, *, heartbeat_s: float = 15.0) -> None:
        self.client = client
        self.heartbeat_s = heartbeat_s
        self.login_result: dict[str, Any] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future] = {}
        self._pushes: dict[str, asyncio.Queue] = {}
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._tasks: list[asyncio.Task] = []
        self.closed = asyncio.Event()

    async def connect(self, *, login: bool = True) -> VenueSocket:
        self._session = aiohttp.ClientSession()
        url = self.client.base_url.replace("http", "ws", 1) + WS_PATH
        self._ws = await self._session.ws_connect(url, heartbeat=self.heartbeat_s * 2)
        self._tasks.append(asyncio.get_running_loop().create_task(self._read()))
        if login:
            await self.login()
        self._tasks.append(asyncio.get_running_loop().create_task(self._heartbeat()))
        return self

    def login_params(self, nonce: str | None = None) -> dict[str, str]:
        """The signed login: ``timestamp \\n GET \\n /v1/ws \\n hex(sha256(nonce))``."""
        nonce = nonce or secrets.token_hex(16)
        headers = self.client.sign("GET", WS_PATH, nonce.encode())
        return {
            "key": headers["VENUE-KEY"],
            "timestamp": headers["VENUE-TIMESTAMP"],
            "nonce": nonce,
            "signature": headers["VENUE-SIGNATURE"],
        }

    async def login(self, params: dict[str, str] | None = None) -> dict[str, Any]:
        self.login_result = await self.request("login", params or self.login_params())
        return self.login_result

    async def __aenter__(self) -> VenueSocket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.closed.set()

    # ------------------------------------------------------------------ transport
    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request; its result, or raises ``VenueAPIError``."""
        if self._ws is None or self.closed.is_set():
            raise ConnectionError(f"the session is closed ({self.close_code} {self.close_reason})")
        self._next_id += 1
        request_id = self._next_id
        future = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        message = {"id": request_id, "method": method, "params": params or {}}
        await self._ws.send_str(_ENCODER.encode(message).decode())
        return await future

    def channel(self, name: str) -> asyncio.Queue:
        """The queue of ``name``'s pushes (each ``{"channel", "type", "seq", "data"}``)."""
        queue = self._pushes.get(name)
        if queue is None:
            queue = self._pushes[name] = asyncio.Queue()
        return queue

    async def next_push(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.channel(name).get(), timeout)

    async def _read(self) -> None:
        ws = self._ws
        try:
            while True:
                message = await ws.receive()
                if message.type == aiohttp.WSMsgType.CLOSE:
                    self.close_reason = message.extra or ""
                    break
                if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = msgspec.json.decode(message.data)
                if "channel" in frame:
                    handler = self._handlers.get(frame["channel"])
                    if handler is not None:
                        handler(frame)
                    else:
                        self.channel(frame["channel"]).put_nowait(frame)
                    continue
                future = self._waiting.pop(frame.get("id"), None)
                if future is None or future.done():
                    continue
                if "error" in frame:
                    future.set_exception(_error(frame["error"]))
                else:
                    future.set_result(frame["result"])
        finally:
            self.close_code = ws.close_code
            self.closed.set()
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"the session closed ({self.close_code})"))
            self._waiting.clear()

    async def _heartbeat(self) -> None:
        """The client's half of the heartbeat: a ``ping`` request every ``heartbeat_s``."""
        while True:
            await asyncio.sleep(self.heartbeat_s)
            with contextlib.suppress(VenueAPIError, ConnectionError):
                await self.request("ping")

    # ------------------------------------------------------------------ methods
    async def ping(self) -> dict[str, Any]:
        return await self.request("ping")

    async def subscribe(self, *channels: str) -> list[str]:
        return (await self.request("subscribe", {"channels": list(channels)}))["subscribed"]

    async def unsubscribe(self, *channels: str) -> list[str]:
        return (await self.request("unsubscribe", {"channels": list(channels)}))["unsubscribed"]

    async def place_order(
        self,
        symbol: str,
        side: str,
        qty: str,
        price: str | None = None,
        *,
        client_order_id: str | None = None,
        **options: Any,
    ) -> dict:
        params = {
            "client_order_id": client_order_id or secrets.token_hex(8),
            "symbol": symbol,
            "side": side,
            "qty": qty,
            **options,
        }
        if price is not None:
            params["price"] = price
        return await self.request("order.place", params)

    async def cancel_order(self, order_id: int) -> dict[str, Any]:
        return await self.request("order.cancel", {"order_id": order_id})

    async def replace_order(
        self, order_id: int, *, price: str | None = None, qty: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"order_id": order_id}
        if price is not None:
            params["price"] = price
        if qty is not None:
            params["qty"] = qty
        return await self.request("order.replace", params)

    async def mass_quote(self, symbol: str, quote_id: str, *, bids=(), asks=()) -> dict:
        """Replace this participant's quotes in ``symbol``: ``bids``/``asks`` are
        ``(price, qty)`` decimal-string pairs, best first."""
        return await self.request(
            "mass_quote",
            {
                "symbol": symbol,
                "quote_id": quote_id,
                "bids": [list(level) for level in bids],
                "asks": [list(level) for level in asks],
            },
        )

    async def cancel_all(self, symbol: str | None = None) -> list[int]:
        params = {} if symbol is None else {"symbol": symbol}
        return (await self.request("cancel_all", params))["canceled"]

    async def set_cancel_on_disconnect(self, enabled: bool) -> bool:
        return (await self.request("cod.set", {"enabled": enabled}))["cancel_on_disconnect"]

    async def set_mmp(self, symbol: str, window_ms: int, qty_limit: str) -> dict[str, Any]:
        params = {"symbol": symbol, "window_ms": window_ms, "qty_limit": qty_limit}
        return await self.request("mmp.set", params)

    async def reset_mmp(self, symbol: str) -> dict[str, Any]:
        return await self.request("mmp.reset", {"symbol": symbol})

    async def book(self, symbol: str) -> LiveBook:
        """A :class:`LiveBook` of ``symbol``, subscribed and holding its first snapshot."""
        book = LiveBook(self, symbol)
        await book.start()
        return book


class LiveBook:
    """``book.{symbol}`` rebuilt on a :class:`BookMirror`: every update's sequence number and
    checksum checked; on a :class:`BookGap` the channel is resubscribed for a new snapshot."""

    def __init__(self, socket: VenueSocket, symbol: str) -> None:
        self.socket = socket
        self.symbol = symbol
        self.channel = "book." + symbol
        self.mirror = BookMirror()
        self.updates = 0  # updates applied
        self.resyncs = 0  # resubscriptions after a gap or a checksum mismatch
        self._changed = asyncio.Condition()
        self._resubscribing = False

    async def start(self) -> None:
        self.socket._handlers[self.channel] = self._on_frame
        await self.socket.subscribe(self.channel)
        await self.wait_for(lambda book: book.mirror.seq is not None)

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "snapshot":
            self._resubscribing = False
            self.mirror.apply_snapshot({**frame["data"], "seq": frame["seq"]})
        elif not self._resubscribing:
            try:
                self.mirror.apply_update({**frame["data"], "seq": frame["seq"]})
                self.updates += 1
            except BookGap:
                self._resync()
        asyncio.get_running_loop().create_task(self._notify())

    def _resync(self) -> None:
        self.resyncs += 1
        self._resubscribing = True
        self.mirror.seq = None
        task = asyncio.get_running_loop().create_task(self.socket.subscribe(self.channel))
        self.socket._tasks.append(task)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[LiveBook], bool], timeout: float = 10.0):
        """Wait until ``predicate(self)`` holds (checked after every frame)."""

        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

        await asyncio.wait_for(wait(), timeout)

    def levels(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return self.mirror.levels()
