"""The `ocpp` package's ChargePoint over an aiohttp websocket client.

`ocpp.ChargePoint` needs an object with `send(text)` and `recv()`; it is usually given a
`websockets` connection. The gateway already depends on aiohttp, so this adapter lets the
simulator (and the tests) use the package's independent client code without another
websocket library.
"""

from __future__ import annotations

import base64

import aiohttp


class ConnectionClosedError(ConnectionError):
    """The websocket closed; `code` is the close code the central system sent."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"websocket closed (code {code}) {reason}".strip())
        self.code = code
        self.reason = reason


class AiohttpConnection:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    async def recv(self) -> str:
        msg = await self.ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            return msg.data
        raise ConnectionClosedError(self.ws.close_code, str(msg.extra or ""))

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


def basic_auth_header(charge_point_id: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{charge_point_id}:{key}".encode()).decode()


async def connect(url: str, *, auth_key: str | None = None, subprotocols: tuple[str, ...] = ("ocpp1.6",), ssl: object = True, timeout: float = 10.0) -> AiohttpConnection:
    """Open `ws://host:port/ocpp/<id>` as charge point `<id>` (the URL's last segment).

    Raises `aiohttp.WSServerHandshakeError` (with `.status`) when the gateway refuses.
    """
    charge_point_id = url.rstrip("/").rsplit("/", 1)[-1]
    headers = {"Authorization": basic_auth_header(charge_point_id, auth_key)} if auth_key is not None else {}
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=timeout))
    try:
        ws = await session.ws_connect(url, protocols=subprotocols, headers=headers, ssl=ssl, heartbeat=None, autoping=True)
    except BaseException:
        await session.close()
        raise
    return AiohttpConnection(session, ws)
