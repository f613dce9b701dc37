"""
Benchmark files between a browser and a terminal client, against terminal
to terminal in the same run (these machines are shared and noisy).

    python benchmarks/browser_files.py            # 64 MiB
    python benchmarks/browser_files.py --mib 200

browser -> terminal: the page in headless Chromium attaches the file (read
into memory, SHA-256, AES-GCM frames with WebCrypto, over its WebSocket
stream end); a terminal client receives it (auto-accepted).  Timed from
the attach to the receiver's "saved".
terminal -> browser: the terminal /sends it; the page accepts; timed from
the offer to the page's verified download link.
terminal -> terminal: the same relay, two terminal clients (the reference).

Needs what the browser tests need.  Run by hand; numbers go in the README.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import PipedClient, RelayProcess  # noqa: E402
from tests.test_browser import (  # noqa: E402
    CHROMEDRIVER, CHROMIUM, By, Service, WebDriverWait, join, open_conversation, wait_line, webdriver,
)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    size = args.mib * 1024 * 1024
    work = Path(tempfile.mkdtemp())
    source = work / "payload.bin"
    source.write_bytes(os.urandom(size))
    relay = RelayProcess(work, ["--web", "tcp:0:interface=127.0.0.1"])
    relay.start()
    big = str(args.mib * 2)
    receiver = PipedClient(relay.port, "term", "--room", "#bench", "--downloads", str(work / "term"), "--auto-accept-mb", big)
    sender = PipedClient(relay.port, "term2", "--room", "#bench", "--downloads", str(work / "term2"), "--auto-accept-mb", "0")
    page = browser()
    results = {}
    try:
        receiver.wait_for_prefix("* in #bench: term")
        sender.wait_for_prefix("* in #bench: ")
        join(page, relay, "web", "#bench")

        # browser -> terminal
        start = time.monotonic()
        page.find_element(By.ID, "attach").send_keys(str(source))
        receiver.wait_for_prefix("* saved payload.bin from web as ", timeout=600)
        results["browser -> terminal"] = time.monotonic() - start

        # terminal -> terminal (term2 declines nothing: term takes it; the page declines)
        start = time.monotonic()
        sender.type(f"/send term {source}")
        receiver.wait_for_prefix("* saved payload.bin from term2 as ", timeout=600)
        results["terminal -> terminal"] = time.monotonic() - start

        # terminal -> browser
        start = time.monotonic()
        sender.type(f"/send web {source}")
        open_conversation(page, "term2")  # a private offer: its own conversation
        wait_line(page, "term2 offers payload.bin")
        page.find_element(By.XPATH, "//button[@aria-label='Accept payload.bin']").click()
        WebDriverWait(page, 600).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[role=log] a.download"))
        results["terminal -> browser"] = time.monotonic() - start
    finally:
        page.quit()
        receiver.kill()
        sender.kill()
        relay.stop()
    print(f"{args.mib} MiB, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores")
    print("| direction | seconds | MiB/s |")
    print("|---|---|---|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.1f} | {args.mib / seconds:.0f} |")


if __name__ == "__main__":
    main()
