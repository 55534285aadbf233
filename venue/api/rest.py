"""The brokers' REST API (SPEC section 4): the route table, and one handler per endpoint.

``ROUTES`` is the single list of endpoints: the server registers exactly these, and
``venue/api/openapi.py`` documents exactly these, each with the structs its handler decodes and
encodes (``venue/api/schemas.py``). Every request goes through :meth:`RestApi.endpoint`'s
wrapper: body size and media type, authentication and scope (``venue/api/auth.py``), query and
body decoding into the route's structs, the handler, and the answer: the route's struct as
JSON, or a problem document (``venue/api/errors.py``) for any refusal. A handler only converts
wire values to the venue's integers with the domain's own parsers, submits a command or runs a
query, and formats the result (``venue/api/views.py``).

Who sees what: a broker or market maker sees and touches only its own orders, fills, accounts
and keys (another's order: ``matching.not_order_owner``; another's account or fills:
``auth.forbidden``); a key with the ``audit`` scope (clerks, operators) may read any
participant's by passing ``participant=``; ``admin`` endpoints change reference data,
participants, keys and balances.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import hdrs, web

from ledger.checkpoint import parse_checkpoint
from ledger.errors import LedgerError
from venue.api import schemas, views
from venue.api.auth import Authenticator, Caller, RateLimited
from venue.api.errors import PROBLEM_CONTENT_TYPE, problem, validation_error
from venue.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from venue.api.metrics import ApiMetrics
from venue.core import queries
from venue.core.commands import (
    CancelAll,
    CancelOrder,
    Deposit,
    ListInstrument,
    PlaceOrder,
    ReplaceOrder,
    SetTradingStatus,
    UpdateFactor,
    Withdraw,
)
from venue.domain.money import parse_cny, parse_quantity, parse_scaled
from venue.domain.participants import Scope, credential_kind
from venue.errors import ERROR_CODES, ErrorCode, VenueError
from venue.service import LEDGER_ORIGIN

log = logging.getLogger(__name__)

READ, TRADE, AUDIT, ADMIN = Scope.READ, Scope.TRADE, Scope.AUDIT, Scope.ADMIN
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
_ORDER_ID = re.compile(r"[1-9][0-9]{0,17}")
_TRADE_ID = re.compile(r"T[0-9]{12}")
_ENCODER = msgspec.json.Encoder()
# GETs of these read the exchange's in-memory state, which runs ahead of durability: they wait
# for the read barrier (``Venue.settled``) first, so nothing not yet durable is ever shown.
STATE_READS = ("/v1/instruments", "/v1/orders", "/v1/fills", "/v1/accounts", "/v1/keys",
               "/v1/admin")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer with a status other than the route's."""

    status: int
    body: Any


@dataclass(slots=True)
class Call:
    """One request as a handler sees it: already authenticated and decoded."""

    api: RestApi
    request: web.Request
    caller: Caller | None
    query: Any
    body: Any
    started: float

    def path(self, name: str) -> str:
        return self.request.match_info[name]


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: what it accepts, what it answers, who may call it."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    scope: Scope | None = None  # None: public, unsigned
    query: type = schemas.NoQuery
    body: type | None = None
    body_optional: bool = False
    response: type | None = None  # None: text (response_type says which)
    response_type: str = JSON
    status: int = 200
    errors: tuple[ErrorCode, ...] = ()
    path_params: dict[str, dict] = field(default_factory=dict)


# ======================================================================== helpers
def _order_id(text: str) -> int:
    if not _ORDER_ID.fullmatch(text):
        raise VenueError(
            ErrorCode.BAD_PARAMETER, "order_id must be a positive integer", field="order_id"
        )
    return int(text)


def _trade_id(text: str) -> str:
    if not _TRADE_ID.fullmatch(text):
        raise VenueError(ErrorCode.BAD_PARAMETER, "trade_id is 'T' and 12 digits", field="trade_id")
    return text


def _subject(call: Call, requested: str | None) -> str:
    """Whose data a read is about: the caller's own, or (with the audit scope) anyone's."""
    own = call.caller.participant_id
    if requested is None or requested == own:
        return own
    if AUDIT not in call.caller.scopes:
        raise VenueError(
            ErrorCode.FORBIDDEN,
            "a participant reads only its own orders, fills and accounts",
            participant=requested,
        )
    _participant(call, requested)
    return requested


def _participant(call: Call, participant_id: str) -> Any:
    participant = call.api.exchange.participants.get(participant_id)
    if participant is None:
        raise VenueError(
            ErrorCode.UNKNOWN_PARTICIPANT,
            f"no participant {participant_id!r}",
            participant=participant_id,
        )
    return participant


