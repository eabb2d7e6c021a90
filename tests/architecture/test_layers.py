"""The layers point one way: the generic parts import nothing of the product.

`storage/` keeps the gateway's data and `supervisor/` runs any tree of actors; neither
may import `actors/`. The product's parts reach them, never the other way round. The
tree's table of contents (`supervisor.tree.PARTS`) and the CLI's command table name
parts as strings, which is how a composition root may know them without importing them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement in `path` names, at any depth (functions included)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def leaks(package: str, forbidden: str) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {module}"
            for path in sorted((ROOT / package).rglob("*.py"))
            for line, module in imported_modules(path)
            if module == forbidden or module.startswith(forbidden + ".")]


@pytest.mark.parametrize("package", ["storage", "supervisor"])
def test_the_generic_layers_import_nothing_from_the_actor_families(package):
    assert leaks(package, "actors") == []


def test_the_check_finds_an_import_hidden_in_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from actors.live.publisher import LivePublisher\n    import actors.api\n")
    assert imported_modules(module) == [(2, "actors.live.publisher"), (3, "actors.api")]


def test_the_live_feed_imports_no_other_family():
    """Sources publish plain LiveEvents through actors.live.publisher; the feed knows none of them."""
    own = [leak for family in ("api", "ble", "device", "energy", "harvest", "ocpp", "web", "wifi") for leak in leaks("actors/live", f"actors.{family}")]
    assert own == []


def test_the_ble_actor_reaches_wifi_and_the_token_file_without_the_api():
    ble_actor = [f"{line}: {module}" for line, module in imported_modules(ROOT / "actors/ble/actor.py") if module.startswith("actors.api")]
    assert ble_actor == []
    assert leaks("actors/wifi", "actors.ble") == [] and leaks("actors/wifi", "actors.api") == []
