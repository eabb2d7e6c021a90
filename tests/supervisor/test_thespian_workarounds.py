"""The three places where the gateway works around thespian 4.0.1, each shown necessary.

* Bind address (`supervisor.loopback`): `IPActorAddress.__init__` in
  thespian/system/transport/IPBase.py gives every address made with `external` set
  (the admin's, each actor's, in `TCPTransport.__init__` and `TCPTransport.getAdminAddr`)
  the bind name `('', port)`: all interfaces, whatever THESPIAN_BASE_IPADDR says (it only
  sets the advertised address). No capability changes that, so the patch stays.
* Timers armed ahead (`supervisor.supervisor._STEP_PAUSE` and the actors' floors):
  `TCPTransport._runWithExpiry` (thespian/system/transport/TCPTransport.py) leaves its
  loop before reading any socket or queued message when the earliest wakeup has expired,
  and `wakeupTransportBase._run_subtransport` then delivers the wakeups; an actor that
  keeps re-arming a timer due at once never sees another message.
* The frame link (`actors.ocpp.replies`): every thespian message is a TCP transmit with
  its ack, and `TCPTransport._runWithExpiry` builds a new selector over every socket on
  each pass; frames between the listener and the charger actors travel on a unix stream
  instead, so the listener receives no thespian message per frame a charger is answered.

Each part fails when its workaround is removed, and the thespian-alone cases fail when
thespian stops behaving this way (the workaround can then go).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from thespian.actors import Actor, WakeupMessage

from supervisor.messages import Lookup, LookupResult
from supervisor.procs import descendants
from supervisor.spec import ChildSpec, SupervisorSpec
from tests.conftest import ROOT, ask_typed, free_port, wait_until
from supervisor.embedded import start_root


# ----------------------------------------------------------------- the bind address
BIND_NAMES = """
import json, sys
if sys.argv[1] == "patched":
    from supervisor.loopback import confine_actor_sockets_to_loopback
    confine_actor_sockets_to_loopback()
else:
    import os
    os.environ["THESPIAN_BASE_IPADDR"] = "127.0.0.1"  # the supported setting alone
