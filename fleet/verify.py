"""Checking one batch before it touches the database: JWS shape, ES256 signature, payload shape.

The batch format is the gateway's (actors.harvest.signing). Every refusal is a `BatchRefusedError`
with the HTTP status it stands for (the same status travels in an MQTT acknowledgement),
a short `code` for metrics, and a reason naming the first offending field, so an operator
reading `/v1/status` or a gateway's log knows what to fix.

Keys are parsed once per worker (`KeyRing`): a PEM parse costs more than the signature
check itself.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from actors.harvest.signing import b64url_decode

KINDS = frozenset({"reading", "aggregate", "gap", "event", "clock"})
MAX_STREAM_CHARS = 200


class BatchRefusedError(Exception):
    """A batch this receiver will not store: `status` (HTTP meaning), `code` (for metrics), `reason`."""

    def __init__(self, status: int, code: str, reason: str, gateway: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason
        self.gateway = gateway  # the registered gateway it concerns, when known (its refusals are counted)


@dataclass(frozen=True)
class Envelope:
    """A compact JWS split up, before its signature is checked."""

    jws: str
    digest: str
    kid: str
    signing_input: bytes
    signature: bytes
    payload_b64: str


@dataclass(frozen=True)
class Batch:
    """A verified batch: who sent it, what it follows, its items (in order) and per stream their (seq, seq_last)."""

    digest: str
    kid: str
    gateway: str
    prev: str | None
    payload: str  # the verified payload text, handed to PostgreSQL as is
    items: int
    runs: dict[str, list[tuple[int, int]]]


def open_envelope(body: bytes) -> Envelope:
    """Split a compact JWS and read its protected header; nothing here is trusted yet."""
    digest = hashlib.sha256(body).hexdigest()
    try:
        jws = body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise BatchRefusedError(400, "malformed", "body must be a compact JWS (ASCII)") from None
    pieces = jws.split(".")
    if len(pieces) != 3:
        raise BatchRefusedError(400, "malformed", "compact JWS must have three parts separated by '.'")
    try:
        header = json.loads(b64url_decode(pieces[0]))
        signature = b64url_decode(pieces[2])
    except (ValueError, TypeError) as exc:
        raise BatchRefusedError(400, "malformed", f"malformed JWS: {exc}") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256" or not isinstance(header.get("kid"), str) or not header["kid"]:
        raise BatchRefusedError(400, "malformed", "JWS header must name alg ES256 and a kid")
    if "crit" in header:  # RFC 7515 4.1.11: extensions a verifier does not understand are refused; we understand none
        raise BatchRefusedError(400, "malformed", "JWS header names critical extensions this receiver does not understand")
    if len(signature) != 64:
        raise BatchRefusedError(400, "malformed", "ES256 signature must be 64 bytes (raw r||s, not DER)")
    return Envelope(jws, digest, header["kid"], f"{pieces[0]}.{pieces[1]}".encode("ascii"), signature, pieces[1])


def load_public_key(pem: str | bytes) -> ec.EllipticCurvePublicKey:
    """A gateway's P-256 public key from PEM; ValueError naming the problem otherwise."""
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii") if isinstance(pem, str) else pem)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise ValueError(f"not a PEM public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("gateway keys must be P-256 (ES256) public keys")
    return key


def check_signature(envelope: Envelope, key: ec.EllipticCurvePublicKey) -> str:
    """Verify the ES256 signature; return the payload text."""
    sig = envelope.signature
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        key.verify(der, envelope.signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise BatchRefusedError(401, "bad_signature", f"signature does not verify against the key registered for {envelope.kid}") from None
    try:
        return b64url_decode(envelope.payload_b64).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise BatchRefusedError(400, "malformed", "payload is not base64url-encoded UTF-8") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_payload(text: str, envelope: Envelope, registered_gateway: str) -> Batch:
    """Check the payload's shape and its claims (kid, gateway); per stream, items must go forward."""
    try:
        payload = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise BatchRefusedError(400, "malformed", f"payload is not strict JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BatchRefusedError(400, "malformed", "payload must be a JSON object")
    if payload.get("v") != 1:
        raise BatchRefusedError(400, "malformed", f"unsupported payload version {payload.get('v')!r}")
    if payload.get("kid") != envelope.kid:
        raise BatchRefusedError(400, "malformed", "payload kid does not match the JWS header kid")
    gateway = payload.get("gateway")
    if not isinstance(gateway, str) or not gateway:
        raise BatchRefusedError(400, "malformed", "payload.gateway must be a non-empty string")
    if gateway != registered_gateway:
        raise BatchRefusedError(409, "gateway_mismatch", f"key {envelope.kid} is registered for gateway {registered_gateway!r}, the batch claims {gateway!r}")
    prev = payload.get("prev")
    if prev is not None and not (isinstance(prev, str) and len(prev) == 64 and all(c in "0123456789abcdef" for c in prev)):
        raise BatchRefusedError(400, "malformed", "payload.prev must be null or a 64-hex-digit hash")
    items = payload.get("items")
    if not isinstance(items, list) or not items:
        raise BatchRefusedError(400, "malformed", "payload.items must be a non-empty list")
    runs: dict[str, list[tuple[int, int]]] = {}
    for index, it in enumerate(items):
        where = f"payload.items[{index}]"
        if not isinstance(it, dict):
            raise BatchRefusedError(400, "malformed", f"{where} must be an object")
        stream, q, ql = it.get("s"), it.get("q"), it.get("ql")
        if not isinstance(stream, str) or not stream or len(stream) > MAX_STREAM_CHARS:
            raise BatchRefusedError(400, "malformed", f"{where}.s (stream) must be a non-empty string of at most {MAX_STREAM_CHARS} characters")
        if type(q) is not int or type(ql) is not int or q < 1 or ql < q or ql >= 2**63:
            raise BatchRefusedError(400, "malformed", f"{where}: seq must be integers with 1 <= q <= ql < 2^63")
        if it.get("k") not in KINDS:
            raise BatchRefusedError(400, "malformed", f"{where}.k must be one of {sorted(KINDS)}")
        if type(it.get("w")) not in (int, float):
            raise BatchRefusedError(400, "malformed", f"{where}.w (wall time) must be a number")
        if not isinstance(it.get("x"), dict):
            raise BatchRefusedError(400, "malformed", f"{where}.x must be an object")
        run = runs.setdefault(stream, [])
        if run and q <= run[-1][1]:
            raise BatchRefusedError(400, "reordered", f"{where}: stream {stream!r} seq {q} does not follow {run[-1][1]}: a batch's items go forward in each stream")
        run.append((q, ql))
    return Batch(envelope.digest, envelope.kid, gateway, prev, text, len(items), runs)


@dataclass(frozen=True)
class RegisteredKey:
    gateway: str
    key: ec.EllipticCurvePublicKey


class KeyRing:
    """Parsed gateway keys by kid, least recently used dropped past `limit` (bounded memory)."""

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self._keys: OrderedDict[str, RegisteredKey] = OrderedDict()

    def get(self, kid: str) -> RegisteredKey | None:
        found = self._keys.get(kid)
        if found is not None:
            self._keys.move_to_end(kid)
        return found

    def put(self, kid: str, gateway: str, pem: str) -> RegisteredKey:
        entry = RegisteredKey(gateway, load_public_key(pem))
        self._keys[kid] = entry
        while len(self._keys) > self.limit:
            self._keys.popitem(last=False)
        return entry
