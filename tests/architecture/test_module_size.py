"""Small modules with one job: one over ~400 lines says in its docstring why it is one module.

The reason is a paragraph of the module docstring starting "Why one module:", so a reader
opening a long file learns first why it was not split, and a file that grows past the
limit without one fails here.
"""

from __future__ import annotations

import ast

from tests.architecture.test_layers import ROOT

LIMIT = 400
PACKAGES = ("actors", "bench", "fleet", "simulators", "storage", "supervisor")


def long_modules_without_a_reason() -> list[str]:
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            lines = text.count("\n")
            if lines <= LIMIT:
                continue
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if "Why one module:" not in docstring:
                missing.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    return missing


def test_every_module_over_the_limit_says_why_it_is_one_module():
    assert long_modules_without_a_reason() == []
