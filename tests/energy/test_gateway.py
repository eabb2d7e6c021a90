"""End to end: the energy actor in a real actor tree steers a simulated car over a real OCPP websocket.

The charger refuses profiles above stack level 0 (as some real ones do): the first
limit is refused and the fallback one accepted, which REST shows and the store
remembers for that charger model. A mode change over REST (with the token) takes effect
at the charger: `off` is a 0 A limit the car pauses at, `now` clears our profile and the
car charges at its own maximum, which its MeterValues then report back.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request

from actors.api.actor import api_child_spec
from actors.energy.specs import energy_children
from actors.ocpp.specs import ocpp_child_specs
from simulators.charger.scenarios import Options, ScenarioResult, Session, plug_in_and_charge
from storage import loadpoints as store
from storage.db import connect
from supervisor.embedded import start_root
from supervisor.spec import Heartbeat, SupervisorSpec
from tests.api.test_charger_commands import LoopThread, http_ok, port_open
from tests.conftest import free_port, wait_until
from storage.api_token import load_or_create_token

CHARGER = "CP-SOLAR"


def api(port: int, method: str, path: str, body=None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode() if body is not None else None,
                                     method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def loadpoint_event(api_port: int, token: str, loadpoint: str) -> dict:
    """The first event of topic loadpoint/<id> on the live feed's websocket."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(f"ws://127.0.0.1:{api_port}/api/live?token={token}") as ws:
        await ws.send_json({"op": "subscribe", "topic": f"loadpoint/{loadpoint}"})
        async for message in ws:
            data = json.loads(message.data)
            if data.get("type") == "event":
                return data
    raise AssertionError("the live feed closed without a loadpoint event")


def test_a_limit_reaches_the_charger_and_a_mode_change_over_rest_takes_effect(multiproc_system, tmp_path):
    data_dir = tmp_path / "data"
    api_port, ocpp_port = free_port(), free_port()
    token = load_or_create_token(data_dir)
    config = {"data_dir": str(data_dir), "api_host": "127.0.0.1", "api_port": api_port, "ocpp_host": "127.0.0.1", "ocpp_port": ocpp_port,
              "ocpp_unknown_chargers": "accept", "ocpp_call_timeout": 5.0, "energy_interval": 1.0,
              "loadpoints": [{"id": "garage", "charger": CHARGER, "grid_meter": "grid", "mode": "off", "phases": "3"}], "devices": [{"id": "grid"}]}
    spec = SupervisorSpec(children=(*ocpp_child_specs(config), *energy_children(config), api_child_spec(config)), heartbeat=Heartbeat(0.5, 5.0))
    start_root(multiproc_system, spec)
    wait_until(lambda: http_ok(api_port, "/api/hello"), timeout=15, what="the API serving")
    wait_until(lambda: port_open(ocpp_port), timeout=15, what="the OCPP listener")

    loop = LoopThread()
    session = Session(Options(url=f"ws://127.0.0.1:{ocpp_port}/ocpp/{CHARGER}", samples=100_000, interval=0.5, reject_profiles=("level0_only",)))
    stop = asyncio.Event()

    async def plug_in():
        cp = await session.open()
        cp.reject_profiles = session.options.reject_profiles  # before it boots: the energy manager may send a limit at once
        assert (await cp.boot(model="SimCar")).status == "Accepted"
        await cp.status(1, "Available")
        return cp

    cp = loop.run(plug_in())
    charging = asyncio.run_coroutine_threadsafe(plug_in_and_charge(cp, session.options, ScenarioResult("car", CHARGER), stop), loop.loop)
    try:
        # mode off: a 0 A TxDefaultProfile; refused at stack level 8, accepted at 0; the car pauses
        wait_until(lambda: cp.effective_limit(1) == (0.0, 3), timeout=20, what="the 0 A limit installed at the charger")
        assert [p["cs_charging_profiles"]["stack_level"] for p in cp.received["SetChargingProfile"]][:2] == [8, 0]
        view = wait_until(lambda: (v := api(api_port, "GET", "/api/loadpoints/garage")[1]).get("accepted") and v["charger_state"]["transaction_id"] and v,
                          timeout=10, what="REST showing the limit accepted during the session")
        assert view["state"] == "running" and view["mode"] == "off" and view["decision"]["reason"] == "mode off: 0 A limit"
        assert view["limit_sent"]["variant"] == "tx_default_level0" and view["limit_sent"]["answer"] == "Accepted"
        assert view["charger_state"]["transaction_id"] == cp.transactions[1]
        wait_until(lambda: cp.car_power_w() == 0.0, timeout=10, what="the car pausing")
        wait_until(lambda: (api(api_port, "GET", "/api/loadpoints/garage")[1].get("composite_schedule") or {}).get("status") == "Accepted",
                   timeout=10, what="the composite schedule read back")
        conn = connect(data_dir / "egw.db")
        assert store.variant_for(conn, "egw-sim/SimCar") == ("tx_default_level0", False)

        # mode now over REST, with the token: our profile cleared, the car at its own 16 A on 3 phases
        assert api(api_port, "PUT", "/api/loadpoints/garage/mode", {"mode": "now"})[0] == 401
        status, answer = api(api_port, "PUT", "/api/loadpoints/garage/mode", {"mode": "now"}, token=token)
        assert status == 200 and answer["applied"] is True and answer["loadpoint"]["mode"] == "now"
        assert answer["loadpoint"]["decision"]["managed"] is False
        wait_until(lambda: cp.received["ClearChargingProfile"], timeout=10, what="ClearChargingProfile at the charger")
        assert cp.received["ClearChargingProfile"][-1]["id"] == 7101 and cp.effective_limit(1) == (None, 3)
        wait_until(lambda: cp.car_power_w() == 16 * 230 * 3, timeout=10, what="the car charging at full power")
        view = wait_until(lambda: (v := api(api_port, "GET", "/api/loadpoints/garage")[1])["charger_state"]["power_w"] == 11040.0 and v,
                          timeout=15, what="the car's power reported back over MeterValues")
        assert view["accepted"] and view["mode_source"] == "rest" and store.modes(conn) == {"garage": "now"}
        conn.close()

        # the live feed's loadpoint topic carries each decision as REST shows it
        event = loop.run(loadpoint_event(api_port, token, "garage"), timeout=15)
        assert event["topic"] == "loadpoint/garage" and event["kind"] == "loadpoint"
        assert event["data"]["mode"] == "now" and event["data"]["decision"]["reason"].startswith("mode now: full power")
    finally:
        loop.loop.call_soon_threadsafe(stop.set)
        charging.result(20)
        loop.run(session.close())
        loop.stop()
