"""Level 1: file transfer pieces -- names, images, chunking and checking."""

from __future__ import annotations

import base64
import hashlib
import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatsvc.client import files
from chatsvc.client.files import CHUNK_SIZE, Incoming, Outgoing, TransferError


@pytest.mark.parametrize(
    "hostile, safe",
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("/absolute/path/report.pdf", "report.pdf"),
        (".bashrc", "bashrc"),
        ("...", "file"),
        ("..", "file"),
        ("", "file"),
        ("name\x00with\x07controls\x1b[2J.txt", "name_with_controls_[2J.txt"),
        ("evil\u202etxt.exe", "evil_txt.exe"),  # right-to-left override
        ("CON", "file_CON"),
        ("nul.txt", "file_nul.txt"),
        ("a:b*c?.txt", "a_b_c_.txt"),
        ("  spaced name .txt  ", "spaced name .txt"),
        ("photo.jpg", "photo.jpg"),
        ("café ñandú.png", "café ñandú.png"),
    ],
)
def test_safe_name(hostile, safe):
    assert files.safe_name(hostile) == safe


def test_safe_name_limits_length_and_keeps_the_extension():
    name = files.safe_name("x" * 500 + ".tar.gz")
    assert len(name) <= files.MAX_NAME_CHARS and name.endswith(".gz")


@given(st.text(max_size=300))
def test_safe_name_is_always_a_plain_base_name(text):
    name = files.safe_name(text)
    assert name and "/" not in name and "\\" not in name
    assert not name.startswith(".") and name not in ("..", ".")
    assert all(ch.isprintable() for ch in name)
    assert len(name) <= files.MAX_NAME_CHARS


def test_unique_path_never_overwrites(tmp_path):
    (tmp_path / "a.txt").write_text("1")
    (tmp_path / "a (1).txt").write_text("2")
    (tmp_path / "noext").write_text("3")
    assert files.unique_path(tmp_path, "a.txt").name == "a (2).txt"
    assert files.unique_path(tmp_path, "noext").name == "noext (1)"
    assert files.unique_path(tmp_path, "new.txt").name == "new.txt"


def png(w, h):
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", w, h) + b"\x08\x02\x00\x00\x00"


def jpeg(w, h):
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, h, w, 3) + b"\x00" * 9
    return b"\xff\xd8" + app0 + sof


@pytest.mark.parametrize(
    "head, expected",
    [
        (png(640, 480), ("PNG", 640, 480)),
        (b"GIF89a" + struct.pack("<HH", 32, 16) + b"\x00" * 8, ("GIF", 32, 16)),
        (jpeg(1024, 768), ("JPEG", 1024, 768)),
        (b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x00" * 8 + (99).to_bytes(3, "little") + (49).to_bytes(3, "little"), ("WebP", 100, 50)),
        (b"plain text, not an image", None),
        (b"\x89PNG but broken", None),
    ],
)
def test_sniff_image(head, expected):
    assert files.sniff_image(head) == expected


# --- chunking and reassembly --------------------------------------------------


@pytest.fixture
def outgoing(tmp_path):
    data = os.urandom(3 * CHUNK_SIZE + 1000)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    return Outgoing.open(str(source), "#room"), data


def fields_of(text):
    return files.decode(text)


def receiver(outgoing, directory):
    incoming = Incoming(fields_of(outgoing.offer()), "alice", directory)
    incoming.start()
    return incoming


def test_round_trip(outgoing, tmp_path):
    out, data = outgoing
    inbox = tmp_path / "in"
    incoming = receiver(out, inbox)
    results = [incoming.add(fields_of(out.chunk(i))) for i in range(out.chunks)]
    assert results == [False] * (out.chunks - 1) + [True]
    final = incoming.finish()
    assert final.read_bytes() == data and final.name == "data.bin"
    assert list(inbox.iterdir()) == [final]  # the partial file is gone


def test_empty_file(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    out = Outgoing.open(str(tmp_path / "empty"), "#r")
    incoming = receiver(out, tmp_path / "in")
    assert incoming.add(fields_of(out.chunk(0))) is True
    assert incoming.finish().read_bytes() == b""


@pytest.mark.parametrize("fault", ["missing", "duplicated", "reordered", "changed", "extra"])
def test_broken_streams_are_detected_and_cleaned_up(outgoing, tmp_path, fault):
    out, data = outgoing
    inbox = tmp_path / "in"
    incoming = receiver(out, inbox)
    chunks = [fields_of(out.chunk(i)) for i in range(out.chunks)]
    if fault == "missing":
        order = [chunks[0], chunks[2]]
    elif fault == "duplicated":
        order = [chunks[0], chunks[1], chunks[1]]
    elif fault == "reordered":
        order = [chunks[1], chunks[0]]
    elif fault == "changed":
        raw = bytearray(base64.b64decode(chunks[1]["d"]))
        raw[10] ^= 1
        chunks[1]["d"] = base64.b64encode(bytes(raw)).decode()
        order = chunks
    else:  # more data than announced
        chunks[-1]["d"] = base64.b64encode(base64.b64decode(chunks[-1]["d"]) + b"more").decode()
        order = chunks
    with pytest.raises(TransferError):
        for fields in order:
            incoming.add(fields)
    assert list(inbox.iterdir()) == []


def test_inconsistent_offers_are_refused(outgoing, tmp_path):
    out, _ = outgoing
    offer = fields_of(out.offer())
    for bad in ({"size": -1}, {"chunks": 99}, {"sha256": "xyz"}, {"size": "lots"}):
        with pytest.raises(TransferError):
            Incoming({**offer, **bad}, "alice", tmp_path)


def test_not_enough_disk_space(outgoing, tmp_path, monkeypatch):
    out, _ = outgoing
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 5))
    with pytest.raises(TransferError, match="not enough disk space"):
        receiver(out, tmp_path / "in")


def test_chat_text_is_not_a_file_message():
    assert files.decode("hello") is None
    with pytest.raises(TransferError):
        files.decode(files.MARKER + "{not json")
    with pytest.raises(TransferError):
        files.decode(files.MARKER + '["no", "object"]')


def test_a_chunk_line_fits_the_relay_limit(outgoing):
    from chatsvc.client.aesgcm import AesGcmCipher
    from chatsvc.client.ciphers import Context
    from chatsvc.grammar import DEFAULT_MAX_LINE, format_line

    out, _ = outgoing
    payload = AesGcmCipher(bytes(32)).encrypt(out.chunk(0), Context("x" * 32, "y" * 32))
    assert len(format_line("MSG", "x" * 32, payload)) - 1 <= DEFAULT_MAX_LINE


def test_offer_carries_the_checksum(outgoing):
    out, data = outgoing
    assert fields_of(out.offer())["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("bad_id", ["", "xyz", "0123456789abcdeg", "\x1b[2J0123456789ab", 12345])
def test_transfer_ids_are_checked(bad_id):
    with pytest.raises(TransferError):
        files.decode(files.MARKER + '{"t":"offer","id":%s}' % __import__("json").dumps(bad_id))


def test_a_text_file_is_described_as_text():
    from chatsvc.client import files as f

    assert f.describe(27, None, b"hello\nworld\tok\n") == "text, 27 bytes"
    assert f.describe(27, None, "héllo".encode()[:2]) == "text, 27 bytes"  # a character cut at the end
    assert f.describe(27, None, b"\x00\x01binary") == "file, 27 bytes"
    assert f.describe(27, None, b"\x1b[2Jesc") == "file, 27 bytes"
    assert f.describe(27, None) == "file, 27 bytes"
