"""Who may read which topic: the API token, or a per-transaction token.

The API's bearer token (`egw token`) opens every topic. A driver's app gets a narrower
token when a remote start is requested for it: `issue_transaction_token` signs the
charger and idTag of that request (or, once known, a transaction id) with a key derived
from the API token. It opens only `transaction/<id>` for a transaction that

* is that transaction id, or
* was started on that charger with that idTag *after* the token was issued,

and only until it expires. Tokens are stateless (HMAC), so they survive API restarts
and need no table; changing the API token revokes them all.

Tokens travel as `Authorization: Bearer <token>` or, for browsers whose EventSource and
WebSocket cannot set headers, as `?token=<token>`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from actors.live.topics import Topic

PREFIX = "lt1."
TOKEN_TTL = 24 * 3600.0
START_SLACK = 2.0  # seconds a session may appear to start before its token was issued (clock granularity)
MAX_TOKEN_LENGTH = 600


class LiveAuthError(Exception):
    """Refused: `status` is 401 (no or unknown token) or 403 (token not valid for this topic)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class TransactionGrant:
    """What a verified per-transaction token allows."""

    expires: float
    issued: float
    transaction_id: int | None = None
    charger_id: str | None = None
    id_tag: str | None = None


@dataclass(frozen=True)
class TransactionOwner:
    charger_id: str
    id_tag: str
    received: float  # when the gateway recorded the session's start


def _key(api_token: str) -> bytes:
    return hmac.new(api_token.encode(), b"egw live transaction token v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_transaction_token(api_token: str, transaction_id: int | None = None, *, charger_id: str | None = None,
                            id_tag: str | None = None, ttl: float = TOKEN_TTL, now: float | None = None) -> str:
    """A token for one transaction: by id, or by (charger, idTag) of a remote start request."""
    if (transaction_id is None) == (charger_id is None):
        raise ValueError("give either transaction_id or charger_id (with id_tag)")
    if charger_id is not None and not id_tag:
        raise ValueError("a remote-start token needs the idTag of the request")
    issued = time.time() if now is None else now
    claims: dict[str, object] = {"i": round(issued, 3), "e": round(issued + ttl, 3)}
    if transaction_id is not None:
        claims["t"] = int(transaction_id)
    else:
        claims["c"], claims["g"] = charger_id, id_tag
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64(hmac.new(_key(api_token), payload.encode(), hashlib.sha256).digest()[:18])
    return f"{PREFIX}{payload}.{signature}"


def verify_transaction_token(api_token: str, token: str, now: float | None = None) -> TransactionGrant | None:
    """The grant of a genuine, unexpired token; None for anything else."""
    if not token.startswith(PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        return None
    payload, _, signature = token[len(PREFIX):].partition(".")
    expected = _b64(hmac.new(_key(api_token), payload.encode(), hashlib.sha256).digest()[:18])
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    try:
        claims = json.loads(_unb64(payload))
        grant = TransactionGrant(expires=float(claims["e"]), issued=float(claims["i"]), transaction_id=claims.get("t"),
                                 charger_id=claims.get("c"), id_tag=claims.get("g"))
    except (ValueError, KeyError, TypeError):
        return None
    if grant.expires < (time.time() if now is None else now):
        return None
    return grant


def grant_allows(grant: TransactionGrant, transaction_id: int, owner: TransactionOwner | None) -> bool:
    if grant.transaction_id is not None:
        return grant.transaction_id == transaction_id
    return (owner is not None and owner.charger_id == grant.charger_id and owner.id_tag == grant.id_tag
            and grant.issued - START_SLACK <= owner.received <= grant.expires)


def bearer(authorization: str | None, query_token: str | None) -> str | None:
    """The presented token: the Authorization header first, then `?token=`."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None


OwnerLookup = Callable[[int], Awaitable[TransactionOwner | None]]


def owners_from_db(db_path: str | Path) -> OwnerLookup:
    """Look a transaction's charger and idTag up in the gateway's SQLite file (read-only, off the loop)."""
    path = Path(db_path)

    def read(transaction_id: int) -> TransactionOwner | None:
        if not path.exists():
            return None
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
        try:
            row = conn.execute("SELECT charge_point_id, id_tag, received FROM transactions WHERE transaction_id = ?", (transaction_id,)).fetchone()
        except sqlite3.OperationalError:  # no transactions table yet: no charger ever started one
            return None
        finally:
            conn.close()
        return TransactionOwner(row[0], row[1], float(row[2])) if row else None

    async def lookup(transaction_id: int) -> TransactionOwner | None:
        return await asyncio.to_thread(read, transaction_id)

    return lookup


class LiveAuthorizer:
    """`await authorizer(token, topic)` returns or raises `LiveAuthError` (401/403)."""

    def __init__(self, api_token: str | None, owners: OwnerLookup | None = None) -> None:
        self.api_token = api_token
        self.owners = owners

    def recognizes(self, token: str | None) -> bool:
        """True for the API token or a genuine unexpired transaction token (before any topic is known)."""
        if not token or self.api_token is None:
            return False
        if hmac.compare_digest(token.encode("utf-8", "replace"), self.api_token.encode()):
            return True
        return verify_transaction_token(self.api_token, token) is not None

    async def __call__(self, token: str | None, topic: Topic) -> None:
        if not token:
            raise LiveAuthError(401, "unauthorized", "the live feed needs 'Authorization: Bearer <token>' or ?token=<token> (see `egw token`)")
        if self.api_token is None:
            raise LiveAuthError(401, "unauthorized", "this gateway has no API token; the live feed is closed")
        if hmac.compare_digest(token.encode("utf-8", "replace"), self.api_token.encode()):
            return
        grant = verify_transaction_token(self.api_token, token)
        if grant is None:
            raise LiveAuthError(401, "unauthorized", "unknown, malformed or expired token")
        if topic.kind != "transaction":
            raise LiveAuthError(403, "forbidden", f"a transaction token opens only its own transaction's feed, not {topic}")
        transaction_id = int(topic.ident or 0)
        owner = None
        if grant.transaction_id is None and self.owners is not None:
            owner = await self.owners(transaction_id)
        if not grant_allows(grant, transaction_id, owner):
            raise LiveAuthError(403, "forbidden", f"this token does not open {topic}")
