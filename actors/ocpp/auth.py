"""Who may open an OCPP websocket: security profile 1 (HTTP Basic), the unknown-charger
policy, blocked chargers and a lockout for repeated wrong keys.

OCPP 1.6 security profile 1: the charger sends `Authorization: Basic base64(id:key)`
where `id` is its chargePointId and `key` its AuthorizationKey. The decision is taken
at the handshake, before any frame is read, so an unauthenticated peer never reaches
the protocol code.

Known chargers (a row in the charger store):
  blocked              refused (403), whatever key it presents
  key pinned           the key must match
  no key pinned        let in under `accept` (an open site), refused under `reject`; a key
                       it presents is kept as a candidate the operator may accept
                       (`egw chargers accept ID --fingerprint F`), never pinned on its own
Unknown chargePointIds:
  reject               refused (401)
  accept               let in as an unconfirmed charger (registration status `register_as`),
                       any key it presents kept as a candidate. Nothing is pinned until the
                       operator accepts a candidate, so a first connection with a wrong key
                       (an attacker's, a misconfigured charger's) cannot lock the real one
                       out. Unconfirmed chargers are bounded and expire (storage.chargers
                       UNCONFIRMED_LIMIT, UNCONFIRMED_TTL).

Lockout (`FailureLimiter`): a wrong, missing or malformed key counts as a failure for
the chargePointId and for the peer's address (when the server passes it). After
`threshold` failures (10) within `window` seconds (15 min) every handshake for that id
or from that address is refused with 429 for `base_lockout` seconds (1 s), doubling with
each further failure up to `max_lockout` (5 min). A correct key after the lockout has
ended clears the id's count. The table is bounded (`max_entries`, least recently failed
evicted), so a flood of random ids cannot grow memory. During a lockout even the right
key is refused: that is what stops a guesser, and the bound keeps it short for the real
charger.
"""

from __future__ import annotations

import base64
import binascii
import re
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from storage import chargers as charger_store

#: chargePointId: the URL's last segment; 1.6 security whitepaper allows up to 48 printable chars.
CHARGE_POINT_ID = re.compile(charger_store.CHARGE_POINT_ID_PATTERN)


@dataclass(frozen=True)
class AuthDecision:
    """The handshake's outcome; `http_status` and `retry_after` say how to refuse it."""

    allowed: bool
    reason: str
    registered: bool = False
    http_status: int = 401  # 403 for a blocked charger, 429 while locked out
    retry_after: int | None = None  # seconds, for a lockout


@dataclass
class _Failures:
    count: int = 0
    first: float = 0.0
    locked_until: float = 0.0


