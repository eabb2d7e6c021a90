"""The local web page in a real headless Chromium, against a running demo gateway.

One gateway (`egw demo` on simulated inverter, meter, charger and ingest endpoint, with a
loadpoint on the simulated charger) and one browser serve the whole module. Each test
starts signed out (cookies cleared) and drives the page as a user does: typing the token,
filling the device form, pressing a mode button. A screenshot of each page goes to
test-output/screenshots/ (gitignored; CI keeps test output).
"""

from __future__ import annotations

from http.client import HTTPConnection
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.api.app import build_app
from storage.api_token import read_token, token_path
from actors.web import pages
from supervisor.embedded import free_port
from tests.api.conftest import TOKEN, MemoryBackend, ServedApp
from tests.api.test_actor import http, http_ok
from tests.conftest import EGW, ROOT, _kill_processes_with, wait_until
from tests.servers import REQUIRE_ENV, need_program

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the browser fixture skips (locally) or fails (in CI) with the reason
    webdriver = None

SCREENSHOTS = ROOT / "test-output" / "screenshots"
LIVE_CHANGE_S = 3.0  # the promise: the overview shows a new reading within 3 s of the gateway sending it
WAIT_S = 15.0  # what a page may take to show what it fetched (a loaded CI machine)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-default-apps", "--window-size=412,915")  # a phone's viewport


class Gateway:
    def __init__(self, port: int, token: str, data_dir: Path) -> None:
        self.port, self.token, self.data_dir = port, token, data_dir
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> Any:
        status, _, body = http(self.port, path, token=self.token)
        assert status == 200, (path, status, body)
        return body


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("web-gateway")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EGW_")}
    env.update(PYTHONPATH=str(ROOT), EGW_DATA_DIR=str(tmp / "data"), EGW_ACTOR_PORT=str(free_port()), EGW_API_PORT=str(free_port()),
               EGW_OCPP_PORT=str(free_port()), EGW_BLE_ENABLED="false", EGW_WIFI_BACKEND="none", PYTHONUNBUFFERED="1")
    devices = [{"id": "pv-roof", "profile": "sunspec"}, {"id": "grid-meter", "profile": "eastron_sdm630"}]
    config = tmp / "gateway.toml"
    config.write_text(
        "".join("[[devices]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in {**d, "host": "127.0.0.1", "port": free_port(), "unit_id": 1,
                                                                                 "poll_interval": 0.5}.items()) for d in devices)
        + '[[loadpoints]]\nid = "garage"\ncharger = "DEMO-CP1"\nconnector = 1\ngrid_meter = "grid-meter"\nmode = "now"\n')
    log = (tmp / "gateway.log").open("wb")
    proc = subprocess.Popen([*EGW, "demo", "--config", str(config)], env=env, stdout=log, stderr=subprocess.STDOUT)
    port = int(env["EGW_API_PORT"])
    try:
        wait_until(lambda: proc.poll() is None and http_ok(port, "/api/health"), timeout=30, what="the demo gateway's API")
        wait_until(lambda: all(d["online"] for d in http(port, "/api/devices")[2]["devices"]), timeout=20, what="the simulated devices polled")
        yield Gateway(port, read_token(token_path(env["EGW_DATA_DIR"])), tmp / "data")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        _kill_processes_with(f"EGW_DATA_DIR={env['EGW_DATA_DIR']}".encode())


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if webdriver is None:
        reason = "selenium is not installed (a test extra: pip install -e '.[test]')"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 says this run must not skip the browser tests")
        pytest.skip(reason)
    chromium = need_program("chromium", "chromium")
    chromedriver = need_program("chromedriver", "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.TemporaryDirectory(prefix="egw-chromium-")
    options.add_argument(f"--user-data-dir={profile.name}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        profile.cleanup()


@pytest.fixture
def page(browser: Any, gateway: Gateway) -> Iterator[Any]:
    """The browser on the gateway, signed out, its network log emptied."""
    browser.get(gateway.url + "/assets/egw.css")  # a page of the gateway's origin, so its cookies can be cleared
    browser.delete_all_cookies()
    browser.get_log("performance")
    yield browser


class FeedWatcher:
    """Counts the `reading` events of one live topic as the gateway sends them (SSE, with the token)."""

    def __init__(self, gateway: Gateway, topic: str) -> None:
        self.connection = HTTPConnection("127.0.0.1", gateway.port, timeout=WAIT_S)
        self.connection.request("GET", f"/api/live/sse?topic={urllib.parse.quote(topic)}", headers={"Authorization": f"Bearer {gateway.token}"})
        response = self.connection.getresponse()
        assert response.status == 200
        self.readings = 0
        self.thread = threading.Thread(target=self._read, args=(response,), daemon=True)
        self.thread.start()

    def _read(self, response: Any) -> None:
        try:
            for line in response:
                if line.startswith(b"event: reading"):
                    self.readings += 1
        except (OSError, ValueError):  # closed by __exit__
            return

    def __enter__(self) -> FeedWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.connection.sock is not None:
            self.connection.sock.shutdown(socket.SHUT_RDWR)  # the reader sees the end of the stream and returns
        self.thread.join(5)
        self.connection.close()


def text(driver: Any, selector: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, selector).text


def wait_for(driver: Any, condition: Any, what: str, timeout: float = WAIT_S) -> Any:
    """Until `condition` holds; an element replaced while it was read (the page re-renders what changed) is read again.

    Chromium reports such a race as a stale element or, inside a click, as a plain WebDriverException
    ("Node with given id does not belong to the document"); a real failure still ends in the timeout."""
    return WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException, WebDriverException)).until(
        lambda d: condition(d), message=f"waiting for {what}")


