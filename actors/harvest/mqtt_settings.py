"""Checks for the settings of an `[[uploads]] kind = "mqtt"` endpoint, free of the MQTT client.

Kept apart from `actors.harvest.mqtt` so that reading and checking the configuration (the
launcher, `egw config --check`, the REST settings) never imports paho: only the transport
actor of an MQTT endpoint does.

    url           mqtt://[user[:password]@]host[:port]   (1883; plain TCP)
                  mqtts://[user[:password]@]host[:port]  (8883; TLS, verified against tls_ca
                                                          or the system's CAs)
    topic_prefix  "egw": batches go to <prefix>/<gateway>/batches, acknowledgements come back on
                  <prefix>/<gateway>/acks, presence is retained on <prefix>/<gateway>/presence
    mqtt_version  "5" or "3.1.1"
    tls_ca, tls_cert, tls_key   PEM files: the broker's CA, and the gateway's client certificate
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

MQTT_VERSIONS = ("5", "3.1.1")
_TOPIC_FORBIDDEN = ("+", "#", "\0")


def mqtt_url_problem(url: Any, shown: str | None = None) -> str | None:
    """What is wrong with an MQTT broker URL, in words; None when it is usable (`shown`: see `url_problem`)."""
    got = f", got {shown}" if shown else ""
    if not isinstance(url, str) or not url:
        return f"expected an mqtt:// or mqtts:// URL{got}"
    if url != url.strip() or any(c.isspace() for c in url):
        return f"must not contain spaces{got}"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"cannot be parsed ({exc}){got}"
    if parts.scheme not in ("mqtt", "mqtts"):
        scheme = f"{parts.scheme!r}" if parts.scheme else "none"
        return f"scheme must be mqtt or mqtts for kind 'mqtt', got {scheme}{' in ' + shown if shown else ''} (expected mqtt(s)://[user:password@]host[:port])"
    if not parts.hostname:
        return f"missing host{got} (expected {parts.scheme}://host[:port])"
    if port == 0:
        return f"bad port 0 (expected 1-65535){got}"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"must be just the broker, no path, query or #fragment (the topics come from topic_prefix){got}"
    return None


def topic_segment_problem(value: str, what: str) -> str | None:
    """Why `value` cannot be used inside an MQTT topic (wildcards, NUL, empty levels); None when it can."""
    if not value:
        return f"{what} must not be empty"
    if any(c in value for c in _TOPIC_FORBIDDEN):
        return f"{what} {value!r} must not contain the MQTT wildcards + or # (or NUL)"
    if value.startswith("/") or value.endswith("/") or "//" in value or value.startswith("$"):
        return f"{what} {value!r} must not start with $ or /, end with /, or hold an empty level"
    return None


def gateway_topic_problem(gateway_id: str) -> str | None:
    """Why a gateway id cannot be the gateway's level in its MQTT topics; None when it can."""
    problem = topic_segment_problem(gateway_id, "gateway id") or (f"gateway id {gateway_id!r} must not contain '/'" if "/" in gateway_id else None)
    return f"{problem} (it is a level of the MQTT topics)" if problem else None


def mqtt_settings_problems(settings: Any) -> list[str]:
    """Problems of an MQTT endpoint's own settings (a TransportConfig with kind 'mqtt'), each in words."""
    problems = []
    url_issue = mqtt_url_problem(settings.url)
    if url_issue:
        problems.append(f"url: {url_issue}")
    issue = topic_segment_problem(settings.topic_prefix, "topic_prefix")
    if issue:
        problems.append(issue)
    if settings.mqtt_version not in MQTT_VERSIONS:
        problems.append(f"mqtt_version must be one of {', '.join(MQTT_VERSIONS)}, got {settings.mqtt_version!r}")
    tls = isinstance(settings.url, str) and settings.url.startswith("mqtts://")
    for key in ("tls_ca", "tls_cert", "tls_key"):
        path = getattr(settings, key)
        if path and not tls:
            problems.append(f"{key} is set but the url is not mqtts:// (TLS is off)")
        elif path and not os.path.isfile(path):
            problems.append(f"{key}: no such file {path!r}")
    if settings.tls_key and not settings.tls_cert:
        problems.append("tls_key needs tls_cert (the client certificate it belongs to)")
    return problems
