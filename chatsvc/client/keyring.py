"""
The sealed rooms a client holds, kept across runs: ``sealed.json`` in the
config directory (mode 0600), every epoch's secret it received, the newest
statement it accepted, and whether it was removed (then the secrets stay,
for reading what it had, and the room is not rejoined).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from chatsvc.client.membership import Held
from chatsvc.client.sealed import b64, unb64
from chatsvc.grammar import name_key


class KeyringError(Exception):
    pass


class Keyring:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.held: dict[str, Held] = {}  # name key -> what is held
        self.names: dict[str, str] = {}  # name key -> the room's name as first seen
        self.removed: set[str] = set()
        if path is not None and path.exists():
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            for key, entry in data.items():
                self.held[key] = Held(
                    entry["room"], entry["epoch"], {int(e): unb64(s, 32) for e, s in entry["secrets"].items()},
                    entry["statement"], entry["signature"],
                    unb64(entry["link_owner"], 32) if entry["link_owner"] else None, entry["listed"])
                self.names[key] = entry["name"]
                if entry.get("removed"):
                    self.removed.add(key)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise KeyringError(f"{path} is not a chatsvc keyring of sealed rooms ({e}); move it away to start afresh")

    def get(self, room: str) -> Held | None:
        """The room held and not removed from."""
        key = name_key(room)
        return None if key in self.removed else self.held.get(key)

    def rooms(self) -> list[str]:
        """Rooms to rejoin."""
        return [self.names[k] for k in self.held if k not in self.removed]

    def put(self, name: str, held: Held) -> None:
        key = name_key(name)
        self.held[key] = held
        self.names.setdefault(key, name)
        self.removed.discard(key)
        self.save()

    def remove(self, name: str) -> None:
        self.removed.add(name_key(name))
        self.save()

    def write_links(self, room: str, links: list[str]) -> Path | None:
        """A room's invitation links in a file beside the keyring (0600), to copy whole; None without a file."""
        if self.path is None:
            return None
        path = self.path.with_name(f"invitation-{name_key(room).lstrip('#')}.txt")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(links) + "\n")
        return path

    def forget_links(self, room: str) -> None:
        """After a re-key the links no longer work: their file goes."""
        if self.path is not None:
            self.path.with_name(f"invitation-{name_key(room).lstrip('#')}.txt").unlink(missing_ok=True)

    def save(self) -> None:
        if self.path is None:
            return
        data = {key: {"name": self.names[key], "room": h.room, "epoch": h.epoch,
                      "secrets": {str(e): b64(s) for e, s in h.secrets.items()},
                      "statement": h.statement, "signature": h.signature,
                      "link_owner": b64(h.link_owner) if h.link_owner else None, "listed": h.listed,
                      "removed": key in self.removed}
                for key, h in self.held.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)