def click(driver: Any, selector: str) -> None:
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, selector).click() or True, f"{selector} to click")


def open_section(driver: Any, gateway: Gateway, path: str) -> None:
    driver.get(gateway.url + path)
    wait_for(driver, lambda d: text(d, "#health").startswith("health: ") and "…" not in text(d, "#health"), f"{path}: the health line")


def sign_in(driver: Any, gateway: Gateway) -> None:
    open_section(driver, gateway, "/")
    driver.find_element(By.ID, "signin-token").send_keys(gateway.token)
    driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "signed-in").is_displayed(), "signed in")


def screenshot(driver: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def loaded(driver: Any, selector: str) -> bool:
    return "loading…" not in text(driver, selector)


def test_overview_shows_the_live_power_flow_and_it_changes(page, gateway):
    sign_in(page, gateway)
    wait_for(page, lambda d: text(d, "#live-state") == "live", "the live feed open")
    wait_for(page, lambda d: text(d, "#flow-grid").endswith("W") and text(d, "#flow-pv").endswith("W"), "PV and grid power shown")
    assert "grid-meter" in text(page, "#flow-grid-sub") and "pv-roof" in text(page, "#flow-pv-sub")
    assert text(page, "#flow-battery") == "–" and text(page, "#flow-battery-sub") == "no battery"  # neither simulator has one
    wait_for(page, lambda d: text(d, "#today-pv").endswith("Wh"), "today's energy")
    wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-charger="DEMO-CP1/1"]'), "the charger's tile")
    assert text(page, "#health") == "health: ok"
    shown = lambda d: (text(d, "#flow-updated"), text(d, "#flow-grid"), text(d, "#flow-house"))  # noqa: E731
    with FeedWatcher(gateway, "device/grid-meter") as feed:
        before = wait_for(page, lambda d: "latest reading" in text(d, "#flow-updated") and shown(d), "a reading's time")
        seen = feed.readings
        # the gateway's cadence (device batches, harvest windows) is not the page's: count from the feed's next reading
        wait_until(lambda: feed.readings > seen, timeout=WAIT_S, what="the next reading on the live feed")
        wait_for(page, lambda d: shown(d) != before, "the overview to change with that reading", timeout=LIVE_CHANGE_S)
    screenshot(page, "overview")


