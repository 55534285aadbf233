"""The API tests' harness: a real venue and its HTTP server on 127.0.0.1, driven with the SDK.

:class:`ServerThread` opens a venue in a fresh data directory (demo seeded) and serves
``venue.api.server.create_app`` on an ephemeral loopback port, in a thread of its own with its
own event loop, as ``venue serve`` does in its process; tests talk to it over real sockets with
:class:`RecordingClient` (the SDK, recording every answer it sees), from their own event loops.

:class:`DocumentChecker` validates recorded answers against the served OpenAPI document: the
schema of the operation and status (problem documents included), so every response the tests
see is checked against what the document promises.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from pathlib import Path
from typing import Any

import jsonschema_rs
from aiohttp import web

from tests.venue.core.helpers import venue_config
from venue.api.server import VENUE_KEY, create_app
from venue.client import VenueClient


class ServerThread:
    """A venue and its HTTP server in a background thread (``start``/``stop``)."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.port = 0

    def start(self) -> ServerThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=120)
        return self

    async def _start(self) -> None:
        config = venue_config(self.data_dir, **self.settings)
        self.app = create_app(config)
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def call(self, function, *args):
        """Run ``function(*args)`` on the server's loop (to read the venue's state between
        requests without racing the sequencer); its result."""

        async def run():
            return function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def run(self, coroutine):
        """Run ``coroutine`` on the server's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    @property
    def venue(self):
        return self.app[VENUE_KEY]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> dict[str, dict[str, Any]]:
        document = json.loads((self.data_dir / "credentials.json").read_text())
        return {entry["participant_id"]: entry for entry in document["participants"]}


class RecordingClient(VenueClient):
    """The SDK, keeping ``(method, target, status, content type, body)`` of every answer."""

    def __init__(self, *args: Any, recorded: list, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded = recorded

    async def send(self, method, target, body, headers):
        status, reply_headers, content = await super().send(method, target, body, headers)
        self.recorded.append((method, target, status, reply_headers.get("Content-Type"), content))
        return status, reply_headers, content


class DocumentChecker:
    """Checks answers against an OpenAPI document: status documented, body valid."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.operations = []
        for template, methods in document["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
            for method, operation in methods.items():
                self.operations.append((pattern, method.upper(), operation))
        components = document["components"]
        self._problem = jsonschema_rs.validator_for(
            {"$ref": "#/components/schemas/Problem", "components": components}
        )

    def problems_with(self, method: str, target: str, status: int, content_type, body: bytes):
        """What is wrong with one answer (an empty list: nothing)."""
        path = target.split("?", 1)[0]
        operation = next(
            (op for pattern, m, op in self.operations if m == method and pattern.match(path)),
            None,
        )
        media = (content_type or "").split(";")[0]
        if operation is None:  # no such operation: must be a problem document (404/405)
            if media != "application/problem+json" or not self._problem.is_valid(json.loads(body)):
                return [f"{method} {target}: {status} is not a problem document"]
            return []
        response = operation["responses"].get(str(status))
        if response is None:
            return [f"{method} {target}: status {status} is not documented"]
        content = response.get("content", {})
        if media not in content:
            return [f"{method} {target}: {status} answered {media}, not {sorted(content)}"]
        schema = content[media]["schema"]
        if media.endswith("json"):
            validator = jsonschema_rs.validator_for(
                {**schema, "components": self.document["components"]}
            )
            errors = [str(error) for error in validator.iter_errors(json.loads(body))]
            return [f"{method} {target} {status}: {error}" for error in errors[:3]]
        return []
