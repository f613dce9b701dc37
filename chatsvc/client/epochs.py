"""
Which epoch of a sealed room is being read: the current one, or, on the
first join of a run, each earlier epoch in turn -- joined under its own
proof for its history, left once the history is in (the relay keeps every
epoch as a room of its own), then the current one is joined.
"""

from __future__ import annotations

from chatsvc.client import sealed
from chatsvc.client.aesgcm import join_proof
from chatsvc.client.keyring import Keyring
from chatsvc.grammar import name_key

#: On a first join, the history of at most this many earlier epochs is fetched.
MAX_EARLIER = 3


class Epochs:
    def __init__(self, session, keyring: Keyring) -> None:
        self.session = session
        self.keyring = keyring
        self.viewed: set[str] = set()  # rooms whose earlier epochs' history was asked for this run
        self._viewing: dict[str, list[int]] = {}  # room key -> earlier epochs still to read, the first now
        self._masters: dict[tuple, bytes] = {}  # (room key, epoch, secret) -> its room master

    def room_master(self, room: str) -> bytes | None:
        held = self.keyring.get(room)
        if held is None:
            return None
        epoch = (self._viewing.get(name_key(room)) or [held.epoch])[0]
        secret = held.secrets[epoch]
        master = self._masters.get((name_key(room), epoch, secret))
        if master is None:  # (derived once: every message in the room asks)
            master = self._masters[(name_key(room), epoch, secret)] = sealed.room_master(secret, room, epoch)
        return master

    def earlier(self, room: str) -> bool:
        """
        The first join of a sealed room this run: first the history of its
        earlier epochs, each joined under its own proof and left once its
        history is in (the relay keeps every epoch as a room of its own),
        then the current one.  True: started (the current JOIN waits).
        """
        s = self.session
        key, held = name_key(room), self.keyring.get(room)
        if held is None or key in self.viewed:
            return False
        self.viewed.add(key)
        earlier = sorted(e for e in held.secrets if e < held.epoch)[-MAX_EARLIER:]
        if not earlier or s.delivery.seen_in(room):
            return False
        self._viewing[key] = list(earlier)
        self._view(room, earlier[0])
        return True

    def _view(self, room: str, epoch: int) -> None:
        s = self.session
        held = self.keyring.get(room)
        s.presence.moving.add(name_key(room))
        s.presence.rejoining.add(name_key(room))  # quietly: no "you joined", no member list of a past epoch
        s.protocol.join(room, join_proof(sealed.room_master(held.secrets[epoch], room, epoch), room))
        s.protocol.request_history(room, *s.delivery.history_request(room))

    def history_end(self, room: str, more: bool) -> None:
        """An earlier epoch's history is in: leave it, and read the next (or join the current)."""
        key = name_key(room)
        viewing = self._viewing.get(key)
        if viewing and not more:
            self.session.protocol.part(room, "read an earlier epoch")
            self.session.delivery.forget_room(room)  # the next epoch is another room to the relay
            viewing.pop(0)  # (what still comes from the room left is no longer read)
            if viewing:
                self._view(room, viewing[0])
            else:
                del self._viewing[key]
                self.session.registration.join(room)

    def parted(self, room: str) -> None:
        """We left a room of this name to join it under another key: what follows is the next epoch's."""
        self.session.delivery.forget_room(room)
