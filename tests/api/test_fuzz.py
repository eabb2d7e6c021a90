"""Property-based fuzzing driven by the served OpenAPI document: no input yields a 500.

Hypothesis builds requests for every operation the document lists: parameters and
bodies generated from the document's own schemas (valid ones reach the backend), then
mutated (a field of the wrong type, an unknown field, a missing one), plus arbitrary
JSON, raw bytes and hostile path segments. Each request goes over a real loopback
socket to the served app. The properties: never a 5xx other than the documented
501/503, every status is one the document lists for the operation (or 404/405), and
every JSON body matches the documented schema for its status.
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.api.openapi import build_document
from tests.api.conftest import TOKEN, check_response

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def from_schema(schema: dict[str, Any], document: dict[str, Any]) -> st.SearchStrategy:
    """Values that satisfy `schema` (the subset of JSON Schema the API's requests use)."""
    schema = _resolve(schema, document)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, document) for k in kind])
    if kind == "string":
        if schema.get("format") == "uri":
            return st.sampled_from(["ftp://user@diag.example.invalid/upload/", "https://fw.example.invalid/fw-2.1.bin"])
        if schema.get("format") == "date-time":
            return st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)).map(lambda d: d.isoformat().replace("+00:00", "Z"))
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) <= schema.get("maxLength", 10**6))
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 40), 40))
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(low, schema.get("maximum"), allow_nan=False, allow_infinity=False, exclude_min="exclusiveMinimum" in schema)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array" and isinstance(schema.get("items"), dict):
        return st.lists(from_schema(schema["items"], document), min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 2), 2))
    if kind == "object":
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        optional = {k: from_schema(v, document) for k, v in properties.items() if k not in required}
        base = st.fixed_dictionaries({k: from_schema(properties[k], document) for k in required}, optional=optional)
        if schema.get("minProperties"):
            base = base.filter(lambda d: len(d) >= schema["minProperties"])
        return base
    return json_values


def mutated(valid: st.SearchStrategy) -> st.SearchStrategy:
    """A valid object with one field replaced, removed or added: near misses find the edge cases."""

    def mutate(data: Any, key: str, value: Any, how: int) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if how == 0 and data:
            data.pop(sorted(data)[len(key) % len(data)])
        elif how == 1 and data:
            data[sorted(data)[len(key) % len(data)]] = value
        else:
            data[key] = value
        return data

    return st.builds(mutate, valid, st.text(max_size=12), json_values, st.integers(0, 2))


def _body_strategy(operation: dict[str, Any], document: dict[str, Any]) -> st.SearchStrategy:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return st.none() | st.just(b"") | json_values.map(lambda v: json.dumps(v).encode())
    valid = from_schema(content["schema"], document)
    return st.one_of(
        valid.map(lambda v: json.dumps(v).encode()),
        valid.map(lambda v: json.dumps(v).encode()),
        mutated(valid).map(lambda v: json.dumps(v).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=64),
    )


def _text(value: Any) -> str:
    """A parameter value as a URL carries it (booleans as true/false)."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _param_value(param: dict[str, Any], document: dict[str, Any], known: list[str]) -> st.SearchStrategy:
    valid = from_schema(param["schema"], document).map(_text)
    hostile = st.sampled_from(["", "-1", "1e999", "NaN", "%00", "..", "0x10", "9" * 30])
    if param["in"] == "path" and known:
        return st.one_of(st.sampled_from(known), st.sampled_from(known), st.sampled_from(known), valid, st.text(max_size=24), hostile)
    return st.one_of(valid, valid, st.text(max_size=24), hostile)


def request_strategy(document: dict[str, Any], known_by_collection: dict[str, list[str]], exclude: frozenset[tuple[str, str]] = frozenset(),
                     only: tuple[str, str] | None = None, token: str = TOKEN) -> st.SearchStrategy:
    """Requests for the document's operations (or just `only` = (METHOD, path)); `known` ids hit existing items."""
    operations = sorted((path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()
                        if (method.upper(), path) not in exclude and (only is None or only == (method.upper(), path)))

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, str, str, bytes | None, dict[str, str]]:
        path, method, operation = draw(st.sampled_from(operations))
        known = next((ids for prefix, ids in known_by_collection.items() if path.startswith(prefix)), [])
        # one request in four is built to pass the token and validation (known ids, valid values), so every
        # operation's handler is reached whatever the generator's bias; the others are free to be hostile
        pristine = draw(st.integers(0, 3)) == 0
        url = path
        query: list[tuple[str, str]] = []
        headers = {"Content-Type": "application/json"}
        for param in operation.get("parameters", []):
            ids = known_by_collection.get(param["name"]) or known
            if param["in"] == "path":
                value = draw(st.sampled_from(ids) if pristine and ids else from_schema(param["schema"], document).map(_text) if pristine
                             else _param_value(param, document, ids))
                url = url.replace("{" + param["name"] + "}", urllib.parse.quote(value, safe=""))
            elif param["in"] == "header":  # valid values only: HTTP headers carry ASCII (the endpoint tests send bad ones)
                if draw(st.integers(0, 3)) == 0:
                    headers[param["name"]] = draw(from_schema(param["schema"], document).map(str))
            elif draw(st.booleans()):
                query.append((param["name"], draw(from_schema(param["schema"], document).map(_text) if pristine else _param_value(param, document, known))))
        if not pristine and draw(st.integers(0, 9)) == 0:
            query.append((draw(st.text(min_size=1, max_size=8)), draw(st.text(max_size=8))))
        if query:
            url += "?" + urllib.parse.urlencode(query)
        if pristine or draw(st.integers(0, 9)) > 0:
            headers["Authorization"] = f"Bearer {token}"
        content = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if pristine and content is not None:
            body = draw(from_schema(content["schema"], document).map(lambda v: json.dumps(v).encode()))
        else:
            body = draw(_body_strategy(operation, document))
        return path, method.upper(), url, body, headers

    return build()


