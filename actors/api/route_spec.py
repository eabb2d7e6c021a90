"""The shapes of the route table: a route and its parameters as plain data, and the
responses many routes share. `actors.api.routes` assembles the table from them; a family
with endpoints of its own (`actors.api.charger_admin`) declares its rows with these too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from actors.api import schemas

Location = Literal["path", "query"]


@dataclass(frozen=True)
class Param:
    name: str
    location: Location
    schema: dict[str, Any]
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Route:
    """One endpoint. `responses` maps status -> (description, component schema name or None)."""

    method: str
    path: str
    operation: str
    summary: str
    tag: str
    params: tuple[Param, ...] = ()
    body: str | None = None  # component schema name of the JSON request body
    responses: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    protected: bool = False  # needs `Authorization: Bearer <token>`
    content_type: str = "application/json"  # of the 200 response


def path_id(name: str, what: str) -> Param:
    return Param(name, "path", schemas.IdentifierSchema, True, f"the {what} id")


DEVICE_ID = path_id("id", "device")
CHARGER_ID = path_id("id", "charger")
LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, False, "at most this many items")

NOT_FOUND = (404, ("no such item", "Error"))
BAD_INPUT = (400, ("invalid input; `field` names it", "Error"))
UNAVAILABLE = (503, ("the part that must answer is restarting; see Retry-After", "Error"))
WRITE_ERRORS = dict([BAD_INPUT, (401, ("missing or wrong bearer token", "Error")), (413, ("request body too large", "Error")), UNAVAILABLE])

WIFI_UNAVAILABLE = ("no NetworkManager or no Wi-Fi device (`error` is wifi_unavailable), or it did not answer; see Retry-After", "Error")
WIFI_FAILED = ("NetworkManager refused (`error` is wifi_failed)", "Error")
NO_BLE = ("BLE provisioning is not enabled on this gateway (ble_enabled)", "Error")


def charger_command(slug: str, summary: str, body: str) -> Route:
    return Route(
        "POST", f"/api/chargers/{{id}}/{slug}", f"charger_{slug.replace('-', '_')}", summary, "chargers",
        params=(CHARGER_ID,), body=body, protected=True,
        responses={200: ("the charger's answer", "CommandResult"), **WRITE_ERRORS, 404: ("no such charger", "Error"),
                   409: ("the charger rejected the command", "Error"), 501: ("this gateway has no OCPP central system", "Error")},
    )
