"""Messages of the OCPP actor family: central-initiated requests, their outcomes, and frames.

Central-initiated requests (what the REST API and the energy logic ask a charger to do)
are one frozen dataclass per OCPP 1.6 action, with Python names; `payload()` gives the
OCPP JSON object. Send one to the charger's actor wrapped in `ChargerCommand`; the actor
replies `CommandOutcome` to the sender once the charger answered, refused, or timed out.

Between the listener (websocket front-end) and a charger actor only raw frames travel,
numbered per connection so the receiver can put them back in order (thespian does not
promise ordering between two actors).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from actors.ocpp.frames import format_timestamp


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True)
class CentralRequest:
    """Base of central-initiated requests: fields map to the OCPP payload by camelCase name."""

    action: ClassVar[str] = ""

    def payload(self) -> dict[str, Any]:
        data = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == ():
                continue
            data[_camel(f.name)] = list(value) if isinstance(value, tuple) else value
        return data


@dataclass(frozen=True)
class RemoteStartTransaction(CentralRequest):
    action: ClassVar[str] = "RemoteStartTransaction"
    id_tag: str
    connector_id: int | None = None
    charging_profile: dict | None = None


@dataclass(frozen=True)
class RemoteStopTransaction(CentralRequest):
    action: ClassVar[str] = "RemoteStopTransaction"
    transaction_id: int


@dataclass(frozen=True)
class ReserveNow(CentralRequest):
    """The reservation id is assigned by the charger actor from the store's counter."""

    action: ClassVar[str] = "ReserveNow"
    connector_id: int
    id_tag: str
    expiry: float  # epoch seconds
    parent_id_tag: str | None = None

    def payload(self, reservation_id: int = 0) -> dict[str, Any]:  # type: ignore[override]
        data = {"connectorId": self.connector_id, "idTag": self.id_tag, "expiryDate": format_timestamp(self.expiry), "reservationId": reservation_id}
        if self.parent_id_tag is not None:
            data["parentIdTag"] = self.parent_id_tag
        return data


@dataclass(frozen=True)
class CancelReservation(CentralRequest):
    action: ClassVar[str] = "CancelReservation"
    reservation_id: int


@dataclass(frozen=True)
class ChangeAvailability(CentralRequest):
    action: ClassVar[str] = "ChangeAvailability"
    connector_id: int
    type: Literal["Inoperative", "Operative"]


@dataclass(frozen=True)
class Reset(CentralRequest):
    action: ClassVar[str] = "Reset"
    type: Literal["Hard", "Soft"]


@dataclass(frozen=True)
class UnlockConnector(CentralRequest):
    action: ClassVar[str] = "UnlockConnector"
    connector_id: int


@dataclass(frozen=True)
class TriggerMessage(CentralRequest):
    action: ClassVar[str] = "TriggerMessage"
    requested_message: str
    connector_id: int | None = None


@dataclass(frozen=True)
class GetConfiguration(CentralRequest):
    action: ClassVar[str] = "GetConfiguration"
    key: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChangeConfiguration(CentralRequest):
    action: ClassVar[str] = "ChangeConfiguration"
    key: str
    value: str


@dataclass(frozen=True)
class ClearCache(CentralRequest):
    action: ClassVar[str] = "ClearCache"


@dataclass(frozen=True)
class SetChargingProfile(CentralRequest):
    action: ClassVar[str] = "SetChargingProfile"
    connector_id: int
    cs_charging_profiles: dict


@dataclass(frozen=True)
class ClearChargingProfile(CentralRequest):
    action: ClassVar[str] = "ClearChargingProfile"
    id: int | None = None
    connector_id: int | None = None
    charging_profile_purpose: str | None = None
    stack_level: int | None = None


@dataclass(frozen=True)
class GetCompositeSchedule(CentralRequest):
    action: ClassVar[str] = "GetCompositeSchedule"
    connector_id: int
    duration: int
    charging_rate_unit: str | None = None


@dataclass(frozen=True)
class SendLocalList(CentralRequest):
    """The entries (`localAuthorizationList`, OCPP AuthorizationData objects) are sent as given."""

    action: ClassVar[str] = "SendLocalList"
    list_version: int
    update_type: Literal["Differential", "Full"]
    local_authorization_list: tuple[dict, ...] = ()


@dataclass(frozen=True)
class GetLocalListVersion(CentralRequest):
    action: ClassVar[str] = "GetLocalListVersion"


@dataclass(frozen=True)
class GetDiagnostics(CentralRequest):
    """Dates are RFC 3339 text, sent as given."""

    action: ClassVar[str] = "GetDiagnostics"
    location: str
    retries: int | None = None
    retry_interval: int | None = None
    start_time: str | None = None
    stop_time: str | None = None


@dataclass(frozen=True)
class UpdateFirmware(CentralRequest):
    action: ClassVar[str] = "UpdateFirmware"
    location: str
    retrieve_date: str
    retries: int | None = None
    retry_interval: int | None = None


@dataclass(frozen=True)
class DataTransfer(CentralRequest):
    action: ClassVar[str] = "DataTransfer"
    vendor_id: str
    message_id: str | None = None
    data: str | None = None


Outcome = Literal["result", "error", "timeout", "offline", "queue_full", "invalid_request", "invalid_response", "not_accepted", "cancelled", "unknown"]


