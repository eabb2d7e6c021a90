"""What the REST handlers need from the rest of the gateway, as a small Protocol.

The HTTP layer (`actors.api.app`) knows nothing about actors, thespian or SQLite: it
calls these async methods and turns their answers and exceptions into HTTP. The API
actor implements the Protocol by asking supervisors and reading storage; tests and
benchmarks implement it over in-memory state and real SQLite stores. Keeping the
boundary this narrow is what lets the same handlers be fuzzed without a gateway and
served by the actor unchanged.

Every method returns plain JSON-able data shaped as the OpenAPI document says
(`actors.api.schemas`). Failures are raised as the `ApiError` subclasses below, each
of which maps to exactly one HTTP status; anything else is a bug (500, logged).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


class ApiError(Exception):
    """A failure the client should see as a precise JSON error, not as a 500."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or {}  # more fields for the body (a charger's OCPP error code)
        if code is not None:  # a more precise code than the class's (e.g. "wifi_unavailable")
            self.code = code

    def body(self) -> dict[str, Any]:
        # `field` before `message`: a phone reading one BLE page (~180 bytes) sees it first
        body: dict[str, Any] = {"error": self.code}
        if self.field is not None:
            body["field"] = self.field
        body["message"] = self.message
        body.update(self.details)
        return body


class BadInputError(ApiError):
    """The request itself is wrong; `field` names the offending part (e.g. "port", "query.since")."""

    status = 400
    code = "bad_request"


class NotFoundError(ApiError):
    status = 404
    code = "not_found"


class ConflictError(ApiError):
    """The request is well-formed but clashes with current state (e.g. a device id in use)."""

    status = 409
    code = "conflict"


class UnavailableError(ApiError):
    """The part that must answer is restarting or not running: try again after `retry_after` s.

    Handlers never wait for a device or a charger that is down; they answer this at once.
    """

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, field=field, code=code)
        self.retry_after = max(1, int(retry_after))


class UnprocessableError(ApiError):
    """Well-formed, but not something the gateway can do (an Idempotency-Key reused for another request)."""

    status = 422
    code = "unprocessable"


class ChargerError(ApiError):
    """The charger answered with a CALLERROR (or an answer that breaks the OCPP 1.6 schema).

    `details` carries `ocpp_error_code` and the charger's `description`.
    """

    status = 502
    code = "charger_error"


class NoAnswerError(ApiError):
    """A command was sent (or may have been) and no answer came: its effect is unknown.

    Not a failure and not retried by the gateway: a client that sends it again may apply it
    twice (send an Idempotency-Key, and read the charger's state first).
    """

    status = 504
    code = "no_answer"


class NotSupportedError(ApiError):
    """The gateway build has no part that could carry out this request."""

    status = 501
    code = "not_implemented"


class UpstreamError(ApiError):
    """A part of the host the gateway relies on (NetworkManager) answered with a failure.

    The message is safe to show: it never carries a secret from the request.
    """

    status = 502
    code = "upstream_failed"


class RejectedError(ApiError):
    """A charger or device answered, and said no (e.g. RemoteStart `Rejected`)."""

    status = 409
    code = "rejected"