def test_a_device_added_through_the_page_is_in_the_api_and_bad_input_gets_the_rest_message(page, gateway):
    sign_in(page, gateway)
    open_section(page, gateway, "/devices")
    wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-device="grid-meter"]'), "the device table")
    form = page.find_element(By.ID, "add-device")

    def submit(**fields: str) -> str:
        for name in ("id", "host", "port", "serial_port", "unit_id", "poll_interval"):
            field = form.find_element(By.NAME, name)
            field.clear()
            field.send_keys(fields.get(name, ""))
        form.find_element(By.NAME, "profile").send_keys(fields.get("profile", "sunspec"))
        previous = text(page, "#add-device-result")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        return wait_for(page, lambda d: (t := text(d, "#add-device-result")) not in ("", "adding…", previous) and t, "the answer to the form")

    bad = {"id": "attic", "host": "127.0.0.1", "port": "70000"}
    status, _, rest = http(gateway.port, "/api/devices", "POST", {"id": "attic", "profile": "sunspec", "host": "127.0.0.1", "port": 70000}, token=gateway.token)
    assert status == 400
    assert submit(**bad) == f"{rest['field']}: {rest['message']}"  # the same words as REST
    assert "attic" not in {d["id"] for d in gateway.get("/api/devices")["devices"]}

    spare = free_port()  # nothing listens there: the device is added and shows as offline
    assert submit(id="attic", host="127.0.0.1", port=str(spare), unit_id="1", poll_interval="5") == "added attic"
    listed = {d["id"]: d for d in gateway.get("/api/devices")["devices"]}
    assert listed["attic"]["connection"]["port"] == spare
    wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-device="attic"]'), "the new device in the page's table")
    screenshot(page, "devices")

    click(page, 'button[data-remove="attic"]')
    wait_for(page, lambda d: d.find_element(By.CSS_SELECTOR, 'button[data-remove="attic"]').text == "Confirm remove", "the remove confirmation")
    click(page, 'button[data-remove="attic"]')
    wait_for(page, lambda d: text(d, "#add-device-result") == "removed attic", "the removal")
    assert "attic" not in {d["id"] for d in gateway.get("/api/devices")["devices"]}


def test_a_mode_change_on_the_page_reaches_the_energy_manager(page, gateway):
    sign_in(page, gateway)
    open_section(page, gateway, "/chargers")
    card = '[data-loadpoint="garage"]'
    wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, f'{card} button[data-mode="now"][aria-pressed="true"]'), "the loadpoint in mode now")
    assert text(page, f"{card} [data-decision]").startswith("controller: mode now")
    click(page, f'{card} button[data-mode="pv"]')
    wait_for(page, lambda d: text(d, "#loadpoint-result") == "garage: mode pv", "the mode change answered")
    loadpoint = gateway.get("/api/loadpoints/garage")
    assert (loadpoint["mode"], loadpoint["mode_source"]) == ("pv", "rest")
    # the energy manager decided in the new mode, and the page shows that decision
    wait_for(page, lambda d: gateway.get("/api/loadpoints/garage")["decision"]["reason"].startswith("mode pv") or None, "a decision in mode pv")
    wait_for(page, lambda d: text(d, f"{card} [data-decision]").startswith("controller: mode pv"), "the page showing the new decision")
    wait_for(page, lambda d: d.find_element(By.CSS_SELECTOR, f'{card} button[data-mode="pv"]').get_attribute("aria-pressed") == "true", "pv pressed")
    wait_for(page, lambda d: loaded(d, "#sessions") and d.find_elements(By.CSS_SELECTOR, "#sessions td"), "recent sessions")
    assert "DEMO-TAG" in text(page, "#sessions")  # idTags once signed in
    screenshot(page, "chargers")


