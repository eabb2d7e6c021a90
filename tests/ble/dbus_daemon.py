"""A private D-Bus daemon for tests: nothing on the host's buses is touched.

The configuration lets every connection own any name and talk to anyone, which is
what a fake `org.bluez` and the gateway's GATT application need on one bus.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


class PrivateDbusDaemon:
    """Starts `dbus-daemon` on a socket in a temporary directory; `address` is its bus address."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="egw-dbus-")
        socket = Path(self._dir.name) / "bus"
        config = Path(self._dir.name) / "bus.conf"
        config.write_text(_CONFIG.format(socket=socket))
        self.process = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
        )
        line = self.process.stdout.readline().strip() if self.process.stdout else ""
        if not line:
            err = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"dbus-daemon did not start: {err}")
        self.address = line

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._dir.cleanup()
