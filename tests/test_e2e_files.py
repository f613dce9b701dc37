"""Level 4: files through the real relay, end-to-end encrypted."""

from __future__ import annotations

import hashlib
import os
import re



def make_file(path, size, head=b""):
    data = head + os.urandom(size - len(head))
    path.write_bytes(data)
    return data


def test_binary_file_arrives_identical_and_the_relay_sees_no_plaintext(relay_process, clients, tmp_path):
    relay = relay_process("--log-messages")
    inbox = tmp_path / "bob-downloads"
    bob = clients(relay.port, "bob", "--downloads", str(inbox))
    _send_a_file_and_check(relay, bob, clients, tmp_path, inbox)
    log = relay.log()
    assert "stream from 127.0.0.1:" in log and "ended: 3" in log  # a bulk stream carried it
    assert "bob -> alice: aes3:" in log  # the accept and the ack went privately, encrypted


def test_without_streams_files_go_in_the_chat_connection(relay_process, clients, tmp_path):
    # A relay that does not offer streams (an older one): the proxy strips
    # "streams" from CAPS, and the clients fall back to in-band chunks.
    from tests.hostile_relay import HostileRelay

    relay = relay_process("--log-messages")
    older = HostileRelay(relay.port, to_client=lambda line: [line.replace(b" streams", b"")])
    try:
        inbox = tmp_path / "bob-downloads"
        bob = clients(older.port, "bob", "--downloads", str(inbox))
        # 1 MiB: 33 chunks in the chat connection, 3 s at 10 a second
        _send_a_file_and_check(older, bob, clients, tmp_path, inbox, relay_log=relay, mib=1)
    finally:
        older.close()
    log = relay.log()
    assert "stream from" not in log
    assert len([line for line in log.splitlines() if "alice -> bob: aes3:" in line]) > 30  # the chunks


def _send_a_file_and_check(relay, bob, clients, tmp_path, inbox, relay_log=None, mib=3):
    bob.wait_for("* in #lobby: bob")
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: bob, alice")
    source = tmp_path / "holiday-secret-plans.bin"
    data = make_file(source, mib * 1024 * 1024 + 123)
    alice.type(f"/send {source}")
    alice.wait_for_prefix(f"* offered holiday-secret-plans.bin (file, {mib}.0 MiB) to #lobby")
    bob.wait_for(f"* alice sends holiday-secret-plans.bin (file, {mib}.0 MiB) in #lobby: receiving it")
    saved = bob.wait_for_prefix("* saved holiday-secret-plans.bin from alice as ", timeout=60)
    path = re.match(rf"\* saved \S+ from alice as (.+) \(file, {mib}\.0 MiB\)$", saved).group(1)
    assert open(path, "rb").read() == data
    assert any(line.startswith("* receiving holiday-secret-plans.bin from alice: 50%") for line in bob.seen)
    alice.wait_for("* bob has holiday-secret-plans.bin")
    assert any(line.startswith("* sending holiday-secret-plans.bin to bob: 100%") for line in alice.seen)
    assert alice.finish()[0] == 0
    real = relay_log or relay
    real.stop()
    log = real.log()
    assert "holiday" not in log and hashlib.sha256(data).hexdigest() not in log


def test_big_file_waits_for_accept_and_an_image_is_recognised(relay_process, clients, tmp_path):
    relay = relay_process()
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "pixel.png").write_bytes(b"already here")  # never overwritten
    bob = clients(relay.port, "bob", "--downloads", str(inbox), "--auto-accept-mb", "0.01")
    bob.wait_for("* in #lobby: bob")
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: bob, alice")
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02\x80\x00\x00\x01\xe0\x08\x02\x00\x00\x00"
    source = tmp_path / "photo.jpg"  # the name lies; the content decides
    data = make_file(source, 70_000, head=png)
    alice.type(f"/send bob {source}")
    offer = bob.wait_for_prefix("* alice offers photo.jpg (PNG, 68.4 KiB): /accept ")
    bob.type("/accept " + offer.rsplit(" ", 1)[-1])
    saved = bob.wait_for_prefix("* saved photo.jpg from alice as ", timeout=30)
    assert saved.endswith("(PNG image, 640×480, 68.4 KiB)")
    assert (inbox / "photo.jpg").read_bytes() == data
    assert (inbox / "pixel.png").read_bytes() == b"already here"
    alice.type(f"/send {source}")
    bob.wait_for_prefix("* alice offers photo.jpg")
    bob.type("/reject")
    bob.wait_for("* declined photo.jpg from alice")
    alice.wait_for("* bob declined photo.jpg")


def test_unwritable_downloads_folder_is_a_clear_error(relay_process, clients, tmp_path):
    relay = relay_process()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    bob = clients(relay.port, "bob", "--downloads", str(blocker / "sub"))
    bob.wait_for("* in #lobby: bob")
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: bob, alice")
    source = tmp_path / "note.txt"
    make_file(source, 1000)
    alice.type(f"/send {source}")
    line = bob.wait_for_prefix("! cannot receive note.txt from alice: cannot use the downloads folder")
    assert str(blocker / "sub") in line
    alice.wait_for("* bob declined note.txt")


def test_a_relay_restart_mid_transfer_resumes_from_the_last_verified_frame(relay_process, clients, tmp_path):
    relay = relay_process()
    inbox = tmp_path / "bob-downloads"
    bob = clients(relay.port, "bob", "--downloads", str(inbox), "--auto-accept-mb", "1000")
    bob.wait_for("* in #lobby: bob")
    alice = clients(relay.port, "alice")
    alice.wait_for("* in #lobby: bob, alice")
    source = tmp_path / "film.bin"
    data = make_file(source, 400 * 1024 * 1024)
    alice.type(f"/send {source}")
    bob.wait_for_prefix("* receiving film.bin from alice: 25%", timeout=60)
    port = relay.port
    relay.stop()  # the relay goes away mid-transfer, then comes back
    relay.start(port=port)
    bob.wait_for_prefix("* receiving film.bin from alice was cut at ", timeout=30)
    saved = bob.wait_for_prefix("* saved film.bin from alice as ", timeout=120)
    path = re.match(r"\* saved \S+ from alice as (.+) \(file, ", saved).group(1)
    assert hashlib.sha256(open(path, "rb").read()).digest() == hashlib.sha256(data).digest()
    alice.wait_for("* bob has film.bin", timeout=30)
    assert any(line == "* bob resumes film.bin" for line in alice.seen)
    percents = [int(m.group(1)) for line in bob.seen if (m := re.search(r"cut at (\d+)%", line))]
    assert percents and percents[0] >= 25  # it went on from there, not from the start
