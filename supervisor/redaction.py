"""Keeping secrets out of everything the gateway shows or logs: the one place for it.

* by key: a setting or field whose name says secret (password, psk, token, key, ...) or
  that its owner lists (`secret_keys`) shows "***" when set (`redact`, `is_secret_key`);
* by shape: an upload URL may carry a password (`https://user:pass@host/`) or a key in its query
(`?api_key=...`). Wherever the gateway shows or logs a URL, the password and every query
value are replaced by "***"; the scheme, host, port, path and the query's names stay, so
an installer can still see where data goes and which parameters are set.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Collection
from typing import Any

REDACTED = "***"

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def redact_url(url: str) -> str:
    """`url` with its password and query values replaced.

    A string that does not parse as a URL (`http://[x`) still loses whatever sits where
    credentials and a query would be: everything between "://" and an "@", and after a "?".
    """
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
        query = "&".join(f"{name}={REDACTED}" if sep else name for name, sep, _ in (p.partition("=") for p in parts.query.split("&") if p)) if parts.query else ""
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        masked = re.sub(r"(://)[^/]*@", rf"\1{REDACTED}@", url)
        return re.sub(r"\?.*$", f"?{REDACTED}", masked, flags=re.DOTALL)


def redact_urls_in(text: str) -> str:
    """Every URL inside free text (an error message, a log field) redacted."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


_SECRET_KEY = re.compile(
    r"(pass(word|phrase|wd)?|secret|token|private|psk|credential|cookie|authori[sz]ation|auth_?key|api_?key|signing_?key|^key$|_key$)",
    re.IGNORECASE,
)
_NOT_SECRET = re.compile(r"(public_?key|key_?id|key_?path|keyfile_?path)$", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """Whether a field named `key` holds a secret (`psk`, `auth_key`, `api_token`; not `public_key`)."""
    return bool(_SECRET_KEY.search(key)) and not _NOT_SECRET.search(key)


def redact(value: Any, secret_keys: Collection[str] = ()) -> Any:
    """A deep, JSON-able copy of `value` with every secret replaced by "***".

    Keys that look like secrets (`is_secret_key`) or are named in `secret_keys` are masked
    when set; URLs inside strings lose their passwords and query values (`redact_urls_in`).
    """
    if isinstance(value, dict):
        return {str(k): (REDACTED if (str(k) in secret_keys or is_secret_key(str(k))) and v not in (None, "") else redact(v, secret_keys))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secret_keys) for v in value]
    if isinstance(value, str):
        return redact_urls_in(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)