def send(port: int, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, url, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def document(served) -> dict[str, Any]:
    status, _, raw = send(served.port, "GET", "/api/openapi.json", None, {})
    assert status == 200
    return json.loads(raw)


def known_ids(port: int, token: str | None = None) -> dict[str, list[str]]:
    """Ids of existing items by collection path, read from the API itself, so requests reach them;
    with the token also a command's id (by its parameter name, `command_id`), from one sent to the first charger."""
    ids: dict[str, list[str]] = {}
    auth = {"Authorization": f"Bearer {token}"} if token is not None else {}
    for url, collection, key, field in (("/api/devices", "/api/devices/", "devices", "id"), ("/api/chargers", "/api/chargers/", "chargers", "id"),
                                        ("/api/transactions", "/api/transactions/", "transactions", "id"), ("/api/outbox", "/api/transports/", "transports", "name"),
                                        ("/api/reservations", "/api/reservations/", "reservations", "id"), ("/api/loadpoints", "/api/loadpoints/", "loadpoints", "id")):
        status, _, raw = send(port, "GET", url, None, auth)
        if status == 401 and token is None:  # personal data (transactions carry idTags) needs the token
            ids[collection] = []
            continue
        assert status == 200
        ids[collection] = [str(item[field]) for item in json.loads(raw)[key]]
    ids["connectorId"] = ["1"]  # every charger in the fuzzed gateways reported connector 1
    if token is not None and ids["/api/chargers/"]:
        charger = urllib.parse.quote(ids["/api/chargers/"][0], safe="")
        status, _, raw = send(port, "GET", f"/api/chargers/{charger}/configuration", None, {"Authorization": f"Bearer {token}"})
        if "command_id" in json.loads(raw):
            ids["command_id"] = [json.loads(raw)["command_id"]]
    return ids


def fuzz_no_500(port: int, document: dict[str, Any], max_examples: int, exclude: frozenset[tuple[str, str]] = frozenset(),
                only: tuple[str, str] | None = None, token: str = TOKEN) -> Counter:
    """Send `max_examples` generated requests to the API on `port`; assert the properties; count statuses."""
    allowed_5xx = {501, 503}
    seen: Counter = Counter()

    @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    @given(request_strategy(document, known_ids(port, token), exclude, only, token))
    def check(request: tuple[str, str, str, bytes | None, dict[str, str]]) -> None:
        template, method, url, body, headers = request
        status, response_headers, raw = send(port, method, url, body, headers)
        seen[status] += 1
        assert status < 500 or status in allowed_5xx, (method, url, body, status, raw[:300])
        if status == 503:
            assert int(response_headers["Retry-After"]) >= 1
        if template == "/metrics" and status == 200:
            assert raw.decode().startswith("# HELP")
            return
        payload = json.loads(raw)
        if status in (404, 405) and str(status) not in document["paths"][template][method.lower()]["responses"]:
            assert payload["error"] in ("not_found", "method_not_allowed")
            return
        check_response(document, method, template, status, payload)
        if status == 400:
            assert payload.get("field"), (url, payload)

    check()
    return seen


OPERATIONS = sorted((method.upper(), path) for path, ops in build_document("fuzz")["paths"].items() for method in ops)


@pytest.mark.parametrize("operation", OPERATIONS, ids=" ".join)
def test_no_request_built_from_the_document_gets_a_500(served, document, operation):
    assert operation[1] in document["paths"], "the served document lists every operation"
    seen = fuzz_no_500(served.port, document, max_examples=25, only=operation)
    # the generator must get past the token and validation, or the run proves little about the handler
    reached = sum(n for status, n in seen.items() if status not in (400, 401, 404, 405, 413))
    assert reached > 0, seen
    if operation[0] != "GET":
        assert seen[400] > 0, seen  # and it must also send the malformed input the property is about


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"]),
    segments=st.lists(st.sampled_from(["api", "devices", "chargers", "metrics", "..", "%2e%2e", "%00", "openapi.json"]) | st.text(max_size=10).map(lambda s: urllib.parse.quote(s, safe="")), max_size=5),
    body=st.none() | st.binary(max_size=128),
)
def test_arbitrary_paths_and_methods_get_json_errors_not_500(served, method, segments, body):
    url = "/" + "/".join(segments)
    status, _, raw = send(served.port, method, url, body, {"Authorization": f"Bearer {TOKEN}"})
    assert status < 500, (method, url, status, raw[:200])
    if status >= 400 and not re.match(r"^/metrics$", url):
        assert "error" in json.loads(raw)


def test_unparseable_request_line_is_a_400_from_the_http_layer(served):
    """Requests that are not HTTP at all never reach the app: the parser answers 400 itself."""
    status, _, _ = send(served.port, "FOO", "/api/devices", None, {})
    assert status == 400
