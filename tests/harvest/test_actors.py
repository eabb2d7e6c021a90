"""The harvest and transport actors under thespian's simpleSystemBase, with the real receiver."""

from __future__ import annotations

import time

import pytest
from thespian.actors import ActorExitRequest, ActorSystem

from actors.harvest.messages import BatchAck, Reading, ReadingBatch
from actors.harvest.rejections import BatchRejected
from actors.harvest.specs import harvest_child_specs
from simulators.ingest import IngestServerThread
from storage.identity import load_or_create_signer
from storage.outbox import Outbox
from supervisor.messages import Start, Started, StatusUpdate
from supervisor.spec import SUPERVISOR_ACTOR
from supervisor.embedded import ask_typed


@pytest.fixture
def asys():
    system = ActorSystem("simpleSystemBase", transientUnique=True)
    yield system
    system.shutdown()



def batch(batch_id, device="inv1", start=0, count=3):
    return ReadingBatch("inv1-poller", batch_id, tuple(Reading(device, 1000.0 + i, 10.0 + i, "b", {"ac_power_w": 1.0 * i}) for i in range(start, start + count)))


def test_harvest_commits_before_acking_and_answers_a_resend_with_the_same_seqs(asys, tmp_path):
    harvest = asys.createActor("actors.harvest.actor.HarvestActor")
    ask_typed(asys, harvest, Start("harvest", {"db_path": str(tmp_path / "egw.db")}), Started)

    ack = ask_typed(asys, harvest, batch(1), BatchAck)
    assert ack == BatchAck("inv1-poller", 1, {"inv1": 1})
    # the ack means committed: another connection sees the rows right now
    reader = Outbox.open(tmp_path / "egw.db")
    assert reader.conn.execute("SELECT count(*) FROM outbox_items").fetchone()[0] == 3
    assert ask_typed(asys, harvest, batch(1), BatchAck).first_seq == {"inv1": 1}  # re-send: no new rows
    assert ask_typed(asys, harvest, batch(2, start=3), BatchAck).first_seq == {"inv1": 4}
    assert reader.conn.execute("SELECT count(*) FROM outbox_items").fetchone()[0] == 6
    reader.close()


def test_harvest_refuses_a_malformed_batch_precisely_stores_nothing_and_stays_up(asys, tmp_path):
    harvest = asys.createActor("actors.harvest.actor.HarvestActor")
    ask_typed(asys, harvest, Start("harvest", {"db_path": str(tmp_path / "egw.db")}), Started)
    bad = ReadingBatch("p", 1, (Reading("inv1", float("nan"), 1.0, "b", {}),))
    rejected = ask_typed(asys, harvest, bad, BatchRejected)
    assert rejected.reason == "readings[0].wall_time: not a finite number"
    reserved = ReadingBatch("p", 2, (Reading("_gateway", 1.0, 1.0, "b", {}),))
    assert "device_id" in ask_typed(asys, harvest, reserved, BatchRejected).reason
    assert ask_typed(asys, harvest, batch(3), BatchAck).first_seq == {"inv1": 1}  # still up, nothing stored before


def test_transport_actor_uploads_the_backlog_and_publishes_its_state(asys, tmp_path):
    signer = load_or_create_signer(tmp_path)
    outbox = Outbox.open(tmp_path / "egw.db")
    for n in range(5):
        outbox.ingest(batch(n, start=n * 100, count=100))
    with IngestServerThread(tmp_path / "receiver.db") as receiver:
        receiver.call(receiver.app.store.register, signer.public_key_pem())
        transport = asys.createActor("actors.harvest.transport.TransportActor")
        config = {"db_path": str(tmp_path / "egw.db"), "data_dir": str(tmp_path), "gateway_id": "gw1", "transport": {"name": "cloud", "url": receiver.url, "max_count": 120}}
        ask_typed(asys, transport, Start("cloud", config), Started)
        updates = []
        deadline = time.monotonic() + 10
        while receiver.call(lambda: receiver.app.store.summary()["items"]) < 500 or not any(u.info.get("backlog") == 0 for u in updates):
            assert time.monotonic() < deadline, f"backlog not uploaded; updates: {updates[-3:]}"
            msg = asys.listen(0.05)
            if isinstance(msg, StatusUpdate):
                updates.append(msg)
        items = receiver.call(receiver.app.store.items, "gw1", "inv1")
        assert [i["seq"] for i in items] == list(range(1, 501))
        assert updates[-1].state == "running" and updates[-1].info["last_success"] is not None
    assert outbox.status()["items"] == 0
    outbox.close()


def test_child_specs_name_harvest_and_one_transport_per_endpoint_under_a_supervisor(tmp_path):
    specs = harvest_child_specs(
        {"data_dir": str(tmp_path), "uploads": [{"name": "cloud", "url": "https://ingest.example/v1/batches"}, {"name": "backup", "url": "http://10.0.0.2/v1/batches", "timeout_s": 2.0}], "upload_batch_max": 500, "outbox_budget_mb": 64}
    )
    assert [s.name for s in specs] == ["harvest", "transports"]
    assert specs[0].config["budget_bytes"] == 64 * 2**20 and specs[0].config["db_path"] == str(tmp_path / "egw.db")
    assert specs[1].actor == SUPERVISOR_ACTOR
    children = specs[1].config.children
    assert [c.name for c in children] == ["cloud", "backup"]
    assert children[1].config["transport"] == {"max_count": 500, "max_bytes": 512 * 1024, "name": "backup", "url": "http://10.0.0.2/v1/batches", "timeout_s": 2.0}
    with pytest.raises(ValueError, match="unknown settings"):
        harvest_child_specs({"data_dir": str(tmp_path), "uploads": [{"name": "x", "url": "http://h/", "retries": 3}]})


class _SilentReceiver:
    """An HTTP server that accepts an upload and does not answer until released."""

    def __init__(self) -> None:
        import socket
        import threading

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1/batches"
        self.received, self.release, self.hung_up = threading.Event(), threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.recv(65536)
        self.received.set()
        self.release.wait(30)
        conn.close()  # no reply at all: the upload fails and is retried later
        self.hung_up.set()

    def close(self) -> None:
        self.release.set()
        self.listener.close()


def test_a_transport_keeps_answering_its_supervisor_while_an_upload_hangs(asys, tmp_path):
    """The receiver takes the batch and never answers: the upload runs on the transport's
    worker thread, so heartbeats are answered meanwhile and the transport is not killed as hung."""
    from supervisor.messages import Ping, Pong

    outbox = Outbox.open(tmp_path / "egw.db")
    outbox.ingest(batch(1, count=10))
    receiver = _SilentReceiver()
    try:
        transport = asys.createActor("actors.harvest.transport.TransportActor")
        config = {"db_path": str(tmp_path / "egw.db"), "data_dir": str(tmp_path), "gateway_id": "gw1",
                  "transport": {"name": "cloud", "url": receiver.url, "jitter": 0.0, "timeout_s": 30.0}}
        ask_typed(asys, transport, Start("cloud", config), Started)
        deadline = time.monotonic() + 10
        while not receiver.received.is_set():  # let the first step's timer fire
            assert time.monotonic() < deadline, "the upload never started"
            asys.listen(0.05)
        for seq in range(3):
            assert ask_typed(asys, transport, Ping(seq), Pong).seq == seq
        assert not receiver.hung_up.is_set()  # ... all while the upload was still open
    finally:
        receiver.close()
        asys.tell(transport, ActorExitRequest())
    assert outbox.status()["transports"]["cloud"]["pending"] == 10  # nothing released without an acknowledgement
    outbox.close()


