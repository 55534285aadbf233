"""The OpenAPI 3.1 document, generated from ``venue.api.rest.ROUTES`` and the msgspec structs
each route decodes and encodes (``msgspec.json.schema_components``): the document describes
what the server does because both come from the same definitions.

For each route: its path parameters, its query parameters (one per field of its query struct,
required when the field has no default), its request body, its success response, and one
problem response per status its refusals can take, naming the codes (``venue.api.errors``'
table). Every operation also documents the refusals any request can meet: a malformed query
(400), a body too large or of the wrong type (413, 415), an unavailable venue (503), an
internal fault (500); a signed one adds 401, 403 and 429 (with ``Retry-After``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from venue.api import schemas
from venue.api.errors import PROBLEM_CONTENT_TYPE, status_of
from venue.api.rest import JSON, Route
from venue.errors import ErrorCode

REF = "#/components/schemas/{name}"
E = ErrorCode
ALWAYS = (E.BAD_PARAMETER, E.UNKNOWN_FIELD, E.VENUE_UNAVAILABLE, E.INTERNAL_ERROR)
WITH_BODY = (E.MALFORMED_JSON, E.BODY_TOO_LARGE, E.UNSUPPORTED_MEDIA_TYPE)
SIGNED = (
    E.MISSING_CREDENTIALS, E.STALE_TIMESTAMP, E.UNKNOWN_API_KEY, E.BAD_SIGNATURE,
    E.REPLAYED_REQUEST, E.INSUFFICIENT_SCOPE, E.RATE_LIMITED,
)  # fmt: skip
# The fields of a body whose wrong form is reported under a field-specific code
# (venue.api.errors.FIELD_CODES) rather than validation.bad_parameter.
FIELD_REFUSALS = (
    E.BAD_PRICE, E.BAD_QUANTITY, E.BAD_SIDE, E.BAD_SYMBOL, E.BAD_AMOUNT, E.BAD_FACTOR,
    E.BAD_PARTICIPANT, E.BAD_ISIN, E.BAD_PUBLIC_KEY, E.BAD_DATE,
)  # fmt: skip
SECURITY_SCHEMES = {
    "key": {"type": "apiKey", "in": "header", "name": "VENUE-KEY"},
    "timestamp": {"type": "apiKey", "in": "header", "name": "VENUE-TIMESTAMP"},
    "signature": {"type": "apiKey", "in": "header", "name": "VENUE-SIGNATURE"},
}
DESCRIPTION = """ABS Venue's REST API for brokers and operators (docs/API.md).

Every price, quantity and amount is a decimal string; times are RFC 3339 UTC. Signed endpoints
need three headers: VENUE-KEY (the key id), VENUE-TIMESTAMP (Unix milliseconds, within the clock
window) and VENUE-SIGNATURE: lowercase hex of HMAC-SHA256(secret, message) for an HMAC key, or
of the Ed25519 signature of the message for a registered public key, where message =
timestamp + "\\n" + METHOD + "\\n" + path?query + "\\n" + hex(sha256(body)). Refusals are RFC 9457
problem documents (application/problem+json) with a stable `code`."""


def _query_parameters(
    query: type, components: dict[str, Any], schema_of: dict[type, Any]
) -> list[dict]:
    parameters = []
    for info in msgspec.structs.fields(query):
        schema = dict(schema_of[query]["properties"][info.encode_name])
        schema.pop("default", None)
        # A query value is text: a nullable field is simply left out.
        if "anyOf" in schema:
            options = [s for s in schema["anyOf"] if s.get("type") != "null"]
            schema = options[0] if len(options) == 1 else {"anyOf": options}
        parameter = {
            "name": info.encode_name,
            "in": "query",
            "required": info.required,
            "schema": schema,
        }
        parameters.append(parameter)
    return parameters


def _problem_responses(route: Route) -> dict[str, Any]:
    codes = list(route.errors) + list(ALWAYS)
    if route.body is not None:
        codes += [*WITH_BODY, *FIELD_REFUSALS]
    if route.scope is not None:
        codes += [*SIGNED, E.FORBIDDEN]
    if route.path_params:
        codes.append(E.UNKNOWN_ROUTE)
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(status_of(code), []).append(code.value)
    responses = {}
    for status, names in sorted(by_status.items()):
        response: dict[str, Any] = {
            "description": "Refused: " + ", ".join(names),
            "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": REF.format(name="Problem")}}},
        }
        if status == 429:
            response["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "required": True},
                "RateLimit": {"schema": {"type": "string"}},
                "RateLimit-Policy": {"schema": {"type": "string"}},
            }
        responses[str(status)] = response
    return responses


def build_document(routes: tuple[Route, ...], title: str = "ABS Venue") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    types: list[type] = [schemas.Problem]
    for route in routes:
        for kind in (route.query, route.body, route.response):
            if kind is not None and kind not in types:
                types.append(kind)
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    # The full (inlined) schema of each query struct, to spread over its parameters.
    query_types = [kind for kind in types if issubclass(kind, schemas.Request)]
    schema_of = {
        kind: components[ref["$ref"].rsplit("/", 1)[1]]
        for kind, ref in zip(types, refs, strict=True)
        if kind in query_types
    }
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": route.summary,
            "tags": [route.tag],
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": schema}
            for name, schema in route.path_params.items()
        ]
        parameters += _query_parameters(route.query, components, schema_of)
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {
                "required": not route.body_optional,
                "content": {JSON: {"schema": {"$ref": REF.format(name=route.body.__name__)}}},
            }
        if route.response is not None:
            content = {JSON: {"schema": {"$ref": REF.format(name=route.response.__name__)}}}
        elif route.response_type == JSON:  # a JSON document described elsewhere
            content = {JSON: {"schema": {"type": "object"}}}
        else:
            content = {route.response_type.split(";")[0]: {"schema": {"type": "string"}}}
        responses: dict[str, Any] = {str(route.status): {"description": "OK", "content": content}}
        if route.status == 201:  # a retried order placement answers the original order
            responses["200"] = {"description": "The original (a retry)", "content": content}
        if route.path == "/healthz":
            responses["503"] = {"description": "The venue has failed", "content": content}
        responses.update(_problem_responses(route))
        operation["responses"] = responses
        if route.scope is not None:
            operation["security"] = [{"key": [], "timestamp": [], "signature": []}]
            operation["description"] = f"Needs the `{route.scope.value}` scope."
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1", "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }
