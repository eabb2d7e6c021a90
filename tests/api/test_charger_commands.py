"""Charger commands end to end: REST -> API actor -> charger actor -> OCPP -> a simulated charge point.

The tree holds the real OCPP family (listener + chargers supervisor, charger actors
created on connect) and the API actor; the charge point is the project's simulator
running the "remote" scenario (boot, wait for RemoteStart, charge, wait for RemoteStop).
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from actors.api.actor import api_child_spec
from actors.api.token import load_or_create_token
from actors.ocpp.specs import ocpp_child_specs
from simulators.charger.scenarios import Options, Session
from supervisor.spec import Heartbeat, SupervisorSpec
from tests.api.test_actor import http, http_ok
from tests.conftest import free_port, wait_until
from supervisor.embedded import start_root


@pytest.fixture
def ocpp_gateway(multiproc_system, tmp_path):
    data_dir = tmp_path / "data"
    api_port, ocpp_port = free_port(), free_port()
    token = load_or_create_token(data_dir)
    config = {"data_dir": str(data_dir), "api_host": "127.0.0.1", "api_port": api_port, "ocpp_host": "127.0.0.1", "ocpp_port": ocpp_port,
              "ocpp_unknown_chargers": "accept", "ocpp_call_timeout": 5.0}
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


class ChargePointThread:
    """A simulated charge point in its own event loop: connected, booted, connector 1 Available."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.session = Session(Options(url=url))
        self.cp = self.run(self._open())

    def run(self, coro, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _open(self):
        cp = await self.session.open()
        assert (await cp.boot()).status == "Accepted"
        await cp.status(1, "Available")
        return cp

    def close(self) -> None:
        self.run(self.session.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


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
        active = wait_until(lambda: [t for t in http(api_port, "/api/transactions?charger=CP-7")[2]["transactions"] if t["state"] == "Active"], timeout=15, what="an active session")
        assert [t["id"] for t in active] == [transaction_id] and active[0]["id_tag"] == "TAG9" and active[0]["connector"] == 1
        charge_point.run(cp.meter(1, transaction_id, 1500.0, power_w=7000.0))

        status, _, body = http(api_port, "/api/chargers/CP-7/remote-stop", "POST", {"transactionId": transaction_id}, token=token, timeout=15)
        assert status == 200 and body["status"] == "Accepted"
        finished = wait_until(lambda: (t := http(api_port, f"/api/transactions/{transaction_id}")[2]) and t["state"] != "Active" and t, timeout=15, what="the session finished")
        assert finished["stop"] is not None
        assert {m["measurand"] for m in finished["meter_values"]} >= {"Energy.Active.Import.Register"}
        assert finished["energy_wh"] == 1500
        status, _, body = http(api_port, "/api/chargers/CP-7/remote-stop", "POST", {"transactionId": transaction_id}, token=token, timeout=15)
        assert status == 409 and body["error"] == "rejected" and body["status"] == "Rejected"  # the charger's own answer, as a conflict
    finally:
        charge_point.close()
