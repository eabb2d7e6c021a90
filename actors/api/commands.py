"""Charger commands over REST: each one a record with an id, answered once, pollable, idempotent.

Why records: a charger answers when it answers. OCPP-J allows one outstanding call per
charger, so a command may wait behind others, and the charger may take its whole call
timeout. A REST request cannot wait that long, and it must never answer "failed" for a
command the charger may still receive: a client that retries would apply it twice. So:

* every command gets a `command_id` and runs to its end in a task of its own, whatever
  happens to the HTTP request that started it (the backend bounds it and withdraws
  what was not sent, see `GatewayBackend.charger_command`);
* the request waits up to the command timeout; then it answers 202 with the id, and
  GET /api/chargers/{id}/commands/{command_id} shows the outcome once it is known;
* an `Idempotency-Key` names a command per charger: the same key answers the same
  command's outcome (pending or final) instead of sending it again. A key is released
  when the command was certainly not sent (400, 404, 501, 503, `charger_not_accepted`),
  so a retry with it after "queue full" or "offline" really tries again. Keys and records
  are kept `RECORD_TTL` seconds, at most `MAX_PER_CHARGER` per charger and `MAX_RECORDS`
  in all (oldest dropped first).

The outcome's HTTP form is one mapping (`accepted`/`answer`/`failure`), the one the
OpenAPI document describes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from actors.api.backend import ApiError, UnavailableError, UnprocessableError
from supervisor.logs import ActorLog

log = ActorLog("api")

ACCEPTING = frozenset({"Accepted", "Scheduled", "Unlocked", "RebootRequired"})
"""Statuses with which an OCPP 1.6 charger says yes (ChangeAvailability `Scheduled`: at the end of
the running session; ChangeConfiguration `RebootRequired`: taken, effective after a reboot)."""

RECORD_TTL = 24 * 3600.0
MAX_PER_CHARGER = 256
MAX_RECORDS = 4096
PENDING_RETRY_AFTER = 5
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"
NOT_SENT_STATUSES = frozenset({400, 404, 501, 503})


def charger_status(command: str, result: dict[str, Any]) -> str:
    """The charger's answer status; answers without one are `Accepted`, except OCPP 1.6's
    GetLocalListVersion listVersion -1, which says the charger has no local list support."""
    if command == "GetLocalListVersion" and result.get("listVersion") == -1:
        return "NotSupported"
    return str(result.get("status", "Accepted"))


def answer(charger: str, command: str, command_id: str, result: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The charger answered: 200 when it accepted, else 409 `rejected` with its status."""
    status = charger_status(command, result)
    body = {"charger": charger, "command": command, "command_id": command_id, "status": status, "result": result}
    if status in ACCEPTING:
        return 200, body
    return 409, {"error": "rejected", "message": f"charger {charger} answered {status} to {command}", **body}


