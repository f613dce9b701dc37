"""
The client's side of the wire: lines in, events out.

L{ChatClientProtocol} knows the protocol grammar and nothing about ciphers
or terminals.  It turns server lines into calls on a L{ClientEvents}
handler, and offers one method per client command.  Payloads pass through
it untouched.
"""

from __future__ import annotations

from typing import Protocol as TypingProtocol

from twisted.internet import defer, error, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.protocols.basic import LineOnlyReceiver

from chatsvc import grammar
from chatsvc.grammar import ProtocolError, format_line

#: The client refuses lines longer than this (bytes).  Far above what any
#: server sends with default settings (64 KiB + 256), it bounds the memory a
#: broken or hostile server can make the client buffer.
CLIENT_MAX_LINE = 4 * 1024 * 1024
#: NAMES and ROOM lines are gathered until their end line, which a hostile
#: relay may never send: at most this many names, and this many rooms.
MAX_GATHERED = 100_000
MAX_GATHERING_ROOMS = 200


class BadName(ValueError):
    """A server line named a nick or room that breaks the name rules."""


def _nick(text: str) -> str:
    if not grammar.is_valid_nick(text):
        raise BadName(f"invalid nick {grammar.printable(text, 40)!r} in a server line")
    return text


def _room(text: str) -> str:
    if not grammar.is_valid_room(text):
        raise BadName(f"invalid room name {grammar.printable(text, 80)!r} in a server line")
    return text


def _target(text: str) -> str:
    return _room(text) if text.startswith("#") else _nick(text)


class ClientEvents(TypingProtocol):
    """What the protocol reports.  Texts are already decoded ``str``."""

    def connected(self, protocol: "ChatClientProtocol") -> None: ...
    def hello(self, version: str, text: str) -> None: ...
    def caps(self, tokens: list[str] | None) -> None: ...
    def nick_accepted(self, nick: str) -> None: ...
    def message_accepted(self, target: str, msg_id: int | None, cid: str | None) -> None: ...
    def error(self, code: str, text: str, cid: str | None = None) -> None: ...
    def joined(self, room: str, nick: str) -> None: ...
    def parted(self, room: str, nick: str, reason: str | None) -> None: ...
    def quit(self, nick: str, reason: str | None) -> None: ...
    def nick_changed(self, old: str, new: str) -> None: ...
    def message(self, sender: str, target: str, payload: str, tags: dict[str, str]) -> None: ...
    def history_gap(self, room: str, oldest: int) -> None: ...
    def history_end(self, room: str, more: bool) -> None: ...
    def name_list(self, room: str, nicks: list[str]) -> None: ...
    def member_count(self, room: str, count: int) -> None: ...
    def room_list(self, rooms: list[tuple[str, int]]) -> None: ...
    def pong(self, token: str | None) -> None: ...
    def topic(self, room: str, setter: str | None, when_ms: int | None, payload: str | None) -> None: ...
    def unexpected(self, line: str, reason: str) -> None: ...
    def disconnected(self, reason: str) -> None: ...


