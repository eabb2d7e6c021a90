"""A direct link between each charger actor and the listener's event loop, for frames.

Every frame used to be two thespian messages: `FrameIn` listener -> charger actor and
`FrameOut` back. Each was a TCP send plus an ack, a hop between the listener's asyncio
thread and its actor thread, and passes of the listener's thespian loop, which rebuilds
its poll set over one socket per charger actor (~200) on every pass. With 200 chargers
that was nearly all of the listener's CPU (py-spy: ~60 % in selector registration).

Instead, the listener's event loop serves a unix stream socket and hands its address to
each charger actor in `ChargerConnected`. The actor connects, says hello for that
connection, and from then on:

* the actor writes each outgoing frame as a record; the loop queues it on the websocket;
* the loop writes each incoming frame (numbered as before) as a record; the actor's
  thespian loop watches the socket (`ThespianWatch`) and feeds the frames through the
  same resequencer, protocol and store as `FrameIn`s.

Control messages (connect, disconnect, close, ready) stay thespian messages, and so does
supervision. The address is in Linux's abstract namespace (nothing to clean up when the
listener is SIGKILLed); only processes of the gateway's own user are served (SO_PEERCRED).
A stream keeps order and has no small queue limit (unix datagram sockets stall the sender
after 10 queued datagrams, `net.unix.max_dgram_qlen`). When the link fails (either side
restarted, a writer blocked for `SEND_TIMEOUT`, a reader `MAX_BUFFERED` behind) both
sides fall back to `FrameIn`/`FrameOut` for the rest of the connection: the frame
numbers keep the charger actor's input in order across the switch, and frames lost with
a dead actor are repeated by the charger, as before.

The thespian 4.0.1 behaviour worked around (thespian/system/transport/TCPTransport.py):
each `send` is a `TransmitIntent` that connects, transmits and then waits for the
receiver's ack (`_XMITStepWaitForAck`; the receiver answers `ackMsg` once it has read the
whole message), and every pass of `TCPTransport._runWithExpiry` builds a new
`selectors.DefaultSelector()` and registers every socket it has (thespian's own comment
there: "creates selector on each loop, perhaps this could be optimized"), so a pass
costs time in proportion to the number of charger actors. No capability or option
changes either; the supported part used here is `ThespianWatch` (an actor's extra file
descriptors in that same select). `tests/supervisor/test_thespian_workarounds.py` fails
when a charger's answers reach the listener as thespian messages instead of on the link.

Records: a 4-byte big-endian length, then
  actor -> loop:  b"F" or b"H" (hello) + b"<connection_id> <len(charge_point_id)> " + charge_point_id + text
  loop -> actor:  b"<connection_id> <seq> " + text                               (all UTF-8)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import select
import socket
import struct
from collections.abc import Callable
from typing import Any

SEND_TIMEOUT = 2.0
MAX_BUFFERED = 1024 * 1024  # frames queued for one charger actor that does not read them
MAX_RECORD = 16 * 1024 * 1024  # a corrupt length closes that sender's connection


def _record(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def encode(charge_point_id: str, connection_id: int, text: str, kind: bytes = b"F") -> bytes:
    """A charger actor's record: b"F" a frame to send, b"H" hello (text empty)."""
    cp = charge_point_id.encode()
    return _record(kind + b"%d %d " % (connection_id, len(cp)) + cp + text.encode())


def decode(body: bytes) -> tuple[bytes, str, int, str]:
    kind, body = body[:1], body[1:]
    connection_id, length, rest = body.split(b" ", 2)
    n = int(length)
    return kind, rest[:n].decode(), int(connection_id), rest[n:].decode()


def encode_in(connection_id: int, seq: int, text: str) -> bytes:
    """The listener's record: frame number `seq` of connection `connection_id` for the actor."""
    return _record(b"%d %d " % (connection_id, seq) + text.encode())


def decode_in(body: bytes) -> tuple[int, int, str]:
    connection_id, seq, text = body.split(b" ", 2)
    return int(connection_id), int(seq), text.decode()


def split_records(buffer: bytearray) -> list[bytes]:
    """Take the complete records off the front of `buffer`; ValueError for a corrupt length."""
    records = []
    while len(buffer) >= 4:
        size = int.from_bytes(buffer[:4], "big")
        if size > MAX_RECORD:
            raise ValueError(f"record of {size} bytes")
        if len(buffer) < 4 + size:
            break
        records.append(bytes(buffer[4:4 + size]))
        del buffer[:4 + size]
    return records


