"""Level 2/3: bulk streams in the relay -- pairing, splicing, refusals."""

from __future__ import annotations

from twisted.internet.task import Clock

from chatsvc import streams
from tests.support import FakeClient, make_factory

TOKEN = "t" * 22
OTHER = "u" * 22


def stream(factory, token=TOKEN, role="send", host="10.0.0.1", extra=b""):
    client = FakeClient(factory, host=host)
    client.lines()  # HELLO
    client.send(f"STREAM {token} {role}\n".encode() + extra)
    return client


def test_two_ends_are_spliced_both_ways_with_backpressure():
    factory = make_factory()
    sender = stream(factory)
    assert sender.transport.value() == b""
    receiver = stream(factory, role="recv", host="10.0.0.2", extra=b"\x00" * 8)  # where it stands
    assert sender.transport.value() == b"\x00" * 8  # held until the partner came, then passed on
    frame = bytes(range(256)) * 4  # raw bytes, newlines and all
    sender.send(frame)
    assert receiver.transport.value() == frame
    # each transport is the other's producer: a full receiver stops reading the sender
    assert receiver.transport.producer is sender.transport
    assert sender.transport.producer is receiver.transport
    sender.drop()
    assert receiver.closed


def test_a_token_pairs_once():
    factory = make_factory()
    stream(factory)
    stream(factory, role="recv", host="10.0.0.2")
    again = stream(factory, host="10.0.0.3")
    assert again.lines()[0].startswith("ERROR stream-used ")
    assert again.closed


def test_the_same_role_twice_is_refused():
    factory = make_factory()
    stream(factory)
    second = stream(factory, host="10.0.0.2")
    assert second.lines()[0].startswith("ERROR stream-taken ")


def test_an_unpaired_end_is_dropped_after_a_while():
    clock = Clock()
    factory = make_factory(clock=clock)
    lonely = stream(factory)
    clock.advance(streams.PAIR_TIMEOUT)
    assert lonely.lines()[0].startswith("ERROR stream-timeout ")
    assert lonely.closed
    lonely.drop()
    assert not factory.hub.streams.waiting and not factory.hub.streams.per_origin


def test_streams_are_limited_per_address_and_count_as_connections():
    factory = make_factory()
    ends = [stream(factory, token=f"{n:022d}") for n in range(streams.MAX_STREAMS_PER_ORIGIN)]
    one_more = stream(factory, token="x" * 22)
    assert one_more.lines()[0].startswith("ERROR too-many-streams ")
    assert len(factory.hub.connections) == len(ends) + 1


def test_bad_tokens_and_chat_connections_cannot_stream():
    factory = make_factory()
    short = stream(factory, token="short")
    assert short.lines()[0].startswith("ERROR stream-invalid ")
    chatter = FakeClient(factory)
    chatter.send("NICK alice\nSTREAM " + OTHER + " send\n")
    assert chatter.lines()[-1].startswith("ERROR stream-invalid ")


def test_stream_ends_never_time_out_as_unregistered():
    clock = Clock()
    factory = make_factory(clock=clock)
    sender = stream(factory)
    receiver = stream(factory, role="recv", host="10.0.0.2")
    clock.advance(3600)  # long after register and idle timeouts
    assert not sender.closed and not receiver.closed


def test_a_receiver_that_stops_reading_slows_its_sender_and_the_relay_holds_nothing(relay_process):
    # Level 4, the real relay: a receiver that reads nothing. The sender is
    # held back by TCP (its writes stop going through), and the relay's
    # memory stays flat; once the receiver reads, everything arrives.
    import select
    import socket
    import threading

    from tests.support import LineSocket

    def rss_kib(pid):
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    relay = relay_process()
    token = "s" * 22
    receiver = LineSocket(socket.create_connection(("127.0.0.1", relay.port), timeout=30))
    receiver.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    receiver.readline()
    receiver.send(f"STREAM {token} recv\n")
    sender = LineSocket(socket.create_connection(("127.0.0.1", relay.port), timeout=30))
    sender.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sender.readline()
    sender.send(f"STREAM {token} send\n")
    before = rss_kib(relay.proc.pid)
    total = 64 * 1024 * 1024
    block = b"z" * (256 * 1024)
    sock = sender.sock
    sock.setblocking(False)
    sent = 0
    # Push until the relay stops taking bytes: the sender's socket stays
    # unwritable (select waits on that event; its timeout only bounds a
    # failure) -- held back end to end, not soaked up by the relay.
    while sent < total:
        try:
            sent += sock.send(block)
            continue
        except BlockingIOError:
            pass
        _, writable, _ = select.select([], [sock], [], 2.0)
        if not writable:
            break
    assert sent < total // 4
    assert rss_kib(relay.proc.pid) - before < 8 * 1024  # KiB: a few socket buffers, not the data
    sock.setblocking(True)
    pusher = threading.Thread(target=lambda: sock.sendall(b"z" * (total - sent)), daemon=True)
    pusher.start()
    received = 0
    receiver.sock.settimeout(30)
    while received < total:
        chunk = receiver.sock.recv(1 << 20)
        assert chunk
        received += len(chunk)
    pusher.join(30)
    assert received == total


def test_shutdown_puts_nothing_of_the_relays_into_a_spliced_stream():
    # An ERROR line in the middle of the frames would read as a corrupt
    # frame, and a cut that could resume would be fatal instead.
    factory = make_factory()
    sender = stream(factory)
    receiver = stream(factory, role="recv", host="10.0.0.2", extra=b"\x00" * 8)
    receiver.transport.clear()
    factory.close_all()
    assert receiver.transport.value() == b"" and receiver.closed
