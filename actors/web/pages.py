"""The page's HTML, rendered on the server from one layout, and its two assets.

Each section is its own page (`/`, `/devices`, `/chargers`, `/uploads`, `/system`) so a
phone loads only what it shows and a link goes straight to it. The server renders the
layout, the navigation and what it knows without asking any actor (the device form with
the profiles this build ships); `egw.js` fills in the data from the REST endpoints and the
live feed. There is no build step and nothing is fetched from anywhere but the gateway:
the Content-Security-Policy allows only the gateway's own origin, so a page that tried
would be stopped by the browser itself.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources

from aiohttp import web

SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("overview", "/", "Overview"),
    ("devices", "/devices", "Devices"),
    ("chargers", "/chargers", "Chargers and loadpoints"),
    ("uploads", "/uploads", "Uploads"),
    ("system", "/system", "System"),
)
ASSETS = ("egw.css", "egw.js", "layout.html")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; connect-src 'self'; style-src 'self'; script-src 'self'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@cache
def asset(name: str) -> bytes:
    """An asset's bytes, read once from the package (they ship as package data)."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files("actors.web").joinpath("assets", name).read_bytes()


def assets_size() -> int:
    """Bytes the browser loads for one page: the layout and both assets (docs/web.md keeps this under 150 KB)."""
    return sum(len(asset(name)) for name in ASSETS)


def _profiles() -> list[str]:
    try:
        from actors.device.profile import profile_names
    except ImportError:  # a build without the device family: the form still renders, REST answers 501
        return ["sunspec"]
    return list(profile_names())


def _section(name: str) -> str:
    if name == "devices":
        options = "".join(f'<option value="{html.escape(p)}"{" selected" if p == "sunspec" else ""}>{html.escape(p)}</option>' for p in _profiles())
        return DEVICES.replace("{{profiles}}", options)
    return {"overview": OVERVIEW, "chargers": CHARGERS, "uploads": UPLOADS, "system": SYSTEM}[name]


PATHS = {path: name for name, path, _ in SECTIONS}
ASSET_TYPES = {"/assets/egw.css": ("egw.css", "text/css"), "/assets/egw.js": ("egw.js", "text/javascript")}


@web.middleware
async def pages_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """GET of a section or an asset is answered here, before the route table.

    The page is not part of the API: the route table (and the OpenAPI document made from
    it) lists the JSON endpoints the page reads, not the HTML that reads them.
    """
    if request.method != "GET":
        return await handler(request)
    if request.path in PATHS:
        from actors.api.app import STATE_KEY

        return web.Response(text=render(PATHS[request.path], request.app[STATE_KEY].version), content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache", **SECURITY_HEADERS})
    if request.path in ASSET_TYPES:
        name, content_type = ASSET_TYPES[request.path]
        return web.Response(body=asset(name), content_type=content_type, charset="utf-8",
                            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
    return await handler(request)


def render(name: str, version: str) -> str:
    """The HTML of one section inside the shared layout."""
    titles = {n: t for n, _, t in SECTIONS}
    nav = "".join(f'<a href="{path}"{" aria-current=page" if n == name else ""}>{html.escape(t.split(" ")[0])}</a>' for n, path, t in SECTIONS)
    layout = asset("layout.html").decode()
    return (layout.replace("{{title}}", html.escape(titles[name])).replace("{{page}}", name).replace("{{nav}}", nav)
            .replace("{{version}}", html.escape(version)).replace("{{section}}", _section(name)))


OVERVIEW = """
<section id="flow" class="flow" aria-label="Power now">
  <div class="tile" id="tile-pv"><h2>PV</h2><p class="big" id="flow-pv">–</p><p class="sub" id="flow-pv-sub"></p></div>
  <div class="tile" id="tile-house"><h2>House</h2><p class="big" id="flow-house">–</p><p class="sub" id="flow-house-sub"></p></div>
  <div class="tile" id="tile-grid"><h2>Grid</h2><p class="big" id="flow-grid">–</p><p class="sub" id="flow-grid-sub"></p></div>
  <div class="tile" id="tile-battery"><h2>Battery</h2><p class="big" id="flow-battery">–</p><p class="sub" id="flow-battery-sub"></p></div>
</section>
<p class="sub" id="flow-updated">waiting for the first reading…</p>
<section aria-label="Chargers now"><h2>Chargers</h2><div id="flow-chargers" class="flow"><p class="muted">no chargers yet</p></div></section>
<section aria-label="Today"><h2>Today</h2>
  <dl class="today"><dt>PV produced</dt><dd id="today-pv">–</dd><dt>Grid import</dt><dd id="today-import">–</dd>
  <dt>Grid export</dt><dd id="today-export">–</dd></dl><p class="sub" id="today-since"></p>
</section>
"""

DEVICES = """
<section aria-label="Devices"><h2>Inverters and meters</h2>
  <div class="scroll"><table id="devices" class="cards"><thead><tr><th>Device</th><th>State</th><th>Last reading</th><th>Values</th><th>Errors</th><th>Gaps</th><th></th></tr></thead>
  <tbody><tr><td colspan="7" class="muted">loading…</td></tr></tbody></table></div>
</section>
<section aria-label="Add a device"><h2>Add a device</h2>
  <form id="add-device" class="form" autocomplete="off">
    <label>Id <input name="id" required placeholder="roof"></label>
    <label>Profile <select name="profile">{{profiles}}</select></label>
    <label>Host (Modbus TCP) <input name="host" placeholder="192.168.1.40"></label>
    <label>Port <input name="port" inputmode="numeric" placeholder="502"></label>
    <label>Serial port (Modbus RTU) <input name="serial_port" placeholder="/dev/ttyUSB0"></label>
    <label>Unit id <input name="unit_id" inputmode="numeric" placeholder="1"></label>
    <label>Poll interval (s) <input name="poll_interval" inputmode="decimal" placeholder="10"></label>
    <button type="submit">Add device</button>
  </form>
  <p id="add-device-result" role="status" class="result"></p>
</section>
"""

CHARGERS = """
<section aria-label="Chargers"><h2>Chargers</h2><div id="chargers"><p class="muted">loading…</p></div></section>
<section aria-label="Loadpoints"><h2>Loadpoints</h2><div id="loadpoints"><p class="muted">loading…</p></div>
  <p id="loadpoint-result" role="status" class="result"></p></section>
<section aria-label="Recent sessions"><h2>Recent sessions</h2><div id="sessions"><p class="muted">loading…</p></div></section>
"""

UPLOADS = """
<section aria-label="Outbox"><h2>Outbox</h2><dl class="today" id="outbox"><dt>loading…</dt><dd></dd></dl></section>
<section aria-label="Transports"><h2>Transports</h2><div class="scroll"><table id="transports" class="cards"><thead><tr><th>Transport</th><th>State</th>
  <th>Last success</th><th>Pending</th><th>Last error</th></tr></thead><tbody></tbody></table></div></section>
<section aria-label="Dead letters"><h2>Dead letters</h2><div id="dead-letters"><p class="muted">loading…</p></div>
  <p id="resend-result" role="status" class="result"></p></section>
"""

SYSTEM = """
<section aria-label="Supervision tree"><h2>Supervision tree</h2><div id="tree"><p class="muted">loading…</p></div></section>
<section aria-label="Recent warnings"><h2>Recent warnings</h2><div id="warnings"><p class="muted">loading…</p></div></section>
"""
