"""
What comes in: a relayed message through the stages of the inbound policy
(docs/trust.md) -- placement, opening, attribution, interpretation -- and
what each decision means for the user.  The decisions are made by
``inbound.py`` and ``trust.py``; this module only carries them out (show,
tell, answer, hand a file message to the transfers).  The page's
``receiving.js`` is its twin.
"""

from __future__ import annotations

import base64
import time

from chatsvc.client import files, inbound
from chatsvc.client.ciphers import Context, DecryptError, Opened
from chatsvc.client.inbound import KEY_MARKER, KEYREQ_MARKER, TOPIC_MARKER
from chatsvc.client.roster import mentions
from chatsvc.client.text import clean
from chatsvc.client.trust import TRUSTED, Trust
from chatsvc.grammar import name_key

#: What a refusal before opening tells the user, by reason code.
REFUSED = {
    "misdirected": "ignored a private message from {sender} addressed to {target}, not you",
    "history-private": "ignored a private message from {sender} marked as history (replayed?)",
    "not-in-room": "ignored a message from {sender} for {target}: you are not in it",
    "history-unasked": "ignored a message from {sender} in {target} marked as history, unasked",
}


class Receiver:
    def __init__(self, session) -> None:
        self.session = session
        # history lines that could not be read, per (room key, sender): told once per reply
        self._unreadable: dict[tuple[str, str], list] = {}
        self._asked_again: set[str] = set()  # senders we sent a fresh key request after a failure
        self._away_told: set[str] = set()  # who got our away note
        self._topic_asked: set[str] = set()  # rooms whose "no topic" answer we want to show

    def message(self, sender: str, target: str, payload: str, tags: dict[str, str]) -> None:
        s = self.session
        place = s.decided("placement", inbound.placement(sender, target, tags, s.placement_view()))
        if place.record_id is not None:
            s.delivery.see(target, place.record_id)
        if place.action != "open":
            if place.action == "refuse":
                s.problem(REFUSED[place.reason].format(sender=clean(sender), target=clean(target)))
            return
        try:
            opened = s.open(payload, Context(target=target, sender=sender, history=place.history))
        except DecryptError as e:
            self._failed(sender, target, place.history, e)
            return
        fold = target if place.history else None  # first sightings in history: one line at its end
        verdict = s.decided("attribution", s.trust.attribute(sender, target, opened, s.selves(), fold=fold))
        if verdict.action != "show":
            return
        private = not target.startswith("#")
        what = s.decided("interpret", inbound.interpret(
            opened.text, private=private, history=place.history, signed=opened.signer is not None,
            trusted=verdict.reason in TRUSTED, ignored=s.roster.is_ignored(sender), own=verdict.reason == "own",
        ))
        if what.action == "keys":
            self._keys(sender, what)
        elif what.action == "sealed":
            s.sealing.control(sender, target, opened.text, opened.signer, place.history)
        elif what.action == "file":
            self._file(sender, target, opened.text)
        elif what.action == "away":
            s.roster.set_away(sender, what.value)
            s.notice(f"{clean(sender)} is away: {clean(what.value)}" if what.value else f"{clean(sender)} is back")
        elif what.action == "show":
            self._show(sender, target, opened, what, Trust.mark(verdict), place.history)

    # --- the stages' outcomes ---------------------------------------------------------------

    def _failed(self, sender: str, target: str, history: bool, error: DecryptError) -> None:
        s = self.session
        private = not target.startswith("#")
        relation = s.trust.relation(sender, error.signer)
        asked = name_key(sender) in self._asked_again
        decision = s.decided("unreadable", inbound.unreadable(error.code, relation, private, history, asked))
        if decision.action == "group":
            entry = self._unreadable.setdefault((name_key(target), sender), [0, str(error), error.code])
            entry[0] += 1
            return
        where = f"in {clean(target)}" if not private else "(private)"
        s.problem(f"cannot read a message from {clean(sender)} {where}: {clean(str(error))}")
        if decision.reply == "keyreq":
            # keyed to a session we had before a restart, or to theirs we have
            # not seen: ask again, keyed to the identity pinned for them
            self._asked_again.add(name_key(sender))
            s.sender.send_keys(sender, KEYREQ_MARKER)

    def _keys(self, sender: str, what: inbound.Decision) -> None:
        s = self.session
        session = _session_key(what.value or "")
        if session is None:
            return  # malformed: nothing learnt, nothing answered
        self._asked_again.discard(name_key(sender))
        if what.reply == "key":
            # every request is answered (a retry means the answer was lost); a
            # replayed one never gets here, and the answer is keyed to their pinned keys
            s.sender.send_keys(sender, KEY_MARKER)
        s.sender.peer(sender).answer(session)

    def _file(self, sender: str, target: str, text: str) -> None:
        try:
            transfer = files.decode(text)
        except files.TransferError as e:
            self.session.problem(f"bad file message from {clean(sender)}: {e}")
            return
        if transfer is not None:
            self.session.transfers.handle(sender, target, transfer)

    def _show(self, sender: str, target: str, opened: Opened, what: inbound.Decision, mark: str,
              history: bool) -> None:
        s = self.session
        text, who = what.value or "", clean(sender)
        said = f"* {who}{mark} {clean(text)}" if what.action_text else f"{who}{mark}: {clean(text)}"
        named = not history and mentions(text, s.nick)
        if target.startswith("#"):
            suffix = f" ({s.delivery.history_mode(target)}, {_when(opened)})" if history else ""
            if not history:
                s.attention(target, named)
            s.show(f"[{clean(target)}] {said}{suffix}", alert=named, where=target)
            return
        line = f"[{who}{mark} → you] {said if what.action_text else clean(text)}"
        if s.trust.signing and opened.signer is not None and not opened.private:
            line += " (not private: keyed by the passphrase alone)"
        s.attention(sender, True)  # a private message always wants you
        s.show(line, alert=True, where=sender)
        if s.away_text is not None and name_key(sender) not in self._away_told:
            self._away_told.add(name_key(sender))
            s.send_control(sender, inbound.AWAY_MARKER + s.away_text)

    def away_changed(self) -> None:
        """A new away note (or none): everyone hears it once more."""
        self._away_told.clear()

    # --- history replies ---------------------------------------------------------------------

    def history_ended(self, room: str, mode: str) -> None:
        """Tell once per sender what could not be read in the reply; and whose keys were pinned."""
        self.session.trust.first_seen_told(room)
        for (key, sender), (count, reason, code) in list(self._unreadable.items()):
            if key != name_key(room):
                continue
            del self._unreadable[(key, sender)]
            if count == 1:
                self.session.problem(f"cannot read a message from {clean(sender)} in {clean(room)} ({mode}): "
                                     f"{clean(reason)}", room)
            else:
                guess = " — a different passphrase?" if code == "not-authentic" else f": {clean(reason)}"
                self.session.problem(f"{count} {mode} messages from {clean(sender)} in {clean(room)} could not be "
                                     f"read{guess}", room)

    # --- topics --------------------------------------------------------------------------------

    def topic_asked(self, room: str) -> None:
        self._topic_asked.add(name_key(room))

    def topic_line(self, room: str, setter: str | None, when_ms: int | None, payload: str | None) -> None:
        """A TOPIC line: on joining, when someone sets it, or asked with /topic."""
        key = name_key(room)
        if key not in self.session.rooms:
            return
        asked = key in self._topic_asked
        self._topic_asked.discard(key)
        if setter is None:
            if asked:
                self.session.notice(f"{clean(room)} has no topic; /topic text sets one", room)
            return
        self.topic(room, setter, when_ms, payload)

    def topic(self, room: str, setter: str, when_ms: int | None, payload: str) -> None:
        """A room's topic: old by nature (kept by the relay), so no freshness check, as for history."""
        s = self.session
        try:
            opened = s.open(payload, Context(target=room, sender=setter, history=True))
        except DecryptError as e:
            s.problem(f"cannot read the topic of {clean(room)} set by {clean(setter)}: {clean(str(e))}")
            return
        if not opened.text.startswith(TOPIC_MARKER):
            s.problem(f"the topic of {clean(room)} is not a topic (a message passed off as one?); ignored")
            return
        # the same check as messages, your own nick included (docs/trust.md)
        verdict = s.decided("attribution", s.trust.attribute(setter, room, opened, s.selves()))
        if verdict.action != "show":
            return
        text = opened.text[len(TOPIC_MARKER):]
        stamp = opened.sent_ms if opened.sent_ms is not None else when_ms
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp / 1000)) if stamp else "at an unknown time"
        s.notice(f"topic of {clean(room)}: {clean(text)} (set by {clean(setter)}{Trust.mark(verdict)}, {when})", room)


def _when(opened: Opened) -> str:
    # The sender's own timestamp, authenticated with the message; never the relay's.
    if opened.sent_ms is None:
        return "time unknown"
    return time.strftime("%H:%M", time.localtime(opened.sent_ms / 1000))


def _session_key(encoded: str) -> bytes | None:
    try:
        session = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)) if encoded else b""
    except ValueError:
        return None
    return session if len(session) == 32 else None
