"""Level 1/2: file frames over a bulk stream -- format, order, tampering."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest
from twisted.internet.testing import StringTransport

from chatsvc.client import files, stream
from chatsvc.client.files import Incoming

KEY = bytes(range(32))
TID = "0123456789abcdef"
TOKEN = "A" * 22


SMALL = 1000  # frames of 1,000 bytes: several frames from a few kilobytes


def incoming_for(tmp_path, data):
    offer = {"id": TID, "name": "f.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
             "chunks": max(1, -(-len(data) // files.CHUNK_SIZE))}
    incoming = Incoming(offer, "alice", tmp_path)
    incoming.start()
    return incoming


def frames(data, token=TOKEN, tid=TID):
    pieces = [data[i:i + 1000] for i in range(0, len(data), 1000)] or [b""]
    return [stream.seal(KEY, tid, token, i, i == len(pieces) - 1, p, os.urandom(12)) for i, p in enumerate(pieces)]


def receive(tmp_path, data, wire: list[bytes], lose=False):
    incoming = incoming_for(tmp_path, data)
    results = []
    receiver = stream.StreamReceiver(incoming, KEY, TOKEN, 0, progress=lambda n: None, done=results.append, frame_size=SMALL)
    transport = StringTransport()
    receiver.makeConnection(transport)
    assert transport.value() == b"STREAM " + TOKEN.encode() + b" recv\n" + struct.pack(">Q", 0)
    receiver.dataReceived(b"HELLO chatsvc 1 relay\n")
    for piece in wire:
        receiver.dataReceived(piece)
    if lose:
        receiver.connectionLost(None)
    return incoming, results


def test_frames_in_order_make_the_file(tmp_path):
    data = os.urandom(3500)
    incoming, results = receive(tmp_path, data, [b"".join(frames(data))])
    assert results == [None]
    assert incoming.finish().read_bytes() == data


def test_frames_split_anywhere_still_read(tmp_path):
    data = os.urandom(2500)
    wire = b"".join(frames(data))
    incoming, results = receive(tmp_path, data, [wire[i:i + 7] for i in range(0, len(wire), 7)])
    assert results == [None]


def test_a_cut_stream_keeps_what_was_verified_to_resume_from(tmp_path):
    data = os.urandom(3500)
    incoming, results = receive(tmp_path, data, [b"".join(frames(data)[:2])], lose=True)
    assert results == [stream.CUT]
    assert incoming.next_frame == 2 and incoming.partial.read_bytes() == data[:2000]
    # resumed from frame 2 over a new stream (its own token)
    results = []
    receiver = stream.StreamReceiver(incoming, KEY, "C" * 22, incoming.next_frame, lambda n: None, results.append,
                                    frame_size=SMALL)
    transport = StringTransport()
    receiver.makeConnection(transport)
    assert transport.value().endswith(struct.pack(">Q", 2))
    receiver.dataReceived(b"HELLO chatsvc 1 relay\n" + b"".join(frames(data, token="C" * 22)[2:]))
    assert results == [None]
    assert incoming.finish().read_bytes() == data


@pytest.mark.parametrize("attack", ["tamper", "reorder", "splice", "repeat"])
def test_attacks_on_the_stream_are_detected_and_the_partial_goes(tmp_path, attack):
    data = os.urandom(3500)
    f = frames(data)
    if attack == "tamper":
        f[1] = f[1][:-1] + bytes([f[1][-1] ^ 1])
    elif attack == "reorder":
        f[0], f[1] = f[1], f[0]
    elif attack == "splice":  # frame 2 of another receiver's stream of the same transfer
        f[2] = frames(data, token="B" * 22)[2]
    elif attack == "repeat":
        f.insert(2, f[1])
    incoming, results = receive(tmp_path, data, [b"".join(f)], lose=True)
    assert results and results[0] is not None
    assert not list(tmp_path.glob(".*.partial"))


def test_an_impossible_frame_length_is_refused(tmp_path):
    data = os.urandom(100)
    _, results = receive(tmp_path, data, [struct.pack(">I", 10_000_000) + b"x" * 50])
    assert results and "impossible length" in results[0]


def test_the_sender_starts_where_the_receiver_stands_and_waits_for_room(tmp_path):
    source = tmp_path / "src.bin"
    data = os.urandom(3500)
    source.write_bytes(data)
    results, progress = [], []
    sender = stream.StreamSender(source, KEY, TID, TOKEN, len(data), progress.append, results.append, frame_size=SMALL)
    transport = StringTransport()
    sender.makeConnection(transport)
    assert transport.value() == b"STREAM " + TOKEN.encode() + b" send\n"
    transport.clear()
    sender.dataReceived(b"HELLO chatsvc 1 relay\n" + struct.pack(">Q", 2))  # resume from frame 2
    assert transport.producer is sender and not transport.streaming  # a pull producer
    while not results:
        sender.resumeProducing()  # the transport asks for more when it has room
    assert results == [None]
    body = transport.value()
    (length,) = struct.unpack(">I", body[:4])
    first = body[4:4 + length]
    assert stream.unseal(KEY, TID, TOKEN, 2, False, first) == data[2000:3000]


def test_frame_vector_of_docs_encryption_md():
    # docs/encryption.md, "Files over streams": checked with raw primitives.
    import hmac

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from chatsvc.client.aesgcm import AesGcmCipher
    from chatsvc.client.ciphers import Context

    master = bytes.fromhex("7f32341638165b4d488876d3d63044123558f0abd66356c3c6dbb902bba904c8")
    prk = hmac.new(b"\x00" * 32, master, hashlib.sha256).digest()
    info = b"chatsvc/e2e/v2/file room:#lobby 0123456789abcdef"
    key = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()
    assert key.hex() == "3272c290c4d4bf7605ce63dda68707ade81c5f5db6194e806db9a2f89596a4f0"
    cipher = AesGcmCipher(bytes(32))
    cipher.use_v2(master, "AAECAwQFBgcICQoLDA0ODw")
    assert cipher.file_key(Context("#Lobby", "Alice"), TID) == key
    aad = b"chatsvc/file/v2" + b"\x00\x10" + TID.encode() + b"\x00\x16" + b"A" * 22 + bytes(8) + b"\x01"
    sealed = AESGCM(key).encrypt(bytes(range(12)), b"Hello, file!", aad)
    frame = struct.pack(">I", 12 + len(sealed)) + bytes(range(12)) + sealed
    assert frame.hex() == (
        "00000028000102030405060708090a0be3fe77847d2a4e8ea5d78e8e382a759fc8c68e930e50b62e988d6f13"
    )
    assert stream.seal(key, TID, "A" * 22, 0, True, b"Hello, file!", bytes(range(12))) == frame
