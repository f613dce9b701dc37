"""
File transfer between clients, as ordinary encrypted chat messages.

The relay sees only ``MSG`` lines: a transfer is a handful of message kinds
whose plaintext (before the cipher encrypts it) is a marker and a JSON
object.  ``docs/protocol.md`` (File transfer) describes the exchange; this
module holds the parts with no networking in them: the message format,
reading a file into chunks, checking and reassembling what arrives, safe
file names and image sniffing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

#: Plaintext that starts with this is a file-transfer message, not text.
#: (The client never sends typed text starting with a control character.)
MARKER = "\x1fchatsvc-file:"
#: Raw bytes per chunk: base64 in JSON, encrypted, base64 again, the line
#: stays under the relay's default 64 KiB limit.
CHUNK_SIZE = 32 * 1024
MAX_NAME_CHARS = 100


class TransferError(Exception):
    """A transfer cannot go on; the message says why, for the user."""


def encode(kind: str, **fields) -> str:
    return MARKER + json.dumps({"t": kind, **fields}, separators=(",", ":"))


def decode(text: str) -> dict | None:
    """The fields of a file message, or None if ``text`` is chat text."""
    if not text.startswith(MARKER):
        return None
    try:
        fields = json.loads(text[len(MARKER) :])
    except ValueError:
        raise TransferError("damaged file message")
    if (
        not isinstance(fields, dict)
        or not isinstance(fields.get("t"), str)
        or not re.fullmatch(r"[0-9a-f]{16}", str(fields.get("id", "")))
    ):
        raise TransferError("damaged file message")
    return fields


def new_transfer_id() -> str:
    return os.urandom(8).hex()


# --- names --------------------------------------------------------------------

_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)


def safe_name(name: str) -> str:
    """
    Reduce a sender's file name to a harmless base name: no directories, no
    ``..``, no control or invisible characters, not hidden, not a device
    name, at most MAX_NAME_CHARS characters (the extension kept).
    """
    name = unicodedata.normalize("NFC", str(name))
    name = name.replace("\\", "/").split("/")[-1]
    cleaned = "".join(
        ch if (ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Zl", "Zp")) else "_"
        for ch in name
    )
    cleaned = cleaned.strip().strip(".").strip()
    cleaned = re.sub(r"[<>:\"|?*]", "_", cleaned)
    if not cleaned or _WINDOWS_RESERVED.match(cleaned):
        cleaned = "file" + ("_" + cleaned if cleaned else "")
    if len(cleaned) > MAX_NAME_CHARS:
        stem, dot, ext = cleaned.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            cleaned = stem[: MAX_NAME_CHARS - len(ext) - 1] + "." + ext
        else:
            cleaned = cleaned[:MAX_NAME_CHARS]
    return cleaned


def unique_path(directory: Path, name: str) -> Path:
    """``directory/name``, or ``name (1)``, ``name (2)``... never an existing file."""
    candidate = directory / name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    n = 1
    while candidate.exists():
        candidate = directory / (f"{stem} ({n}).{ext}" if ext else f"{stem} ({n})")
        n += 1
    return candidate


# --- images -------------------------------------------------------------------


def sniff_image(head: bytes) -> tuple[str, int, int] | None:
    """(kind, width, height) for PNG, JPEG, GIF and WebP, by content."""
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            w, h = struct.unpack(">II", head[16:24])
            return "PNG", w, h
        if head[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", head[6:10])
            return "GIF", w, h
        if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
            chunk = head[12:16]
            if chunk == b"VP8 ":
                w, h = struct.unpack("<HH", head[26:30])
                return "WebP", w & 0x3FFF, h & 0x3FFF
            if chunk == b"VP8L":
                bits = int.from_bytes(head[21:25], "little")
                return "WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8X":
                w = int.from_bytes(head[24:27], "little") + 1
                h = int.from_bytes(head[27:30], "little") + 1
                return "WebP", w, h
            return "WebP", 0, 0
        if head.startswith(b"\xff\xd8"):
            return _jpeg_size(head)
    except (struct.error, IndexError):
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[str, int, int]:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return "JPEG", w, h
        i += 2 + length
    return "JPEG", 0, 0


def looks_like_text(head: bytes) -> bool:
    """UTF-8 with no control characters but line ends and tabs: a text file."""
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not just a character cut at the end
            return False
        text = head[: e.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\n\r\t" for ch in text)


def describe(size: int, image: tuple[str, int, int] | None, head: bytes = b"") -> str:
    if image:
        kind = f"{image[0]} image, {image[1]}×{image[2]}" if image[1] else f"{image[0]} image"
    else:
        kind = "text" if looks_like_text(head) else "file"
    return f"{kind}, {human_size(size)}"


def human_size(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} bytes"


# --- sending ------------------------------------------------------------------


@dataclass
class Outgoing:
    """A file offered by this client."""

    id: str
    path: Path
    name: str
    size: int
    sha256: str
    target: str  # room or nick it was offered to
    image: tuple[str, int, int] | None
    head: bytes = b""  # the first 64 KiB, to say what it is

    @classmethod
    def open(cls, path: str, target: str) -> "Outgoing":
        p = Path(path).expanduser()
        try:
            if not p.exists():
                raise TransferError(f"{path}: no such file")
            if not p.is_file():
                raise TransferError(f"{path}: not a file (a folder?)")
            digest = hashlib.sha256()
            with p.open("rb") as f:
                head = f.read(64 * 1024)
                digest.update(head)
                for block in iter(lambda: f.read(1024 * 1024), b""):
                    digest.update(block)
            size = p.stat().st_size
        except OSError as e:
            raise TransferError(f"cannot read {path}: {e.strerror}")
        return cls(new_transfer_id(), p, safe_name(p.name), size, digest.hexdigest(), target, sniff_image(head), head)

    @property
    def chunks(self) -> int:
        return max(1, -(-self.size // CHUNK_SIZE))

    #: set by the sender when files can go over a bulk stream here
    streamable = False

    def offer(self) -> str:
        extra = {"stream": 1} if self.streamable else {}
        return encode(
            "offer", id=self.id, name=self.name, size=self.size, sha256=self.sha256,
            type=self.image[0] if self.image else "file", chunks=self.chunks, **extra,
        )

    def chunk(self, index: int) -> str:
        with self.path.open("rb") as f:
            f.seek(index * CHUNK_SIZE)
            data = f.read(CHUNK_SIZE)
        return encode("chunk", id=self.id, i=index, d=base64.b64encode(data).decode("ascii"))


# --- receiving ------------------------------------------------------------------


class Incoming:
    """
    One file being received: chunks must come in order, each exactly once,
    never beyond the announced size; the whole must match the announced
    SHA-256.  Anything else raises L{TransferError} and the partial file is
    removed.
    """

    def __init__(self, offer: dict, sender: str, directory: Path) -> None:
        try:
            self.id = str(offer["id"])
            self.size = int(offer["size"])
            self.sha256 = str(offer["sha256"]).lower()
            self.chunks = int(offer["chunks"])
        except (KeyError, TypeError, ValueError):
            raise TransferError("damaged file offer")
        if self.size < 0 or self.chunks != max(1, -(-self.size // CHUNK_SIZE)) or not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise TransferError("inconsistent file offer")
        self.sender = sender
        self.name = safe_name(offer.get("name", "file"))
        self.directory = directory
        self.next_index = 0
        self.received = 0
        self.digest = hashlib.sha256()
        self.head = b""
        self.partial: Path | None = None
        self.file = None
        self.last_heard = 0.0  # when a chunk last came (the caller's clock)
        self.next_frame = 0  # over a bulk stream: the next frame expected
        self.stream_key: bytes | None = None  # set when it comes over bulk streams
        self.stream_target = ""  # the room or nick the file was offered to
        self.resumes = 0  # times a cut stream was picked up again

    def start(self) -> None:
        """
        Check the folder and the disk.  The hidden partial file is opened
        with the first chunk, so an offer alone costs no file handle.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.directory).free
        except OSError as e:
            raise TransferError(f"cannot use the downloads folder {self.directory}: {e.strerror}")
        if free < self.size + 16 * 1024 * 1024:
            raise TransferError(
                f"not enough disk space in {self.directory} ({human_size(free)} free, {human_size(self.size)} needed)"
            )
        if not os.access(self.directory, os.W_OK):
            raise TransferError(f"cannot write in the downloads folder {self.directory}")

    def pause(self) -> None:
        """A stream was cut: close the partial file, keep what it holds."""
        if self.file is not None:
            self.file.close()
            self.file = None

    def _open(self) -> None:
        if self.partial is not None:  # resuming: go on where it stopped
            try:
                self.file = self.partial.open("ab")
            except OSError as e:
                self.fail()
                raise TransferError(f"cannot write in the downloads folder {self.directory}: {e.strerror}")
            return
        partial = self.directory / f".{self.id}.partial"
        try:
            self.file = partial.open("xb")
        except OSError as e:
            self.fail()
            raise TransferError(f"cannot write in the downloads folder {self.directory}: {e.strerror}")
        self.partial = partial

    def add(self, fields: dict) -> bool:
        """Take one chunk; True when the file is complete (and verified)."""
        try:
            index = int(fields["i"])
            data = base64.b64decode(fields["d"], validate=True)
        except (KeyError, TypeError, ValueError):
            self.fail()
            raise TransferError("damaged chunk")
        if index != self.next_index:
            self.fail()
            what = "repeated" if index < self.next_index else "missing or out of order"
            raise TransferError(f"chunk {index} {what} (expected {self.next_index})")
        if self.received + len(data) > self.size:
            self.fail()
            raise TransferError("more data than announced")
        self._write(data)
        self.next_index += 1
        if self.next_index < self.chunks:
            return False
        if self.received != self.size:
            self.fail()
            raise TransferError("less data than announced")
        if self.digest.hexdigest() != self.sha256:
            self.fail()
            raise TransferError("the file does not match its checksum")
        return True

    def _write(self, data: bytes) -> None:
        """Checked data goes to the partial file and into the running hash."""
        if self.file is None:
            self._open()
        self.file.write(data)
        self.digest.update(data)
        if len(self.head) < 64 * 1024:
            self.head += data[: 64 * 1024 - len(self.head)]
        self.received += len(data)

    def add_frame(self, index: int, data: bytes, frame_size: int) -> bool:
        """
        Take one verified frame of a bulk stream (``stream.py``); True when
        the file is complete and matches its SHA-256.
        """
        frames = max(1, -(-self.size // frame_size))
        last = index == frames - 1
        if index != self.next_frame:
            self.fail()
            raise TransferError(f"frame {index} out of order (expected {self.next_frame})")
        if (not last and len(data) != frame_size) or self.received + len(data) > self.size:
            self.fail()
            raise TransferError(f"frame {index} has the wrong size")
        self._write(data)
        self.next_frame += 1
        if not last:
            return False
        if self.received != self.size or self.digest.hexdigest() != self.sha256:
            self.fail()
            raise TransferError("the file does not match its checksum")
        return True

    def finish(self) -> Path:
        """Move the verified file to its final, never-overwriting name."""
        if self.file is None:
            self._open()  # an empty file: no chunk data ever came
        self.file.close()
        final = unique_path(self.directory, self.name)
        os.replace(self.partial, final)  # same directory: atomic
        # unique_path then replace can race with another writer; fine for
        # one client per folder, which is what we support.
        return final

    def fail(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.partial is not None:
            try:
                self.partial.unlink()
            except OSError:
                pass

    @property
    def image(self) -> tuple[str, int, int] | None:
        return sniff_image(self.head)
