"""The Modbus connection of one endpoint (a TCP host:port or a serial port).

Several devices (unit ids) behind one endpoint share one `ModbusLink`: requests on it are
serialised by construction, because only the owning actor uses it, one request at a time.
The link turns pymodbus outcomes into three errors the poll logic acts on differently:

* `LinkDownError`      the endpoint is unreachable or the connection broke: go offline, back off;
* `DeviceError`   the device answered with a Modbus exception code: it is up, the read failed;
* `NoResponseError`    no (valid) answer in time, or garbage: the connection is dropped and
                  reopened on the next attempt, since its framing can no longer be trusted.
"""

from __future__ import annotations

from typing import Any, Protocol

from struct import error as struct_error

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException


class LinkError(Exception):
    reason = "link_error"


class LinkDownError(LinkError):
    reason = "offline"


class DeviceError(LinkError):
    """A Modbus exception response (code 1..11) from the device."""

    reason = "device_error"

    def __init__(self, code: int, where: str) -> None:
        super().__init__(f"exception code {code} for {where}")
        self.code = code


class NoResponseError(LinkError):
    reason = "no_response"


class Link(Protocol):
    """What the poll logic needs from a connection; tests replay recorded answers through it."""

    def connect(self) -> None: ...

    def read(self, unit: int, function: int, start: int, count: int) -> list[int]: ...

    def close(self) -> None: ...


class ModbusLink:
    """A synchronous pymodbus client, no retries: the poll schedule is the retry policy."""

    def __init__(self, settings: dict[str, Any]) -> None:
        timeout = float(settings.get("timeout", 2.0))
        if settings.get("serial_port"):
            self.client: Any = ModbusSerialClient(
                port=settings["serial_port"],
                baudrate=int(settings.get("baudrate", 9600)),
                parity=settings.get("parity", "N"),
                stopbits=int(settings.get("stopbits", 1)),
                timeout=timeout,
                retries=0,
            )
            self.describe = f"rtu:{settings['serial_port']}"
        else:
            self.client = ModbusTcpClient(settings["host"], port=int(settings.get("port", 502)), timeout=timeout, retries=0)
            self.describe = f"tcp:{settings['host']}:{settings.get('port', 502)}"

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    def connect(self) -> None:
        if not self.client.connect():
            self.client.close()
            raise LinkDownError(f"cannot connect to {self.describe}")

    def read(self, unit: int, function: int, start: int, count: int) -> list[int]:
        if not self.client.connected:
            raise LinkDownError(f"not connected to {self.describe}")
        call = self.client.read_holding_registers if function == 3 else self.client.read_input_registers
        where = f"unit {unit} fc{function} {start}+{count}"
        try:
            response = call(start, count=count, device_id=unit)
        except ConnectionException as exc:
            self.client.close()
            raise LinkDownError(f"{self.describe}: {exc}") from exc
        except (ModbusException, OSError, ValueError, struct_error) as exc:
            self.client.close()
            raise NoResponseError(f"{where}: {type(exc).__name__}: {exc}") from exc
        if response.isError():
            code = int(getattr(response, "exception_code", 0) or 0)
            raise DeviceError(code, where)
        registers = list(response.registers)
        if len(registers) != count:
            self.client.close()
            raise NoResponseError(f"{where}: got {len(registers)} registers")
        return registers

    def close(self) -> None:
        self.client.close()

