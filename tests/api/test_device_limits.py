"""REST and the configuration file accept the same device settings: one rule, from actors/device/specs.py."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.api import schemas
from actors.api.backend import BadInputError
from actors.api.validation import check, parse_json_body
from actors.device.specs import MAX_TIMEOUT, NUMBERS, DeviceConfigError, validate_device
from tests.api.conftest import TOKEN

BASE = {"id": "inv1", "profile": "sma", "host": "10.0.0.9"}


def _rest_accepts(settings: dict) -> bool:
    try:
        check(schemas.DeviceSettings, settings)
    except BadInputError:
        return False
    return True


def _config_accepts(settings: dict) -> bool:
    try:
        validate_device(settings)
    except DeviceConfigError:
        return False
    return True


def _boundaries() -> list[tuple[str, object, bool]]:
    cases = []
    for key, (low, high, _) in NUMBERS.items():
        step = 1 if key in ("unit_id", "port") else 1e-6
        cases += [(key, low, True), (key, high, True), (key, low - step, False), (key, high + step, False)]
    return cases


@pytest.mark.parametrize(("key", "value", "accepted"), _boundaries())
def test_numeric_limits_are_the_same_over_rest_and_in_the_config_file(key, value, accepted):
    settings = {**BASE, key: value}
    assert _rest_accepts(settings) is accepted
    assert _config_accepts(settings) is accepted


@pytest.mark.parametrize(("key", "value", "accepted"), [
    ("timeout", MAX_TIMEOUT, True),
    ("timeout", 3.5, False),  # REST used to allow up to 4 s, the validator 3 s
    ("poll_interval", 0.001, True),  # the validator's floor; REST used to refuse below 0.1 s
    ("poll_interval", 0.05, True),
    ("poll_interval", 0.0, False),
    ("id", "inv-1_a.b", True),
    ("id", "a" * 64, True),
    ("id", "a" * 65, False),
    ("id", "inv:1", False),  # REST used to allow ":" in device ids, the configuration file not
    ("id", "a+b", False),  # "+" joins the ids of a shared endpoint's actor
    ("id", "_inv", False),
    ("id", "inv1\n", False),
    ("id", "", False),
    ("baudrate", 9600, True),
    ("baudrate", 9601, False),
])
def test_values_that_used_to_disagree_now_agree(key, value, accepted):
    settings = {**BASE, key: value}
    if key == "baudrate":
        settings = {"id": "m1", "profile": "eastron_sdm630", "serial_port": "/dev/ttyUSB0", key: value}
    assert (_rest_accepts(settings), _config_accepts(settings)) == (accepted, accepted)


def test_the_openapi_document_shows_the_validators_numbers():
    props = schemas.DeviceSettings["properties"]
    assert props["timeout"]["maximum"] == MAX_TIMEOUT
    for key, (low, high, _) in NUMBERS.items():
        assert (props[key]["minimum"], props[key]["maximum"]) == (low, high), key


# ------------------------------------------------------- which alternatives a device takes
TCP = {"host": "10.0.0.9"}
RTU = {"serial_port": "/dev/ttyUSB0"}

DEVICE_BODIES = [
    ("TCP vendor profile", {"id": "d1", "profile": "sma", **TCP, "port": 502, "unit_id": 3}, True),
    ("RTU vendor profile with serial settings", {"id": "d1", "profile": "eastron_sdm630", **RTU, "baudrate": 19200, "parity": "E", "stopbits": 2}, True),
    ("SunSpec by flag", {"id": "d1", "sunspec": True, **TCP}, True),
    ("SunSpec by profile name", {"id": "d1", "profile": "sunspec", **TCP}, True),
    ("SunSpec by both, which agree", {"id": "d1", "sunspec": True, "profile": "sunspec", **TCP}, True),
    ("sunspec false with the sunspec profile", {"id": "d1", "sunspec": False, "profile": "sunspec", **TCP}, True),
    ("a host name with an underscore", {"id": "d1", "profile": "sma", "host": "inverter_roof.local"}, True),
    ("RTU with a port (ignored on a serial line)", {"id": "d1", "profile": "eastron_sdm630", **RTU, "port": 502}, True),
    ("RTU on a virtual serial port outside /dev", {"id": "d1", "profile": "eastron_sdm630", "serial_port": "/tmp/ttyV0"}, True),
    ("both host and serial_port", {"id": "d1", "profile": "sma", **TCP, **RTU}, False),
    ("neither host nor serial_port", {"id": "d1", "profile": "sma"}, False),
    ("sunspec with a vendor profile", {"id": "d1", "sunspec": True, "profile": "sma", **TCP}, False),
    ("neither profile nor sunspec", {"id": "d1", **TCP}, False),
    ("sunspec false and no profile", {"id": "d1", "sunspec": False, **TCP}, False),
    ("an unknown profile", {"id": "d1", "profile": "acme", **TCP}, False),
    ("serial settings on a TCP device", {"id": "d1", "profile": "sma", **TCP, "baudrate": 9600}, False),
    ("parity on a TCP device", {"id": "d1", "profile": "sma", **TCP, "parity": "N"}, False),
    ("a host with a space", {"id": "d1", "profile": "sma", "host": "10.0.0.9 502"}, False),
    ("an empty serial_port", {"id": "d1", "profile": "sma", "serial_port": ""}, False),
    ("a port with a fraction", {"id": "d1", "profile": "sma", **TCP, "port": 502.5}, False),
    ("sunspec as a string", {"id": "d1", "sunspec": "true", **TCP}, False),
]


def _named_settings(message: str) -> set[str]:
    """The settings a device validator message names ("... (d1).host: required ..." or "give either host ... or serial_port ...")."""
    from actors.device.specs import KNOWN_KEYS

    return {key for key in KNOWN_KEYS if re.search(rf"\b{key}\b", message)}


@pytest.mark.parametrize(("what", "body", "valid"), DEVICE_BODIES, ids=[case[0] for case in DEVICE_BODIES])
async def test_post_devices_accepts_exactly_the_bodies_the_device_validator_accepts(client, backend, what, body, valid):
    try:
        validate_device(dict(body))
        problem = None
    except DeviceConfigError as exc:
        problem = str(exc)
    assert (problem is None) is valid, problem  # the table says what the device family decides
    response = await client.post("/api/devices", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    answer = await response.json()
    if valid:
        assert response.status == 201, answer
        assert backend.devices_by_id[body["id"]]["state"] == "starting"
    else:
        assert response.status == 400, answer
        assert answer["field"] in _named_settings(problem), (answer, problem)
        assert not [w for w in backend.writes if w[0] == "add_device"]


def test_the_document_states_the_device_alternatives():
    """Clients and fuzzers read the rules from the schema: a profile or SunSpec, TCP or RTU, each exactly one of two."""
    rules = schemas.DeviceSettings["allOf"]
    assert [[branch["title"] for branch in rule["oneOf"]] for rule in rules] == [["vendor profile", "SunSpec"], ["Modbus TCP", "Modbus RTU"]]
    from actors.device.profile import profile_names

    assert schemas.DeviceSettings["properties"]["profile"]["enum"] == profile_names()


_values = {
    "profile": st.sampled_from(["sma", "eastron_sdm630", "sunspec", "acme", "", 5]),
    "sunspec": st.sampled_from([True, False, "true", 1]),
    "host": st.sampled_from(["10.0.0.9", "h_1", "", "a b", "a\x1fb", "a\u3000b", 7]),
    "port": st.sampled_from([502, 0, 65536, 502.0, True]),
    "unit_id": st.sampled_from([1, 255, 256, 1.0]),
    "serial_port": st.sampled_from(["/dev/ttyUSB0", "", 3]),
    "baudrate": st.sampled_from([9600, 9601, True]),
    "parity": st.sampled_from(["N", "X"]),
    "stopbits": st.sampled_from([1, 2, 3, True]),
}


def _as_rest_reads_it(body: dict) -> dict:
    """The body as REST decodes it from JSON (502.0 is the integer 502 there, as in JSON Schema)."""
    return json.loads(json.dumps(body), parse_float=lambda text: int(float(text)) if float(text).is_integer() else float(text))


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.fixed_dictionaries({"id": st.just("d1")}, optional=_values))
def test_rest_and_the_device_validator_agree_on_any_mix_of_these_settings(body):
    try:
        parse_json_body(json.dumps(body).encode(), "DeviceSettings")
        rest = True
    except BadInputError:
        rest = False
    assert rest is _config_accepts(_as_rest_reads_it(body)), body


async def test_a_port_written_502_point_0_is_the_integer_502_the_device_family_takes(client, backend):
    """JSON Schema reads 502.0 as an integer, so the document allows it: REST adds the device with port 502 (an int,
    which the device validator takes) rather than answering 400 from behind a schema that said yes."""
    raw = b'{"id": "d1", "profile": "sma", "host": "10.0.0.9", "port": 502.0, "unit_id": 3.0, "poll_interval": 5.0}'
    response = await client.post("/api/devices", data=raw, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert response.status == 201, await response.text()
    (_, settings), = [w for w in backend.writes if w[0] == "add_device"]
    assert (settings["port"], settings["unit_id"]) == (502, 3) and type(settings["port"]) is int and type(settings["unit_id"]) is int
    validate_device(settings)


def test_the_host_pattern_refuses_exactly_what_the_device_validator_calls_whitespace():
    import re as python_re

    pattern = python_re.compile(schemas.DeviceSettings["properties"]["host"]["pattern"])
    refused = [code for code in range(0x110000) if not pattern.match(f"a{chr(code)}b")]
    assert refused == [code for code in range(0x110000) if chr(code).isspace()]
