"""
Taking our nick back.  Back after a drop (or on another relay after a
failover) as ``rita_`` because the old connection -- a ghost -- still held
``rita``, the client asks for ``rita`` again the moment the relay says the
ghost is gone (its QUIT, or a NICK away from it), and every RECLAIM_EVERY
seconds meanwhile in case the ghost shared no room with us.  A refusal
while reclaiming is silent; a nick the user chose (``/nick``) becomes the
one wanted.  The page's ``registration.js`` does the same.
"""

from __future__ import annotations

from chatsvc.grammar import name_key

#: How often to ask for the wanted nick while under a variant (seconds).
RECLAIM_EVERY = 30.0


class Reclaim:
    def __init__(self, session) -> None:
        self.session = session
        self._call = None  # the next try
        self._asking = False  # a NICK for the wanted nick is on its way

    def _missing(self) -> bool:
        s = self.session
        return s.online and s.nick is not None and name_key(s.nick) != name_key(s.wanted_nick)

    def consider(self) -> None:
        """Ready, or our nick changed: under a variant, try again later."""
        if not self._missing():
            self.stop()
            return
        if self._call is None or not self._call.active():
            self._call = self.session.clock.callLater(RECLAIM_EVERY, self.try_now)

    def freed(self, nick: str) -> None:
        """``nick`` quit or took another name: if it is ours, ask for it now."""
        if self._missing() and name_key(nick) == name_key(self.session.wanted_nick):
            self.try_now()

    def try_now(self) -> None:
        self._call = None
        if self._missing() and not self._asking:
            self._asking = True
            self.session.protocol.register(self.session.wanted_nick)

    def refused(self, code: str) -> bool:
        """An ERROR for a NICK: True if it answered ours (then nothing is shown)."""
        if not self._asking or code not in ("nick-taken", "nick-invalid"):
            return False
        self._asking = False
        self.consider()
        return True

    def answered(self) -> None:
        """Our nick changed (the relay's NICK line)."""
        self._asking = False
        self.consider()

    def stop(self) -> None:
        """Disconnected, quitting, or nothing to reclaim."""
        self._asking = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
