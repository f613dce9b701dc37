"""
Files over a bulk stream: one connection per transfer and receiver, beside
the chat connection (docs/protocol.md *Bulk streams*, docs/encryption.md
*Files over streams*).

On the wire, after ``STREAM <token> send|recv``: the receiver first sends
where it stands (8 bytes, big-endian: the index of the first frame it
wants; 0 for a new file, more when resuming), then the sender sends
frames, each

    uint32 length | nonce (12) | AES-256-GCM ciphertext + tag

of up to FRAME_SIZE bytes of the file.  The associated data binds the
transfer id, the stream token (a different one per receiver), the frame
index and whether it is the last frame, so a relay cannot reorder,
truncate, repeat or splice frames from another transfer or another
receiver's stream without the receiver noticing; the whole file's SHA-256
is checked as well.  The sender is a pull producer on its transport: a
receiver that reads slowly slows the sender all the way through the relay.
"""

from __future__ import annotations

import os
import struct
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.internet import interfaces, protocol
from zope.interface import implementer

from chatsvc.client.files import TransferError

#: Bytes of the file per frame: big, so the per-frame costs vanish.
FRAME_SIZE = 1024 * 1024
NONCE = 12
TAG = 16
AAD_LABEL = b"chatsvc/file/v2"
_LENGTH = struct.Struct(">I")
_POSITION = struct.Struct(">Q")


#: What ``done`` is called with when a stream was cut (not corrupted): the
#: frames verified so far are kept, and the transfer can resume.
CUT = "the stream was cut"


class Refused(TransferError):
    """The relay would not pair this stream (the transfer may resume)."""


