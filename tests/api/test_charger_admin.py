"""`egw chargers` against a running gateway: CLI -> REST -> SQLite -> the OCPP listener and charger actors.

The tree holds the real OCPP family and the API actor (`ocpp_gateway`); the charge point
is the project's simulator over a real websocket. What an operator does at a site: add a
charger with its key, put idTags on the local list, send the list to the charger, rotate
the key, block and remove the charger, all without touching SQLite.
"""

from __future__ import annotations

import asyncio
import io

from actors.api import charger_cli
from simulators.charger.connection import basic_auth_header
from simulators.charger.scenarios import Options, Session
from storage.chargers import key_fingerprint
from supervisor.cli import build_parser
from tests.api.test_charger_commands import ChargePointThread, ocpp_gateway  # noqa: F401 - the fixture
from tests.conftest import wait_until
from tests.ocpp.test_listener import handshake_status

KEY = "site-key-0123456789"


class KeyedChargePoint(ChargePointThread):
    """The simulated charge point, presenting `key` at the handshake (security profile 1)."""

    def __init__(self, url: str, key: str) -> None:
        self.key = key
        super().__init__(url)

    async def _open(self):
        self.session = Session(Options(url=self.session.options.url, auth_key=self.key))
        return await super()._open()


def egw_chargers(api_port: int, token: str, *argv: str, stdin: str = "") -> tuple[int, str]:
    """Run `egw chargers ARGV` in this process (the parser the `egw` command uses); (exit code, output)."""
    import sys

    args = build_parser().parse_args(["chargers", *argv, "--url", f"http://127.0.0.1:{api_port}", "--token", token])
    out, saved = io.StringIO(), sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return charger_cli.run(args, out=out), out.getvalue()
    finally:
        sys.stdin = saved


def status_of(ocpp_port: int, charge_point_id: str, key: str) -> int:
    return asyncio.run(handshake_status(f"ws://127.0.0.1:{ocpp_port}/ocpp/{charge_point_id}", {"Authorization": basic_auth_header(charge_point_id, key)}))


def test_an_operator_provisions_a_charger_and_its_idtags_with_egw_chargers(ocpp_gateway):  # noqa: F811
    api_port, ocpp_port, token = ocpp_gateway
    code, out = egw_chargers(api_port, token, "add", "CP-R", "--key-stdin", stdin=KEY + "\n")
    assert code == 0 and key_fingerprint(KEY) in out and KEY not in out
    assert egw_chargers(api_port, token, "add", "CP-R", "--key-stdin", stdin=KEY + "\n")[0] == 1  # it exists
    assert status_of(ocpp_port, "CP-R", "not-the-key-000000") == 401

    charge_point = KeyedChargePoint(f"ws://127.0.0.1:{ocpp_port}/ocpp/CP-R", KEY)
    try:
        cp = charge_point.cp
        assert egw_chargers(api_port, token, "tag-set", "CARD-1", "--expiry", "2099-01-01T00:00:00Z")[0] == 0
        assert egw_chargers(api_port, token, "tag-set", "CARD-2", "--parent", "CARD-1")[0] == 0
        assert egw_chargers(api_port, token, "tag-block", "CARD-2")[0] == 0
        code, out = egw_chargers(api_port, token, "tags")
        assert code == 0 and "list version 3" in out and "CARD-2" in out and "Blocked" in out

        def synced():  # 503 while the charger actor is still starting
            code, out = egw_chargers(api_port, token, "sync", "CP-R", "--json")
            return out if code == 0 else None

        answer = wait_until(synced, timeout=20, interval=0.3, what="the local list accepted by the charger")
        assert '"status": "Accepted"' in answer and '"update_type": "Full"' in answer
        assert cp.local_list_version == 3 and set(cp.local_list) == {"CARD-1", "CARD-2"}
        assert cp.local_list["CARD-2"]["parent_id_tag"] == "CARD-1"  # the tag-block kept its parent
        assert charge_point.run(cp.authorize("CARD-2")).id_tag_info["status"] == "Blocked"
        assert charge_point.run(cp.authorize("CARD-1")).id_tag_info["status"] == "Accepted"
        assert egw_chargers(api_port, token, "tag-remove", "CARD-1")[0] == 0
        code, out = egw_chargers(api_port, token, "sync", "CP-R")
        assert code == 0 and "Differential update, 1 idTag(s)" in out and "charger at version 4" in out
        assert set(cp.local_list) == {"CARD-2"}

        rotated = "rotated-key-abcdef012"
        assert egw_chargers(api_port, token, "set-key", "CP-R", "--key-stdin", stdin=rotated + "\n")[0] == 0
        assert status_of(ocpp_port, "CP-R", KEY) == 401
        assert status_of(ocpp_port, "CP-R", rotated) == 101
        assert egw_chargers(api_port, token, "block", "CP-R")[0] == 0
        assert status_of(ocpp_port, "CP-R", rotated) in (401, 403)
        code, out = egw_chargers(api_port, token, "list")
        assert code == 0 and "CP-R" in out and "blocked" in out
        assert egw_chargers(api_port, token, "remove", "CP-R")[0] == 0
        assert "CP-R" not in egw_chargers(api_port, token, "list")[1]
        assert egw_chargers(api_port, token, "block", "CP-R")[0] == 1  # gone
    finally:
        charge_point.close()


def test_fingerprint_is_computed_without_a_gateway():
    args = build_parser().parse_args(["chargers", "fingerprint", "--key-stdin"])
    import sys

    out, saved = io.StringIO(), sys.stdin
    sys.stdin = io.StringIO(KEY + "\n")
    try:
        assert charger_cli.run(args, out=out) == 0
    finally:
        sys.stdin = saved
    assert out.getvalue().strip() == key_fingerprint(KEY) and len(key_fingerprint(KEY)) == 16


def test_blocking_a_connected_charger_closes_its_connection_and_it_cannot_come_back(ocpp_gateway):  # noqa: F811
    """Blocking is not only for the next handshake: the open session ends at once (1008)."""
    api_port, ocpp_port, token = ocpp_gateway
    assert egw_chargers(api_port, token, "add", "CP-B", "--key-stdin", stdin=KEY + "\n")[0] == 0
    charge_point = KeyedChargePoint(f"ws://127.0.0.1:{ocpp_port}/ocpp/CP-B", KEY)
    try:
        ws = charge_point.cp._connection.ws
        assert not ws.closed

        def blocked():  # 503 while the charger actor is still starting
            code, out = egw_chargers(api_port, token, "block", "CP-B", "--json")
            return out if code == 0 else None

        answer = wait_until(blocked, timeout=20, interval=0.3, what="the charger blocked")
        assert '"disconnected": true' in answer
        wait_until(lambda: ws.closed, timeout=10, what="the blocked charger's websocket closed by the gateway")
        assert ws.close_code == 1008
        assert status_of(ocpp_port, "CP-B", KEY) == 403
    finally:
        charge_point.close()
