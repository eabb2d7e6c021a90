"""REST and the configuration file accept the same device settings: one rule, from actors/device/specs.py."""

from __future__ import annotations

import pytest

from actors.api import schemas
from actors.api.backend import BadInputError
from actors.api.validation import check
from actors.device.specs import MAX_TIMEOUT, NUMBERS, DeviceConfigError, validate_device

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