from thespian.system.transport.TCPTransport import TCPTransport, TCPv4ActorAddress
admin = TCPTransport.getAdminAddr({"Admin Port": int(sys.argv[2])}).addressDetails
actor = TCPv4ActorAddress(None, 0, external=True)  # as TCPTransport.__init__ makes an actor's
print(json.dumps({"admin_bind": admin.bindname[0], "admin_advertised": admin.sockname[0], "actor_bind": actor.bindname[0]}))
"""


def bind_names(mode: str) -> dict[str, str]:
    """What thespian binds and advertises, in a fresh interpreter (the patch cannot be undone in this one)."""
    import json

    done = subprocess.run([sys.executable, "-c", BIND_NAMES, mode, str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_thespian_alone_binds_to_all_interfaces_even_with_THESPIAN_BASE_IPADDR():  # noqa: N802
    names = bind_names("thespian")
    assert names["admin_advertised"] == "127.0.0.1"  # the variable moves the advertised address ...
    assert names["admin_bind"] == names["actor_bind"] == ""  # ... not the bind: '' is INADDR_ANY, every interface


def test_confined_thespian_binds_every_address_to_loopback():
    assert bind_names("patched") == {"admin_bind": "127.0.0.1", "admin_advertised": "127.0.0.1", "actor_bind": "127.0.0.1"}


def _listening_addresses(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket the processes `pids` hold, from /proc."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:  # the process ended meanwhile
            continue
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:  # LISTEN
                    address, port = local.split(":")
                    if width == 8:
                        address = ".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0))
                    found.add((address, int(port, 16)))
    return found


def test_every_socket_of_a_running_actor_system_listens_on_loopback_only(multiproc_system):
    asys = multiproc_system
    start_root(asys, SupervisorSpec(children=(ChildSpec("device", "tests.supervisor.sample_actors.Echo"),)))
    family = set(descendants(os.getpid())) | {os.getpid()}
    listening = wait_until(lambda: (found := _listening_addresses(family)) and len(found) >= 4 and found,
                           what="admin, logger, root and child listening")
    assert {address for address, _ in listening} == {"127.0.0.1"}, sorted(listening)


# ------------------------------------------------------------------------ the timers
class Spinner(Actor):
    """Keeps one timer armed `pause` ahead for `rounds` rounds; at the first round it sends itself a
    message, and answers how many rounds were left when that message was handled.

    A message sent while handling a wakeup is queued behind the transport's next check of the
    timers, exactly where a message read from a socket would be (both come after the early
    return in `TCPTransport._runWithExpiry`), so the outcome needs no timing: 0 when the loop
    never got past the due timer, more when it read its mailbox while the timer kept going.
    """

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802 (thespian API)
        if isinstance(msg, tuple) and msg[0] == "spin":
            _, self.pause, self.rounds = msg
            self.asker, self.left_when_read, self.first = sender, None, True
            self.wakeupAfter(timedelta(seconds=self.pause))
        elif msg == "waiting":
            self.left_when_read = self.rounds
        elif isinstance(msg, WakeupMessage):
            if self.first:
                self.first = False
                self.send(self.myAddress, "waiting")
            self.rounds -= 1
            if self.rounds > 0:
                self.wakeupAfter(timedelta(seconds=self.pause))
            else:
                self.send(self.myAddress, "report")  # queued after "waiting", whenever that is read
        elif msg == "report":
            self.send(self.asker, ("left", self.left_when_read))


def rounds_left_when_the_waiting_message_was_read(asys, pause: float, rounds: int = 40) -> int:
    spinner = asys.createActor(Spinner)
    reply = asys.ask(spinner, ("spin", pause, rounds), 30)
    assert isinstance(reply, tuple) and reply[0] == "left", reply
    return reply[1]


def test_thespian_alone_reads_no_message_while_a_timer_is_due(multiproc_system):
    """A wakeup armed at 0 is due at once: every round runs before the waiting message is read."""
    assert rounds_left_when_the_waiting_message_was_read(multiproc_system, 0.0) == 0


FLOORS = [
    ("supervisor.supervisor", "_STEP_PAUSE"),  # between batches of child starts
    ("actors.device.actor", "MIN_IDLE"),  # a poll slower than its interval
    ("actors.harvest.transport", "MIN_IDLE_S"),  # the next upload step while a backlog drains
    ("actors.ocpp.charger", "MIN_TICK"),  # an overdue protocol deadline
]


@pytest.mark.parametrize(("module", "name"), FLOORS, ids=[f"{m}.{n}" for m, n in FLOORS])
def test_each_timer_floor_in_the_code_leaves_the_mailbox_read(multiproc_system, module, name):
    floor = getattr(importlib.import_module(module), name)
    seconds = floor.total_seconds() if isinstance(floor, timedelta) else float(floor)
    assert seconds > 0
    assert rounds_left_when_the_waiting_message_was_read(multiproc_system, seconds) > 0  # read while the timer kept going


# --------------------------------------------------------------------- the frame link
def actor_messages_received(asys, address) -> int:
    """Messages thespian handed to the actor's receiveMessage so far (its own status counters)."""
    from thespian.system.messages.status import Thespian_ActorStatus, Thespian_StatusReq

    status = ask_typed(asys, address, Thespian_StatusReq(), Thespian_ActorStatus)
    return status.miscKeyVals.get("Actor.Message Received.To Actor", 0)


def test_a_chargers_frames_reach_the_listener_without_a_thespian_message_each(multiproc_system, tmp_path):
    from simulators.charger.chargepoint import SimulatedChargePoint
    from simulators.charger.connection import connect
    from tests.ocpp.test_actors import running, start_gateway

    asys = multiproc_system
    root, port = start_gateway(asys, tmp_path)
    wait_until(lambda: running(asys, root, "ocpp") and running(asys, root, "harvest"), what="listener and harvest running")
    listener = ask_typed(asys, root, Lookup("ocpp"), LookupResult).address
    calls = 60

    async def session() -> tuple[int, int]:
        conn = await connect(f"ws://127.0.0.1:{port}/ocpp/CP1")
        cp = SimulatedChargePoint("CP1", conn, response_timeout=10)
        reader = asyncio.create_task(cp.start())
        try:
            assert (await cp.boot()).status == "Accepted"
            await cp.heartbeat()  # the charger actor has linked up by now (it says hello when it is connected)
            before = await asyncio.to_thread(actor_messages_received, asys, listener)
            for _ in range(calls):
                assert (await cp.heartbeat()).current_time  # each answered by the charger actor
            after = await asyncio.to_thread(actor_messages_received, asys, listener)
            return before, after
        finally:
            reader.cancel()
            await conn.close()

    before, after = asyncio.run(session())
    # as FrameOut messages the answers alone would be `calls` messages; what arrives is supervision traffic
    assert after - before < calls, f"{after - before} thespian messages reached the listener for {calls} answers"
