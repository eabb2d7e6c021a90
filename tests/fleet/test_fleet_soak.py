"""Soak: a small fleet uploading while workers are SIGKILLed and replaced and the broker restarts, again and again."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import wait_until
from tests.fleet.conftest import register
from tests.fleet.test_fleet_mqtt import STREAMS, _items


@pytest.mark.soak
def test_fleet_through_repeated_worker_kills_and_broker_restarts_stores_every_item_once(fleet_db, dsn, broker, workers, gateways) -> None:
    pool = [workers(dsn, broker.url), workers(dsn, broker.url)]
    for worker in pool:
        worker.ready()
    fleet = [gateways(f"gw-soak-{n}", broker.url, max_count=25, timeout_s=2.0) for n in range(4)]
    for gateway in fleet:
        register(dsn, gateway)
        gateway.produce(STREAMS, 1000)  # 5,000 items, 200 batches per gateway
    errors: list[BaseException] = []

    def drain(gateway) -> None:
        try:
            gateway.drain(timeout=240)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(g,)) for g in fleet]
    for t in threads:
        t.start()
    chaos = 0
    for round_number in range(6):
        before = _items(fleet_db)[0]
        if before >= 20_000:
            break
        chaos += 1
        wait_until(lambda b=before: _items(fleet_db)[0] > b or all(not t.is_alive() for t in threads), timeout=60, what=f"progress before round {round_number + 1}")
        if round_number % 2 == 0:
            victim = pool.pop(0)
            victim.kill()
            pool.append(workers(dsn, broker.url).ready())
        else:
            broker.stop()
            broker.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[0]
    assert chaos >= 4  # the failures really happened mid-stream
    assert _items(fleet_db) == (20_000, 20_000)
    assert all(g.pending() == 0 for g in fleet)
    status = pool[-1].get("/v1/status")
    assert {g["gateway"]: {s: v["acked"] for s, v in g["streams"].items()} for g in status["gateways"]} == {g.name: dict.fromkeys(STREAMS, 1000) for g in fleet}
