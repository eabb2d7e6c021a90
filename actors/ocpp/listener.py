"""The listener actor: hosts the OCPP websocket server and relays frames to charger actors.

It owns no protocol logic. On a new connection it asks the "chargers" supervisor to
start (or find) the charger's actor (`StartChild`) — it never creates actors itself,
because its process runs an asyncio thread — then tells that actor `ChargerConnected`
and relays numbered frames: over the actor's direct link to this loop once it has said
hello (`actors.ocpp.replies`), as `FrameIn` messages until then or when the link fails.
Charger actors answer over the same link (or `FrameOut`) and with `CloseConnection`.
A charger actor that was restarted introduces itself with `ChargerReady` and is
re-attached to the live connection. Frames that arrive before the actor is known are
held (at most `MAX_HELD` per connection; beyond that the connection is closed with
1013 "try again later", which a charger handles by reconnecting).

Config (from the child spec): {"db_path": str, "listener": dict of `ListenerSettings`
fields, "charger": the config handed to each charger actor}.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

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
MAX_HELD = 64
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
    next_seq: int = 0
    address: Any = None
    held: deque = field(default_factory=deque)
    stream: Any = None  # the charger actor's link to this loop (actors.ocpp.replies), when it has one


class ListenerActor(AsyncioActor):
    def on_start(self, config: dict[str, Any]) -> None:
        self.settings = ListenerSettings.from_config(config.get("listener"))
        self.db_path = config["db_path"]
        self.charger_config = config.get("charger") or {"db_path": self.db_path}
        self.links: dict[str, Link] = {}
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
        link.next_seq = seq + 1
        if link.address is not None:
            if link.stream is None:
                self.tell(link.address, FrameIn(charge_point_id, connection_id, seq, text))
            elif not link.stream.write_frame(connection_id, seq, text):
                # the link broke with frames perhaps still unread in it: resynchronise as for
                # frames lost in transit, the charger reconnects and repeats what is unanswered
                link.stream = None
                self.log.warning("frame link to the charger actor broke; closing the connection", charger=charge_point_id)
                self.server.close(charge_point_id, connection_id, 1011, "frames lost, reconnect")  # type: ignore[union-attr]
            return
        link.held.append((seq, text))
        if len(link.held) > MAX_HELD:
            self.log.warning("charger actor not ready and too many frames held; closing", charger=charge_point_id)
            self.server.close(charge_point_id, connection_id, 1013, "try again later")  # type: ignore[union-attr]

    def closed(self, charge_point_id: str, connection_id: int) -> None:
        link = self.links.get(charge_point_id)
        if link is None or link.connection_id != connection_id:
            return
        del self.links[charge_point_id]
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
        while link.held:
            seq, text = link.held.popleft()
            self.tell(address, FrameIn(charge_point_id, link.connection_id, seq, text))

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
