"""Dependencies: what the code imports is what pyproject.toml declares, and one D-Bus library.

bless (the GATT server) is built on dbus-next, and the BLE actor talks to bless's bus, so
dbus-next is the gateway's D-Bus library: the NetworkManager client and the test fakes use it
too. dbus-fast, which bleak (under bless) brings along on Linux, is imported nowhere.

Every third-party module that the product packages import must come from a distribution named
in `[project].dependencies`: an import that works only because some dependency happens to pull
its distribution in breaks the day that dependency changes its own.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from tests.architecture.test_layers import ROOT, imported_modules, leaks

PRODUCT = ("actors", "supervisor", "storage", "simulators", "fleet")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"unreadable requirement {requirement!r}"
    return normalize(match.group(1))


def declared_distributions(project: dict) -> set[str]:
    return {requirement_name(requirement) for requirement in project["project"]["dependencies"]}


def own_packages(project: dict) -> set[str]:
    """The top-level packages the project ships (`[tool.setuptools.packages.find] include`)."""
    return {pattern.rstrip("*").rstrip(".") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}


def where(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def undeclared_imports(paths: Iterable[Path], declared: set[str], own: set[str], distributions: Mapping[str, list[str]]) -> list[str]:
    """Imports of a module that is neither standard library, nor the project's, nor from a declared distribution."""
    problems = []
    for path in paths:
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in own:
                continue
            provided_by = sorted({normalize(name) for name in distributions.get(top, [])})
            if not declared.intersection(provided_by):
                source = ", ".join(provided_by) if provided_by else "no installed distribution"
                problems.append(f"{where(path)}:{line} imports {module} ({source}), which is not a declared dependency")
    return problems


@pytest.fixture(scope="module")
def distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


@pytest.mark.parametrize("package", PRODUCT + ("tests", "bench"))
def test_nothing_imports_dbus_fast(package):
    assert leaks(package, "dbus_fast") == []


def test_dbus_next_is_the_declared_dbus_library():
    declared = declared_distributions(pyproject())
    assert "dbus-next" in declared and "dbus-fast" not in declared


def test_every_third_party_import_of_the_product_is_a_declared_dependency(distributions):
    project = pyproject()
    paths = [path for package in PRODUCT for path in sorted((ROOT / package).rglob("*.py"))]
    assert paths, "no product modules found"
    assert undeclared_imports(paths, declared_distributions(project), own_packages(project), distributions) == []


def test_the_project_ships_the_product_packages():
    assert own_packages(pyproject()) == set(PRODUCT)


def test_the_check_finds_an_undeclared_import(tmp_path, distributions):
    module = tmp_path / "m.py"
    module.write_text("import json\nimport actors.api\nimport aiohttp.web\n\n\ndef f():\n    import yaml\n    from surely_not_installed_anywhere import x\n")
    problems = undeclared_imports([module], {"aiohttp"}, {"actors"}, distributions)
    assert problems == [
        f"{module}:7 imports yaml (pyyaml), which is not a declared dependency",
        f"{module}:8 imports surely_not_installed_anywhere (no installed distribution), which is not a declared dependency",
    ]


def test_requirement_names_are_read_as_pip_compares_them():
    assert requirement_name("pymodbus[serial]>=3.16,<3.17") == "pymodbus"
    assert requirement_name("prometheus_client>=0.20") == requirement_name("Prometheus.Client") == "prometheus-client"
