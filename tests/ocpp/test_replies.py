"""The charger actor -> listener reply channel (a unix stream into the listener's loop)."""

from __future__ import annotations

import asyncio

from actors.ocpp import replies
from actors.ocpp.replies import ReplyInbox, ReplySender
from supervisor.logs import ActorLog
from tests.conftest import wait_until_async


def test_encoding_round_trips_any_id_and_text():
    for cp, text in [("CP1", '[3,"a",{}]'), ("with space \u00e9 1 2", "x y z"), ("", "")]:
        record = replies.encode(cp, 42, text)
        assert int.from_bytes(record[:4], "big") == len(record) - 4
        assert replies.decode(record[4:]) == (b"F", cp, 42, text)
        assert replies.decode_in(replies.encode_in(42, 7, text)[4:]) == (42, 7, text)


async def test_frames_arrive_in_order():
    got: list[tuple[str, int, str]] = []
    inbox = ReplyInbox(lambda *frame: got.append(frame), ActorLog("test"))
    path = await inbox.open()
    assert path.startswith("\0")  # abstract: no file left behind by a SIGKILLed listener
    sender = ReplySender()
    sender.use(path)

    def burst() -> list[bool]:  # from another thread, as from a charger actor's process
        return [sender.send("CP1", 7, f"frame {i} " + "x" * (i % 7) * 100) for i in range(500)]

    assert all(await asyncio.to_thread(burst))
    await wait_until_async(lambda: len(got) == 500, what="500 frames")
    assert got == [("CP1", 7, f"frame {i} " + "x" * (i % 7) * 100) for i in range(500)]
    inbox.close()
    sender.close()


async def test_sender_falls_back_when_the_listener_is_gone(tmp_path):
    sender = ReplySender()
    assert not sender.send("CP1", 1, "no path yet")
    sender.use(str(tmp_path / "nobody-listens"))
    assert not sender.send("CP1", 1, "x")
    assert sender.path is None  # FrameOut for the rest of this connection
    got: list = []
    lost: list = []
    inbox = ReplyInbox(lambda *frame: got.append(frame), ActorLog("test"), lost=lost.append)
    sender.use(await inbox.open())
    assert await asyncio.to_thread(sender.send, "CP1", 2, "a")
    await wait_until_async(lambda: got, what="the frame")
    inbox.close()  # the listener restarted: its socket is gone
    await wait_until_async(lambda: lost, what="the listener's end of the link closed")
    assert got == [("CP1", 2, "a")]
    for _ in range(3):  # the first write may still land in the dead socket's buffer; then it fails
        if not sender.send("CP1", 2, "b"):
            break
    assert sender.path is None
    sender.close()


async def test_frames_to_the_actor_take_the_link_once_it_said_hello():
    got: list = []
    links: dict = {}
    inbox = ReplyInbox(lambda *frame: got.append(frame), ActorLog("test"),
                       hello=lambda cp, conn, reader: links.__setitem__((cp, conn), reader),
                       lost=lambda reader: links.clear())
    sender = ReplySender()
    await asyncio.to_thread(sender.use, await inbox.open(), "CP1", 3)
    await wait_until_async(lambda: links, what="the hello")
    reader = links[("CP1", 3)]
    assert sender.receive() == []  # nothing written yet: never blocks
    for seq in range(50):
        assert reader.write_frame(3, seq, f"in {seq}")
    received: list = []

    def all_received() -> bool:
        received.extend(sender.receive())
        return len(received) >= 50

    await wait_until_async(all_received, what="50 frames at the actor")
    assert received == [(3, seq, f"in {seq}") for seq in range(50)]
    assert got == []  # the hello is not a frame
    sender.close()
    await wait_until_async(lambda: not links, what="the listener to drop the link")  # it falls back to FrameIn
    inbox.close()