@runtime_checkable
class ApiBackend(Protocol):
    """The gateway as the REST API sees it. All methods are coroutines and must not block."""

    # ------------------------------------------------------------------ reads
    async def health(self) -> dict[str, Any]:
        """status ("ok"/"degraded"), reasons, uptime_s, version, boot_id, started_at."""

    async def tree(self) -> list[dict[str, Any]]:
        """The supervision tree as nested records (name, kind, pid, state, restarts, ...)."""

    async def devices(self) -> list[dict[str, Any]]:
        """Every configured device with its latest published state."""

    async def device(self, device_id: str) -> dict[str, Any]:
        """One device; raises NotFoundError."""

    async def outbox_status(self) -> dict[str, Any]:
        """Pending/acknowledged counts, bytes, budget use, gaps and per-transport state."""

    async def dead_letters(self) -> list[dict[str, Any]]:
        """Batches a receiver refused for good, parked with the reason, oldest first."""

    async def resend_dead_letters(self, transport: str, ids: list[int] | None) -> dict[str, Any]:
        """Queue a transport's parked batches (all, or `ids`) to be sent again; raises NotFoundError."""

    async def chargers(self) -> list[dict[str, Any]]:
        """Known chargers with connectors and status."""

    async def charger(self, charger_id: str) -> dict[str, Any]:
        """One charger; raises NotFoundError."""

    async def transactions(self, *, charger: str | None, id_tag: str | None, since: float | None, limit: int) -> list[dict[str, Any]]:
        """Charging transactions, newest first, filtered."""

    async def transaction(self, transaction_id: int) -> dict[str, Any]:
        """One transaction; raises NotFoundError."""

    async def reservations(self, *, charger: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
        """Reservations, newest first; `status` active, expired, cancelled, used or refused."""

    async def reservation(self, reservation_id: int) -> dict[str, Any]:
        """One reservation; raises NotFoundError."""

    async def crypto(self) -> dict[str, Any]:
        """The gateway identity: serial, public_key (PEM), key_id, algorithm."""

    async def config(self) -> dict[str, Any]:
        """The effective configuration (the app redacts secrets before answering)."""

    # ----------------------------------------------------------------- writes
    async def disconnect_charger(self, charger_id: str, reason: str) -> bool:
        """Close the charger's open websocket (after it was blocked or removed); False when none was open."""
        ...

    async def charger_command(self, charger_id: str, command: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send an OCPP central-initiated command; returns the charger's answer payload.

        Must bound itself, and must never raise a not-sent error (UnavailableError, 503) for a
        command the charger may still receive: when it gives up waiting it withdraws the
        command first, and a command that reached the charger without an answer is
        NoAnswerError. ChargerError for a CALLERROR; the app maps the payload's status.
        """

    async def set_connector_override(self, charger_id: str, connector_id: int, status: str, reason: str | None) -> None:
        """Store an operator's status override of a connector (kept across restarts); NotFoundError for a
        charger or connector never reported. Telling the charger is the app's (ChangeAvailability)."""

    async def clear_connector_override(self, charger_id: str, connector_id: int) -> dict[str, Any] | None:
        """Lift it; the override that was lifted (status, reason, since), None when there was none.
        NotFoundError for a charger or connector never reported."""

    async def set_payment_reference(self, transaction_id: int, reference: str, *, replace: bool) -> dict[str, Any]:
        """Store a session's payment reference; the session as `transaction()` shows it. The same reference
        again changes nothing; a different one raises ConflictError (code payment_reference_conflict,
        details payment_ref) unless `replace`. NotFoundError for an unknown session."""

    async def add_device(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Persist a device and start its actor; raises ConflictError if the id is in use."""

    async def remove_device(self, device_id: str) -> dict[str, Any]:
        """Stop a device's actor and forget it; raises NotFoundError."""

    async def update_transport(self, name: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Change an upload transport's settings; raises NotFoundError."""

    # ------------------------------------------------------------ provisioning
    async def wifi_status(self) -> dict[str, Any]:
        """state, ssid, signal, ip4, provisioned; UnavailableError(code wifi_unavailable) without a network manager."""

    async def wifi_scan(self) -> list[dict[str, Any]]:
        """Visible networks, one per SSID, strongest first (at most 50)."""

    async def wifi_connect(self, ssid: str, psk: str | None) -> dict[str, Any]:
        """Store the gateway's Wi-Fi profile and start connecting (does not wait); returns the status."""

    async def wifi_forget(self) -> dict[str, Any]:
        """Remove the gateway's Wi-Fi profile; the status plus `removed`."""

    async def ble_status(self) -> dict[str, Any]:
        """The BLE provisioning actor's state, advertising and window; 501 when BLE is not configured."""

    async def ble_open_window(self, minutes: float | None) -> dict[str, Any]:
        """Open (or extend) the provisioning window for `minutes`, or the configured length; the new status."""

    async def ble_close_window(self) -> dict[str, Any]:
        """Close the provisioning window now; the new status."""
