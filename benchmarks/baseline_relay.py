"""
The original chatsvc server, rebuilt for comparison: a thread per client,
blocking sockets, and every raw ``recv(1024)`` chunk relayed to every other
client as it arrives.  No framing, no rooms, no nicks.

    python benchmarks/baseline_relay.py PORT

It prints ``listening on PORT`` once ready.  Used only by the benchmarks.
"""

from __future__ import annotations

import socket
import sys
import threading

clients: list[socket.socket] = []
lock = threading.Lock()


def serve(conn: socket.socket) -> None:
    with lock:
        clients.append(conn)
    try:
        while True:
            chunk = conn.recv(1024)
            if not chunk:
                break
            with lock:
                others = [c for c in clients if c is not conn]
            for other in others:
                try:
                    other.sendall(chunk)
                except OSError:
                    pass
    except OSError:
        pass
    finally:
        with lock:
            if conn in clients:
                clients.remove(conn)
        conn.close()


def main() -> None:
    threading.stack_size(256 * 1024)  # 10,000 threads must fit
    port = int(sys.argv[1])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    print(f"listening on {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
