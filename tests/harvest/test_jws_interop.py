"""The hand-written ES256 JWS (actors.harvest.signing) against an independent JOSE library (joserfc).

A receiver elsewhere will verify the gateway's batches with whatever JOSE library its
language has, so what the gateway signs must verify there, with the public key as the
gateway publishes it (the key file, `/api/crypto`'s PEM and its raw point); and the
gateway's own verifiers (`verify_jws`, the ingest simulator's store) must accept the
library's ES256 tokens and refuse everything the library refuses: a tampered payload,
another key, `alg: none`, HS256 keyed with the public key, a truncated or DER-encoded
signature, and base64url that is not the one canonical text of the signed bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from actors.api.stores import identity_view
from actors.harvest.signing import JWS_TYPE, JwsError, b64url, build_signed_batch, verify_jws
from simulators.ingest.store import BatchRejectedError, IngestStore
from storage.identity import KEY_FILE, PUBLIC_KEY_FILE, load_or_create_signer
from storage.outbox import OutboxItem


def item(seq: int, stream: str = "pv-roof", body: dict | None = None) -> OutboxItem:
    text = json.dumps(body or {"v": {"ac_power_w": 1000.0 + seq, "energy_total_wh": 5_000_000 + seq}})
    return OutboxItem(seq, stream, seq, seq, "reading", 1_760_000_000.0 + seq, text, len(text))


def library_verify(token: str, key: ECKey) -> jws.CompactSignature:
    """What a receiver using joserfc does: ES256 only."""
    return jws.deserialize_compact(token, key, algorithms=["ES256"])


@pytest.fixture
def gateway(tmp_path):
    """A gateway data dir with its key, the receiver that registered it, and a stranger's key."""
    signer = load_or_create_signer(tmp_path / "gw")
    store = IngestStore(tmp_path / "receiver.db")
    store.register(signer.public_key_pem())
    yield signer, store, tmp_path / "gw", load_or_create_signer(tmp_path / "stranger")
    store.close()


def test_batches_the_gateway_signs_verify_with_joserfc_against_each_published_form_of_its_key(gateway):
    signer, _store, data_dir, _stranger = gateway
    published = identity_view(data_dir)  # what GET /api/crypto shows
    point = bytes.fromhex(published["public_key_hex"])  # X9.62 uncompressed: 04 || x || y
    assert point[0] == 4 and len(point) == 65
    keys = {
        "key file": ECKey.import_key((data_dir / PUBLIC_KEY_FILE).read_bytes()),
        "api PEM": ECKey.import_key(published["public_key"]),
        "api point as JWK": ECKey.import_key({"kty": "EC", "crv": "P-256", "x": b64url(point[1:33]), "y": b64url(point[33:])}),
    }
    prev = None
    # ECDSA signatures are random: 300 of them include r or s with leading zero bytes (~1 in 128 each),
    # which a raw r||s encoder must pad to 32 bytes
    for n in range(300):
        batch = build_signed_batch(signer, "site-7", prev, [item(2 * n + 1), item(2 * n + 2, stream="grid-meter")])
        for form, key in keys.items():
            verified = library_verify(batch.jws, key)
            assert verified.protected == {"alg": "ES256", "kid": signer.key_id, "typ": JWS_TYPE}, form
            payload = json.loads(verified.payload)
            assert payload["prev"] == prev and payload["kid"] == published["key_id"] == signer.key_id
            assert [(i["s"], i["q"], i["x"]["v"]["ac_power_w"]) for i in payload["items"]] == [
                ("pv-roof", 2 * n + 1, 1000.0 + 2 * n + 1), ("grid-meter", 2 * n + 2, 1000.0 + 2 * n + 2)]
        prev = batch.batch_hash


def test_es256_tokens_made_by_joserfc_verify_with_the_gateway_and_the_receiver(gateway):
    signer, store, data_dir, _stranger = gateway
    private = ECKey.import_key((data_dir / KEY_FILE).read_bytes())
    prev = None
    for n in range(300):
        payload = verify_jws(build_signed_batch(signer, "site-7", prev, [item(n + 1)]).jws, signer.public_key_pem())
        token = jws.serialize_compact({"alg": "ES256", "kid": signer.key_id, "typ": JWS_TYPE}, json.dumps(payload), private, algorithms=["ES256"])
        assert verify_jws(token, signer.public_key_pem()) == payload
        result = store.ingest(token)
        assert result.chain_ok and result.stored == 1 and result.acked == {"pv-roof": n + 1}
        prev = result.batch
    assert [row["seq"] for row in store.items("site-7", "pv-roof")] == list(range(1, 301))


