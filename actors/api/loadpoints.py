"""Loadpoints over REST: what the energy manager decided and why, and changing a loadpoint's mode.

    GET /api/loadpoints               every configured loadpoint with its current decision
    GET /api/loadpoints/{id}          one loadpoint
    PUT /api/loadpoints/{id}/mode     {"mode": "off" | "now" | "minpv" | "pv"} (bearer token)

Its rows join the route table (`actors.api.routes.ROUTES`), its handlers the app's, and
its schemas `schemas.COMPONENTS`, like `charger_admin`.

Where the answers come from: the configuration (`loadpoints`) says which loadpoints
exist; the energy actor publishes each one's decision to the actor tree on every loop,
so a GET never waits for the control loop. A mode change is stored first
(`storage.loadpoints`, so it survives any restart and a refused request changes
nothing), then the energy actor is told to decide at once; the answer carries the new
decision. When the actor is restarting, the mode is stored all the same and the answer
says `applied: false`: the actor reads it when it starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from actors.api import schemas
from actors.api.backend import ApiError, ConflictError, NotFoundError, NotSupportedError
from actors.api.route_spec import BAD_INPUT, NOT_FOUND, UNAVAILABLE, WRITE_ERRORS, Param, Route
from actors.energy.config import mode_problem, parse_loadpoints
from actors.energy.control import MODES, LoadpointConfig
from storage import loadpoints as store

LOADPOINT_ID = Param("id", "path", {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}$"}, True, "the loadpoint id (`id` of its [[loadpoints]] entry)")
MODE_APPLY_TIMEOUT = 3.0  # the energy actor decides from what it holds: it answers in milliseconds when it runs

_number = {"type": ["number", "null"]}
_string = {"type": ["string", "null"]}

LoadpointModeRequest: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["mode"],
    "properties": {"mode": {"type": "string", "enum": list(MODES),
                            "description": "off: 0 A limit; now: full power; minpv: the minimum current, more from surplus; pv: surplus only"}},
}

LoadpointDecision: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "the latest decision of the control loop (null before the first)",
    "properties": {
        "limit_a": {"type": "number", "description": "current limit per phase given to the charger (0: paused)"},
        "phases": {"type": "integer", "enum": [1, 3]},
        "enabled": {"type": "boolean", "description": "whether the car may charge"},
        "managed": {"type": "boolean", "description": "false: no profile of ours (mode now without a main fuse: ClearChargingProfile)"},
        "reason": {"type": "string", "description": "why, in a sentence: surplus, timers, limits"},
        "surplus_w": _number, "fuse_limit_a": _number,
        "timers": {"type": "object", "description": "the energy integrals towards enabling, disabling and switching phases, in Wh, and the phase switches of the last hour",
                   "additionalProperties": {"type": "number"}},
        "at": _number,
    },
}

Loadpoint: dict[str, Any] = {
    "type": "object", "required": ["id", "charger", "connector", "mode", "state"],
    "properties": {
        "id": {"type": "string"}, "charger": {"type": "string"}, "connector": {"type": "integer"},
        "mode": {"type": "string", "enum": list(MODES)},
        "mode_source": {"type": "string", "enum": ["config", "rest"], "description": "whether the mode was set over REST (it outranks the file)"},
        "state": {"type": "string", "description": "running, or not running (the energy actor is restarting)"},
        "phases_config": {"type": "string", "enum": ["1", "3", "switchable"]},
        "min_current": {"type": "number"}, "max_current": {"type": "number"},
        "grid_meter": _string, "battery": _string,
        "pv": {"type": "array", "items": {"type": "string"}}, "loads": {"type": "array", "items": {"type": "string"}},
        "surplus_source": {"type": ["string", "null"], "enum": ["grid", "pv", None],
                           "description": "grid: the grid meter; pv: PV minus the other loads; null: pv and minpv are refused"},
        "decision": LoadpointDecision,
        "charger_state": {"type": ["object", "null"], "description": "connected, connector status, transaction_id, power_w as the energy manager saw them"},
        "limit_sent": {"type": ["object", "null"], "description": "the last SetChargingProfile/ClearChargingProfile sent: variant, limit, stack level, unit, the charger's answer"},
        "accepted": {"type": "boolean", "description": "whether the charger accepted the current decision's limit"},
        "profile_variant": _string,
        "zero_refused": {"type": "boolean", "description": "this charger model refuses a 0 A limit (it is held at the minimum instead)"},
        "composite_schedule": {"type": ["object", "null"], "description": "the charger's GetCompositeSchedule answer after the last accepted limit"},
        "starts": {"type": "integer"}, "stops": {"type": "integer"},
    },
}

LoadpointList: dict[str, Any] = {"type": "object", "required": ["loadpoints"], "properties": {"loadpoints": {"type": "array", "items": {"$ref": "#/components/schemas/Loadpoint"}}}}

LoadpointModeResult: dict[str, Any] = {
    "type": "object", "required": ["id", "mode", "applied", "loadpoint"],
    "properties": {"id": {"type": "string"}, "mode": {"type": "string", "enum": list(MODES)},
                   "applied": {"type": "boolean", "description": "false: stored, and the energy actor (restarting) takes it when it starts"},
                   "loadpoint": {"$ref": "#/components/schemas/Loadpoint"}},
}

schemas.COMPONENTS.update({"LoadpointModeRequest": LoadpointModeRequest, "Loadpoint": Loadpoint, "LoadpointList": LoadpointList,
                           "LoadpointModeResult": LoadpointModeResult})

NO_LOADPOINT = (404, ("no loadpoint with this id is configured", "Error"))
ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/loadpoints", "list_loadpoints", "Loadpoints (solar-surplus charging) with the current decision and why", "energy",
          responses={200: ("loadpoints", "LoadpointList"), 503: UNAVAILABLE[1]}),
    Route("GET", "/api/loadpoints/{id}", "get_loadpoint", "One loadpoint: mode, decision, limit sent, the charger's answer, composite schedule", "energy",
          params=(LOADPOINT_ID,), responses={200: ("loadpoint", "Loadpoint"), **dict([BAD_INPUT, NOT_FOUND, UNAVAILABLE])}),
    Route("PUT", "/api/loadpoints/{id}/mode", "set_loadpoint_mode", "Change a loadpoint's mode (stored; the energy manager decides at once)", "energy",
          params=(LOADPOINT_ID,), body="LoadpointModeRequest", protected=True,
          responses={200: ("mode stored (and applied, unless `applied` is false)", "LoadpointModeResult"), **WRITE_ERRORS, **dict([NO_LOADPOINT]),
                     409: ("this loadpoint cannot run in that mode (pv/minpv without a grid meter or measured loads)", "Error"),
                     501: ("this gateway's API has no database for loadpoint modes", "Error")}),
)


def configured(config: dict[str, Any]) -> list[LoadpointConfig]:
    loadpoints, _ = parse_loadpoints(config.get("loadpoints") or [])
    return loadpoints


def energy_views(tree: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], bool]:
    """(loadpoint id -> what the energy actor published, whether it is running) from the API's tree."""
    for record in tree:
        if record.get("name") == "energy":
            info = record.get("info") or {}
            views = info.get("loadpoints") if isinstance(info.get("loadpoints"), dict) else {}
            return views, record.get("state") == "running"
    return {}, False


