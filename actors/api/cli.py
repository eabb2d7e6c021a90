"""`egw status`: the state of a running gateway, from its REST API, as readable tables.

    egw status                 health, actor tree, devices, outbox, chargers and loadpoints (when configured)
    egw status --json          the same data as one JSON object, for scripts
    egw status --url http://gateway.local:8080

The gateway is found the way every `egw` command finds its settings (`--config`,
`EGW_*` variables, flags): its `api_port` on 127.0.0.1 unless `--url` says otherwise.
Exit codes: 0 healthy, 1 degraded, 2 not reachable or bad configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

SECTIONS = (("health", "/api/health"), ("actors", "/api/actors"), ("devices", "/api/devices"), ("outbox", "/api/outbox"), ("chargers", "/api/chargers"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (optional)")
    parser.add_argument("--data-dir", help="data directory (env EGW_DATA_DIR)")
    parser.add_argument("--api-port", type=int, help="REST API port (env EGW_API_PORT)")
    parser.add_argument("--url", help="base URL of the gateway's API (default http://127.0.0.1:<api_port>)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each answer (default 5)")


def base_url(args: argparse.Namespace) -> str:
    """The API's base URL from --url, or from the configuration's api_port."""
    if getattr(args, "url", None):
        return args.url.rstrip("/")
    from supervisor.config import load_config

    config = load_config(getattr(args, "config", None), overrides={"api_port": getattr(args, "api_port", None), "data_dir": getattr(args, "data_dir", None)})
    return f"http://127.0.0.1:{config.values['api_port']}"


def fetch(url: str, timeout: float) -> Any:
    """GET a JSON document; a 503 body is returned as it is (it explains what is restarting)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return {"error": json.loads(exc.read())}
        except ValueError:
            return {"error": {"error": "http_error", "message": f"HTTP {exc.code}"}}


def collect(base: str, timeout: float) -> dict[str, Any]:
    data = {name: fetch(base + path, timeout) for name, path in SECTIONS}
    loadpoints = fetch(base + "/api/loadpoints", timeout)  # only a site with [[loadpoints]] gets the section
    if loadpoints.get("loadpoints") or "error" in loadpoints and (loadpoints["error"] or {}).get("error") != "not_found":
        data["loadpoints"] = loadpoints
    return data


# ------------------------------------------------------------------ tables
def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table, columns as wide as their widest cell."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"
    text = str(value)
    return text if len(text) <= 48 else text[:45] + "..."


def _ago(since: Any) -> str | None:
    if isinstance(since, (int, float)) and not isinstance(since, bool):
        seconds = max(0, int(datetime.now(UTC).timestamp() - since))
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    return None


def _tree_rows(records: list[dict[str, Any]], depth: int = 0) -> Iterable[list[Any]]:
    for record in records:
        yield ["  " * depth + str(record.get("name")), record.get("kind"), record.get("pid"), record.get("state"), record.get("restarts"), _ago(record.get("since")), record.get("last_error")]
        yield from _tree_rows(record.get("children") or [], depth + 1)


HEADLINE_VALUES = ("ac_power_w", "power_w", "meter_power_w", "pv_power_w", "energy_total_wh", "energy_import_wh", "energy_export_wh")
"""Quantities an installer looks at first; the table shows up to three, these before the rest."""


def _value_summary(values: dict[str, Any]) -> str:
    ordered = [k for k in HEADLINE_VALUES if k in values] + [k for k in values if k not in HEADLINE_VALUES]
    return ", ".join([f"{k}={_cell(values[k])}" for k in ordered if values[k] is not None][:3])


def render(data: dict[str, Any]) -> str:
    out: list[str] = []
    health = data["health"]
    if "error" in health:
        out.append(f"health: unavailable ({health['error'].get('message')})")
    else:
        out.append(f"egw {health['version']}  status: {health['status']}  uptime: {int(health['uptime_s'])} s  boot: {health.get('boot_id') or '-'}")
        out += [f"  ! {reason}" for reason in health.get("reasons", [])]
    sections = (
        ("Actors", "actors", ["name", "kind", "pid", "state", "restarts", "up", "last error"], lambda d: _tree_rows(d["actors"])),
        ("Devices", "devices", ["id", "profile", "state", "last poll", "polls", "errors", "gaps", "values"],
         lambda d: ([x["id"], x.get("profile"), x.get("state"), x.get("last_poll"), x.get("polls"), x.get("errors"), x.get("gaps"), _value_summary(x.get("values") or {})] for x in d["devices"])),
        ("Outbox", "outbox", ["pending", "acked", "bytes", "oldest pending", "gaps", "budget used"],
         lambda d: [[d.get("pending_items"), d.get("acknowledged_items"), d.get("bytes"), d.get("oldest_pending"), d.get("gaps"),
                     None if d.get("budget_used") is None else f"{100 * d['budget_used']:.1f} %"]]),
        ("Transports", "outbox", ["name", "state", "last success", "backoff s", "dead letters", "last error"],
         lambda d: ([t["name"], t.get("state"), t.get("last_success"), t.get("backoff_s"), t.get("dead_letters"), t.get("last_error")] for t in d.get("transports", []))),
        ("Chargers", "chargers", ["id", "connected", "vendor", "model", "connectors", "last seen"],
         lambda d: ([c["id"], c.get("connected"), c.get("vendor"), c.get("model"), " ".join(f"{k['id']}:{k['status']}" for k in c.get("connectors", [])), c.get("last_seen")] for c in d["chargers"])),
    )
    if "loadpoints" in data:
        sections += (("Loadpoints", "loadpoints", ["id", "charger", "mode", "limit A", "phases", "surplus W", "accepted", "reason"],
                      lambda d: ([lp["id"], f"{lp['charger']}/{lp['connector']}", lp.get("mode"), (lp.get("decision") or {}).get("limit_a"),
                                  (lp.get("decision") or {}).get("phases"), (lp.get("decision") or {}).get("surplus_w"), lp.get("accepted"),
                                  (lp.get("decision") or {}).get("reason") or lp.get("state")] for lp in d["loadpoints"])),)
    for title, key, headers, rows in sections:
        out.append("")
        out.append(title)
        section = data[key]
        if "error" in section and isinstance(section["error"], dict):
            out.append(f"  unavailable: {section['error'].get('message')}")
            continue
        if key == "outbox" and title == "Outbox" and not section.get("available", True):
            out.append("  no outbox yet (nothing harvested)")
            continue
        body = table(headers, list(rows(section)))
        out.append(body if body.count("\n") else body + "\n  (none)")
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    try:
        base = base_url(args)
    except ValueError as exc:  # ConfigError is a ValueError
        print(f"egw status: configuration error: {exc}", file=stderr)
        return 2
    try:
        data = collect(base, args.timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"egw status: no gateway API at {base} ({reason}); is the gateway running? (--url / --api-port)", file=stderr)
        return 2
    if args.json:
        json.dump(data, stdout, indent=2)
        stdout.write("\n")
    else:
        stdout.write(render(data))
    health = data["health"]
    return 0 if health.get("status") == "ok" else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="egw status", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))
