"""Level 2: pacing of file transfers, on a fake clock, with no network."""

from __future__ import annotations

from twisted.internet.task import Clock

from chatsvc.client import files, transfers
from chatsvc.client.transfers import Transfers


class FakeSession:
    interactive = False
    ready = True

    def __init__(self):
        self.sent: list[tuple[str, dict]] = []
        self.notices: list[str] = []
        self.display = object()

    def send_control(self, target, text):
        self.sent.append((target, files.decode(text)))

    def notice(self, text):
        self.notices.append(text)

    problem = notice

    def transfers_changed(self):
        pass

    def show_progress(self, text):
        return False

    def stream_key(self, target, transfer_id, sender=None):
        return None  # no bulk streams: the in-band chunks are tested here

    def open_stream(self, stream):
        raise AssertionError("no streams here")

    def chunks_to(self, nick):
        return [f["i"] for target, f in self.sent if target == nick and f["t"] == "chunk"]


def run_for(clock, seconds):
    clock.pump([1 / transfers.CHUNKS_PER_SECOND] * int(seconds * transfers.CHUNKS_PER_SECOND))


def sender_with_accepted_offer(tmp_path, size=20 * files.CHUNK_SIZE):
    source = tmp_path / "big.bin"
    source.write_bytes(b"z" * size)
    clock, session = Clock(), FakeSession()
    t = Transfers(session, tmp_path / "in", 0, clock)
    t.send("#room", str(source))
    offer_id = session.sent[0][1]["id"]
    t.handle("bob", "alice", files.decode(files.encode("accept", id=offer_id)))
    return t, session, clock, offer_id


def test_sender_stays_within_the_window_until_acknowledged(tmp_path):
    t, session, clock, offer_id = sender_with_accepted_offer(tmp_path)
    run_for(clock, 10)  # plenty of ticks
    assert session.chunks_to("bob") == list(range(transfers.WINDOW))
    t.handle("bob", "alice", files.decode(files.encode("ack", id=offer_id, i=3)))
    run_for(clock, 10)
    assert session.chunks_to("bob") == list(range(4 + transfers.WINDOW))


def test_sender_paces_its_chunks(tmp_path):
    t, session, clock, offer_id = sender_with_accepted_offer(tmp_path)
    run_for(clock, 0.4)
    assert len(session.chunks_to("bob")) == 4  # one per tick


def test_a_silent_receiver_is_given_up(tmp_path):
    t, session, clock, offer_id = sender_with_accepted_offer(tmp_path)
    run_for(clock, transfers.STALL_TIMEOUT + 1)
    assert any("stopped answering" in n for n in session.notices)
    assert t.streams == []
    assert not t.busy()


def test_a_finished_transfer_frees_the_sender(tmp_path):
    t, session, clock, offer_id = sender_with_accepted_offer(tmp_path, size=3 * files.CHUNK_SIZE)
    run_for(clock, 1)
    assert session.chunks_to("bob") == [0, 1, 2]
    t.handle("bob", "alice", files.decode(files.encode("ack", id=offer_id, i=2)))
    assert "bob has big.bin" in session.notices
    assert t.streams == []


# --- a hostile sender (security issue, items 14 and 15) ---------------------------


