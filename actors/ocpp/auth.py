"""Who may open an OCPP websocket: security profile 1 (HTTP Basic) and the unknown-charger policy.

OCPP 1.6 security profile 1: the charger sends `Authorization: Basic base64(id:key)`
where `id` is its chargePointId and `key` its AuthorizationKey. The decision is taken
at the handshake, before any frame is read, so an unauthenticated peer never reaches
the protocol code.

Policy for a chargePointId the gateway does not know:
  reject   refused (HTTP 401)
  accept   registered on the spot (with the key it presented, if any, which it must
           present from then on) with registration status `register_as`; the demo
           uses this so any charger or simulator can connect.
A known charger without a stored key is let in only under the `accept` policy (an
open site); with a stored key, the key must match.
"""

from __future__ import annotations

import base64
import binascii
import re
import sqlite3
from dataclasses import dataclass
from typing import Literal

from storage import chargers as charger_store

#: chargePointId: the URL's last segment; 1.6 security whitepaper allows up to 48 printable chars.
CHARGE_POINT_ID = re.compile(charger_store.CHARGE_POINT_ID_PATTERN)


@dataclass(frozen=True)
class AuthDecision:
    allowed: bool
    reason: str
    registered: bool = False


class Authenticator:
    def __init__(self, conn: sqlite3.Connection, unknown_chargers: Literal["reject", "accept"] = "reject", register_as: str = "Accepted") -> None:
        if unknown_chargers not in ("reject", "accept"):
            raise ValueError(f"ocpp.unknown_chargers must be 'reject' or 'accept', not {unknown_chargers!r}")
        if register_as not in charger_store.REGISTRATION_STATUSES:
            raise ValueError(f"ocpp.register_as must be one of {charger_store.REGISTRATION_STATUSES}")
        self.conn = conn
        self.unknown_chargers = unknown_chargers
        self.register_as = register_as

    def check(self, charge_point_id: str, authorization: str | None) -> AuthDecision:
        if not CHARGE_POINT_ID.match(charge_point_id):
            return AuthDecision(False, "chargePointId must be 1-48 characters of A-Z a-z 0-9 . _ - : * + | @")
        presented = _basic_key(charge_point_id, authorization)
        if isinstance(presented, AuthDecision):
            return presented
        charger = charger_store.get_charger(self.conn, charge_point_id)
        if charger is None:
            if self.unknown_chargers == "reject":
                return AuthDecision(False, "unknown charge point")
            charger_store.add_charger(self.conn, charge_point_id, auth_key=presented, registration_status=self.register_as)
            return AuthDecision(True, "registered on first connection", registered=True)
        stored = charger_store.get_auth_key_hash(self.conn, charge_point_id)
        if stored is None:
            if self.unknown_chargers == "accept":
                return AuthDecision(True, "open site: no key required")
            return AuthDecision(False, "no AuthorizationKey configured for this charge point")
        if presented is None:
            return AuthDecision(False, "HTTP Basic authentication required")
        if not charger_store.check_auth_key(stored, presented):
            return AuthDecision(False, "wrong AuthorizationKey")
        return AuthDecision(True, "key matches")


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
