"""One JSON request to the gateway's REST API, for the command-line tools (`egw chargers`,
`egw outbox`, `egw ble`): errors come back as (status, body) like answers, so each tool
prints the API's own message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def api_request(url: str, timeout: float, *, method: str = "GET", body: dict | None = None, token: str | None = None) -> tuple[int, Any]:
    """(status, decoded body), HTTP errors included; a body that is not JSON reads as {"error": "HTTP <status>"}."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {"error": f"HTTP {exc.code}"}
