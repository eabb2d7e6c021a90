"""`egw demo` / `make run`: the gateway on simulated hardware, so a newcomer sees data flow.

The demo starts simulators in the launcher process (after the actor system has
forked its admin, so no actor is forked from a threaded process) and points the
gateway's configuration at them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from supervisor.config import GatewayConfig, load_config

DEMO_DEFAULTS: dict[str, Any] = {
    "gateway_name": "egw-demo",
    "data_dir": "data/demo",
    "ocpp_unknown_chargers": "accept",
}


def demo_config(path: str | None = None, overrides: Mapping[str, Any] | None = None) -> GatewayConfig:
    """The demo's configuration: demo defaults, then the usual file/env/flag layers."""
    return load_config(path, overrides=overrides, base=DEMO_DEFAULTS)


class DemoEnvironment:
    """Starts and stops the simulators the demo configuration points at."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.running: list[Any] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        for simulator in reversed(self.running):
            simulator.stop()
        self.running.clear()
