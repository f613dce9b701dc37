"""
A malicious relay for tests: a TCP proxy in front of the real one that
sees every line both ways, can rewrite or drop them, and can inject lines
of its own toward the client -- everything a relay operator (or whoever
owns its machine) could do.  A few dozen lines, as the field notes say.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable

Rewrite = Callable[[bytes], list[bytes]]


class HostileRelay:
    def __init__(self, target_port: int, to_client: Rewrite | None = None) -> None:
        self.target_port = target_port
        self.to_client = to_client or (lambda line: [line])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.clients: list[socket.socket] = []
        self.seen_by_client: list[bytes] = []  # lines the relay sent, before rewriting
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.clients.append(client)
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._lines_down, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        sink.close()

    def _lines_down(self, upstream: socket.socket, client: socket.socket) -> None:
        buffer = b""
        try:
            while data := upstream.recv(65536):
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    with self.lock:
                        self.seen_by_client.append(line)
                    for out in self.to_client(line):
                        client.sendall(out + b"\n")
        except OSError:
            pass
        client.close()

    def inject(self, line: bytes, index: int = -1) -> None:
        """Send a line of the relay's own making to a client."""
        with self.lock:
            self.clients[index].sendall(line + b"\n")

    def lines_seen(self, prefix: bytes) -> list[bytes]:
        with self.lock:
            return [line for line in self.seen_by_client if line.startswith(prefix)]

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            for client in self.clients:
                try:
                    client.close()
                except OSError:
                    pass
