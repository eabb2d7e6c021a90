"""The OpenAPI 3.1 document, generated from the route table and the shared schemas.

Generated rather than hand-written so it cannot fall behind the server: a route exists
in the document exactly when the app registers it, and request schemas are the ones
the handlers validate with. Served at `/api/openapi.json`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from actors.api import schemas
from actors.api.routes import ROUTES, Route

_TEXT_PLAIN = {"text/plain": {"schema": {"type": "string"}}}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.operation, "summary": route.summary, "tags": [route.tag]}
    if route.params:
        op["parameters"] = [
            {"name": p.name, "in": p.location, "required": p.required, "description": p.description, "schema": copy.deepcopy(p.schema)}
            for p in route.params
        ]
    if route.body:
        op["requestBody"] = {"required": route.body_required, "content": {"application/json": {"schema": schemas.ref(route.body)}}}
    responses: dict[str, Any] = {}
    for status, (description, schema_name) in sorted(route.responses.items()):
        response: dict[str, Any] = {"description": description}
        if schema_name is not None:
            response["content"] = {"application/json": {"schema": schemas.ref(schema_name)}}
        elif route.content_type == "text/plain" and 200 <= status < 300:
            response["content"] = copy.deepcopy(_TEXT_PLAIN)
        elif 200 <= status < 300:
            response["content"] = {"application/json": {"schema": {"type": "object"}}}
        if status == 503:
            response["headers"] = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}}}
        if status == 202 and route.command is not None:
            response["headers"] = {
                "Location": {"description": "GET this for the command's outcome", "schema": {"type": "string"}},
                "Retry-After": {"description": "seconds until polling is worthwhile", "schema": {"type": "integer", "minimum": 1}},
            }
        responses[str(status)] = response
    responses.setdefault("400", {"description": "invalid input (e.g. an unknown query parameter); `field` names it", "content": {"application/json": {"schema": schemas.ref("Error")}}})
    responses.setdefault("404", {"description": "unknown route or item", "content": {"application/json": {"schema": schemas.ref("Error")}}})
    responses.setdefault("405", {"description": "method not allowed on this route", "content": {"application/json": {"schema": schemas.ref("Error")}}})
    op["responses"] = responses
    if route.protected:
        op["security"] = [{"bearerToken": []}]
    return op


def build_document(version: str, routes: Iterable[Route] = ROUTES) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `routes` (all of them by default)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "egw gateway API",
            "version": version,
            "description": "Status and control of an egw energy gateway. Status reads are open on the local network; "
                           "writes, and reads of personal data (transactions and reservations carry drivers' idTags) and of charger "
                           "secrets, need `Authorization: Bearer <token>` (print it with `egw token`). "
                           "Errors are JSON objects with `error`, `message` and, for bad input, `field`. "
                           "Charger commands (POST/GET /api/chargers/{id}/<command>) send one OCPP 1.6 central-system action and answer "
                           "its outcome in one mapping: 200 accepted, 409 the charger's non-accepting `status`, 502 a CALLERROR "
                           "(`ocpp_error_code`), 504 sent without an answer (not sent again), 503 never sent, 202 still pending after "
                           "the command timeout (poll GET /api/chargers/{id}/commands/{command_id}). A 503 or a 400 means the charger "
                           "never got the command; writes take an Idempotency-Key.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": copy.deepcopy(schemas.COMPONENTS),
            "securitySchemes": {"bearerToken": {"type": "http", "scheme": "bearer", "description": "the token in the data dir's api-token file"}},
        },
    }

