"""
Makes docs/screenshots/*.png: the browser client's main view at 1280x800
and at 375x740 (a phone), with a terminal user in the room.  Needs what the browser
tests need (chromium, chromium-driver, selenium).

    python tools/screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.browsing import chromium, join, say, wait_line  # noqa: E402
from tests.support import PipedClient, RelayProcess  # noqa: E402
from tests.test_browser import png  # noqa: E402


def browser(width: int, height: int):
    driver = chromium(width, height)
    # (the window size includes no browser chrome in headless mode: the page gets all of it)
    return driver


def main() -> None:
    work = Path(tempfile.mkdtemp())
    relay = RelayProcess(work, ["--web", "tcp:0"])
    relay.start()
    bob = PipedClient(relay.port, "bob", "--room", "#lobby")
    desktop, phone = browser(1280, 800), browser(375, 740)
    try:
        bob.wait_for("* in #lobby: bob")
        join(desktop, relay, "alice")
        join(phone, relay, "carol")
        say(desktop, "Morning! The relay only ever sees ciphertext.")
        bob.wait_for("[#lobby] alice: Morning! The relay only ever sees ciphertext.")
        bob.type("From my terminal: hello, browsers")  # (no emoji: headless fonts lack them)
        say(phone, "And from a phone, @alice")
        (work / "sunset.png").write_bytes(png(160, 90))
        bob.type(f"/send {work / 'sunset.png'}")
        wait_line(desktop, "bob offers sunset.png")  # (taken without a click: under 10 MiB)
        WebDriverWait(desktop, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "img.thumb"))
        say(desktop, "/join #dev")
        bob.type("/join #dev")
        bob.wait_for("* you joined #dev")
        bob.type("anyone seen the new build? alice?")
        desktop.find_element(By.XPATH, "//nav[@aria-label='Rooms']//button[contains(., '#dev')]")
        desktop.find_element(By.XPATH, "//nav[@aria-label='Rooms']//button[contains(., '#lobby')]").click()
        wait_line(phone, "sunset.png")
        out = REPO / "docs" / "screenshots"
        out.mkdir(exist_ok=True)
        desktop.save_screenshot(str(out / "desktop.png"))
        phone.save_screenshot(str(out / "phone.png"))
        print("wrote", out / "desktop.png", out / "phone.png")
    finally:
        desktop.quit()
        phone.quit()
        bob.kill()
        relay.stop()


if __name__ == "__main__":
    main()
