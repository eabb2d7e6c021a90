"""Schemathesis against the served OpenAPI document: no 5xx, no answer the document does not allow.

The real app (`build_app`) over the in-memory backend, with a real charger store so the
charger-administration routes answer for real rather than 501, is served on a loopback
port; schemathesis loads `/api/openapi.json` from it and, for every operation, sends
requests generated from the document's own schemas (valid ones and ones that break
them), with the bearer token so the protected routes are exercised beyond their 401.
Each answer must not be a server error, must carry a status the operation documents,
and its JSON body must match the schema documented for that status.

The run is derandomized (hypothesis' fixed seed from the test's name) and bounded in
examples per operation, so a failure reproduces and the run stays short.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance  # noqa: E402

from actors.api.app import build_app  # noqa: E402
from actors.api.openapi import build_document  # noqa: E402
from tests.api.conftest import TOKEN, MemoryBackend, ServedApp  # noqa: E402

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def served_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    backend = MemoryBackend()
    backend.db_path = Path(tmp_path_factory.mktemp("schemathesis")) / "egw.db"  # the charger store the admin routes write
    app = build_app(backend, token=TOKEN, version="0.1.0-test", backend_timeout=0.5, command_timeout=1.0)
    with ServedApp(app) as server:
        # the charger the backend knows, in the charger store too, and an idTag on the local list
        for method, path, body in (("POST", "/api/chargers", {"id": "CP-1"}), ("PUT", "/api/id-tags/TAG1", {})):
            request = urllib.request.Request(f"{server.url}{path}", data=json.dumps(body).encode(), method=method,
                                             headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status in (200, 201), (path, answer.status)
        yield server


@pytest.fixture(scope="module")
def api_schema(served_gateway: ServedApp):
    """The document as the gateway serves it, loaded over HTTP like any client would."""
    return schemathesis.openapi.from_url(f"{served_gateway.url}/api/openapi.json")


KNOWN_IDS = {"/api/devices/": {"id": "inv1"}, "/api/transports/": {"name": "ingest"}, "/api/transactions/": {"id": 1},
             "/api/reservations/": {"id": 7}, "/api/chargers/": {"id": "CP-1", "connectorId": 1}, "/api/id-tags/": {"idTag": "TAG1"}}
"""Path parameters naming what the backend holds, so requests get past "no such item" to the handlers' own logic."""


def known_path_parameters(operation) -> dict[str, object]:
    names = {p.name for p in operation.path_parameters}
    for prefix, values in KNOWN_IDS.items():
        if operation.path.startswith(prefix):
            return {k: v for k, v in values.items() if k in names}
    return {}


BYTE_LIMITS = {("POST", "/api/wifi", "ssid"): 32}
"""Rules JSON Schema cannot state, documented in the field's description instead: an 802.11
SSID is at most 32 bytes as UTF-8, while `maxLength` counts characters."""


def _over_a_byte_limit(case, response) -> bool:
    """The 400 names a field with a documented byte limit, and the value sent does exceed it."""
    try:
        field = response.json().get("field")
    except ValueError:
        return False
    limit = BYTE_LIMITS.get((case.method.upper(), case.path, field))
    value = case.body.get(field) if isinstance(case.body, dict) else None
    return limit is not None and isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) > limit


def valid_input_is_not_refused(ctx, response, case) -> None:
    """A request the document calls valid is not answered 400: that would be the server checking a rule the document does not show."""
    if case.meta is not None and case.meta.generation.mode.is_positive and response.status_code == 400 and not _over_a_byte_limit(case, response):
        raise AssertionError(f"a schema-valid request was refused: {response.text[:300]}")


OPERATIONS = [(method.upper(), path) for path, operations in build_document("test")["paths"].items() for method in operations]
"""Every operation of the route table, one test each (the served document has exactly these: test_openapi)."""


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_answers_what_its_schema_documents(api_schema, served_gateway: ServedApp, method: str, path: str) -> None:
    operation = api_schema[path][method]
    has_input = bool(operation.body or any(True for _ in operation.iter_parameters()))
    known = known_path_parameters(operation)
    runs = [(GenerationMode.POSITIVE, {})] + ([(GenerationMode.POSITIVE, known)] if known else []) + ([(GenerationMode.NEGATIVE, {})] if has_input else [])
    for mode, path_parameters in runs:
        @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None))
        def exercise(case) -> None:
            case.call_and_validate(
                base_url=served_gateway.url,
                headers={"Authorization": f"Bearer {TOKEN}"},
                checks=[not_a_server_error, status_code_conformance, response_schema_conformance, valid_input_is_not_refused],
                timeout=10,
            )

        exercise()
