"""Over a thousand generated malformed frames, each answered with the right OCPP-J 1.6
CALLERROR, while the listener and another charger carry on unaffected."""

from __future__ import annotations

import copy
import json
import random

from actors.ocpp import frames
from simulators.charger.connection import connect

VALID = {
    "Authorize": {"idTag": "TAG1"},
    "BootNotification": {"chargePointVendor": "V", "chargePointModel": "M"},
    "StatusNotification": {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    "StartTransaction": {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"},
    "StopTransaction": {"transactionId": 1, "meterStop": 10, "timestamp": "2026-01-01T01:00:00Z"},
    "MeterValues": {"connectorId": 1, "meterValue": [{"timestamp": "2026-01-01T00:30:00Z", "sampledValue": [{"value": "5"}]}]},
    "DataTransfer": {"vendorId": "acme"},
    "FirmwareStatusNotification": {"status": "Idle"},
}
WRONG_TYPE = {int: "seven", str: 7, list: {"a": 1}, dict: [1]}


def generate(rng: random.Random, n: int) -> list[tuple[str, str, str | None]]:
    """(frame text, expected CALLERROR code, expected unique id or None for "-1")."""
    cases = []
    for i in range(n):
        uid = f"m{i}"
        kind = i % 9
        action = rng.choice(sorted(VALID))
        payload = copy.deepcopy(VALID[action])
        if kind == 0:  # not JSON at all, or truncated JSON
            text = rng.choice([
                "".join(rng.choice("{}[]\",:abc123 \\") for _ in range(rng.randint(1, 40))) + "{",
                json.dumps([2, uid, action, payload])[: rng.randint(1, 10)],
                "\x00\x01garbage",
            ])
            cases.append((text, "FormationViolation", None))
        elif kind == 1:  # wrong message type id
            type_id = rng.choice([0, 1, 5, 9, 99, -2, "2", 2.5, None, True])
            cases.append((json.dumps([type_id, uid, action, payload]), "FormationViolation", uid))
        elif kind == 2:  # unknown action
            name = "".join(rng.choice("ABCXYZqrs") for _ in range(rng.randint(3, 12)))
            cases.append((json.dumps([2, uid, name, {}]), "NotImplemented", uid))
        elif kind == 3:  # a central-to-charger action sent the wrong way
            name = rng.choice(sorted(frames.CENTRAL_TO_CHARGER - frames.CHARGER_TO_CENTRAL))
            cases.append((json.dumps([2, uid, name, {}]), "NotSupported", uid))
        elif kind == 4:  # a field of the wrong JSON type
            key = rng.choice(sorted(payload))
            payload[key] = WRONG_TYPE[type(payload[key])]
            cases.append((json.dumps([2, uid, action, payload]), "TypeConstraintViolation", uid))
        elif kind == 5:  # a required field missing
            required = frames._validator(action).schema.get("required", [])
            del payload[rng.choice(required)]
            cases.append((json.dumps([2, uid, action, payload]), "ProtocolError", uid))
        elif kind == 6:  # an unexpected extra field
            payload["surprise" + str(i)] = 1
            cases.append((json.dumps([2, uid, action, payload]), "FormationViolation", uid))
        elif kind == 7:  # a value outside its enum, or a timestamp that is not one
            if "status" in payload:
                payload["status"] = "Exploded"
            else:
                action, payload = "StartTransaction", dict(VALID["StartTransaction"], timestamp="yesterday at noon")
            cases.append((json.dumps([2, uid, action, payload]), "PropertyConstraintViolation", uid))
        else:  # broken envelope: payload not an object, wrong length, non-string id
            text = rng.choice([
                json.dumps([2, uid, action, [payload]]),
                json.dumps([2, uid, action]),
                json.dumps([2, uid, action, payload, "extra"]),
                json.dumps({"not": "an array"}),
                json.dumps([2, 12345, action, payload]),
                json.dumps([2, "x" * 37, action, payload]),
            ])
            first = json.loads(text)
            expect_uid = uid if isinstance(first, list) and len(first) > 1 and first[1] == uid else None
            cases.append((text, "FormationViolation", expect_uid))
    return cases


async def test_a_thousand_malformed_frames_each_get_the_right_callerror(central):
    bystander = await central.charger("GOOD")
    attacker = await connect(central.url("FUZZ"))
    await attacker.send(json.dumps([2, "boot", "BootNotification", VALID["BootNotification"]]))
    assert json.loads(await attacker.recv())[0] == frames.CALLRESULT

    cases = generate(random.Random(20261121), 1200)
    wrong = []
    for n, (text, code, uid) in enumerate(cases):
        await attacker.send(text)
        reply = json.loads(await attacker.recv())
        if reply[0] != frames.CALLERROR or reply[2] != code or reply[1] != (uid or "-1") or not isinstance(reply[4], dict):
            wrong.append((text[:120], code, reply))
        if n % 300 == 0:  # another charger is served normally in the middle of the flood
            assert (await bystander.heartbeat()).current_time
    assert wrong == [], f"{len(wrong)} wrong replies, first: {wrong[:3]}"

    # the attacked connection itself still works, and so does a new one
    await attacker.send(json.dumps([2, "hb", "Heartbeat", {}]))
    assert json.loads(await attacker.recv())[:2] == [frames.CALLRESULT, "hb"]
    assert (await bystander.heartbeat()).current_time
    newcomer = await central.charger("NEW")
    assert (await newcomer.heartbeat()).current_time
    await attacker.close()
