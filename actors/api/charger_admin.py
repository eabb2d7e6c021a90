"""Charger administration over REST: provisioning, authorization keys, local idTag lists.

Its rows join the route table (`actors.api.routes.ROUTES`) and its handlers the app's
(`actors.api.app.build_app`), so the token check, validation, OpenAPI document and tests
cover them like every other endpoint.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from actors.api.route_spec import Route

ROUTES: tuple[Route, ...] = ()


def handlers() -> dict[str, Callable[..., Awaitable[Any]]]:
    """Handlers by operation name, merged into the app's."""
    return {}
