"""The shapes of the route table: a route and its parameters as plain data, and the
responses many routes share. `actors.api.routes` assembles the table from them; a family
with endpoints of its own (`actors.api.charger_admin`) declares its rows with these too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from actors.api import schemas

Location = Literal["path", "query", "header"]


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
    command: str | None = None  # the OCPP 1.6 action a charger command route sends
    body_required: bool = True  # False: an empty body reads as {}


def path_id(name: str, what: str) -> Param:
    return Param(name, "path", schemas.IdentifierSchema, True, f"the {what} id")


DEVICE_ID = path_id("id", "device")
CHARGER_ID = Param("id", "path", schemas.ChargerIdSchema, True, "the charger id, its chargePointId (percent-encoded: `cp%40x%7C1` for `cp@x|1`)")
IDEMPOTENCY_KEY = Param("Idempotency-Key", "header", {"type": "string", "pattern": r"^[!-~]{1,255}$", "maxLength": 255}, False,
                        "names this command: a request with the same key to the same charger (for 24 h, the latest 256 per charger) answers "
                        "that command's outcome, or 202 while it is pending, instead of sending it again; another request under a used key is 422. "
                        "A key whose command was certainly not sent (400, 404, 501, 503, charger_not_accepted) is released for a retry")
LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, False, "at most this many items")

NOT_FOUND = (404, ("no such item", "Error"))
BAD_INPUT = (400, ("invalid input; `field` names it", "Error"))
UNAVAILABLE = (503, ("the part that must answer is restarting; see Retry-After", "Error"))
TOKEN_REQUIRED = (401, ("missing or wrong bearer token", "Error"))
WRITE_ERRORS = dict([BAD_INPUT, TOKEN_REQUIRED, (413, ("request body too large", "Error")), UNAVAILABLE])
PERSONAL_READ_ERRORS = dict([BAD_INPUT, TOKEN_REQUIRED, UNAVAILABLE])
"""What a protected read of personal data (idTags: drivers' RFID card numbers) can answer besides its own."""

WIFI_UNAVAILABLE = ("no NetworkManager or no Wi-Fi device (`error` is wifi_unavailable), or it did not answer; see Retry-After", "Error")
WIFI_FAILED = ("NetworkManager refused (`error` is wifi_failed)", "Error")
NO_BLE = ("BLE provisioning is not enabled on this gateway (ble_enabled)", "Error")


COMMAND_RESPONSES: dict[int, tuple[str, str | None]] = {
    200: ("the charger accepted (status Accepted, or Scheduled / Unlocked / RebootRequired where the action has them)", "CommandResult"),
    202: ("not answered within the request's wait (the command timeout, 40 s): still queued or with the charger, neither withdrawn nor "
          "sent again; poll `Location` (GET /api/chargers/{id}/commands/{command_id})", "CommandPending"),
    **{k: (v[0], "CommandError") for k, v in WRITE_ERRORS.items()},
    404: ("no such charger", "CommandError"),
    409: ("the charger answered a non-accepting status (`error` rejected; `status` is the charger's: Rejected, NotSupported, Failed, Occupied, "
          "Faulted, Unavailable, Unknown, UnlockFailed, VersionMismatch, ...), or its registration is Rejected (`error` charger_not_accepted, not sent)",
          "CommandError"),
    422: ("the Idempotency-Key names another request to this charger (`error` idempotency_key_reused)", "CommandError"),
    501: ("this gateway has no OCPP central system", "CommandError"),
    502: ("the charger answered with a CALLERROR (`error` charger_error, `ocpp_error_code`, `description`) or outside the 1.6 schema "
          "(`error` invalid_response)", "CommandError"),
    503: ("never sent to the charger: `error` charger_offline (not connected), queue_full (too many commands wait for it), not_sent "
          "(withdrawn after waiting too long in its queue), or unavailable (the gateway part is restarting); retry after Retry-After", "CommandError"),
    504: ("sent, and the charger did not answer within the OCPP call timeout or its connection closed first (`error` no_answer), or the outcome is "
          "not known (`error` outcome_unknown): whether it acted is unknown, and the gateway does not send it again", "CommandError"),
}
"""Every charger command answers with one of these (docs/api: one mapping of OCPP outcomes to HTTP)."""


def charger_command(slug: str, action: str, body: str | None, *, method: str = "POST", params: tuple[Param, ...] = (),
                    summary: str = "", body_required: bool = True) -> Route:
    """A route that sends the central-system action `action` to the charger `{id}` and answers its outcome.

    Writes take an Idempotency-Key; a GET (a read of the charger) is safe to repeat and does not.
    """
    operation = f"charger_{slug.replace('-', '_')}" if method == "POST" else f"charger_{method.lower()}_{slug.replace('-', '_')}"
    return Route(
        method, f"/api/chargers/{{id}}/{slug}", operation, f"{action}: {summary}" if summary else action, "chargers",
        params=(CHARGER_ID, *params) + ((IDEMPOTENCY_KEY,) if method != "GET" else ()), body=body, protected=True,
        responses={k: v for k, v in COMMAND_RESPONSES.items() if method != "GET" or k not in (413, 422)}, command=action, body_required=body_required,
    )
