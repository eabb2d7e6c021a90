"""A scriptable OCPP 1.6 charge point built on the `ocpp` package's client side.

It answers every central-system action of OCPP 1.6 (core, firmware management, local
auth list management, reservation, smart charging, remote trigger) as the specification
says a charger does, and records each request, so a script or a test can wait on
`await cp.wait_for("RemoteStartTransaction")` instead of sleeping. What it keeps:
reservations, charging profiles, its configuration, and a local authorization list
with its version (SendLocalList / GetLocalListVersion, OCPP 1.6 sections 3.5 and 5.10,
5.15). `local_list_supported=False` makes it a charger without a local list.

With a `car` (`simulators.charger.car.Car`) plugged in, the charger behaves like a wallbox
under smart charging: the effective limit of its charging profiles (a TxProfile of the
session under way wins over a TxDefaultProfile; the highest stack level of each wins) goes
to the car, which follows it in a few seconds; `car_power_w()` is what MeterValues report,
and GetCompositeSchedule answers that limit. `reject_profiles` makes it refuse profiles
the way real chargers do: "zero" (a 0 A / 0 W limit), "level0_only" (a stack level above
0), "watts_only" (a limit in A); a TxProfile without a session is always refused.

Charger-initiated messages are plain coroutines (`boot`, `status`, `authorize`,
`start_transaction`, `meter`, `stop_transaction`). While `offline` is set they are not sent but queued with
their original timestamps, like a real charger's offline queue, and `replay()` sends
them in order once connected again, mapping the transaction ids the gateway assigns
to the sessions that started offline.

Why one module: it answers every central-system action of OCPP 1.6, one short handler each,
over one charger state (connectors, reservations, profiles, local list), like a real charge
point's firmware.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from ocpp.exceptions import OCPPError

from simulators.charger.car import Car
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action


def iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class SimulatedChargePoint(ChargePoint):
    def __init__(self, charge_point_id: str, connection: Any, *, connectors: int = 1, response_timeout: float = 10.0,
                 clock: Callable[[], float] = time.time, auto_transactions: bool = True, local_list_supported: bool = True,
                 car: Car | None = None, reject_profiles: tuple[str, ...] = ()) -> None:
        super().__init__(charge_point_id, connection, response_timeout=response_timeout)
        self.connectors = connectors
        self.clock = clock
        self.auto_transactions = auto_transactions
        self.received: dict[str, list[dict]] = defaultdict(list)
        self._arrived = asyncio.Condition()
        self.meter_wh = 0
        self.transactions: dict[int, int] = {}  # connector -> transaction id
        self.reservations: dict[int, dict] = {}
        self.configuration = {"HeartbeatInterval": "300", "MeterValueSampleInterval": "60", "NumberOfConnectors": str(connectors),
                              "ChargeProfileMaxStackLevel": "8", "ChargingScheduleAllowedChargingRateUnit": "Current,Power"}
        self.car = car
        self.reject_profiles = tuple(reject_profiles)
        self.local_list_supported = local_list_supported
        if local_list_supported:
            self.configuration.update(LocalAuthListEnabled="true", LocalAuthListMaxLength="100", SendLocalListMaxLength="100")
        self.local_list: dict[str, dict] = {}  # idTag -> idTagInfo (OCPP field names)
        self.local_list_version = 0
        self.charging_profiles: dict[int, dict] = {}  # chargingProfileId -> {"connector_id": .., "profile": ..}
        self.firmware_statuses: list[str] = []
        self.call_errors: dict[str, OCPPError] = {}  # action -> the CALLERROR its next request gets (fault injection)
        self.diagnostics_statuses: list[str] = []
        self.offline = False
        self.offline_queue: list[Callable[[], Awaitable[Any]]] = []
        self._local_ids = itertools.count(-1, -1)
        self._id_map: dict[int, int] = {}
        self.heartbeat_interval: int | None = None
        self.registration: str | None = None

    # ---------------------------------------------------------- waiting
    async def _note(self, action: str, payload: dict) -> None:
        """Record a request; raise the CALLERROR injected for its action (`call_errors`), once."""
        async with self._arrived:
            self.received[action].append(payload)
            self._arrived.notify_all()
        if action in self.call_errors:
            raise self.call_errors.pop(action)

    async def wait_for(self, action: str, count: int = 1, timeout: float = 10.0) -> dict:
        """Wait until `count` requests of `action` have arrived; return the last one."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.received[action]) >= count), timeout)
            return self.received[action][count - 1]

    # ------------------------------------------- charger-initiated (sent)
    async def boot(self, vendor: str = "egw-sim", model: str = "SimCharger", serial: str | None = None) -> Any:
        reply = await self.call(call.BootNotification(charge_point_model=model, charge_point_vendor=vendor,
                                                      charge_point_serial_number=serial or f"SN-{self.id}", firmware_version="1.0"))
        self.heartbeat_interval, self.registration = reply.interval, reply.status
        return reply

    async def heartbeat(self) -> Any:
        return await self.call(call.Heartbeat())

    async def status(self, connector_id: int, status: str, error_code: str = "NoError", timestamp: float | None = None) -> Any:
        return await self._send_or_queue(lambda: self.call(call.StatusNotification(
            connector_id=connector_id, error_code=error_code, status=status, timestamp=iso(timestamp or self.clock()))))

    async def authorize(self, id_tag: str) -> Any:
        return await self.call(call.Authorize(id_tag=id_tag))

    async def start_transaction(self, connector_id: int, id_tag: str, meter_start: int | None = None, timestamp: float | None = None,
                    reservation_id: int | None = None) -> int:
        """Start a session; returns its transaction id (a negative placeholder while offline)."""
        meter = self.meter_wh if meter_start is None else meter_start
        stamp = iso(timestamp or self.clock())
        local = next(self._local_ids)

        async def send() -> Any:
            reply = await self.call(call.StartTransaction(connector_id=connector_id, id_tag=id_tag, meter_start=meter,
                                                          timestamp=stamp, reservation_id=reservation_id), suppress=False)
            self._id_map[local] = reply.transaction_id
            if self.transactions.get(connector_id) == local:
                self.transactions[connector_id] = reply.transaction_id
            return reply

        self.transactions[connector_id] = local
        if self.offline:
            self.offline_queue.append(send)
            return local
        reply = await send()
        return reply.transaction_id

    async def meter(self, connector_id: int, transaction_id: int, energy_wh: float, power_w: float | None = None,
                    timestamp: float | None = None, *, soc_percent: float | None = None, current_a: float | dict[str, float] | None = None) -> Any:
        """Send MeterValues: the energy register, and power, the EV's state of charge (SoC, sampled at the EV) and the
        current (Current.Import: one phase-less value, or per phase as {"L1": 16.0, ...}) when given."""
        self.meter_wh = int(energy_wh)
        stamp = iso(timestamp or self.clock())
        sampled = [{"value": str(int(energy_wh)), "measurand": "Energy.Active.Import.Register", "unit": "Wh", "context": "Sample.Periodic"}]
        if power_w is not None:
            sampled.append({"value": f"{power_w:.1f}", "measurand": "Power.Active.Import", "unit": "W", "context": "Sample.Periodic"})
        if soc_percent is not None:
            sampled.append({"value": f"{soc_percent:g}", "measurand": "SoC", "unit": "Percent", "location": "EV", "context": "Sample.Periodic"})
        phases = current_a if isinstance(current_a, dict) else {None: current_a} if current_a is not None else {}
        for phase, amps in phases.items():
            sampled.append({"value": f"{amps:.1f}", "measurand": "Current.Import", "unit": "A", "context": "Sample.Periodic",
                            **({"phase": phase} if phase else {})})
        return await self._send_or_queue(lambda: self.call(call.MeterValues(
            connector_id=connector_id, transaction_id=self._real(transaction_id),
            meter_value=[{"timestamp": stamp, "sampledValue": sampled}])))

    async def stop_transaction(self, transaction_id: int, meter_stop: int, reason: str = "Local", timestamp: float | None = None,
                   id_tag: str | None = None) -> Any:
        self.meter_wh = meter_stop
        stamp = iso(timestamp or self.clock())
        for connector, tx in list(self.transactions.items()):
            if tx == transaction_id:
                del self.transactions[connector]
        return await self._send_or_queue(lambda: self.call(call.StopTransaction(
            meter_stop=meter_stop, timestamp=stamp, transaction_id=self._real(transaction_id), reason=reason, id_tag=id_tag)))

    def _real(self, transaction_id: int) -> int:
        return self._id_map.get(transaction_id, transaction_id)

    async def _send_or_queue(self, send: Callable[[], Awaitable[Any]]) -> Any:
        if self.offline:
            self.offline_queue.append(send)
            return None
        return await send()

    async def replay(self) -> int:
        """Send the offline queue in order (after reconnecting); returns how many were sent."""
        queue, self.offline_queue = self.offline_queue, []
        for send in queue:
            await send()
        return len(queue)

    # ------------------------------------------- central-initiated (answered)
    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag: str, connector_id: int | None = None, charging_profile: dict | None = None) -> Any:
        await self._note("RemoteStartTransaction", {"id_tag": id_tag, "connector_id": connector_id})
        busy = (connector_id or 1) in self.transactions
        return call_result.RemoteStartTransaction(status="Rejected" if busy else "Accepted")

    @after(Action.remote_start_transaction)
    async def after_remote_start(self, id_tag: str, connector_id: int | None = None, charging_profile: dict | None = None) -> None:
        if self.auto_transactions and (connector_id or 1) not in self.transactions:
            await self.start_transaction(connector_id or 1, id_tag)

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int) -> Any:
        await self._note("RemoteStopTransaction", {"transaction_id": transaction_id})
        known = transaction_id in self.transactions.values()
        return call_result.RemoteStopTransaction(status="Accepted" if known else "Rejected")

    @after(Action.remote_stop_transaction)
    async def after_remote_stop(self, transaction_id: int) -> None:
        if self.auto_transactions and transaction_id in self.transactions.values():
            await self.stop_transaction(transaction_id, self.meter_wh, reason="Remote")

    @on(Action.reserve_now)
    async def on_reserve_now(self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int, parent_id_tag: str | None = None) -> Any:
        await self._note("ReserveNow", {"connector_id": connector_id, "id_tag": id_tag, "reservation_id": reservation_id, "expiry_date": expiry_date})
        if connector_id in self.transactions:
            return call_result.ReserveNow(status="Occupied")
        self.reservations[reservation_id] = {"connector_id": connector_id, "id_tag": id_tag}
        return call_result.ReserveNow(status="Accepted")

    @on(Action.cancel_reservation)
    async def on_cancel_reservation(self, reservation_id: int) -> Any:
        await self._note("CancelReservation", {"reservation_id": reservation_id})
        found = self.reservations.pop(reservation_id, None) is not None
        return call_result.CancelReservation(status="Accepted" if found else "Rejected")

    @on(Action.change_availability)
    async def on_change_availability(self, connector_id: int, type: str) -> Any:  # noqa: A002 - OCPP field name
        await self._note("ChangeAvailability", {"connector_id": connector_id, "type": type})
        return call_result.ChangeAvailability(status="Scheduled" if connector_id in self.transactions else "Accepted")

    @on(Action.reset)
    async def on_reset(self, type: str) -> Any:  # noqa: A002
        await self._note("Reset", {"type": type})
        return call_result.Reset(status="Accepted")

    @on(Action.unlock_connector)
    async def on_unlock(self, connector_id: int) -> Any:
        await self._note("UnlockConnector", {"connector_id": connector_id})
        if not 1 <= connector_id <= self.connectors:
            return call_result.UnlockConnector(status="UnlockFailed")
        return call_result.UnlockConnector(status="Unlocked")

    @after(Action.unlock_connector)
    async def after_unlock(self, connector_id: int) -> None:
        """OCPP 1.6 5.18: a session on the connector is stopped first, with reason UnlockCommand."""
        tx = self.transactions.get(connector_id)
        if tx is not None and tx > 0:
            await self.stop_transaction(tx, self.meter_wh, reason="UnlockCommand")

    @on(Action.trigger_message)
    async def on_trigger(self, requested_message: str, connector_id: int | None = None) -> Any:
        await self._note("TriggerMessage", {"requested_message": requested_message, "connector_id": connector_id})
        supported = requested_message in ("StatusNotification", "Heartbeat", "BootNotification", "MeterValues")
        return call_result.TriggerMessage(status="Accepted" if supported else "NotImplemented")

    @after(Action.trigger_message)
    async def after_trigger(self, requested_message: str, connector_id: int | None = None) -> None:
        if requested_message == "StatusNotification":
            for connector in ([connector_id] if connector_id is not None else range(0, self.connectors + 1)):
                await self.status(connector, "Charging" if connector in self.transactions else "Available")
        elif requested_message == "Heartbeat":
            await self.heartbeat()
        elif requested_message == "BootNotification":
            await self.boot()
        elif requested_message == "MeterValues":
            for connector, tx in self.transactions.items():
                await self.meter(connector, tx, self.meter_wh)

    @on(Action.get_configuration)
    async def on_get_configuration(self, key: list | None = None) -> Any:
        await self._note("GetConfiguration", {"key": key})
        wanted = key or list(self.configuration)
        known = [{"key": k, "readonly": False, "value": self.configuration[k]} for k in wanted if k in self.configuration]
        unknown = [k for k in wanted if k not in self.configuration]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.change_configuration)
    async def on_change_configuration(self, key: str, value: str) -> Any:
        await self._note("ChangeConfiguration", {"key": key, "value": value})
        if key not in self.configuration:
            return call_result.ChangeConfiguration(status="NotSupported")
        self.configuration[key] = value
        return call_result.ChangeConfiguration(status="Accepted")

    @on(Action.clear_cache)
    async def on_clear_cache(self) -> Any:
        await self._note("ClearCache", {})
        return call_result.ClearCache(status="Accepted")

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict) -> Any:
        await self._note("SetChargingProfile", {"connector_id": connector_id, "cs_charging_profiles": cs_charging_profiles})
        purpose = cs_charging_profiles.get("charging_profile_purpose")
        if connector_id > self.connectors or (purpose == "TxProfile" and connector_id not in self.transactions):
            return call_result.SetChargingProfile(status="Rejected")  # 5.16.3: a TxProfile needs a session on that connector
        if purpose == "ChargePointMaxProfile" and connector_id != 0:
            return call_result.SetChargingProfile(status="Rejected")  # only on connector 0
        if self._refuses(cs_charging_profiles):
            return call_result.SetChargingProfile(status="Rejected")
        self.charging_profiles[cs_charging_profiles["charging_profile_id"]] = {"connector_id": connector_id, "profile": cs_charging_profiles}
        self._follow_limit()
        return call_result.SetChargingProfile(status="Accepted")

    def _refuses(self, profile: dict) -> bool:
        """Whether this charger's quirks (`reject_profiles`) refuse `profile`."""
        schedule = profile.get("charging_schedule") or {}
        periods = schedule.get("charging_schedule_period") or [{}]
        unit = schedule.get("charging_rate_unit")
        return (("zero" in self.reject_profiles and any(float(p.get("limit", 1)) == 0 for p in periods))
                or ("level0_only" in self.reject_profiles and int(profile.get("stack_level", 0)) > 0)
                or ("watts_only" in self.reject_profiles and unit == "A"))

    def effective_limit(self, connector_id: int = 1) -> tuple[float | None, int]:
        """(limit in A per phase, phases) the installed profiles give `connector_id` now; (None, 3) without one.

        A TxProfile of the session under way wins over TxDefaultProfiles (OCPP 1.6 3.13.2),
        the highest stack level within each purpose, and a limit in W is turned into A at 230 V.
        """
        session = self.transactions.get(connector_id)
        for purpose in ("TxProfile", "TxDefaultProfile"):
            candidates = [e["profile"] for e in self.charging_profiles.values()
                          if e["connector_id"] in (0, connector_id) and e["profile"].get("charging_profile_purpose") == purpose
                          and (purpose != "TxProfile" or e["profile"].get("transaction_id") in (None, session))]
            if candidates:
                profile = max(candidates, key=lambda p: int(p.get("stack_level", 0)))
                schedule = profile.get("charging_schedule") or {}
                period = (schedule.get("charging_schedule_period") or [{}])[0]
                phases = int(period.get("number_phases") or 3)
                limit = float(period.get("limit", 0.0))
                if schedule.get("charging_rate_unit") == "W":
                    limit = limit / (230.0 * phases)
                return limit, phases
        return None, 3

    def _follow_limit(self, connector_id: int = 1) -> None:
        if self.car is not None:
            limit, phases = self.effective_limit(connector_id)
            self.car.set_limit(self.car.max_current_a if limit is None else limit, phases, self.clock())

    def car_power_w(self) -> float:
        """What the plugged-in car draws now, W (0 without a car)."""
        return self.car.power_w(self.clock()) if self.car is not None else 0.0

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(self, id: int | None = None, connector_id: int | None = None,  # noqa: A002
                                        charging_profile_purpose: str | None = None, stack_level: int | None = None) -> Any:
        await self._note("ClearChargingProfile", {"id": id, "connector_id": connector_id, "charging_profile_purpose": charging_profile_purpose,
                                                  "stack_level": stack_level})
        matching = [pid for pid, entry in self.charging_profiles.items()
                    if (id is None or pid == id)
                    and (connector_id is None or entry["connector_id"] == connector_id)
                    and (charging_profile_purpose is None or entry["profile"].get("charging_profile_purpose") == charging_profile_purpose)
                    and (stack_level is None or entry["profile"].get("stack_level") == stack_level)]
        for pid in matching:
            del self.charging_profiles[pid]
        self._follow_limit()
        return call_result.ClearChargingProfile(status="Accepted" if matching else "Unknown")

    @on(Action.get_composite_schedule)
    async def on_get_composite_schedule(self, connector_id: int, duration: int, charging_rate_unit: str | None = None) -> Any:
        await self._note("GetCompositeSchedule", {"connector_id": connector_id, "duration": duration})
        if connector_id > self.connectors:
            return call_result.GetCompositeSchedule(status="Rejected")
        limit_a, phases = self.effective_limit(connector_id)
        unit = charging_rate_unit or "W"
        if limit_a is None:
            period = {"startPeriod": 0, "limit": 7400.0 if unit == "W" else 32.0}
        else:
            period = {"startPeriod": 0, "limit": round(limit_a * 230.0 * phases if unit == "W" else limit_a, 1), "numberPhases": phases}
        schedule = {"chargingRateUnit": unit, "duration": duration, "chargingSchedulePeriod": [period]}
        return call_result.GetCompositeSchedule(status="Accepted", connector_id=connector_id, schedule_start=iso(self.clock()), charging_schedule=schedule)

    # ----------------------------------------------- local authorization list
    @on(Action.send_local_list)
    async def on_send_local_list(self, list_version: int, update_type: str, local_authorization_list: list | None = None) -> Any:
        """OCPP 1.6 5.15: Full replaces the list; Differential adds or changes entries with an
        idTagInfo and removes those without, and must raise the version (else VersionMismatch)."""
        entries = local_authorization_list or []
        await self._note("SendLocalList", {"list_version": list_version, "update_type": update_type, "local_authorization_list": entries})
        if not self.local_list_supported or self.configuration.get("LocalAuthListEnabled") != "true":
            return call_result.SendLocalList(status="NotSupported")
        if len(entries) > int(self.configuration["SendLocalListMaxLength"]):
            return call_result.SendLocalList(status="Failed")
        if update_type == "Differential" and list_version <= self.local_list_version:
            return call_result.SendLocalList(status="VersionMismatch")
        updated = {} if update_type == "Full" else dict(self.local_list)
        for entry in entries:
            info = entry.get("id_tag_info")
            if info is None:
                updated.pop(entry["id_tag"], None)
            else:
                updated[entry["id_tag"]] = info
        if len(updated) > int(self.configuration["LocalAuthListMaxLength"]):
            return call_result.SendLocalList(status="Failed")
        self.local_list, self.local_list_version = updated, list_version
        return call_result.SendLocalList(status="Accepted")

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(self) -> Any:
        """OCPP 1.6 5.10: 0 for an empty list, -1 when the charger has no local list support."""
        await self._note("GetLocalListVersion", {})
        if not self.local_list_supported:
            return call_result.GetLocalListVersion(list_version=-1)
        return call_result.GetLocalListVersion(list_version=self.local_list_version if self.local_list else 0)

    # ---------------------------------------------- firmware and diagnostics
    @on(Action.get_diagnostics)
    async def on_get_diagnostics(self, location: str, retries: int | None = None, retry_interval: int | None = None,
                                 start_time: str | None = None, stop_time: str | None = None) -> Any:
        await self._note("GetDiagnostics", {"location": location, "retries": retries, "retry_interval": retry_interval,
                                            "start_time": start_time, "stop_time": stop_time})
        return call_result.GetDiagnostics(file_name=f"diagnostics-{self.id}-{int(self.clock())}.log")

    @after(Action.get_diagnostics)
    async def after_get_diagnostics(self, location: str, **_: Any) -> None:
        """OCPP 1.6 4.4: the upload's progress as DiagnosticsStatusNotifications (nothing is really uploaded)."""
        for status in ("Uploading", "Uploaded"):
            self.diagnostics_statuses.append(status)
            await self.call(call.DiagnosticsStatusNotification(status=status))

    @on(Action.update_firmware)
    async def on_update_firmware(self, location: str, retrieve_date: str, retries: int | None = None, retry_interval: int | None = None) -> Any:
        await self._note("UpdateFirmware", {"location": location, "retrieve_date": retrieve_date, "retries": retries, "retry_interval": retry_interval})
        return call_result.UpdateFirmware()

    @after(Action.update_firmware)
    async def after_update_firmware(self, location: str, retrieve_date: str, **_: Any) -> None:
        """OCPP 1.6 4.5: from retrieveDate on, the progress as FirmwareStatusNotifications (nothing is really installed)."""
        wait = datetime.fromisoformat(retrieve_date.replace("Z", "+00:00")).timestamp() - self.clock()
        if wait > 0:
            await asyncio.sleep(wait)
        for status in ("Downloading", "Downloaded", "Installing", "Installed"):
            self.firmware_statuses.append(status)
            await self.call(call.FirmwareStatusNotification(status=status))

    # ------------------------------------------------------- data transfer
    VENDOR_ID = "egw-sim"

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, message_id: str | None = None, data: str | None = None) -> Any:
        """OCPP 1.6 4.3/5.6: vendor "egw-sim" knows messageId "echo" (answers the data back)."""
        await self._note("DataTransfer", {"vendor_id": vendor_id, "message_id": message_id, "data": data})
        if vendor_id != self.VENDOR_ID:
            return call_result.DataTransfer(status="UnknownVendorId")
        if message_id != "echo":
            return call_result.DataTransfer(status="UnknownMessageId")
        return call_result.DataTransfer(status="Accepted", data=data)
