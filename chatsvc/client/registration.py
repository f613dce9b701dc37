"""
The connection's life, from the session's side: the greeting and its
timeout, capabilities and the key for this relay's salt, registering a
nick (and a variant while reconnecting), joining with proofs, the relay's
errors, and what a drop means.  Transitions go through the session's
L{Lifecycle}, whose table refuses impossible ones.
"""

from __future__ import annotations

from chatsvc import grammar
from chatsvc.client.lifecycle import State
from chatsvc.client.sealed import page_address
from chatsvc.client.text import clean
from chatsvc.grammar import name_key


class Registration:
    def __init__(self, session, run_slow) -> None:
        self.session = session
        self._run_slow = run_slow
        self.greeted = False  # some server ever said HELLO
        self.streams = False  # the relay splices bulk streams
        self.topics = False  # the relay keeps topics
        self.page: str | None = None  # where the relay serves the page (CAPS page=), for invitation links
        self.nick_refused = False
        self._nick_tries = 0
        self._hello_call = None
        self._no_greeting = False
        self._keys_ready = None  # aes2 key being derived
        self._told_no_caps = False
        self._warned = False
        self._down_since: float | None = None  # when the connection dropped (the clock's seconds)

    # --- greeting ---------------------------------------------------------------------

    def connected(self, protocol) -> None:
        from chatsvc.client.session import HELLO_TIMEOUT

        s = self.session
        s.protocol = protocol
        if s.quitting:  # a redial that raced with /quit
            protocol.transport.loseConnection()
            return
        s.life.to(State.REGISTERING)
        s.nick = None
        self._nick_tries = 0
        self._no_greeting = False
        self._hello_call = s.clock.callLater(HELLO_TIMEOUT, self.greeting_missing)

    def greeting_missing(self) -> None:
        self._hello_call = None
        self._no_greeting = True
        self.session.protocol.transport.abortConnection()

    def _cancel_hello_timer(self) -> None:
        if self._hello_call is not None and self._hello_call.active():
            self._hello_call.cancel()
        self._hello_call = None

    def hello(self, version: str, text: str) -> None:
        s = self.session
        self._cancel_hello_timer()
        again = self.greeted
        self.greeted = True
        if again:
            down = f" after {downtime(s.clock.seconds() - self._down_since)}" if self._down_since is not None else ""
            s.notice(f"reconnected to {s.server}{down}")
        else:
            s.notice(f"connected to {s.server} ({clean(text)})")
        self._down_since = None
        made = getattr(s.cipher, "identity_made", None)
        if made and not again:
            s.notice(f"made your identity keys in {made}; your fingerprint: {s.cipher.identity.public.fingerprint}")
        if not s.cipher.secure and not self._warned:
            self._warned = True
            s.problem(f"warning: the {s.cipher.scheme} cipher is not secure -- anyone who sees "
                      "the traffic can read it; the default cipher, aes, is secure")
        if version != str(grammar.PROTOCOL_VERSION):
            s.problem(f"server speaks protocol {clean(version)}; this client knows {grammar.PROTOCOL_VERSION}")
        if hasattr(s.cipher, "use_v2"):
            # Answered before OK NICK (the server replies in order), so the
            # key for join proofs is on its way before the first JOIN.
            s.protocol.request_caps()
        s.protocol.register(s.wanted_nick)

    def caps(self, tokens: list[str] | None) -> None:
        """The relay's capabilities (None: an older relay without CAPS)."""
        s = self.session
        values = dict(t.partition("=")[::2] for t in tokens or [])
        if grammar.is_decimal(values.get("max-line", ""), 9):
            s.max_line = int(values["max-line"])
        self.streams = grammar.CAP_STREAMS in values
        self.topics = grammar.CAP_TOPIC in values
        self.page = page_address(values.get("page", ""), s.server)  # for invitation links (sealing.py)
        salt = values.get("salt", "")
        if not salt or not grammar.is_valid_proof(salt) or grammar.CAP_JOIN_PROOF not in values:
            if not self._told_no_caps:
                self._told_no_caps = True
                s.problem("this server is older: messages use scheme aes1 (no per-server salt, and "
                          "anyone who reaches the server can fetch room history to guess the passphrase)")
            return
        if getattr(s.cipher, "salt", None) == salt:
            return  # same server, key already derived

        def failed(failure) -> None:
            s.problem(f"cannot derive the key for this server: {failure.getErrorMessage()}")

        derived = self._run_slow(s.cipher.derive_v2, salt)
        self._keys_ready = derived.addCallbacks(lambda master: s.cipher.use_v2(master, salt), failed)

    # --- registering and joining ----------------------------------------------------------

    def nick_accepted(self, nick: str) -> None:
        s = self.session
        if s.nick is not None or s.quitting:
            return  # later changes are applied from the NICK line that follows
        s.nick = nick
        self.nick_refused = False
        s.life.to(State.JOINING)
        if s.wanted_nick != nick and s.rooms:
            s.notice(f"you are {clean(nick)} ({clean(s.wanted_nick)} was taken meanwhile)")
        elif not s.rooms:  # (back after a drop under the same nick: nothing to say)
            s.notice(f"you are {clean(nick)}")
        if s.rooms:
            rejoin = list(s.rooms.values())  # back after a drop: where we were, the current room kept
            s.presence.awaiting = set(s.rooms)
            s.presence.rejoining = set(s.rooms)  # quietly: no "you joined", no member list
            s.rooms.clear()
        else:
            rejoin = [s.first_room, *s.extra_rooms]
            s.presence.awaiting = {name_key(room) for room in rejoin}
            s.presence.joining(s.first_room, switch=True)
        for room in rejoin:
            self.join(room)

    def join(self, room: str) -> None:
        """JOIN (with a proof, under aes2), and in the same breath ask for the room's history."""
        s = self.session
        if self._keys_ready is not None and not self._keys_ready.called:
            self._keys_ready.addCallback(lambda _: self.join(room) if s.online else None)
            return
        if s.sealing.epochs.earlier(room):
            return  # their history first; this JOIN follows (sealing.py)
        proof = getattr(s.cipher, "join_proof", lambda room: None)(room)
        if proof and not s.sealing.is_sealed(room):  # a sealed room's name is shared with the ordinary one
            s.presence.will_check(room)
        s.protocol.join(room, proof)
        s.protocol.request_history(room, *s.delivery.history_request(room))

    def nick_error(self, code: str, text: str) -> bool:
        """A refused NICK while registering; True if handled here."""
        s = self.session
        if s.nick is not None or code not in ("nick-taken", "nick-invalid"):
            return False
        if code == "nick-taken" and self.greeted and s.rooms and self._nick_tries < 9:
            # Reconnecting: our old connection may still hold the nick until
            # the server notices it is gone.  Take a variant meanwhile.
            self._nick_tries += 1
            base = s.wanted_nick
            candidate = (base[: 32 - 2] + "_" + (str(self._nick_tries) if self._nick_tries > 1 else ""))[:32]
            s.protocol.register(candidate)
            return True
        s.problem(clean(text) if text else clean(code))
        self.nick_refused = True
        if s.interactive:
            s.problem("choose another nick with /nick NAME")
        else:
            s.quit_session(status=1)
        return True

    # --- dropped ---------------------------------------------------------------------------

    def disconnected(self, reason: str) -> None:
        from chatsvc.client.session import HELLO_TIMEOUT

        s = self.session
        self._cancel_hello_timer()
        s.reclaim.stop()
        if self._no_greeting:
            reason = f"no chatsvc greeting within {HELLO_TIMEOUT:g} s — a TLS port? try --tls or --ca-file"
        if s.quitting:
            s.finish(s.exit_status)
            return
        s.life.to(State.OFFLINE if self.greeted and s.reconnect else State.CLOSED)
        if not self.greeted:
            # Never got as far as HELLO: TLS refused, or not a chatsvc server.
            s.problem(f"cannot talk to {s.server}: {clean(reason)}")
            s.finish(1)
            s.stop_connecting()
            return
        if not s.reconnect:
            s.problem(f"connection to {s.server} lost: {clean(reason)}")
            s.finish(1)
            s.stop_connecting()
            return
        # One line now and one when it is back, not one per attempt.
        if self._down_since is None:
            self._down_since = s.clock.seconds()
            s.problem(f"connection to {s.server} lost: {clean(reason)}; reconnecting")
        s.wanted_nick = s.nick or s.wanted_nick
        s.nick = None


def downtime(seconds: float) -> str:
    """How long the connection was down, in words: 4 s, 2 min 5 s, 1 h 3 min."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s" if whole % 60 else f"{whole // 60} min"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
