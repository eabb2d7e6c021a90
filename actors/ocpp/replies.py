"""Replies from charger actors to the listener, straight into its event loop.

Every frame a charger actor sends used to be a thespian message to the listener
(`FrameOut`): a TCP send, an ack back, a pass of the listener's thespian loop (which
rebuilds its poll set over one socket per charger actor, ~200) and a hop from the actor
thread to the asyncio thread. With 200 chargers that was most of the listener's CPU.

Instead, the listener's event loop serves a unix stream socket and hands its address to
each charger actor in `ChargerConnected`. The address is in Linux's abstract namespace
(nothing to clean up when the listener is SIGKILLed); only processes of the gateway's
own user are served (checked with SO_PEERCRED on every connection). A charger actor keeps one connection to it and
writes each outgoing frame as a length-prefixed record; the listener's loop reads it
and queues the frame on the websocket at once. A stream keeps the sender's order and
has no small queue limit (unix *datagram* sockets stall the sender after 10 queued
datagrams, `net.unix.max_dgram_qlen`). A sender blocks at most `SEND_TIMEOUT` while the
listener is not reading; on any failure (listener gone or restarted, timeout) the
charger actor falls back to `FrameOut` for the rest of that connection, so nothing is
lost; a record cut short by the failure is discarded by the listener.

Record: 4-byte big-endian length, then b"<connection_id> <len(charge_point_id in UTF-8)> "
+ charge_point_id + text (UTF-8).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import struct
from collections.abc import Callable
from typing import Any

SEND_TIMEOUT = 2.0
MAX_RECORD = 16 * 1024 * 1024  # a corrupt length closes that sender's connection


def encode(charge_point_id: str, connection_id: int, text: str) -> bytes:
    cp = charge_point_id.encode()
    body = b"%d %d " % (connection_id, len(cp)) + cp + text.encode()
    return len(body).to_bytes(4, "big") + body


def decode(body: bytes) -> tuple[str, int, str]:
    connection_id, length, rest = body.split(b" ", 2)
    n = int(length)
    return rest[:n].decode(), int(connection_id), rest[n:].decode()


class _Reader(asyncio.Protocol):
    def __init__(self, deliver: Callable[[str, int, str], None], log: Any, readers: set) -> None:
        self.deliver, self.log, self.readers = deliver, log, readers
        self.buffer = bytearray()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if uid != os.getuid():
            self.log.warning("reply connection from another user refused", uid=uid)
            transport.close()
            return
        self.readers.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.readers.discard(self)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 4:
            size = int.from_bytes(buffer[:4], "big")
            if size > MAX_RECORD:
                self.log.warning("corrupt reply record; dropping that charger actor's reply connection", size=size)
                buffer.clear()
                self.transport.close()  # type: ignore[union-attr]
                return
            if len(buffer) < 4 + size:
                return
            body = bytes(buffer[4:4 + size])
            del buffer[:4 + size]
            try:
                frame = decode(body)
            except ValueError:
                self.log.warning("malformed reply record ignored", size=size)
                continue
            self.deliver(*frame)


class ReplyInbox:
    """The listener's end: `await open()` and `close()` on its event loop."""

    def __init__(self, deliver: Callable[[str, int, str], None], log: Any) -> None:
        self.deliver = deliver
        self.log = log
        self.path: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._readers: set[_Reader] = set()

    async def open(self) -> str:
        self.path = f"\0egw-ocpp-replies-{os.getpid()}-{secrets.token_hex(8)}"  # abstract namespace
        self._server = await asyncio.get_running_loop().create_unix_server(lambda: _Reader(self.deliver, self.log, self._readers), self.path)
        return self.path

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for reader in list(self._readers):
            reader.transport.close()  # type: ignore[union-attr]


class ReplySender:
    """The charger actor's end: `send()` returns False when the caller must use `FrameOut`."""

    def __init__(self) -> None:
        self.path: str | None = None
        self._sock: socket.socket | None = None

    def use(self, path: str | None) -> None:
        """The reply path for a new connection (a restarted listener has a new one)."""
        if path != self.path:
            self.close()
        self.path = path

    def send(self, charge_point_id: str, connection_id: int, text: str) -> bool:
        if self.path is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.settimeout(SEND_TIMEOUT)
                self._sock.connect(self.path)
            self._sock.sendall(encode(charge_point_id, connection_id, text))
        except OSError:
            self.close()
            self.path = None  # FrameOut for the rest of this connection: switching back could reorder frames
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
