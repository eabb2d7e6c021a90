"""The OCPP family as real actors in a real multiprocess actor system: listener, chargers
supervisor, one charger actor per charger, and the harvest actor receiving the exports."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time

from actors.harvest.specs import harvest_child_specs
from actors.ocpp.specs import ocpp_child_specs
from simulators.charger.chargepoint import SimulatedChargePoint
from simulators.charger.connection import connect
from storage import ocpp_transactions as tx_store
from storage.db import connect as db_connect
from supervisor.messages import GetTree, Tree
from supervisor.spec import Backoff, Heartbeat, SupervisorSpec
from tests.conftest import ask_typed, free_port, wait_until
from supervisor.embedded import start_root

FAST = Backoff(min_delay=0.01, max_delay=0.2, factor=2.0, jitter=0.1, reset_after=60)


def start_gateway(asys, tmp_path):
    port = free_port()
    values = {"data_dir": str(tmp_path), "uploads": [], "ocpp_host": "127.0.0.1", "ocpp_port": port,
              "ocpp_unknown_chargers": "accept", "live_metrics_db_interval": 0.0, "ocpp_call_timeout": 5.0}
    spec = SupervisorSpec(children=tuple(harvest_child_specs(values) + ocpp_child_specs(values)), backoff=FAST,
                          heartbeat=Heartbeat(interval=0.5, timeout=10.0))
    root = start_root(asys, spec)
    return root, port


def tree(asys, root) -> dict[str, dict]:
    flat: dict[str, dict] = {}

    def walk(nodes, prefix):
        for node in nodes:
            flat[prefix + node["name"]] = node
            walk(node["children"], prefix + node["name"] + "/")

    walk(ask_typed(asys, root, GetTree(), Tree).records, "")
    return flat


def running(asys, root, path):
    node = tree(asys, root).get(path)
    return node if node and node["state"] == "running" and node["pid"] else None


def test_sigkilled_charger_actor_mid_session_keeps_the_transaction(multiproc_system, tmp_path):
    asys = multiproc_system
    root, port = start_gateway(asys, tmp_path)
    wait_until(lambda: running(asys, root, "ocpp") and running(asys, root, "harvest"), what="listener and harvest running")
    url = f"ws://127.0.0.1:{port}/ocpp/CP1"

    async def session():
        conn = await connect(url)
        cp = SimulatedChargePoint("CP1", conn, response_timeout=5)
        reader = asyncio.create_task(cp.start())
        assert (await cp.boot()).status == "Accepted"
        transaction_id = await cp.start_transaction(1, "ALICE", meter_start=100)
        await cp.meter(1, transaction_id, 600, 7000.0)
        before = await asyncio.to_thread(wait_until, lambda: running(asys, root, "chargers/CP1"), what="charger actor")
        os.kill(before["pid"], signal.SIGKILL)
        after = await asyncio.to_thread(
            wait_until, lambda: (n := running(asys, root, "chargers/CP1")) and n["pid"] != before["pid"] and n, what="charger actor restarted")
        assert after["restarts"] == 1
        # the restarted actor re-attaches to the live websocket: the next frames are answered
        deadline = time.monotonic() + 10
        while True:
            try:
                await cp.meter(1, transaction_id, 1100, 6900.0)
                break
            except asyncio.TimeoutError:  # a frame in flight to the killed actor; the charger repeats it
                assert time.monotonic() < deadline
        reply = await cp.stop_transaction(transaction_id, 1600, reason="Local")
        assert reply is not None
        ping = await cp.heartbeat()
        assert ping.current_time
        reader.cancel()
        await conn.close()
        return transaction_id, before["pid"], after["pid"]

    transaction_id, old_pid, new_pid = asyncio.run(session())
    db = db_connect(tmp_path / "egw.db")
    tx = tx_store.get_transaction(db, transaction_id)
    assert tx["status"] == "Finished" and tx["energy_wh"] == 1500 and tx["unknown_start"] is False
    assert len(tx_store.list_transactions(db, charger="CP1")) == 1
    # the session and its samples reached the outbox through the harvest actor
    rows = wait_until(lambda: db.execute("SELECT body FROM outbox_items WHERE stream = 'charger:CP1'").fetchall(), what="exports in outbox")
    wait_until(lambda: not tx_store.pending_exports(db, "CP1"), what="export queue drained")
    bodies = [json.loads(r[0]) for r in db.execute("SELECT body FROM outbox_items WHERE stream = 'charger:CP1'")]
    assert rows and any(b.get("v", {}).get("session_energy_wh") == 1500 for b in bodies), bodies[:3]
    db.close()
    assert old_pid != new_pid


def test_listener_refuses_bad_credentials_and_serves_two_chargers(multiproc_system, tmp_path):
    asys = multiproc_system
    root, port = start_gateway(asys, tmp_path)
    wait_until(lambda: running(asys, root, "ocpp"), what="listener running")

    async def two():
        a = SimulatedChargePoint("A", await connect(f"ws://127.0.0.1:{port}/ocpp/A"), response_timeout=5)
        b = SimulatedChargePoint("B", await connect(f"ws://127.0.0.1:{port}/ocpp/B"), response_timeout=5)
        tasks = [asyncio.create_task(a.start()), asyncio.create_task(b.start())]
        assert (await a.boot()).status == "Accepted" and (await b.boot()).status == "Accepted"
        assert (await a.heartbeat()).current_time and (await b.heartbeat()).current_time
        for t in tasks:
            t.cancel()
        await a._connection.close()
        await b._connection.close()

    asyncio.run(two())
    wait_until(lambda: "chargers/A" not in tree(asys, root), what="charger actor stopped after disconnect")
    db = sqlite3.connect(tmp_path / "egw.db")
    assert {r[0] for r in db.execute("SELECT charge_point_id FROM chargers")} == {"A", "B"}
    db.close()


def test_central_command_through_the_charger_actor(multiproc_system, tmp_path):
    """What the REST API does: look the charger actor up, send ChargerCommand, get CommandOutcome."""
    from actors.ocpp.messages import ChargerCommand, CommandOutcome, RemoteStartTransaction
    from supervisor.messages import Lookup, LookupResult

    asys = multiproc_system
    root, port = start_gateway(asys, tmp_path)
    wait_until(lambda: running(asys, root, "ocpp"), what="listener running")

    async def scenario():
        cp = SimulatedChargePoint("CMD1", await connect(f"ws://127.0.0.1:{port}/ocpp/CMD1"), response_timeout=5)
        reader = asyncio.create_task(cp.start())
        assert (await cp.boot()).status == "Accepted"

        def command():
            address = ask_typed(asys, root, Lookup("chargers/CMD1"), LookupResult).address
            assert address is not None
            return ask_typed(asys, address, ChargerCommand(RemoteStartTransaction(id_tag="API", connector_id=1), "req-1"), CommandOutcome, timeout=10)

        outcome = await asyncio.to_thread(command)
        assert (outcome.request_id, outcome.outcome, outcome.payload) == ("req-1", "result", {"status": "Accepted"})
        assert (await cp.wait_for("RemoteStartTransaction"))["id_tag"] == "API"
        deadline = time.monotonic() + 10
        while cp.transactions.get(1, -1) < 0:  # the charger started the session and got its id
            assert time.monotonic() < deadline, "no StartTransaction answered"
            await asyncio.sleep(0.02)
        reader.cancel()
        await cp._connection.close()

    asyncio.run(scenario())
    db = db_connect(tmp_path / "egw.db")
    wait_until(lambda: tx_store.list_transactions(db, charger="CMD1"), what="remote-started transaction stored")
    db.close()
