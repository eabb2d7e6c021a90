"""The listener actor: hosts the OCPP websocket server and relays frames to charger actors.

It owns no protocol logic. On a new connection it asks the "chargers" supervisor to
start (or find) the charger's actor (`StartChild`) — it never creates actors itself,
because its process runs an asyncio thread — then tells that actor `ChargerConnected`
and relays numbered frames: over the actor's direct link to this loop once it has said
hello (`actors.ocpp.replies`), as `FrameIn` messages until then or when the link fails.
Charger actors answer over the same link (or `FrameOut`) and with `CloseConnection`.
A charger actor that was restarted introduces itself with `ChargerReady` and is
re-attached to the live connection.

Frames that arrive before the actor is known (a charger sends its BootNotification, and
often a burst of queued frames, right after the handshake, while the actor is still
starting) are held, in order, and handed over once it is: up to `hold_frames` frames
(setting `ocpp_startup_hold_frames`, 1000) and `HOLD_BYTES` per connection, and
`HOLD_BYTES_TOTAL` over all connections. The first frame is always held, and so is a
BootNotification however many came before it. Past the bounds each CALL is answered
here, by itself, with a CALLERROR `GenericError` "... try again" (a frame that is not
even a frame gets the CALLERROR the charger actor would have sent); the connection
stays open, and the charger repeats what it still needs. Frames answered here take no
number: the actor sees the held ones numbered 0, 1, 2, ... as always.

A frame that would push the actor's link past its buffer (`replies.MAX_BUFFERED`; a
1 MiB frame fills it) goes as a `FrameIn` instead; the frame numbers keep the order.

Config (from the child spec): {"db_path": str, "listener": dict of `ListenerSettings`
fields, "charger": the config handed to each charger actor}.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from actors.ocpp import frames, replies
from actors.ocpp.auth import Authenticator
from actors.ocpp.messages import ChargerConnected, ChargerDisconnected, ChargerReady, CloseConnection, FrameIn, FrameOut
from actors.ocpp.replies import ReplyInbox
from actors.ocpp.server import ListenerSettings, OcppServer
from storage import chargers as charger_store
from storage import ocpp_transactions as tx_store
from storage.db import connect
from supervisor.asyncbridge import AskTimeoutError, AsyncioActor
from supervisor.messages import ChildStopped, LookupResult, StartChild, StopChild
from supervisor.spec import ChildSpec

CHARGER_ACTOR = "actors.ocpp.charger.ChargerActor"
CHARGERS_SUPERVISOR = "chargers"
HOLD_BYTES = 8 * 1024 * 1024  # held per connection while its charger actor starts
HOLD_BYTES_TOTAL = 64 * 1024 * 1024  # held over all connections (every charger reconnects at once after a restart)
MAX_BOOT_BYTES = 4096  # a schema-valid BootNotification is well under 1 KB: a bigger one is not held past the bounds
BUSY_DESCRIPTION = "the central system is still starting this charge point's session; try again"
START_TIMEOUT = 30.0  # after a gateway restart every charger reconnects at once; actor start-up queues
# A charger that disconnects keeps its actor until the actor has handed its export queue
# to the harvest actor (the last MeterValues and StopTransaction of a session usually come
# just before the charger goes), but no longer than this: with the harvest actor down the
# rows stay queued, and go when the charger is next connected.
EXPORT_DRAIN_TIMEOUT = 30.0
EXPORT_DRAIN_POLL = 0.1


@dataclass
class Link:
    """One live connection and the charger actor it is relayed to."""

    connection_id: int
    next_seq: int = 0  # the number the next frame handed to the charger actor gets
    address: Any = None
    held: deque = field(default_factory=deque)
    held_bytes: int = 0
    boot_held_past_bounds: bool = False
    answered_busy: int = 0  # frames answered here because the hold was full
    stream: Any = None  # the charger actor's link to this loop (actors.ocpp.replies), when it has one


class ListenerActor(AsyncioActor):
    def on_start(self, config: dict[str, Any]) -> None:
        self.settings = ListenerSettings.from_config(config.get("listener"))
        self.db_path = config["db_path"]
        self.charger_config = config.get("charger") or {"db_path": self.db_path}
        self.links: dict[str, Link] = {}
        self.held_bytes = 0  # over all links
        self.server: OcppServer | None = None
        self.start_loop()
        port = self.run_in_loop(self._start_server()).result(timeout=15)
        self.publish("running", port=port)

    async def _start_server(self) -> int:
        conn = connect(self.db_path)  # used only on the loop thread
        charger_store.init(conn)
        tx_store.init(conn)
        self.conn = conn
        authenticator = Authenticator(conn, self.settings.unknown_chargers, self.settings.register_as)  # type: ignore[arg-type]
        self.server = OcppServer(self.settings, authenticator, self, log=self.log)
        # charger actors' frames come back as datagrams read on this loop (actors.ocpp.replies)
        self.replies = ReplyInbox(self.server.send, self.log, hello=self._hello, lost=self._lost)
        await self.replies.open()
        return await self.server.start()

    async def on_loop_stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        if getattr(self, "replies", None) is not None:
            self.replies.close()

    # --------------------------------------------- from charger actors (actor thread)
    def receiveMsg_FrameOut(self, msg: FrameOut, sender: Any) -> None:  # noqa: N802
        if self.server is not None:
            self.call_soon_in_loop(self.server.send, msg.charge_point_id, msg.connection_id, msg.text)

    def receiveMsg_CloseConnection(self, msg: CloseConnection, sender: Any) -> None:  # noqa: N802
        if self.server is not None:
            self.call_soon_in_loop(self.server.close, msg.charge_point_id, msg.connection_id, msg.code, msg.reason)

    def receiveMsg_ChargerReady(self, msg: ChargerReady, sender: Any) -> None:  # noqa: N802
        self.call_soon_in_loop(self._ready, msg.charge_point_id, sender)

    def receiveMsg_ChildStopped(self, msg: ChildStopped, sender: Any) -> None:  # noqa: N802
        """The chargers supervisor confirms a StopChild; nothing left to do."""

    def receiveMsg_LookupResult(self, msg: LookupResult, sender: Any) -> None:  # noqa: N802
        """A reply that arrived after its ask timed out; the ask already reported the failure."""

    # ----------------------------------------------- Backend (loop thread)
    def opened(self, charge_point_id: str, connection_id: int) -> None:
        self.links[charge_point_id] = Link(connection_id)
        asyncio.ensure_future(self._attach(charge_point_id, connection_id))

    def frame(self, charge_point_id: str, connection_id: int, seq: int, text: str) -> None:
        link = self.links.get(charge_point_id)
        if link is None or link.connection_id != connection_id:
            return
        if link.address is None:
            self._hold(charge_point_id, link, text)
            return
        number = link.next_seq
        link.next_seq += 1
        if link.stream is None or self._link_backed_up(link.stream, text):
            self.tell(link.address, FrameIn(charge_point_id, connection_id, number, text))
        elif not link.stream.write_frame(connection_id, number, text):
            # the link broke with frames perhaps still unread in it: resynchronise as for
            # frames lost in transit, the charger reconnects and repeats what is unanswered
            link.stream = None
            self.log.warning("frame link to the charger actor broke; closing the connection", charger=charge_point_id)
            self.server.close(charge_point_id, connection_id, 1011, "frames lost, reconnect")  # type: ignore[union-attr]

    @staticmethod
    def _link_backed_up(stream: Any, text: str) -> bool:
        """Would this frame push the actor's link past the buffer at which the link gives up?"""
        transport = getattr(stream, "transport", None)
        return transport is not None and transport.get_write_buffer_size() + len(text) > replies.MAX_BUFFERED

    def _hold(self, charge_point_id: str, link: Link, text: str) -> None:
        """Keep a frame for the charger actor that is starting, or answer it here if the hold is full."""
        size = len(text)
        fits = (len(link.held) < self.settings.hold_frames and link.held_bytes + size <= HOLD_BYTES
                and self.held_bytes + size <= HOLD_BYTES_TOTAL)
        if fits or not link.held:
            self._keep(link, text)
            return
        try:
            frame = frames.parse(text)
        except frames.FrameError as exc:
            self._answer_busy(charge_point_id, link, frames.encode_error(exc.unique_id, exc.code, exc.description))
            return
        if isinstance(frame, frames.Call) and frame.action == "BootNotification" and size <= MAX_BOOT_BYTES and not link.boot_held_past_bounds:
            link.boot_held_past_bounds = True  # never refuse the boot: without it the charger does nothing else
            self._keep(link, text)
        elif isinstance(frame, frames.Call):
            self._answer_busy(charge_point_id, link, frames.encode_error(frame.unique_id, "GenericError", BUSY_DESCRIPTION))
        else:  # a reply to a central call: none can be outstanding before the actor is up
            self._answer_busy(charge_point_id, link, None)

    def _keep(self, link: Link, text: str) -> None:
        link.held.append((link.next_seq, text))
        link.next_seq += 1
        link.held_bytes += len(text)
        self.held_bytes += len(text)

    def _answer_busy(self, charge_point_id: str, link: Link, reply: str | None) -> None:
        if link.answered_busy == 0:
            self.log.warning("charger actor not ready and its frames' hold is full; answering 'try again'", charger=charge_point_id,
                             held=len(link.held), held_bytes=link.held_bytes, hold_frames=self.settings.hold_frames)
        link.answered_busy += 1
        if reply is not None:
            self.server.send(charge_point_id, link.connection_id, reply)  # type: ignore[union-attr]

    def _release(self, link: Link) -> None:
        self.held_bytes -= link.held_bytes
        link.held.clear()
        link.held_bytes = 0

    def closed(self, charge_point_id: str, connection_id: int) -> None:
        link = self.links.get(charge_point_id)
        if link is None or link.connection_id != connection_id:
            return
        del self.links[charge_point_id]
        self._release(link)
        if link.address is not None:
            self.tell(link.address, ChargerDisconnected(charge_point_id, connection_id))
        asyncio.ensure_future(self._stop_charger(charge_point_id))

    # ----------------------------------------------------------- helpers
    async def _attach(self, charge_point_id: str, connection_id: int) -> None:
        spec = ChildSpec(name=charge_point_id, actor=CHARGER_ACTOR, config=self.charger_config, restart="transient")
        try:
            supervisor = await self.lookup(CHARGERS_SUPERVISOR, timeout=START_TIMEOUT)
            if supervisor is None:
                raise AskTimeoutError("chargers supervisor not running")
            reply = await self.ask(supervisor, StartChild(spec), match=lambda m: isinstance(m, LookupResult) and m.path == charge_point_id, timeout=START_TIMEOUT)
        except AskTimeoutError as exc:
            self.log.error("could not start the charger actor; closing", charger=charge_point_id, error=str(exc))
            self.server.close(charge_point_id, connection_id, 1013, "try again later")  # type: ignore[union-attr]
            return
        link = self.links.get(charge_point_id)
        if link is not None and link.connection_id == connection_id and reply.address is not None and link.address is None:
            self._bind(charge_point_id, link, reply.address)

    def _hello(self, charge_point_id: str, connection_id: int, reader: Any) -> None:
        """A charger actor serving this connection linked to the loop: frames go that way now
        (no thespian send, no hop to the actor thread); FrameIn stays the fallback."""
        link = self.links.get(charge_point_id)
        if link is not None and link.connection_id == connection_id:
            link.stream = reader

    def _lost(self, reader: Any) -> None:
        for link in self.links.values():
            if link.stream is reader:
                link.stream = None

    def _ready(self, charge_point_id: str, address: Any) -> None:
        link = self.links.get(charge_point_id)
        if link is None or link.address == address:
            return  # not connected, or already relaying to this very actor (re-binding would reorder frames)
        link.address = None
        link.stream = None  # the new actor links up again after ChargerConnected
        self._bind(charge_point_id, link, address)

    def _bind(self, charge_point_id: str, link: Link, address: Any) -> None:
        link.address = address
        first = link.held[0][0] if link.held else link.next_seq
        self.tell(address, ChargerConnected(charge_point_id, link.connection_id, first, self.replies.path))
        for seq, text in link.held:
            self.tell(address, FrameIn(charge_point_id, link.connection_id, seq, text))
        if link.answered_busy:
            self.log.info("charger actor ready; frames answered 'try again' while it started", charger=charge_point_id,
                          count=link.answered_busy, held=len(link.held))
        self._release(link)

    async def _stop_charger(self, charge_point_id: str) -> None:
        """Stop a disconnected charger's actor once its export queue is empty (bounded wait)."""
        deadline = asyncio.get_running_loop().time() + EXPORT_DRAIN_TIMEOUT
        while charge_point_id not in self.links and tx_store.has_pending_exports(self.conn, charge_point_id):
            if asyncio.get_running_loop().time() >= deadline:
                self.log.warning("charger disconnected with exports still queued; they go when it reconnects", charger=charge_point_id)
                break
            await asyncio.sleep(EXPORT_DRAIN_POLL)
        try:
            supervisor = await self.lookup(CHARGERS_SUPERVISOR, timeout=START_TIMEOUT)
        except AskTimeoutError:
            return
        if supervisor is not None and charge_point_id not in self.links:
            self.tell(supervisor, StopChild(charge_point_id))
