"""Message ids, room history, idempotent sends and the SQLite store."""

from __future__ import annotations

import pytest

from chatsvc import history as history_module
from chatsvc.history import History, SQLiteStore
from tests.support import make_factory, registered


def test_ids_increase_per_room_and_travel_with_messages():
    factory = make_factory()
    alice = registered(factory, "alice", "#a", "#b")
    bob = registered(factory, "bob", "#a", "#b")
    alice.raw_lines()
    alice.send("MSG #a one\nMSG #a two\nMSG #b other\n")
    # (a room's first id is above every id given out so far)
    assert alice.raw_lines() == ["OK MSG #a 1", "OK MSG #a 2", "OK MSG #b 3"]
    assert bob.raw_lines() == ["@id=1 MSG alice #a one", "@id=2 MSG alice #a two", "@id=3 MSG alice #b other"]


def test_ids_start_above_the_run_start_time():
    factory = make_factory(now=lambda: 1_700_000_000.0)
    alice = registered(factory, "alice", "#a")
    alice.send("MSG #a x\n")
    assert alice.raw_lines() == [f"OK MSG #a {1_700_000_000_000 * 1000 + 1}"]


def test_private_messages_have_no_id():
    factory = make_factory()
    alice = registered(factory, "alice")
    bob = registered(factory, "bob")
    alice.send("MSG bob hi\n")
    assert alice.raw_lines() == ["OK MSG bob"]
    assert bob.raw_lines() == ["MSG alice bob hi"]


def talk(factory, count, room="#a"):
    alice = registered(factory, "alice", room)
    alice.send("".join(f"MSG {room} m{n}\n" for n in range(1, count + 1)))
    alice.raw_lines()
    return alice


def test_history_after_an_id():
    factory = make_factory()
    talk(factory, 5)
    bob = registered(factory, "bob", "#a")
    bob.send("HISTORY #a after 3\n")
    assert bob.raw_lines() == [
        "@id=4;time=0;history MSG alice #a m4",
        "@id=5;time=0;history MSG alice #a m5",
        "ENDHISTORY #a complete",
    ]
    bob.send("HISTORY #A last 2\nHISTORY #a after 5\n")
    assert bob.raw_lines() == [
        "@id=4;time=0;history MSG alice #a m4",
        "@id=5;time=0;history MSG alice #a m5",
        "ENDHISTORY #a complete",
        "ENDHISTORY #a complete",
    ]


def test_history_says_when_messages_fell_out_of_the_window():
    factory = make_factory(history=History(3, 0))
    talk(factory, 5)
    bob = registered(factory, "bob", "#a")
    bob.send("HISTORY #a after 1\n")
    assert bob.raw_lines() == [
        "GAP #a 2",
        "@id=3;time=0;history MSG alice #a m3",
        "@id=4;time=0;history MSG alice #a m4",
        "@id=5;time=0;history MSG alice #a m5",
        "ENDHISTORY #a complete",
    ]
    bob.send("HISTORY #a after 2\n")
    assert bob.raw_lines()[0] == "@id=3;time=0;history MSG alice #a m3"


def test_long_history_comes_in_pieces():
    factory = make_factory(history=History(1000, 0, reply_max_messages=2))
    talk(factory, 5)
    bob = registered(factory, "bob", "#a")
    bob.send("HISTORY #a after 0\n")
    lines = bob.raw_lines()
    assert lines[-1] == "ENDHISTORY #a more"
    assert len(lines) == 3
    bob.send("HISTORY #a after 2\n")
    assert bob.raw_lines()[-1] == "ENDHISTORY #a more"
    bob.send("HISTORY #a after 4\n")
    assert bob.raw_lines() == ["@id=5;time=0;history MSG alice #a m5", "ENDHISTORY #a complete"]


def test_no_history_kept_still_gives_ids_and_reports_the_gap():
    factory = make_factory(history=History(0, 0))
    talk(factory, 2)
    bob = registered(factory, "bob", "#a")
    bob.send("HISTORY #a after 0\n")
    assert bob.raw_lines() == ["GAP #a 2", "ENDHISTORY #a complete"]


@pytest.mark.parametrize(
    "line, code",
    [
        ("HISTORY #zz after 1", "not-in-room"),
        ("HISTORY #a since 1", "bad-syntax"),
        ("HISTORY #a after x", "bad-syntax"),
        ("HISTORY #a after", "bad-syntax"),
        ("@cid=bad/cid MSG #a hi", "bad-syntax"),
        ("@cid=ok1 MSG #nothere hi", "not-in-room"),
        ("@cid=" + "x" * 65 + " MSG #a hi", "bad-syntax"),
    ],
)
def test_history_and_cid_errors(line, code):
    factory = make_factory()
    alice = registered(factory, "alice", "#a")
    alice.send(line + "\n")
    [reply] = alice.raw_lines()
    assert reply.removeprefix("@cid=ok1 ").startswith(f"ERROR {code} ")


def test_resend_with_the_same_cid_is_relayed_once():
    factory = make_factory()
    alice = registered(factory, "alice", "#a")
    bob = registered(factory, "bob", "#a")
    alice.raw_lines()
    alice.send("@cid=c-1 MSG #a hello\n")
    alice.drop()  # connection lost before... or after the ack; alice resends
    again = registered(factory, "alice", "#a")
    bob.raw_lines()
    again.send("@cid=c-1 MSG #a hello\n@cid=c-2 MSG #a next\n")
    assert again.raw_lines() == ["@cid=c-1 OK MSG #a 1", "@cid=c-2 OK MSG #a 2"]
    assert bob.raw_lines() == ["@id=2 MSG alice #a next"]


