"""Charger commands end to end: REST -> API actor -> charger actor -> OCPP -> a simulated charge point.

The tree holds the real OCPP family (listener + chargers supervisor, charger actors
created on connect) and the API actor; the charge point is the project's simulator
running the "remote" scenario (boot, wait for RemoteStart, charge, wait for RemoteStop).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timezone

import pytest

from actors.api.actor import api_child_spec
from storage.api_token import load_or_create_token
from actors.ocpp.specs import ocpp_child_specs
from simulators.charger.connection import connect
from simulators.charger.scenarios import Options, Session
from supervisor.spec import Heartbeat, SupervisorSpec
from tests.api.test_actor import http, http_ok
from tests.conftest import free_port, wait_until
from supervisor.embedded import start_root


@pytest.fixture
def ocpp_gateway(multiproc_system, tmp_path):
    return start_gateway(multiproc_system, tmp_path, ocpp_call_timeout=5.0)


def start_gateway(multiproc_system, tmp_path, **settings):
    data_dir = tmp_path / "data"
    api_port, ocpp_port = free_port(), free_port()
    token = load_or_create_token(data_dir)
    config = {"data_dir": str(data_dir), "api_host": "127.0.0.1", "api_port": api_port, "ocpp_host": "127.0.0.1", "ocpp_port": ocpp_port,
              "ocpp_unknown_chargers": "accept", **settings}
    spec = SupervisorSpec(children=(*ocpp_child_specs(config), api_child_spec(config)), heartbeat=Heartbeat(0.5, 5.0))
    start_root(multiproc_system, spec)
    wait_until(lambda: http_ok(api_port, "/api/hello"), timeout=15, what="the API serving")
    wait_until(lambda: port_open(ocpp_port), timeout=15, what="the OCPP listener")
    return api_port, ocpp_port, token


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class LoopThread:
    """An event loop in a thread of its own; `run` a coroutine on it and wait for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class ChargePointThread(LoopThread):
    """A simulated charge point in its own event loop: connected, booted, connector 1 Available."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.session = Session(Options(url=url))
        self.cp = self.run(self._open())

    async def _open(self):
        cp = await self.session.open()
        assert (await cp.boot()).status == "Accepted"
        await cp.status(1, "Available")
        return cp

    def close(self) -> None:
        self.run(self.session.close())
        self.stop()


def test_remote_start_and_stop_through_the_api_reach_the_charge_point(ocpp_gateway):
    api_port, ocpp_port, token = ocpp_gateway
    charge_point = ChargePointThread(f"ws://127.0.0.1:{ocpp_port}/ocpp/CP-7")
    try:
        cp = charge_point.cp

        def remote_start():
            status, _, body = http(api_port, "/api/chargers/CP-7/remote-start", "POST", {"idTag": "TAG9", "connectorId": 1}, token=token, timeout=15)
            return body if status == 200 else None  # 503 while the charger actor is still starting

        body = wait_until(remote_start, timeout=15, interval=0.2, what="RemoteStartTransaction accepted")
        assert body["command"] == "RemoteStartTransaction" and body["status"] == "Accepted"
        assert cp.received["RemoteStartTransaction"][0]["id_tag"] == "TAG9"
        transaction_id = wait_until(lambda: (tx := cp.transactions.get(1, -1)) >= 0 and tx, timeout=15, what="the charge point's session started")
        active = wait_until(lambda: [t for t in http(api_port, "/api/transactions?charger=CP-7", token=token)[2]["transactions"] if t["state"] == "Active"], timeout=15, what="an active session")
        assert [t["id"] for t in active] == [transaction_id] and active[0]["id_tag"] == "TAG9" and active[0]["connector"] == 1
        charge_point.run(cp.meter(1, transaction_id, 1500.0, power_w=7000.0, soc_percent=55.0, current_a={"L1": 10.1, "L2": 10.3, "L3": 9.9}))

        status, _, body = http(api_port, "/api/chargers/CP-7/remote-stop", "POST", {"transactionId": transaction_id}, token=token, timeout=15)
        assert status == 200 and body["status"] == "Accepted"
        finished = wait_until(lambda: (t := http(api_port, f"/api/transactions/{transaction_id}", token=token)[2]) and t["state"] != "Active" and t, timeout=15, what="the session finished")
        assert finished["stop"] is not None
        assert {m["measurand"] for m in finished["meter_values"]} >= {"Energy.Active.Import.Register"}
        assert finished["energy_wh"] == 1500
        assert (finished["soc_percent"], finished["current_a"]) == (55.0, 10.3)  # the EV's state of charge, the largest phase current
        status, _, body = http(api_port, "/api/chargers/CP-7/remote-stop", "POST", {"transactionId": transaction_id}, token=token, timeout=15)
        assert status == 409 and body["error"] == "rejected" and body["status"] == "Rejected"  # the charger's own answer, as a conflict
    finally:
        charge_point.close()


# ---------------------------------------------------------------------------------------------
# Every other central-system action of OCPP 1.6 over REST, against the simulator, and the ids
# the OCPP handshake accepts. Helpers: commands with any header, and a first command that waits
# until the new charger actor can be looked up (503 charger_offline until then).

def command(api_port: int, token: str, path: str, body: dict | None = None, method: str = "POST", headers: dict | None = None, timeout: float = 20):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{api_port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def first_command(api_port: int, token: str, path: str, body: dict | None = None, method: str = "POST"):
    def attempt():
        answer = command(api_port, token, path, body, method)
        return None if answer[0] == 503 and answer[2]["error"] == "charger_offline" else answer

    return wait_until(attempt, timeout=15, interval=0.2, what=f"{path} reaching the charger actor")


def test_local_authorization_list_is_sent_versioned_and_read_back(ocpp_gateway):
    api_port, ocpp_port, token = ocpp_gateway
    charge_point = ChargePointThread(f"ws://127.0.0.1:{ocpp_port}/ocpp/CP-L")
    try:
        cp, base = charge_point.cp, "/api/chargers/CP-L"
        status, _, body = first_command(api_port, token, f"{base}/local-list-version", method="GET")
        assert (status, body["command"], body["result"]) == (200, "GetLocalListVersion", {"listVersion": 0})  # 0: the list is empty
        full = {"listVersion": 3, "updateType": "Full", "localAuthorizationList": [
            {"idTag": "ALICE", "idTagInfo": {"status": "Accepted", "expiryDate": "2030-01-01T00:00:00Z"}},
            {"idTag": "BOB", "idTagInfo": {"status": "Blocked"}}]}
        status, _, body = command(api_port, token, f"{base}/local-list", full)
        assert (status, body["status"]) == (200, "Accepted")
        assert cp.local_list == {"ALICE": {"status": "Accepted", "expiry_date": "2030-01-01T00:00:00Z"}, "BOB": {"status": "Blocked"}}
        assert command(api_port, token, f"{base}/local-list-version", method="GET")[2]["result"] == {"listVersion": 3}
        status, _, body = command(api_port, token, f"{base}/local-list", {"listVersion": 3, "updateType": "Differential", "localAuthorizationList": []})
        assert (status, body["error"], body["status"]) == (409, "rejected", "VersionMismatch")  # a differential update must raise the version
        status, _, body = command(api_port, token, f"{base}/local-list", {"listVersion": 4, "updateType": "Differential", "localAuthorizationList": [{"idTag": "BOB"}]})
        assert status == 200 and set(cp.local_list) == {"ALICE"}  # an entry without idTagInfo is removed
        sent = len(cp.received["SendLocalList"])
        status, _, body = command(api_port, token, f"{base}/local-list", {"listVersion": 5, "updateType": "Partial"})
        assert (status, body["field"]) == (400, "updateType") and len(cp.received["SendLocalList"]) == sent  # refused, never sent
        cp.local_list_supported = False
        status, _, body = command(api_port, token, f"{base}/local-list-version", method="GET")
        assert (status, body["status"], body["result"]) == (409, "NotSupported", {"listVersion": -1})
        assert command(api_port, token, f"{base}/local-list", full)[2]["status"] == "NotSupported"
    finally:
        charge_point.close()


PROFILE = {"chargingProfileId": 7, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
           "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}}


def test_cache_unlock_and_smart_charging_commands(ocpp_gateway):
    api_port, ocpp_port, token = ocpp_gateway
    charge_point = ChargePointThread(f"ws://127.0.0.1:{ocpp_port}/ocpp/CP-S")
    try:
        cp, base = charge_point.cp, "/api/chargers/CP-S"
        status, _, body = first_command(api_port, token, f"{base}/clear-cache")  # no body at all
        assert (status, body["command"], body["status"]) == (200, "ClearCache", "Accepted") and cp.received["ClearCache"]
        assert command(api_port, token, f"{base}/unlock", {"connectorId": 1})[2]["status"] == "Unlocked"
        status, _, body = command(api_port, token, f"{base}/unlock", {"connectorId": 9})
        assert (status, body["status"]) == (409, "UnlockFailed")
        status, _, body = command(api_port, token, f"{base}/charging-profile", {"connectorId": 1, "csChargingProfiles": PROFILE})
        assert status == 200 and cp.charging_profiles[7]["profile"]["charging_schedule"]["charging_schedule_period"][0]["limit"] == 16.0
        max_profile = {**PROFILE, "chargingProfileId": 8, "chargingProfilePurpose": "ChargePointMaxProfile"}
        assert command(api_port, token, f"{base}/charging-profile", {"connectorId": 1, "csChargingProfiles": max_profile})[2]["status"] == "Rejected"
        status, _, body = command(api_port, token, f"{base}/charging-profile", {"connectorId": 1, "csChargingProfiles": {**PROFILE, "stackLevel": "top"}})
        assert (status, body["field"]) == (400, "csChargingProfiles.stackLevel")
        status, _, body = command(api_port, token, f"{base}/composite-schedule", {"connectorId": 1, "duration": 600, "chargingRateUnit": "A"})
        assert status == 200 and body["result"]["chargingSchedule"]["duration"] == 600 and body["result"]["connectorId"] == 1
        assert command(api_port, token, f"{base}/clear-charging-profile", {"id": 7})[0] == 200 and cp.charging_profiles == {}
        status, _, body = command(api_port, token, f"{base}/clear-charging-profile")  # no body: all profiles, and there are none
        assert (status, body["status"]) == (409, "Unknown")
    finally:
        charge_point.close()


def test_diagnostics_firmware_and_data_transfer_and_a_callerror(ocpp_gateway):
    from ocpp.exceptions import InternalError

    api_port, ocpp_port, token = ocpp_gateway
    charge_point = ChargePointThread(f"ws://127.0.0.1:{ocpp_port}/ocpp/CP-F")
    try:
        cp, base = charge_point.cp, "/api/chargers/CP-F"
        status, _, body = first_command(api_port, token, f"{base}/diagnostics", {"location": "ftp://diag.example.invalid/upload/", "retries": 2})
        assert status == 200 and body["result"]["fileName"].startswith("diagnostics-CP-F")
        assert cp.received["GetDiagnostics"][0]["location"] == "ftp://diag.example.invalid/upload/"
        wait_until(lambda: cp.diagnostics_statuses == ["Uploading", "Uploaded"], what="DiagnosticsStatusNotifications answered by the gateway")
        status, _, body = command(api_port, token, f"{base}/diagnostics", {"location": "not a uri"})
        assert (status, body["field"]) == (400, "location")
        retrieve = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        status, _, body = command(api_port, token, f"{base}/firmware", {"location": "https://fw.example.invalid/fw-2.bin", "retrieveDate": retrieve})
        assert (status, body["status"], body["result"]) == (200, "Accepted", {})
        wait_until(lambda: cp.firmware_statuses[-1:] == ["Installed"], what="FirmwareStatusNotifications answered by the gateway")
        status, _, body = command(api_port, token, f"{base}/data-transfer", {"vendorId": "egw-sim", "messageId": "echo", "data": "ping"})
        assert (status, body["result"]) == (200, {"status": "Accepted", "data": "ping"})
        status, _, body = command(api_port, token, f"{base}/data-transfer", {"vendorId": "com.example"})
        assert (status, body["status"]) == (409, "UnknownVendorId")
        cp.call_errors["DataTransfer"] = InternalError(description="vendor module crashed")
        status, _, body = command(api_port, token, f"{base}/data-transfer", {"vendorId": "egw-sim", "messageId": "echo"})
        assert (status, body["error"], body["ocpp_error_code"], body["description"]) == (502, "charger_error", "InternalError", "vendor module crashed")
    finally:
        charge_point.close()


def test_a_charger_id_the_handshake_accepts_can_be_read_and_commanded(ocpp_gateway):
    api_port, ocpp_port, token = ocpp_gateway
    charge_point = ChargePointThread(f"ws://127.0.0.1:{ocpp_port}/ocpp/cp%40x%7C1")
    try:
        status, _, body = http(api_port, "/api/chargers/cp%40x%7C1")
        assert (status, body["id"], body["connected"]) == (200, "cp@x|1", True)
        status, _, body = first_command(api_port, token, "/api/chargers/cp%40x%7C1/trigger", {"requestedMessage": "Heartbeat"})
        assert (status, body["charger"], body["status"]) == (200, "cp@x|1", "Accepted")
        status, _, body = http(api_port, "/api/transactions?charger=cp%40x%7C1", token=token)
        assert (status, body["transactions"]) == (200, [])
    finally:
        charge_point.close()


class SilentCharger(LoopThread):
    """A charge point on a raw websocket that boots and then answers only what the test tells it to."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.connection = self.run(connect(url))
        self.run(self.connection.send(json.dumps([2, "boot", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "Silent"}])))
        assert json.loads(self.run(self.connection.recv()))[2]["status"] == "Accepted"

    def next_call(self) -> list:
        """The next CALL the central system sends (its frames are read in order, nothing skipped)."""
        frame = json.loads(self.run(self.connection.recv()))
        assert frame[0] == 2, frame
        return frame

    def answer(self, unique_id: str, payload: dict) -> None:
        self.run(self.connection.send(json.dumps([3, unique_id, payload])))

    def close(self) -> None:
        self.run(self.connection.close())
        self.stop()


