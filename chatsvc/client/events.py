"""
What the protocol reports (``protocol.ClientEvents``), sent to the part of
the session that deals with it.  One line each: the decisions live in the
parts, so that this stays a table.
"""

from __future__ import annotations

from chatsvc.client.text import clean
from chatsvc.grammar import name_key


class SessionEvents:
    """The session's ``ClientEvents``: ``ChatClientProtocol(session.events)``."""

    def __init__(self, session) -> None:
        self.session = session

    def connected(self, protocol) -> None:
        self.session.registration.connected(protocol)

    def hello(self, version: str, text: str) -> None:
        self.session.registration.hello(version, text)

    def caps(self, tokens: list[str] | None) -> None:
        self.session.registration.caps(tokens)

    def nick_accepted(self, nick: str) -> None:
        self.session.registration.nick_accepted(nick)

    def message_accepted(self, target: str, msg_id: int | None = None, cid: str | None = None) -> None:
        s = self.session
        if not target.startswith("#"):
            shown = s.sender.delivered()
            if shown is not None:
                s.output(f"[you → {clean(target)}] {clean(shown)}", target)
            return
        s.delivery.acknowledged(target, msg_id, cid)  # shown when sent; now no longer unacknowledged
        s.typing.maybe_finish_drain()

    def error(self, code: str, text: str, cid: str | None = None) -> None:
        s = self.session
        if code == "unknown-command" and text.startswith("HISTORY"):
            return  # an older server without history: nothing to show
        if code == "unknown-command" and text.startswith("CAPS"):
            s.registration.caps(None)  # an older server: aes1 without join proofs
            return
        if code == "no-such-nick" and cid is None and s.sender.private_pending:
            s.sender.undeliverable(text or code)
            return
        room = s.delivery.refused(cid)
        if room is not None:
            s.problem(f"a message to {clean(room)} was not delivered: {clean(text or code)}")
            s.typing.maybe_finish_drain()
            return
        if s.reclaim.refused(code):
            return  # our nick is still held: asked again later, nothing to show
        if not s.registration.nick_error(code, text):
            s.problem(clean(text) if text else clean(code))

    def joined(self, room: str, nick: str) -> None:
        self.session.presence.joined(room, nick)

    def parted(self, room: str, nick: str, reason: str | None) -> None:
        self.session.presence.parted(room, nick, reason)

    def quit(self, nick: str, reason: str | None) -> None:
        self.session.presence.quit(nick, reason)

    def nick_changed(self, old: str, new: str) -> None:
        self.session.presence.nick_changed(old, new)

    def message(self, sender: str, target: str, payload: str, tags: dict[str, str] | None = None) -> None:
        self.session.receiver.message(sender, target, payload, tags or {})

    def history_gap(self, room: str, oldest: int) -> None:
        self.session.notice(f"some messages in {clean(room)} were missed: the server no longer has them")

    def history_end(self, room: str, more: bool) -> None:
        s = self.session
        s.delivery.history_ended(room)
        s.receiver.history_ended(room, s.delivery.history_mode(room))
        if more and name_key(room) in s.rooms:
            s.protocol.request_history(room, *s.delivery.more_history(room))
        s.sealing.epochs.history_end(room, more)

    def name_list(self, room: str, nicks: list[str]) -> None:
        self.session.presence.name_list(room, nicks)

    def member_count(self, room: str, count: int) -> None:
        self.session.presence.member_count(room, count)

    def room_list(self, rooms: list[tuple[str, int]]) -> None:
        self.session.presence.room_list(rooms)

    def pong(self, token: str | None) -> None:
        self.session.typing.pong(token)

    def topic(self, room: str, setter: str | None, when_ms: int | None, payload: str | None) -> None:
        self.session.receiver.topic_line(room, setter, when_ms, payload)

    def unexpected(self, line: str, reason: str) -> None:
        self.session.problem(f"ignored a malformed line from the server: {clean(reason)}")

    def relay_notice(self, text: str) -> None:
        self.session.relay_notice(text)

    def disconnected(self, reason: str) -> None:
        s = self.session
        s.delivery.connection_lost()
        s.sender.connection_lost()
        s.typing.connection_lost()
        s.transfers.disconnected()
        s.registration.disconnected(reason)
