"""
The Twisted side of the relay: one L{ChatProtocol} per connection, and the
L{ChatFactory} that carries the shared L{Relay} state.

The protocol turns bytes into lines, lines into commands, and commands into
calls on the relay; it never looks inside message payloads.
"""

from __future__ import annotations

from twisted.internet import protocol
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

import chatsvc
from chatsvc import grammar
from chatsvc.grammar import ProtocolError, error_line, format_line
from chatsvc.relay import Member, Relay, RelayError

# Commands a connection may use before it has a nick.
_UNREGISTERED_OK = frozenset({"NICK", "PING", "QUIT"})


class ChatProtocol(LineOnlyReceiver):
    """One client connection speaking protocol v1."""

    log = Logger()
    delimiter = b"\n"

    factory: ChatFactory
    member: Member | None = None
    _buffer = b""

    # --- connection lifecycle ---------------------------------------------

    def connectionMade(self) -> None:
        self.max_line = self.factory.relay.max_line
        peer = self.transport.getPeer()
        peer_text = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        self.member = Member(self.transport.write, peer_text)
        self.log.info("connection from {peer}", peer=peer_text)
        self.transport.write(
            format_line(
                "HELLO",
                "chatsvc",
                str(grammar.PROTOCOL_VERSION),
                f"chatsvc/{chatsvc.__version__} relay; message bodies stay end-to-end encrypted",
            )
        )

    def connectionLost(self, reason: object = None) -> None:
        member, self.member = self.member, None
        if member is not None:
            self.factory.relay.quit(member, "connection lost")
            self.log.info("connection from {peer} closed", peer=member.peer)

    # --- framing -----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        # One split per chunk (not per line, as LineReceiver does), so a big
        # read costs linear time.  A trailing "\r" is allowed in lines, so the
        # buffer may hold max_line + 1 bytes before it must end.
        if self.transport.disconnecting:
            return
        lines = (self._buffer + data).split(self.delimiter)
        self._buffer = lines.pop()
        for line in lines:
            if self.transport.disconnecting:
                return
            self.lineReceived(line)
        if len(self._buffer) > self.max_line + 1:
            self._buffer = b""
            self.lineLengthExceeded(b"")

    def lineLengthExceeded(self, line: bytes) -> None:
        self.transport.write(
            error_line("line-too-long", f"lines are limited to {self.max_line} bytes; closing")
        )
        self.transport.loseConnection()

    def lineReceived(self, raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self.max_line:
            self.lineLengthExceeded(raw)
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.transport.write(error_line("bad-encoding", "lines must be UTF-8; line dropped"))
            return
        try:
            self.handle(text)
        except (ProtocolError, RelayError) as e:
            self.transport.write(error_line(e.code, e.text))
        except Exception:
            # A bug must cost at most this one line, never the server or
            # other clients.
            self.log.failure("internal error handling a line from {peer}", peer=self.member.peer)
            self.transport.write(error_line("server-error", "internal error; line dropped"))

    # --- commands ----------------------------------------------------------

    def handle(self, text: str) -> None:
        line = grammar.parse_line(text)
        if line is None:
            return
        if self.member.nick is None and line.command not in _UNREGISTERED_OK:
            raise ProtocolError("not-registered", f"{line.command} needs a nick first: send NICK <nick>")
        getattr(self, "do_" + line.command)(*line.args)

    def do_NICK(self, nick: str) -> None:
        self.factory.relay.set_nick(self.member, nick)

    def do_JOIN(self, room: str) -> None:
        self.factory.relay.join(self.member, room)

    def do_PART(self, room: str, reason: str | None = None) -> None:
        self.factory.relay.part(self.member, room, reason)

    def do_MSG(self, target: str, payload: str) -> None:
        self.factory.relay.message(self.member, target, payload)

    def do_NAMES(self, room: str) -> None:
        self.factory.relay.send_names(self.member, room)

    def do_ROOMS(self) -> None:
        self.factory.relay.list_rooms(self.member)

    def do_PING(self, token: str | None = None) -> None:
        self.transport.write(format_line("PONG", token) if token else format_line("PONG"))

    def do_QUIT(self, reason: str | None = None) -> None:
        member, self.member = self.member, None
        self.factory.relay.quit(member, reason or "")
        # Keep a placeholder so lines still in this read are not handled as
        # if from a fresh connection; disconnecting stops them anyway.
        self.member = Member(lambda line: None, member.peer)
        self.transport.loseConnection()


class ChatFactory(protocol.ServerFactory):
    protocol = ChatProtocol
    noisy = False  # ListeningService already logs where we listen

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