def test_a_command_refused_over_rest_is_never_sent_later_and_a_key_is_never_sent_twice(multiproc_system, tmp_path):
    """Defect 3: one call outstanding, one queue place. A command REST answers 503 for is never sent; one
    answered 504 was sent and is not sent again; an Idempotency-Key replays the first outcome instead of sending."""
    api_port, ocpp_port, token = start_gateway(multiproc_system, tmp_path, ocpp_call_timeout=2.0, ocpp_call_queue_limit=1)
    charger = SilentCharger(f"ws://127.0.0.1:{ocpp_port}/ocpp/MUTE")
    pool = ThreadPoolExecutor(4)
    base = "/api/chargers/MUTE"

    def send(slug: str, body: dict, key: str):
        return pool.submit(command, api_port, token, f"{base}/{slug}", body, "POST", {"Idempotency-Key": key})

    try:
        wait_until(lambda: any(a["path"] == "chargers/MUTE" for a in walk(http(api_port, "/api/actors")[2]["actors"])), timeout=15, what="the charger actor in the tree")
        outstanding = send("reset", {"type": "Soft"}, "a")
        call_a = charger.next_call()
        assert call_a[2:] == ["Reset", {"type": "Soft"}]
        contenders = {send("trigger", {"requestedMessage": "Heartbeat"}, "b"): "TriggerMessage",
                      send("availability", {"connectorId": 0, "type": "Inoperative"}, "c"): "ChangeAvailability"}
        done, _ = wait(contenders, return_when=FIRST_COMPLETED)  # one takes the queue place, the other is refused at once
        refused = done.pop()
        status, headers, body = refused.result()
        assert (status, body["error"]) == (503, "queue_full") and int(headers["Retry-After"]) >= 1
        queued_action = next(action for f, action in contenders.items() if f is not refused)
        status, _, body = outstanding.result()
        assert (status, body["error"]) == (504, "no_answer")  # sent, never answered: not a failure, and not re-sent
        assert charger.next_call()[2] == queued_action  # then the queued one goes out, and only that one
        refused_action = contenders[refused]
        retry = send("trigger", {"requestedMessage": "Heartbeat"}, "b") if refused_action == "TriggerMessage" \
            else send("availability", {"connectorId": 0, "type": "Inoperative"}, "c")
        sent = charger.next_call()  # the refused command was never sent: its key was free, so the retry sends it now
        assert sent[2] == refused_action
        charger.answer(sent[1], {"status": "Accepted"})
        assert retry.result()[0] == 200
        status, _, again = send("reset", {"type": "Soft"}, "a").result()
        assert (status, again["command_id"]) == (504, body["command_id"])  # the first outcome, not a second Reset
        probe = pool.submit(command, api_port, token, f"{base}/clear-cache")
        probe_call = charger.next_call()
        assert probe_call[2] == "ClearCache"  # nothing was sent in between: no second Reset, no second refused command
        charger.answer(probe_call[1], {"status": "Accepted"})
        assert probe.result()[0] == 200
    finally:
        pool.shutdown(wait=False)
        charger.close()


def walk(records):
    for record in records:
        yield record
        yield from walk(record.get("children", []))


def test_metrics_count_the_ocpp_messages_each_charger_sent_by_action(ocpp_gateway):
    api_port, ocpp_port, token = ocpp_gateway
    charge_point = ChargePointThread(f"ws://127.0.0.1:{ocpp_port}/ocpp/CP-M")  # BootNotification, then StatusNotification
    try:
        def counted():
            charge_point.run(charge_point.cp.heartbeat())
            with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=5) as response:
                lines = response.read().decode().splitlines()
            found = {line.split()[0]: float(line.split()[1]) for line in lines if line.startswith("egw_ocpp_messages_total{") and 'charger="CP-M"}' in line}
            return found if found.get('egw_ocpp_messages_total{action="Heartbeat",charger="CP-M"}') else None  # counts go out every 5 s

        found = wait_until(counted, timeout=30, interval=0.5, what="CP-M's messages on /metrics")  # labels come sorted by name
        assert found['egw_ocpp_messages_total{action="BootNotification",charger="CP-M"}'] == 1
        assert found['egw_ocpp_messages_total{action="StatusNotification",charger="CP-M"}'] >= 1
    finally:
        charge_point.close()
