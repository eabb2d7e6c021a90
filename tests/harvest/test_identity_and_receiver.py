"""Gateway key handling, JWS batches, and the receiver's verification, chain and de-duplication."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from actors.harvest.messages import Reading, ReadingBatch
from actors.harvest.signing import JwsError, b64url, build_signed_batch, verify_jws
from simulators.ingest.store import BatchRejectedError, IngestStore
from storage.identity import KEY_FILE, PUBLIC_KEY_FILE, load_or_create_signer
from storage.outbox import Outbox, OutboxItem
from tests.harvest.conftest import wait_until


def item(seq, stream="inv1", seq_last=None, kind="reading", body=None):
    return OutboxItem(seq, stream, seq, seq_last or seq, kind, 1000.0 + seq, json.dumps(body or {"v": {"n": seq}}), 10)


def test_the_key_is_created_once_private_and_its_serial_is_stable(tmp_path):
    signer = load_or_create_signer(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / KEY_FILE).st_mode) == 0o600
    assert (tmp_path / PUBLIC_KEY_FILE).read_bytes() == signer.public_key_pem()
    again = load_or_create_signer(tmp_path)
    assert again.key_id == signer.key_id and again.key_id.startswith("egw-") and len(again.key_id) == 20
    os.chmod(tmp_path / KEY_FILE, 0o644)
    load_or_create_signer(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / KEY_FILE).st_mode) == 0o600  # tightened on load
    assert load_or_create_signer(tmp_path / "other").key_id != signer.key_id


def test_a_signed_batch_verifies_and_any_tampering_is_detected(tmp_path):
    signer = load_or_create_signer(tmp_path)
    batch = build_signed_batch(signer, "gw1", None, [item(1), item(2, seq_last=5, kind="aggregate")])
    payload = verify_jws(batch.jws, signer.public_key_pem())
    assert payload["gateway"] == "gw1" and payload["kid"] == signer.key_id and payload["prev"] is None
    assert [(i["s"], i["q"], i["ql"], i["k"]) for i in payload["items"]] == [("inv1", 1, 1, "reading"), ("inv1", 2, 5, "aggregate")]
    assert batch.max_seq == {"inv1": 5}
    header, body, sig = batch.jws.split(".")
    forged = json.loads(__import__("base64").urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged["items"][0]["x"]["v"]["n"] = 999
    with pytest.raises(JwsError, match="does not verify"):
        verify_jws(f"{header}.{b64url(json.dumps(forged).encode())}.{sig}", signer.public_key_pem())
    with pytest.raises(JwsError, match="does not verify"):
        verify_jws(batch.jws, load_or_create_signer(tmp_path / "x").public_key_pem())
    with pytest.raises(JwsError, match="three parts"):
        verify_jws("abc.def", signer.public_key_pem())


@pytest.fixture
def store_and_signer(tmp_path):
    store = IngestStore(tmp_path / "r.db")
    signer = load_or_create_signer(tmp_path / "gw")
    store.register(signer.public_key_pem())
    yield store, signer
    store.close()


def test_receiver_deduplicates_and_acks_the_highest_contiguous_seq(store_and_signer):
    store, signer = store_and_signer
    b1 = build_signed_batch(signer, "gw1", None, [item(1), item(2)])
    r1 = store.ingest(b1.jws)
    assert r1.acked == {"inv1": 2} and r1.stored == 2 and r1.chain_ok
    b3 = build_signed_batch(signer, "gw1", b1.batch_hash, [item(4), item(5)])  # seq 3 missing
    assert store.ingest(b3.jws).acked == {"inv1": 2}
    b2 = build_signed_batch(signer, "gw1", b3.batch_hash, [item(2), item(3)])  # 2 again, 3 fills the hole
    r2 = store.ingest(b2.jws)
    assert r2.acked == {"inv1": 5} and r2.stored == 1 and r2.duplicates == 1
    assert [i["seq"] for i in store.items("gw1", "inv1")] == [1, 2, 3, 4, 5]
    assert store.summary()["chain_breaks"] == 0


def test_receiver_counts_a_chain_break_when_a_batch_names_an_unknown_predecessor(store_and_signer):
    store, signer = store_and_signer
    store.ingest(build_signed_batch(signer, "gw1", None, [item(1)]).jws)
    result = store.ingest(build_signed_batch(signer, "gw1", "ab" * 32, [item(2)]).jws)
    assert not result.chain_ok and result.acked == {"inv1": 2}
    assert store.summary()["chain_breaks"] == 1


def test_receiver_refuses_unknown_keys_bad_signatures_and_malformed_payloads_precisely(store_and_signer, tmp_path):
    store, signer = store_and_signer
    stranger = load_or_create_signer(tmp_path / "stranger")
    with pytest.raises(BatchRejectedError, match="unknown gateway key id") as unknown:
        store.ingest(build_signed_batch(stranger, "gw1", None, [item(1)]).jws)
    assert unknown.value.status == 401
    with pytest.raises(BatchRejectedError, match="malformed JWS header") as garbage:
        store.ingest("not a jws")
    assert garbage.value.status == 400
    bad_seq = build_signed_batch(signer, "gw1", None, [item(1)])
    header, _body, _sig = bad_seq.jws.split(".")
    payload = {"v": 1, "gateway": "gw1", "kid": signer.key_id, "prev": None, "items": [{"s": "inv1", "q": 0, "ql": 0, "k": "reading", "w": 1.0, "x": {}}]}
    signing_input = f"{header}.{b64url(json.dumps(payload).encode())}"
    jws = f"{signing_input}.{b64url(signer.sign_es256(signing_input.encode()))}"
    with pytest.raises(BatchRejectedError, match=r"payload.items\[0\]: seq must be integers"):
        store.ingest(jws)
    assert store.summary()["items"] == 0  # nothing stored from any refused batch
    store.ingest(build_signed_batch(signer, "gw1", None, [item(1)]).jws)
    with pytest.raises(BatchRejectedError, match="belongs to gateway 'gw1'") as other:
        store.ingest(build_signed_batch(signer, "gw2", None, [item(2)]).jws)
    assert other.value.status == 409


def test_the_receiver_runs_as_a_command_and_answers_over_http(tmp_path):
    signer = load_or_create_signer(tmp_path / "gw")
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.ingest", "--port", "0", "--db", str(tmp_path / "r.db"), "--key", str(tmp_path / "gw" / PUBLIC_KEY_FILE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        while "listening" not in line:
            line = proc.stdout.readline()
            assert line, "receiver exited before listening"
        url = json.loads(line)["listening"]
        outbox = Outbox.open(tmp_path / "gw" / "egw.db")
        outbox.register_transport("t", 10)
        outbox.ingest(ReadingBatch("p", 1, tuple(Reading("inv1", 1000.0 + i, float(i), "b", {"n": i}) for i in range(3))))
        batch = build_signed_batch(signer, "gw1", None, outbox.pending("t", 10, 10**6))
        with urllib.request.urlopen(urllib.request.Request(url, data=batch.jws.encode()), timeout=5) as reply:
            assert json.loads(reply.read())["acked"] == {"inv1": 3}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, data=b"garbage"), timeout=5)
        assert refused.value.code == 400 and "malformed JWS" in json.loads(refused.value.read())["error"]
        status = json.loads(urllib.request.urlopen(url.replace("/batches", "/status"), timeout=5).read())
        assert status["items"] == 3 and status["requests"] == 2
    finally:
        proc.terminate()
        wait_until(lambda: proc.poll() is not None, what="receiver exit")
        proc.stdout.close()
