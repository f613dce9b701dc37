"""
The inbound policy: what a client believes of a line the relay passed on,
and whether it may answer (docs/trust.md).

Pure functions of the line and a snapshot of local state; no I/O, no
crypto, no clock.  Every outcome is a L{Decision} with a reason code; the
session turns codes into words and does what they say.  The page has the
same functions under the same names (``chatsvc/web/inbound.js``), and
both pass the cases in ``docs/vectors/inbound.json``.

The stages, in the order a message goes through them:

1. L{placement}: before decrypting -- is this line for us, here, now?
2. (the cipher opens it, or says why not, with a reason code)
3. L{unreadable}: it did not open -- tell, group, or (rarely) answer?
4. L{attribution}: it opened -- whose is it, by the keys it was signed with?
5. L{interpret}: what kind of text it is, and what to do with it
   (including whether to answer a key request).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from chatsvc.grammar import is_decimal, name_key

#: How much of an away note is kept (anyone's text).
MAX_NOTE = 80

ACTION_MARKER = "\x1fchatsvc-me:"
AWAY_MARKER = "\x1fchatsvc-away:"
TOPIC_MARKER = "\x1fchatsvc-topic:"
KEYREQ_MARKER = "\x1fchatsvc-keyreq:"
KEY_MARKER = "\x1fchatsvc-key:"
FILE_MARKER = "\x1fchatsvc-file:"
#: Every sealed-room message (a statement, or a link joiner's hello) starts so.
SEALED_MARKER = "\x1fchatsvc-seal"

#: Errors of a message that was signed by a key we know, keyed for a
#: session we cannot match: the one case a failure is answered (docs/trust.md).
SESSION_ERRORS = frozenset({"wrong-peer", "unknown-session"})


@dataclass(frozen=True)
class Decision:
    """What to do, and why (a reason code, never words)."""

    action: str  # open | refuse | drop | group | show | hold | keys | file | away | topic
    reason: str = ""
    #: placement: the message is from a history reply we asked for
    history: bool = False
    #: placement: the message id to note as seen in its room
    record_id: int | None = None
    #: attribution: pin these keys under the sender's nick (first seen)
    pin: bool = False
    #: attribution: how the sender's name is shown ('' | 'unsigned' | 'lookalike')
    mark: str = ""
    #: attribution: the pinned nick (or yours) the sender's looks like
    like: str | None = None
    #: attribution: the nick these keys are pinned under (the sender renamed)
    was: str | None = None
    #: unreadable / interpret: send a key request ("keyreq") or answer ("key")
    reply: str | None = None
    #: interpret: details (the session key announced, an away note, the shown text)
    value: str | None = None
    #: interpret: an action (/me) rather than said text
    action_text: bool = False

    def as_dict(self) -> dict:
        out = {"action": self.action}
        for name in ("reason", "history", "record_id", "pin", "mark", "like", "was", "reply", "value",
                     "action_text"):
            value = getattr(self, name)
            if value not in ("", False, None):
                out[name] = value
        return out


@dataclass(frozen=True)
class View:
    """What placement needs of the session: who we are, where we are, what we have seen."""

    me: str | None  # the nick the relay accepted, this connection
    wanted: str  # the nick we asked for (ours across reconnects)
    rooms: frozenset = frozenset()  # keys of the rooms we are in
    history_open: frozenset = frozenset()  # keys of rooms with a HISTORY reply we asked for still open
    history_mode: Mapping[str, str] = field(default_factory=dict)  # room key -> earlier | missed
    last_id: Mapping[str, int] = field(default_factory=dict)  # room key -> highest id seen


def placement(sender: str, target: str, tags: Mapping[str, str], view: View) -> Decision:
    """Stage 1: is ``MSG sender target`` with these tags for us, here, now?"""
    me = name_key(view.me or "")
    if not target.startswith("#"):
        # Addressed to us, and never history (the relay keeps no private messages).
        if name_key(target) != me:
            return Decision("refuse", "misdirected")
        if "history" in tags:
            return Decision("refuse", "history-private")
        return Decision("open")
    room = name_key(target)
    if room not in view.rooms:
        return Decision("refuse", "not-in-room")
    # History only inside a reply we asked for: the tag alone is the relay's say-so.
    history = "history" in tags
    if history and room not in view.history_open:
        return Decision("refuse", "history-unasked")
    if not history and name_key(sender) == me:
        return Decision("drop", "own-echo")  # shown when we sent it
    msg_id = tags.get("id", "")
    record = int(msg_id) if is_decimal(msg_id) else None
    if record is not None and record <= view.last_id.get(room, 0):
        return Decision("drop", "duplicate")  # history overlapping what came live
    if history and view.history_mode.get(room) == "missed" and name_key(sender) in (me, name_key(view.wanted)):
        return Decision("drop", "own-missed", history=True, record_id=record)  # ours: shown when sent
    return Decision("open", history=history, record_id=record)


def unreadable(error: str, signer: str, private: bool, history: bool, asked_before: bool) -> Decision:
    """
    Stage 3: a message that did not open (``error``: the cipher's reason
    code).  ``signer``: how the signature that did verify relates to the
    sender's pinned keys -- "pinned", "other" or "none".

    A failure is answered only when the message verified under the key
    already pinned for its sender, was private and live, and was keyed for
    a session we cannot match: then a key request keyed to that pinned
    identity (never to the passphrase alone) lets the next one read.
    Anything else an outsider could send gets no automatic reply.
    """
    if history:
        return Decision("group", error)  # told once per sender at the end of the reply
    answer = private and error in SESSION_ERRORS and signer == "pinned" and not asked_before
    return Decision("refuse", error, reply="keyreq" if answer else None)


@dataclass(frozen=True)
class Pins:
    """
    What attribution needs of the known keys: nick key -> (keys, verified),
    and a skeleton function for look-alikes.  Keys are compared with ``==``
    (real PublicKeys in the client, names in the shared cases).
    """

    pinned: Mapping[str, object]
    skeleton: Callable[[str], str]
    #: skeleton -> nick keys pinned with it (built by the caller once)
    by_skeleton: Mapping[str, tuple] = field(default_factory=dict)


def attribution(sender: str, signer: object | None, own: object | None, selves: tuple, pins: Pins) -> Decision:
    """
    Stage 4: whose message is this, by the keys it was signed with?

    ``own``: this client's identity keys (None: it has none and checks
    nothing); ``selves``: our nicks (the one accepted and the one wanted),
    whose key is our identity, always.
    """
    if own is None:
        return Decision("show")  # a client without identity (Caesar) checks nothing
    key = name_key(sender)
    self_keys = {name_key(n) for n in selves if n}
    if key in self_keys:
        if signer is not None and signer == own:
            return Decision("show", "own")
        return Decision("refuse", "own-nick" if signer is not None else "own-nick-unsigned")
    pinned = pins.pinned.get(key)
    like = _lookalike(key, signer, own, self_keys, pins)
    if signer is None:
        if pinned is not None:
            return Decision("refuse", "unsigned-pinned")
        return Decision("show", "unsigned", mark="unsigned", like=like)
    if pinned is not None:
        if pinned == signer:
            return Decision("show", "pinned")
        return Decision("hold", "key-changed")
    was = _pinned_under(signer, pins)
    if was is not None:
        # keys pinned under another nick: the same person, renamed (pinned, and verified if they were)
        return Decision("show", "renamed", pin=True, was=was)
    if like is not None:
        # a new key under a name that looks like a pinned one (or yours): flagged, never pinned
        return Decision("show", "lookalike", mark="lookalike", like=like)
    return Decision("show", "first-seen", pin=True)


def _pinned_under(signer: object, pins: Pins) -> str | None:
    """The first nick (in sorted order) these keys are pinned under."""
    return next((nick for nick in sorted(pins.pinned) if pins.pinned[nick] == signer), None)


def _lookalike(key: str, signer: object | None, own: object, self_keys: set, pins: Pins) -> str | None:
    """A pinned nick (or ours) other than ``key`` with the same skeleton and other keys."""
    shape = pins.skeleton(key)
    for other in sorted(self_keys):
        if other != key and pins.skeleton(other) == shape and signer != own:
            return other
    for other in pins.by_skeleton.get(shape, ()):
        if other != key and pins.pinned.get(other) != signer:
            return other
    return None


def interpret(text: str, private: bool, history: bool, signed: bool, trusted: bool, ignored: bool,
              own: bool) -> Decision:
    """
    Stage 5: what an opened, attributed text is, and what to do with it.

    ``trusted``: attribution pinned the sender's keys (first seen, pinned or
    verified) -- only then is a key request answered, so the answer is
    keyed to those keys.  Key messages are handled even from an ignored
    nick (they show nothing, and a message of ours may wait for them);
    everything else from an ignored nick is dropped before it is decoded.
    """
    if text.startswith(KEYREQ_MARKER) or text.startswith(KEY_MARKER):
        if not private or history or not signed:
            return Decision("drop", "keys-misplaced")
        kind = "keyreq" if text.startswith(KEYREQ_MARKER) else "key"
        answer = "key" if kind == "keyreq" and trusted else None
        return Decision("keys", kind, reply=answer, value=text.split(":", 1)[1])
    if text.startswith(SEALED_MARKER):  # judged by the keys that signed it (membership.judge), ignored or not
        return Decision("sealed") if signed else Decision("drop", "sealed-unsigned")
    if ignored and not own:
        return Decision("drop", "ignored")
    if text.startswith(FILE_MARKER):
        if history or own:
            return Decision("drop", "file-old")  # offers in history are old news
        return Decision("file")
    if text.startswith(AWAY_MARKER):
        if not private or history:
            return Decision("drop", "away-misplaced")
        note = text[len(AWAY_MARKER):].strip(" \t\r\n")[:MAX_NOTE]
        return Decision("away", "back" if not note else "away", value=note or None)
    if text.startswith(TOPIC_MARKER):
        return Decision("drop", "topic-as-message")  # a topic passed off as a message
    if text.startswith(ACTION_MARKER):
        return Decision("show", "action", value=text[len(ACTION_MARKER):], action_text=True)
    if text.startswith("\x1f"):
        return Decision("drop", "unknown-kind")  # a kind a newer client knows
    return Decision("show", "text", value=text)
