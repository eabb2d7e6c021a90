"""The upload client against raw sockets: what it sends, and what it refuses to wait for or hold."""

from __future__ import annotations

import base64
import socket
import threading

import pytest

from actors.harvest.uplink import MAX_REPLY_BYTES, http_post


class OneShotServer:
    """Accepts one request, records it, and answers with `reply` (bytes, sent in `pieces` with `pause` s between)."""

    def __init__(self, reply: bytes, pieces: int = 1, pause: float = 0.0) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply, self.pieces, self.pause = reply, pieces, pause
        self.request = b""
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(5)
        while b"\r\n\r\n" not in self.request:
            self.request += conn.recv(65536)
        head, _, body = self.request.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += conn.recv(65536)
        size = -(-len(self.reply) // self.pieces)
        try:
            for start in range(0, len(self.reply), size):
                conn.sendall(self.reply[start:start + size])
                if self.pause and not self.done.wait(self.pause):
                    continue
        except OSError:
            pass
        conn.close()
        self.done.set()

    def close(self) -> None:
        self.done.set()
        self.listener.close()


def ok(body: bytes = b'{"acked": {}}') -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def test_the_query_string_and_the_user_info_of_the_url_reach_the_receiver():
    server = OneShotServer(ok())
    try:
        reply = http_post(f"http://fleet:pa%3Ass@127.0.0.1:{server.port}/v1/batches?api_key=K&site=7", b"signed-batch", 5.0)
    finally:
        server.close()
    assert reply.status == 200 and reply.body == b'{"acked": {}}'
    request_line, *headers = server.request.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert request_line == b"POST /v1/batches?api_key=K&site=7 HTTP/1.1"
    fields = {name.strip().lower(): value.strip() for name, _, value in (h.partition(b":") for h in headers)}
    assert fields[b"authorization"] == b"Basic " + base64.b64encode(b"fleet:pa:ss")  # user info as Basic auth, percent-decoded
    assert not any(b"fleet" in value for name, value in fields.items() if name != b"authorization")


def test_a_reply_larger_than_the_bound_is_refused_not_held_in_memory():
    server = OneShotServer(ok(b"x" * (MAX_REPLY_BYTES + 1)))
    try:
        with pytest.raises(OSError, match="larger than"):
            http_post(f"http://127.0.0.1:{server.port}/", b"batch", 10.0)
    finally:
        server.close()


def test_a_receiver_that_trickles_its_reply_is_given_up_on_at_the_total_timeout():
    """Each piece arrives well within a per-read timeout, but the whole reply would take 20 s."""
    server = OneShotServer(ok(b"y" * 40), pieces=40, pause=0.5)
    try:
        with pytest.raises(OSError, match="no complete reply within"):
            http_post(f"http://127.0.0.1:{server.port}/", b"batch", 1.5)
        assert not server.done.is_set()  # given up on while the receiver was still trickling
    finally:
        server.close()
