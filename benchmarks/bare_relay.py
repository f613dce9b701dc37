"""
A bare Twisted relay, the floor the benchmark compares chatsvc with: each
line received is written, as is, to every other client.  No rooms, nicks,
ids, limits or history -- only what any Twisted line relay must do.

    python benchmarks/bare_relay.py PORT

It answers each new connection with ``ENDNAMES`` (so the load generator
knows the server has taken it in) and prints ``listening on PORT``.  Used
only by the benchmarks.
"""

from __future__ import annotations

import sys

from twisted.internet import protocol, reactor
from twisted.protocols.basic import LineOnlyReceiver


class Bare(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 65536

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.factory.clients.add(self)
        self.transport.write(b"ENDNAMES\n")

    def connectionLost(self, reason=None) -> None:
        self.factory.clients.discard(self)

    def lineReceived(self, line: bytes) -> None:
        data = line + b"\n"
        for client in self.factory.clients:
            if client is not self:
                client.transport.write(data)


class BareFactory(protocol.ServerFactory):
    protocol = Bare

    def __init__(self) -> None:
        self.clients: set[Bare] = set()


def main() -> None:
    port = reactor.listenTCP(int(sys.argv[1]), BareFactory(), backlog=4096, interface="127.0.0.1")
    print(f"listening on {port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
