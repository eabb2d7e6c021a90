"""Topic names of the live feed, parsed once at the edge so the hub only sees valid ones.

    transaction/{id}   one charging session: meter values, status, stop
    charger/{id}       a charge point: connector states, transactions starting and stopping
    device/{id}        an inverter or meter: each committed reading
    loadpoint/{id}     a loadpoint of the energy manager: each decision with its reason
    gateway            actor restarts, outbox and uplink state changes
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TOPIC_LENGTH = 128
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_.:@-]{1,100}$")  # charge point ids and device ids as the gateway accepts them
KINDS = ("transaction", "charger", "device", "loadpoint", "gateway")


class TopicError(ValueError):
    """A topic string that names nothing the feed serves; the message says why."""


@dataclass(frozen=True)
class Topic:
    kind: str
    ident: str | None = None

    def __str__(self) -> str:
        return self.kind if self.ident is None else f"{self.kind}/{self.ident}"


def parse_topic(text: object) -> Topic:
    """`Topic` from "transaction/17", "charger/CP-1", "device/inv1" or "gateway"."""
    if not isinstance(text, str) or not text:
        raise TopicError("topic must be a non-empty string")
    if len(text) > MAX_TOPIC_LENGTH:
        raise TopicError(f"topic longer than {MAX_TOPIC_LENGTH} characters")
    if text == "gateway":
        return Topic("gateway")
    kind, sep, ident = text.partition("/")
    if not sep or kind not in KINDS or kind == "gateway":
        raise TopicError(f"unknown topic {text!r}: expected transaction/<id>, charger/<id>, device/<id>, loadpoint/<id> or gateway")
    if kind == "transaction":
        if not re.fullmatch(r"-?[0-9]{1,10}", ident) or not -(2**31) <= int(ident) < 2**31:
            raise TopicError(f"transaction id must be a 32-bit integer, not {ident!r}")
        return Topic(kind, str(int(ident)))
    if not _IDENTIFIER.match(ident):
        raise TopicError(f"{kind} id {ident!r} has characters outside A-Z a-z 0-9 _ . : @ -")
    return Topic(kind, ident)


def transaction_topic(transaction_id: int) -> str:
    return f"transaction/{int(transaction_id)}"


def charger_topic(charge_point_id: str) -> str:
    return f"charger/{charge_point_id}"


def device_topic(device_id: str) -> str:
    return f"device/{device_id}"


GATEWAY = "gateway"
