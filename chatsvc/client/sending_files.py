"""
Files going out: offers, the answers to them, and the bytes -- over a bulk
stream to each receiver that accepted with a token, else as chunks in the
chat, paced by acknowledgements.  One half of ``transfers.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from chatsvc.client import files
from chatsvc.client.files import Outgoing, TransferError
from chatsvc.client.stream import CUT, StreamSender
from chatsvc.client.transfer_limits import ANSWER_GRACE, OFFER_LIFETIME, STALL_TIMEOUT, WINDOW, close_end
from chatsvc.grammar import is_valid_stream_token, name_key


@dataclass
class Stream:
    """Chunks in the chat to one receiver."""

    outgoing: Outgoing
    receiver: str
    next_index: int = 0
    acked: int = -1
    last_heard: float = 0.0
    shown: int = 0  # last progress step shown (quarters)


class SendingFiles:
    def __init__(self, host, clock, run_slow, progress, ticking) -> None:
        self.host = host
        self.clock = clock
        self._run_slow = run_slow or defer.maybeDeferred  # hashing a file: a thread in the client
        self._progress = progress
        self._ticking = ticking  # (re)starts the transfers' ticker
        self.preparing = 0  # files being read and hashed before their offer
        self.offered: dict[str, tuple[Outgoing, float]] = {}  # id -> (file, when)
        self.streams: list[Stream] = []  # chunks in the chat
        self.answered: set[str] = set()  # offers someone accepted or declined
        self.stream_out: dict[tuple[str, str], StreamSender] = {}  # (id, receiver key) -> stream
        self._done: dict[tuple[str, str], float] = {}  # all sent or cut: awaiting an ack or a resume
        self._receivers: dict[tuple[str, str], str] = {}  # the receiver's nick, as written
        self._turn = 0

    # --- offering ------------------------------------------------------------------

    def send(self, target: str, path: str) -> None:
        # Reading and hashing a big file takes a while: off the reactor thread.
        self.preparing += 1
        prepared = self._run_slow(Outgoing.open, path, target)

        def failed(failure) -> None:
            error = failure.value
            self.host.problem(str(error) if isinstance(error, TransferError) else f"cannot send {path}: {error}")

        def done(result):
            self.preparing -= 1
            self.host.transfers_changed()
            return result

        prepared.addCallbacks(lambda outgoing: self._offer(outgoing, target), failed).addBoth(done)

    def _offer(self, outgoing: Outgoing, target: str) -> None:
        self.offered[outgoing.id] = (outgoing, self.clock.seconds())
        outgoing.streamable = self.host.stream_key(target, outgoing.id) is not None
        self.host.send_control(target, outgoing.offer())
        self._ticking()  # also watches for answers
        self.host.notice(
            f"offered {outgoing.name} ({files.describe(outgoing.size, outgoing.image, outgoing.head)}) to {target}; "
            + ("it is sent to each who accepts" if target.startswith("#") else "it is sent if they accept")
        )

    def _end(self, key: str, text: str, problem: bool = True) -> None:
        """A transfer ended: tell the user, and keep it for /transfers' recent section."""
        (self.host.problem if problem else self.host.notice)(text)
        self._progress.ended(key, text)

    def receivers_of(self, offer_id: str) -> list[str]:
        out = [self._receivers.get(k, k[1]) for k in self.stream_out if k[0] == offer_id]
        return out + [s.receiver for s in self.streams if s.outgoing.id == offer_id]

    def cancel(self, offer_id: str) -> None:
        outgoing, _ = self.offered.pop(offer_id)
        receivers = set(self.receivers_of(offer_id))
        for key in [k for k in self.stream_out if k[0] == offer_id]:
            close_end(self.stream_out.pop(key))
            self._done.pop(key, None)
        self.streams = [s for s in self.streams if s.outgoing.id != offer_id]
        for receiver in receivers:
            self.host.send_control(receiver, files.encode("cancel", id=offer_id))
        self._end(offer_id, f"stopped sending {outgoing.name}", problem=False)

    # --- answers ------------------------------------------------------------------------

    def on_accept(self, sender: str, offer_id: str, fields: dict) -> None:
        entry = self.offered.get(offer_id)
        if entry is None:
            self.host.send_control(sender, files.encode("cancel", id=offer_id))
            return
        outgoing, _ = entry
        if not outgoing.target.startswith("#") and name_key(outgoing.target) != name_key(sender):
            return  # offered to someone else
        if any(s.outgoing.id == offer_id and name_key(s.receiver) == name_key(sender) for s in self.streams):
            return
        self.answered.add(offer_id)
        token = fields.get("stream")
        key = self.host.stream_key(outgoing.target, offer_id) if outgoing.streamable else None
        if isinstance(token, str) and is_valid_stream_token(token) and key is not None:
            self._stream_to(outgoing, sender, key, token)
            return
        self.streams.append(Stream(outgoing, sender, last_heard=self.clock.seconds()))
        self.host.notice(f"{sender} accepted {outgoing.name}; sending")
        self._ticking()

    def _stream_to(self, outgoing: Outgoing, sender: str, key: bytes, token: str) -> None:
        previous = self.stream_out.get((outgoing.id, name_key(sender)))
        if previous is not None and not previous.finished:
            if previous.token == token:
                return  # the same accept again: that stream is going already
            # A new token: the receiver's end of the old stream was cut and it
            # resumes -- before our end noticed (a loaded machine, a relay
            # restart).  Ignoring it would leave the receiver waiting until its
            # stall timeout; the old stream gives way.
            close_end(previous)
        self._done.pop((outgoing.id, name_key(sender)), None)
        proto = StreamSender(
            outgoing.path, key, outgoing.id, token, outgoing.size,
            progress=lambda done, o=outgoing, r=sender: self._progress(f"sending {o.name} to {r}", o.id + r, done, o.size),
            done=lambda error: self._stream_sent(outgoing, sender, error, proto),  # (proto: bound below)
        )
        self.stream_out[(outgoing.id, name_key(sender))] = proto
        self._receivers[(outgoing.id, name_key(sender))] = sender
        if previous is None:
            self.host.notice(f"{sender} accepted {outgoing.name}; sending it over a stream")
        else:
            self.host.notice(f"{sender} resumes {outgoing.name}")
        self.host.open_stream(proto)

    def _stream_sent(self, outgoing: Outgoing, receiver: str, error: str | None, proto) -> None:
        key = (outgoing.id, name_key(receiver))
        if self.stream_out.get(key, proto) is not proto:
            return  # superseded by a resumed stream
        if error == CUT and key in self.stream_out:
            # The receiver resumes it with a new accept; until then (or a timeout) it stays in flight.
            self._done[key] = self.clock.seconds()
            self._ticking()
            return
        if error is not None:
            if self.stream_out.pop(key, None) is not None:
                self._end(outgoing.id + receiver, f"sending {outgoing.name} to {receiver} failed: {error}")
                self.host.transfers_changed()
        elif key in self.stream_out:
            # all handed to the relay; done when the receiver's ack says so
            self._done[key] = self.clock.seconds()
            self._ticking()

    def on_reject(self, sender: str, offer_id: str) -> None:
        entry = self.offered.get(offer_id)
        if entry is not None:
            self.answered.add(offer_id)
            self.host.notice(f"{sender} declined {entry[0].name}")
        self._drop_streams(offer_id, sender)
        self.host.transfers_changed()

    def on_cancel(self, sender: str, offer_id: str) -> None:
        """The receiver stopped receiving."""
        sending = self.stream_out.pop((offer_id, name_key(sender)), None)
        if sending is not None:
            close_end(sending)
            self._end(offer_id + sender, f"{sender} stopped receiving a file")
        if self._drop_streams(offer_id, sender):
            self._end(offer_id + sender, f"{sender} stopped receiving a file")

    def on_ack(self, sender: str, offer_id: str, fields: dict) -> None:
        if self.stream_out.pop((offer_id, name_key(sender)), None) is not None:
            self._done.pop((offer_id, name_key(sender)), None)
            entry = self.offered.get(offer_id)
            self._end(offer_id + sender, f"{sender} has {entry[0].name if entry else 'the file'}", problem=False)
            self.host.transfers_changed()
            return
        for stream in self.streams:
            if stream.outgoing.id == offer_id and name_key(stream.receiver) == name_key(sender):
                stream.acked = max(stream.acked, int(fields.get("i", -1)))
                stream.last_heard = self.clock.seconds()
                if stream.acked >= stream.outgoing.chunks - 1:
                    self.streams.remove(stream)
                    self._end(offer_id + sender, f"{sender} has {stream.outgoing.name}", problem=False)
                    self.host.transfers_changed()
                return

    def _drop_streams(self, offer_id: str, receiver: str) -> bool:
        before = len(self.streams)
        self.streams = [
            s for s in self.streams if not (s.outgoing.id == offer_id and name_key(s.receiver) == name_key(receiver))
        ]
        return len(self.streams) != before

    # --- pacing ---------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Give up on what stalled; forget offers nobody can still accept."""
        for key, when in list(self._done.items()):
            if now - when > STALL_TIMEOUT:
                del self._done[key]
                if self.stream_out.pop(key, None) is not None:
                    self._end(key[0] + key[1], f"{key[1]} never confirmed receiving a file; giving up on it")
        for stream in list(self.streams):
            if now - stream.last_heard > STALL_TIMEOUT:
                self.streams.remove(stream)
                self._end(stream.outgoing.id + stream.receiver,
                          f"{stream.receiver} stopped answering; gave up sending {stream.outgoing.name}")
        for offer_id, (outgoing, when) in list(self.offered.items()):
            if now - when > OFFER_LIFETIME and not self.receivers_of(offer_id):
                del self.offered[offer_id]

    def next_chunk(self) -> None:
        """Send at most one chunk, to the next stream with room in its window."""
        for step in range(len(self.streams)):
            stream = self.streams[(self._turn + step) % len(self.streams)]
            if stream.next_index < stream.outgoing.chunks and stream.next_index - stream.acked <= WINDOW:
                self._turn = (self._turn + step + 1) % len(self.streams)
                try:
                    text = stream.outgoing.chunk(stream.next_index)
                except OSError as e:
                    self.streams.remove(stream)
                    self._end(stream.outgoing.id + stream.receiver, f"cannot read {stream.outgoing.path}: {e.strerror}")
                    self.host.send_control(stream.receiver, files.encode("cancel", id=stream.outgoing.id))
                    return
                self.host.send_control(stream.receiver, text)
                stream.next_index += 1
                sent = min(stream.next_index * files.CHUNK_SIZE, stream.outgoing.size)
                self._progress(f"sending {stream.outgoing.name} to {stream.receiver}",
                               stream.outgoing.id + stream.receiver, sent, stream.outgoing.size)
                return

    def fresh_offers(self, now: float) -> bool:
        return any(now - when < ANSWER_GRACE and i not in self.answered for i, (_, when) in self.offered.items())

    def in_flight(self) -> bool:
        return bool(self.streams or self.stream_out)

    # --- the chat connection ----------------------------------------------------------------

    def disconnected(self) -> None:
        for stream in self.streams:  # chunks in the chat cannot resume
            self._end(stream.outgoing.id + stream.receiver,
                      f"sending {stream.outgoing.name} to {stream.receiver} was interrupted")
        self.streams.clear()

    def reconnected(self) -> None:
        """Offer again what was cut: a receiver that is back answers with a new accept."""
        for key, proto in list(self.stream_out.items()):
            entry = self.offered.get(key[0])
            if proto.finished and entry is not None:
                self._done[key] = self.clock.seconds()  # a fresh wait for the answer
                self.host.send_control(self._receivers.get(key, key[1]), entry[0].offer())

    def stop(self) -> None:
        for end in list(self.stream_out.values()):
            close_end(end)
        self.stream_out.clear()
        self.disconnected()