@dataclass(frozen=True)
class ChargerCommand:
    """Ask the charger actor to send `request`; `request_id` comes back in the outcome."""

    request: CentralRequest
    request_id: Any = None


@dataclass(frozen=True)
class CancelCommand:
    """Withdraw the `ChargerCommand` with this `request_id` if it still waits to be sent.

    The charger actor answers with a `CommandOutcome` for that request id: `cancelled`
    (it was waiting and will never be sent), `unknown` (the actor has no such request:
    finished already, or lost with an earlier incarnation of the actor), or, when the
    request is already with the charger, nothing now and its real outcome once the
    charger answers or the call times out. Whoever gave up waiting learns which.
    """

    request_id: Any


@dataclass(frozen=True)
class CommandOutcome:
    """How a central-initiated request ended.

    outcome   result: the charger answered (payload is its reply, e.g. {"status": "Accepted"});
              error: it answered with a CALLERROR (error_code/description);
              timeout: sent, but no answer within the call timeout (or the connection
                closed first): whether the charger acted on it is unknown;
              offline: not connected (nothing was sent);
              queue_full: too many requests already waiting for this charger (not sent);
              invalid_request: the request fails the 1.6 schema (nothing was sent);
              invalid_response: the charger's answer fails the schema;
              not_accepted: the charger's registration is Rejected (not sent);
              cancelled: withdrawn by `CancelCommand` before it was sent;
              unknown: a `CancelCommand` for a request the actor does not hold.
    """

    charge_point_id: str
    request_id: Any
    action: str
    outcome: Outcome
    payload: dict = field(default_factory=dict)
    error_code: str = ""
    description: str = ""
    unique_id: str = ""


@dataclass(frozen=True)
class LiveUpdate:
    """A session's latest figures, pushed to subscribers at once (the database lags on purpose)."""

    charge_point_id: str
    transaction_id: int
    connector_id: int
    timestamp: float
    energy_wh: float | None
    power_w: float | None
    session_energy_wh: float | None


@dataclass(frozen=True)
class Subscribe:
    """Ask a charger actor to send `LiveUpdate`s (and connector status changes) to the sender."""


@dataclass(frozen=True)
class Unsubscribe:
    pass


@dataclass(frozen=True)
class ConnectorStatus:
    charge_point_id: str
    connector_id: int
    status: str
    error_code: str
    timestamp: float


# ------------------------------------------------ listener <-> charger actor
@dataclass(frozen=True)
class ChargerConnected:
    """A websocket for this charger is open; `connection_id` tells connections apart."""

    charge_point_id: str
    connection_id: int
    next_seq: int = 0  # a restarted charger actor joins a connection mid-stream
    reply_path: str | None = None  # the listener's datagram socket for replies (see actors.ocpp.replies)


@dataclass(frozen=True)
class ChargerDisconnected:
    charge_point_id: str
    connection_id: int


@dataclass(frozen=True)
class FrameIn:
    charge_point_id: str
    connection_id: int
    seq: int
    text: str


@dataclass(frozen=True)
class FrameOut:
    charge_point_id: str
    connection_id: int
    text: str


@dataclass(frozen=True)
class CloseConnection:
    charge_point_id: str
    connection_id: int
    code: int
    reason: str


@dataclass(frozen=True)
class Disconnect:
    """To a charger actor: close the charger's websocket now (it was blocked or removed)."""

    reason: str


@dataclass(frozen=True)
class Disconnected:
    """The answer: whether a connection was open and is now being closed."""

    charge_point_id: str
    closed: bool


@dataclass(frozen=True)
class ChargerReady:
    """A (re)started charger actor introduces itself to the listener, which re-attaches it."""

    charge_point_id: str


REQUESTS: dict[str, type[CentralRequest]] = {
    cls.action: cls
    for cls in (RemoteStartTransaction, RemoteStopTransaction, ReserveNow, CancelReservation, ChangeAvailability, Reset,
                UnlockConnector, TriggerMessage, GetConfiguration, ChangeConfiguration, ClearCache, SetChargingProfile,
                ClearChargingProfile, GetCompositeSchedule, SendLocalList, GetLocalListVersion, GetDiagnostics, UpdateFirmware,
                DataTransfer)
}


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


class UnknownActionError(ValueError):
    """The action is not one the central system sends (a REST client asked for something else)."""


def request_from_payload(action: str, payload: dict[str, Any]) -> CentralRequest:
    """Build a request from an OCPP-style camelCase payload (what the REST API receives).

    `ReserveNow.expiryDate` is an RFC 3339 string here (epoch seconds in the dataclass);
    the reservation id is not given: the charger actor assigns it. Raises ValueError
    naming the action or field for anything that does not fit (UnknownActionError for the
    action itself): this is the one place a REST body becomes an OCPP request.
    """
    from actors.ocpp.frames import parse_timestamp

    cls = REQUESTS.get(action)
    if cls is None:
        raise UnknownActionError(f"command {action} is not supported: not a central-initiated OCPP 1.6 request this gateway sends")
    names = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in payload.items():
        name = _snake(key)
        if cls is ReserveNow and name == "expiry_date":
            try:
                kwargs["expiry"] = parse_timestamp(value)
            except (TypeError, ValueError):
                raise ValueError(f"expiryDate: {value!r} is not an RFC 3339 date-time") from None
            continue
        if name not in names:
            raise ValueError(f"{key}: not a field of {action}")
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{action}: {exc}") from None
