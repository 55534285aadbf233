"""The venue's HTTP server (aiohttp). For now it serves ``GET /healthz``; the trading APIs mount
on the same application.

HTTP lives only here: the venue core never sees a request or a status code.
"""

from __future__ import annotations

import logging

from aiohttp import web

from venue.config import Config
from venue.service import Venue

log = logging.getLogger(__name__)

VENUE_KEY = web.AppKey("venue", Venue)


async def healthz(request: web.Request) -> web.Response:
    """Liveness and the basics an operator checks first: engine, ledger blocks, journal commands
    (see ``Venue.health``)."""
    venue = request.app[VENUE_KEY]
    health = venue.health()
    return web.json_response(health, status=200 if health["status"] == "ok" else 503)


def create_app(config: Config) -> web.Application:
    """The application; the venue opens on startup and closes (drained, snapshotted) on cleanup."""
    app = web.Application()
    app.router.add_get("/healthz", healthz)

    async def venue_context(app: web.Application):
        venue = await Venue.open(config)
        app[VENUE_KEY] = venue
        log.info("venue ready", extra={"host": config.host, "port": config.port, **venue.health()})
        try:
            yield
        finally:
            await venue.close()
            log.info("venue stopped cleanly")

    app.cleanup_ctx.append(venue_context)
    return app
