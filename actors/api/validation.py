"""Checking request bodies and parameters against the schemas the OpenAPI document shows.

Every failure becomes `BadInputError` with a `field` a client can act on: a dotted body
path ("port", "connection.host"), "query.<name>", "path.<name>" or "body" for a body
that is not a JSON object at all. Only the first (most relevant) problem is reported,
so messages stay short and stable.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, relevance

from actors.api import schemas
from actors.api.backend import BadInputError
from actors.api.routes import Param, Route

_format_checker = FormatChecker(formats=())


@_format_checker.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parse_datetime(value)
    return True


@_format_checker.checks("uri", raises=ValueError)
def _is_uri(value: object) -> bool:
    """An absolute URI (RFC 3986: a scheme, then the rest), as OCPP's `format: uri` fields need;
    no spaces or control characters, which a charger's HTTP/FTP client could not send."""
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:[!-~]+", value):
        raise ValueError(f"not an absolute URI: {value[:80]!r}")
    return True


def parse_datetime(value: str) -> datetime:
    """RFC 3339 date-time with an explicit offset ("Z" or +hh:mm); raises ValueError."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", value):
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    parsed = datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    if parsed.tzinfo is None:  # pragma: no cover - the pattern demands an offset
        raise ValueError("date-time needs a UTC offset")
    return parsed


_validators: dict[int, Draft202012Validator] = {}


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    key = id(schema)
    if key not in _validators:
        _validators[key] = Draft202012Validator(schema, format_checker=_format_checker)
    return _validators[key]


def _closest(errors: Any) -> ValidationError | None:
    """The one error to report, as jsonschema's `best_match` picks it, except inside a `oneOf` or
    `anyOf` that no alternative satisfies: there it follows the alternative the value came
    closest to (the fewest errors; the first listed on a tie), so a device body with neither
    `host` nor `serial_port` is told about `host`, not that it matches no alternative. Such a
    rule between fields is reported after a problem of a field itself (a port out of range)."""
    # a rule between fields (which alternative) comes after what is wrong with a field itself
    best = max(errors, key=lambda error: (error.validator not in ("oneOf", "anyOf"), relevance(error)), default=None)
    while best is not None and best.context:
        branches: dict[Any, list[ValidationError]] = {}
        for error in best.context:
            branches.setdefault(error.relative_schema_path[0], []).append(error)
        nearest = min(branches.values(), key=len)  # dicts keep insertion order: the first branch wins a tie
        best = min(nearest, key=relevance)  # the deepest, most specific error of that alternative
    return best


def _field_of(error: ValidationError, prefix: str = "") -> str:
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        path.append(missing[0] if missing else "?")
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = sorted(name for name in error.instance if name not in known)
        path.append(extra[0] if extra else "?")
    name = ".".join(path)
    if prefix:
        return f"{prefix}.{name}" if name else prefix
    return name or "body"


def _message(error: ValidationError) -> str:
    if isinstance(error.schema, dict) and error.schema.get("writeOnly"):
        # a secret (a Wi-Fi key): jsonschema's own message quotes the value, and this
        # message goes to the client and into the log, so only say what was expected
        return f"invalid value (not shown): {error.schema.get('description') or 'see the schema'}"[:200]
    if error.validator in ("not", "const") and isinstance(error.schema, dict) and error.schema.get("description"):
        return error.schema["description"][:200]  # a rule between fields says it in its own words
    if error.validator == "additionalProperties":
        return "unknown field"
    if error.validator == "required":
        return "missing required field"
    text = error.message
    return text if len(text) <= 200 else text[:197] + "..."


def check(schema: dict[str, Any], value: Any, *, field_prefix: str = "") -> None:
    """Raise BadInputError naming the first place where `value` does not satisfy `schema`."""
    error = _closest(_validator(schema).iter_errors(value))
    if error is not None:
        raise BadInputError(_message(error), field=_field_of(error, field_prefix))


def parse_json_body(raw: bytes, schema_name: str, *, required: bool = True) -> dict[str, Any]:
    """Decode a JSON request body and validate it against a component schema (an optional
    body that is empty reads as {} and is validated as such)."""
    if not raw.strip():
        if required:
            raise BadInputError("a JSON object body is required", field="body")
        raw = b"{}"
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_json_number)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadInputError(f"body is not valid JSON: {type(exc).__name__}", field="body") from None
    if not isinstance(data, dict):
        raise BadInputError("body must be a JSON object", field="body")
    check(schemas.COMPONENTS[schema_name], data)
    return data


def _json_number(text: str) -> int | float:
    """A JSON number with a fraction or exponent, as JSON Schema reads it: `502.0` and `5e2` are
    integers there, so they are decoded as the Python int they denote. The schema then
    accepts what the parts behind REST accept too (the device validator and the OCPP
    frames want an int, not 502.0), and a charger is sent `2`, not `2.0`."""
    number = float(text)
    return int(number) if number.is_integer() else number


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _convert(param: Param, raw: str) -> Any:
    kind = param.schema.get("type")
    where = f"{param.location}.{param.name}"
    if kind == "integer":
        if not re.fullmatch(r"-?\d{1,12}", raw):
            raise BadInputError("must be an integer", field=where)
        return int(raw)
    if kind == "number":
        try:
            number = float(raw)
        except ValueError:
            raise BadInputError("must be a number", field=where) from None
        if not math.isfinite(number):
            raise BadInputError("must be a finite number", field=where)
        return number
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise BadInputError("must be true or false", field=where)
        return raw == "true"
    return raw


def parse_params(route: Route, path_values: dict[str, str], query: Any, headers: Any = None) -> dict[str, Any]:
    """Path, query and header parameters of `route`, converted to their schema types and checked.

    `query` is a multidict: a parameter given twice, or one the route does not know,
    is a 400 rather than silently ignored, so a misspelt filter never returns everything.
    `headers` (case-insensitive) are read only for the header parameters the route declares.
    """
    known = {p.name for p in route.params if p.location == "query"}
    for name in query.keys():
        if name not in known:
            raise BadInputError("unknown query parameter", field=f"query.{name}")
        if len(query.getall(name)) > 1:
            raise BadInputError("given more than once", field=f"query.{name}")
    values: dict[str, Any] = {}
    for param in route.params:
        source = {"path": path_values, "query": query, "header": headers if headers is not None else {}}[param.location]
        if param.name not in source:
            if param.required:
                raise BadInputError("missing required parameter", field=f"{param.location}.{param.name}")
            if "default" in param.schema:
                values[param.name] = param.schema["default"]
            continue
        value = _convert(param, source[param.name])
        check(param.schema, value, field_prefix=f"{param.location}.{param.name}")
        values[param.name] = value
    return values


def parse_since(value: str) -> float:
    """A `since` filter as epoch seconds: RFC 3339 or a plain number of seconds."""
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(number) and 0 <= number < 1e11:
            return number
        raise BadInputError("epoch seconds out of range", field="query.since")
    try:
        return parse_datetime(value).timestamp()
    except ValueError:
        raise BadInputError("must be RFC 3339 (2026-01-31T12:00:00Z) or epoch seconds", field="query.since") from None