class FailureLimiter:
    """Failed handshakes per key (a chargePointId, a peer address), with exponential lockout.

    Time comes from `clock` (monotonic seconds) so tests drive it without sleeping.
    """

    def __init__(self, *, threshold: int = 10, window: float = 900.0, base_lockout: float = 1.0, max_lockout: float = 300.0,
                 max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1 or base_lockout <= 0 or max_lockout < base_lockout or max_entries < 1:
            raise ValueError("lockout needs threshold >= 1, 0 < base_lockout <= max_lockout and max_entries >= 1")
        self.threshold, self.window, self.base_lockout, self.max_lockout = threshold, window, base_lockout, max_lockout
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, _Failures] = OrderedDict()

    def locked(self, key: str) -> float:
        """Seconds `key` stays locked out (0 when it may try)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry.locked_until - self.clock())

    def fail(self, key: str) -> None:
        now = self.clock()
        entry = self._entries.pop(key, None)
        if entry is None or now - entry.first > self.window and entry.locked_until <= now:
            entry = _Failures(first=now)
        entry.count += 1
        if entry.count >= self.threshold:
            doublings = min(entry.count - self.threshold, 30)
            entry.locked_until = now + min(self.max_lockout, self.base_lockout * 2**doublings)
        self._entries[key] = entry  # most recent failure last
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def succeed(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class Authenticator:
    def __init__(self, conn: sqlite3.Connection, unknown_chargers: Literal["reject", "accept"] = "reject", register_as: str = "Accepted",
                 *, limiter: FailureLimiter | None = None, clock: Callable[[], float] = time.time) -> None:
        if unknown_chargers not in ("reject", "accept"):
            raise ValueError(f"ocpp.unknown_chargers must be 'reject' or 'accept', not {unknown_chargers!r}")
        if register_as not in charger_store.REGISTRATION_STATUSES:
            raise ValueError(f"ocpp.register_as must be one of {charger_store.REGISTRATION_STATUSES}")
        self.conn = conn
        self.unknown_chargers = unknown_chargers
        self.register_as = register_as
        self.limiter = limiter if limiter is not None else FailureLimiter()
        self.clock = clock  # wall time, for what the store records

    def check(self, charge_point_id: str, authorization: str | None, remote: str | None = None) -> AuthDecision:
        """Decide a handshake. `remote` is the peer's address, for the per-address lockout."""
        if not CHARGE_POINT_ID.match(charge_point_id):
            return self._failed(None, remote, "chargePointId must be 1-48 characters of A-Z a-z 0-9 . _ - : * + | @")
        keys = [f"id:{charge_point_id}"] + ([f"addr:{remote}"] if remote else [])
        wait = max(self.limiter.locked(key) for key in keys)
        if wait > 0:
            return AuthDecision(False, "too many failed attempts; try again later", http_status=429, retry_after=max(1, int(wait + 0.999)))
        presented = _basic_key(charge_point_id, authorization)
        if isinstance(presented, AuthDecision):
            return self._failed(charge_point_id, remote, presented.reason)
        charger = charger_store.get_charger(self.conn, charge_point_id)
        if charger is None:
            if self.unknown_chargers == "reject":
                return self._failed(None, remote, "unknown charge point")
            now = self.clock()
            if not charger_store.admit_unconfirmed(self.conn, charge_point_id, registration_status=self.register_as, now=now):
                return AuthDecision(False, "too many unconfirmed chargers; the operator must accept or remove some", http_status=403)
            if presented is not None:
                charger_store.record_candidate(self.conn, charge_point_id, presented, remote=remote, now=now)
            return AuthDecision(True, "admitted unconfirmed: the operator accepts it (and its key) or removes it", registered=True)
        if charger["blocked"]:
            return AuthDecision(False, "charge point is blocked", http_status=403)
        stored = charger_store.get_auth_key_hash(self.conn, charge_point_id)
        if stored is None:
            if presented is not None:
                charger_store.record_candidate(self.conn, charge_point_id, presented, remote=remote, now=self.clock())
            if self.unknown_chargers == "accept":
                return AuthDecision(True, "open site: no key pinned")
            return AuthDecision(False, "no AuthorizationKey configured for this charge point")
        if presented is None:
            return self._failed(charge_point_id, remote, "HTTP Basic authentication required")
        if not charger_store.check_auth_key(stored, presented):
            return self._failed(charge_point_id, remote, "wrong AuthorizationKey")
        self.limiter.succeed(keys[0])  # the address keeps its count: one valid charger must not launder another id's guesses
        return AuthDecision(True, "key matches")

    def _failed(self, charge_point_id: str | None, remote: str | None, reason: str) -> AuthDecision:
        """Count a failure against the id (when it names a charger) and the address."""
        if charge_point_id is not None:
            self.limiter.fail(f"id:{charge_point_id}")
        if remote:
            self.limiter.fail(f"addr:{remote}")
        return AuthDecision(False, reason)


def _basic_key(charge_point_id: str, header: str | None) -> str | None | AuthDecision:
    """The presented key, None when no credentials were sent, or a refusal for malformed ones."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return AuthDecision(False, "only HTTP Basic authentication is supported")
    try:
        user, sep, key = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return AuthDecision(False, "malformed Basic credentials")
    if not sep or user != charge_point_id:
        return AuthDecision(False, "Basic user name must be the chargePointId")
    return key