def raw_signature(private: ec.EllipticCurvePrivateKey, signing_input: str) -> bytes:
    r, s = decode_dss_signature(private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _forgeries(signer, data_dir, stranger) -> dict[str, str]:
    """Tokens that must not verify against `signer`'s public key, each as a receiver might be handed it."""
    batch = build_signed_batch(signer, "site-7", None, [item(1)])
    header, body, sig = batch.jws.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    tampered["items"][0]["x"]["v"]["energy_total_wh"] = 9_999_999
    raw = base64.urlsafe_b64decode(sig + "==")
    private = serialization.load_pem_private_key((data_dir / KEY_FILE).read_bytes(), password=None)
    der = private.sign(f"{header}.{body}".encode(), ec.ECDSA(hashes.SHA256()))  # a valid signature of the same input, DER instead of raw r||s
    by_stranger = build_signed_batch(stranger, "site-7", None, [item(1)]).jws.split(".")

    def header_with(**fields: object) -> str:
        return b64url(json.dumps({"kid": signer.key_id, "typ": JWS_TYPE, **fields}, separators=(",", ":")).encode())

    crit_input = f"{header_with(alg='ES256', crit=['egw-replay'], **{'egw-replay': True})}.{body}"  # validly signed, with an extension nobody knows
    hs256_header = header_with(alg="HS256")
    hs256_sig = hmac.new(signer.public_key_pem(), f"{hs256_header}.{body}".encode(), hashlib.sha256).digest()
    # the last character of 86 base64url ones carries 2 bits of the signature and 4 unused ones
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    other_tail = alphabet[alphabet.index(sig[-1]) ^ 1]
    return {
        "tampered payload": f"{header}.{b64url(json.dumps(tampered).encode())}.{sig}",
        "signed by another key under the gateway's kid": f"{header}.{body}.{by_stranger[2]}",
        "alg none": f"{header_with(alg='none')}.{body}.",
        "HS256 keyed with the public key": f"{hs256_header}.{body}.{b64url(hs256_sig)}",
        "truncated signature": f"{header}.{body}.{b64url(raw[:-1])}",
        "signature cut in its text": f"{header}.{body}.{sig[:-4]}",
        "DER-encoded signature": f"{header}.{body}.{b64url(der)}",
        "padded signature": f"{header}.{body}.{sig}==",
        "signature with unused bits set": f"{header}.{body}.{sig[:-1]}{other_tail}",
        "signature wrapped with CRLF": f"{header}.{body}.{sig[:43]}\r\n{sig[43:]}",
        "critical header extension": f"{crit_input}.{b64url(raw_signature(private, crit_input))}",
        "two parts": f"{header}.{body}",
    }


FORGERIES = [
    "tampered payload", "signed by another key under the gateway's kid", "alg none", "HS256 keyed with the public key",
    "truncated signature", "signature cut in its text", "DER-encoded signature", "padded signature",
    "signature with unused bits set", "signature wrapped with CRLF", "critical header extension", "two parts",
]


@pytest.mark.parametrize("forgery", FORGERIES)
def test_what_the_library_refuses_the_gateway_and_the_receiver_refuse(gateway, forgery):
    signer, store, data_dir, stranger = gateway
    token = _forgeries(signer, data_dir, stranger)[forgery]
    with pytest.raises(JoseError):
        library_verify(token, ECKey.import_key(signer.public_key_pem()))
    with pytest.raises(JwsError):
        verify_jws(token, signer.public_key_pem())
    with pytest.raises(BatchRejectedError) as refused:
        store.ingest(token)
    assert refused.value.status in (400, 401)
    assert store.items("site-7", "pv-roof") == []  # nothing of a refused batch is stored


def test_the_untampered_batch_behind_the_forgeries_is_accepted_by_all_three(gateway):
    signer, store, _data_dir, _stranger = gateway
    batch = build_signed_batch(signer, "site-7", None, [item(1)])
    assert json.loads(library_verify(batch.jws, ECKey.import_key(signer.public_key_pem())).payload) == verify_jws(batch.jws, signer.public_key_pem())
    assert store.ingest(batch.jws).stored == 1
