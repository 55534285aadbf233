"""Fixtures: one venue served on 127.0.0.1 per test module, and SDK clients for its demo
participants; every answer any client saw is checked against the OpenAPI document when the
module is done."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from tests.api.harness import DocumentChecker, RecordingClient, ServerThread

# Generous limits: the tests exercise the limiter on purpose only where they say so.
SETTINGS = {"api_rate_limit_per_second": 100_000, "api_rate_limit_burst": 100_000}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    thread = ServerThread(tmp_path_factory.mktemp("venue") / "data", **SETTINGS).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def recorded(server):
    """Every answer the module's clients saw; checked against the document at the end."""
    answers: list = []
    yield answers
    with urllib.request.urlopen(server.base_url + "/v1/openapi.json", timeout=10) as reply:
        checker = DocumentChecker(json.load(reply))
    problems = [p for answer in answers for p in checker.problems_with(*answer)]
    assert not problems, "\n".join(problems[:20])


@pytest.fixture(scope="module")
def clients(server, recorded):
    """``clients(participant_id)``: an SDK client signing with that demo participant's
    HMAC key (or with ``key_id=`` and ``secret=``/``private_key=``); ``clients(None)``: an
    unsigned one."""

    def make(participant_id: str | None = None, **options) -> RecordingClient:
        if participant_id is None:
            return RecordingClient(server.base_url, recorded=recorded, **options)
        if "key_id" not in options:  # a demo participant's own key (and secret, unless given)
            entry = server.credentials[participant_id]
            options["key_id"] = entry["key_id"]
            options.setdefault("secret", entry["secret"])
        return RecordingClient(server.base_url, options.pop("key_id"), recorded=recorded, **options)

    return make


def run(coroutine):
    """Run one test's client code on a fresh event loop."""
    return asyncio.run(coroutine)
