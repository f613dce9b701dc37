"""
Room messages and history for one relay: a message to a room gets its id
(and, with a store, is on disk) before anyone sees it; a resend with a
client id already known is acknowledged again and relayed once only; a
room's history is read from the store on first use without blocking the
reactor; ``HISTORY`` replies come in pieces of at most the history's reply
limits.  Private messages go straight to their one recipient.  No I/O of
its own: the relay's members and the history's store do it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.logger import Logger

from chatsvc import grammar
from chatsvc.grammar import ProtocolError, format_line, tagged
from chatsvc.history import Record

if TYPE_CHECKING:
    from chatsvc.relay import Member, Relay


class Mailroom:
    log = Logger(namespace="chatsvc.relay.Relay")

    def __init__(self, relay: "Relay") -> None:
        self.relay = relay
        # rooms whose history the store is reading: what waits for it
        self._loading: dict[str, list[Callable[[], None]]] = {}

    def message(self, member: Member, target: str, payload: str, cid: str | None = None) -> None:
        if target.startswith("#"):
            self._room_message(member, target, payload, cid)
            return
        recipient = self.relay.fanout.find_nick(target)
        if recipient is None:
            raise ProtocolError("no-such-nick", f"nobody is called {grammar.printable(target, 40)}")
        recipient.send(format_line("MSG", member.nick, recipient.nick, payload))
        self._log_message(member.nick, recipient.nick, payload)
        member.send(format_line("OK", "MSG", recipient.nick))

    def _log_message(self, sender: str, target: str, payload: str) -> None:
        if self.relay.log_messages:
            self.log.info("message {sender} -> {target}: {payload}", sender=sender, target=target, payload=payload)

    def when_loaded(self, member: Member, key: str, action: Callable[[], None], cid: str | None = None) -> None:
        """
        Run ``action`` once the room's history is in memory: at once, or
        after the store's reader thread has read it -- never blocking the
        reactor on the disk.  Actions for a room run in the order asked.
        """
        if self.relay.history.loaded(key) and key not in self._loading:
            action()
            return

        def guarded() -> None:
            if member.nick is None:
                return  # gone meanwhile
            try:
                action()
            except ProtocolError as e:
                member.send(grammar.error_line(e.code, e.text, cid=cid))

        waiting = self._loading.get(key)
        if waiting is not None:
            waiting.append(guarded)
            return
        self._loading[key] = [guarded]
        self.relay.history.store.load_async(key, self.relay.history.limit, lambda result: self._loaded(key, result))

    def _loaded(self, key: str, result) -> None:
        if isinstance(result, Exception):
            self.log.error("could not read the history of a room from the store: {error}", error=result)
            result = None
        self.relay.history.install(key, result)
        for action in self._loading.pop(key, []):
            action()

    def _room_message(self, member: Member, target: str, payload: str, cid: str | None) -> None:
        room = self.relay.my_room(member, target)
        if not self.relay.history.loaded(room.key) or room.key in self._loading:
            self.when_loaded(member, room.key, lambda: self._room_message(member, target, payload, cid), cid)
            return
        key = room.key
        if cid is not None:
            known = self.relay.fanout.duplicate(key, member.nick, cid)
            if known is not None:
                # A resend (after a reconnect) of a message we already have:
                # acknowledge it again, relay it once only.  Keyed by the
                # sender too: another member's cid is not ours to answer.
                if known.stored:
                    member.send(tagged(format_line("OK", "MSG", room.name, str(known.id)), cid=cid))
                else:
                    known.waiters = (known.waiters or []) + [member]
                return
        record = self.relay.fanout.new_record(key, member.nick, payload, int(self.relay.now() * 1000), cid, member.origin)
        self._log_message(member.nick, room.name, payload)
        store = self.relay.history.store
        if store is None:
            self._deliver(key, record, member, None)
        else:
            # Relayed and acknowledged only once on disk, so an
            # acknowledged message survives a crash; the store answers in
            # order, so ids still reach everyone in increasing order.
            store.append(key, record, lambda error: self._deliver(key, record, member, error))

    def _deliver(self, key: str, record: Record, sender: Member, error: Exception | None) -> None:
        record.stored = True
        told = [sender] + (record.waiters or [])
        record.waiters = None
        room = self.relay.rooms.get(key)
        name = room.name if room is not None else key.split(" ")[0]
        if error is not None:
            self.log.error("could not store message {id} in {room}: {error}", id=record.id, room=name, error=error)
            failed = grammar.error_line(
                "store-failed", "the server could not save your message; send it again", cid=record.cid
            )
            for member in told:
                member.send(failed)
            return
        if room is not None:
            line = tagged(format_line("MSG", record.sender, room.name, record.payload), id=record.id)
            self.relay.fanout.to_room(room, line, told)
        ok = tagged(format_line("OK", "MSG", name, str(record.id)), cid=record.cid)
        for member in told:
            if member.nick is not None:
                member.send(ok)

    def send_history(self, member: Member, name: str, mode: str, value: str) -> None:
        room = self.relay.my_room(member, name)
        if mode.lower() not in ("after", "last") or not grammar.is_decimal(value):
            raise ProtocolError("bad-syntax", "HISTORY usage: HISTORY <#room> after <id> | HISTORY <#room> last <count>")
        if not self.relay.history.loaded(room.key) or room.key in self._loading:
            self.when_loaded(member, room.key, lambda: self.send_history(member, name, mode, value))
            return
        history = self.relay.fanout.room_history(room.key)
        if mode.lower() == "after":
            records, gap = history.after(int(value))
        else:
            records, gap = history.last(int(value)), False
        if gap:
            member.send(format_line("GAP", room.name, str(history.evicted_max)))
        sent = size = 0
        more = False
        for record in records:
            if not record.stored:
                break  # not relayed yet: it will come live
            if sent >= self.relay.history.reply_max_messages or size >= self.relay.history.reply_max_bytes:
                more = True
                break
            line = tagged(
                format_line("MSG", record.sender, room.name, record.payload),
                id=record.id, time=record.time_ms, history=True,
            )
            member.send(line)
            sent += 1
            size += len(line)
        member.send(format_line("ENDHISTORY", room.name, "more" if more else "complete"))