def loadpoint_view(lp: LoadpointConfig, published: dict[str, Any] | None, running: bool, stored_mode: str | None) -> dict[str, Any]:
    """A loadpoint as REST shows it: its configuration, then what the energy actor last published."""
    published = published if isinstance(published, dict) else {}
    view: dict[str, Any] = {
        "id": lp.id, "charger": lp.charger, "connector": lp.connector,
        "mode": stored_mode or lp.mode, "mode_source": "rest" if stored_mode else "config",
        "state": "running" if running and published else "not running",
        "phases_config": lp.phases, "min_current": lp.min_current, "max_current": lp.max_current,
        "grid_meter": lp.grid_meter, "battery": lp.battery, "pv": list(lp.pv), "loads": list(lp.loads), "surplus_source": lp.surplus_source,
        "decision": None, "charger_state": None, "limit_sent": None, "accepted": False, "profile_variant": None, "zero_refused": False,
        "composite_schedule": None, "starts": 0, "stops": 0,
    }
    for key in ("decision", "charger_state", "limit_sent", "accepted", "profile_variant", "zero_refused", "composite_schedule", "starts", "stops"):
        if key in published:
            view[key] = published[key]
    if running and published.get("mode") in MODES:
        view["mode"], view["mode_source"] = published["mode"], published.get("mode_source", view["mode_source"])
    return view