def _reader(call: Call) -> str | None:
    """The participant an order read is restricted to: None for an auditor."""
    return None if AUDIT in call.caller.scopes else call.caller.participant_id


def _cursor_int(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise VenueError(ErrorCode.BAD_PARAMETER, "not a cursor of this list", field="cursor")
    return int(cursor)


# ======================================================================== the API
class RestApi:
    """The endpoints of one running venue, and the per-request pipeline around them."""

    def __init__(self, venue: Any, metrics: ApiMetrics) -> None:
        config = venue.config
        self.venue = venue
        self.exchange = venue.exchange
        self.metrics = metrics
        self.max_body = config.api_max_body_bytes
        self.auth = Authenticator(
            venue.exchange,
            window_ms=config.api_clock_window_ms,
            rate=config.api_rate_limit_per_second,
            burst=config.api_rate_limit_burst,
        )
        self.order_index = queries.OrderIndex(venue.exchange)
        self.fills = queries.FillDetails(venue.ledger)
        venue.sequencer.subscribe(self.fills.on_events)
        self.factors = queries.FactorHistory()
        venue.sequencer.subscribe(self.factors.on_events)
        self._factors_loading: asyncio.Future | None = None
        self.openapi_document: bytes = b""
        self.orders_accepted = metrics.orders.labels("accepted")
        self.orders_repeated = metrics.orders.labels("repeated")

    async def start(self) -> None:
        """Load what the API keeps beside the exchange (the factor history), before serving."""
        trade_count = self.exchange.next_trade_number - 1
        await asyncio.to_thread(self.factors.load, self.venue.ledger, trade_count)

    # ---------------------------------------------------------------- the pipeline
    def endpoint(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The aiohttp handler of ``route``: every step of the module docstring."""
        body_decoder = msgspec.json.Decoder(route.body) if route.body is not None else None
        metrics = self.metrics
        # Label children bound once (a ``labels()`` lookup costs as much as the increment).
        by_status: dict[int, Any] = {}
        request_seconds = metrics.request_seconds.labels(route.path)
        settle = route.method == "GET" and route.path.startswith(STATE_READS)
        venue = self.venue

        async def handle(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            headers: dict[str, str] = {}
            try:
                raw = await self._read_body(request)
                caller = None
                if route.scope is not None:
                    caller, headers = self.auth.authenticate(
                        request.headers, request.method, request.raw_path, raw
                    )
                    if route.scope not in caller.scopes:
                        raise VenueError(
                            ErrorCode.INSUFFICIENT_SCOPE,
                            f"this operation needs the '{route.scope.value}' scope",
                            needed=route.scope.value,
                        )
                query = _decode_query(request, route.query)
                body = None
                if body_decoder is not None:
                    body = self._decode_body(request, raw, body_decoder, route)
                if settle:
                    await venue.settled()
                result = await route.handler(Call(self, request, caller, query, body, started))
                status = route.status
                if type(result) is Reply:
                    status, result = result.status, result.body
                if isinstance(result, web.StreamResponse):
                    response = result
                else:
                    response = web.Response(
                        body=_ENCODER.encode(result), status=status, content_type=JSON
                    )
            except VenueError as error:
                response = self._refusal(error, request, route)
                if type(error) is RateLimited:
                    headers.update(error.headers)
            except LedgerError as error:
                code = error.code if error.code in ERROR_CODES else "ledger.error"
                response = self._refusal(VenueError(code, str(error)), request, route)
            except (asyncio.CancelledError, ConnectionResetError):
                raise  # (the client went away mid-request: aiohttp drops it quietly)
            except Exception:
                log.exception("internal error answering %s %s", request.method, route.path)
                error = VenueError(ErrorCode.INTERNAL_ERROR, "the venue failed to answer")
                response = self._refusal(error, request, route)
            if headers:
                response.headers.update(headers)
            counter = by_status.get(response.status)
            if counter is None:
                counter = by_status[response.status] = metrics.requests.labels(
                    route.path, route.method, response.status
                )
            counter.inc()
            request_seconds.observe(time.perf_counter() - started)
            return response

        return handle

    async def _read_body(self, request: web.Request) -> bytes:
        if not request.body_exists:
            return b""
        length = request.content_length
        if length is not None and length > self.max_body:
            raise _too_large(self.max_body)
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _too_large(self.max_body) from None

    @staticmethod
    def _decode_body(
        request: web.Request, raw: bytes, decoder: msgspec.json.Decoder, route: Route
    ) -> Any:
        if not raw:
            if route.body_optional:
                return route.body()
            raise VenueError(ErrorCode.MALFORMED_JSON, "this operation needs a JSON body")
        if hdrs.CONTENT_TYPE in request.headers and request.content_type != JSON:
            raise VenueError(
                ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                "send the body as application/json",
                content_type=request.content_type,
            )
        try:
            return decoder.decode(raw)
        except msgspec.ValidationError as error:
            raise validation_error(error, "body") from None
        except msgspec.DecodeError:
            raise VenueError(ErrorCode.MALFORMED_JSON, "the body is not valid JSON") from None

    def _refusal(
        self, error: VenueError, request: web.Request, route: Route | None
    ) -> web.Response:
        status, body = problem(error, request.path)
        self.metrics.refusals.labels(error.code.value).inc()
        if route is not None and route.handler is place_order:
            self.metrics.orders.labels(error.code.value).inc()
        return web.Response(body=body, status=status, content_type=PROBLEM_CONTENT_TYPE)

    def unmatched(self, request: web.Request, error: web.HTTPException) -> web.Response:
        """The answer to a request no route took (aiohttp's 404 and 405)."""
        if error.status == 405:
            refusal = VenueError(
                ErrorCode.METHOD_NOT_ALLOWED,
                f"{request.method} is not allowed here",
                allowed=sorted(getattr(error, "allowed_methods", ())),
            )
        elif error.status == 404:
            refusal = VenueError(ErrorCode.UNKNOWN_ROUTE, "no endpoint has this path")
        elif error.status == 413:
            refusal = _too_large(self.max_body)
        else:
            refusal = VenueError(
                ErrorCode.BAD_PARAMETER, f"the request was refused: {error.reason}"
            )
        response = self._refusal(refusal, request, None)
        self.metrics.requests.labels("unmatched", request.method, response.status).inc()
        return response


def _too_large(limit: int) -> VenueError:
    return VenueError(
        ErrorCode.BODY_TOO_LARGE, f"the body exceeds {limit} bytes", limit_bytes=limit
    )


def _decode_query(request: web.Request, query_type: type) -> Any:
    query = request.query
    if not query:
        return query_type()
    if len(query) != len(set(query.keys())):
        raise VenueError(ErrorCode.BAD_PARAMETER, "a query parameter is given twice")
    try:
        return msgspec.convert(dict(query), query_type, strict=False)
    except msgspec.ValidationError as error:
        raise validation_error(error, "query") from None


# ======================================================================== public
async def get_time(call: Call) -> schemas.TimeView:
    now = time.time_ns()
    return schemas.TimeView(time=views.rfc3339(now), epoch_ms=now // 1_000_000)


async def list_instruments(call: Call) -> schemas.InstrumentList:
    api = call.api
    return schemas.InstrumentList(
        instruments=[
            views.instrument_view(instrument, api.factors.of(symbol))
            for symbol, instrument in sorted(api.exchange.instruments.items())
        ]
    )


async def get_instrument(call: Call) -> schemas.InstrumentView:
    symbol = call.path("symbol")
    instrument = queries.instrument_of(call.api.exchange, symbol)
    return views.instrument_view(instrument, call.api.factors.of(symbol))


async def get_book(call: Call) -> schemas.BookView:
    exchange = call.api.exchange
    symbol = call.path("symbol")
    bids, asks = queries.book_depth(exchange, symbol, call.query.depth)
    instrument = exchange.instruments[symbol]

    def levels(side: list) -> list[schemas.Level]:
        return [
            schemas.Level(price=instrument.format_price(price), qty=str(qty), orders=count)
            for price, qty, count in side
        ]

    return schemas.BookView(
        symbol=symbol, bids=levels(bids), asks=levels(asks), last_seq=exchange.seq
    )


async def get_trades(call: Call) -> schemas.TradeList:
    exchange = call.api.exchange
    symbol = call.path("symbol")
    trades = queries.recent_trades(exchange, symbol, call.query.limit)
    instrument = exchange.instruments[symbol]
    return schemas.TradeList(
        symbol=symbol,
        trades=[
            schemas.TradeView(
                trade_id=trade["trade_id"],
                symbol=symbol,
                price=instrument.format_price(trade["price"]),
                qty=str(trade["qty"]),
                aggressor_side=trade["aggressor_side"],
                time=views.rfc3339(trade["ts"]),
            )
            for trade in trades
        ],
    )


async def _newest_checkpoint(call: Call) -> str:
    ledger = call.api.venue.ledger
    note = ledger.checkpoint()
    if note is None:  # none issued yet since opening: issue one (waits for durability)
        note = await asyncio.to_thread(ledger.issue_checkpoint)
    return note


async def get_checkpoint(call: Call) -> web.Response:
    note = await _newest_checkpoint(call)
    return web.Response(text=note, content_type="text/plain", charset="utf-8")


async def get_consistency(call: Call) -> schemas.ConsistencyView:
    old_size = call.query.from_
    new_size = call.query.to
    if new_size is None:
        new_size = parse_checkpoint(await _newest_checkpoint(call))[0].size
    proof = call.api.venue.ledger.consistency_proof(old_size, new_size)
    return schemas.ConsistencyView(
        from_=old_size,
        to=new_size,
        proof=[base64.b64encode(node).decode("ascii") for node in proof],
    )


async def get_public_key(call: Call) -> schemas.PublicKeyView:
    venue = call.api.venue
    return schemas.PublicKeyView(
        public_key=venue.ledger_public_key,
        key_id=venue.ledger.signing_key_id,
        origin=LEDGER_ORIGIN,
    )


async def get_openapi(call: Call) -> web.Response:
    return web.Response(body=call.api.openapi_document, content_type=JSON)


async def get_health(call: Call) -> web.Response:
    health = call.api.venue.health()
    return web.json_response(health, status=200 if health["status"] == "ok" else 503)


async def get_metrics(call: Call) -> web.Response:
    response = web.Response(body=call.api.metrics.exposition())
    response.headers[hdrs.CONTENT_TYPE] = METRICS_CONTENT_TYPE
    return response


# ======================================================================== orders
def _order_view(call: Call, report: dict[str, Any], exec_type: str) -> schemas.OrderReport:
    exchange = call.api.exchange
    fills = call.api.fills
    payloads = [fills.get(trade_id) for trade_id in report["trade_ids"]]
    return views.order_report(report, exchange.instruments[report["symbol"]], exec_type, payloads)


def _exec_type_of(report: dict[str, Any], traded: bool, otherwise: str) -> str:
    if traded:
        return "trade"
    status = report["ord_status"]
    if status in ("canceled", "expired"):
        return status
    return otherwise


async def place_order(call: Call) -> Reply:
    api = call.api
    request: schemas.PlaceOrderRequest = call.body
    participant = call.caller.participant_id
    instrument = queries.instrument_of(api.exchange, request.symbol)
    price = None if request.price is None else instrument.parse_price(request.price)
    command = PlaceOrder(
        participant, request.client_order_id, request.symbol, request.side,
        request.order_type, price, parse_quantity(request.qty), request.time_in_force,
        request.post_only, request.self_trade,
    )  # fmt: skip
    repeated = (participant, request.client_order_id) in api.exchange.client_orders
    report = await api.venue.submit(command)
    (api.orders_repeated if repeated else api.orders_accepted).inc()
    api.metrics.order_seconds.observe(time.perf_counter() - call.started)
    if repeated:
        return Reply(200, _order_view(call, report, "order_status"))
    exec_type = _exec_type_of(report, bool(report["trade_ids"]), "new")
    return Reply(201, _order_view(call, report, exec_type))


async def list_orders(call: Call) -> schemas.OrderList:
    api = call.api
    query: schemas.OrdersQuery = call.query
    if query.participant is None and AUDIT in call.caller.scopes:
        participant = None  # an auditor naming no participant: everyone's
    else:
        participant = _subject(call, query.participant)
    orders, cursor = queries.list_orders(
        api.exchange, api.order_index, participant, status=query.status, symbol=query.symbol,
        side=query.side, after=_cursor_int(query.cursor), limit=query.limit,
    )  # fmt: skip
    return schemas.OrderList(
        orders=[_order_view(call, api.exchange.order_report(o), "order_status") for o in orders],
        next_cursor=None if cursor is None else str(cursor),
    )


async def get_order(call: Call) -> schemas.OrderReport:
    exchange = call.api.exchange
    order = queries.order_of(exchange, _reader(call), _order_id(call.path("order_id")))
    return _order_view(call, exchange.order_report(order), "order_status")


async def get_order_by_client_id(call: Call) -> schemas.OrderReport:
    exchange = call.api.exchange
    order = queries.order_by_client_id(
        exchange, call.caller.participant_id, call.path("client_order_id")
    )
    return _order_view(call, exchange.order_report(order), "order_status")


async def cancel_order(call: Call) -> schemas.OrderReport:
    order_id = _order_id(call.path("order_id"))
    report = await call.api.venue.submit(CancelOrder(call.caller.participant_id, order_id))
    return _order_view(call, report, _exec_type_of(report, False, "canceled"))


async def replace_order(call: Call) -> schemas.OrderReport:
    api = call.api
    request: schemas.ReplaceOrderRequest = call.body
    order_id = _order_id(call.path("order_id"))
    if request.price is None and request.qty is None:
        raise VenueError(ErrorCode.NO_CHANGE, "give a new price, a new qty or both")
    order = queries.order_of(api.exchange, call.caller.participant_id, order_id)
    instrument = api.exchange.instruments[order.symbol]
    price = None if request.price is None else instrument.parse_price(request.price)
    qty = None if request.qty is None else parse_quantity(request.qty)
    fills_before = len(order.fills)
    report = await api.venue.submit(ReplaceOrder(call.caller.participant_id, order_id, price, qty))
    traded = len(report["trade_ids"]) > fills_before
    return _order_view(call, report, _exec_type_of(report, traded, "replaced"))


async def cancel_all(call: Call) -> schemas.CancelAllResult:
    request: schemas.CancelAllRequest = call.body
    result = await call.api.venue.submit(CancelAll(call.caller.participant_id, request.symbol))
    return schemas.CancelAllResult(canceled=result["canceled"])


# ======================================================================== fills, accounts
async def list_fills(call: Call) -> schemas.ExecutionList:
    api = call.api
    query: schemas.FillsQuery = call.query
    participant = _subject(call, query.participant)
    pairs, cursor = queries.participant_trades(
        api.exchange, api.order_index, participant, symbol=query.symbol,
        order_id=query.order_id, after=query.cursor or "", limit=query.limit,
    )  # fmt: skip
    instruments = api.exchange.instruments
    return schemas.ExecutionList(
        fills=[
            views.execution(
                api.fills.get(trade_id),
                order.order_id,
                order.client_order_id,
                instruments[order.symbol],
            )
            for trade_id, order in pairs
        ],
        next_cursor=cursor,
    )


async def get_accounts(call: Call) -> schemas.AccountView:
    exchange = call.api.exchange
    participant = _subject(call, call.query.participant)
    return schemas.AccountView(
        participant=participant,
        balances=[
            schemas.Balance(
                asset=asset,
                balance=views.asset_amount(asset, balance),
                reserved=views.asset_amount(asset, reserved),
                available=views.asset_amount(asset, balance - reserved),
            )
            for asset, balance, reserved in queries.account_balances(exchange, participant)
        ],
        reservations=[
            schemas.Reservation(
                order_id=order_id, asset=asset, amount=views.asset_amount(asset, amount)
            )
            for order_id, asset, amount in queries.account_reservations(exchange, participant)
        ],
    )


async def get_receipt(call: Call) -> schemas.Receipt:
    api = call.api
    trade_id = _trade_id(call.path("trade_id"))
    payload = api.fills.get(trade_id)
    own = call.caller.participant_id
    if own not in (payload["buyer"], payload["seller"]) and AUDIT not in call.caller.scopes:
        raise VenueError(ErrorCode.FORBIDDEN, "a receipt is for the fill's buyer and seller")
    receipt = await asyncio.to_thread(api.venue.ledger.receipt, trade_id)
    return msgspec.convert(receipt, schemas.Receipt)


# ======================================================================== keys
def _key_summaries(exchange: Any, participant_id: str) -> list[schemas.KeySummary]:
    return [
        schemas.KeySummary(key_id=key_id, key_type=credential_kind(credential))
        for key_id, (owner, credential) in sorted(exchange.credentials.items())
        if owner == participant_id
    ]


async def register_key(call: Call) -> schemas.ApiKeyView:
    request: schemas.RegisterKeyRequest = call.body
    issued = await call.api.venue.issue_key(call.caller.participant_id, request.public_key)
    return schemas.ApiKeyView(**issued)


async def list_keys(call: Call) -> schemas.KeyList:
    own = call.caller.participant_id
    return schemas.KeyList(participant_id=own, keys=_key_summaries(call.api.exchange, own))


async def revoke_own_key(call: Call) -> schemas.RevokedKey:
    result = await call.api.venue.revoke_key(call.caller.participant_id, call.path("key_id"))
    return schemas.RevokedKey(**result)


# ======================================================================== operator
async def admin_list_instrument(call: Call) -> schemas.InstrumentView:
    wire = msgspec.structs.asdict(call.body)
    listed = await call.api.venue.submit(ListInstrument(wire))
    instrument = call.api.exchange.instruments[listed["symbol"]]
    return views.instrument_view(instrument, call.api.factors.of(instrument.symbol))


async def admin_participants(call: Call) -> schemas.ParticipantList:
    exchange = call.api.exchange
    return schemas.ParticipantList(
        participants=[
            schemas.ParticipantView(
                **participant.to_wire(), keys=_key_summaries(exchange, participant_id)
            )
            for participant_id, participant in sorted(exchange.participants.items())
        ]
    )


async def admin_admit(call: Call) -> schemas.AdmittedView:
    request: schemas.AdmitRequest = call.body
    admitted = await call.api.venue.admit(
        request.participant_id, request.name, request.segment, request.role, request.public_key
    )
    return msgspec.convert(admitted, schemas.AdmittedView)


async def admin_issue_key(call: Call) -> schemas.ApiKeyView:
    request: schemas.IssueKeyRequest = call.body
    participant_id = call.path("participant_id")
    _participant(call, participant_id)
    issued = await call.api.venue.issue_key(participant_id, request.public_key)
    return schemas.ApiKeyView(**issued)


async def admin_revoke_key(call: Call) -> schemas.RevokedKey:
    key_id = call.path("key_id")
    entry = call.api.exchange.credentials.get(key_id)
    if entry is None:
        raise VenueError(ErrorCode.UNKNOWN_KEY_ID, "no such api key", key_id=key_id)
    result = await call.api.venue.revoke_key(entry[0], key_id)
    return schemas.RevokedKey(**result)


def _transfer_amount(call: Call, request: schemas.TransferRequest) -> int:
    if request.asset == "CNY":
        return parse_cny(request.amount)
    queries.instrument_of(call.api.exchange, request.asset)
    return parse_quantity(request.amount, field="amount")


async def _transfer(call: Call, command_type: type) -> schemas.TransferView:
    request: schemas.TransferRequest = call.body
    amount = _transfer_amount(call, request)
    result = await call.api.venue.submit(command_type(request.participant, request.asset, amount))
    return schemas.TransferView(
        participant=result["account"],
        asset=result["asset"],
        amount=views.asset_amount(result["asset"], result["amount"]),
        balance=views.asset_amount(result["asset"], result["balance"]),
        kind=result["kind"],
    )


async def admin_deposit(call: Call) -> schemas.TransferView:
    return await _transfer(call, Deposit)


async def admin_withdraw(call: Call) -> schemas.TransferView:
    return await _transfer(call, Withdraw)


async def _set_status(call: Call, status: str) -> schemas.InstrumentView:
    symbol = call.path("symbol")
    queries.instrument_of(call.api.exchange, symbol)
    await call.api.venue.submit(SetTradingStatus(symbol, status))
    return views.instrument_view(call.api.exchange.instruments[symbol], call.api.factors.of(symbol))


async def admin_halt(call: Call) -> schemas.InstrumentView:
    return await _set_status(call, "halted")


async def admin_resume(call: Call) -> schemas.InstrumentView:
    return await _set_status(call, "open")


async def admin_factor(call: Call) -> schemas.InstrumentView:
    symbol = call.path("symbol")
    queries.instrument_of(call.api.exchange, symbol)
    factor = parse_scaled(
        call.body.pool_factor, places=6, field="pool_factor", code=ErrorCode.BAD_FACTOR,
        max_abs=1_000_000,
    )  # fmt: skip
    await call.api.venue.submit(UpdateFactor(symbol, factor))
    return views.instrument_view(call.api.exchange.instruments[symbol], call.api.factors.of(symbol))


# ======================================================================== the table
E = ErrorCode
_SYMBOL_PARAM = {"symbol": {"type": "string", "maxLength": 32, "examples": ["IPABS-2025-1-A"]}}
_ORDER_PARAM = {"order_id": {"type": "integer", "minimum": 1}}
_ORDER_ERRORS = (E.UNKNOWN_ORDER, E.NOT_ORDER_OWNER)
_PRICE_ERRORS = (
    E.BAD_PRICE, E.PRICE_OFF_TICK, E.PRICE_OUT_OF_BAND, E.ABSURD_VALUE, E.BAD_QUANTITY,
    E.QTY_BELOW_MIN, E.QTY_OFF_INCREMENT, E.INSUFFICIENT_CASH, E.INSUFFICIENT_UNITS,
    E.POST_ONLY_WOULD_CROSS, E.INSTRUMENT_HALTED, E.COUPON_ROLL_REQUIRED, E.INSTRUMENT_MATURED,
    E.INSTRUMENT_NOT_STARTED, E.PARTICIPANT_CANNOT_TRADE,
)  # fmt: skip
_ADMIN_INSTRUMENT = (E.UNKNOWN_INSTRUMENT, E.BAD_FACTOR, E.BAD_SYMBOL)

# fmt: off
ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", get_health, "Liveness, engine, ledger and journal counts", "ops"),
    Route("GET", "/metrics", get_metrics, "Prometheus metrics (text format)", "ops",
          response_type=METRICS_CONTENT_TYPE),
    Route("GET", "/v1/openapi.json", get_openapi, "This document", "public"),
    Route("GET", "/v1/time", get_time, "The venue's clock", "public", response=schemas.TimeView),
    Route("GET", "/v1/instruments", list_instruments, "Every listed instrument", "public",
          response=schemas.InstrumentList),
    Route("GET", "/v1/instruments/{symbol}", get_instrument, "One instrument's reference data",
          "public", response=schemas.InstrumentView, errors=(E.UNKNOWN_INSTRUMENT,),
          path_params=_SYMBOL_PARAM),
    Route("GET", "/v1/instruments/{symbol}/book", get_book, "Aggregated book depth", "public",
          query=schemas.BookQuery, response=schemas.BookView, errors=(E.UNKNOWN_INSTRUMENT,),
          path_params=_SYMBOL_PARAM),
    Route("GET", "/v1/instruments/{symbol}/trades", get_trades, "Recent public trades",
          "public", query=schemas.TradesQuery, response=schemas.TradeList,
          errors=(E.UNKNOWN_INSTRUMENT,), path_params=_SYMBOL_PARAM),
    Route("GET", "/v1/ledger/checkpoint", get_checkpoint,
          "The newest signed checkpoint (C2SP signed note)", "ledger", response_type=TEXT),
    Route("GET", "/v1/ledger/consistency", get_consistency,
          "Consistency proof between two tree sizes", "ledger", query=schemas.ConsistencyQuery,
          response=schemas.ConsistencyView, errors=(E.BAD_TREE_SIZE,)),
    Route("GET", "/v1/ledger/public-key", get_public_key, "The ledger's signing key", "ledger",
          response=schemas.PublicKeyView),
    Route("POST", "/v1/orders", place_order, "Place an order (idempotent per client_order_id)",
          "orders", scope=TRADE, body=schemas.PlaceOrderRequest, response=schemas.OrderReport,
          status=201, errors=(E.UNKNOWN_INSTRUMENT, E.DUPLICATE_CLIENT_ORDER_ID, *_PRICE_ERRORS)),
    Route("GET", "/v1/orders", list_orders, "List orders (open by default), paginated", "orders",
          scope=READ, query=schemas.OrdersQuery, response=schemas.OrderList,
          errors=(E.FORBIDDEN, E.UNKNOWN_PARTICIPANT)),
    Route("POST", "/v1/orders/cancel-all", cancel_all, "Cancel all open orders (or one symbol's)",
          "orders", scope=TRADE, body=schemas.CancelAllRequest, body_optional=True,
          response=schemas.CancelAllResult, errors=(E.UNKNOWN_INSTRUMENT,)),
    Route("GET", "/v1/orders/by-client-id/{client_order_id}", get_order_by_client_id,
          "An order by its client_order_id", "orders", scope=READ, response=schemas.OrderReport,
          errors=_ORDER_ERRORS, path_params={"client_order_id": {"type": "string"}}),
    Route("GET", "/v1/orders/{order_id}", get_order, "An order by id", "orders", scope=READ,
          response=schemas.OrderReport, errors=_ORDER_ERRORS, path_params=_ORDER_PARAM),
    Route("DELETE", "/v1/orders/{order_id}", cancel_order, "Cancel an order", "orders",
          scope=TRADE, response=schemas.OrderReport, errors=_ORDER_ERRORS,
          path_params=_ORDER_PARAM),
    Route("PATCH", "/v1/orders/{order_id}", replace_order,
          "Replace price and/or remaining quantity", "orders", scope=TRADE,
          body=schemas.ReplaceOrderRequest, response=schemas.OrderReport,
          errors=(*_ORDER_ERRORS, E.NO_CHANGE, *_PRICE_ERRORS), path_params=_ORDER_PARAM),
    Route("GET", "/v1/fills", list_fills, "Own fills (execution reports), paginated", "fills",
          scope=READ, query=schemas.FillsQuery, response=schemas.ExecutionList,
          errors=(E.FORBIDDEN, E.UNKNOWN_PARTICIPANT, *_ORDER_ERRORS)),
    Route("GET", "/v1/fills/{trade_id}/receipt", get_receipt,
          "An offline-verifiable receipt for an own fill", "fills", scope=READ,
          response=schemas.Receipt, errors=(E.NO_SUCH_TRADE, E.FORBIDDEN),
          path_params={"trade_id": {"type": "string", "pattern": "^T[0-9]{12}$"}}),
    Route("GET", "/v1/accounts", get_accounts, "Balances and reservations", "accounts",
          scope=READ, query=schemas.AccountsQuery, response=schemas.AccountView,
          errors=(E.FORBIDDEN, E.UNKNOWN_PARTICIPANT)),
    Route("GET", "/v1/keys", list_keys, "Own API keys", "keys", scope=READ,
          response=schemas.KeyList),
    Route("POST", "/v1/keys", register_key, "Register an Ed25519 public key as a new API key",
          "keys", scope=TRADE, body=schemas.RegisterKeyRequest, response=schemas.ApiKeyView,
          status=201, errors=(E.BAD_PUBLIC_KEY,)),
    Route("DELETE", "/v1/keys/{key_id}", revoke_own_key, "Revoke an own API key", "keys",
          scope=TRADE, response=schemas.RevokedKey, errors=(E.UNKNOWN_KEY_ID,),
          path_params={"key_id": {"type": "string"}}),
    Route("POST", "/v1/admin/instruments", admin_list_instrument, "List an instrument", "admin",
          scope=ADMIN, body=schemas.ListInstrumentRequest, response=schemas.InstrumentView,
          status=201, errors=(
              E.INSTRUMENT_EXISTS, E.BAD_REFERENCE_DATA, E.BAD_DATE, E.BAD_RATE, E.BAD_PRICE,
              E.PRICE_OFF_TICK, E.BAD_QUANTITY, E.BAD_ISIN, E.ABSURD_VALUE, *_ADMIN_INSTRUMENT,
          )),
    Route("GET", "/v1/admin/participants", admin_participants, "Participants and their keys",
          "admin", scope=ADMIN, response=schemas.ParticipantList),
    Route("POST", "/v1/admin/participants", admin_admit,
          "Admit a participant and issue its first key", "admin", scope=ADMIN,
          body=schemas.AdmitRequest, response=schemas.AdmittedView, status=201,
          errors=(E.PARTICIPANT_EXISTS, E.BAD_PARTICIPANT, E.BAD_PUBLIC_KEY)),
    Route("POST", "/v1/admin/participants/{participant_id}/keys", admin_issue_key,
          "Issue a participant one more key (rotation: then revoke the old)", "admin",
          scope=ADMIN, body=schemas.IssueKeyRequest, body_optional=True,
          response=schemas.ApiKeyView, status=201,
          errors=(E.UNKNOWN_PARTICIPANT, E.BAD_PUBLIC_KEY),
          path_params={"participant_id": {"type": "string"}}),
    Route("DELETE", "/v1/admin/keys/{key_id}", admin_revoke_key, "Revoke any API key", "admin",
          scope=ADMIN, response=schemas.RevokedKey, errors=(E.UNKNOWN_KEY_ID,),
          path_params={"key_id": {"type": "string"}}),
    Route("POST", "/v1/admin/deposits", admin_deposit, "Deposit cash or units", "admin",
          scope=ADMIN, body=schemas.TransferRequest, response=schemas.TransferView, status=201,
          errors=(E.UNKNOWN_PARTICIPANT, E.UNKNOWN_INSTRUMENT, E.BAD_AMOUNT, E.BAD_QUANTITY,
                  E.ABSURD_VALUE)),
    Route("POST", "/v1/admin/withdrawals", admin_withdraw, "Withdraw cash or units", "admin",
          scope=ADMIN, body=schemas.TransferRequest, response=schemas.TransferView, status=201,
          errors=(E.UNKNOWN_PARTICIPANT, E.UNKNOWN_INSTRUMENT, E.BAD_AMOUNT, E.BAD_QUANTITY,
                  E.ABSURD_VALUE, E.INSUFFICIENT_CASH, E.INSUFFICIENT_UNITS)),
    Route("POST", "/v1/admin/instruments/{symbol}/halt", admin_halt, "Halt trading", "admin",
          scope=ADMIN, response=schemas.InstrumentView, errors=(E.UNKNOWN_INSTRUMENT,),
          path_params=_SYMBOL_PARAM),
    Route("POST", "/v1/admin/instruments/{symbol}/resume", admin_resume, "Resume trading",
          "admin", scope=ADMIN, response=schemas.InstrumentView,
          errors=(E.UNKNOWN_INSTRUMENT,), path_params=_SYMBOL_PARAM),
    Route("POST", "/v1/admin/instruments/{symbol}/factor", admin_factor,
          "Publish a new pool factor", "admin", scope=ADMIN, body=schemas.FactorRequest,
          response=schemas.InstrumentView, errors=(*_ADMIN_INSTRUMENT, E.FACTOR_FROM_WATERFALL),
          path_params=_SYMBOL_PARAM),
)
# fmt: on
