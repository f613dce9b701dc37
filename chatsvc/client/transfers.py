"""
The file-transfer conversation of one client session: offering files,
accepting or rejecting offers, and streaming chunks at a pace that stays
within the relay's limits.

Exchange (every message encrypted by the session's cipher, like chat):

    sender -> room or nick : offer   (name, size, sha256, chunk count)
    receiver -> sender     : accept  (or reject)   -- private
    sender -> receiver     : chunk 0, 1, 2 ...      -- private
    receiver -> sender     : ack i   (every few chunks and at the end)

Chunks go privately to each receiver that accepted: the relay keeps no
history of private messages, so files never push chat out of a room's
history, and each receiver's stream is paced by its own acknowledgements.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import base64
import os

from twisted.internet import defer, task

from chatsvc.client import files
from chatsvc.client.files import Incoming, Outgoing, TransferError
from chatsvc.client.stream import CUT, StreamReceiver, StreamSender
from chatsvc.grammar import is_valid_stream_token, name_key


class TransferHost(Protocol):
    """What transfers need from the session that runs them -- no more."""

    #: a person at a terminal (progress as a live bar) rather than a script
    interactive: bool
    #: connected and in every room: chunks may go out
    ready: bool

    def send_control(self, target: str, text: str) -> None:
        """Send a file message (encrypted like chat, not shown)."""

    def notice(self, text: str) -> None: ...

    def problem(self, text: str) -> None: ...

    def show_progress(self, text: str | None) -> bool:
        """Show (None: clear) a live progress line; False if there is none."""

    def transfers_changed(self) -> None:
        """Something finished: the session may be waiting for that to quit."""

    def stream_key(self, target: str, transfer_id: str, sender: str | None = None) -> bytes | None:
        """
        The frame key for a transfer offered to ``target`` by ``sender``
        (None: us), if files can go over bulk streams here -- the relay
        offers them and the cipher has a key for them; else None.
        """

    def open_stream(self, stream) -> None:
        """Connect a new stream connection to the relay for this protocol."""

#: Chunks a sender may have unacknowledged per receiver: 8 x 32 KiB keeps
#: well under the relay's 1 MiB send queue, so a slow receiver is slowed
#: down, never cut off as a slow consumer.
WINDOW = 8
#: Receivers acknowledge every ACK_EVERY chunks (and the last one).
ACK_EVERY = 4
#: Chunks sent per second at most, over all transfers: 10 lines/s of the
#: relay's default 20/s flood limit, the rest left for chat.
CHUNKS_PER_SECOND = 10
#: An accepted stream that hears nothing for this long is abandoned.
STALL_TIMEOUT = 60.0
#: How long an offer can be accepted.
OFFER_LIFETIME = 600.0
#: After input ends, a client waits this long for answers to a fresh offer.
ANSWER_GRACE = 10.0
#: Files received at once, from one sender and in all; more offers are
#: declined (a hostile sender could otherwise open files until the client
#: runs out of file handles).
MAX_INCOMING_PER_SENDER = 3
MAX_INCOMING = 8
#: Offers waiting for /accept, at most (the oldest are forgotten).
MAX_WAITING_OFFERS = 20
#: Times a cut stream is resumed before the transfer is given up, and the
#: pause before each try (times the try's number).
MAX_RESUMES = 5
RESUME_DELAY = 1.0


def rate_and_eta(started: tuple[float, int] | None, now: float, done: int, total: int) -> str:
    """', 118 MiB/s, 3 s left' once there is something to measure."""
    if started is None or now - started[0] < 0.5 or done <= started[1]:
        return ""
    rate = (done - started[1]) / (now - started[0])
    left = (total - done) / rate
    when = f"{left:.0f} s" if left < 120 else f"{left / 60:.0f} min"
    return f", {files.human_size(int(rate))}/s, {when} left"


@dataclass
class Stream:
    outgoing: Outgoing
    receiver: str
    next_index: int = 0
    acked: int = -1
    last_heard: float = 0.0
    shown: int = 0  # last progress step shown (quarters)


class Transfers:
    def __init__(
        self, host: TransferHost, downloads: Path, auto_accept_bytes: int, clock=None, run_slow=None
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.host = host
        #: runs slow work (hashing a file) -- a thread in the client; at once in tests
        self._run_slow = run_slow or defer.maybeDeferred
        self._preparing = 0  # files being read and hashed before their offer
        self.downloads = downloads
        self.auto_accept_bytes = auto_accept_bytes
        self.clock = clock
        self.offered: dict[str, tuple[Outgoing, float]] = {}  # id -> (file, when)
        self.streams: list[Stream] = []
        self.offers: dict[str, tuple[dict, str, str]] = {}  # id -> (offer, sender, target) awaiting /accept
        self.incoming: dict[str, Incoming] = {}
        self.shown: dict[str, int] = {}
        self.answered: set[str] = set()  # offers someone accepted or declined
        self._declined_from: set[str] = set()  # senders told "too many" (told once)
        # over bulk streams: (transfer id, receiver) -> sender protocol, and
        # transfer id -> receiver protocol
        self.stream_out: dict[tuple[str, str], StreamSender] = {}
        self.stream_in: dict[str, StreamReceiver] = {}
        self._streams_done: dict[tuple[str, str], float] = {}  # all sent or cut: awaiting an ack or a resume
        self._receivers: dict[tuple[str, str], str] = {}  # the receiver's nick, as written
        self._began: dict[str, tuple[float, int]] = {}  # progress key -> (when, bytes) it started
        self._state: dict[str, tuple[str, int, int]] = {}  # progress key -> (what, done, total)
        self._ticker: task.LoopingCall | None = None
        self._turn = 0

    # --- user commands -------------------------------------------------------

    def send(self, target: str, path: str) -> None:
        # Reading and hashing a big file takes a while: off the reactor
        # thread, so chat goes on meanwhile.
        self._preparing += 1
        prepared = self._run_slow(Outgoing.open, path, target)

        def failed(failure) -> None:
            error = failure.value
            self.host.problem(str(error) if isinstance(error, TransferError) else f"cannot send {path}: {error}")

        def done(result):
            self._preparing -= 1
            self.host.transfers_changed()
            return result

        prepared.addCallbacks(lambda outgoing: self._offer(outgoing, target), failed).addBoth(done)

    def _offer(self, outgoing: Outgoing, target: str) -> None:
        self.offered[outgoing.id] = (outgoing, self.clock.seconds())
        outgoing.streamable = self.host.stream_key(target, outgoing.id) is not None
        self.host.send_control(target, outgoing.offer())
        self._ensure_ticking()  # also watches for answers
        self.host.notice(
            f"offered {outgoing.name} ({files.describe(outgoing.size, outgoing.image, outgoing.head)}) to {target}; "
            + ("it is sent to each who accepts" if target.startswith("#") else "it is sent if they accept")
        )

    def accept(self, prefix: str) -> None:
        offer_id = self._find(prefix)
        if offer_id is None:
            return
        offer, sender, target = self.offers.pop(offer_id)
        self._start_receiving(offer, sender, target)

    def reject(self, prefix: str) -> None:
        offer_id = self._find(prefix)
        if offer_id is None:
            return
        offer, sender, _ = self.offers.pop(offer_id)
        self.host.send_control(sender, files.encode("reject", id=offer_id))
        self.host.notice(f"declined {files.safe_name(offer.get('name', 'file'))} from {sender}")

    # --- /transfers and /cancel -------------------------------------------------

    def list(self) -> None:
        """/transfers: what is in flight, with ids for /cancel and /accept."""
        now = self.clock.seconds()
        lines = []
        for incoming in self.incoming.values():
            what, done, total = self._state.get(incoming.id, ("", incoming.received, incoming.size))
            lines.append(f"{incoming.id[:6]} receiving {incoming.name} from {incoming.sender}: "
                         f"{done * 100 // max(1, total)}%{rate_and_eta(self._began.get(incoming.id), now, done, total)}")
        for offer_id, (outgoing, _) in self.offered.items():
            receivers = [self._receivers.get(k, k[1]) for k in self.stream_out if k[0] == offer_id]
            receivers += [s.receiver for s in self.streams if s.outgoing.id == offer_id]
            to = f" to {', '.join(receivers)}" if receivers else f" offered to {outgoing.target}"
            lines.append(f"{offer_id[:6]} sending {outgoing.name}{to}")
        for offer_id, (fields, sender, _) in self.offers.items():
            lines.append(f"{offer_id[:6]} waiting: {files.safe_name(fields.get('name', 'file'))} from {sender} "
                         f"(/accept {offer_id[:6]} or /reject {offer_id[:6]})")
        if not lines:
            self.host.notice("no file transfers")
            return
        for line in lines:
            self.host.notice(line)

    def cancel(self, prefix: str) -> None:
        """/cancel id: stop receiving or sending a file."""
        if not prefix:
            self.host.problem("usage: /cancel id (/transfers lists them)")
            return
        incoming_ids = [i for i in self.incoming if i.startswith(prefix)]
        outgoing_ids = [i for i in self.offered if i.startswith(prefix)]
        matches = incoming_ids + outgoing_ids
        if len(matches) != 1:
            self.host.problem("no such transfer (/transfers lists them)" if not matches else
                              "several transfers match: give more of the id")
            return
        offer_id = matches[0]
        if incoming_ids:
            incoming = self.incoming.pop(offer_id)
            self._close(self.stream_in.pop(offer_id, None))
            incoming.fail()
            self.host.send_control(incoming.sender, files.encode("cancel", id=offer_id))
            self.host.notice(f"stopped receiving {incoming.name} from {incoming.sender}")
        else:
            outgoing, _ = self.offered.pop(offer_id)
            receivers = {self._receivers.get(k, k[1]) for k in self.stream_out if k[0] == offer_id}
            receivers |= {s.receiver for s in self.streams if s.outgoing.id == offer_id}
            for key in [k for k in self.stream_out if k[0] == offer_id]:
                self._close(self.stream_out.pop(key))
                self._streams_done.pop(key, None)
            self.streams = [s for s in self.streams if s.outgoing.id != offer_id]
            for receiver in receivers:
                self.host.send_control(receiver, files.encode("cancel", id=offer_id))
            self.host.notice(f"stopped sending {outgoing.name}")
        self.host.transfers_changed()

    @staticmethod
    def _close(end) -> None:
        if end is not None:
            end.finished = True
            if end.transport is not None:
                end.transport.loseConnection()

    def _find(self, prefix: str) -> str | None:
        matches = [i for i in self.offers if i.startswith(prefix)] if prefix else list(self.offers)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            self.host.problem("no such file offer" if prefix else "no file offers waiting")
        else:
            self.host.problem("several offers: name one by its id, e.g. /accept " + matches[0][:6])
        return None

    # --- messages from peers -----------------------------------------------------

    def handle(self, sender: str, target: str, fields: dict) -> None:
        kind, offer_id = fields["t"], fields["id"]
        handler = getattr(self, "_on_" + kind, None)
        if handler is None:
            return  # a newer client's message kind
        try:
            try:
                handler(sender, target, offer_id, fields)
            except (KeyError, TypeError, ValueError):
                raise TransferError(f"damaged {kind} message")
        except TransferError as e:
            self.host.problem(f"file transfer with {sender} stopped: {e}")

    def _on_offer(self, sender: str, target: str, offer_id: str, fields: dict) -> None:
        existing = self.incoming.get(offer_id)
        if existing is not None:
            # The sender is back after a drop and offers again: resume what
            # was cut.  A stream that has carried nothing yet may be waiting
            # for an answer to an accept that never reached the sender (it
            # was away): replace it.  One that is moving needs nothing.
            if existing.stream_key is None or name_key(existing.sender) != name_key(sender):
                return
            waiting = self.stream_in.get(offer_id)
            if waiting is not None and waiting.index == waiting.start:
                del self.stream_in[offer_id]
                waiting.finished = True
                if waiting.transport is not None:
                    waiting.transport.loseConnection()
            if offer_id not in self.stream_in:
                self._open_receiving_stream(existing)
            return
        try:
            size = int(fields["size"])
        except (KeyError, TypeError, ValueError):
            raise TransferError("damaged file offer")
        name = files.safe_name(fields.get("name", "file"))
        kind = fields.get("type")
        kind = kind if kind in ("PNG", "JPEG", "GIF", "WebP") else "file"  # shown: never raw peer text
        what = f"{name} ({kind}, {files.human_size(size)})"
        where = f" in {target}" if target.startswith("#") else ""
        from_sender = sum(name_key(i.sender) == name_key(sender) for i in self.incoming.values())
        if from_sender >= MAX_INCOMING_PER_SENDER or len(self.incoming) >= MAX_INCOMING:
            self.host.send_control(sender, files.encode("reject", id=offer_id))
            if name_key(sender) not in self._declined_from:
                self._declined_from.add(name_key(sender))
                self.host.problem(
                    f"declined {what} from {sender}: already receiving {from_sender} from them and "
                    f"{len(self.incoming)} in all (at most {MAX_INCOMING_PER_SENDER} and {MAX_INCOMING})"
                )
            return
        unfinished = self._unfinished(sender, fields) if fields.get("stream") else None
        if unfinished is not None:
            # The same file, offered again by a sender that started afresh:
            # keep what was verified, go on from there under the new id.
            self._close(self.stream_in.pop(unfinished.id, None))
            del self.incoming[unfinished.id]
            unfinished.id, unfinished.resumes = offer_id, 0
            self.incoming[offer_id] = unfinished
            self.host.notice(f"{sender} sends {what} again: resuming at "
                             f"{unfinished.received * 100 // max(1, unfinished.size)}%")
            self._open_receiving_stream(unfinished)
            return
        if size <= self.auto_accept_bytes:
            self.host.notice(f"{sender} sends {what}{where}: receiving it")
            self._start_receiving(fields, sender, target)
        else:
            self.offers[offer_id] = (fields, sender, target)
            while len(self.offers) > MAX_WAITING_OFFERS:
                del self.offers[next(iter(self.offers))]
            self.host.notice(
                f"{sender} offers {what}{where}: /accept {offer_id[:6]} or /reject {offer_id[:6]}"
            )

    def _start_receiving(self, offer: dict, sender: str, target: str) -> None:
        try:
            incoming = Incoming(offer, sender, self.downloads)
            incoming.start()
        except TransferError as e:
            self.host.problem(f"cannot receive {files.safe_name(offer.get('name', 'file'))} from {sender}: {e}")
            self.host.send_control(sender, files.encode("reject", id=str(offer.get("id"))))
            return
        incoming.last_heard = self.clock.seconds()
        self.incoming[incoming.id] = incoming
        key = self.host.stream_key(target, incoming.id, sender) if offer.get("stream") else None
        if key is None:
            self.host.send_control(sender, files.encode("accept", id=incoming.id))  # chunks in the chat
        else:
            incoming.stream_key, incoming.stream_target = key, target
            self._open_receiving_stream(incoming)
        self._ensure_ticking()  # also watches for stalled receives

    def _unfinished(self, sender: str, fields: dict) -> Incoming | None:
        """A file from this sender, with this checksum and size, partly received over streams."""
        for incoming in self.incoming.values():
            if (
                incoming.stream_key is not None and name_key(incoming.sender) == name_key(sender)
                and incoming.sha256 == str(fields.get("sha256", "")).lower()
                and incoming.size == fields.get("size")
            ):
                return incoming
        return None

    def _open_receiving_stream(self, incoming: Incoming) -> None:
        # The key again: after a relay restart its salt, and so the key, may
        # be new (the sender derives it afresh too).
        key = self.host.stream_key(incoming.stream_target, incoming.id, incoming.sender)
        if key is None:
            del self.incoming[incoming.id]
            incoming.fail()
            self.host.problem(f"cannot resume {incoming.name} from {incoming.sender}: the relay has no streams now")
            return
        incoming.stream_key = key
        # Our own token, inside the encrypted accept: only the sender learns
        # it, and each receiver's stream (and each resumption) has its own.
        token = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")
        receiver = StreamReceiver(
            incoming, key, token, incoming.next_frame,
            progress=lambda done, i=incoming: self._stream_progress_in(i, done),
            done=lambda error, i=incoming: self._stream_received(i, error),
        )
        self.stream_in[incoming.id] = receiver
        incoming.last_heard = self.clock.seconds()
        self.host.send_control(incoming.sender, files.encode("accept", id=incoming.id, stream=token))
        self.host.open_stream(receiver)

    def _stream_progress_in(self, incoming: Incoming, done: int) -> None:
        incoming.last_heard = self.clock.seconds()
        self._progress(f"receiving {incoming.name} from {incoming.sender}", incoming.id, done, incoming.size)

    def _stream_received(self, incoming: Incoming, error: str | None) -> None:
        self.stream_in.pop(incoming.id, None)
        if incoming.id not in self.incoming:
            return  # cancelled or timed out meanwhile
        if error == CUT and incoming.resumes < MAX_RESUMES:
            # Cut, not corrupted: what was verified stays; pick up from
            # there now, or once the chat connection is back.
            incoming.resumes += 1
            percent = incoming.received * 100 // max(1, incoming.size)
            self.host.notice(f"receiving {incoming.name} from {incoming.sender} was cut at {percent}%; resuming")
            # A moment first: the cut may be the relay going away, and the
            # chat connection's drop not noticed yet.
            self.clock.callLater(RESUME_DELAY * incoming.resumes, self._resume_if_ready, incoming)
            return
        del self.incoming[incoming.id]
        if error is not None:
            incoming.fail()
            self.host.send_control(incoming.sender, files.encode("cancel", id=incoming.id))
            self.host.problem(f"receiving {incoming.name} from {incoming.sender} failed: {error}")
        else:
            self.host.send_control(incoming.sender, files.encode("ack", id=incoming.id, i=-1, stream=1))
            final = incoming.finish()
            self.host.notice(
                f"saved {incoming.name} from {incoming.sender} as {final} "
                f"({files.describe(incoming.size, incoming.image, incoming.head)})"
            )
        self.host.transfers_changed()

    def _on_chunk(self, sender: str, target: str, offer_id: str, fields: dict) -> None:
        incoming = self.incoming.get(offer_id)
        if incoming is None or name_key(incoming.sender) != name_key(sender):
            return  # not ours (rejected, or already failed)
        incoming.last_heard = self.clock.seconds()
        try:
            complete = incoming.add(fields)
        except TransferError:
            del self.incoming[offer_id]
            self.host.send_control(sender, files.encode("cancel", id=offer_id))
            raise
        if complete or incoming.next_index % ACK_EVERY == 0:
            self.host.send_control(sender, files.encode("ack", id=offer_id, i=incoming.next_index - 1))
        self._progress(f"receiving {incoming.name} from {sender}", offer_id, incoming.received, incoming.size)
        if complete:
            del self.incoming[offer_id]
            self._declined_from.discard(name_key(sender))
            final = incoming.finish()
            self.host.notice(
                f"saved {incoming.name} from {sender} as {final} ({files.describe(incoming.size, incoming.image, incoming.head)})"
            )
            self.host.transfers_changed()

    def _on_accept(self, sender: str, target: str, offer_id: str, fields: dict) -> None:
        entry = self.offered.get(offer_id)
        if entry is None:
            self.host.send_control(sender, files.encode("cancel", id=offer_id))
            return
        outgoing, _ = entry
        if outgoing.target.startswith("#") is False and name_key(outgoing.target) != name_key(sender):
            return  # offered to someone else
        if any(s.outgoing.id == offer_id and name_key(s.receiver) == name_key(sender) for s in self.streams):
            return
        self.answered.add(offer_id)
        token = fields.get("stream")
        key = self.host.stream_key(outgoing.target, offer_id) if outgoing.streamable else None
        if isinstance(token, str) and is_valid_stream_token(token) and key is not None:
            previous = self.stream_out.get((offer_id, name_key(sender)))
            if previous is not None and not previous.finished:
                return  # a stream to that receiver is going already
            self._streams_done.pop((offer_id, name_key(sender)), None)
            proto = StreamSender(
                outgoing.path, key, offer_id, token, outgoing.size,
                progress=lambda done, o=outgoing, r=sender: self._progress(
                    f"sending {o.name} to {r}", o.id + r, done, o.size),
                done=lambda error, o=outgoing, r=sender: self._stream_sent(o, r, error),
            )
            self.stream_out[(offer_id, name_key(sender))] = proto
            self._receivers[(offer_id, name_key(sender))] = sender
            if previous is None:
                self.host.notice(f"{sender} accepted {outgoing.name}; sending it over a stream")
            else:
                self.host.notice(f"{sender} resumes {outgoing.name}")
            self.host.open_stream(proto)
            return
        self.streams.append(Stream(outgoing, sender, last_heard=self.clock.seconds()))
        self.host.notice(f"{sender} accepted {outgoing.name}; sending")
        self._ensure_ticking()

    def _stream_sent(self, outgoing: Outgoing, receiver: str, error: str | None) -> None:
        key = (outgoing.id, name_key(receiver))
        if error == CUT and key in self.stream_out:
            # The receiver resumes it with a new accept; until then (or a
            # timeout) it stays in flight.
            self._streams_done[key] = self.clock.seconds()
            self._ensure_ticking()
            return
        if error is not None:
            if self.stream_out.pop(key, None) is not None:
                self.host.problem(f"sending {outgoing.name} to {receiver} failed: {error}")
                self.host.transfers_changed()
        elif key in self.stream_out:
            # all handed to the relay; done when the receiver's ack says so
            self._streams_done[key] = self.clock.seconds()
            self._ensure_ticking()

    def _on_reject(self, sender: str, target: str, offer_id: str, fields: dict) -> None:
        entry = self.offered.get(offer_id)
        if entry is not None:
            self.answered.add(offer_id)
            self.host.notice(f"{sender} declined {entry[0].name}")
        self._drop_streams(offer_id, sender)
        self.host.transfers_changed()

    def _on_cancel(self, sender: str, target: str, offer_id: str, fields: dict) -> None:
        # Only the sender of a file can stop sending it (check before acting:
        # anyone can send a cancel naming any id).
        incoming = self.incoming.get(offer_id)
        if incoming is not None and name_key(incoming.sender) == name_key(sender):
            del self.incoming[offer_id]
            receiver = self.stream_in.pop(offer_id, None)
            if receiver is not None:
                receiver.finished = True
                if receiver.transport is not None:
                    receiver.transport.loseConnection()
            incoming.fail()
            self.host.problem(f"{sender} stopped sending {incoming.name}")
        sending = self.stream_out.pop((offer_id, name_key(sender)), None)
        if sending is not None:
            sending.finished = True
            if sending.transport is not None:
                sending.transport.loseConnection()
            self.host.problem(f"{sender} stopped receiving a file")
        if self._drop_streams(offer_id, sender):
            self.host.problem(f"{sender} stopped receiving a file")

    def _on_ack(self, sender: str, target: str, offer_id: str, fields: dict) -> None:
        if self.stream_out.pop((offer_id, name_key(sender)), None) is not None:
            self._streams_done.pop((offer_id, name_key(sender)), None)
            entry = self.offered.get(offer_id)
            self.host.notice(f"{sender} has {entry[0].name if entry else 'the file'}")
            self.host.transfers_changed()
            return
        for stream in self.streams:
            if stream.outgoing.id == offer_id and name_key(stream.receiver) == name_key(sender):
                stream.acked = max(stream.acked, int(fields.get("i", -1)))
                stream.last_heard = self.clock.seconds()
                if stream.acked >= stream.outgoing.chunks - 1:
                    self.streams.remove(stream)
                    self.host.notice(f"{sender} has {stream.outgoing.name}")
                    self.host.transfers_changed()
                return

    def _drop_streams(self, offer_id: str, receiver: str) -> bool:
        before = len(self.streams)
        self.streams = [
            s for s in self.streams if not (s.outgoing.id == offer_id and name_key(s.receiver) == name_key(receiver))
        ]
        return len(self.streams) != before

    # --- pacing -------------------------------------------------------------------

    def _ensure_ticking(self) -> None:
        if self._ticker is None:
            self._ticker = task.LoopingCall(self._tick)
            self._ticker.clock = self.clock
            self._ticker.start(1 / CHUNKS_PER_SECOND, now=True)

    def _tick(self) -> None:
        """Send at most one chunk, to the next stream with room in its window."""
        now = self.clock.seconds()
        for key, when in list(self._streams_done.items()):
            if now - when > STALL_TIMEOUT:
                del self._streams_done[key]
                if self.stream_out.pop(key, None) is not None:
                    self.host.problem(f"{key[1]} never confirmed receiving a file; giving up on it")
        for offer_id, incoming in list(self.incoming.items()):
            if now - incoming.last_heard > STALL_TIMEOUT:
                receiver = self.stream_in.pop(offer_id, None)
                if receiver is not None:
                    receiver.finished = True
                    if receiver.transport is not None:
                        receiver.transport.loseConnection()
                del self.incoming[offer_id]
                incoming.fail()  # the partial file goes
                self.host.send_control(incoming.sender, files.encode("cancel", id=offer_id))
                self.host.problem(f"{incoming.sender} stopped sending {incoming.name}; gave up receiving it")
        for stream in list(self.streams):
            if now - stream.last_heard > STALL_TIMEOUT:
                self.streams.remove(stream)
                self.host.problem(f"{stream.receiver} stopped answering; gave up sending {stream.outgoing.name}")
        for offer_id, (outgoing, when) in list(self.offered.items()):
            if (
                now - when > OFFER_LIFETIME
                and not any(s.outgoing.id == offer_id for s in self.streams)
                and not any(key[0] == offer_id for key in self.stream_out)
            ):
                del self.offered[offer_id]
        self.host.transfers_changed()
        if not self.streams and not self.incoming and not self.stream_out and not self._fresh_offers(now):
            if self._ticker is not None and self._ticker.running:
                self._ticker.stop()
            self._ticker = None
            return
        if not self.streams:
            return
        if not self.host.ready:
            return  # reconnecting: wait
        for step in range(len(self.streams)):
            stream = self.streams[(self._turn + step) % len(self.streams)]
            if stream.next_index < stream.outgoing.chunks and stream.next_index - stream.acked <= WINDOW:
                self._turn = (self._turn + step + 1) % len(self.streams)
                try:
                    text = stream.outgoing.chunk(stream.next_index)
                except OSError as e:
                    self.streams.remove(stream)
                    self.host.problem(f"cannot read {stream.outgoing.path}: {e.strerror}")
                    self.host.send_control(stream.receiver, files.encode("cancel", id=stream.outgoing.id))
                    return
                self.host.send_control(stream.receiver, text)
                stream.next_index += 1
                sent = min(stream.next_index * files.CHUNK_SIZE, stream.outgoing.size)
                self._progress(
                    f"sending {stream.outgoing.name} to {stream.receiver}",
                    stream.outgoing.id + stream.receiver, sent, stream.outgoing.size,
                )
                return

    def _fresh_offers(self, now: float) -> bool:
        return any(now - when < ANSWER_GRACE and i not in self.answered for i, (_, when) in self.offered.items())

    def busy(self) -> bool:
        """Something in flight that ending the session now would cut short."""
        return bool(
            self.streams or self.incoming or self.stream_out or self._preparing
            or self._fresh_offers(self.clock.seconds())
        )

    def _progress(self, what: str, key: str, done: int, total: int) -> None:
        """A live bar with rate and time left in a terminal; a line per quarter when piped."""
        now = self.clock.seconds()
        started = self._began.setdefault(key, (now, done))
        self._state[key] = (what, done, total)
        if self.host.interactive:
            percent = 100 if total == 0 else done * 100 // total
            if percent == self.shown.get(key):
                return
            filled = percent // 5
            bar = None
            if percent < 100:
                bar = f"{what} [{'#' * filled}{'-' * (20 - filled)}] {percent}%{rate_and_eta(started, now, done, total)}"
            if self.host.show_progress(bar):
                self.shown[key] = percent
                return
        quarter = 4 if total == 0 else done * 4 // total
        if quarter <= self.shown.get(key, 0):
            return
        self.shown[key] = quarter
        self.host.notice(f"{what}: {quarter * 25}%")

    def disconnected(self) -> None:
        """
        The chat connection dropped.  Files over bulk streams resume once
        it is back (see L{reconnected}); those in the chat connection cannot.
        """
        for offer_id, incoming in list(self.incoming.items()):
            if incoming.stream_key is not None:
                continue
            incoming.fail()
            del self.incoming[offer_id]
            self.host.problem(f"receiving {incoming.name} from {incoming.sender} was interrupted")
        for stream in self.streams:
            self.host.problem(f"sending {stream.outgoing.name} to {stream.receiver} was interrupted")
        self.streams.clear()

    def _resume_if_ready(self, incoming: Incoming) -> None:
        if self.incoming.get(incoming.id) is incoming and incoming.id not in self.stream_in and self.host.ready:
            self._open_receiving_stream(incoming)
        # not ready: reconnected() picks it up

    def reconnected(self) -> None:
        """
        The chat connection is back: resume the streams that were cut --
        as a receiver by accepting again, as a sender by offering again
        (whichever of the two comes back last gets it going).
        """
        for incoming in list(self.incoming.values()):
            if incoming.stream_key is not None and incoming.id not in self.stream_in:
                self._open_receiving_stream(incoming)
        for key, proto in list(self.stream_out.items()):
            entry = self.offered.get(key[0])
            if proto.finished and entry is not None:
                self._streams_done[key] = self.clock.seconds()  # a fresh wait for the answer
                self.host.send_control(self._receivers.get(key, key[1]), entry[0].offer())

    def stop(self) -> None:
        for incoming in self.incoming.values():
            incoming.fail()
        self.incoming.clear()
        for end in list(self.stream_in.values()) + list(self.stream_out.values()):
            end.finished = True
            if end.transport is not None:
                end.transport.loseConnection()
        self.stream_in.clear()
        self.stream_out.clear()
        self.disconnected()
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        self._ticker = None
