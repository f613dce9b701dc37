"""
What the user types, in order: lines typed before the session is ready
wait (and are shown as pending while offline), commands go to
``commands.py``, text to the current room or person; the end of input
quits once the relay has handled everything sent before it.
"""

from __future__ import annotations

import itertools

from chatsvc.client.text import clean


class Typing:
    def __init__(self, session) -> None:
        self.session = session
        self.pending: list[str] = []  # typed before ready
        self.closed = False  # input ended
        self._told_offline = False
        self._drain_token: str | None = None
        self._drained = False
        self._tokens = itertools.count(1)

    def line(self, text: str) -> None:
        s = self.session
        text = text.rstrip("\r\n")
        if not text.strip() or s.quitting:
            return
        if not s.ready and not self._allowed_early(text):
            self.pending.append(text)
            if s.greeted and not s.online:
                if not self._told_offline:
                    self._told_offline = True
                    s.notice("not connected: what you type is sent once the connection is back")
                if not text.startswith("/") or text.startswith("//"):
                    said = text[1:] if text.startswith("//") else text
                    s.output(f"[{s.current}] {s.wanted_nick}: {clean(said)} (pending)", s.current)
            return
        self.handle(text)

    def _allowed_early(self, text: str) -> bool:
        # A person whose nick was refused fixes it with /nick; quitting is always possible.
        s = self.session
        word = text.split(" ", 1)[0].lower()
        if text.strip().upper() == "FIN" or word == "/quit":
            return True
        return s.interactive and s.online and s.nick is None and word == "/nick"

    def handle(self, text: str) -> None:
        s = self.session
        if text.strip().upper() == "FIN":
            s.quit_session()
        elif text.startswith("//"):
            s.say(text[1:])
        elif not text.startswith("/"):
            s.say(text)
        else:
            s.commands.run(text)

    def flush(self) -> None:
        """Ready (again): what was typed meanwhile goes out, then a closed input quits."""
        s = self.session
        self._told_offline = False
        queued, self.pending = self.pending, []
        for text in queued:
            if s.quitting:
                return
            self.handle(text)
        if self.closed:
            self.drain_then_quit()

    # --- the end of input ------------------------------------------------------------------

    def eof(self) -> None:
        """Input ended: quit once everything typed so far has been handled."""
        s = self.session
        self.closed = True
        if s.ready:
            self.drain_then_quit()
        elif s.registration.nick_refused:
            s.quit_session(status=1)
        # otherwise: once ready (again), flush drains and quits

    def drain_then_quit(self) -> None:
        # The server answers lines in order, so its PONG to this PING means
        # every message sent before it has been handled (and any error shown).
        s = self.session
        if s.quitting or self._drain_token is not None or not s.online:
            return
        self._drain_token = f"eof-{next(self._tokens)}"
        s.protocol.ping(self._drain_token)

    def pong(self, token: str | None) -> None:
        if token is not None and token == self._drain_token:
            self._drained = True
            self.maybe_finish_drain()

    def maybe_finish_drain(self) -> None:
        # Quit once the server has answered the PING and acknowledged every
        # room message (with a store, acknowledgements wait for the disk),
        # and no file is on its way in or out.
        s = self.session
        if self._drained and not s.unacked and not s.transfers.busy():
            s.quit_session()

    def connection_lost(self) -> None:
        self._drain_token = None
        self._drained = False
        self._told_offline = False