def failure(charger: str, command: str, command_id: str, exc: ApiError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A command that did not get an answer to pass on: the error's status and body."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, UnavailableError) else {}
    return exc.status, {**exc.body(), "charger": charger, "command": command, "command_id": command_id}, headers


@dataclass
class CommandRecord:
    command_id: str
    charger: str
    command: str
    fingerprint: str  # the request, to tell a key reused for another request
    key: str | None
    created: float
    status: int = 202
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    task: asyncio.Task | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def location(self) -> str:
        return f"/api/chargers/{quote(self.charger, safe='')}/commands/{self.command_id}"

    def response(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """What the command's request answers now: the outcome, or 202 while pending."""
        if self.done.is_set():
            return self.status, self.body, self.headers
        body = {"charger": self.charger, "command": self.command, "command_id": self.command_id, "status": "Pending", "result": None, "state": "pending"}
        return 202, body, {"Location": self.location, "Retry-After": str(PENDING_RETRY_AFTER)}

    def view(self) -> dict[str, Any]:
        """The record as GET .../commands/{command_id} shows it."""
        status, body, _ = self.response()
        return {**body, "state": "done" if self.done.is_set() else "pending", "http_status": status}

    def finish(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}
        self.done.set()

    @property
    def sent_or_maybe(self) -> bool:
        """False when the outcome proves the charger never got the command."""
        return not (self.status in NOT_SENT_STATUSES or self.body.get("error") == "charger_not_accepted")


class CommandLedger:
    """The commands of one API process: by (charger, command id) and by (charger, Idempotency-Key)."""

    def __init__(self, *, ttl: float = RECORD_TTL, per_charger: int = MAX_PER_CHARGER, total: int = MAX_RECORDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.per_charger, self.total, self.clock = ttl, per_charger, total, clock
        self._records: OrderedDict[tuple[str, str], CommandRecord] = OrderedDict()  # oldest first
        self._keys: dict[tuple[str, str], CommandRecord] = {}
        self._per_charger: dict[str, int] = {}
        self._running: set[asyncio.Task] = set()  # the loop holds tasks weakly; a dropped record's task still runs to its end

    def __len__(self) -> int:
        return len(self._records)

    def get(self, charger: str, command_id: str) -> CommandRecord | None:
        self._prune()
        return self._records.get((charger, command_id))

    def submit(self, charger: str, command: str, params: dict[str, Any], key: str | None,
               send: Callable[[], Awaitable[dict[str, Any]]], on_accepted: Callable[[], dict[str, Any]] | None = None) -> CommandRecord:
        """The record of this command: a new one whose task runs `send`, or, for a known
        `key`, the command that key already names (UnprocessableError if that was another request)."""
        self._prune()
        fingerprint = json.dumps([command, params], sort_keys=True, separators=(",", ":"))
        if key is not None and (known := self._keys.get((charger, key))) is not None:
            if known.fingerprint != fingerprint:
                raise UnprocessableError(f"Idempotency-Key {key!r} names another request to charger {charger} ({known.command})",
                                         field="header.Idempotency-Key", code="idempotency_key_reused")
            return known
        record = CommandRecord(secrets.token_hex(8), charger, command, fingerprint, key, self.clock())
        self._add(record)
        record.task = asyncio.get_running_loop().create_task(self._run(record, send, on_accepted))
        self._running.add(record.task)
        record.task.add_done_callback(self._running.discard)
        return record

    async def wait(self, record: CommandRecord, timeout: float) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Wait up to `timeout` for the outcome, never cancelling the command; then its response."""
        try:
            await asyncio.wait_for(asyncio.shield(record.done.wait()), timeout)
        except TimeoutError:
            pass
        return record.response()

    async def _run(self, record: CommandRecord, send: Callable[[], Awaitable[dict[str, Any]]], on_accepted: Callable[[], dict[str, Any]] | None) -> None:
        try:
            result = await send()
        except ApiError as exc:
            record.finish(*failure(record.charger, record.command, record.command_id, exc))
        except asyncio.CancelledError:
            record.finish(504, {"error": "outcome_unknown", "message": "the API stopped before the command's outcome was known",
                                "charger": record.charger, "command": record.command, "command_id": record.command_id})
            raise
        except Exception as exc:  # noqa: BLE001 - a bug: the record says so, the log has the trace
            log.exception("charger command failed", charger=record.charger, command=record.command, error=repr(exc))
            record.finish(500, {"error": "internal_error", "message": "internal error; see the gateway log",
                                "charger": record.charger, "command": record.command, "command_id": record.command_id})
        else:
            status, body = answer(record.charger, record.command, record.command_id, result)
            if status == 200 and on_accepted is not None:
                body.update(on_accepted())
            record.finish(status, body)
        if record.key is not None and not record.sent_or_maybe:
            self._keys.pop((record.charger, record.key), None)  # never sent: the same key may try again

    def _add(self, record: CommandRecord) -> None:
        self._records[(record.charger, record.command_id)] = record
        self._per_charger[record.charger] = self._per_charger.get(record.charger, 0) + 1
        if record.key is not None:
            self._keys[(record.charger, record.key)] = record
        if self._per_charger[record.charger] > self.per_charger:
            self._drop(next(r for r in self._records.values() if r.charger == record.charger))
        while len(self._records) > self.total:
            self._drop(next(iter(self._records.values())))

    def _prune(self) -> None:
        horizon = self.clock() - self.ttl
        while self._records and (oldest := next(iter(self._records.values()))).created < horizon:
            self._drop(oldest)

    def _drop(self, record: CommandRecord) -> None:
        """Forget a record (its task, if still running, runs on to its end unobserved)."""
        self._records.pop((record.charger, record.command_id), None)
        if record.key is not None and self._keys.get((record.charger, record.key)) is record:
            del self._keys[(record.charger, record.key)]
        left = self._per_charger.get(record.charger, 1) - 1
        if left > 0:
            self._per_charger[record.charger] = left
        else:
            self._per_charger.pop(record.charger, None)