def offer(offer_id: str, size: int = 10, name: str = "f.txt") -> dict:
    import hashlib

    return files.decode(files.encode(
        "offer", id=offer_id, name=name, size=size, sha256=hashlib.sha256(b"x" * size).hexdigest(),
        type="file", chunks=max(1, -(-size // files.CHUNK_SIZE)),
    ))


def test_offers_open_no_files_and_are_capped(tmp_path):
    clock, session = Clock(), FakeSession()
    t = Transfers(session, tmp_path / "in", 10 * 1024 * 1024, clock)
    for n in range(1140):
        t.handle("mallory", "alice", offer(f"{n:016x}"))
    assert len(t.incoming) == transfers.MAX_INCOMING_PER_SENDER
    assert all(i.file is None for i in t.incoming.values())  # no handle until a chunk comes
    assert not list((tmp_path / "in").glob(".*.partial"))
    rejects = [f for _, f in session.sent if f["t"] == "reject"]
    assert len(rejects) == 1140 - transfers.MAX_INCOMING_PER_SENDER
    assert sum("declined" in n for n in session.notices) == 1  # told once, not 1,137 times
    for sender in ("a", "b", "c", "d"):
        for n in range(3):
            t.handle(sender, "alice", offer(f"{ord(sender):08x}{n:08x}"))
    assert len(t.incoming) == transfers.MAX_INCOMING


def test_stalled_receive_times_out_and_its_partial_file_goes(tmp_path):
    import base64

    clock, session = Clock(), FakeSession()
    t = Transfers(session, tmp_path / "in", 10 * 1024 * 1024, clock)
    t.handle("bob", "alice", offer("00000000000000aa", size=2 * files.CHUNK_SIZE))
    incoming = t.incoming["00000000000000aa"]
    t.handle("bob", "alice", files.decode(files.encode(
        "chunk", id="00000000000000aa", i=0, d=base64.b64encode(b"x" * files.CHUNK_SIZE).decode())))
    assert incoming.partial.exists()
    clock.pump([1.0] * int(transfers.STALL_TIMEOUT + 2))
    assert not t.incoming and not incoming.partial.exists()
    assert any(f["t"] == "cancel" for _, f in session.sent)
    assert any("gave up receiving" in n for n in session.notices)


def test_only_the_sender_can_cancel_a_transfer(tmp_path):
    clock, session = Clock(), FakeSession()
    t = Transfers(session, tmp_path / "in", 10 * 1024 * 1024, clock)
    t.handle("bob", "alice", offer("00000000000000bb"))
    t.handle("mallory", "alice", files.decode(files.encode("cancel", id="00000000000000bb")))
    assert "00000000000000bb" in t.incoming
    t.handle("bob", "alice", files.decode(files.encode("cancel", id="00000000000000bb")))
    assert "00000000000000bb" not in t.incoming


def test_transfers_lists_and_cancel_stops_what_is_in_flight(tmp_path):
    clock, session = Clock(), FakeSession()
    t = Transfers(session, tmp_path / "in", 10 * 1024 * 1024, clock)
    t.handle("bob", "alice", offer("00000000000000cc", size=100))
    source = tmp_path / "out.bin"
    source.write_bytes(b"y" * 1000)
    t.send("#room", str(source))
    session.notices.clear()
    t.list()
    assert any(n.startswith("000000 receiving f.txt from bob: 0%") for n in session.notices)
    assert any(" sending out.bin offered to #room" in n for n in session.notices)
    t.cancel("000000")
    assert "00000000000000cc" not in t.incoming
    assert ("bob", {"t": "cancel", "id": "00000000000000cc"}) in session.sent
    outgoing_id = next(iter(t.offered))
    t.cancel(outgoing_id[:6])
    assert not t.offered
    session.notices.clear()
    t.cancel("ffff")
    assert session.notices == ["no such transfer (/transfers lists them)"]


def test_rate_and_time_left():
    assert transfers.rate_and_eta((0.0, 0), 2.0, 200 * 1024 * 1024, 400 * 1024 * 1024) == ", 100.0 MiB/s, 2 s left"
    assert transfers.rate_and_eta((0.0, 0), 0.1, 10, 100) == ""  # too early to say


def test_a_sender_that_started_afresh_resumes_where_the_receiver_stands(tmp_path):
    import hashlib

    class StreamingSession(FakeSession):
        def __init__(self):
            super().__init__()
            self.opened = []
            self.ready = True

        def stream_key(self, target, transfer_id, sender=None):
            return bytes(32)

        def open_stream(self, stream):
            self.opened.append(stream)

    clock, session = Clock(), StreamingSession()
    t = Transfers(session, tmp_path / "in", 10 * 1024 * 1024, clock)
    data = b"q" * 2500
    first = dict(offer("00000000000000d1", size=len(data)), sha256=hashlib.sha256(data).hexdigest(), stream=1)
    t.handle("bob", "#room", first)
    incoming = t.incoming["00000000000000d1"]
    incoming.add_frame(0, data[:1000], 1000)  # two frames verified before bob went away
    incoming.add_frame(1, data[1000:2000], 1000)
    incoming.pause()
    again = dict(first, id="00000000000000d2")  # bob's client restarted: a new offer, the same file
    t.handle("bob", "#room", again)
    assert list(t.incoming) == ["00000000000000d2"] and t.incoming["00000000000000d2"] is incoming
    assert session.opened[-1].start == 2  # asks for frame 2 on: what it has, it keeps
    assert any("again: resuming at 80%" in n for n in session.notices)


def test_offers_waiting_for_accept_are_bounded(tmp_path):
    clock, session = Clock(), FakeSession()
    t = Transfers(session, tmp_path / "in", 0, clock)  # nothing auto-accepted
    for n in range(transfers.MAX_WAITING_OFFERS + 5):
        t.handle(f"s{n}", "alice", offer(f"{n:016x}"))
    assert len(t.offers) == transfers.MAX_WAITING_OFFERS
    assert f"{0:016x}" not in t.offers  # the oldest went first


def test_a_stream_cut_too_often_is_given_up_and_its_partial_removed(tmp_path):
    from chatsvc.client import stream

    class StreamingSession(FakeSession):
        ready = True

        def stream_key(self, target, transfer_id, sender=None):
            return bytes(32)

        def open_stream(self, s):
            pass

    clock, session = Clock(), StreamingSession()
    t = Transfers(session, tmp_path / "in", 10 * 1024 * 1024, clock)
    t.handle("bob", "#room", dict(offer("00000000000000e1"), stream=1))
    incoming = t.incoming["00000000000000e1"]
    for _ in range(transfers.MAX_RESUMES + 1):
        t.stream_in["00000000000000e1"]._end(stream.CUT)
        clock.advance(transfers.RESUME_DELAY * transfers.MAX_RESUMES)
    assert "00000000000000e1" not in t.incoming
    assert incoming.file is None and not list((tmp_path / "in").glob(".*.partial"))
    assert any("failed: the stream was cut" in n for n in session.notices)


def test_a_resumed_accept_that_overtakes_the_cut_is_served_not_ignored(tmp_path):
    # Issue #23, 12: on a loaded machine the receiver's new accept (a new
    # stream token, after its end was cut) can arrive before the sender's end
    # noticed the cut; ignoring it left the receiver waiting until its stall
    # timeout ("alice stopped sending film.bin; gave up receiving it").
    class StreamingSession(FakeSession):
        def __init__(self):
            super().__init__()
            self.opened = []

        def stream_key(self, target, transfer_id, sender=None):
            return bytes(32)

        def open_stream(self, s):
            self.opened.append(s)

    source = tmp_path / "film.bin"
    source.write_bytes(b"f" * 5000)
    clock, session = Clock(), StreamingSession()
    t = Transfers(session, tmp_path / "in", 0, clock)
    t.send("#room", str(source))
    offer_id = session.sent[0][1]["id"]
    t.handle("bob", "alice", {"t": "accept", "id": offer_id, "stream": "A" * 22})
    first = session.opened[-1]
    t.handle("bob", "alice", {"t": "accept", "id": offer_id, "stream": "A" * 22})  # the same accept again
    assert session.opened == [first]
    t.handle("bob", "alice", {"t": "accept", "id": offer_id, "stream": "B" * 22})  # resumed, before the cut
    second = session.opened[-1]
    assert second is not first and second.token == "B" * 22 and first.finished
    assert "bob resumes film.bin" in session.notices
    first.connectionLost()  # the old end's cut, late: it changes nothing
    second._end(None)  # the new stream hands over the rest
    t.handle("bob", "alice", {"t": "ack", "id": offer_id, "i": -1, "stream": 1})
    assert session.notices[-1] == "bob has film.bin"
    assert not any("failed" in n or "giving up" in n for n in session.notices)


def test_transfers_that_ended_are_listed_as_recent_for_a_while(tmp_path):
    # Issue #23, 8: /transfers lists what is in progress; what ended goes to "recent", which expires.
    t, session, clock, offer_id = sender_with_accepted_offer(tmp_path, size=3 * files.CHUNK_SIZE)
    run_for(clock, 1)
    t.handle("bob", "alice", files.decode(files.encode("ack", id=offer_id, i=2)))
    t.handle("carol", "alice", offer("00000000000000f1"))  # one waiting for /accept
    session.notices.clear()
    t.list()
    assert session.notices[-1] == "recent: bob has big.bin"
    assert any(line.startswith("000000 waiting: f.txt from carol") for line in session.notices)
    clock.advance(transfers.RECENT_FOR + 1)
    session.notices.clear()
    t.list()
    assert not any(line.startswith("recent:") for line in session.notices)


def test_a_live_progress_bar_says_paused_while_disconnected(tmp_path):
    class Terminal(FakeSession):
        interactive = True

        def __init__(self):
            super().__init__()
            self.bars = []

        def show_progress(self, text):
            self.bars.append(text)
            return True

    clock, session = Clock(), Terminal()
    t = Transfers(session, tmp_path / "in", 0, clock)
    t.progress("receiving film.bin from alice", "id1", 40, 100)
    t.disconnected()
    assert session.bars[-1] == "receiving film.bin from alice [########------------] 40% — paused: not connected"
    t.progress("receiving film.bin from alice", "id1", 45, 100)  # back: the bar moves again
    assert session.bars[-1].endswith("] 45%")
