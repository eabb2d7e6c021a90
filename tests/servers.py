"""Finding the real servers and programs some tests drive (mosquitto, PostgreSQL, Chromium).

Locally a missing program skips the test with the reason and the package to install. In CI,
`.ci/run` installs them and sets EGW_CI_REQUIRE_SERVERS=1, which turns that skip into a failure:
a CI run can never pass by quietly not running these tests.
"""

from __future__ import annotations

import glob
import os
import shutil

import pytest

REQUIRE_ENV = "EGW_CI_REQUIRE_SERVERS"


def need_program(name: str, package: str, *, also_look_in: str = "") -> str:
    """Return the path of program `name`, or skip (fail in CI) naming the Debian `package`.

    `also_look_in` is a glob of directories outside PATH where the package puts it
    (PostgreSQL's server programs live in /usr/lib/postgresql/<version>/bin).
    """
    path = shutil.which(name)
    if path is None and also_look_in:
        found = sorted(glob.glob(os.path.join(also_look_in, name)))
        path = found[-1] if found else None
    if path is not None:
        return path
    reason = f"{name} is not installed (Debian package {package}; .ci/run installs it)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 says this run must not skip it")
    pytest.skip(reason)
