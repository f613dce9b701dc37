"""
Message ids and room history: the last N messages of each room, as relayed
(ciphertext only), optionally persisted in SQLite so they survive a restart.

Plain Python; the only concurrency is the store's writer thread, which
hands results back through the ``call_back`` function it is given (the
reactor's ``callFromThread``).

Ids are integers, strictly increasing within a room.  Each server run starts
its counters above ``start_ms * 1000`` (and above anything in the store), so
ids keep increasing across restarts as long as a room averages fewer than
1,000 messages per millisecond.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections import OrderedDict, deque
from typing import Callable

#: At most this many rooms' histories stay in memory (least recently used
#: first out; with a store they are read back when needed) ...
MAX_ROOMS_IN_MEMORY = 10_000
#: ... and at most this many payload bytes in all, and per room: without
#: them, big messages in many rooms could fill the server's memory.
MAX_BYTES_IN_MEMORY = 256 * 1024 * 1024
MAX_BYTES_PER_ROOM = 4 * 1024 * 1024
#: A HISTORY reply stops after this many messages or bytes, ending in "more".
REPLY_MAX_MESSAGES = 200
REPLY_MAX_BYTES = 256 * 1024


class Record:
    __slots__ = ("id", "sender", "payload", "time_ms", "cid", "stored", "waiters")

    def __init__(self, id: int, sender: str, payload: str, time_ms: int, cid: str | None) -> None:
        self.id = id
        self.sender = sender
        self.payload = payload
        self.time_ms = time_ms
        self.cid = cid
        self.stored = False
        self.waiters: list | None = None  # duplicates sent before it was stored


class RoomHistory:
    """One room's window of recent messages."""

    __slots__ = ("records", "limit", "by_cid", "last_id", "evicted_max", "bytes")

    def __init__(self, limit: int, last_id: int = 0, evicted_max: int = 0) -> None:
        self.records: deque[Record] = deque()
        self.limit = limit
        self.by_cid: dict[str, Record] = {}
        self.last_id = last_id
        self.evicted_max = evicted_max  # highest id no longer kept
        self.bytes = 0  # payload bytes kept

    def add(self, record: Record) -> int:
        """Keep a record; returns the change in bytes kept."""
        before = self.bytes
        self.last_id = record.id
        if not self.limit:
            self.evicted_max = record.id
            return 0
        self.records.append(record)
        self.bytes += len(record.payload)
        if record.cid is not None:
            self.by_cid[record.cid] = record
        while len(self.records) > self.limit or (self.bytes > MAX_BYTES_PER_ROOM and len(self.records) > 1):
            self._evict_oldest()
        return self.bytes - before

    def _evict_oldest(self) -> None:
        old = self.records.popleft()
        self.bytes -= len(old.payload)
        self.evicted_max = max(self.evicted_max, old.id)
        if old.cid is not None and self.by_cid.get(old.cid) is old:
            del self.by_cid[old.cid]

    def after(self, after_id: int) -> tuple[list[Record], bool]:
        """Kept records newer than ``after_id``, and whether some were lost."""
        found = [r for r in self.records if r.id > after_id]
        return found, after_id < self.evicted_max

    def last(self, count: int) -> list[Record]:
        if count <= 0:
            return []
        return list(self.records)[-count:]


class History:
    """
    Ids and histories of every room.

    @param limit: messages kept per room (0: ids only, no history).
    @param start_ms: this run's start time, the floor for new ids.
    @param store: a L{SQLiteStore}, or None to keep history in memory only.
    """

    def __init__(self, limit: int, start_ms: int, store: "SQLiteStore | None" = None) -> None:
        self.limit = limit
        self.floor = start_ms * 1000
        self.store = store
        self.rooms: OrderedDict[str, RoomHistory] = OrderedDict()
        self.issued_max = self.floor  # highest id given out this run, any room
        self.bytes = 0  # payload bytes kept in memory, all rooms

    def room(self, key: str) -> RoomHistory:
        history = self.rooms.get(key)
        if history is None:
            if self.store is not None:
                history = self.store.load(key, self.limit)
            else:
                # Whatever this room had before (an earlier run, or before
                # it was pushed out of memory) is gone: a client asking for
                # anything older has missed it.
                history = RoomHistory(self.limit, evicted_max=self.issued_max)
            history.last_id = max(history.last_id, self.issued_max)
            self.rooms[key] = history
            self.bytes += history.bytes
            self._trim()
        else:
            self.rooms.move_to_end(key)
        return history

    def _trim(self) -> None:
        """Forget least recently used rooms while over the memory bounds."""
        while len(self.rooms) > 1 and (len(self.rooms) > MAX_ROOMS_IN_MEMORY or self.bytes > MAX_BYTES_IN_MEMORY):
            _, dropped = self.rooms.popitem(last=False)
            self.bytes -= dropped.bytes

    def new_record(self, key: str, sender: str, payload: str, time_ms: int, cid: str | None) -> Record:
        history = self.room(key)
        record = Record(history.last_id + 1, sender, payload, time_ms, cid)
        self.bytes += history.add(record)
        self.issued_max = max(self.issued_max, record.id)
        self._trim()
        return record