class _Reader(asyncio.Protocol):
    def __init__(self, inbox: ReplyInbox) -> None:
        self.inbox, self.log, self.readers = inbox, inbox.log, inbox._readers
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
        if self in self.readers:
            self.readers.discard(self)
            self.inbox.lost(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            records = split_records(self.buffer)
        except ValueError as exc:
            self.log.warning("corrupt record; dropping that charger actor's frame connection", error=str(exc))
            self.buffer.clear()
            self.transport.close()  # type: ignore[union-attr]
            return
        for body in records:
            try:
                kind, charge_point_id, connection_id, text = decode(body)
            except ValueError:
                self.log.warning("malformed record ignored", size=len(body))
                continue
            if kind == b"F":
                self.inbox.deliver(charge_point_id, connection_id, text)
            elif kind == b"H":
                self.inbox.hello(charge_point_id, connection_id, self)

    def write_frame(self, connection_id: int, seq: int, text: str) -> bool:
        """Queue a frame for the charger actor; False when the caller must use `FrameIn`."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > MAX_BUFFERED:  # type: ignore[attr-defined]
            self.log.warning("charger actor not reading its frames; dropping its frame connection")
            transport.close()
            return False
        transport.write(encode_in(connection_id, seq, text))  # type: ignore[attr-defined]
        return True


class ReplyInbox:
    """The listener's end: `await open()` and `close()` on its event loop.

    deliver(charge_point_id, connection_id, text): a frame to send to the charger;
    hello(charge_point_id, connection_id, reader): an actor serving that connection
    connected, `reader.write_frame(...)` reaches it; lost(reader): that link is gone.
    """

    def __init__(self, deliver: Callable[[str, int, str], None], log: Any,
                 hello: Callable[[str, int, Any], None] | None = None, lost: Callable[[Any], None] | None = None) -> None:
        self.deliver = deliver
        self.hello = hello or (lambda *_: None)
        self.lost = lost or (lambda _: None)
        self.log = log
        self.path: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._readers: set[_Reader] = set()

    async def open(self) -> str:
        self.path = f"\0egw-ocpp-replies-{os.getpid()}-{secrets.token_hex(8)}"  # abstract namespace
        self._server = await asyncio.get_running_loop().create_unix_server(lambda: _Reader(self), self.path)
        return self.path

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for reader in list(self._readers):
            reader.transport.close()  # type: ignore[union-attr]


class ReplySender:
    """The charger actor's end: `send()` returns False when the caller must use `FrameOut`;
    `receive()` gives the frames the listener wrote (watch `fileno()` with ThespianWatch)."""

    def __init__(self) -> None:
        self.path: str | None = None
        self._sock: socket.socket | None = None
        self._buffer = bytearray()

    def use(self, path: str | None, charge_point_id: str = "", connection_id: int = 0) -> None:
        """The listener's path for a new connection; connect and say hello, so frames come this way too."""
        if path != self.path:
            self.close()
        self.path = path
        if path is not None:
            self.send(charge_point_id, connection_id, "", kind=b"H")

    def fileno(self) -> int | None:
        return self._sock.fileno() if self._sock is not None else None

    def receive(self) -> list[tuple[int, int, str]]:
        """The frames readable now, as (connection_id, seq, text); never blocks."""
        sock = self._sock
        if sock is None or not select.select([sock], [], [], 0)[0]:
            return []
        try:
            data = sock.recv(1024 * 1024)
        except OSError:
            data = b""
        if not data:  # the listener closed it (restart, or we did not read): FrameIn/FrameOut from now on
            self.close()
            self.path = None
            return []
        self._buffer += data
        try:
            return [decode_in(body) for body in split_records(self._buffer)]
        except ValueError:
            self.close()
            self.path = None
            return []

    def send(self, charge_point_id: str, connection_id: int, text: str, kind: bytes = b"F") -> bool:
        if self.path is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.settimeout(SEND_TIMEOUT)
                self._sock.connect(self.path)
            self._sock.sendall(encode(charge_point_id, connection_id, text, kind))
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
        self._buffer.clear()
