"""`GET /api/warnings`: the gateway's latest warnings, bounded, for the page's System section.

Where they come from, and why only there: the gateway's log is a stream of JSON lines on
stdout, written by thespian's logger process; no actor can read it back. What the API
actor does hold:

* the live feed's history (the hub keeps the last 256 events of each topic): the
  supervision events of the `gateway` topic (a child exited, hung, failed and was parked,
  was restarted; a supervisor escalated; the outbox changed state) and the gaps of each
  `device/<id>` topic. These are the warnings the supervisors and the harvest log, as data;
* the warning and error lines logged in the API actor's own process, kept by
  `RecentWarnings` (the last 100).

Both start empty when the API actor starts (`since`). Log lines never carry secrets (the
project's logging rule), so showing them is safe; field values are cut at 200 characters.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

from actors.api.route_spec import LIMIT, UNAVAILABLE, Route

KEPT_LOG_LINES = 100
GATEWAY_KINDS = ("child_exited", "child_hung", "child_failed", "escalated", "restarted", "outbox_state")
STARTED = time.time()

Warning_ = {
    "type": "object", "required": ["time", "source", "kind", "actor", "message", "data"],
    "properties": {
        "time": {"type": ["string", "null"], "format": "date-time"},
        "source": {"enum": ["gateway", "device", "log"], "description": "gateway: a supervision or outbox event; device: a gap; log: a line the API logged"},
        "kind": {"type": "string", "description": "the live event's kind (child_exited, gap, ...) or the log level (warning, error)"},
        "actor": {"type": ["string", "null"], "description": "the child, device or actor it is about"},
        "message": {"type": "string"},
        "data": {"type": "object"},
    },
}
WarningList = {
    "type": "object", "required": ["warnings", "since"],
    "properties": {"warnings": {"type": "array", "items": {"$ref": "#/components/schemas/Warning"}, "description": "newest first"},
                   "since": {"type": "string", "format": "date-time", "description": "when the API actor started: nothing older is kept"}},
}
COMPONENTS: dict[str, dict[str, Any]] = {"Warning": Warning_, "WarningList": WarningList}

ROUTE = Route("GET", "/api/warnings", "warnings", "The latest warnings: supervision events, device gaps and the API's own warning lines, newest first",
              "status", params=(LIMIT,), responses={200: ("warnings", "WarningList"), 503: UNAVAILABLE[1]})


class RecentWarnings(logging.Filter):
    """The last `size` records of WARNING and above logged in this process.

    A filter on the root logger, not a handler: inside an actor the root is thespian's
    forwarder, which refuses handlers. Every `ActorLog` line goes through the root logger
    itself, so its filters see them all; it lets every record pass.
    """

    def __init__(self, size: int = KEPT_LOG_LINES) -> None:
        super().__init__()
        self.records: deque[dict[str, Any]] = deque(maxlen=size)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            fields = {str(k): v if isinstance(v, (int, float, bool)) or v is None else str(v)[:200]
                      for k, v in (getattr(record, "fields", None) or {}).items()}
            self.records.append({"time": record.created, "level": record.levelname.lower(),
                                 "actor": getattr(record, "actor", None) or record.name, "message": record.getMessage()[:500], "fields": fields})
        except Exception:  # noqa: BLE001, S110 - keeping a copy must never stop the line from being logged
            pass
        return True


RECENT = RecentWarnings()


def install() -> None:
    """Keep this process's warnings (once per root logger: inside an actor, thespian's)."""
    root = logging.getLogger()
    if RECENT not in root.filters:
        root.addFilter(RECENT)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_message(kind: str, data: dict[str, Any]) -> tuple[str | None, str]:
    child = data.get("child") or data.get("supervisor")
    reason = data.get("reason")
    if kind == "child_exited":
        return child, f"{child} exited: {reason or 'no reason given'} (restart: {data.get('restart')})"
    if kind == "restarted":
        return child, f"{child} restarted (pid {data.get('pid')}, {data.get('restarts')} restarts)"
    if kind == "child_failed":
        return child, f"{child} keeps failing and is parked: {reason} (retried in {data.get('retry_in_s')} s)"
    if kind == "escalated":
        return child, f"{child} gave up and escalated: {reason}"
    if kind == "outbox_state":
        return "harvest", f"outbox {data.get('state')}" + (f": {reason}" if reason else "")
    return child, kind.replace("_", " ") + (f": {reason}" if reason else "")


def collect(hub: Any, limit: int) -> list[dict[str, Any]]:
    """The warnings the hub's history and this process's log hold, newest first."""
    found: list[tuple[float, dict[str, Any]]] = []
    for name, topic in list(getattr(hub, "topics", {}).items()) if hub is not None else []:
        if name != "gateway" and not name.startswith("device/"):
            continue
        for frame in list(topic.history):
            if (name == "gateway" and frame.kind not in GATEWAY_KINDS) or (name != "gateway" and frame.kind != "gap"):
                continue
            event = json.loads(frame.text)
            data = event.get("data") or {}
            if frame.kind == "outbox_state" and data.get("state") in ("ok", "running"):  # only a degraded outbox is a warning
                continue
            when = event.get("time") or event.get("emitted") or 0.0
            if name == "gateway":
                actor, message = _event_message(frame.kind, data)
            else:
                actor = name.split("/", 1)[1]
                message = f"{actor}: gap of {data.get('missed_polls')} polls" + (f" ({data['reason']})" if data.get("reason") else "")
            found.append((when, {"time": _iso(when), "source": "gateway" if name == "gateway" else "device", "kind": frame.kind,
                                 "actor": actor, "message": message, "data": data}))
    for record in list(RECENT.records):
        found.append((record["time"], {"time": _iso(record["time"]), "source": "log", "kind": record["level"], "actor": record["actor"],
                                       "message": record["message"], "data": record["fields"]}))
    found.sort(key=lambda pair: pair[0], reverse=True)
    return [warning for _, warning in found[:limit]]


def since() -> str:
    return _iso(STARTED) or ""
