"""
What goes out: messages encrypted for their conversation, private ones
through the key exchange (docs/trust.md), and the bookkeeping of answers.

L{Sender} owns one L{PeerKeys} machine per person and is the L{Effects}
each of them acts through: it sends key requests, arms retries on the
session's clock, and encrypts what was held once the keys are known --
never weaker than both sessions unless the user asked (/unsafe).  The
page's ``sending.js`` is its twin.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from chatsvc.client.ciphers import Context
from chatsvc import grammar
from chatsvc.client.inbound import KEYREQ_MARKER, TOPIC_MARKER
from chatsvc.client.keyexchange import PeerKeys
from chatsvc.client.text import clean
from chatsvc.grammar import name_key


@dataclass(frozen=True)
class Outgoing:
    """A private message on its way: to whom, the text, and what to show once delivered (None: nothing)."""

    nick: str
    text: str
    shown: str | None = None


class _PeerEffects:
    """One peer's machine acting through the sender."""

    def __init__(self, sender: "Sender", nick: str) -> None:
        self.sender = sender
        self.nick = nick
        self.call = None

    def request(self) -> None:
        self.sender.send_keys(self.nick, KEYREQ_MARKER)

    def arm(self, seconds: float) -> None:
        self.disarm()
        self.call = self.sender.session.clock.callLater(seconds, self.sender.peer(self.nick).timeout)

    def disarm(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None

    def deliver(self, message: Outgoing, session: bytes) -> None:
        self.sender.send_now(message, use_session=True)

    def tell_unanswered(self, held: int) -> None:
        who = clean(self.nick)
        self.sender.session.problem(
            f"{who} did not answer a key exchange (3 tries in 35 s): {held} private message"
            f"{'s wait' if held != 1 else ' waits'}; /retry {who} asks again, /unsafe {who} sends "
            f"{'them' if held != 1 else 'it'} without forward secrecy"
        )

    def deliver_weaker(self, message: Outgoing) -> None:
        self.sender.send_now(message, use_session=False, told=True)

    def dropped(self, messages: list) -> None:
        texts = [m.shown for m in messages if m.shown is not None]
        if texts:
            self.sender.session.problem(f"nobody is called {clean(self.nick)} — not sent: "
                                        + "; ".join(clean(t) for t in texts))


class Sender:
    def __init__(self, session) -> None:
        self.session = session
        self._peers: dict[str, PeerKeys] = {}
        self._effects: dict[str, _PeerEffects] = {}
        #: private messages sent and not yet answered, oldest first: the relay
        #: answers each with OK MSG or ERROR no-such-nick, in order
        self.private_pending: list[tuple[str, str | None, str]] = []  # (nick, shown, kind)

    def peer(self, nick: str) -> PeerKeys:
        key = name_key(nick)
        if key not in self._peers:
            self._effects[key] = _PeerEffects(self, nick)
            self._peers[key] = PeerKeys(self._effects[key])
        return self._peers[key]

    def session_of(self, nick: str) -> bytes | None:
        """Their current session's key, as announced (for the cipher)."""
        machine = self._peers.get(name_key(nick))
        return machine.session if machine is not None else None

    # --- sending --------------------------------------------------------------------

    def send(self, target: str, text: str, shown: str | None = None) -> bool:
        """
        Encrypt and send; a private message from a client with an identity
        goes through its recipient's key exchange.  False (with a notice)
        if it cannot go at all.
        """
        s = self.session
        if target.startswith("#") or not s.trust.signing or s.cipher.scheme != "aes3":
            return self.send_now(Outgoing(target, text, shown), use_session=True)
        if s.trust.in_doubt(target):
            s.problem(f"not sent: {clean(target)}'s key changed; compare safety numbers with /verify "
                      f"{clean(target)} first")
            return False
        self.peer(target).send(Outgoing(target, text, shown))
        return True

    def send_now(self, message: Outgoing, use_session: bool, told: bool = False) -> bool:
        s = self.session
        if not s.online or s.nick is None:
            if message.shown is not None:
                s.problem(f"not connected — not sent to {clean(message.nick)}: {clean(message.shown)}")
            return False
        target = message.nick
        context = Context(target=target, sender=s.nick)
        encrypt = s.cipher.encrypt
        payload = encrypt(message.text, context, use_session=use_session) if s.trust.signing else encrypt(message.text, context)
        size = len(f"{s.delivery.longest_tag()}MSG {target} {payload}".encode())
        if size > s.max_line:
            s.problem(f"message too long to send ({size:,} bytes once encrypted; the limit is {s.max_line:,}): "
                      "split it, or /send it as a file")
            return False
        if target.startswith("#"):
            s.protocol.send_message(target, payload, s.delivery.track(target, message.text))
            return True
        if s.trust.signing and s.cipher.scheme == "aes3" and not told and not s.cipher.private_to(target):
            # the keys it waited for are in doubt now (a changed key): never weaker by itself
            if message.shown is not None:
                s.problem(f"not sent: {clean(target)}'s keys are not known for sure — {clean(message.shown)}")
            return False
        if told:
            how = ("keyed to your two identities, without forward secrecy" if s.trust.peer_agree(target)
                   else "keyed by the passphrase alone, which every member can read")
            s.problem(f"as you asked, sent to {clean(target)} {how}")
        self.private_pending.append((target, message.shown, "message"))
        s.protocol.send_message(target, payload)
        return True

    def send_keys(self, nick: str, marker: str) -> None:
        """A key request or answer: signed, our session's key inside; keyed to their identity if pinned."""
        s = self.session
        if not s.online or s.nick is None:
            return
        encoded = base64.urlsafe_b64encode(s.cipher.session_public).rstrip(b"=").decode()  # unpadded, as everywhere
        payload = s.cipher.encrypt(marker + encoded, Context(target=nick, sender=s.nick), use_session=False)
        self.private_pending.append((nick, None, "keys"))
        s.protocol.send_message(nick, payload)

    def set_topic(self, room: str, text: str) -> None:
        """/topic text: encrypted for the room like a message; the relay keeps the ciphertext."""
        s = self.session
        if not s.registration.topics:
            s.problem("this relay keeps no topics (it is older than this client)")
            return
        payload = s.cipher.encrypt(TOPIC_MARKER + text, Context(target=room, sender=s.nick))
        if len(payload) > grammar.MAX_TOPIC_CHARS:
            s.problem(f"topic too long ({len(payload)} characters once encrypted; at most {grammar.MAX_TOPIC_CHARS})")
            return
        s.protocol.set_topic(room, payload)

    def ask_topic(self, room: str) -> None:
        s = self.session
        if not s.registration.topics:
            s.problem("this relay keeps no topics (it is older than this client)")
            return
        s.receiver.topic_asked(room)
        s.protocol.request_topic(room)

    # --- what the relay answers -----------------------------------------------------------

    def delivered(self) -> str | None:
        """OK MSG for a private message: what to show as sent, if anything."""
        if not self.private_pending:
            return None
        return self.private_pending.pop(0)[1]

    def undeliverable(self, text: str) -> None:
        """ERROR no-such-nick for the oldest private message in flight."""
        if not self.private_pending:
            return
        nick, shown, kind = self.private_pending.pop(0)
        if kind == "keys":
            self.peer(nick).gone()  # what waited for their keys went nowhere: say so at once
        elif shown is not None:
            self.session.problem(f"{clean(text)} — not delivered: {clean(shown)}")

    def connection_lost(self) -> None:
        for nick, shown, _ in self.private_pending:
            if shown is not None:
                self.session.problem(f"a private message to {clean(nick)} may not have been delivered: {clean(shown)}")
        self.private_pending.clear()

    # --- what the user asks ------------------------------------------------------------------

    def retry(self, nick: str) -> None:
        machine = self.peer(nick)
        if machine.state() != "unanswered":
            self.session.problem(f"no key exchange with {clean(nick)} is waiting for you")
            return
        machine.retry()
        self.session.notice(f"asking {clean(nick)} for their keys again")

    def force(self, nick: str) -> None:
        machine = self.peer(nick)
        if not machine.held:
            self.session.problem(f"no private message to {clean(nick)} is waiting")
            return
        machine.force()
