"""
Nothing lost, nothing twice: the bookkeeping of one session's room messages.

- Each room message we send gets a client id (cid) and stays *unacked*
  until the server's ``OK MSG``; after a drop it is sent again with the
  same cid (the server relays a resend only if it never got the original).
  The plain text is kept, not the ciphertext: a resend is encrypted afresh,
  for the nick we have then.
- The last message id seen in each room, so a rejoin asks
  ``HISTORY <room> after <id>`` and a message seen twice (history
  overlapping what came live) is shown once.
- Which HISTORY replies are open: only lines inside a reply we asked for
  may count as history (the tag alone is the relay's word).

Plain Python, no I/O: the session sends what this decides.
"""

from __future__ import annotations

import base64
import itertools
import os

from chatsvc import grammar
from chatsvc.grammar import name_key

#: Messages shown from a room's history when joining it for the first time.
JOIN_HISTORY = 20


class Delivery:
    def __init__(self, cid_base: str | None = None) -> None:
        self.cid_base = cid_base or base64.urlsafe_b64encode(os.urandom(9)).decode()
        self._cids = itertools.count(1)
        self.last_id: dict[str, int] = {}  # room key -> highest id seen
        self.unacked: dict[str, tuple[str, str]] = {}  # cid -> (room, plain text)
        self._mode: dict[str, str] = {}  # room key -> "earlier" | "missed"
        self._open: dict[str, int] = {}  # room key -> HISTORY replies not yet ended

    # --- sending ---------------------------------------------------------------------

    def longest_tag(self) -> str:
        """A cid tag as long as any this session makes (to size a line)."""
        return f"@cid={self.cid_base}-000000 "

    def track(self, room: str, text: str) -> str:
        """A new cid for a room message, kept until acknowledged."""
        cid = f"{self.cid_base}-{next(self._cids)}"
        self.unacked[cid] = (room, text)
        return cid

    def acknowledged(self, target: str, msg_id: int | None, cid: str | None) -> None:
        if cid is not None:
            self.unacked.pop(cid, None)
        elif target.startswith("#"):
            # A server that ignores client ids answers in order: this is
            # the oldest unacknowledged message to that room.
            for pending_cid, (room, _) in self.unacked.items():
                if name_key(room) == name_key(target):
                    del self.unacked[pending_cid]
                    break
        if msg_id is not None and target.startswith("#"):
            key = name_key(target)
            self.last_id[key] = max(self.last_id.get(key, 0), msg_id)

    def refused(self, cid: str | None) -> str | None:
        """The server refused a message: forget it; returns its room."""
        if cid is None or cid not in self.unacked:
            return None
        return self.unacked.pop(cid)[0]

    def to_resend(self, joined: dict[str, str]) -> list[tuple[str, str, str]]:
        """(cid, room, text) to send again, for rooms we are back in; the rest is dropped."""
        out = []
        for cid, (room, text) in list(self.unacked.items()):
            if name_key(room) in joined:
                out.append((cid, joined[name_key(room)], text))
            else:
                del self.unacked[cid]
        return out

    # --- history -------------------------------------------------------------------------

    def history_request(self, room: str) -> tuple[str, int]:
        """What to ask on (re)joining: what was missed, or the last few."""
        key = name_key(room)
        self._open[key] = self._open.get(key, 0) + 1
        if key in self.last_id:
            self._mode[key] = "missed"
            return "after", self.last_id[key]
        self._mode[key] = "earlier"
        return "last", JOIN_HISTORY

    def seen_in(self, room: str) -> bool:
        """Whether any message id of this room was seen (a rejoin asks for what was missed)."""
        return name_key(room) in self.last_id

    def forget_room(self, room: str) -> None:
        """The relay's room of this name is another now (a sealed room's epoch): its ids start afresh."""
        self.last_id.pop(name_key(room), None)

    def more_history(self, room: str) -> tuple[str, int]:
        """The reply stopped at its size limit: ask for the rest."""
        key = name_key(room)
        self._open[key] = self._open.get(key, 0) + 1
        return "after", self.last_id.get(key, 0)

    def history_ended(self, room: str) -> None:
        key = name_key(room)
        if self._open.get(key, 0) > 0:
            self._open[key] -= 1

    def in_history_reply(self, room: str) -> bool:
        return self._open.get(name_key(room), 0) > 0

    def history_mode(self, room: str) -> str:
        return self._mode.get(name_key(room), "earlier")

    def see(self, room: str, msg_id: int) -> None:
        """Note a message id as seen in the room (the inbound policy decided it is new)."""
        key = name_key(room)
        self.last_id[key] = max(self.last_id.get(key, 0), msg_id)

    def open_replies(self) -> frozenset:
        """Keys of rooms with a HISTORY reply we asked for still open."""
        return frozenset(key for key, count in self._open.items() if count > 0)

    def modes(self) -> dict[str, str]:
        return dict(self._mode)

    def first_time(self, room: str, msg_id: str) -> bool:
        """False for an id already seen in the room (it was shown)."""
        if not grammar.is_decimal(msg_id):
            return True
        key = name_key(room)
        if int(msg_id) <= self.last_id.get(key, 0):
            return False
        self.last_id[key] = int(msg_id)
        return True

    def connection_lost(self) -> None:
        self._open.clear()  # no reply will end on the old connection
