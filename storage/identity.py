"""The gateway's identity: a P-256 key pair in the data dir and a serial derived from it.

The private key is created on first start with file mode 0600 and never leaves the
gateway. The serial (also the JWS key id) is derived from the public key, so it is
stable for the life of the key and a receiver can register the gateway by its
public key alone.

`Signer` is the seam for hardware: a secure element (ATECC608 and the like) exposes
the same three things -- key id, public key, sign digest-of-bytes -- without ever
revealing the private key. Signers are only handed to the batch builder
(`actors.harvest.signing`), which signs batches the gateway built from its own
outbox; nothing exposes signing of caller-chosen data.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from storage.files import create_private_file, make_private, make_private_dir

KEY_FILE = "gateway_key.pem"
PUBLIC_KEY_FILE = "gateway_key.pub.pem"


class Signer(Protocol):
    """A P-256 signing key (software now, a secure element later)."""

    @property
    def key_id(self) -> str: ...

    def public_key_pem(self) -> bytes: ...

    def sign_es256(self, data: bytes) -> bytes:
        """Raw r||s (64 bytes) ES256 signature over `data`."""
        ...


def serial_from_public_key(public_key: ec.EllipticCurvePublicKey) -> str:
    """`egw-` + the first 16 hex digits of SHA-256 over the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "egw-" + hashlib.sha256(der).hexdigest()[:16]


class SoftwareSigner:
    """A P-256 key held in a 0600 PEM file in the data dir."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key
        self._key_id = serial_from_public_key(private_key.public_key())

    @property
    def key_id(self) -> str:
        return self._key_id

    def public_key_pem(self) -> bytes:
        return self._key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign_es256(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def load_or_create_signer(data_dir: str | Path) -> SoftwareSigner:
    """The gateway's key: loaded from `data_dir`, or created there on first start.

    The key is written atomically with mode 0600 (`storage.files`): two processes starting
    at once never overwrite each other's key, a power cut never leaves half a key, and the
    file is never readable by others even briefly. An empty key file (left by a power cut
    under an older version) is replaced; one with wider permissions is tightened to 0600.
    """
    data_dir = make_private_dir(data_dir)
    path = data_dir / KEY_FILE
    if not path.exists() or path.stat().st_size == 0:  # an empty file never held a key anyone used
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        create_private_file(path, pem, replace=path.exists())  # False: another process created it first; use theirs
    make_private(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise ValueError(f"{path}: not a readable private key ({exc}); it is the gateway's identity, so it is not replaced: move it away to create a new one") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{path}: not a P-256 private key")
    signer = SoftwareSigner(key)
    public = data_dir / PUBLIC_KEY_FILE
    if not public.exists() or public.read_bytes() != signer.public_key_pem():
        public.write_bytes(signer.public_key_pem())
    return signer