class SQLiteStore:
    """
    History in SQLite, written by one background thread with group commit:
    it takes every queued record, writes them in one transaction, and then
    reports each one done, in order.  WAL mode: a ``kill -9`` loses nothing
    that was reported stored.
    """

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS messages (
            room TEXT NOT NULL, id INTEGER NOT NULL, sender TEXT NOT NULL,
            payload TEXT NOT NULL, time_ms INTEGER NOT NULL, cid TEXT,
            PRIMARY KEY (room, id)
        );
        CREATE TABLE IF NOT EXISTS rooms (
            room TEXT PRIMARY KEY, evicted_max INTEGER NOT NULL
        );
    """

    def __init__(self, path: str, limit: int, call_back: Callable[[Callable, object], object]) -> None:
        self.path = path
        self.limit = limit
        self.call_back = call_back
        # Opened here so that a bad path fails at start-up, not later.
        db = self._connect()
        db.executescript(self.SCHEMA)
        db.commit()
        self._reader = db
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def load(self, room: str, limit: int) -> RoomHistory:
        """Read a room's kept history (at start-up or when a room returns)."""
        db = self._reader
        rows = db.execute(
            "SELECT id, sender, payload, time_ms, cid FROM messages WHERE room = ? ORDER BY id DESC LIMIT ?",
            (room, max(limit, 1)),
        ).fetchall()
        meta = db.execute("SELECT evicted_max FROM rooms WHERE room = ?", (room,)).fetchone()
        last = db.execute("SELECT MAX(id) FROM messages WHERE room = ?", (room,)).fetchone()[0] or 0
        history = RoomHistory(limit, last_id=max(last, meta[0] if meta else 0), evicted_max=meta[0] if meta else 0)
        for row in reversed(rows if limit else []):
            record = Record(*row)
            record.stored = True
            history.add(record)
        history.last_id = max(last, meta[0] if meta else 0)
        return history

    # --- writing -----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chatsvc-store", daemon=True)
        self._thread.start()

    def append(self, room: str, record: Record, done: Callable[[Exception | None], object]) -> None:
        self._queue.put((room, record, done))

    def stop(self) -> None:
        """Finish what is queued, then stop the thread (blocking)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        db = self._connect()
        while True:
            item = self._queue.get()
            batch = [item]
            while item is not None and len(batch) < 1000:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            stopping = batch[-1] is None
            work = [b for b in batch if b is not None]
            if work:
                error = self._write(db, work)
                for _, record, done in work:
                    self.call_back(done, error)
            if stopping:
                db.close()
                return

    def _write(self, db: sqlite3.Connection, work: list) -> Exception | None:
        try:
            db.execute("BEGIN")
            db.executemany(
                "INSERT OR IGNORE INTO messages (room, id, sender, payload, time_ms, cid) VALUES (?, ?, ?, ?, ?, ?)",
                [(room, r.id, r.sender, r.payload, r.time_ms, r.cid) for room, r, _ in work],
            )
            for room in {room for room, _, _ in work}:
                self._prune(db, room)
            db.execute("COMMIT")
            return None
        except sqlite3.Error as e:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return e

    def _prune(self, db: sqlite3.Connection, room: str) -> None:
        cutoff = db.execute(
            "SELECT id FROM messages WHERE room = ? ORDER BY id DESC LIMIT 1 OFFSET ?", (room, self.limit)
        ).fetchone()
        if cutoff is not None:
            db.execute("DELETE FROM messages WHERE room = ? AND id <= ?", (room, cutoff[0]))
            db.execute(
                "INSERT INTO rooms (room, evicted_max) VALUES (?, ?) "
                "ON CONFLICT(room) DO UPDATE SET evicted_max = MAX(evicted_max, excluded.evicted_max)",
                (room, cutoff[0]),
            )

