"""
Sealed rooms in a session: /seal, /members, /invite, /invite-link,
/remove, /rekey, /op; statements that arrive (decided by
``membership.judge``); moving to a new epoch's room.  The formats are
``sealed.py``, what is kept across runs ``keyring.py``; the scheme is
docs/encryption.md, *Sealed rooms*.
"""

from __future__ import annotations

import os

from chatsvc.client import membership, sealed
from chatsvc.client.epochs import Epochs
from chatsvc.client.identity import PublicKeys, fingerprint
from chatsvc.client.keyring import Keyring
from chatsvc.client.membership import Held
from chatsvc.client.sealed import Link, Member, SealError, b64
from chatsvc.client.text import clean
from chatsvc.grammar import name_key

#: What a refused statement tells the member, by reason code.
REFUSED = {
    "bad-signature": "its signature does not verify",
    "not-owner": "it was not signed and sent by an owner of the room",
    "wrong-room": "it names another room",
    "unasked": "it is for a sealed room you are not in",
    "stale": "it is older than what you hold (replayed?)",
    "bad-secret": "the room's key in it is not the one its owner signed",
    "not-member": "it does not list you as a member",
    "malformed": "it is damaged",
}


def changes(before: dict | None, after: dict) -> list[str]:
    """What a same-epoch statement changed, in words: "added dave to", "made carol an owner of"."""
    if before is None:
        return []
    had = {m["sign"] for m in before["members"]}
    told = [f"added {m['nick']} to" for m in after["members"] if m["sign"] not in had]
    nicks = {m["sign"]: m["nick"] for m in after["members"]}
    told += [f"made {nicks.get(o, '?')} an owner of" for o in after["owners"] if o not in before["owners"]]
    return told


