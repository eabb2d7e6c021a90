"""An actor that also runs an asyncio loop: for aiohttp servers, websockets and BLE.

Thespian actors are single-threaded message handlers; aiohttp and bless want an asyncio
loop. `AsyncioActor` runs the loop in a second thread of the actor process and keeps
every thespian call on the actor's own thread:

* from the loop, `self.tell(address, msg)` and `await self.ask(address, msg, match=...)`
  queue the send and wake the actor thread through a socketpair that thespian watches
  (`ThespianWatch`), so the send happens on the actor thread, in order;
* replies arrive as ordinary messages; the first pending `ask` whose `match` accepts one
  gets it, everything else is dispatched to `receiveMsg_*` handlers as usual;
* from handlers, `self.call_soon_in_loop(fn, *args)` hands work to the loop.

Such an actor must never create child actors (forking a threaded process is unsafe);
it asks a supervisor to do so (`StartChild`).
"""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from thespian.actors import ActorExitRequest, ThespianWatch, WatchMessage

from supervisor.actor import SupervisedActor
from supervisor.messages import Lookup, LookupResult


class AskTimeoutError(TimeoutError):
    """No matching reply arrived in time (the target may be restarting)."""


class AsyncioActor(SupervisedActor):
    """A SupervisedActor with an asyncio loop in a helper thread."""

    loop: asyncio.AbstractEventLoop | None = None

    def start_loop(self) -> None:
        """Start the loop thread; call from `on_start`."""
        self._outbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._waiters: list[tuple[Callable[[Any], bool], asyncio.Future]] = []
        self._waiters_lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=f"{self.name}-loop", daemon=True)
        self._thread.start()

    def _run_loop(self) -> None:
        assert self.loop is not None
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def stop_loop(self, timeout: float = 5.0) -> None:
        """Run `on_loop_stop()` in the loop, then stop it and join the thread."""
        loop = self.loop
        if loop is None or not loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.on_loop_stop(), loop).result(timeout)
        except Exception as exc:  # noqa: BLE001 - stopping anyway
            self.log.warning("loop shutdown hook failed", error=repr(exc))
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout)

    async def on_loop_stop(self) -> None:
        """Override to close servers and connections before the loop stops."""

    # ----------------------------------------------------- actor -> loop
    def call_soon_in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self.loop is not None, "start_loop() first"
        self.loop.call_soon_threadsafe(fn, *args)

    def run_in_loop(self, coro: Coroutine[Any, Any, Any]) -> Future:
        """Schedule a coroutine on the loop from the actor thread; returns a concurrent Future."""
        assert self.loop is not None, "start_loop() first"
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    # ----------------------------------------------------- loop -> actor
    def run_in_actor(self, fn: Callable[[], None]) -> None:
        """Run `fn()` on the actor thread soon (thread-safe; used by tell/ask)."""
        self._outbox.put(fn)
        try:
            self._wake_w.send(b"\0")
        except BlockingIOError:
            pass  # the actor has a wake-up pending already

    def tell(self, address: Any, msg: Any) -> None:
        self.run_in_actor(lambda: self.send(address, msg))

    async def ask(self, address: Any, msg: Any, match: Callable[[Any], bool], timeout: float) -> Any:
        """Send `msg` and wait for the first incoming message for which `match(msg)` is true."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        entry = (match, future)
        with self._waiters_lock:
            self._waiters.append(entry)
        self.tell(address, msg)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError as exc:
            raise AskTimeoutError(f"no reply to {type(msg).__name__} within {timeout:g} s") from exc
        finally:
            with self._waiters_lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)

    async def lookup(self, path: str, timeout: float = 2.0) -> Any:
        """The current address of the actor at `path`, or None while it is (re)starting."""
        reply = await self.ask(self.parent, Lookup(path), match=lambda m: isinstance(m, LookupResult) and m.path == path, timeout=timeout)
        return reply.address

    # ----------------------------------------------------- plumbing
    def receiveMessage(self, msg: Any, sender: Any) -> Any:  # noqa: N802 (thespian API)
        if isinstance(msg, WatchMessage):
            self._drain()
        elif not (self.loop is not None and self._offer(msg)):
            if isinstance(msg, ActorExitRequest):
                self.stop_loop()
            super().receiveMessage(msg, sender)
        if self.loop is not None and not self._failed:
            self._drain()
            return ThespianWatch([self._wake_r.fileno()])
        return None

    def _offer(self, msg: Any) -> bool:
        with self._waiters_lock:
            for entry in self._waiters:
                match, future = entry
                try:
                    matched = match(msg)
                except Exception:  # noqa: BLE001 - a predicate that raises just does not match
                    matched = False
                if matched:
                    self._waiters.remove(entry)
                    self.loop.call_soon_threadsafe(_resolve, future, msg)
                    return True
        return False

    def _drain(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        while True:
            try:
                fn = self._outbox.get_nowait()
            except queue.Empty:
                return
            fn()


def _resolve(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)
