"""Structured logging: JSON lines on stdout, the actor name on every line.

Actors log through `ActorLog`, which resolves the root logger at call time: inside a
multiprocess actor, thespian replaces `logging.root` with a forwarder that ships each
record (with its extra attributes) to the logger process, where `JsonFormatter` turns
it into one JSON object per line.

Nothing outside the gateway may fill its log (and its disk): a charger sending a
thousand malformed frames, a client hammering the API, a peer half-opening connections.
So `ActorLog` writes at most `REPEAT_LIMIT` lines a minute of each warning or error
message (per charger, when the line names one), then counts the rest and writes one
summary line with the count when that minute is over (at its next line of any kind).
`RateLimitedLog` is the same budget for one stream of lines of any level (the REST
API's rejected requests). Both count with `RateLimit`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "actorAddress"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, actor, msg, then any structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "actor": getattr(record, "actor", None) or _actor_from_record(record),
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in ("actor", "fields"):
                entry[key] = value
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str)


def _actor_from_record(record: logging.LogRecord) -> str:
    address = getattr(record, "actorAddress", None)
    if address:
        return f"thespian {address}"
    return "thespian" if record.name in ("root", "", None) else record.name


#: Lines a minute written of one warning or error message (per charger named in the line).
REPEAT_LIMIT = 20
#: Messages (times chargers) tracked per logger; beyond that they share one budget per message.
MAX_REPEAT_KEYS = 256
RATE_WINDOW = 60.0
#: The clock every rate limit reads by default, looked up at each call (tests step it).
CLOCK: Callable[[], float] = time.monotonic


def _now() -> float:
    return CLOCK()


class RateLimit:
    """A budget of `per_minute` lines a minute; what is over it is counted, not written.

    `admit()` says whether to write the line now, and when a minute with lines left out
    has ended, how many there were and how long that window ran: the caller writes that
    summary first, so the log always says how much it left out.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = _now) -> None:
        self.per_minute, self.clock = per_minute, clock
        self.window_start, self.written, self.suppressed = clock(), 0, 0

    def admit(self) -> tuple[bool, int, float]:
        """(write this line?, lines left out in the window that just ended, its seconds)."""
        left_out, seconds = self.roll()
        if self.written < self.per_minute:
            self.written += 1
            return True, left_out, seconds
        self.suppressed += 1
        return False, left_out, seconds

    def roll(self) -> tuple[int, float]:
        """Start a new window if this one is over: (lines it left out, its seconds)."""
        now = self.clock()
        if now - self.window_start < RATE_WINDOW:
            return 0, 0.0
        left_out, seconds = self.suppressed, now - self.window_start
        self.window_start, self.written, self.suppressed = now, 0, 0
        return left_out, seconds


class ActorLog:
    """A tiny structured logger bound to one actor name: `log.info("polled", ms=12)`.

    Warnings and errors are rate-limited per message (and per `charger` field), see the
    module docstring; `repeat_limit=None` turns that off.
    """

    def __init__(self, actor: str, repeat_limit: int | None = REPEAT_LIMIT, clock: Callable[[], float] = _now) -> None:
        self.actor = actor
        self.repeat_limit = repeat_limit
        self.clock = clock
        self._limits: dict[tuple[int, str, str], RateLimit] = {}
        self._suppressing: set[tuple[int, str, str]] = set()

    def _emit(self, level: int, msg: str, exc_info: bool = False, **fields: Any) -> None:
        if self._suppressing:
            self._summarise_finished_windows()
        if level >= logging.WARNING and self.repeat_limit is not None and not self._admit(level, msg, fields):
            return
        self._write(level, msg, exc_info, fields)

    def _write(self, level: int, msg: str, exc_info: bool, fields: dict[str, Any]) -> None:
        logging.getLogger().log(level, msg, exc_info=exc_info, extra={"actor": self.actor, "fields": fields})

    def _admit(self, level: int, msg: str, fields: dict[str, Any]) -> bool:
        key = (level, msg, str(fields.get("charger", ""))[:48])
        limit = self._limits.get(key)
        if limit is None:
            if len(self._limits) >= MAX_REPEAT_KEYS:
                key = (level, msg, "*")  # many chargers (or made-up ids): one budget for the message
                limit = self._limits.get(key)
            if limit is None:
                limit = self._limits[key] = RateLimit(self.repeat_limit or 0, self.clock)
        write, left_out, seconds = limit.admit()
        if left_out:
            self._summary(key, left_out, seconds)
        if write:
            self._suppressing.discard(key)
        else:
            self._suppressing.add(key)
        return write

    def _summarise_finished_windows(self) -> None:
        for key in list(self._suppressing):
            left_out, seconds = self._limits[key].roll()
            if left_out:
                self._suppressing.discard(key)
                self._summary(key, left_out, seconds)

    def _summary(self, key: tuple[int, str, str], count: int, seconds: float) -> None:
        level, msg, charger = key
        fields: dict[str, Any] = {"repeated": msg, "count": count, "seconds": round(seconds)}
        if charger:
            fields["charger"] = charger
        self._write(level, "repeated log lines not written individually", False, fields)

    def debug(self, msg: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, msg, **fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._emit(logging.INFO, msg, **fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._emit(logging.WARNING, msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self._emit(logging.ERROR, msg, **fields)

    def exception(self, msg: str, **fields: Any) -> None:
        self._emit(logging.ERROR, msg, exc_info=True, **fields)


class RateLimitedLog:
    """Logs a stream of lines at most `per_minute` a minute, then one summary line.

    A client hammering the API with bad or unauthenticated requests must not be able to
    fill the gateway's log (and its disk); the count of what was left out is kept.
    """

    def __init__(self, per_minute: int = 30, clock: Callable[[], float] = _now, log: ActorLog | None = None,
                 level: int = logging.INFO, summary: str = "rejected requests not logged individually") -> None:
        self.limit = RateLimit(per_minute, clock)
        self.log = log or ActorLog("api")
        self.level, self.summary = level, summary

    def __call__(self, msg: str, **fields: Any) -> None:
        write, left_out, seconds = self.limit.admit()
        if left_out:
            self.log.warning(self.summary, count=left_out, seconds=round(seconds))
        if write:
            self.log._emit(self.level, msg, **fields)


class ActorLabel(logging.Filter):
    """Names the actor on records from libraries (pymodbus, aiohttp, ...) logged in its process."""

    def __init__(self, actor: str) -> None:
        super().__init__()
        self.actor = actor

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "actor", None):
            record.actor = self.actor
            if record.name not in ("root", ""):
                record.logger = record.name
        return True


def label_process_records(actor: str) -> None:
    """Attach `actor` to every record this process logs without one (idempotent per handler)."""
    roots = {id(r): r for r in (logging.getLogger(), logging.Logger.root, logging.Logger.manager.root)}
    for root in roots.values():
        for handler in root.handlers:
            handler.filters = [f for f in handler.filters if not isinstance(f, ActorLabel)]
            handler.addFilter(ActorLabel(actor))


def log_definitions(level: str = "INFO") -> dict:
    """The logging configuration handed to the actor system (thespian's `logDefs`)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "supervisor.logs.JsonFormatter"}},
        "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"}},
        "root": {"handlers": ["stdout"], "level": level.upper()},
    }


def configure_process_logging(level: str = "INFO", process_name: str = "simulator") -> None:
    """Log this (non-actor) process as JSON lines on stdout too: launcher, simulators, CLI."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ActorLabel(process_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