def test_writes_without_sign_in_are_refused_and_a_cookie_alone_cannot_write(page, gateway):
    open_section(page, gateway, "/devices")
    assert page.find_element(By.ID, "signin-form").is_displayed()
    form = page.find_element(By.ID, "add-device")
    form.find_element(By.NAME, "id").send_keys("intruder")
    form.find_element(By.NAME, "host").send_keys("127.0.0.1")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    answer = wait_for(page, lambda d: (t := text(d, "#add-device-result")) not in ("", "adding…") and t, "the refusal")
    assert answer.startswith("sign in first: ")
    assert "intruder" not in {d["id"] for d in gateway.get("/api/devices")["devices"]}
    open_section(page, gateway, "/chargers")
    wait_for(page, lambda d: loaded(d, "#sessions"), "the sessions section")
    assert text(page, "#sessions") == "sign in to see sessions: they carry drivers' idTags"
    assert "DEMO-TAG" not in page.page_source
    screenshot(page, "chargers-signed-out")

    sign_in(page, gateway)  # signed in, a script that leaves out the CSRF header (what another page could try) is refused
    answer = page.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch("/api/loadpoints/garage/mode", {method: "PUT", headers: {"Content-Type": "application/json"}, body: '{"mode": "off"}'})
          .then(async (r) => done([r.status, await r.json()]));""")
    assert answer[0] == 403 and answer[1]["error"] == "csrf_failed"
    assert gateway.get("/api/loadpoints/garage")["mode"] != "off"


def _requested_urls(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
        elif message["method"] == "Network.webSocketCreated":
            urls.append(message["params"]["url"])
    return urls


def test_every_page_loads_everything_from_the_gateway(page, gateway):
    requested: list[str] = []
    for signed_in in (False, True):
        if signed_in:
            sign_in(page, gateway)
        for name, path, _ in pages.SECTIONS:
            open_section(page, gateway, path)
            wait_for(page, lambda d: loaded(d, "main"), f"{path} filled in")
            if name == "system":
                wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-actor="api"]'), "the supervision tree")
                assert "restarts" in text(page, '[data-actor="api"]')
            if name == "uploads":
                wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-transport="demo-ingest"]'), "the demo transport")
            screenshot(page, f"{name}-{'signed-in' if signed_in else 'signed-out'}")
            requested += _requested_urls(page)
    origins = {urllib.parse.urlsplit(url)._replace(path="", query="", fragment="").geturl() for url in requested if not url.startswith("data:")}
    assert origins == {gateway.url, f"ws://127.0.0.1:{gateway.port}"}, origins  # the page itself, its REST calls and the live feed
    assert any(urllib.parse.urlsplit(url).path == "/assets/egw.js" for url in requested)


def test_a_dead_letter_is_sent_again_from_the_uploads_page(browser):
    """The demo's receiver accepts every batch, so the dead letters come from the in-memory backend the API tests use."""
    backend = MemoryBackend()
    backend.transports["fleet"] = {**backend.transports["ingest"], "name": "fleet", "state": "ok", "last_success": "2026-11-21T09:30:00Z"}
    with ServedApp(build_app(backend, token=TOKEN)) as served:
        site = Gateway(served.port, TOKEN, Path("."))
        browser.get(site.url + "/assets/egw.css")
        browser.delete_all_cookies()
        sign_in(browser, site)
        open_section(browser, site, "/uploads")
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-dead-letter="1"]'), "the dead letter")
        assert "HTTP 413: too large" in text(browser, 'tr[data-dead-letter="1"]')
        assert "Backlog\n1200 items · 64.0 KiB" in text(browser, "#outbox")
        click(browser, 'button[data-resend="fleet"]')
        wait_for(browser, lambda d: text(d, "#resend-result") == "fleet: 1 queued again", "the re-send answered")
        assert backend.writes == [("resend_dead_letters", ("fleet", None))]
        screenshot(browser, "uploads")
        open_section(browser, site, "/chargers")  # a loadpoint configured while the energy manager is not running
        card = '[data-loadpoint="garage"]'
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'{card} button[data-mode="pv"][aria-pressed="true"]'), "the stored mode")
        assert text(browser, f"{card} [data-decision]") == "controller: energy manager not running"


def _actor(records: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
    for record in records:
        if record["path"] == path:
            return record
        found = _actor(record.get("children", []), path)
        if found is not None:
            return found
    return None


def test_the_system_page_shows_an_actor_killed_and_restarted(page, gateway):
    """Runs last: it kills a device actor of the module's gateway (its supervisor restarts it alone)."""
    open_section(page, gateway, "/system")  # signed out: the tree and the warnings are status, like /api/actors
    item = '[data-actor="devices/pv-roof"]'
    wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, item), "pv-roof in the tree")
    before = _actor(gateway.get("/api/actors")["actors"], "devices/pv-roof")
    assert before is not None and before["pid"]
    os.kill(before["pid"], signal.SIGKILL)
    wait_for(page, lambda d: f"restarts {before['restarts'] + 1}" in text(d, item), "the restart in the tree")
    wait_for(page, lambda d: "devices/pv-roof exited" in text(d, "#warnings"), "the exit among the warnings")
    assert "devices/pv-roof restarted" in text(page, "#warnings")
    screenshot(page, "system")
