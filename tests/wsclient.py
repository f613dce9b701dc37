"""
A small blocking WebSocket client for tests of the web door: enough of
RFC 6455 to speak the chat protocol over it, and to misbehave on purpose
(binary frames, oversized messages, invalid UTF-8, a foreign Origin).
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time


class Refused(Exception):
    """The server answered the handshake with something other than 101."""


class Closed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed with {code}: {reason}")
        self.code = code
        self.reason = reason


class WsClient:
    def __init__(self, port: int, origin: str | None = "auto", path: str = "/chat", host: str = "127.0.0.1",
                 headers: dict[str, str] | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        if origin == "auto":
            origin = f"http://{host}:{port}"
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if origin is not None:
            lines.append(f"Origin: {origin}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Refused(self.buffer.decode(errors="replace"))
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.response_head = head.decode("latin-1")
        status = head.split(b"\r\n", 1)[0].decode()
        if " 101 " not in status + " ":
            raise Refused(status)

    # --- frames ------------------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        mask = os.urandom(4)
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    def send_binary(self, data: bytes) -> None:
        self.send_frame(0x2, data)

    def recv_bytes(self, n: int, timeout: float = 10.0) -> bytes:
        """Binary messages until n bytes came (a stream has no message boundaries)."""
        out = b""
        while len(out) < n:
            message = self.recv(timeout)
            assert isinstance(message, bytes), f"a text message in a stream: {message!r}"
            out += message
        return out

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self.buffer) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"waiting for {n} bytes; have {self.buffer[:100]!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed(None, "connection dropped")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def recv(self, timeout: float = 10.0) -> str | bytes:
        """The next message (text as str, binary as bytes); Closed when the server closes."""
        deadline = time.monotonic() + timeout
        while True:
            b0, b1 = self._read(2, deadline)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2, deadline))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8, deadline))[0]
            payload = self._read(n, deadline)
            opcode = b0 & 0x0F
            if opcode == 0x1:
                return payload.decode()
            if opcode == 0x2:
                return payload  # binary: bytes
            if opcode == 0x8:
                try:
                    self.send_frame(0x8, payload[:2])  # answer the close, as a browser does
                except OSError:
                    pass
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(code, payload[2:].decode(errors="replace"))
            if opcode == 0x9:
                self.send_frame(0xA, payload)

    def expect_close(self, timeout: float = 10.0) -> Closed:
        try:
            while True:
                self.recv(timeout)
        except Closed as e:
            return e

    def read_until(self, prefix: str, timeout: float = 10.0) -> list[str]:
        seen = []
        while True:
            line = self.recv(timeout)
            seen.append(line)
            if line.split(" ", 1)[-1 if line.startswith("@") else 0].startswith(prefix) or line.startswith(prefix):
                return seen

    def close(self) -> None:
        self.sock.close()
