"""Operator commands to chargers: a REST body becomes an OCPP request, its outcome an HTTP answer.

A mixin of `actors.api.gateway.GatewayBackend`. The charger's actor is found by
`Lookup("chargers/<id>")` and asked with `ChargerCommand`; `outcome_result` maps the
`CommandOutcome` it reports to the charger's payload or to the API error for how it ended.
"""

from __future__ import annotations

import os
from typing import Any

from actors.api import stores
from actors.api.backend import BadInputError, ChargerError, ConflictError, NoAnswerError, NotSupportedError, UnavailableError


class ChargerCommands:
    """Charger commands; needs `settings`, `db_path`, `port`, `_blocking`, `_request_ids`."""

    async def disconnect_charger(self, charger_id: str, reason: str) -> bool:
        """Have the charger's actor close its websocket; False when it has no actor (not connected) or does not answer."""
        from actors.ocpp.messages import Disconnect, Disconnected

        try:
            address = await self.port.lookup(f"chargers/{charger_id}", self.settings.ask_timeout)
            if address is None:
                return False
            reply = await self.port.ask(address, Disconnect(reason), match=lambda m: isinstance(m, Disconnected) and m.charge_point_id == charger_id,
                                        timeout=self.settings.ask_timeout)
        except TimeoutError:
            return False
        return bool(reply.closed)

    async def charger_command(self, charger_id: str, command: str, params: dict[str, Any]) -> dict[str, Any]:
        """Ask the charger's actor to send `command`; the charger's answer, or the ApiError for how it ended.

        The actor queues requests (one outstanding per charger, OCPP-J), so a request may wait
        behind others longer than `command_timeout`. Giving up then must not leave it queued
        to be sent later, after the client was told it failed: the backend withdraws it
        (`CancelCommand`), and the actor either confirms it was never sent (503 `not_sent`)
        or, when it is already with the charger, reports its real outcome when that comes.
        """
        from actors.ocpp.messages import CancelCommand, ChargerCommand, CommandOutcome, UnknownActionError, request_from_payload

        try:
            request = request_from_payload(command, dict(params))
        except UnknownActionError as exc:
            raise NotSupportedError(str(exc)) from None
        except ValueError as exc:  # names the field first: "expiryDate: ..."
            text = str(exc)
            raise BadInputError(text, field=text.split(":", 1)[0] if ":" in text else "body") from None
        try:
            address = await self.port.lookup(f"chargers/{charger_id}", self.settings.ask_timeout)
        except TimeoutError:
            raise UnavailableError("the supervisor did not answer the charger lookup", retry_after=1) from None
        if address is None:
            await self._blocking(stores.charger_view, self.db_path, charger_id)  # NotFound for a charger never seen
            raise UnavailableError(f"charger {charger_id} is not connected", retry_after=self.settings.charger_retry_after, code="charger_offline")
        request_id = f"api-{os.getpid()}-{next(self._request_ids)}"

        def answer(m: Any) -> bool:
            return isinstance(m, CommandOutcome) and m.request_id == request_id

        try:
            outcome = await self.port.ask(address, ChargerCommand(request, request_id), match=answer, timeout=self.settings.command_timeout)
        except TimeoutError:
            try:
                outcome = await self.port.ask(address, CancelCommand(request_id), match=answer, timeout=self.settings.command_timeout)
            except TimeoutError:
                raise NoAnswerError(f"charger {charger_id}: its actor reported no outcome of {command}; whether it was sent is unknown",
                                    code="outcome_unknown") from None
        return outcome_result(charger_id, command, outcome)


NOT_SENT = {
    "offline": ("charger_offline", 30, "is not connected; nothing was sent"),
    "queue_full": ("queue_full", 5, "has too many commands waiting; this one was not sent"),
    "cancelled": ("not_sent", 5, "did not get to it in time; it was withdrawn before it was sent"),
}
"""Outcomes where the charger never got the command: 503 with `error` and Retry-After."""


def outcome_result(charger_id: str, command: str, outcome: Any) -> dict[str, Any]:
    """A charger actor's `CommandOutcome` as the charger's answer payload, or the matching ApiError."""
    kind = outcome.outcome
    if kind == "result":
        return dict(outcome.payload)
    if kind in NOT_SENT:
        code, retry_after, what = NOT_SENT[kind]
        raise UnavailableError(f"charger {charger_id} {what} ({command})", retry_after=retry_after, code=code)
    if kind == "not_accepted":
        raise ConflictError(f"charger {charger_id}: its registration is Rejected; {command} was not sent", code="charger_not_accepted")
    if kind == "invalid_request":
        raise BadInputError(outcome.description or f"{command} request is not valid OCPP 1.6", field="body")
    if kind in ("error", "invalid_response"):
        what = "answered with a CALLERROR" if kind == "error" else "answered outside the OCPP 1.6 schema"
        raise ChargerError(f"charger {charger_id} {what} to {command}: {outcome.error_code}", code="charger_error" if kind == "error" else "invalid_response",
                           details={"ocpp_error_code": outcome.error_code, "description": outcome.description})
    if kind == "timeout":
        raise NoAnswerError(f"charger {charger_id} got {command} but did not answer ({outcome.description}); whether it acted on it is unknown, "
                            "and it is not sent again")
    raise NoAnswerError(f"charger {charger_id}: the outcome of {command} is unknown ({outcome.description or kind})", code="outcome_unknown")
