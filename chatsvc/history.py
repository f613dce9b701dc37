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

from chatsvc.grammar import name_key

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
#: Once a room's history is full, one origin (an address, an IPv6 /64) may
#: keep at most this share of it: a flood from one place then pushes out
#: its own old messages, not everyone else's.
ORIGIN_SHARE = 4  # i.e. a quarter
#: What the store keeps on disk in all, by default (payload bytes); the
#: oldest messages, of any room, go first.
DEFAULT_STORE_BYTES = 1024 * 1024 * 1024


class Record:
    __slots__ = ("id", "sender", "payload", "time_ms", "cid", "origin", "stored", "waiters")

    def __init__(
        self, id: int, sender: str, payload: str, time_ms: int, cid: str | None, origin: str | None = None
    ) -> None:
        self.id = id
        self.sender = sender
        self.payload = payload
        self.time_ms = time_ms
        self.cid = cid
        self.origin = origin  # in memory only: where the sender connected from
        self.stored = False
        self.waiters: list | None = None  # duplicates sent before it was stored


class RoomHistory:
    """One room's window of recent messages."""

    __slots__ = ("records", "limit", "max_bytes", "by_cid", "last_id", "evicted_max", "bytes", "origins", "forgotten")

    def __init__(self, limit: int, last_id: int = 0, evicted_max: int = 0, max_bytes: int = MAX_BYTES_PER_ROOM) -> None:
        self.records: deque[Record] = deque()
        self.limit = limit
        self.max_bytes = max_bytes  # payload bytes kept at most
        # (sender's name key, cid) -> record: two senders' cids never collide
        self.by_cid: dict[tuple[str, str], Record] = {}
        self.last_id = last_id
        self.evicted_max = evicted_max  # highest id no longer kept
        self.bytes = 0  # payload bytes kept
        self.origins: dict[str, list[int]] = {}  # origin -> [records, bytes]
        #: ids pushed out of the middle by the origin share (for the store)
        self.forgotten: list[int] = []

    def add(self, record: Record) -> int:
        """Keep a record; returns the change in bytes kept."""
        before = self.bytes
        self.last_id = record.id
        if not self.limit:
            self.evicted_max = record.id
            return 0
        self.records.append(record)
        self._count(record, 1)
        if record.cid is not None:
            self.by_cid[(name_key(record.sender), record.cid)] = record
        while len(self.records) > self.limit or (self.bytes > self.max_bytes and len(self.records) > 1):
            self._evict(self._victim(record.origin))
        return self.bytes - before

    def keep(self, record: Record) -> None:
        """A record as it was kept elsewhere (a snapshot): no eviction, its id not the newest."""
        self.records.append(record)
        self._count(record, 1)
        if record.cid is not None:
            self.by_cid[(name_key(record.sender), record.cid)] = record

    def _count(self, record: Record, sign: int) -> None:
        self.bytes += sign * len(record.payload)
        if record.origin is not None:
            entry = self.origins.setdefault(record.origin, [0, 0])
            entry[0] += sign
            entry[1] += sign * len(record.payload)
            if entry[0] <= 0:
                del self.origins[record.origin]

    def _victim(self, origin: str | None) -> int:
        """
        Which record goes when the room is full: the oldest -- unless the
        newcomer's origin already holds more than its share, then the
        oldest of that origin's own.
        """
        entry = self.origins.get(origin) if origin is not None else None
        if entry is not None and (
            entry[0] > self.limit // ORIGIN_SHARE or entry[1] > self.max_bytes // ORIGIN_SHARE
        ):
            for index, record in enumerate(self.records):
                if record.origin == origin:
                    return index
        return 0

    def _evict(self, index: int = 0) -> None:
        if index == 0:
            old = self.records.popleft()
        else:
            old = self.records[index]
            del self.records[index]
            self.forgotten.append(old.id)
        self._count(old, -1)
        self.evicted_max = max(self.evicted_max, old.id)
        key = (name_key(old.sender), old.cid)
        if old.cid is not None and self.by_cid.get(key) is old:
            del self.by_cid[key]

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
    @param max_bytes_per_room, max_bytes_in_memory: payload bytes kept per
        room and in all; reply_max_messages, reply_max_bytes: the size of
        one HISTORY reply (then it ends in "more").
    """

    def __init__(self, limit: int, start_ms: int, store: "SQLiteStore | None" = None, *,
                 max_bytes_per_room: int = MAX_BYTES_PER_ROOM, max_bytes_in_memory: int = MAX_BYTES_IN_MEMORY,
                 reply_max_messages: int = REPLY_MAX_MESSAGES, reply_max_bytes: int = REPLY_MAX_BYTES) -> None:
        self.limit = limit
        self.max_bytes_per_room = max_bytes_per_room
        self.max_bytes_in_memory = max_bytes_in_memory
        self.reply_max_messages = reply_max_messages
        self.reply_max_bytes = reply_max_bytes
        self.floor = start_ms * 1000
        self.store = store
        self.rooms: OrderedDict[str, RoomHistory] = OrderedDict()
        self.issued_max = self.floor  # highest id given out this run, any room
        self.bytes = 0  # payload bytes kept in memory, all rooms

    def loaded(self, key: str) -> bool:
        """Whether ``room(key)`` answers without reading the disk."""
        return self.store is None or key in self.rooms

    def install(self, key: str, history: RoomHistory | None) -> None:
        """A room's history read by the store's reader thread (None: unreadable)."""
        if key in self.rooms:
            return  # loaded meanwhile (a synchronous fallback): keep that one
        if history is None:
            history = RoomHistory(self.limit, evicted_max=self.issued_max, max_bytes=self.max_bytes_per_room)
        self._add(key, history)

    def room(self, key: str) -> RoomHistory:
        history = self.rooms.get(key)
        if history is None:
            if self.store is not None:
                # Normally loaded beforehand off the reactor thread (the relay
                # waits for load_async); this is the fallback.
                history = self.store.load(key, self.limit)
            else:
                # Whatever this room had before (an earlier run, or before
                # it was pushed out of memory) is gone: a client asking for
                # anything older has missed it.
                history = RoomHistory(self.limit, evicted_max=self.issued_max, max_bytes=self.max_bytes_per_room)
            self._add(key, history)
        else:
            self.rooms.move_to_end(key)
        return history

    def _add(self, key: str, history: RoomHistory) -> None:
        history.last_id = max(history.last_id, self.issued_max)
        self.rooms[key] = history
        self.bytes += history.bytes
        self._trim()

    def _trim(self) -> None:
        """Forget least recently used rooms while over the memory bounds."""
        while len(self.rooms) > 1 and (len(self.rooms) > MAX_ROOMS_IN_MEMORY or self.bytes > self.max_bytes_in_memory):
            _, dropped = self.rooms.popitem(last=False)
            self.bytes -= dropped.bytes

    def new_record(
        self, key: str, sender: str, payload: str, time_ms: int, cid: str | None, origin: str | None = None
    ) -> Record:
        history = self.room(key)
        record = Record(history.last_id + 1, sender, payload, time_ms, cid, origin)
        self.bytes += history.add(record)
        if history.forgotten:
            if self.store is not None:
                self.store.forget(key, history.forgotten)
            history.forgotten = []
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
        CREATE TABLE IF NOT EXISTS meta (
            key TEXT PRIMARY KEY, value TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS topics (
            room TEXT PRIMARY KEY, setter TEXT NOT NULL, time_ms TEXT NOT NULL, payload TEXT NOT NULL,
            seq INTEGER NOT NULL
        );
    """

    def __init__(
        self,
        path: str,
        limit: int,
        call_back: Callable[[Callable, object], object],
        max_bytes: int = DEFAULT_STORE_BYTES,
    ) -> None:
        self.path = path
        self.limit = limit
        self.call_back = call_back
        self.max_bytes = max_bytes
        # Opened here so that a bad path fails at start-up, not later.
        db = self._connect()
        db.executescript(self.SCHEMA)
        db.commit()
        self._reader = db
        #: payload bytes on disk (the writer thread keeps it up to date)
        self.bytes = db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()[0]
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._loads: queue.Queue = queue.Queue()
        self._loader: threading.Thread | None = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def load(self, room: str, limit: int, db: sqlite3.Connection | None = None) -> RoomHistory:
        """Read a room's kept history (at start-up or when a room returns)."""
        db = db or self._reader
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

    def salt(self, make: Callable[[], str]) -> str:
        """The deployment's salt, made (by ``make``) and kept on first use."""
        db = self._reader
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('salt', ?)", (make(),))
        return db.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()[0]

    def topics(self, limit: int) -> list[tuple[str, tuple[str, str, str]]]:
        """The rooms' topics (opaque, as relayed), least recently set first (start-up)."""
        rows = self._reader.execute(
            "SELECT room, setter, time_ms, payload FROM topics ORDER BY seq DESC LIMIT ?", (limit,)
        ).fetchall()
        return [(room, (setter, time_ms, payload)) for room, setter, time_ms, payload in reversed(rows)]

    def save_topic(
        self, room: str, topic: tuple[str, str, str], keep: int, failed: Callable[[Exception], object]
    ) -> None:
        """
        Keep a room's new topic (on the writer thread); only the ``keep``
        latest stay.  ``failed`` is called back with the error if it could
        not be written.
        """
        self._queue.put((room, _TopicWrite(topic, keep, failed), None))

    # --- writing -----------------------------------------------------------

    def load_async(self, room: str, limit: int, done: Callable[[RoomHistory | Exception], object]) -> None:
        """
        Read a room's history on the reader thread (a first HISTORY after a
        restart would otherwise stall every client while SQLite reads);
        ``done`` is called back through ``call_back`` with the result.
        """
        if self._loader is None:  # not started (tests): read now
            try:
                result = self.load(room, limit)
            except sqlite3.Error as e:
                result = e
            self.call_back(done, result)
            return
        self._loads.put((room, limit, done))

    def _run_loads(self) -> None:
        db = self._connect()
        while True:
            item = self._loads.get()
            if item is None:
                db.close()
                return
            room, limit, done = item
            try:
                result = self.load(room, limit, db)
            except sqlite3.Error as e:
                result = e
            self.call_back(done, result)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chatsvc-store", daemon=True)
        self._thread.start()
        self._loader = threading.Thread(target=self._run_loads, name="chatsvc-store-reader", daemon=True)
        self._loader.start()

    def append(self, room: str, record: Record, done: Callable[[Exception | None], object]) -> None:
        self._queue.put((room, record, done))

    def forget(self, room: str, ids: list[int]) -> None:
        """Delete these messages of a room (pushed out by the origin share)."""
        self._queue.put((room, list(ids), None))

    def stop(self) -> None:
        """Finish what is queued, then stop the thread (blocking)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._loader is not None:
            self._loads.put(None)
            self._loader.join()
            self._loader = None

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
            work = [b for b in batch if b is not None and b[2] is not None]
            forgotten = [b for b in batch if b is not None and b[2] is None and not isinstance(b[1], _TopicWrite)]
            topics = [b for b in batch if b is not None and isinstance(b[1], _TopicWrite)]
            if topics:
                self._write_topics(db, topics)
            if work or forgotten:
                error = self._write(db, work, forgotten)
                for _, record, done in work:
                    self.call_back(done, error)
            if stopping:
                db.close()
                return

    def _write(self, db: sqlite3.Connection, work: list, forgotten: list = ()) -> Exception | None:
        try:
            db.execute("BEGIN")
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO messages (room, id, sender, payload, time_ms, cid) VALUES (?, ?, ?, ?, ?, ?)",
                [(room, r.id, r.sender, r.payload, r.time_ms, r.cid) for room, r, _ in work],
            )
            if db.total_changes - before == len(work):
                added = sum(len(r.payload) for _, r, _ in work)
            else:  # some were there already (a resend): count afresh
                added = None
            for room, ids, _ in forgotten:
                db.executemany("DELETE FROM messages WHERE room = ? AND id = ?", [(room, i) for i in ids])
                added = None
            for room in {room for room, _, _ in work}:
                if self._prune(db, room):
                    added = None
            self.bytes = self._total(db) if added is None else self.bytes + added
            if self.max_bytes and self.bytes > self.max_bytes:
                self._shrink(db)
            db.execute("COMMIT")
            return None
        except sqlite3.Error as e:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return e

    def _write_topics(self, db: sqlite3.Connection, topics: list) -> None:
        try:
            db.execute("BEGIN")
            for room, write, _ in topics:
                setter, time_ms, payload = write.topic
                db.execute(
                    "INSERT INTO topics (room, setter, time_ms, payload, seq) "
                    "VALUES (?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM topics)) "
                    "ON CONFLICT(room) DO UPDATE SET setter = excluded.setter, time_ms = excluded.time_ms, "
                    "payload = excluded.payload, seq = excluded.seq",
                    (room, setter, time_ms, payload),
                )
            keep = topics[-1][1].keep
            db.execute("DELETE FROM topics WHERE seq <= (SELECT MAX(seq) FROM topics) - ?", (keep,))
            db.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self.call_back(topics[-1][1].failed, e)

    @staticmethod
    def _total(db: sqlite3.Connection) -> int:
        return db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()[0]

    def _shrink(self, db: sqlite3.Connection) -> None:
        """Over the store's bound: drop the oldest messages, of any room, to 90 %."""
        target = self.max_bytes * 9 // 10
        rows = db.execute("SELECT room, id, LENGTH(payload) FROM messages ORDER BY time_ms, id").fetchall()
        excess = self.bytes - target
        doomed: dict[str, int] = {}
        for room, msg_id, size in rows:
            if excess <= 0:
                break
            doomed[room] = max(doomed.get(room, 0), msg_id)
            excess -= size
        for room, cutoff in doomed.items():
            db.execute("DELETE FROM messages WHERE room = ? AND id <= ?", (room, cutoff))
            db.execute(
                "INSERT INTO rooms (room, evicted_max) VALUES (?, ?) "
                "ON CONFLICT(room) DO UPDATE SET evicted_max = MAX(evicted_max, excluded.evicted_max)",
                (room, cutoff),
            )
        self.bytes = self._total(db)

    def _prune(self, db: sqlite3.Connection, room: str) -> bool:
        cutoff = db.execute(
            "SELECT id FROM messages WHERE room = ? ORDER BY id DESC LIMIT 1 OFFSET ?", (room, self.limit)
        ).fetchone()
        if cutoff is None:
            return False
        db.execute("DELETE FROM messages WHERE room = ? AND id <= ?", (room, cutoff[0]))
        db.execute(
            "INSERT INTO rooms (room, evicted_max) VALUES (?, ?) "
            "ON CONFLICT(room) DO UPDATE SET evicted_max = MAX(evicted_max, excluded.evicted_max)",
            (room, cutoff[0]),
        )
        return True


class _TopicWrite:
    """A topic for the writer thread (it shares the queue with messages)."""

    __slots__ = ("topic", "keep", "failed")

    def __init__(self, topic: tuple[str, str, str], keep: int, failed: Callable[[Exception], object]) -> None:
        self.topic = topic
        self.keep = keep
        self.failed = failed
