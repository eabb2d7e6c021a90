"""An actor that uses the heavy libraries, for measuring memory per actor."""

from __future__ import annotations

import os
from typing import Any

from thespian.actors import ActorTypeDispatcher


class HeavyActor(ActorTypeDispatcher):
    def receiveMsg_str(self, msg: str, sender: Any) -> None:  # noqa: N802
        import aiohttp.web  # noqa: F401
        import cryptography.hazmat.primitives.asymmetric.ec  # noqa: F401
        import ocpp.v16  # noqa: F401
        import pymodbus.client  # noqa: F401
        import sqlite_utils  # noqa: F401

        self.send(sender, os.getpid())
