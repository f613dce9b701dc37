"""
Bulk streams across linked relays: the two ends of a file transfer may
have landed on different relays (a shared port spreads connections at
random), and their bytes must not go through Redis.

The first end of a token claims it in Redis (``SET chatsvc:stream:<token>
<relay> NX``) and waits on its relay as usual.  When the second end comes
to another relay, that relay finds who holds the token and connects to the
holder's *link* port (``--link``, announced with its heartbeat), says
``STREAM <token> <role>`` there as a client would, and splices the client
with that connection.  The holder pairs it with its waiting end like any
other.  So the bytes go client -> relay -> relay -> client, relay to relay
directly, with TCP backpressure all the way (each transport is the other's
producer, as in ``streams.splice``), and clients need no change: the offer
need not say where to connect, which keeps old clients and the browser
working and keeps relays' private addresses private.

The link port takes stream ends only, counted like any other against the
per-address stream limit (by the address of the relay that brings them).
Keep it on the private network (the default is loopback).
"""

from __future__ import annotations

from twisted.internet import endpoints, interfaces, protocol
from twisted.logger import Logger
from zope.interface import implementer

from chatsvc.grammar import format_line
from chatsvc.streams import PAIR_TIMEOUT, StreamPairing
from chatsvc.doors import StreamEnd
from chatsvc.streams import splice, unsplice
from chatsvc.tcpdoor import ChatFactory, LineDoor

STREAM_KEY = "chatsvc:stream:"


class LinkDoor(LineDoor):
    """A connection on the link port: another relay bringing a stream end."""

    __slots__ = ()
    stream_only = True


class LinkFactory(ChatFactory):
    """The link port: the same hub, stream ends only."""

    def buildProtocol(self, addr) -> LinkDoor:
        return LinkDoor(self)

    def startFactory(self) -> None:
        pass  # the hub is the relay port's to start and stop

    def stopFactory(self) -> None:
        pass


class LinkedStreams:
    """The relay's stream pairing, with tokens claimed cluster-wide."""

    log = Logger()

    def __init__(self, pairing: StreamPairing, link, reactor) -> None:
        self.pairing = pairing
        self.link = link  # redislink.ClusterLink
        self.reactor = reactor

    def offer(self, conn, token: str, role: str) -> str | None:
        pairing = self.pairing
        linked = conn.door.stream_only
        refusal = pairing.check(conn, token, role)
        if refusal is not None or linked or token in pairing.waiting or not self.link.up:
            # A partner already waits here, or another relay brings one, or
            # Redis is unreachable (then only ends on this relay can pair).
            return refusal or pairing.offer(conn, token, role)
        pairing.count(conn)
        # (asked with the link's timeout: a Redis that stops answering
        # leaves the end to pair on this relay, never hanging)
        claim = self.link.ask(
            self.link.writer, "SET", STREAM_KEY + token, self.link.relay_id, "NX", "EX", str(int(PAIR_TIMEOUT * 2))
        )
        claim.addCallback(self._claimed, conn, token, role)
        claim.addErrback(lambda f: self._local(conn, token, role))
        return None

    def _local(self, conn, token: str, role: str) -> None:
        if conn.door.closing:
            return
        refusal = self.pairing.offer(conn, token, role, counted=False)  # counted when it came
        if refusal is not None:
            code, _, text = refusal.partition(" ")
            conn.close(code, text + "; closing", "stream refused")

    def _claimed(self, ok, conn, token: str, role: str) -> None:
        if ok is not None or conn.door.closing:
            self._local(conn, token, role)  # ours: the partner comes here, or through our link port
            return
        d = self.link.ask(self.link.writer, "GET", STREAM_KEY + token)
        d.addCallback(self._holder_found, conn, token, role)
        d.addErrback(lambda f: self._local(conn, token, role))

    def _holder_found(self, holder, conn, token: str, role: str) -> None:
        if conn.door.closing:
            return
        if holder is None or holder == self.link.relay_id:
            self._local(conn, token, role)
            return
        d = self.link.address_of(holder)
        d.addCallback(self._connect, conn, token, role, holder)
        d.addErrback(lambda f: self._local(conn, token, role))

    def _connect(self, address, conn, token: str, role: str, holder: str) -> None:
        if conn.door.closing:
            return
        if not address or address == "-":
            self.log.warn("stream {token}: relay {relay} has no link port; the ends cannot pair",
                          token=token[:6], relay=holder)
            self._local(conn, token, role)
            return
        host, _, port = address.rpartition(":")
        endpoint = endpoints.HostnameEndpoint(self.reactor, host.strip("[]"), int(port), timeout=5)
        d = endpoints.connectProtocol(endpoint, RelayLinkEnd(conn.door, token, role))
        d.addErrback(self._unreachable, conn, holder)

    def _unreachable(self, failure, conn, holder: str) -> None:
        self.log.warn("cannot reach relay {relay}'s link port for a stream: {why}", relay=holder,
                      why=failure.getErrorMessage())
        conn.close("stream-failed", "the relay holding the other end is unreachable; closing", "stream failed")

    def ended(self, conn) -> None:
        self.pairing.ended(conn)


@implementer(interfaces.IProtocol)
class RelayLinkEnd(protocol.Protocol):
    """
    Our connection to another relay's link port, carrying one stream end:
    it says which, drops that relay's greeting, and is then spliced with
    the client's door like any stream end.
    """

    def __init__(self, door, token: str, role: str) -> None:
        self.door = door
        self.token, self.role = token, role
        self.peer = "link"
        self.stream = StreamEnd()
        self._greeted = False
        self._buffer = b""

    def connectionMade(self) -> None:
        if self.door.closing:
            self.transport.loseConnection()
            return
        peer = self.transport.getPeer()
        self.peer = f"link {getattr(peer, 'host', '?')}:{getattr(peer, 'port', '')}"
        self.transport.write(format_line("STREAM", self.token, self.role))

    def dataReceived(self, data: bytes) -> None:
        if self.stream.partner is not None:
            self.stream.pass_on(data)
            return
        if not self._greeted:
            head, found, rest = (self._buffer + data).partition(b"\n")
            if not found:
                self._buffer = head[-4096:]
                return
            self._greeted = True  # the other relay's HELLO: the client had ours
            self.stream.hold(rest)
            if self.door.closing:
                self.transport.loseConnection()
                return
            splice(self.door, self)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        if self.stream.partner is not None:
            unsplice(self)
        elif not self.door.closing:
            self.door.conn.close("stream-failed", "the link to the relay holding the other end closed", "stream failed")

    # --- a stream end, as splice() wants one --------------------------------------------------

    def raw_write(self, data: bytes) -> None:
        self.transport.write(data)

    def end_stream(self) -> None:
        self.transport.loseConnection()

    def fast_path(self, on: bool) -> None:
        pass  # not a chat member: nothing writes to it but its partner
