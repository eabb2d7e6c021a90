"""Dispatchers for the tunnel: where a tunnelled request is executed.

`HttpDispatcher` forwards to the gateway's own REST API over loopback HTTP, so a
request arriving over BLE meets exactly the handlers, validation and token check of
a request arriving over the LAN: one implementation, no second code path to audit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

from actors.ble.tunnel import DispatchResult, TunnelError


class HttpDispatcher:
    """Forwards requests to `http://127.0.0.1:<port>`; reads at most `max_response` bytes back."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0, max_response: int = 192 * 1024) -> None:
        self.base_url = f"http://{host}:{port}"
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_response = max_response
        self._session: aiohttp.ClientSession | None = None

    async def dispatch(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> DispatchResult:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, auto_decompress=False)
        try:
            async with self._session.request(method, self.base_url + path, headers=dict(headers), data=body or None, allow_redirects=False) as reply:
                return DispatchResult(reply.status, dict(reply.headers), await self._read_bounded(reply.content))
        except asyncio.TimeoutError:
            raise TunnelError(504, "local API timed out", method, path) from None
        except aiohttp.ClientError:
            raise TunnelError(502, "local API unreachable", method, path) from None

    async def _read_bounded(self, content: aiohttp.StreamReader) -> bytes:
        """The body, or its first `max_response + 1` bytes (enough for the tunnel to say "too large").

        One `read(n)` returns whatever has arrived, which for a large body is only its
        first chunk: keep reading until the end or the bound.
        """
        chunks, total = [], 0
        while total <= self.max_response:
            chunk = await content.read(self.max_response + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
