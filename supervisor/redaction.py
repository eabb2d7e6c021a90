"""Showing a URL without its secrets: for logs, status reads and `/api/config`.

An upload URL may carry a password (`https://user:pass@host/`) or a key in its query
(`?api_key=...`). Wherever the gateway shows or logs a URL, the password and every query
value are replaced by "***"; the scheme, host, port, path and the query's names stay, so
an installer can still see where data goes and which parameters are set.
"""

from __future__ import annotations

import re
import urllib.parse

REDACTED = "***"

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def redact_url(url: str) -> str:
    """`url` with its password and query values replaced; a string that does not parse as a URL is masked whole."""
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
        return REDACTED


def redact_urls_in(text: str) -> str:
    """Every URL inside free text (an error message, a log field) redacted."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)
