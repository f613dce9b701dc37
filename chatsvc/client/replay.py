"""
What this client has seen from each sender, so that nobody -- the relay
least of all -- can show it the same message twice as new.

Each sender session (the sender's nick and the random sender id in its
envelopes) has a highest counter and a window of the counters below it
already seen, as in IPsec.  The state is kept on disk (JSON, in the user's
config directory), so a client that restarts is as hard to fool as one
that kept running: after a restart every counter up to the highest one
seen counts as seen.  Plain Python, no Twisted; the session decides when to
save.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

#: How many sender sessions are remembered (the oldest are forgotten).
MEMORY = 10_000
#: Counters this far below a sender's highest are refused outright; those
#: within it are checked one by one (history may arrive after newer ones).
WINDOW = 1024


class Replayed(Exception):
    """The counter was seen before (or is too far behind to tell)."""


class ReplayGuard:
    def __init__(self, path: Path | None = None, memory: int = MEMORY, window: int = WINDOW) -> None:
        self.path = path
        self.memory = memory  # sender sessions remembered
        self.window = window  # counters below the highest checked one by one
        # (sender key, sender id) -> [highest counter, bitmask of the WINDOW
        # counters below and including it that were seen], oldest first
        self._seen: OrderedDict[tuple[str, bytes], list[int]] = OrderedDict()
        self.dirty = False
        if path is not None:
            self._load()

    def check(self, sender: str, sender_id: bytes, counter: int, record_only: bool = False) -> None:
        """
        Note a counter; raise L{Replayed} if it was seen already -- unless
        ``record_only`` (a message from requested history, which is old and
        may well have been seen: it is noted, never refused).
        """
        key = (sender, sender_id)
        state = self._seen.get(key)
        if state is None:
            self._seen[key] = [counter, 1]
        else:
            highest, mask = state
            if counter > highest:
                state[0] = counter
                state[1] = ((mask << (counter - highest)) | 1) & ((1 << self.window) - 1)
            else:
                offset = highest - counter
                if offset >= self.window or mask >> offset & 1:
                    if not record_only:
                        raise Replayed()
                else:
                    state[1] = mask | 1 << offset
        self._seen.move_to_end(key)
        while len(self._seen) > self.memory:
            self._seen.popitem(last=False)
        self.dirty = True

    def __len__(self) -> int:
        return len(self._seen)

    # --- on disk -------------------------------------------------------------

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            entries = data["senders"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError):
            # Unreadable: start empty (fresh messages still pass the
            # 10-minute freshness check), and overwrite it on next save.
            return
        for entry in entries[-self.memory:]:
            try:
                sender, sender_id, highest = entry
                # Everything up to the highest is taken as seen: after a
                # restart the exact window is gone, so be strict.
                self._seen[(str(sender), bytes.fromhex(sender_id))] = [int(highest), (1 << self.window) - 1]
            except (TypeError, ValueError):
                continue

    def save(self) -> None:
        """Write atomically (a crash leaves the old file or the new one)."""
        if self.path is None or not self.dirty:
            return
        data = {
            "version": 1,
            "senders": [[sender, sender_id.hex(), state[0]] for (sender, sender_id), state in self._seen.items()],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".replay-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, separators=(",", ":"))
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self.dirty = False