# --- the SQLite store ------------------------------------------------------------


class Pending:
    """Stands in for reactor.callFromThread: run the callbacks on demand."""

    def __init__(self):
        self.calls = []

    def __call__(self, f, *args):
        self.calls.append((f, args))

    def run(self, store, expected, timeout=10):
        import time

        deadline = time.monotonic() + timeout
        while len(self.calls) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        calls, self.calls = self.calls, []
        for f, args in calls:
            f(*args)
        return len(calls)


def stored_factory(path, limit=1000, now=0.0):
    pending = Pending()
    store = SQLiteStore(str(path), limit, pending)
    store.start()
    factory = make_factory(history=History(limit, int(now * 1000), store), now=lambda: now)
    return factory, store, pending


def test_store_relays_only_once_written_and_survives_a_restart(tmp_path):
    db = tmp_path / "history.db"
    factory, store, pending = stored_factory(db)
    alice = registered(factory, "alice", "#a")
    assert pending.run(store, 1) == 1  # the room's history, read off the reactor thread
    bob = registered(factory, "bob", "#a")
    alice.raw_lines(), bob.raw_lines()
    alice.send("@cid=k1 MSG #a first\nMSG #a second\n")
    assert alice.raw_lines() == [] and bob.raw_lines() == []  # not on disk yet
    assert pending.run(store, 2) == 2
    assert alice.raw_lines() == ["@cid=k1 OK MSG #a 1", "OK MSG #a 2"]
    assert bob.raw_lines() == ["@id=1 MSG alice #a first", "@id=2 MSG alice #a second"]
    store.stop()

    # "restart": a new server on the same file, started later
    factory, store, pending = stored_factory(db, now=0.0)
    alice = registered(factory, "alice", "#a")
    alice.send("HISTORY #a after 0\nPING x\n")
    # The reactor does not wait for the disk: other commands are answered,
    # the HISTORY reply comes once the reader thread has read the room.
    assert alice.raw_lines() == ["PONG x"]
    assert pending.run(store, 1) == 1
    assert alice.raw_lines() == [
        "@id=1;time=0;history MSG alice #a first",
        "@id=2;time=0;history MSG alice #a second",
        "ENDHISTORY #a complete",
    ]
    # the resent message is recognised across the restart
    alice.send("@cid=k1 MSG #a first\nMSG #a third\n")
    pending.run(store, 1)
    assert alice.raw_lines() == ["@cid=k1 OK MSG #a 1", "OK MSG #a 3"]
    store.stop()


def test_store_keeps_the_window_and_remembers_the_gap(tmp_path):
    db = tmp_path / "history.db"
    factory, store, pending = stored_factory(db, limit=2)
    talk(factory, 4)
    assert pending.run(store, 1) == 1  # the room's history is read first ...
    assert pending.run(store, 4) == 4  # ... then the messages are written
    store.stop()
    factory, store, pending = stored_factory(db, limit=2)
    bob = registered(factory, "bob", "#a")
    bob.send("HISTORY #a after 0\n")
    pending.run(store, 1)
    assert bob.raw_lines() == [
        "GAP #a 2",
        "@id=3;time=0;history MSG alice #a m3",
        "@id=4;time=0;history MSG alice #a m4",
        "ENDHISTORY #a complete",
    ]
    store.stop()


def test_unopenable_store_is_a_clear_startup_error(tmp_path):
    import sqlite3

    with pytest.raises(sqlite3.Error):
        SQLiteStore(str(tmp_path / "missing-dir" / "x.db"), 10, Pending())


def test_history_is_bounded_in_bytes_per_room_and_in_all():
    history = History(1000, 0, max_bytes_per_room=1000, max_bytes_in_memory=2500)
    for n in range(10):
        history.new_record("#a", "x", "p" * 300, 0, None)
    room = history.room("#a")
    assert room.bytes <= 1000 and len(room.records) == 3
    assert room.evicted_max == room.records[0].id - 1
    for key in ("#b", "#c", "#d"):
        for n in range(3):
            history.new_record(key, "x", "q" * 300, 0, None)
    assert history.bytes <= 2500
    assert "#a" not in history.rooms  # least recently used, forgotten
    assert history.bytes == sum(r.bytes for r in history.rooms.values())
    # a forgotten room's history reports everything before as missed
    records, gap = history.room("#a").after(0)
    assert records == [] and gap


def test_a_failed_write_is_reported_and_nothing_is_relayed():
    import sqlite3

    class FailingStore:
        def append(self, room, record, done):
            done(sqlite3.OperationalError("disk I/O error"))

        def load(self, room, limit):
            from chatsvc.history import RoomHistory

            return RoomHistory(limit)

        def load_async(self, room, limit, done):
            done(self.load(room, limit))

        def topics(self, limit):
            return []

    factory = make_factory(history=History(10, 0, FailingStore()))
    alice = registered(factory, "alice", "#a")
    bob = registered(factory, "bob", "#a")
    alice.raw_lines(), bob.raw_lines()
    alice.send("@cid=w1 MSG #a lost?\n")
    [line] = alice.raw_lines()
    assert line.startswith("@cid=w1 ERROR store-failed ")
    assert bob.raw_lines() == []