def frames_for(size: int, frame_size: int = FRAME_SIZE) -> int:
    return max(1, -(-size // frame_size))


def frame_aad(transfer_id: str, token: str, index: int, final: bool) -> bytes:
    tid, tok = transfer_id.encode("ascii"), token.encode("ascii")
    return (
        AAD_LABEL + struct.pack(">H", len(tid)) + tid + struct.pack(">H", len(tok)) + tok
        + struct.pack(">QB", index, 1 if final else 0)
    )


def seal(key: bytes, transfer_id: str, token: str, index: int, final: bool, data: bytes, nonce: bytes) -> bytes:
    sealed = AESGCM(key).encrypt(nonce, data, frame_aad(transfer_id, token, index, final))
    return _LENGTH.pack(NONCE + len(sealed)) + nonce + sealed


def unseal(key: bytes, transfer_id: str, token: str, index: int, final: bool, body: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(body[:NONCE], body[NONCE:], frame_aad(transfer_id, token, index, final))
    except InvalidTag:
        raise TransferError(f"frame {index} does not authenticate (altered, reordered, cut or spliced)")


class _SkipHello:
    """
    Both ends first get the relay's HELLO line, which a stream ignores; a
    refusal (``ERROR stream-…``) comes as a line where the first bytes from
    the partner would be.
    """

    @staticmethod
    def _refused(buffer: bytes) -> None:
        if buffer.startswith(b"ERROR "):
            line = bytes(buffer).split(b"\n", 1)[0]
            raise Refused("the relay refused the stream: " + line[6:].decode("utf-8", "replace"))

    def _take(self, data: bytes) -> bytes:
        if self._greeted:
            return data
        self._head += data
        line, found, rest = self._head.partition(b"\n")
        if not found:
            if len(self._head) > 4096:
                raise TransferError("the relay did not greet the stream")
            return b""
        self._greeted = True
        if line.startswith(b"ERROR "):
            raise Refused("the relay refused the stream: " + line[6:].decode("utf-8", "replace"))
        return rest


@implementer(interfaces.IPullProducer)
class StreamSender(protocol.Protocol, _SkipHello):
    """
    Sends one file to one receiver over a stream.  ``done`` is called with
    None when everything was handed to the relay, or with an error text.
    """

    def __init__(self, path, key: bytes, transfer_id: str, token: str, size: int,
                 progress: Callable[[int], None], done: Callable[[str | None], None],
                 random: Callable[[int], bytes] = os.urandom, frame_size: int = FRAME_SIZE) -> None:
        self.path, self.key, self.transfer_id, self.token, self.size = path, key, transfer_id, token, size
        self.progress, self.done, self.random = progress, done, random
        self.frame_size = frame_size
        self._head, self._greeted, self._position = b"", False, b""
        self.index = 0
        self.frames = frames_for(size, frame_size)
        self.file = None
        self.finished = False

    def connectionMade(self) -> None:
        self.transport.write(b"STREAM %s send\n" % self.token.encode("ascii"))

    def dataReceived(self, data: bytes) -> None:
        try:
            data = self._take(data)
        except Refused:
            self._end(CUT)  # a relay restarting, say: the receiver asks again
            return
        except TransferError as e:
            self._end(str(e))
            return
        if self.file is not None or not data:
            return
        self._position += data
        try:
            self._refused(self._position)
        except Refused:
            self._end(CUT)
            return
        if len(self._position) < _POSITION.size:
            return
        (start,) = _POSITION.unpack(self._position[: _POSITION.size])
        if start > self.frames:
            self._end("the receiver asked for a frame past the end")
            return
        self.index = start
        try:
            self.file = open(self.path, "rb")
            self.file.seek(start * self.frame_size)
        except OSError as e:
            self._end(f"cannot read {self.path}: {e.strerror}")
            return
        self.transport.registerProducer(self, False)

    # IPullProducer: the transport asks for more when it has room.
    def resumeProducing(self) -> None:
        if self.finished or self.file is None:
            return
        if self.index >= self.frames:
            self.transport.unregisterProducer()
            self._end(None)
            return
        try:
            data = self.file.read(self.frame_size)
        except OSError as e:
            self._end(f"cannot read {self.path}: {e.strerror}")
            return
        final = self.index == self.frames - 1
        self.transport.write(seal(self.key, self.transfer_id, self.token, self.index, final, data, self.random(NONCE)))
        self.index += 1
        self.progress(min(self.index * self.frame_size, self.size))

    def stopProducing(self) -> None:
        # The transport is going away (it says so before connectionLost).
        self._end(None if self.index >= self.frames else CUT)

    def connectionLost(self, reason=None) -> None:
        self._end(None if self.index >= self.frames else CUT)

    def _end(self, error: str | None) -> None:
        if self.finished:
            return
        self.finished = True
        if self.file is not None:
            self.file.close()
        if self.transport is not None and self.transport.connected:
            self.transport.loseConnection()
        self.done(error)


class StreamReceiver(protocol.Protocol, _SkipHello):
    """
    Receives one file over a stream into an L{files.Incoming}, from frame
    ``start`` on.  ``done`` is called with None once the whole file was
    verified, or with an error text.
    """

    def __init__(self, incoming, key: bytes, token: str, start: int,
                 progress: Callable[[int], None], done: Callable[[str | None], None],
                 frame_size: int = FRAME_SIZE) -> None:
        self.incoming, self.key, self.token = incoming, key, token
        self.progress, self.done = progress, done
        self.frame_size = frame_size
        self.max_body = NONCE + frame_size + TAG  # a frame's length field can say no more
        self.index = self.start = start
        self.frames = frames_for(incoming.size, frame_size)
        self._head, self._greeted = b"", False
        self._buffer = bytearray()
        self.finished = False

    def connectionMade(self) -> None:
        self.transport.write(b"STREAM %s recv\n" % self.token.encode("ascii") + _POSITION.pack(self.index))

    def dataReceived(self, data: bytes) -> None:
        if self.finished:
            return
        try:
            data = self._take(data)
            self._buffer += data
            self._frames()
        except Refused:
            self._end(CUT)  # not the data's fault: try again with a new stream
        except TransferError as e:
            self._end(str(e))

    def _frames(self) -> None:
        buffer = self._buffer
        if self.index == self.start:
            self._refused(buffer)
        while len(buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer)
            if not NONCE + TAG <= length <= self.max_body:
                raise TransferError("a frame of impossible length")
            if len(buffer) < _LENGTH.size + length:
                return
            body = bytes(buffer[_LENGTH.size : _LENGTH.size + length])
            del buffer[: _LENGTH.size + length]
            if self.index >= self.frames:
                raise TransferError("more frames than announced")
            final = self.index == self.frames - 1
            data = unseal(self.key, self.incoming.id, self.token, self.index, final, body)
            complete = self.incoming.add_frame(self.index, data, self.frame_size)
            self.index += 1
            self.progress(self.incoming.received)
            if complete:
                self._end(None)
                return

    def connectionLost(self, reason=None) -> None:
        self._end(CUT)

    def _end(self, error: str | None) -> None:
        if self.finished:
            return
        self.finished = True
        if error == CUT:
            self.incoming.pause()  # what was verified stays, to resume from
        elif error is not None:
            self.incoming.fail()  # nothing unverified is kept
        if self.transport is not None and self.transport.connected:
            self.transport.loseConnection()
        self.done(error)
