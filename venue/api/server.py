"""The venue's HTTP server (aiohttp): the REST API of ``venue/api/rest.py``, ``/healthz``,
``/metrics``, the OpenAPI document and the WebSocket API of ``venue/api/ws.py``
(``GET /v1/ws``), on one event loop with the venue itself.

HTTP lives only here and in the modules beside it: the venue core never sees a request or a
status code. The routes are registered when the application is built, from ``rest.ROUTES``;
their handlers exist once the venue has opened (on startup), so each registered route calls
through to its handler by index. Requests that match no route (404, 405) are answered by a
middleware with a problem document, as every other refusal.
"""

from __future__ import annotations

import logging

import msgspec
from aiohttp import web

from venue.api.metrics import ApiMetrics
from venue.api.openapi import build_document
from venue.api.rest import ROUTES, RestApi
from venue.api.ws import WS_PATH, WsGateway
from venue.config import Config
from venue.service import Venue

log = logging.getLogger(__name__)

VENUE_KEY = web.AppKey("venue", Venue)
API_KEY = web.AppKey("api", RestApi)
HANDLERS_KEY = web.AppKey("handlers", list)
WS_KEY = web.AppKey("ws", WsGateway)


def _route_handler(index: int):
    async def handler(request: web.Request) -> web.StreamResponse:
        return await request.app[HANDLERS_KEY][index](request)

    handler.__name__ = ROUTES[index].handler.__name__
    return handler


async def _websocket(request: web.Request) -> web.StreamResponse:
    return await request.app[WS_KEY].handle(request)


async def _close_websockets(app: web.Application) -> None:
    """On shutdown, before the venue closes: every WebSocket closed, cancel-on-disconnect
    done (a WebSocket handler would otherwise hold the shutdown until its timeout)."""
    gateway = app.get(WS_KEY)
    if gateway is not None:
        await gateway.shutdown()


@web.middleware
async def _unmatched(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return request.app[API_KEY].unmatched(request, error)


def create_app(config: Config) -> web.Application:
    """The application; the venue opens on startup and closes (drained, snapshotted) on cleanup."""
    app = web.Application(client_max_size=config.api_max_body_bytes, middlewares=[_unmatched])
    for index, route in enumerate(ROUTES):
        app.router.add_route(route.method, route.path, _route_handler(index))
    app.router.add_get(WS_PATH, _websocket, allow_head=False)
    app.on_shutdown.append(_close_websockets)
    document = msgspec.json.encode(build_document(ROUTES))

    async def venue_context(app: web.Application):
        venue = await Venue.open(config)
        metrics = ApiMetrics()
        metrics.watch(venue)
        api = RestApi(venue, metrics)
        api.openapi_document = document
        await api.start()
        gateway = WsGateway(api)
        await gateway.start()
        app[VENUE_KEY] = venue
        app[API_KEY] = api
        app[HANDLERS_KEY] = [api.endpoint(route) for route in ROUTES]
        app[WS_KEY] = gateway
        log.info("venue ready", extra={"host": config.host, "port": config.port, **venue.health()})
        try:
            yield
        finally:
            await venue.close()
            log.info("venue stopped cleanly")

    app.cleanup_ctx.append(venue_context)
    return app
