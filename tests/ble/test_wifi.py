"""Wi-Fi provisioning through the tunnel, into the REST API's own handlers (fake network stack).

The endpoints themselves are tested over HTTP in tests/api/test_provisioning.py; here
the phone's path: EGWTTP over the tunnel, forwarded over loopback HTTP to the real API
app, with the provisioning window and the setup code deciding what may pass.
"""

from __future__ import annotations

import json

from aiohttp import web

from actors.api.app import build_app
from actors.ble.dispatch import HttpDispatcher
from actors.ble.setup_code import SetupCodeGuard
from actors.ble.tunnel import Tunnel
from tests.api.conftest import TOKEN, MemoryBackend
from tests.ble.conftest import parse_page

PSK = "correct horse battery"
CODE = b"ABCD-EFGH-JKMN"


async def test_provisioning_through_the_tunnel():
    backend = MemoryBackend()
    runner = web.AppRunner(build_app(backend, token=TOKEN, version="t"))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    window = {"open": True}
    tunnel = Tunnel(HttpDispatcher(runner.addresses[0][1]), lambda: window["open"], lambda: TOKEN, SetupCodeGuard(CODE.decode()))

    async def send(raw: bytes):
        result = tunnel.feed(raw)
        return parse_page(result if isinstance(result, bytes) else await tunnel.handle(result))

    try:
        assert (await send(b"GET /api/token EGWTTP/1.1\r\n\r\n")).status == 403
        body = json.dumps({"ssid": "home", "psk": PSK}).encode()
        # the phone holds the setup code, not the API token: the tunnel adds the token on the loopback hop
        page = await send(b"POST /api/wifi EGWTTP/1.1\r\nSetup-Code: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (CODE, len(body), body))
        assert page.status == 202 and PSK.encode() not in page.raw
        assert backend.wifi_stack.profile == ("home", PSK)
        bad = json.dumps({"ssid": "home", "psk": "short"}).encode()
        page = await send(b"POST /api/wifi EGWTTP/1.1\r\nSetup-Code: %s\r\nContent-Length: %d\r\n\r\n%s" % (CODE, len(bad), bad))
        assert page.status == 400 and page.body.startswith(b'{"error": "bad_request", "field": "psk"') and b"short" not in page.raw
        page = await send(b"GET /api/wifi EGWTTP/1.1\r\n\r\n")
        assert page.status == 200 and b'"connected"' in page.raw
        window["open"] = False
        page = await send(b"DELETE /api/wifi EGWTTP/1.1\r\nSetup-Code: %s\r\n\r\n" % CODE)
        assert page.status == 403 and backend.wifi_stack.profile == ("home", PSK)
    finally:
        await tunnel.dispatcher.close()
        await runner.cleanup()
