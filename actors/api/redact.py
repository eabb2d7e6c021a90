"""Removing secrets from configuration before it leaves the gateway over HTTP.

`/api/config` shows the effective configuration so installers can check what the
gateway runs with; Wi-Fi passphrases, upload credentials, OCPP authorization keys and
tokens must never be part of that answer. Redaction goes by key name (anything that
looks like a secret) and by value shape (credentials and query values in URLs, `supervisor.redaction`).
"""

from __future__ import annotations

import re
from typing import Any

from supervisor.redaction import REDACTED, redact_urls_in


_SECRET_KEY = re.compile(
    r"(pass(word|phrase|wd)?|secret|token|private|psk|credential|cookie|authori[sz]ation|auth_?key|api_?key|signing_?key|^key$|_key$)",
    re.IGNORECASE,
)
_NOT_SECRET = re.compile(r"(public_?key|key_?id|key_?path|keyfile_?path)$", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not _NOT_SECRET.search(key)


def redact(value: Any) -> Any:
    """A deep copy of `value` with every secret replaced by "***"."""
    if isinstance(value, dict):
        return {str(k): (REDACTED if is_secret_key(str(k)) and v not in (None, "") else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_urls_in(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)
