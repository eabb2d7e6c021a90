"""Checking the bearer token that guards the API's write endpoints.

The token itself lives in the data dir (`storage.api_token`: created on first start,
0600, `egw token` prints it); this module compares what a request carries against it.
"""

from __future__ import annotations

import hmac


def token_matches(expected: str, authorization: str | None) -> bool:
    """True when an `Authorization` header carries exactly `Bearer <expected>`.

    Compared in constant time so response timing reveals nothing about the token.
    """
    if not authorization:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode("utf-8", "replace"), expected.encode())