def _db(state: Any) -> Path | None:
    path = getattr(state.backend, "db_path", None)
    return Path(path) if path else None


async def _stored_modes(state: Any) -> dict[str, str]:
    path = _db(state)
    if path is None or not path.exists():
        return {}
    from actors.api.stores import writable

    def read() -> dict[str, str]:
        with writable(path, store.init) as conn:
            return store.modes(conn)

    return await asyncio.to_thread(read)


async def _tree(state: Any) -> list[dict[str, Any]]:
    try:
        return await state.call("actor tree", state.backend.tree())
    except ApiError:
        return []  # the configuration still says which loadpoints exist


def handlers() -> dict[str, Callable[..., Awaitable[Any]]]:
    """Handlers by operation name, merged into the app's."""
    from actors.api.app import ApiState, json_response

    async def views(s: ApiState) -> list[dict[str, Any]]:
        config = await s.call("configuration", s.backend.config())
        published, running = energy_views(await _tree(s))
        modes = await _stored_modes(s)
        return [loadpoint_view(lp, published.get(lp.id), running, modes.get(lp.id)) for lp in configured(config)]

    async def list_loadpoints(s: ApiState, p: dict, b: None) -> Any:
        return json_response({"loadpoints": await views(s)})

    async def get_loadpoint(s: ApiState, p: dict, b: None) -> Any:
        view = next((v for v in await views(s) if v["id"] == p["id"]), None)
        if view is None:
            raise NotFoundError(f"no loadpoint {p['id']!r} is configured", field="path.id")
        return json_response(view)

    async def set_loadpoint_mode(s: ApiState, p: dict, body: dict) -> Any:
        config = await s.call("configuration", s.backend.config())
        lp = next((lp for lp in configured(config) if lp.id == p["id"]), None)
        if lp is None:
            raise NotFoundError(f"no loadpoint {p['id']!r} is configured", field="path.id")
        problem = mode_problem(lp, body["mode"])
        if problem:
            raise ConflictError(f"loadpoint {lp.id}: {problem}", field="mode", code="mode_unavailable")
        path = _db(s)
        if path is None:
            raise NotSupportedError("this gateway's API has no database for loadpoint modes")
        from actors.api.stores import writable

        def write() -> None:
            with writable(path, store.init) as conn:
                store.set_mode(conn, lp.id, body["mode"])

        await asyncio.to_thread(write)
        applied_view = await _apply(s, lp.id)
        if applied_view is not None:
            view = loadpoint_view(lp, applied_view, True, body["mode"])
        else:
            view = next(v for v in await views(s) if v["id"] == lp.id)
            view["mode"], view["mode_source"] = body["mode"], "rest"
        return json_response({"id": lp.id, "mode": body["mode"], "applied": applied_view is not None, "loadpoint": view})

    return {"list_loadpoints": list_loadpoints, "get_loadpoint": get_loadpoint, "set_loadpoint_mode": set_loadpoint_mode}


async def _apply(s: Any, loadpoint_id: str) -> dict[str, Any] | None:
    """Tell the energy actor to take the stored mode now; its new view, or None when it cannot be reached."""
    from actors.energy.messages import LoadpointModeSet, SetLoadpointMode

    port = getattr(s.backend, "port", None)
    if port is None:
        return None
    try:
        address = await port.lookup("energy", MODE_APPLY_TIMEOUT)
        if address is None:
            return None
        reply = await port.ask(address, SetLoadpointMode(loadpoint_id),
                               match=lambda m: isinstance(m, LoadpointModeSet) and m.loadpoint_id == loadpoint_id, timeout=MODE_APPLY_TIMEOUT)
    except Exception:  # noqa: BLE001 - a timeout or a restarting actor: the stored mode is taken when it starts
        return None
    return reply.view if reply is not None else None


__all__ = ["ROUTES", "handlers"]
