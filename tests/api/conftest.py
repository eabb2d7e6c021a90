"""Fixtures for the REST API tests: an in-memory backend and a served app.

`MemoryBackend` implements `actors.api.backend.ApiBackend` over plain dicts shaped
like what the gateway's actors publish. It records every write so tests can assert
that a rejected request (401, 400) changed nothing.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from actors.api.app import build_app
from actors.api.provisioning import WifiService, ble_view
from actors.ble.messages import BleStatus
from actors.wifi.backend import FakeWifiBackend, WifiNetwork
from actors.api.backend import (
    ConflictError,
    NotFoundError,
    RejectedError,
    UnavailableError,
)

from tests.conftest import wait_until  # noqa: F401 - re-exported for the API tests

TOKEN = "t" * 43


def _device(device_id: str, **extra: Any) -> dict[str, Any]:
    record = {
        "id": device_id, "profile": "sunspec", "connection": {"host": "127.0.0.1", "port": 1502, "unit_id": 1},
        "state": "online", "online": True, "serial": f"SN-{device_id}", "last_poll": "2026-11-21T10:00:00Z",
        "values": {"ac_power_w": 1234.5, "energy_total_wh": 987654, "grid_frequency_hz": None},
        "polls": 100, "errors": 2, "gaps": 1, "poll_latency_ms": 12.5, "last_error": None, "restarts": 0,
    }
    record.update(extra)
    return record


class MemoryBackend:
    """The gateway as dicts: two devices, one charger with two transactions, one transport."""

    def __init__(self, wifi: Any = None) -> None:
        self.wifi_stack = wifi if wifi is not None else FakeWifiBackend([WifiNetwork("home", 70, True), WifiNetwork("home", 40, True), WifiNetwork("cafe", 90, False), WifiNetwork("", 50, False)])
        self.wifi = WifiService(self.wifi_stack)
        self.ble = {"state": "running", "reason": None, "window_until": None}  # window_until: time.monotonic() deadline
        self.devices_by_id: dict[str, dict[str, Any]] = {"inv1": _device("inv1"), "meter1": _device("meter1", profile="eastron_sdm630", state="offline", online=False, values={})}
        self.restarting: set[str] = set()  # device/charger ids whose actor is restarting
        self.hang = False  # every call blocks forever (a wedged part of the gateway)
        self.writes: list[tuple[str, Any]] = []
        self.chargers_by_id = {
            "CP-1": {"id": "CP-1", "vendor": "ACME", "model": "Wallbox", "serial": "W1", "firmware": "1.0", "connected": True, "registration": "Accepted",
                     "last_seen": "2026-11-21T10:00:00Z", "connectors": [{"id": 1, "status": "Available", "error_code": "NoError", "transaction_id": None}],
                     "messages": {"Heartbeat": 10, "BootNotification": 1, "MeterValues": 40}},
        }
        self.transaction_rows = [
            {"id": 1, "charger": "CP-1", "connector": 1, "id_tag": "TAG1", "start": "2026-11-20T08:00:00Z", "stop": "2026-11-20T09:00:00Z",
             "meter_start_wh": 1000, "meter_stop_wh": 8000, "energy_wh": 7000, "stop_reason": "Local", "state": "finished", "_start_epoch": 1795161600.0},
            {"id": 2, "charger": "CP-1", "connector": 1, "id_tag": "TAG2", "start": "2026-11-21T08:00:00Z", "stop": None,
             "meter_start_wh": 8000, "meter_stop_wh": None, "energy_wh": None, "stop_reason": None, "state": "active", "_start_epoch": 1795248000.0},
        ]
        self.reservation_rows = [
            {"id": 7, "charger": "CP-1", "connector": 1, "id_tag": "TAG1", "parent_id_tag": None, "expiry": "2026-11-21T11:00:00.000Z",
             "created": "2026-11-21T10:00:00.000Z", "status": "active", "ocpp_status": "Accepted", "transaction_id": None},
            {"id": 6, "charger": "CP-1", "connector": 1, "id_tag": "TAG2", "parent_id_tag": None, "expiry": "2026-11-20T11:00:00.000Z",
             "created": "2026-11-20T10:00:00.000Z", "status": "used", "ocpp_status": "Used", "transaction_id": 1},
        ]
        self.transports = {"ingest": {"name": "ingest", "url": "http://127.0.0.1:9/ingest", "enabled": True, "state": "backoff", "last_success": None,
                                      "backoff_s": 4.0, "acked_seq": {"inv1": 41}, "dead_letters": 0, "uploaded_readings": 41, "uploaded_batches": 3, "upload_errors": 2}}
        self.config_data = {"gateway": {"name": "site-7"}, "api_port": 8080, "wifi": {"ssid": "home", "psk": "hunter22"},
                            "transports": [{"name": "ingest", "url": "https://user:s3cret@example.invalid/ingest", "api_key": "abc"}],
                            "loadpoints": [{"id": "garage", "charger": "CP-1", "grid_meter": "meter1", "pv": ["inv1"]}]}

    async def _enter(self, target: str | None = None) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if target is not None and target in self.restarting:
            raise UnavailableError(f"{target} is restarting", retry_after=2)

    async def health(self) -> dict[str, Any]:
        await self._enter()
        reasons = [f"device {d} offline" for d, r in self.devices_by_id.items() if not r["online"]]
        return {"status": "degraded" if reasons else "ok", "reasons": reasons, "uptime_s": 12.345, "version": "0.1.0", "boot_id": "b00t", "started_at": "2026-11-21T09:59:48Z"}

    async def tree(self) -> list[dict[str, Any]]:
        await self._enter()
        devices = [{"name": d, "kind": "worker", "pid": 200 + i, "state": r["state"], "restarts": 0, "last_error": None, "since": 1795766400.0, "info": {}}
                   for i, (d, r) in enumerate(sorted(self.devices_by_id.items()))]
        return [
            {"name": "harvest", "kind": "worker", "pid": 101, "state": "running", "restarts": 0, "last_error": None, "since": 1795766400.0, "info": {}},
            {"name": "devices", "kind": "supervisor", "pid": 102, "state": "running", "restarts": 1, "last_error": "RuntimeError: boom", "since": 1795766400.0, "info": {}, "children": devices},
            {"name": "api", "kind": "worker", "pid": 103, "state": "running", "restarts": 0, "last_error": None, "since": 1795766400.0, "info": {"port": 8080}},
        ]

    async def devices(self) -> list[dict[str, Any]]:
        await self._enter()
        return [copy.deepcopy(self.devices_by_id[d]) for d in sorted(self.devices_by_id)]

    async def device(self, device_id: str) -> dict[str, Any]:
        await self._enter(device_id)
        if device_id not in self.devices_by_id:
            raise NotFoundError(f"no device {device_id!r}", field="path.id")
        return copy.deepcopy(self.devices_by_id[device_id])

    async def outbox_status(self) -> dict[str, Any]:
        await self._enter()
        return {"available": True, "pending_items": 1200, "acknowledged_items": 41, "bytes": 65536, "oldest_pending": "2026-11-21T09:00:00Z",
                "gaps": 1, "budget_bytes": 512 * 2**20, "budget_used": 65536 / (512 * 2**20), "transports": list(copy.deepcopy(self.transports).values())}

    async def dead_letters(self) -> list[dict[str, Any]]:
        await self._enter()
        return [{"id": 1, "transport": "fleet", "parked_at": "2026-11-21T09:00:00.000Z", "http_status": 413, "error": "HTTP 413: too large",
                 "items": 12, "bytes": 4096, "queued_to_resend": False}]

    async def resend_dead_letters(self, transport: str, ids: list[int] | None) -> dict[str, Any]:
        await self._enter(transport)
        if transport not in self.transports:
            raise NotFoundError(f"no transport {transport!r}", field="path.name")
        self.writes.append(("resend_dead_letters", (transport, ids)))
        return {"transport": transport, "queued": len(ids) if ids else 1}

    async def chargers(self) -> list[dict[str, Any]]:
        await self._enter()
        return [copy.deepcopy(c) for c in self.chargers_by_id.values()]

    async def charger(self, charger_id: str) -> dict[str, Any]:
        await self._enter(charger_id)
        if charger_id not in self.chargers_by_id:
            raise NotFoundError(f"no charger {charger_id!r}", field="path.id")
        return copy.deepcopy(self.chargers_by_id[charger_id])

    async def transactions(self, *, charger: str | None, id_tag: str | None, since: float | None, limit: int) -> list[dict[str, Any]]:
        await self._enter()
        rows = [r for r in self.transaction_rows
                if (charger is None or r["charger"] == charger) and (id_tag is None or r["id_tag"] == id_tag) and (since is None or r["_start_epoch"] >= since)]
        rows.sort(key=lambda r: r["_start_epoch"], reverse=True)
        return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows[:limit]]

    async def transaction(self, transaction_id: int) -> dict[str, Any]:
        await self._enter()
        for row in self.transaction_rows:
            if row["id"] == transaction_id:
                return {k: v for k, v in row.items() if not k.startswith("_")}
        raise NotFoundError(f"no transaction {transaction_id}", field="path.id")

    async def reservations(self, *, charger: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
        await self._enter()
        rows = [r for r in self.reservation_rows if (charger is None or r["charger"] == charger) and (status is None or r["status"] == status)]
        return copy.deepcopy(rows[:limit])

    async def reservation(self, reservation_id: int) -> dict[str, Any]:
        await self._enter()
        for row in self.reservation_rows:
            if row["id"] == reservation_id:
                return copy.deepcopy(row)
        raise NotFoundError(f"no reservation {reservation_id}", field="path.id")

    async def set_payment_reference(self, transaction_id: int, reference: str, *, replace: bool) -> dict[str, Any]:
        await self._enter()
        row = next((r for r in self.transaction_rows if r["id"] == transaction_id), None)
        if row is None:
            raise NotFoundError(f"no transaction {transaction_id}", field="path.id")
        current = row.get("payment_ref")
        if current is not None and current != reference and not replace:
            raise ConflictError(f"transaction {transaction_id} already has payment reference {current!r}", field="reference",
                                code="payment_reference_conflict", details={"payment_ref": current})
        if current != reference:
            self.writes.append(("set_payment_reference", (transaction_id, reference)))
        row["payment_ref"] = reference
        return await self.transaction(transaction_id)

    def _connector(self, charger_id: str, connector_id: int) -> dict[str, Any]:
        if charger_id not in self.chargers_by_id:
            raise NotFoundError(f"no charger {charger_id!r}", field="path.id")
        for connector in self.chargers_by_id[charger_id]["connectors"]:
            if connector["id"] == connector_id:
                return connector
        raise NotFoundError(f"charger {charger_id} never reported connector {connector_id}", field="path.connectorId")

    async def set_connector_override(self, charger_id: str, connector_id: int, status: str, reason: str | None) -> None:
        await self._enter(charger_id)
        connector = self._connector(charger_id, connector_id)
        self.writes.append(("set_connector_override", (charger_id, connector_id, status)))
        connector.setdefault("reported_status", connector["status"])
        connector.update(status=status, override={"status": status, "reason": reason, "since": "2026-11-21T10:05:00.000Z"})

    async def clear_connector_override(self, charger_id: str, connector_id: int) -> dict[str, Any] | None:
        await self._enter(charger_id)
        connector = self._connector(charger_id, connector_id)
        lifted = connector.pop("override", None)
        if lifted is not None:
            self.writes.append(("clear_connector_override", (charger_id, connector_id)))
            connector["status"] = connector["reported_status"]
        return lifted

    async def crypto(self) -> dict[str, Any]:
        await self._enter()
        return {"serial": "01abcdef23456789", "public_key": "-----BEGIN PUBLIC KEY-----\nMFkw...\n-----END PUBLIC KEY-----\n", "key_id": "k1",
                "algorithm": "ES256", "public_key_hex": "04" + "ab" * 64}

    async def config(self) -> dict[str, Any]:
        await self._enter()
        return copy.deepcopy(self.config_data)

    async def disconnect_charger(self, charger_id: str, reason: str) -> bool:
        self.writes.append(("disconnect", (charger_id, reason)))
        return False  # no websockets here

    async def charger_command(self, charger_id: str, command: str, params: dict[str, Any]) -> dict[str, Any]:
        await self._enter(charger_id)
        if charger_id not in self.chargers_by_id:
            raise NotFoundError(f"no charger {charger_id!r}", field="path.id")
        if command == "RemoteStopTransaction" and not any(t["id"] == params["transactionId"] and t["stop"] is None for t in self.transaction_rows):
            raise RejectedError("the charger rejected RemoteStopTransaction", field="transactionId")
        self.writes.append((command, (charger_id, params)))
        if command == "GetConfiguration":
            return {"status": "Accepted", "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "60"}], "unknownKey": []}
        return {"status": "Accepted"}

    async def add_device(self, settings: dict[str, Any]) -> dict[str, Any]:
        await self._enter()
        if settings["id"] in self.devices_by_id:
            raise ConflictError(f"device {settings['id']!r} exists", field="id")
        self.writes.append(("add_device", settings))
        self.devices_by_id[settings["id"]] = _device(settings["id"], profile=settings.get("profile", "sunspec"), state="starting", online=False, values={},
                                                     connection={k: settings[k] for k in ("host", "port", "unit_id") if k in settings})
        return copy.deepcopy(self.devices_by_id[settings["id"]])

    async def remove_device(self, device_id: str) -> dict[str, Any]:
        await self._enter(device_id)
        if device_id not in self.devices_by_id:
            raise NotFoundError(f"no device {device_id!r}", field="path.id")
        self.writes.append(("remove_device", device_id))
        return self.devices_by_id.pop(device_id)

    async def update_transport(self, name: str, settings: dict[str, Any]) -> dict[str, Any]:
        await self._enter(name)
        if name not in self.transports:
            raise NotFoundError(f"no transport {name!r}", field="path.name")
        self.writes.append(("update_transport", (name, settings)))
        self.transports[name].update(settings)
        return copy.deepcopy(self.transports[name])

    async def wifi_status(self) -> dict[str, Any]:
        await self._enter("wifi")
        return await self.wifi.status()

    async def wifi_scan(self) -> list[dict[str, Any]]:
        await self._enter("wifi")
        return await self.wifi.scan()

    async def wifi_connect(self, ssid: str, psk: str | None) -> dict[str, Any]:
        await self._enter("wifi")
        self.writes.append(("wifi_connect", ssid))
        return await self.wifi.connect(ssid, psk)

    async def wifi_forget(self) -> dict[str, Any]:
        await self._enter("wifi")
        self.writes.append(("wifi_forget", None))
        return await self.wifi.forget()

    def _ble_status(self) -> BleStatus:
        until = self.ble["window_until"]
        remaining = max(0.0, until - time.monotonic()) if until is not None else 0.0
        return BleStatus(self.ble["state"], self.ble["state"] == "running" and remaining > 0, remaining > 0, round(remaining, 1), self.ble["reason"])

    async def ble_status(self) -> dict[str, Any]:
        await self._enter("ble")
        return ble_view(self._ble_status())

    async def ble_open_window(self, minutes: float | None) -> dict[str, Any]:
        await self._enter("ble")
        if self.ble["state"] == "unavailable":
            raise UnavailableError(f"BLE provisioning is unavailable: {self.ble['reason']}", retry_after=30, code="ble_unavailable")
        self.writes.append(("ble_open_window", minutes))
        self.ble["window_until"] = time.monotonic() + (15.0 if minutes is None else minutes) * 60
        return ble_view(self._ble_status())

    async def ble_close_window(self) -> dict[str, Any]:
        await self._enter("ble")
        self.writes.append(("ble_close_window", None))
        self.ble["window_until"] = None
        return ble_view(self._ble_status())


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
async def client(backend: MemoryBackend):
    app = build_app(backend, token=TOKEN, version="0.1.0-test", backend_timeout=0.5, command_timeout=1.0)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as test_client:
        yield test_client


class ServedApp:
    """The app served on 127.0.0.1:<free port> from a background thread's event loop.

    Sync code (hypothesis tests, the CLI) talks to it over a real socket.
    """

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-test-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app, handle_signals=False)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def __enter__(self) -> ServedApp:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def served(backend: MemoryBackend):
    with ServedApp(build_app(backend, token=TOKEN, version="0.1.0-test", backend_timeout=0.5, command_timeout=1.0)) as server:
        yield server


def check_response(document: dict[str, Any], method: str, path_template: str, status: int, body: Any) -> None:
    """Assert `body` matches what the OpenAPI document promises for this status."""
    from jsonschema import Draft202012Validator

    operation = document["paths"][path_template][method.lower()]
    assert str(status) in operation["responses"], f"{method} {path_template} answered {status}, which the document does not list"
    content = operation["responses"][str(status)].get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is None:
        return
    Draft202012Validator({**schema, "components": document["components"]}).validate(body)
