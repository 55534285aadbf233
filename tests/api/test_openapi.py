"""The OpenAPI document is true: every route is documented and every documented operation
exists, every error code has a status, the response checker the other tests rely on does
refuse a wrong answer, and a bounded schemathesis run (signed requests, as a broker) finds no
server error and no answer the document does not describe."""

from __future__ import annotations

import json
import time
import urllib.request

import msgspec
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from tests.api.harness import DocumentChecker
from venue.api.errors import status_of
from venue.api.openapi import build_document
from venue.api.rest import ROUTES
from venue.api.server import create_app
from venue.api.ws import WS_PATH
from venue.config import Config
from venue.domain.participants import sign_request
from venue.errors import ErrorCode


def served_document(server) -> dict:
    with urllib.request.urlopen(server.base_url + "/v1/openapi.json", timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("application/json")
        return json.load(reply)


def test_every_route_is_documented_and_every_documented_route_exists(server, tmp_path):
    document = served_document(server)
    assert document["openapi"] == "3.1.0"
    documented = {
        (method.upper(), path) for path, methods in document["paths"].items() for method in methods
    }
    app = create_app(Config(data_dir=tmp_path))  # the routes are registered when it is built
    registered = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource.canonical != WS_PATH  # docs/WEBSOCKET.md
    }
    assert registered == documented
    assert len(documented) == len(ROUTES)


def test_the_document_is_generated_from_the_handlers_structs():
    document = build_document(ROUTES)
    place = document["paths"]["/v1/orders"]["post"]
    schema = document["components"]["schemas"]["PlaceOrderRequest"]
    assert place["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/PlaceOrderRequest"
    )
    assert set(schema["required"]) == {"client_order_id", "symbol", "side", "qty"}
    assert schema["additionalProperties"] is False
    assert {"201", "200", "401", "403", "404", "409", "422", "429"} <= set(place["responses"])


def test_every_error_code_has_a_status():
    statuses = {code: status_of(code) for code in ErrorCode}
    assert all(400 <= status < 600 for status in statuses.values())
    assert statuses[ErrorCode.RATE_LIMITED] == 429
    assert statuses[ErrorCode.INTERNAL_ERROR] == 500


def test_the_response_checker_refuses_what_the_document_does_not_promise(server):
    checker = DocumentChecker(served_document(server))
    good = json.dumps({"time": "2026-11-26T02:00:00.000Z", "epoch_ms": 1}).encode()
    assert checker.problems_with("GET", "/v1/time", 200, "application/json", good) == []
    assert checker.problems_with("GET", "/v1/time", 200, "application/json", b'{"time": 1}')
    assert checker.problems_with("GET", "/v1/time", 418, "application/json", good)
    assert checker.problems_with("GET", "/v1/time", 200, "text/plain", good)
    assert checker.problems_with("GET", "/v1/unknown", 404, "application/json", good)


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 12


def _send_signed(case, server, session: requests.Session) -> requests.Response:
    """Send a generated case signed with a demo broker's key (the operator's for the admin
    endpoints), so the handlers behind authentication are exercised too."""
    participant = "P-OPS1" if case.operation.path.startswith("/v1/admin") else "P-BRK2"
    entry = server.credentials[participant]
    kwargs = case.as_transport_kwargs(base_url=server.base_url)
    body = b""
    if "json" in kwargs:
        body = json.dumps(kwargs.pop("json")).encode()
    elif kwargs.get("data") is not None:
        data = kwargs.pop("data")
        body = data if isinstance(data, bytes) else str(data).encode()
    headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if v is not None}
    if body and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    prepared = requests.Request(
        kwargs["method"], kwargs["url"], params=kwargs.get("params"), data=body, headers=headers
    ).prepare()
    timestamp = str(time.time_ns() // 1_000_000)
    prepared.headers["VENUE-KEY"] = entry["key_id"]
    prepared.headers["VENUE-TIMESTAMP"] = timestamp
    prepared.headers["VENUE-SIGNATURE"] = sign_request(
        entry["secret"], timestamp, prepared.method, prepared.path_url, body
    )
    return session.send(prepared, timeout=30)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(server, mode):
    """A bounded run: every operation, a fixed number of generated requests each (valid ones,
    then ones that break the schema on purpose), derandomised so a run is repeatable."""
    schema = schemathesis.openapi.from_url(server.base_url + "/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    # (schemathesis leaves out the document's own path)
    assert labels == {f"{r.method} {r.path}" for r in ROUTES} - {"GET /v1/openapi.json"}
    with requests.Session() as session:
        for operation in operations:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case):
                case.validate_response(_send_signed(case, server, session), checks=CHECKS)

            try:
                check()
            except Unsatisfiable:
                # Nothing to break in an operation without inputs: no negative case exists.
                route = next(r for r in ROUTES if f"{r.method} {r.path}" == operation.label)
                inputs = route.path_params or msgspec.structs.fields(route.query) or route.body
                if mode is not GenerationMode.NEGATIVE or inputs:
                    raise
