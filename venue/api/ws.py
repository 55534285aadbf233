"""The market makers' WebSocket API (SPEC section 4; the protocol is docs/WEBSOCKET.md).

One endpoint, ``GET /v1/ws``, on the REST API's server and event loop. A connection logs in
once with a signed message checked by the REST API's own :class:`~venue.api.auth.Authenticator`
(the same keys, clock window, replay guard and rate-limit bucket: the login is a signed
``GET /v1/ws`` whose body is the nonce; every request after it takes a token from the
key's REST bucket too), then sends requests ``{"id", "method", "params"}`` and
gets ``{"id", "result"}`` or ``{"id", "error": {"code", "message", ...}}`` with the REST API's
stable codes, and pushes ``{"channel", "type", "seq", "data"}``.

The order methods run the REST handlers themselves (``venue/api/rest.py``) on the REST
request structs (``venue/api/schemas.py``), so validation, decimal formats, reports and metrics
are the REST API's; only the framing differs.

Pushes come from the sequencer's listener, so only durable events are ever sent. The
``book.{symbol}`` channels are :class:`~venue.api.marketdata.BookChannel` over
:class:`DurableBooks`, levels aggregated from the durable order reports: the exchange's own
books run ahead of durability by the batches in flight, so reading them when a batch's events
arrive could publish a level that a crash would undo.

Each connection has a bounded send queue drained by its own writer task; enqueueing never
waits, so a client that does not read costs the venue nothing: once its queue is full it is
disconnected (close code 4002) and counted in ``venue_ws_dropped_consumers_total``.
Cancel-on-disconnect (on by default for market makers) submits one ``CancelOrders`` with the
orders the session placed once its requests in flight are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any

import msgspec
from aiohttp import WSMsgType, web
from msgspec import Meta
from prometheus_client import Counter, Gauge
from sortedcontainers import SortedDict

from ledger.errors import LedgerError
from venue.api import rest, schemas, views
from venue.api.auth import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, Caller
from venue.api.errors import problem, validation_error
from venue.api.marketdata import BOOK_DEPTH, BookChannel
from venue.core import queries
from venue.core.commands import CancelOrders, MassQuote, ResetMmp, SetMmp
from venue.domain.instruments import Instrument
from venue.domain.money import format_quantity, parse_quantity
from venue.domain.participants import Role, Scope
from venue.errors import ERROR_CODES, ErrorCode, VenueError

log = logging.getLogger(__name__)

WS_PATH = "/v1/ws"
HARD_FRAME_LIMIT = 1 << 20  # frames above this are not even read: aiohttp closes with 1009
PUBLIC_CHANNELS = ("book.", "trades.")
PRIVATE_CHANNELS = ("orders", "fills")
MAX_CHANNELS_PER_REQUEST = 50
_ENCODER = msgspec.json.Encoder()
_OPEN = ("new", "partially_filled")


class CloseCode(IntEnum):
    """Why the venue closed a connection (the close frame's reason says more)."""

    NORMAL = 1000  # the client closed, or logged out
    GOING_AWAY = 1001  # the venue is shutting down
    MESSAGE_TOO_BIG = 1009  # a frame above HARD_FRAME_LIMIT (aiohttp's own close)
    LOGIN_TIMEOUT = 4000  # no successful login within login_timeout_s
    IDLE = 4001  # nothing received for idle_timeout_s
    SLOW_CONSUMER = 4002  # the send queue was full: the client does not read fast enough
    KEY_REVOKED = 4003  # the session's API key was revoked


# ---------------------------------------------------------------- request structs
RequestId = int | Annotated[str, Meta(min_length=1, max_length=64)]
Nonce = Annotated[str, Meta(pattern=r"^[\x21-\x7e]{8,64}$")]
Channel = Annotated[str, Meta(min_length=1, max_length=48)]


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    id: RequestId
    method: Annotated[str, Meta(max_length=32)]
    params: dict[str, Any] = {}


class LoginParams(schemas.Request):
    """The key id, the Unix-ms timestamp and the nonce that were signed, and the signature of
    ``timestamp \\n GET \\n /v1/ws \\n hex(sha256(nonce))``."""

    key: Annotated[str, Meta(max_length=32)]
    timestamp: Annotated[str, Meta(max_length=20)]
    nonce: Nonce
    signature: Annotated[str, Meta(max_length=256)]


class ChannelsParams(schemas.Request):
    channels: Annotated[list[Channel], Meta(min_length=1, max_length=MAX_CHANNELS_PER_REQUEST)]


class OrderIdParams(schemas.Request):
    order_id: schemas.OrderId


class ReplaceParams(schemas.ReplaceOrderRequest, kw_only=True):
    order_id: schemas.OrderId


QuoteLevel = tuple[schemas.Decimal, schemas.Units]


class MassQuoteParams(schemas.Request):
    # its orders' client_order_ids are <quote_id>.b1 ...: the same characters as REST's
    quote_id: Annotated[str, Meta(pattern=rf"^[{schemas.URL_SAFE_CHARACTERS}]{{1,48}}$")]
    symbol: schemas.Symbol
    bids: Annotated[list[QuoteLevel], Meta(max_length=10)] = []
    asks: Annotated[list[QuoteLevel], Meta(max_length=10)] = []


class CodParams(schemas.Request):
    enabled: bool


class MmpParams(schemas.Request):
    symbol: schemas.Symbol
    window_ms: Annotated[int, Meta(ge=1, le=86_400_000)]
    qty_limit: Annotated[str, Meta(pattern=r"^(0|[1-9][0-9]{0,14})$")]  # "0": protection off


class SymbolParams(schemas.Request):
    symbol: schemas.Symbol


class NoParams(schemas.Request):
    pass


# ---------------------------------------------------------------- the durable books
class DurableBooks:
    """Each instrument's aggregated resting quantity per price, from durable order reports.

    ``load`` starts from the exchange's open orders (call it when nothing is in flight, at
    start-up); ``note`` applies one order report. Reports carry an order's absolute state, so
    applying one twice, or one already reflected by ``load``, converges to the same book.
    """

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange
        self.resting: dict[int, tuple[str, str, int, int, int]] = {}  # id -> sym, side, px,
        # leaves, cum
        self._sides: dict[str, tuple[SortedDict, SortedDict]] = {}  # bids keyed by -price

    def load(self) -> None:
        for order in self.exchange.open_orders.values():
            if order.price is not None:
                self._rest(
                    order.order_id,
                    order.symbol,
                    order.side,
                    order.price,
                    order.leaves_qty,
                    order.cum_qty,
                )

    def _side(self, symbol: str, side: str) -> SortedDict:
        sides = self._sides.get(symbol)
        if sides is None:
            sides = self._sides[symbol] = (SortedDict(), SortedDict())
        return sides[0] if side == "buy" else sides[1]

    def _rest(self, order_id: int, symbol: str, side: str, price: int, leaves: int, cum: int):
        self.resting[order_id] = (symbol, side, price, leaves, cum)
        levels = self._side(symbol, side)
        key = -price if side == "buy" else price
        levels[key] = levels.get(key, 0) + leaves

    def _unrest(self, order_id: int) -> tuple | None:
        entry = self.resting.pop(order_id, None)
        if entry is not None:
            symbol, side, price, leaves, _cum = entry
            levels = self._side(symbol, side)
            key = -price if side == "buy" else price
            left = levels[key] - leaves
            if left:
                levels[key] = left
            else:
                del levels[key]
        return entry

    def note(self, report: dict[str, Any]) -> tuple | None:
        """Apply one order report; the order's previous resting entry (None: it was not)."""
        order_id = report["order_id"]
        previous = self._unrest(order_id)
        if report["ord_status"] in _OPEN and report["price"] is not None:
            self._rest(
                order_id,
                report["symbol"],
                report["side"],
                report["price"],
                report["leaves_qty"],
                report["cum_qty"],
            )
        return previous

    def depth(self, symbol: str, levels: int = BOOK_DEPTH) -> tuple[list, list]:
        """``(bids, asks)`` as ``(price_ticks, qty)`` rows, best first."""
        sides = self._sides.get(symbol)
        if sides is None:
            return [], []
        bids, asks = sides
        return (
            [(-key, bids[key]) for key in bids.islice(0, levels)],
            [(key, asks[key]) for key in asks.islice(0, levels)],
        )


def _exec_type(report: dict[str, Any], previous: tuple | None) -> str:
    """What a pushed order report reports, from the order's previous durable state."""
    status = report["ord_status"]
    if report["cum_qty"] > (previous[4] if previous else 0):
        return "trade"
    if status in ("canceled", "expired"):
        return status
    if previous is None:
        return "new" if status in _OPEN else "order_status"
    if previous[2] != report["price"] or previous[3] != report["leaves_qty"]:
        return "replaced"
    return "order_status"


# ---------------------------------------------------------------- calls into rest.py
@dataclass(slots=True)
class WsCall(rest.Call):
    """A REST handler's view of one WebSocket request: the path parameters come from the
    request's params (there is no HTTP request behind it)."""

    path_params: dict[str, str] | None = None

    def path(self, name: str) -> str:
        return self.path_params[name]


def _encode(message: dict[str, Any]) -> bytes:
    return _ENCODER.encode(message)


def error_body(error: VenueError) -> dict[str, Any]:
    """The ``error`` member of a refusal: the REST problem document's code, detail (as
    ``message``), field and details, sanitised the same way."""
    _status, body = problem(error, WS_PATH)
    document = msgspec.json.decode(body)
    out = {"code": document["code"], "message": document["detail"]}
    if document.get("field") is not None:
        out["field"] = document["field"]
    if document.get("details"):
        out["details"] = document["details"]
    return out


# ---------------------------------------------------------------- one connection
class Session:
    """One WebSocket connection: its login, subscriptions, send queue and placed orders."""

    def __init__(self, gateway: WsGateway, ws: web.WebSocketResponse, request: web.Request):
        self.gateway = gateway
        self.ws = ws
        self.request = request
        self.transport = request.transport
        self.caller: Caller | None = None
        self.channels: set[Any] = set()  # keys of gateway.subscribers
        self.placed: set[int] = set()  # order ids this session's commands created
        self.cod = False
        self.private_seq = {"orders": 0, "fills": 0}
        self.tasks: set[asyncio.Task] = set()
        self.closing = False
        self.close_task: asyncio.Task | None = None
        self._queue: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self.writer = asyncio.get_running_loop().create_task(self._write())

    # -- sending -----------------------------------------------------------------------
    def send(self, frame: bytes) -> None:
        """Queue one text frame; never waits. A full queue drops the connection."""
        if self.closing:
            return
        queue = self._queue
        if len(queue) >= self.gateway.send_queue_limit:
            self.gateway.dropped.inc()
            log.warning(
                "websocket consumer too slow: disconnected",
                extra={"participant": self.participant_id, "queued": len(queue)},
            )
            self.close_soon(
                CloseCode.SLOW_CONSUMER,
                f"slow consumer: {len(queue)} messages waiting to be sent",
            )
            return
        queue.append(frame)
        self._ready.set()

    def reply(self, request_id: Any, result: Any) -> None:
        self.send(_encode({"id": request_id, "result": result}))

    def refuse(self, request_id: Any, error: VenueError, method: str | None) -> None:
        gateway = self.gateway
        gateway.api.metrics.refusals.labels(error.code.value).inc()
        if method == "order.place":
            gateway.api.metrics.orders.labels(error.code.value).inc()
        self.send(_encode({"id": request_id, "error": error_body(error)}))

    async def _write(self) -> None:
        queue, ready, ws = self._queue, self._ready, self.ws
        try:
            while True:
                while queue:
                    await ws.send_frame(queue.popleft(), WSMsgType.TEXT)
                ready.clear()
                await ready.wait()
        except (ConnectionError, RuntimeError):  # the peer went away under the writer
            self.close_soon(CloseCode.GOING_AWAY, "connection lost")

    def close_soon(self, code: int, reason: str) -> None:
        """Stop sending and close (the reader loop then ends and cleans up)."""
        if self.closing:
            return
        self.closing = True
        self._queue.clear()
        self.writer.cancel()
        task = self.close_task = asyncio.get_running_loop().create_task(self._close(code, reason))
        self.gateway.background.add(task)
        task.add_done_callback(self.gateway.background.discard)

    async def _close(self, code: int, reason: str) -> None:
        """Send the close frame; a client that has not read it within ``close_grace_s`` (its
        backlog stands before the close frame) has its connection aborted. aiohttp's own
        fallback is a graceful transport close, which waits for the peer to read: not enough."""
        grace = self.gateway.close_grace_s
        if self.transport is not None:
            asyncio.get_running_loop().call_later(grace, self.transport.abort)
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]), grace)

    @property
    def participant_id(self) -> str | None:
        return None if self.caller is None else self.caller.participant_id


