"""The README's folder table is the map of the tree: every package is on it, nothing else is."""

from __future__ import annotations

import re

from tests.architecture.test_layers import ROOT

FOLDER_ROW = re.compile(r"^\| `([a-z_/]+)/` \|", re.MULTILINE)
TOP_LEVEL = ("bench", "docs", "fleet", "simulators", "storage", "supervisor", "tests")


def folders_in_readme() -> set[str]:
    return set(FOLDER_ROW.findall((ROOT / "README.md").read_text()))


def folders_in_tree() -> set[str]:
    families = {f"actors/{p.parent.name}" for p in (ROOT / "actors").glob("*/__init__.py")}
    return families | {name for name in TOP_LEVEL if (ROOT / name).is_dir()}


def test_the_readme_layout_lists_every_actor_family_and_top_level_folder():
    assert folders_in_readme() == folders_in_tree()