class ChatClientProtocol(LineOnlyReceiver):
    log = Logger()
    delimiter = b"\n"
    MAX_LENGTH = CLIENT_MAX_LINE

    def __init__(self, handler: ClientEvents) -> None:
        self.handler = handler
        self._tags: dict[str, str] = {}
        self._names: dict[str, list[str]] = {}
        self._rooms: list[tuple[str, int]] = []

    # --- connection --------------------------------------------------------

    def connectionMade(self) -> None:
        self.handler.connected(self)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.handler.disconnected(describe_failure(reason))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.handler.unexpected("", f"server sent a line over {self.MAX_LENGTH} bytes; disconnecting")
        self.transport.loseConnection()

    # --- commands ----------------------------------------------------------

    def _send(self, *words: str) -> None:
        self.transport.write(format_line(*words))

    def register(self, nick: str) -> None:
        self._send("NICK", nick)

    def join(self, room: str, proof: str | None = None) -> None:
        self._send("JOIN", room, *([proof] if proof else []))

    def request_caps(self) -> None:
        self._send("CAPS")

    def part(self, room: str, reason: str | None = None) -> None:
        self._send("PART", room, *([reason] if reason else []))

    def send_message(self, target: str, payload: str, cid: str | None = None) -> None:
        self.transport.write(grammar.tagged(format_line("MSG", target, payload), cid=cid))

    def request_names(self, room: str) -> None:
        self._send("NAMES", room)

    def request_topic(self, room: str) -> None:
        self._send("TOPIC", room)

    def set_topic(self, room: str, payload: str) -> None:
        self._send("TOPIC", room, payload)

    def request_rooms(self) -> None:
        self._send("ROOMS")

    def ping(self, token: str) -> None:
        self._send("PING", token)

    def request_history(self, room: str, mode: str, value: int) -> None:
        self._send("HISTORY", room, mode, str(value))

    def quit(self, reason: str | None = None) -> None:
        self._send("QUIT", *([reason] if reason else []))

    # --- server lines ------------------------------------------------------

    def lineReceived(self, raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        text = raw.decode("utf-8", errors="replace")
        try:
            line = grammar.parse_line(text, grammar.SERVER_COMMANDS)
        except ProtocolError as e:
            if e.code == "unknown-command":
                return  # a newer server's line: ignore, as the spec asks
            self.handler.unexpected(text, e.text)
            return
        if line is None:
            return
        self._tags = line.tags
        try:
            getattr(self, "got_" + line.command)(*line.args)
        except (TypeError, ValueError) as e:
            # BadName included: a name that breaks the rules never reaches
            # the session (or the screen: it could hold escape sequences).
            self.handler.unexpected(text, str(e))

    def got_HELLO(self, name: str, version: str, text: str = "") -> None:
        self.handler.hello(version, text)

    def got_CAPS(self, *tokens: str) -> None:
        self.handler.caps(list(tokens))

    def got_OK(self, what: str, arg: str = "", *rest: str) -> None:
        if what == "NICK":
            self.handler.nick_accepted(_nick(arg))
        elif what == "MSG":
            msg_id = int(rest[0]) if rest and grammar.is_decimal(rest[0]) else None
            self.handler.message_accepted(_target(arg), msg_id, self._tags.get("cid"))

    def got_NOTICE(self, text: str) -> None:
        self.handler.relay_notice(text)

    def got_ERROR(self, code: str, text: str = "") -> None:
        self.handler.error(code, text, self._tags.get("cid"))

    def got_NICK(self, old: str, new: str) -> None:
        self.handler.nick_changed(_nick(old), _nick(new))

    def got_JOIN(self, room: str, nick: str) -> None:
        self.handler.joined(_room(room), _nick(nick))

    def got_PART(self, room: str, nick: str, reason: str | None = None) -> None:
        self.handler.parted(_room(room), _nick(nick), reason)

    def got_QUIT(self, nick: str, reason: str | None = None) -> None:
        self.handler.quit(_nick(nick), reason)

    def got_MSG(self, sender: str, target: str, payload: str) -> None:
        self.handler.message(_nick(sender), _target(target), payload, self._tags)

    def got_GAP(self, room: str, oldest: str) -> None:
        self.handler.history_gap(_room(room), _decimal(oldest))

    def got_ENDHISTORY(self, room: str, status: str) -> None:
        self.handler.history_end(_room(room), status == "more")

    def got_NAMES(self, room: str, *nicks: str) -> None:
        key = grammar.name_key(_room(room))
        if key not in self._names and len(self._names) >= MAX_GATHERING_ROOMS:
            raise ValueError("too many NAMES lists left open")
        gathered = self._names.setdefault(key, [])
        if len(gathered) + len(nicks) > MAX_GATHERED:
            raise ValueError("NAMES list too long")
        gathered.extend(_nick(n) for n in nicks)

    def got_ENDNAMES(self, room: str) -> None:
        self.handler.name_list(_room(room), self._names.pop(grammar.name_key(room), []))

    def got_MEMBERS(self, room: str, count: str) -> None:
        self.handler.member_count(_room(room), _decimal(count))

    def got_ROOM(self, room: str, count: str) -> None:
        if len(self._rooms) >= MAX_GATHERED:
            raise ValueError("ROOM list too long")
        self._rooms.append((_room(room), _decimal(count)))

    def got_ENDROOMS(self) -> None:
        rooms, self._rooms = self._rooms, []
        self.handler.room_list(rooms)

    def got_TOPIC(self, room: str, setter: str | None = None, when: str | None = None, payload: str | None = None) -> None:
        if setter is None:
            self.handler.topic(_room(room), None, None, None)
        elif when is None or payload is None:
            raise ValueError("TOPIC: setter, time and payload, or nothing")
        else:
            self.handler.topic(_room(room), _nick(setter), _decimal(when), payload)

    def got_PING(self, token: str | None = None) -> None:
        self._send("PONG", *([token] if token else []))

    def got_PONG(self, token: str | None = None) -> None:
        self.handler.pong(token)


def _decimal(text: str) -> int:
    if not grammar.is_decimal(text):
        raise ValueError(f"not a number: {grammar.printable(text, 24)!r}")
    return int(text)


def describe_failure(failure: Failure | None) -> str:
    """A short, human explanation of why a connection failed or ended."""
    if failure is None:
        return "closed"
    if failure.check(error.ConnectionRefusedError):
        return "connection refused"
    if failure.check(error.DNSLookupError):
        return "host not found"
    if failure.check(error.TimeoutError, defer.TimeoutError):
        return "timed out"
    if failure.check(error.NoRouteError):
        return "no route to host"
    if failure.check(error.ConnectionDone):
        return "closed by the server"
    if failure.check(error.ConnectionLost):
        return "connection lost"
    tls = _describe_tls(failure)
    return tls or failure.getErrorMessage()


def _describe_tls(failure: Failure) -> str | None:
    try:
        from OpenSSL.SSL import Error as SSLError
        from service_identity import VerificationError
    except ImportError:  # pragma: no cover - both come with twisted[tls]
        return None
    if failure.check(VerificationError):
        return "TLS: the server's certificate is not valid for this host name"
    if failure.check(SSLError):
        text = str(failure.value).lower()
        if "certificate verify failed" in text:
            return (
                "TLS: the server's certificate is not trusted "
                "(self-signed or unknown issuer? pass its CA with --ca-file)"
            )
        if "wrong version number" in text or "packet length too long" in text or "record layer" in text:
            return "TLS handshake failed: the server does not seem to speak TLS (drop --tls?)"
        return f"TLS error: {failure.getErrorMessage()}"
    return None


class ChatClientFactory(protocol.Factory):
    """Builds the one protocol of a client session around its handler."""

    noisy = False

    def __init__(self, handler: ClientEvents) -> None:
        self.handler = handler

    def buildProtocol(self, addr) -> ChatClientProtocol:
        p = ChatClientProtocol(self.handler)
        p.factory = self
        return p
