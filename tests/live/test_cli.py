"""`egw watch` as a real process against a live server on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from actors.live.messages import LiveEvent
from tests.live.conftest import API_TOKEN, wait_for

ROOT = Path(__file__).resolve().parents[2]


async def watch(*args: str) -> asyncio.subprocess.Process:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EGW_")}, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "actors.live.cli", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_watch_prints_events_and_resumes_after_the_connection_drops(live, tmp_path):
    (tmp_path / "api-token").write_text(API_TOKEN + "\n")
    for n in range(2):
        live.hub.publish(LiveEvent("transaction/3", "meter_values", {"energy_wh": n}))
    process = await watch("transaction/3", "--url", live.url, "--data-dir", str(tmp_path), "--resume-from", "1", "--count", "5", "--json")
    try:
        await wait_for(lambda: live.hub.subscribers, timeout=10, what="egw watch connected")
        live.hub.publish(LiveEvent("transaction/3", "meter_values", {"energy_wh": 2}))
        await wait_for(lambda: all(not s.queue for s in live.hub.subscribers), what="event sent")
        live.hub.close_all("test: connection dropped")  # the stream ends; watch reconnects with Last-Event-ID
        await wait_for(lambda: not live.hub.subscribers, what="old stream gone")
        for n in range(3, 5):  # published while watch is away
            live.hub.publish(LiveEvent("transaction/3", "meter_values", {"energy_wh": n}))
        out, err = await asyncio.wait_for(process.communicate(), 15)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0, err.decode()
    events = [json.loads(line) for line in out.decode().splitlines() if json.loads(line)["type"] == "event"]
    assert [(e["seq"], e["data"]["energy_wh"]) for e in events] == [(s, s - 1) for s in range(1, 6)]  # each once, none missed


async def test_watch_prints_readable_lines(live):
    process = await watch("device/inv1", "--url", live.url, "--token", API_TOKEN, "--count", "1")
    try:
        await wait_for(lambda: live.hub.subscribers, timeout=10, what="egw watch connected")
        live.hub.publish(LiveEvent("device/inv1", "reading", {"values": {"ac_power_w": 1234.5, "energy_total_wh": None}}, 0.0))
        out, _ = await asyncio.wait_for(process.communicate(), 15)
    finally:
        if process.returncode is None:
            process.kill()
    lines = out.decode().splitlines()
    assert lines[0].startswith("-- watching device/inv1")
    assert lines[1] == "00:00:00.000  device/inv1 #1  reading  ac_power_w=1234.5"


async def test_watch_without_the_right_token_says_why_and_exits_2(live):
    process = await watch("gateway", "--url", live.url, "--token", "not-the-token")
    out, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 2 and b"refused (401)" in err
    process = await watch("nonsense", "--url", live.url, "--token", API_TOKEN)
    _, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 2 and b"unknown topic" in err
