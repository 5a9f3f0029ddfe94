"""The fleet page in real headless Chromium (Debian's chromium + chromium-driver).

Screenshots are kept in output/test-artifacts/serve-ui/ (or $RAMBOOT_TEST_ARTIFACTS).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serve.harness import ADMIN_TOKEN, PI_SERIAL, REPO, SRV_MAC, Serve, new_boot_id

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SRV = {"mac": SRV_MAC, "buildarch": "x86_64"}
PI = {"mac": "dc:a6:32:aa:bb:cc", "serial": PI_SERIAL, "buildarch": "arm64"}


def artifacts() -> Path:
    path = Path(os.environ.get("RAMBOOT_TEST_ARTIFACTS", REPO / "output" / "test-artifacts"))
    path = path / "serve-ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("chromium and chromium-driver are not installed (scripts/apt-packages.txt)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rb-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 "--window-size=1200,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(predicate: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # an element not there yet
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"the page never showed {what}")
        time.sleep(0.1)


def seed(serve: Serve) -> None:
    token = serve.token("srv-01")
    boot = new_boot_id()
    serve.boot(SRV, token=token)
    for name, at, details in (("kernel-started", 2.1, {"uptime": 1.8}),
                              ("agent-started", 2.2, {"seconds": 0.6}),
                              ("network-up", 4.0, {})):
        serve.post_event(name, SRV, token=token, boot_id=boot, monotonic=at, **details)
    serve.boot(SRV, token=token, agent=True)
    for name, at, details in (("script-fetched", 4.4, {}), ("plan-start", 4.5, {}),
                              ("action-done", 11.0, {"index": 0, "action": "image"}),
                              ("plan-done", 11.2, {"outcome": "reboot"}),
                              ("reboot", 11.6, {})):
        serve.post_event(name, SRV, token=token, boot_id=boot, monotonic=at, **details)
    pi_token = serve.token("pi-01")
    pi_boot = new_boot_id()
    serve.post_event("kernel-started", PI, token=pi_token, boot_id=pi_boot, monotonic=3.0,
                     uptime=2.7)
    serve.post_event("agent-started", PI, token=pi_token, boot_id=pi_boot, monotonic=3.1,
                     seconds=0.2)
    serve.post_event("failure", PI, token=pi_token, boot_id=pi_boot, monotonic=63.0,
                     reason="NetworkError: no DHCP answer on eth0 after 60 s <b>bold?</b>",
                     log_tail=["udhcpc: sending discover", "udhcpc: no lease, failing"])
    serve.boot({"mac": "52:54:00:12:34:99", "buildarch": "x86_64"}, token=serve.token(None))


def test_fleet_page_timeline_and_live_updates(serve: Serve, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    seed(serve)
    out = artifacts()
    browser.get(f"{serve.url}/ui/#token={ADMIN_TOKEN}")

    def count(state: str) -> str:
        return str(browser.find_element(
            By.CSS_SELECTOR, f'.count[data-state="{state}"] b').text)

    wait(lambda: count("failed") == "1", "one failed machine")
    assert (count("provisioned"), count("discovered"), count("booting")) == ("1", "1", "0")
    rows = browser.find_elements(By.CSS_SELECTOR, "#machines tbody tr")
    assert [r.get_attribute("data-key") for r in rows] == [
        "host:pi-01", "mac:52:54:00:12:34:99", "host:srv-01"]  # failures first
    next_boots = [r.find_elements(By.TAG_NAME, "td")[2].text for r in rows]
    assert next_boots == ["target", "discovery", "target"]  # kexec targets boot every time
    failure = rows[0].find_element(By.CSS_SELECTOR, ".failure").text
    assert "<b>bold?</b>" in failure  # machine text is shown as text, never as HTML
    assert "#token" not in browser.current_url  # the token left the address bar
    browser.save_screenshot(str(out / "fleet.png"))

    rows[2].click()
    wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#detail rect[data-stage]")) == 6,
         "the six stages of srv-01")
    stages = [r.get_attribute("data-stage") for r in
              browser.find_elements(By.CSS_SELECTOR, "#detail rect[data-stage]")]
    assert stages == ["kernel", "agent", "network", "fetch", "action", "boot"]
    widths = [float(r.get_attribute("width")) for r in
              browser.find_elements(By.CSS_SELECTOR, "#detail rect[data-stage]")]
    assert widths[4] == max(widths)  # the action (6.5 s) is the longest stage
    assert browser.find_element(By.ID, "reinstall").is_displayed()
    browser.save_screenshot(str(out / "machine-srv-01.png"))

    browser.find_elements(By.CSS_SELECTOR, "#machines tbody tr")[0].click()
    wait(lambda: "no DHCP answer" in browser.find_element(By.ID, "failure").text, "the reason")
    assert "udhcpc: no lease" in browser.find_element(By.ID, "log-tail").text
    failed = browser.find_elements(By.CSS_SELECTOR, "#detail rect.stage-failed")
    assert [r.get_attribute("data-stage") for r in failed] == ["network"]
    browser.save_screenshot(str(out / "machine-pi-01-failed.png"))

    # Live: the Pi boots again and gets further, with no reload of the page.
    token = serve.token("pi-01")
    boot = new_boot_id()
    serve.post_event("kernel-started", PI, token=token, boot_id=boot, monotonic=2.0, uptime=1.0)
    wait(lambda: count("failed") == "0" and count("booting") == "1", "the new boot", 10)
    serve.post_event("agent-started", PI, token=token, boot_id=boot, monotonic=2.1, seconds=0.5)
    serve.post_event("network-up", PI, token=token, boot_id=boot, monotonic=5.0)
    wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#detail rect[data-stage]")) == 3,
         "the Pi's new stages", 10)
    assert browser.find_elements(By.ID, "failure") == []
    browser.save_screenshot(str(out / "live-update.png"))
    logs = browser.get_log("browser") if hasattr(browser, "get_log") else []
    assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs
