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