# ---------------------------------------------------------------- the gateway
Method = Callable[..., Any]  # (gateway, session, params, started) -> result or awaitable


class WsGateway:
    """Every WebSocket session of one running venue, and the pushes from its events.

    Limits are attributes (tests and operators may change them before connections arrive):
    ``send_queue_limit`` frames waiting per connection, ``idle_timeout_s`` without any frame
    from the client, ``login_timeout_s`` to log in, ``heartbeat_s`` between the venue's
    protocol pings (a missing pong closes the connection), ``max_requests_in_flight`` commands
    per connection awaiting durability (beyond it the venue stops reading that connection),
    ``close_grace_s`` for a closing connection's last frames to be read before it is aborted,
    ``socket_send_buffer`` the kernel send buffer of each connection (SO_SNDBUF).
    """

    send_queue_limit = 10_000
    idle_timeout_s = 60.0
    login_timeout_s = 10.0
    heartbeat_s = 20.0
    max_requests_in_flight = 1_000
    close_grace_s = 2.0
    socket_send_buffer = 256 * 1024  # bytes: the kernel's share of a connection's backlog

    def __init__(self, api: rest.RestApi) -> None:
        self.api = api
        self.venue = api.venue
        self.exchange = api.exchange
        self.max_frame_bytes = api.max_body
        self.sessions: set[Session] = set()
        self.subscribers: dict[Any, set[Session]] = {}
        self.books = DurableBooks(self.exchange)
        self.book_channels: dict[str, BookChannel] = {}
        self.seqs: dict[str, int] = {}  # trades.{symbol} and instruments: last seq sent
        self.background: set[asyncio.Task] = set()
        registry = api.metrics.registry
        self.connections = Gauge(
            "venue_ws_connections", "Open WebSocket connections.", registry=registry
        )
        self.dropped = Counter(
            "venue_ws_dropped_consumers_total",
            "WebSocket connections closed because their send queue was full (slow consumers).",
            registry=registry,
        )
        self.requests = Counter(
            "venue_ws_requests_total",
            "WebSocket requests answered, by method (unknown methods as 'unknown') and outcome.",
            ["method", "outcome"],
            registry=registry,
        )
        self.methods: dict[str, tuple[Method, type, Scope | None]] = {
            "ping": (WsGateway._ping, NoParams, None),
            "subscribe": (WsGateway._subscribe, ChannelsParams, Scope.READ),
            "unsubscribe": (WsGateway._unsubscribe, ChannelsParams, Scope.READ),
            "order.place": (WsGateway._place, schemas.PlaceOrderRequest, Scope.TRADE),
            "order.cancel": (WsGateway._cancel, OrderIdParams, Scope.TRADE),
            "order.replace": (WsGateway._replace, ReplaceParams, Scope.TRADE),
            "mass_quote": (WsGateway._mass_quote, MassQuoteParams, Scope.TRADE),
            "cancel_all": (WsGateway._cancel_all, schemas.CancelAllRequest, Scope.TRADE),
            "cod.set": (WsGateway._cod_set, CodParams, Scope.TRADE),
            "mmp.set": (WsGateway._mmp_set, MmpParams, Scope.TRADE),
            "mmp.reset": (WsGateway._mmp_reset, SymbolParams, Scope.TRADE),
        }
        # Commands wait for durability: they run as tasks so that a client can pipeline them.
        self.commands = {
            "order.place",
            "order.cancel",
            "order.replace",
            "mass_quote",
            "cancel_all",
            "mmp.set",
            "mmp.reset",
        }
        self._decoders = {
            name: msgspec.json.Decoder(spec[1]) for name, spec in self.methods.items()
        }
        self._envelope = msgspec.json.Decoder(Envelope)
        self._login = msgspec.json.Decoder(LoginParams)

    async def start(self) -> None:
        """Load the books from a durable state and start listening to the sequencer."""
        await self.venue.settled()
        self.books.load()
        for symbol in self.exchange.instruments:
            self._book_channel(symbol)
        self.venue.sequencer.subscribe(self.on_events)

    async def shutdown(self) -> None:
        """Close every connection (1001) and wait for their cancel-on-disconnect commands."""
        for session in list(self.sessions):
            session.close_soon(CloseCode.GOING_AWAY, "the venue is shutting down")
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)

    # -- the connection -------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=self.heartbeat_s, max_msg_size=HARD_FRAME_LIMIT)
        if not ws.can_prepare(request).ok:
            error = VenueError(
                ErrorCode.BAD_PARAMETER, f"{WS_PATH} speaks WebSocket only: send an Upgrade request"
            )
            status, body = problem(error, request.path)
            self.api.metrics.refusals.labels(error.code.value).inc()
            return web.Response(body=body, status=status, content_type="application/problem+json")
        await ws.prepare(request)
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:  # bound what the kernel buffers, so the send queue decides
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.socket_send_buffer)
        session = Session(self, ws, request)
        self.sessions.add(session)
        self.connections.inc()
        in_flight = asyncio.Semaphore(self.max_requests_in_flight)
        deadline = time.monotonic() + self.login_timeout_s
        try:
            while not session.closing:
                timeout = self.idle_timeout_s
                if session.caller is None:
                    timeout = min(timeout, deadline - time.monotonic())
                try:
                    message = await ws.receive(timeout=max(timeout, 0.001))
                except TimeoutError:
                    if session.caller is None:
                        session.close_soon(CloseCode.LOGIN_TIMEOUT, "log in first")
                    else:
                        session.close_soon(CloseCode.IDLE, f"idle for {self.idle_timeout_s} s")
                    break
                if message.type == WSMsgType.TEXT:
                    await in_flight.acquire()
                    self._on_text(session, message.data, in_flight)
                elif message.type == WSMsgType.BINARY:
                    error = VenueError(
                        ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send JSON requests in text frames"
                    )
                    session.refuse(None, error, None)
                else:  # CLOSE, CLOSING, CLOSED, ERROR
                    break
        finally:
            self._forget(session)
            self.connections.dec()
            if not session.closing:
                session.closing = True
                session.writer.cancel()
            if session.cod and session.placed:
                task = asyncio.get_running_loop().create_task(self._cancel_on_disconnect(session))
                self.background.add(task)
                task.add_done_callback(self.background.discard)
            if session.close_task is not None:  # our close frame, not aiohttp's 1000 on return
                await asyncio.shield(session.close_task)
        return ws

    def _forget(self, session: Session) -> None:
        self.sessions.discard(session)
        for key in session.channels:
            members = self.subscribers.get(key)
            if members is not None:
                members.discard(session)
        session.channels.clear()

    async def _cancel_on_disconnect(self, session: Session) -> None:
        """Cancel what the session placed, once its commands in flight are answered (so that
        an order placed just before the drop is among them)."""
        if session.tasks:
            await asyncio.gather(*list(session.tasks), return_exceptions=True)
        orders = self.exchange.orders
        open_ids = tuple(sorted(oid for oid in session.placed if orders[oid].is_open))
        if not open_ids:
            return
        try:
            result = await self.venue.submit(CancelOrders(session.participant_id, open_ids))
        except VenueError as error:
            log.warning(
                "cancel-on-disconnect refused: %s",
                error,
                extra={"participant": session.participant_id},
            )
            return
        log.info(
            "cancel-on-disconnect",
            extra={"participant": session.participant_id, "canceled": len(result["canceled"])},
        )

    def _on_text(self, session: Session, text: str, in_flight: asyncio.Semaphore) -> None:
        """Decode and run one request; commands become tasks (released from ``in_flight``
        when answered), everything else is answered before the next frame is read."""
        request_id: Any = None
        method_name: str | None = None
        try:
            if len(text) > self.max_frame_bytes:
                raise VenueError(
                    ErrorCode.BODY_TOO_LARGE,
                    f"a request frame is at most {self.max_frame_bytes} bytes",
                    limit_bytes=self.max_frame_bytes,
                )
            envelope = self._decode_envelope(text)
            request_id, method_name = envelope.id, envelope.method
            if method_name == "login":
                self._do_login(session, envelope)
                self.requests.labels("login", "ok").inc()
                in_flight.release()
                return
            spec = self.methods.get(method_name)
            if spec is None:
                method_name = None
                raise VenueError(ErrorCode.UNKNOWN_ROUTE, "no such method", method=envelope.method)
            caller = session.caller
            if caller is None:
                raise VenueError(ErrorCode.MISSING_CREDENTIALS, "log in first (method login)")
            if caller.key_id not in self.exchange.credentials:
                session.close_soon(CloseCode.KEY_REVOKED, "the session's API key was revoked")
                raise VenueError(ErrorCode.UNKNOWN_API_KEY, "the session's key was revoked")
            self.api.auth.charge(caller.key_id)  # the key's REST bucket: auth.rate_limited
            handler, _params_type, scope = spec
            if scope is not None and scope not in caller.scopes:
                raise VenueError(
                    ErrorCode.INSUFFICIENT_SCOPE,
                    f"this method needs the '{scope.value}' scope",
                    needed=scope.value,
                )
            params = self._decode_params(method_name, envelope.params)
        except VenueError as error:
            self.requests.labels(method_name or "unknown", "error").inc()
            session.refuse(request_id, error, method_name)
            in_flight.release()
            return
        if method_name in self.commands:
            task = asyncio.get_running_loop().create_task(
                self._run(session, request_id, method_name, handler, params)
            )
            session.tasks.add(task)

            def done(task: asyncio.Task) -> None:
                session.tasks.discard(task)
                in_flight.release()

            task.add_done_callback(done)
            return
        # Not a command: answered at once, so that a subscription's snapshot follows its
        # answer before any later push, and a login is in force for the next frame.
        try:
            self._answer(session, request_id, method_name, handler(self, session, params, 0.0))
        except Exception as error:
            self._refuse(session, request_id, method_name, error)
        finally:
            in_flight.release()

    async def _run(
        self, session: Session, request_id: Any, name: str, handler: Method, params: Any
    ) -> None:
        try:
            result = await handler(self, session, params, time.perf_counter())
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._refuse(session, request_id, name, error)
            return
        self._answer(session, request_id, name, result)

    def _answer(self, session: Session, request_id: Any, name: str, result: Any) -> None:
        self.requests.labels(name, "ok").inc()
        if type(result) is _Then:
            session.reply(request_id, result.result)
            result.after()
        else:
            session.reply(request_id, result)

    def _refuse(self, session: Session, request_id: Any, name: str, error: Exception) -> None:
        """Answer a failed request with its code (an unexpected fault: state.internal_error)."""
        if isinstance(error, LedgerError):
            code = error.code if error.code in ERROR_CODES else "ledger.error"
            error = VenueError(code, str(error))
        elif not isinstance(error, VenueError):
            log.exception("internal error answering websocket method %s", name, exc_info=error)
            error = VenueError(ErrorCode.INTERNAL_ERROR, "the venue failed to answer")
        self.requests.labels(name, "error").inc()
        session.refuse(request_id, error, name)

    def _decode_envelope(self, text: str) -> Envelope:
        try:
            return self._envelope.decode(text)
        except msgspec.ValidationError as error:
            raise _envelope_error(error) from None
        except msgspec.DecodeError:
            raise VenueError(ErrorCode.MALFORMED_JSON, "the frame is not valid JSON") from None

    def _decode_params(self, method: str, params: dict[str, Any]) -> Any:
        try:
            return msgspec.convert(params, self.methods[method][1])
        except msgspec.ValidationError as error:
            raise validation_error(error, "params") from None

    def _do_login(self, session: Session, envelope: Envelope) -> None:
        if session.caller is not None:
            raise VenueError(ErrorCode.BAD_PARAMETER, "this session is already logged in")
        try:
            params = msgspec.convert(envelope.params, LoginParams)
        except msgspec.ValidationError as error:
            raise validation_error(error, "params") from None
        headers = {
            KEY_HEADER: params.key,
            TIMESTAMP_HEADER: params.timestamp,
            SIGNATURE_HEADER: params.signature,
        }
        caller, _rate = self.api.auth.authenticate(headers, "GET", WS_PATH, params.nonce.encode())
        session.caller = caller
        session.cod = caller.participant.role == Role.MARKET_MAKER
        session.reply(
            envelope.id,
            {
                "participant": caller.participant_id,
                "key": caller.key_id,
                "scopes": sorted(scope.value for scope in caller.scopes),
                "cancel_on_disconnect": session.cod,
            },
        )

    # -- methods ---------------------------------------------------------------------------
    def _call(self, session: Session, body: Any, started: float, **path: str) -> WsCall:
        return WsCall(self.api, None, session.caller, None, body, started, path)

    def _ping(self, session: Session, _params: NoParams, _started: float) -> dict:
        now = time.time_ns()
        return {"pong": True, "time": views.rfc3339(now), "epoch_ms": now // 1_000_000}

    async def _place(self, session: Session, params: Any, started: float) -> Any:
        reply = await rest.place_order(self._call(session, params, started))
        session.placed.add(reply.body.order_id)
        return reply.body

    async def _cancel(self, session: Session, params: OrderIdParams, started: float) -> Any:
        call = self._call(session, None, started, order_id=str(params.order_id))
        return await rest.cancel_order(call)

    async def _replace(self, session: Session, params: ReplaceParams, started: float) -> Any:
        call = self._call(session, params, started, order_id=str(params.order_id))
        return await rest.replace_order(call)

    async def _cancel_all(self, session: Session, params: Any, started: float) -> Any:
        return await rest.cancel_all(self._call(session, params, started))

    async def _mass_quote(self, session: Session, params: MassQuoteParams, started: float):
        instrument = queries.instrument_of(self.exchange, params.symbol)

        def levels(side: list[QuoteLevel], name: str) -> tuple[tuple[int, int], ...]:
            return tuple(
                (instrument.parse_price(price, field=name), parse_quantity(qty, field=name))
                for price, qty in side
            )

        command = MassQuote(
            session.participant_id,
            params.quote_id,
            params.symbol,
            levels(params.bids, "bids"),
            levels(params.asks, "asks"),
        )
        result = await self.venue.submit(command)
        call = self._call(session, None, started)
        orders = []
        for report in result["orders"]:
            session.placed.add(report["order_id"])
            exec_type = rest._exec_type_of(report, bool(report["trade_ids"]), "new")
            orders.append(rest._order_view(call, report, exec_type))
        return {
            "quote_id": result["quote_id"],
            "symbol": result["symbol"],
            "canceled": result["canceled"],
            "orders": orders,
        }

    def _cod_set(self, session: Session, params: CodParams, _started: float) -> dict:
        session.cod = params.enabled
        return {"cancel_on_disconnect": session.cod}

    async def _mmp_set(self, session: Session, params: MmpParams, _started: float) -> dict:
        command = SetMmp(
            session.participant_id, params.symbol, params.window_ms, int(params.qty_limit)
        )
        result = await self.venue.submit(command)
        return {
            "symbol": result["symbol"],
            "window_ms": result["window_ms"],
            "qty_limit": format_quantity(result["qty_limit"]),
        }

    async def _mmp_reset(self, session: Session, params: SymbolParams, _started: float) -> dict:
        return await self.venue.submit(ResetMmp(session.participant_id, params.symbol))

    def _subscribe(self, session: Session, params: ChannelsParams, _started: float):
        keys = [self._channel_key(session, name) for name in params.channels]  # all or none
        for key in keys:
            self.subscribers.setdefault(key, set()).add(session)
            session.channels.add(key)
        # The answer goes first, then each channel's snapshot (if it has one).
        return _Then(
            {"subscribed": list(params.channels)},
            lambda: [self._snapshot(session, name) for name in params.channels],
        )

    def _unsubscribe(self, session: Session, params: ChannelsParams, _started: float):
        keys = [self._channel_key(session, name) for name in params.channels]
        for key in keys:
            session.channels.discard(key)
            members = self.subscribers.get(key)
            if members is not None:
                members.discard(session)
        return {"unsubscribed": list(params.channels)}

    def _channel_key(self, session: Session, name: str) -> Any:
        """The subscribers key of channel ``name``; private channels are per participant."""
        if name in PRIVATE_CHANNELS:
            return (name, session.participant_id)
        if name == "instruments":
            return name
        for prefix in PUBLIC_CHANNELS:
            if name.startswith(prefix):
                queries.instrument_of(self.exchange, name[len(prefix) :])
                return name
        raise VenueError(
            ErrorCode.BAD_PARAMETER,
            "channels are book.{symbol}, trades.{symbol}, instruments, orders and fills",
            field="channels",
            channel=name,
        )

    def _snapshot(self, session: Session, name: str) -> None:
        if name.startswith("book."):
            channel = self._book_channel(name[5:])
            snapshot = channel.snapshot()
            seq = snapshot.pop("seq")
            session.send(
                _encode({"channel": name, "type": "snapshot", "seq": seq, "data": snapshot})
            )
        elif name == "instruments":
            api = self.api
            data = {
                "instruments": [
                    views.instrument_view(instrument, api.factors.of(symbol))
                    for symbol, instrument in sorted(self.exchange.instruments.items())
                ]
            }
            session.send(
                _encode(
                    {
                        "channel": name,
                        "type": "snapshot",
                        "seq": self.seqs.get(name, 0),
                        "data": data,
                    }
                )
            )

    def _book_channel(self, symbol: str) -> BookChannel:
        channel = self.book_channels.get(symbol)
        if channel is None:
            instrument = self.exchange.instruments[symbol]
            channel = self.book_channels[symbol] = BookChannel(
                lambda: self.books.depth(symbol),
                lambda ticks: views.price_text(instrument, ticks),
            )
        return channel

    # -- pushes ------------------------------------------------------------------------------
    def on_events(self, events: list[tuple]) -> None:
        """The sequencer's listener: durable events become pushes. Never waits."""
        changed: dict[str, None] = {}
        for event in events:
            try:
                self._on_event(event, changed)
            except Exception:  # one bad event must not cost the others their pushes
                log.exception("websocket push failed for a %s event", event[0])
        for symbol in changed:
            try:
                self._push_book(symbol)
            except Exception:
                log.exception("websocket book push failed for %s", symbol)

    def _on_event(self, event: tuple, changed: dict[str, None]) -> None:
        kind = event[0]
        subscribers = self.subscribers
        if kind == "order":
            report = event[1]
            previous = self.books.note(report)
            if previous is not None or report["order_id"] in self.books.resting:
                changed[report["symbol"]] = None
            members = subscribers.get(("orders", report["participant"]))
            if members:
                call = WsCall(self.api, None, None, None, None, 0.0, None)
                view = rest._order_view(call, report, _exec_type(report, previous))
                self._push_private(members, "orders", "report", view)
        elif kind == "fill":
            payload, maker, taker = event[1], event[2], event[3]
            for participant, order_key in ((maker, "maker_order_id"), (taker, "taker_order_id")):
                members = subscribers.get(("fills", participant))
                if members:
                    order = self.exchange.orders[payload[order_key]]
                    instrument = self.exchange.instruments[payload["instrument"]]
                    view = views.execution(
                        payload, order.order_id, order.client_order_id, instrument
                    )
                    self._push_private(members, "fills", "fill", view)
        elif kind == "trade":
            trade = event[1]
            name = "trades." + trade["symbol"]
            seq = self.seqs[name] = self.seqs.get(name, 0) + 1
            members = subscribers.get(name)
            if members:
                instrument = self.exchange.instruments[trade["symbol"]]
                data = schemas.TradeView(
                    trade_id=trade["trade_id"],
                    symbol=trade["symbol"],
                    price=views.price_text(instrument, trade["price"]),
                    qty=str(trade["qty"]),
                    aggressor_side=trade["aggressor_side"],
                    time=views.rfc3339(trade["ts"]),
                )
                self._broadcast(
                    members, {"channel": name, "type": "trade", "seq": seq, "data": data}
                )
        elif kind == "instrument":
            wire = event[1]
            seq = self.seqs["instruments"] = self.seqs.get("instruments", 0) + 1
            members = subscribers.get("instruments")
            if members:
                instrument = Instrument.from_wire(wire)
                data = views.instrument_view(instrument, self.api.factors.of(instrument.symbol))
                self._broadcast(
                    members, {"channel": "instruments", "type": "update", "seq": seq, "data": data}
                )

    def _push_book(self, symbol: str) -> None:
        channel = self._book_channel(symbol)
        message = channel.update()
        if message is None:
            return
        name = "book." + symbol
        members = self.subscribers.get(name)
        if members:
            seq = message.pop("seq")
            self._broadcast(
                members, {"channel": name, "type": "update", "seq": seq, "data": message}
            )

    @staticmethod
    def _broadcast(members: set[Session], message: dict[str, Any]) -> None:
        """Send one public push to every subscriber, stamped ``epoch_us`` (Unix microseconds)
        when the venue published it, so a subscriber can measure how late it receives it."""
        message["epoch_us"] = time.time_ns() // 1000
        frame = _encode(message)  # encoded once for every subscriber
        for session in list(members):
            session.send(frame)

    @staticmethod
    def _push_private(members: set[Session], channel: str, kind: str, data: Any) -> None:
        for session in list(members):
            session.private_seq[channel] += 1
            session.send(
                _encode(
                    {
                        "channel": channel,
                        "type": kind,
                        "seq": session.private_seq[channel],
                        "data": data,
                    }
                )
            )


@dataclass(frozen=True, slots=True)
class _Then:
    """A method's result followed by more frames, sent right after the answer."""

    result: Any
    after: Callable[[], Any]


def _envelope_error(error: msgspec.ValidationError) -> VenueError:
    message = str(error)
    if "missing required field" in message or "unknown field" in message:
        return validation_error(error, "request")
    return VenueError(
        ErrorCode.BAD_PARAMETER,
        'a request is {"id": integer or string, "method": string, "params": object}: ' + message,
    )
