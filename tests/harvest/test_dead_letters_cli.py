"""A batch the receiver refuses for good, seen and sent again by an operator with `egw outbox`, on a real gateway."""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.request

from tests.api.test_actor import http, http_ok
from tests.conftest import EGW, wait_until
from tests.harvest.test_power_cut import committed, receiver_items, receiver_process, simulators, start_gateway, stop, write_config


def egw(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*EGW, *args], env=env, capture_output=True, text=True, timeout=60)


def test_an_operator_lists_a_refused_batch_and_sends_it_again(tmp_path, gateway_env):
    db = tmp_path / "data" / "egw.db"
    with simulators(("inv1",)) as sims, receiver_process(tmp_path) as url:
        faults = url.replace("/batches", "/faults")
        urllib.request.urlopen(urllib.request.Request(faults, data=json.dumps({"mode": "reject"}).encode(), method="POST"), timeout=5)
        config = tmp_path / "gateway.toml"
        write_config(config, sims, url)
        proc = start_gateway(config, gateway_env, tmp_path / "gateway.log")
        port = int(gateway_env["EGW_API_PORT"])
        try:
            wait_until(lambda: http_ok(port, "/api/health"), timeout=40, what="the API")
            letters = wait_until(lambda: http(port, "/api/outbox/dead-letters")[2]["dead_letters"], timeout=40, what="the refused batch parked")
            assert letters[0]["transport"] == "cloud" and letters[0]["http_status"] == 422 and "injected permanent rejection" in letters[0]["error"]
            parked = letters[0]["items"]
            listed = egw("outbox", "dead-letters", env=gateway_env)
            assert listed.returncode == 0 and "cloud" in listed.stdout and "422" in listed.stdout, listed
            # the streams behind it went on: newer readings reach the receiver while the batch is parked
            wait_until(lambda: (r := receiver_items(tmp_path / "receiver.db", "inv1")) and r[-1][0] > parked, timeout=40, what="newer readings delivered")
            assert receiver_items(tmp_path / "receiver.db", "inv1")[0][0] > 1  # seq 1.. are in the parked batch
            refused = egw("outbox", "resend", "cloud", "--token", "wrong", env=gateway_env)
            assert refused.returncode == 1 and "token" in refused.stderr.lower()
            done = egw("outbox", "resend", "cloud", env=gateway_env)
            assert done.returncode == 0 and "1 dead letter(s) of cloud queued" in done.stdout, done
            wait_until(lambda: http(port, "/api/outbox/dead-letters")[2]["dead_letters"] == [], timeout=40, what="the dead letter delivered")
            seqs = [i[0] for i in receiver_items(tmp_path / "receiver.db", "inv1")]
            last = committed(db)["inv1"]
            wait_until(lambda: len(s := [i[0] for i in receiver_items(tmp_path / "receiver.db", "inv1")]) >= last and s, timeout=40, what="everything delivered")
            seqs = [i[0] for i in receiver_items(tmp_path / "receiver.db", "inv1")]
            assert seqs[:last] == list(range(1, last + 1))  # the parked items arrived, each once
            status = json.loads(urllib.request.urlopen(url.replace("/batches", "/status"), timeout=5).read())
            assert status["chain_breaks"] == 0
            assert stop(proc) == 0
        finally:
            with contextlib.suppress(Exception):
                stop(proc)
