"""Upload batches as compact ES256 JWS, chained by the hash of the previous batch.

A batch is built only from outbox items (`build_signed_batch`), never from bytes a
caller hands in: there is deliberately no "sign this" entry point.

Payload (JSON):
    {"v": 1, "gateway": id, "kid": serial, "prev": hash-of-previous-batch-or-null,
     "items": [{"s": stream, "q": seq, "ql": seq_last, "k": kind, "w": wall_time, "x": {...}}, ...]}

The batch hash is SHA-256 over the compact JWS text; the next batch names it in
`prev`, so the receiver can tell whether it has seen every batch in between.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from storage.identity import Signer
from storage.outbox import OutboxItem

JWS_TYPE = "egw-batch+jws"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_decode(text: str) -> bytes:
    """Strict base64url as JWS uses it (RFC 7515 section 2): no padding, no other characters, canonical.

    A lenient decoder (the standard library's drops unknown characters and takes padding) would
    verify one signed batch under many different texts -- `sig==`, a stray character, other
    trailing bits -- each with its own batch hash, which breaks the receiver's `prev` chain;
    an independent JOSE library (tests/harvest/test_jws_interop.py) rejects all of them, so we do too.
    """
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url: only A-Z a-z 0-9 - _ and no padding")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(f"not base64url: {exc}") from None
    if b64url(data) != text:
        raise ValueError("not canonical base64url (unused trailing bits set)")
    return data


@dataclass(frozen=True)
class SignedBatch:
    jws: str
    batch_hash: str
    first_id: int
    last_id: int
    items: int
    max_seq: dict[str, int]  # stream -> highest seq the batch covers


def build_signed_batch(signer: Signer, gateway_id: str, prev_hash: str | None, items: Sequence[OutboxItem]) -> SignedBatch:
    """Sign outbox items as one batch. Item bodies are already JSON text: spliced, not re-encoded."""
    parts = []
    max_seq: dict[str, int] = {}
    for it in items:
        parts.append(
            '{"s":%s,"q":%d,"ql":%d,"k":"%s","w":%r,"x":%s}' % (json.dumps(it.stream), it.seq, it.seq_last, it.kind, it.wall_time, it.body)
        )
        if it.seq_last > max_seq.get(it.stream, 0):
            max_seq[it.stream] = it.seq_last
    payload = '{"v":1,"gateway":%s,"kid":%s,"prev":%s,"items":[%s]}' % (
        json.dumps(gateway_id),
        json.dumps(signer.key_id),
        json.dumps(prev_hash),
        ",".join(parts),
    )
    header = b64url(json.dumps({"alg": "ES256", "kid": signer.key_id, "typ": JWS_TYPE}, separators=(",", ":")).encode())
    signing_input = f"{header}.{b64url(payload.encode())}"
    jws = f"{signing_input}.{b64url(signer.sign_es256(signing_input.encode('ascii')))}"
    return SignedBatch(jws, batch_hash(jws), items[0].id, items[-1].id, len(items), max_seq)


def batch_hash(jws: str) -> str:
    return hashlib.sha256(jws.encode("ascii")).hexdigest()


class JwsError(ValueError):
    """A JWS that is malformed, uses another algorithm, or fails verification."""


def jws_key_id(jws: str) -> str:
    """The `kid` from the protected header (before verification: only to pick the key)."""
    try:
        header = json.loads(b64url_decode(jws.split(".", 1)[0]))
    except (ValueError, IndexError) as exc:
        raise JwsError(f"malformed JWS header: {exc}") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256" or not isinstance(header.get("kid"), str):
        raise JwsError("JWS header must name alg ES256 and a kid")
    if "crit" in header:  # RFC 7515 4.1.11: extensions a verifier does not understand must be refused; we understand none
        raise JwsError("JWS header names critical extensions this verifier does not understand")
    return header["kid"]


def verify_jws(jws: str, public_key_pem: bytes) -> dict:
    """Verify a compact ES256 JWS against a PEM public key; return the decoded JSON payload."""
    return parse_payload(verify_jws_payload(jws, public_key_pem))


def parse_payload(payload: bytes) -> dict:
    try:
        decoded = json.loads(payload)
    except ValueError as exc:
        raise JwsError(f"payload is not JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise JwsError("payload must be a JSON object")
    return decoded


def verify_jws_payload(jws: str, public_key_pem: bytes) -> bytes:
    """Verify a compact ES256 JWS against a PEM public key; return the payload bytes."""
    pieces = jws.split(".")
    if len(pieces) != 3:
        raise JwsError("compact JWS must have three parts")
    jws_key_id(jws)
    try:
        signature = b64url_decode(pieces[2])
    except ValueError:
        raise JwsError("signature is not base64url") from None
    try:
        payload = b64url_decode(pieces[1])  # before the signature check: the signing input must be ASCII
    except ValueError:
        raise JwsError("payload is not base64url") from None
    if len(signature) != 64:
        raise JwsError("ES256 signature must be 64 bytes (raw r||s, not DER)")
    public_key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(public_key.curve, ec.SECP256R1):
        raise JwsError("registered key is not a P-256 key (ES256)")
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        public_key.verify(der, f"{pieces[0]}.{pieces[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise JwsError("signature does not verify against the registered key") from None
    return payload
