"""The web page's rows in the route table, their handlers, and what the page adds to the app.

The JSON endpoints join `actors.api.routes.ROUTES` and the app's handlers like
`actors.api.charger_admin` does, so the token check, the request counters, the OpenAPI
document and the route-table tests cover them too:

    GET    /api/session                                 whether the request is signed in (the cookie, or the token)
    POST   /api/session                                 sign in: the token as the bearer header answers the session cookies
    DELETE /api/session                                 sign out: the cookies are cleared
    GET    /api/energy/today                            today's energy per counter, and which device is the grid meter
    GET    /api/warnings                                the latest warnings: supervision events, device gaps, the API's log (warnings_view.py)

Everything the page shows comes from the REST endpoints; these add only what no other
endpoint answers (today's energy, the sign-in). The HTML and its two assets are not API
and not in the table (the OpenAPI document describes JSON endpoints): `pages.pages_middleware`
serves them in front of it (`/`, `/devices`, `/chargers`, `/uploads`, `/system`,
`/assets/egw.css`, `/assets/egw.js`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from actors.api import schemas
from actors.api.backend import ApiError
from actors.api.route_spec import TOKEN_REQUIRED, UNAVAILABLE, Route
from actors.web import pages, warnings_view as warnings
from actors.web.session import SESSION_TTL, clear_session_cookies, csrf_token, issue_session, set_session_cookies

_time = {"type": ["string", "null"], "format": "date-time"}
Session = {
    "type": "object", "required": ["signed_in"],
    "description": "a signed-in browser: the session cookie `egw_session` (HttpOnly) stands for the token; writes it makes carry "
                   "`X-CSRF-Token` with the value of the cookie `egw_csrf` (docs/web.md)",
    "properties": {"signed_in": {"type": "boolean"}, "expires": _time,
                   "csrf_token": {"type": "string", "description": "the X-CSRF-Token value of this session (also in the egw_csrf cookie)"}},
}
EnergyCounter = {
    "type": "object", "required": ["device", "quantity", "start_wh", "now_wh", "today_wh", "since"],
    "properties": {"device": {"type": "string"}, "quantity": {"type": "string"}, "start_wh": {"type": "number"}, "now_wh": {"type": "number"},
                   "today_wh": {"type": "number"}, "since": {"type": "string", "format": "date-time",
                                                              "description": "when the day's first value was seen (after midnight, or when the API started)"}},
}
EnergyToday = {
    "type": "object", "required": ["date", "since", "pv_wh", "grid_import_wh", "grid_export_wh", "pv_devices", "grid_device", "counters"],
    "description": "energy since local midnight, from the devices' counters: the first value of each counter seen today against its latest; "
                   "`since` is the latest of their first sightings (the API samples them every minute, so it is midnight unless the API started later)",
    "properties": {
        "date": {"type": "string", "format": "date"}, "since": _time,
        "pv_wh": {"type": ["number", "null"], "description": "sum of energy_total_wh over the inverters"},
        "grid_import_wh": {"type": ["number", "null"]}, "grid_export_wh": {"type": ["number", "null"]},
        "pv_devices": {"type": "array", "items": {"type": "string"}, "description": "devices counted as PV (they report pv_power_w, ac_power_w or energy_total_wh)"},
        "grid_device": {"type": ["string", "null"], "description": "the device read as the grid meter: a meter (meter_power_w, no PV power), "
                                                                   "else the first inverter with a meter of its own"},
        "counters": {"type": "array", "items": {"$ref": "#/components/schemas/EnergyCounter"}},
    },
}
COMPONENTS: dict[str, dict[str, Any]] = {"Session": Session, "EnergyCounter": EnergyCounter, "EnergyToday": EnergyToday, **warnings.COMPONENTS}
schemas.COMPONENTS.update(COMPONENTS)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/session", "session", "Whether this request is signed in (the page's session cookie, or the bearer token)", "web page",
          protected=True, responses={200: ("signed in", "Session"), 401: TOKEN_REQUIRED[1]}),
    Route("POST", "/api/session", "sign_in", "Sign a browser in: present the token as the bearer header, get the session cookies", "web page",
          protected=True, responses={200: ("signed in; Set-Cookie egw_session (HttpOnly, SameSite=Strict) and egw_csrf", "Session"),
                                     401: TOKEN_REQUIRED[1], 403: ("a cookie-authenticated write without the CSRF header", "Error")}),
    Route("DELETE", "/api/session", "sign_out", "Sign the browser out (its cookies are cleared)", "web page", protected=True,
          responses={200: ("signed out", "Session"), 401: TOKEN_REQUIRED[1], 403: ("a cookie-authenticated write without the CSRF header", "Error")}),
    Route("GET", "/api/energy/today", "energy_today", "Today's energy: PV produced, grid imported and exported since local midnight", "devices",
          responses={200: ("today's energy", "EnergyToday"), 503: UNAVAILABLE[1]}),
    warnings.ROUTE,
)

PV_QUANTITIES = ("pv_power_w", "ac_power_w", "energy_total_wh")
COUNTERS = ("energy_total_wh", "meter_import_wh", "meter_export_wh")
SAMPLE_EVERY = 60.0


def site_roles(devices: list[dict[str, Any]]) -> tuple[list[str], str | None]:
    """Which devices are PV and which one is read as the grid meter.

    Inverters often carry the site meter too (meter_power_w), and so does the meter itself:
    counting each would add the grid two or three times. A meter of its own wins; else the
    first inverter's meter.
    """
    pv = [d["id"] for d in devices if any(q in (d.get("values") or {}) for q in PV_QUANTITIES)]
    meters = [d["id"] for d in devices if "meter_power_w" in (d.get("values") or {})]
    grid = next((m for m in meters if m not in pv), meters[0] if meters else None)
    return pv, grid


class DayBaselines:
    """The first value of each (device, counter) seen on the current local day."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.first: dict[tuple[str, str], tuple[str, float, float]] = {}  # key -> (date, value, seen at)

    def observe(self, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Record first sightings of today; the counters with their day's start and latest value."""
        now = self.clock()
        today = datetime.fromtimestamp(now).date().isoformat()
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for device in devices:
            values = device.get("values") or {}
            for quantity in COUNTERS:
                value = values.get(quantity)
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                key = (str(device["id"]), quantity)
                seen.add(key)
                first = self.first.get(key)
                if first is None or first[0] != today or value < first[1]:  # a new day, or a counter that was reset
                    first = self.first[key] = (today, float(value), now)
                out.append({"device": key[0], "quantity": quantity, "start_wh": first[1], "now_wh": float(value),
                            "today_wh": round(float(value) - first[1], 3), "since": _iso(first[2])})
        for gone in set(self.first) - seen:  # a removed device: bounded by the devices there are
            del self.first[gone]
        return out

    def today(self, devices: list[dict[str, Any]]) -> dict[str, Any]:
        counters = self.observe(devices)
        pv, grid = site_roles(devices)

        def total(quantity: str, ids: list[str]) -> float | None:
            picked = [c["today_wh"] for c in counters if c["quantity"] == quantity and c["device"] in ids]
            return round(sum(picked), 3) if picked else None

        grid_ids = [grid] if grid else []
        return {
            "date": datetime.fromtimestamp(self.clock()).date().isoformat(),
            "since": max((c["since"] for c in counters), default=None),
            "pv_wh": total("energy_total_wh", pv), "grid_import_wh": total("meter_import_wh", grid_ids),
            "grid_export_wh": total("meter_export_wh", grid_ids), "pv_devices": pv, "grid_device": grid, "counters": counters,
        }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


_BASELINES: weakref.WeakKeyDictionary[Any, DayBaselines] = weakref.WeakKeyDictionary()
_APPS: weakref.WeakKeyDictionary[Any, weakref.ref[web.Application]] = weakref.WeakKeyDictionary()  # ApiState -> its app (for the live hub)


def baselines(state: Any) -> DayBaselines:
    found = _BASELINES.get(state)
    if found is None:
        found = _BASELINES[state] = DayBaselines()
    return found


def handlers() -> dict[str, Callable[..., Awaitable[web.StreamResponse]]]:
    """Handlers by operation name, merged into the app's."""
    from actors.api.app import ApiState, json_response

    async def session(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response({"signed_in": True})

    async def sign_in(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        assert s.token is not None  # the route is protected: only the token gets here
        cookie = issue_session(s.token)
        response = json_response({"signed_in": True, "expires": _iso(time.time() + SESSION_TTL), "csrf_token": csrf_token(s.token, cookie)})
        set_session_cookies(response, s.token, cookie)
        return response

    async def sign_out(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        response = json_response({"signed_in": False})
        clear_session_cookies(response)
        return response

    async def energy_today(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response(baselines(s).today(await s.call("devices", s.backend.devices())))

    async def warnings_list(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        from actors.live.routes import HUB_KEY

        app = _APPS[s]() if s in _APPS else None
        hub = app.get(HUB_KEY) if app is not None else None
        return json_response({"warnings": warnings.collect(hub, p["limit"]), "since": warnings.since()})

    return {"session": session, "sign_in": sign_in, "sign_out": sign_out, "energy_today": energy_today, "warnings": warnings_list}


def setup(app: web.Application) -> None:
    """What the page needs on the app besides its routes: the HTML and assets, the session cookie,
    and a sampler that sees each counter's first value of the day even when nobody has the page open."""
    from actors.api.app import STATE_KEY
    from actors.web.session import session_middleware

    app.middlewares.append(pages.pages_middleware)
    app.middlewares.append(session_middleware)
    state = app[STATE_KEY]
    _APPS[state] = weakref.ref(app)
    warnings.install()

    async def sample_counters(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                with contextlib.suppress(ApiError, TimeoutError):
                    baselines(state).observe(await state.call("devices", state.backend.devices()))
                await asyncio.sleep(SAMPLE_EVERY)

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sample_counters)
