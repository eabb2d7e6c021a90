"""Structured logging: JSON lines on stdout, the actor name on every line.

Actors log through `ActorLog`, which resolves the root logger at call time: inside a
multiprocess actor, thespian replaces `logging.root` with a forwarder that ships each
record (with its extra attributes) to the logger process, where `JsonFormatter` turns
it into one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
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


class ActorLog:
    """A tiny structured logger bound to one actor name: `log.info("polled", ms=12)`."""

    def __init__(self, actor: str) -> None:
        self.actor = actor

    def _emit(self, level: int, msg: str, exc_info: bool = False, **fields: Any) -> None:
        logging.getLogger().log(level, msg, exc_info=exc_info, extra={"actor": self.actor, "fields": fields})

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
