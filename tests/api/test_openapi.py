"""The OpenAPI document: valid OpenAPI 3.1, and it covers exactly what the server registers."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from actors.api.app import build_app
from actors.api.openapi import build_document
from actors.api.routes import ROUTES
from tests.api.conftest import MemoryBackend


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


async def test_served_document_covers_every_registered_route(client):
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    document = await response.json()
    registered = {(r.method, r.resource.canonical) for r in client.app.router.routes()}
    documented = {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}
    assert registered == documented
    assert len(registered) == len(ROUTES)


async def test_document_is_structurally_valid_openapi_31(client):
    document = await (await client.get("/api/openapi.json")).json()
    assert document["openapi"].startswith("3.1.")
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in document["components"]["schemas"], ref
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], (method, path)
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(part[1:-1] for part in path.split("/") if part.startswith("{")), (method, path)
            if operation.get("security"):
                assert "401" in operation["responses"]
    assert len({op["operationId"] for ops in document["paths"].values() for op in ops.values()}) == len(ROUTES)


def _served_document() -> dict:
    from actors.api.app import STATE_KEY

    return json.loads(build_app(MemoryBackend(), token=None)[STATE_KEY].document_bytes)


def test_document_passes_openapi_spec_validator():
    document = _served_document()
    assert validate(document) is None  # raises on the first violation
    assert len({op["operationId"] for ops in document["paths"].values() for op in ops.values()}) == len(ROUTES)  # all of it was checked


def _undeclared_path_parameter(document: dict) -> None:
    document["paths"]["/api/devices/{id}"]["get"]["parameters"] = []


def _duplicate_operation_id(document: dict) -> None:
    document["paths"]["/api/health"]["get"]["operationId"] = document["paths"]["/api/devices/{id}"]["get"]["operationId"]


def _wrong_parameter_location(document: dict) -> None:
    document["paths"]["/api/devices/{id}"]["get"]["parameters"][0]["in"] = "body"  # OpenAPI 2 style


@pytest.mark.parametrize("breakage", [_undeclared_path_parameter, _duplicate_operation_id, _wrong_parameter_location])
def test_the_validator_rejects_the_document_with_a_mistake_the_builder_could_make(breakage):
    """The check above passes because the document is right, not because the validator accepts anything."""
    document = _served_document()
    breakage(document)
    with pytest.raises(OpenAPIValidationError):
        validate(document)


def test_the_served_document_also_covers_the_live_feed_the_api_actor_mounts():
    """The API actor adds /api/live and /api/live/sse beside the route table; they are documented too."""
    from actors.api.app import STATE_KEY, add_documented_routes
    from actors.live.feed import attach_live_feed
    from actors.live.routes import LIVE_OPENAPI_PATHS

    app = build_app(MemoryBackend(), token="t0ken")
    attach_live_feed(app, "t0ken")
    add_documented_routes(app, LIVE_OPENAPI_PATHS)
    document = json.loads(app[STATE_KEY].document_bytes)
    registered = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    documented = {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}
    assert registered == documented
    assert {"/api/live", "/api/live/sse"} <= set(document["paths"])
    validate(document)


def test_every_charger_command_documents_one_outcome_mapping_and_writes_the_idempotency_key():
    from actors.api.app import CHARGER_COMMANDS

    document = build_document("test")
    commands = [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items() if op["operationId"] in CHARGER_COMMANDS]
    assert {op["operationId"] for _, _, op in commands} == set(CHARGER_COMMANDS)
    assert set(CHARGER_COMMANDS.values()) >= {"ClearCache", "UnlockConnector", "SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule",
                                              "SendLocalList", "GetLocalListVersion", "GetDiagnostics", "UpdateFirmware", "DataTransfer"}
    for path, method, op in commands:
        responses = op["responses"]
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/CommandResult"), path
        assert responses["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/CommandPending"), path
        assert "Location" in responses["202"]["headers"], path
        for status in ("409", "502", "503", "504"):
            assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("/CommandError"), (path, status)
        headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
        assert headers == ({"Idempotency-Key"} if method == "post" else set()), path
    error = document["components"]["schemas"]["CommandError"]["properties"]
    assert {"ocpp_error_code", "description", "status", "charger", "command", "command_id", "result"} <= set(error)
    poll = document["paths"]["/api/chargers/{id}/commands/{command_id}"]["get"]
    assert poll["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/CommandStatus")


def test_charger_id_parameters_take_every_id_the_ocpp_handshake_accepts():
    from storage.chargers import CHARGE_POINT_ID_PATTERN

    document = build_document("test")
    for path, operations in document["paths"].items():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if (path.startswith("/api/chargers/") and param["name"] == "id") or (path == "/api/transactions" and param["name"] == "charger"):
                    assert param["schema"]["pattern"] == CHARGE_POINT_ID_PATTERN, (path, param["name"])
                if path.startswith("/api/devices/") and param["name"] == "id":
                    assert param["schema"]["pattern"] != CHARGE_POINT_ID_PATTERN  # device ids keep their own rule
