"""The setup code: what a phone must present before BLE may change the gateway.

Anyone in radio range can connect to the GATT service, and the characteristics need
no pairing, so the radio link itself proves nothing about who is on the other end.
The installer proves it with a code only they hold: generated once per gateway
(`ble-setup-code` in the data dir, mode 0600, written atomically so a power cut never
leaves half a code), printed by `egw ble code` for the box's label. Every write
request over BLE carries it in a `Setup-Code` header.

The code is 12 characters from a 32-letter alphabet without look-alikes (no 0/O,
1/I): 60 bits, shown as `XXXX-XXXX-XXXX`. Guessing is slowed further by
`SetupCodeGuard`: after a few wrong codes every attempt is refused for a growing
lockout, whatever code it carries. The guard keeps two numbers, however many
phones guess: BLE addresses are random and free to change, so counting per phone
would only let an attacker reset its own counter.

The code is a secret like the API token: never logged, never in a response.
"""

from __future__ import annotations

import hmac
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storage.files import load_or_create_secret

SETUP_CODE_FILE = "ble-setup-code"
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 32 symbols: 5 bits each
LENGTH = 12
GROUP = 4


def setup_code_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / SETUP_CODE_FILE


def normalise(code: str) -> str:
    """What the installer typed, as stored: upper case, without the dashes and spaces of the label."""
    return "".join(ch for ch in code.upper() if ch != "-" and not ch.isspace())


def format_code(raw: str) -> str:
    """`K7QF9XMA2BCD` -> `K7QF-9XMA-2BCD` (easier to read off a label and to type)."""
    return "-".join(raw[i : i + GROUP] for i in range(0, len(raw), GROUP))


def _valid(raw: str) -> bool:
    return len(raw) == LENGTH and all(ch in ALPHABET for ch in raw)


def generate_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def read_setup_code(path: str | os.PathLike[str]) -> str | None:
    """The code stored at `path` (normalised), or None when missing or unusable."""
    try:
        raw = normalise(Path(path).read_text())
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return raw if _valid(raw) else None


def load_or_create_setup_code(data_dir: str | os.PathLike[str]) -> str:
    """The gateway's setup code (normalised), created on first use.

    Created with a link so that the BLE actor and `egw ble code` running at the same
    moment agree on one code; only an unusable file (empty after a power cut under an
    older version) is replaced, never a valid code that may already be on a label.
    """
    return load_or_create_secret(setup_code_path(data_dir), read_setup_code, generate_code, format_code)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one presented code: ok, or the reason and HTTP status to refuse it with."""

    ok: bool
    status: int = 200
    detail: str = ""


class SetupCodeGuard:
    """Checks presented codes in constant time and locks guessing out.

    The n-th wrong code in a row, from n = `free_failures` on, starts a lockout of
    `lockout_s * 2**(n - free_failures)` seconds (capped at `max_lockout_s`) during
    which every attempt is refused with 429 and not even checked.
    A right code resets the count. Time comes from an injected monotonic clock.
    """

    def __init__(
        self,
        code: str,
        clock: Callable[[], float] = time.monotonic,
        free_failures: int = 5,
        lockout_s: float = 30.0,
        max_lockout_s: float = 900.0,
    ) -> None:
        self._code = normalise(code).encode()
        self.clock = clock
        self.free_failures = free_failures
        self.lockout_s = lockout_s
        self.max_lockout_s = max_lockout_s
        self.failures = 0
        self._locked_until = float("-inf")

    def locked_for(self) -> float:
        """Seconds until a code is checked again; 0 when not locked."""
        return max(0.0, self._locked_until - self.clock())

    def check(self, presented: str | None) -> Verdict:
        wait = self.locked_for()
        if wait > 0:
            return Verdict(False, 429, f"too many wrong setup codes: try again in {math.ceil(wait)} s")
        if not presented:
            return Verdict(False, 401, "send Setup-Code (on the gateway's label)")
        if hmac.compare_digest(normalise(presented).encode("utf-8", "replace"), self._code):
            self.failures = 0
            return Verdict(True)
        self.failures += 1
        if self.failures >= self.free_failures:
            lockout = min(self.max_lockout_s, self.lockout_s * 2 ** (self.failures - self.free_failures))
            self._locked_until = self.clock() + lockout
            return Verdict(False, 401, f"wrong setup code; locked for {int(lockout)} s")
        return Verdict(False, 401, "wrong setup code")