class Sealing:
    def __init__(self, session, keyring: Keyring | None = None) -> None:
        self.session = session
        self.keyring = keyring if keyring is not None else Keyring()
        self._hello_sent: set[str] = set()
        self.epochs = Epochs(session, self.keyring)  # which epoch's key reads what arrives
        if hasattr(session.cipher, "room_master"):
            session.cipher.room_master = self.epochs.room_master
        wanted = {name_key(r) for r in [session.first_room, *session.extra_rooms]}
        session.extra_rooms += [r for r in self.rooms() if name_key(r) not in wanted]  # rejoined from the keyring

    def refuses(self, what: str) -> bool:
        """In by link alone, without the passphrase: only the sealed rooms held (True: told why not)."""
        if not getattr(self.session.cipher, "link_only", False) or self.is_sealed(what):
            return False
        why = "private messages need it" if what == "private" else f"{clean(what)} is not a sealed room you hold"
        self.session.problem(f"you came in by invitation link, without the server's passphrase: {why}")
        return True

    # --- what the cipher and the session ask ---------------------------------------------------

    def left(self, room: str) -> None:
        """/part of a sealed room: not rejoined, and /join finds the ordinary room again (its keys stay, for its history)."""
        if self.keyring.get(room) is not None:
            self.keyring.remove(room)
            self.session.notice(f"{clean(room)} is no longer one of your sealed rooms; its owners can invite you again")

    def is_sealed(self, room: str) -> bool:
        return self.keyring.get(room) is not None

    def rooms(self) -> list[str]:
        return self.keyring.rooms()

    @property
    def _me(self) -> PublicKeys | None:
        identity = getattr(self.session.cipher, "identity", None)
        return identity.public if identity is not None else None

    def joined(self, room: str) -> None:
        """We are in a sealed room: one joined by link says hello until a statement lists it."""
        held = self.keyring.get(room)
        if held is not None and not held.listed and name_key(room) not in self._hello_sent:
            self._hello_sent.add(name_key(room))
            self.session.send_control(room, sealed.HELLO)

    # --- commands ---------------------------------------------------------------------------

    def _usable(self, room: str | None, owner: bool, what: str) -> Held | None:
        s = self.session
        if room is None or not room.startswith("#"):
            s.problem(f"{what} is for sealed rooms: switch to one or name it")
            return None
        held = self.keyring.get(room)
        if held is None:
            s.problem(f"{clean(room)} is not a sealed room you are in (/seal {clean(room)} makes it one)")
            return None
        if owner and self._me is not None and self._me.sign not in held.owners():
            s.problem(f"only owners of {clean(room)} can {what[1:]} ({', '.join(self._owner_nicks(held)) or 'none known'})")
            return None
        return held

    def seal(self, room: str | None) -> None:
        s = self.session
        if self._me is None or s.cipher.scheme != "aes3":
            s.problem("sealed rooms need identity keys and a relay that announces a salt (aes3)")
            return
        if room is None or name_key(room) not in s.rooms:
            s.problem("join the room first, then /seal it")
            return
        if self.keyring.get(room) is not None:
            s.problem(f"{clean(room)} is sealed already; /members lists who is in it")
            return
        secret = os.urandom(sealed.SECRET_SIZE)
        statement = sealed.make_statement(room, 1, 1, [Member(s.nick, self._me)], [self._me.sign], secret, self._me.sign)
        held = Held(statement["room"], 1, {1: secret}, statement, sealed.sign_statement(s.cipher.identity, statement),
                    listed=True)
        self.keyring.put(room, held)
        s.notice(f"{clean(room)} is sealed: a new key only its members have; you own it. "
                 f"/invite nick or /invite-link to let people in", room)
        self._move(room)

    def members(self, room: str | None) -> None:
        held = self._usable(room, False, "/members")
        if held is None:
            return
        s = self.session
        if held.statement is None:
            s.notice(f"{clean(room)}: no member list yet (joined by link; an owner's client sends it)", room)
            return
        owners = set(held.statement["owners"])
        for m in sealed.members_of(held.statement):
            tags = [t for t, on in (("owner", b64(m.keys.sign) in owners), ("you", m.keys == self._me)) if on]
            s.notice(f"  {clean(m.nick)}  {fingerprint(m.keys)}{' (' + ', '.join(tags) + ')' if tags else ''}", room)
        count = len(held.statement["members"])
        s.notice(f"{clean(room)}: {count} member{'s' if count != 1 else ''}, epoch {held.epoch}", room)

    def invite(self, nick: str, room: str | None) -> None:
        s = self.session
        held = self._usable(room, True, "/invite")
        if held is None:
            return
        keys = s.trust.known.trusted_keys(name_key(nick))
        if keys is None:
            s.problem(f"no key known for {clean(nick)} yet: they must have written to you or a room you share "
                      f"(or use /invite-link {clean(room)})")
            return
        if any(m.keys == keys for m in sealed.members_of(held.statement)):
            s.problem(f"{clean(nick)} is a member of {clean(room)} already")
            return
        members = [*sealed.members_of(held.statement), Member(nick, keys)]
        statement, signature = self._next(held, held.epoch, held.secret, members, None)
        box = sealed.seal_box(s.cipher.identity, Member(nick, keys), statement, held.secret)
        s.send_control(nick, sealed.control_text(statement, signature, {b64(keys.sign): box}))
        s.send_control(room, sealed.control_text(statement, signature))
        s.notice(f"invited {clean(nick)} to {clean(room)} ({fingerprint(keys)})", room)

    def invite_link(self, room: str | None) -> None:
        s = self.session
        held = self._usable(room, True, "/invite-link")
        if held is None:
            return
        link = Link(room, held.epoch, held.secret, self._me.sign, s.server, self._me.agree)
        links = [sealed.make_link(link)] + ([sealed.make_link(link, s.registration.page)] if s.registration.page else [])
        s.notice(f"whoever has this link can join {clean(room)} (no passphrase needed) until /rekey {clean(room)}; "
                 f"share it privately:", room)
        s.display.show(links[0])
        if len(links) > 1:
            s.notice("in a browser, or with --join too:", room)
            s.display.show(links[1])
        saved = self.keyring.write_links(room, links)  # (a wrapped line does not copy whole)
        if saved:
            s.notice(f"(also in {saved}, to copy whole; it goes at the next /rekey)", room)

    def rekey(self, room: str | None, remove: str | None = None) -> None:
        s = self.session
        held = self._usable(room, True, "/remove" if remove else "/rekey")
        if held is None or held.statement is None:
            return
        members = sealed.members_of(held.statement)
        kept = [m for m in members if remove is None or name_key(m.nick) != name_key(remove)]
        if remove is not None and len(kept) == len(members):
            s.problem(f"{clean(remove)} is not a member of {clean(room)} (/members lists them)")
            return
        if remove is not None and any(m.keys == self._me for m in members if m not in kept):
            s.problem("to leave a sealed room you own, /part it (or /op someone first)")
            return
        secret = os.urandom(sealed.SECRET_SIZE)
        statement, signature = self._next(held, held.epoch + 1, secret, kept, None)
        boxes = self._boxes(room, [m for m in kept if m.keys != self._me], statement, secret)
        text = sealed.control_text(statement, signature, boxes)
        if not sealed.fits(text):
            s.problem(f"{clean(room)} has too many members for one re-key ({len(kept)}; about 150 fit): nothing changed",
                      room)
            return
        s.send_control(room, text)  # in the old epoch: all see it
        self._take(room, held, statement, signature, secret)
        self.keyring.forget_links(room)
        what = f"removed {clean(remove)} from" if remove else "re-keyed"
        s.notice(f"{what} {clean(room)}: epoch {held.epoch}, a new key for its {len(kept)} members; "
                 "earlier links no longer work", room)

    def _boxes(self, room: str, members: list[Member], statement: dict, secret: bytes) -> dict[str, str]:
        """The new secret, boxed for each member (one whose key cannot take a box is left out, and said so)."""
        boxes = {}
        for m in members:
            try:
                boxes[m.sign] = sealed.seal_box(self.session.cipher.identity, m, statement, secret)
            except SealError:
                self.session.problem(f"{clean(m.nick)}'s key cannot receive the new key of {clean(room)}: "
                                     "they will be left out", room)
        return boxes

    def op(self, nick: str, room: str | None) -> None:
        s = self.session
        held = self._usable(room, True, "/op")
        if held is None:
            return
        member = next((m for m in sealed.members_of(held.statement) if name_key(m.nick) == name_key(nick)), None)
        if member is None:
            s.problem(f"{clean(nick)} is not a member of {clean(room)}; /invite them first")
            return
        owners = [sealed.unb64(o) for o in held.statement["owners"]]
        statement, signature = self._next(held, held.epoch, held.secret, sealed.members_of(held.statement),
                                          [*owners, member.keys.sign])
        s.send_control(room, sealed.control_text(statement, signature))
        s.notice(f"{clean(nick)} is an owner of {clean(room)} now", room)

    def _next(self, held: Held, epoch: int, secret: bytes, members: list[Member], owners) -> tuple[dict, str]:
        """The next statement, signed by us, taken at once (same epoch); a new epoch is taken by ``_take``."""
        s = self.session
        owners = owners if owners is not None else [sealed.unb64(o) for o in held.statement["owners"]]
        owners = [o for o in owners if any(m.keys.sign == o for m in members)]
        statement = sealed.make_statement(held.room, epoch, held.serial + 1, members, owners, secret, self._me.sign)
        signature = sealed.sign_statement(s.cipher.identity, statement)
        if epoch == held.epoch:
            held.statement, held.signature = statement, signature
            self.keyring.put(self.keyring.names.get(name_key(held.room), held.room), held)
        return statement, signature

    def _owner_nicks(self, held: Held) -> list[str]:
        if held.statement is None:
            return []
        return [clean(m.nick) for m in sealed.members_of(held.statement) if sealed.is_owner(held.statement, m.keys.sign)]

    # --- what arrives --------------------------------------------------------------------------

    def control(self, sender: str, target: str, text: str, signer: PublicKeys | None, history: bool = False) -> None:
        """A sealed-room message (statement or hello), opened and signed by ``signer``."""
        if signer is None or self._me is None:
            return
        if text == sealed.HELLO:
            self._hello(sender, target, signer)
            return
        s = self.session
        private = not target.startswith("#")
        try:
            statement, signature, boxes = sealed.parse_control(text)
        except SealError as e:
            s.problem(f"refused a sealed-room message from {clean(sender)}: {REFUSED.get(e.code, e.code)}")
            return
        name = statement["room"] if private else target
        held = self.keyring.get(name)
        mine = boxes.get(b64(self._me.sign))
        secret = sealed.open_box(s.cipher.identity, signer.agree, statement, mine) if mine else None
        where = "private" if private else name_key(target)
        verdict = membership.judge(held, statement, signature, secret, signer, where, self._me)
        if history and verdict.reason == "stale":
            return  # a room's history holds its earlier statements: nothing to say
        self._carry_out(verdict, sender, name, held, statement, signature, secret)

    def _carry_out(self, verdict, sender, name, held, statement, signature, secret) -> None:
        s = self.session
        kind = verdict.kind
        if kind == membership.REFUSED:
            s.problem(f"refused a change to {clean(name)} from {clean(sender)}: {REFUSED.get(verdict.reason, verdict.reason)}")
        elif kind == membership.REMOVED:
            self.keyring.remove(name)
            s.problem(f"{clean(sender)} removed you from {clean(name)}: nothing said there from now on is for you", name)
            s.presence.moving.add(name_key(name))
            s.protocol.part(name, "removed")
        elif kind == membership.INVITED:
            if held is None and name_key(name) in s.rooms:
                name = s.rooms[name_key(name)]
            self.keyring.put(name, membership.accept(None, verdict, statement, signature, secret, self._me))
            s.notice(f"{clean(sender)} invited you to the sealed room {clean(name)} "
                     f"(owner key {fingerprint(self._signer_keys(statement))}); joining", name)
            self._move(name)
        elif kind == membership.REKEYED:
            self._take(name, held, statement, signature, secret)
            s.notice(f"{clean(sender)} re-keyed {clean(name)} (epoch {statement['epoch']}); moved with it", name)
        elif kind == membership.UPDATED:
            before = held.statement
            self.keyring.put(name, membership.accept(held, verdict, statement, signature, secret, self._me))
            for change in changes(before, statement):
                s.notice(f"{clean(sender)} {change} {clean(name)}", name)

    def _signer_keys(self, statement: dict) -> PublicKeys:
        return next(m.keys for m in sealed.members_of(statement) if b64(m.keys.sign) == statement["by"])

    def _hello(self, sender: str, room: str, signer: PublicKeys) -> None:
        """Someone joined by link: the owner who signed the current statement lists them."""
        held = self.keyring.get(room)
        if held is None or held.statement is None or held.statement["by"] != b64(self._me.sign):
            return
        if any(m.keys == signer for m in sealed.members_of(held.statement)):
            return
        members = [*sealed.members_of(held.statement), Member(sender, signer)]
        statement, signature = self._next(held, held.epoch, held.secret, members, None)
        self.session.send_control(room, sealed.control_text(statement, signature))
        self.session.notice(f"{clean(sender)} joined {clean(room)} by link ({fingerprint(signer)}); listed as a member",
                            room)

    # --- epochs --------------------------------------------------------------------------------

    def _take(self, name: str, held: Held, statement: dict, signature: str, secret: bytes) -> None:
        """A new epoch: keep its secret, leave the old epoch's room, join the new one."""
        verdict = membership.Verdict(membership.REKEYED, "ok")
        self.keyring.put(name, membership.accept(held, verdict, statement, signature, secret, self._me))
        self._move(name)

    def _move(self, name: str) -> None:
        """Leave the room of this name we are in (if any), then join it under the key now held."""
        s = self.session
        key = name_key(name)
        self.epochs.viewed.add(key)  # (what was said in the earlier epoch was seen live)
        if key not in s.rooms:
            s.delivery.forget_room(name)
        else:
            s.presence.moving.add(key)
            s.protocol.part(s.rooms[key], "moved to a sealed room's new key")
        s.presence.joining(name, switch=s.current is None or name_key(s.current) == key)
        s.registration.join(name)
