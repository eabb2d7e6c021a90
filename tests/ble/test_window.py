"""The provisioning window's persisted state: restored at every start, opened only by a trigger."""

from __future__ import annotations

import json
import stat

from actors.ble.window import ProvisioningWindow, WindowStore, window_path


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def make(tmp_path, clock, boot="boot-1"):
    return ProvisioningWindow(15, clock, WindowStore(window_path(tmp_path), lambda: boot))


def test_first_start_is_known_and_the_window_starts_closed(tmp_path):
    window = make(tmp_path, Clock())
    assert window.first_start and not window.is_open()
    window.close()  # the first start's decision for a provisioned gateway, recorded
    again = make(tmp_path, Clock())
    assert not again.first_start and not again.is_open()
    assert stat.S_IMODE(window_path(tmp_path).stat().st_mode) == 0o600


def test_a_restart_resumes_an_open_window_until_its_deadline(tmp_path):
    clock = Clock()
    make(tmp_path, clock).open()
    clock.now += 300
    restarted = make(tmp_path, clock)
    assert not restarted.first_start and restarted.is_open() and restarted.remaining() == 600  # not 900 again
    clock.now += 600
    assert not make(tmp_path, clock).is_open()


def test_a_restart_never_opens_a_closed_window(tmp_path):
    clock = Clock()
    window = make(tmp_path, clock)
    window.open()
    window.close()
    assert not make(tmp_path, clock).is_open()


def test_another_boot_or_a_broken_file_reads_as_closed(tmp_path):
    clock = Clock()
    make(tmp_path, clock).open()
    assert not make(tmp_path, clock, boot="boot-2").is_open()  # after a reboot the monotonic deadline means nothing
    assert not make(tmp_path, clock, boot=None).is_open()
    for garbage in ("", "{", "[]", json.dumps({"boot_id": "boot-1", "open_until": "soon"}), json.dumps({"boot_id": "boot-1", "open_until": True})):
        window_path(tmp_path).write_text(garbage)
        window = make(tmp_path, clock)
        assert not window.first_start and not window.is_open(), garbage
