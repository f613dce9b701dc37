"""
Who wrote it: the session's use of the inbound policy's attribution
(docs/trust.md) with this client's identity and pinned keys.

L{Trust} applies a decision -- pins a first-seen key, flags a changed one
and holds its messages, refuses what is under a pinned nick without its
signature or under your own nick with another key, marks look-alikes --
and answers /verify and /whois.  It says what it decided through the
session's ``notice``/``problem``; the page's ``trust.js`` is its twin.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from chatsvc.client import inbound
from chatsvc.client.ciphers import Opened
from chatsvc.client.identity import PublicKeys, safety_number
from chatsvc.client.pins import KnownKeys
from chatsvc.client.text import clean
from chatsvc.client.verification import confirmation
from chatsvc.grammar import name_key

#: Messages kept from a nick whose key changed, shown if the user accepts it.
HELD_PER_NICK = 20
#: What a refused /verify answer says (verification.py's reason codes).
REFUSALS = {
    "no-keys": "no keys seen from {who} yet: they must write something first",
    "not-compared": "compare first: /verify {who} shows the safety number to compare",
    "changed-since": "{who}'s key changed since you compared: /verify {who} shows the new number",
    "mismatch": "that is not your safety number with {who} — NOT verified; if you read it right, "
                "someone may be between you: do not trust this key",
    "usage": "usage: /verify {who} shows the number; /verify {who} yes (or the number) once it matches",
}
#: Verdicts under which the sender's keys are the ones pinned for their nick.
TRUSTED = frozenset({"first-seen", "pinned", "renamed"})


class Trust:
    """
    @param own: this client's identity keys (None: it signs and checks nothing).
    @param notice, problem: where the user is told (one line each).
    """

    def __init__(self, own: PublicKeys | None, known: KnownKeys, notice: Callable[[str], None],
                 problem: Callable[[str], None]) -> None:
        self.own = own
        self.known = known
        self._notice = notice
        self._problem = problem
        self._held: dict[str, deque] = {}  # nick key -> (target, text) not shown as theirs
        self._told: set[tuple[str, object]] = set()  # (nick key, keys) look-alikes already named
        self._offered: dict[str, str] = {}  # nick key -> the safety number /verify showed
        self._first_seen: dict[str, list[str]] = {}  # room key -> nicks first seen in its history reply

    @property
    def signing(self) -> bool:
        return self.own is not None

    # --- receiving -----------------------------------------------------------------

    def relation(self, sender: str, signer: PublicKeys | None) -> str:
        """How a verified signer relates to the keys pinned for ``sender``: pinned, other or none."""
        if signer is None:
            return "none"
        return "pinned" if self.known.trusted_keys(name_key(sender)) == signer else "other"

    def attribute(self, sender: str, target: str, opened: Opened, selves: tuple,
                  fold: str | None = None) -> inbound.Decision:
        """
        Decide whose message this is, act on it, and return the decision.
        ``fold``: a room whose history reply this is -- first sightings are
        told in one line when it ends (L{first_seen_told}), not one each.
        """
        verdict = inbound.attribution(sender, opened.signer, self.own, selves, self.known.view())
        reason, who = verdict.reason, clean(sender)
        if reason == "first-seen" and fold is not None:
            self.known.pin(name_key(sender), opened.signer)
            self._first_seen.setdefault(name_key(fold), []).append(who)
            return verdict
        if reason == "renamed":
            verified = self.known.is_verified(verdict.was)
            self.known.pin(name_key(sender), opened.signer, verified=verified)
            self._notice(f"{clean(verdict.was)} is now {who}: the same key{', verified' if verified else ''} "
                         f"({opened.signer.fingerprint})")
        elif verdict.pin:
            self.known.pin(name_key(sender), opened.signer)
            self._notice(f"{who}'s key: {opened.signer.fingerprint} (first seen, trusted from now on; "
                         f"/verify {who} to compare safety numbers)")
        elif reason == "key-changed":
            if self.known.flag(name_key(sender), opened.signer):
                self._problem(f"{who}'s key changed — not shown as {who}; /verify {who}")
            self._held.setdefault(name_key(sender), deque(maxlen=HELD_PER_NICK)).append((target, opened.text))
        elif reason == "unsigned-pinned":
            self._problem(f"a message under {who}'s name without {who}'s signature (they sign theirs) — "
                          f"not shown as {who}")
        elif reason in ("own-nick", "own-nick-unsigned"):
            how = "signed with another key" if reason == "own-nick" else "without your signature"
            self._problem(f"a message under your nick {who} {how} — not shown as yours "
                          "(someone used your nick while you were away?)")
        elif verdict.like is not None and (name_key(sender), opened.signer) not in self._told:
            self._told.add((name_key(sender), opened.signer))
            self._problem(f"{who} is not {clean(verdict.like)}: a look-alike name with "
                          f"{'no signature' if opened.signer is None else 'another key'}")
        return verdict

    def first_seen_told(self, room: str) -> None:
        """A history reply ended: the keys pinned on first use in it, in one line."""
        names = self._first_seen.pop(name_key(room), [])
        if names:
            self._notice(first_seen_line(names))

    @staticmethod
    def mark(verdict: inbound.Decision) -> str:
        """What follows the sender's name when shown."""
        if verdict.like is not None:
            return f" (not {clean(verdict.like)}: a look-alike)"
        return " (unsigned)" if verdict.mark == "unsigned" else ""

    # --- sending ---------------------------------------------------------------------

    def peer_agree(self, nick: str) -> bytes | None:
        """The X25519 key to key a private message to ``nick`` with: pinned, not in doubt."""
        keys = self.known.trusted_keys(name_key(nick))
        return keys.agree if keys is not None else None

    def in_doubt(self, nick: str) -> bool:
        """Someone writes under this nick with keys that are not the pinned ones."""
        return name_key(nick) in self.known.pending

    # --- /verify, /whois ------------------------------------------------------------------

    def verify(self, nick: str, answer: str = "") -> list[tuple[str, str, str]]:
        """
        /verify, in two steps: without ``answer`` the safety number and how
        to confirm; with "yes" (after seeing it) or the number typed back,
        the keys marked verified.  Returns the messages held from a changed
        key, now accepted: (target, nick, text).
        """
        key, who = name_key(nick), clean(nick)
        keys = self.known.pending.get(key) or self.known.keys_of(key)
        number = safety_number(self.own, keys) if keys is not None else None
        decision = confirmation(answer, self._offered.get(key), number)
        if decision.action == "show":
            self._offered[key] = number
            self._notice(f"safety number with {who}: {number} — compare it with {who} in person or on a call; "
                         f"if it is the same on both sides, type /verify {who} yes")
            return []
        if decision.action == "refuse":
            self._problem(REFUSALS[decision.reason].format(who=who))
            return []
        self._offered.pop(key, None)
        changed = key in self.known.pending
        self.known.accept(key, keys)
        self._notice(f"{who}'s key {keys.fingerprint} is now verified")
        held = self._held.pop(key, [])
        return [(target, nick, text) for target, text in held] if changed else []

    def verified(self, nick: str) -> bool:
        """The keys pinned for ``nick`` are verified (and no other keys are in doubt)."""
        key = name_key(nick)
        return key not in self.known.pending and self.known.is_verified(key)

    def key_status(self, nick: str) -> str:
        """For /whois."""
        if not self.signing:
            return ""
        key = name_key(nick)
        if key in self.known.pending:
            return f"; key CHANGED to {self.known.pending[key].fingerprint}, not accepted (/verify {clean(nick)})"
        keys = self.known.keys_of(key)
        if keys is None:
            return "; no key seen (unsigned so far)"
        state = "verified" if self.known.is_verified(key) else f"not verified (/verify {clean(nick)})"
        return f"; key {keys.fingerprint}, {state}"


def first_seen_line(names: list[str]) -> str:
    """One line for the keys pinned on first use in a history reply."""
    if len(names) == 1:
        return f"pinned the key of {names[0]} on first use; /verify {names[0]} to compare safety numbers"
    return f"pinned the keys of {', '.join(names)} on first use; /verify nick to compare safety numbers"
