"""
Files coming in: offers (taken at once up to the auto-accept size, else
waiting for /accept), then the bytes -- over a bulk stream of our own
(resumed from the last verified frame when it is cut) or as chunks in the
chat.  One half of ``transfers.py``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from chatsvc.client import files
from chatsvc.client.files import Incoming, TransferError
from chatsvc.client.stream import CUT, StreamReceiver
from chatsvc.client.transfer_limits import (
    ACK_EVERY, MAX_INCOMING, MAX_INCOMING_PER_SENDER, MAX_RESUMES, MAX_WAITING_OFFERS, RESUME_DELAY, STALL_TIMEOUT,
    close_end,
)
from chatsvc.grammar import name_key

IMAGE_KINDS = ("PNG", "JPEG", "GIF", "WebP")


class ReceivingFiles:
    def __init__(self, host, clock, downloads: Path, auto_accept_bytes: int, progress, ticking) -> None:
        self.host = host
        self.clock = clock
        self.downloads = downloads
        self.auto_accept_bytes = auto_accept_bytes
        self._progress = progress
        self._ticking = ticking
        self.offers: dict[str, tuple[dict, str, str]] = {}  # id -> (offer, sender, target) awaiting /accept
        self.incoming: dict[str, Incoming] = {}
        self.stream_in: dict[str, StreamReceiver] = {}  # id -> our end of its stream
        self._declined_from: set[str] = set()  # senders told "too many" (told once)

    def _end(self, key: str, text: str, problem: bool = True) -> None:
        """A transfer ended: tell the user, and keep it for /transfers' recent section."""
        (self.host.problem if problem else self.host.notice)(text)
        self._progress.ended(key, text)

    # --- offers ------------------------------------------------------------------------

    def on_offer(self, sender: str, target: str, offer_id: str, fields: dict) -> None:
        if offer_id in self.incoming:
            self._offered_again(self.incoming[offer_id], sender)
            return
        try:
            size = int(fields["size"])
        except (KeyError, TypeError, ValueError):
            raise TransferError("damaged file offer")
        kind = fields.get("type") if fields.get("type") in IMAGE_KINDS else "file"  # shown: never raw peer text
        what = f"{files.safe_name(fields.get('name', 'file'))} ({kind}, {files.human_size(size)})"
        if self._too_many(sender, offer_id, what):
            return
        unfinished = self._unfinished(sender, fields) if fields.get("stream") else None
        if unfinished is not None:
            # The same file, offered again by a sender that started afresh:
            # keep what was verified, go on from there under the new id.
            close_end(self.stream_in.pop(unfinished.id, None))
            del self.incoming[unfinished.id]
            unfinished.id, unfinished.resumes = offer_id, 0
            self.incoming[offer_id] = unfinished
            self.host.notice(f"{sender} sends {what} again: resuming at "
                             f"{unfinished.received * 100 // max(1, unfinished.size)}%")
            self._open_stream(unfinished)
            return
        where = f" in {target}" if target.startswith("#") else ""
        if size <= self.auto_accept_bytes:
            self.host.notice(f"{sender} sends {what}{where}: receiving it")
            self.start(fields, sender, target)
            return
        self.offers[offer_id] = (fields, sender, target)
        while len(self.offers) > MAX_WAITING_OFFERS:
            del self.offers[next(iter(self.offers))]
        self.host.notice(f"{sender} offers {what}{where}: /accept {offer_id[:6]} or /reject {offer_id[:6]}")

    def _offered_again(self, existing: Incoming, sender: str) -> None:
        # The sender is back after a drop and offers again: resume what was
        # cut.  A stream that has carried nothing yet may be waiting for an
        # answer to an accept that never reached the sender (it was away):
        # replace it.  One that is moving needs nothing.
        if existing.stream_key is None or name_key(existing.sender) != name_key(sender):
            return
        waiting = self.stream_in.get(existing.id)
        if waiting is not None and waiting.index == waiting.start:
            close_end(self.stream_in.pop(existing.id))
        if existing.id not in self.stream_in:
            self._open_stream(existing)

    def _too_many(self, sender: str, offer_id: str, what: str) -> bool:
        from_sender = sum(name_key(i.sender) == name_key(sender) for i in self.incoming.values())
        if from_sender < MAX_INCOMING_PER_SENDER and len(self.incoming) < MAX_INCOMING:
            return False
        self.host.send_control(sender, files.encode("reject", id=offer_id))
        if name_key(sender) not in self._declined_from:
            self._declined_from.add(name_key(sender))
            self.host.problem(
                f"declined {what} from {sender}: already receiving {from_sender} from them and "
                f"{len(self.incoming)} in all (at most {MAX_INCOMING_PER_SENDER} and {MAX_INCOMING})"
            )
        return True

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

    def start(self, offer: dict, sender: str, target: str) -> None:
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
            self._open_stream(incoming)
        self._ticking()  # also watches for stalled receives

    def cancel(self, offer_id: str) -> None:
        incoming = self.incoming.pop(offer_id)
        close_end(self.stream_in.pop(offer_id, None))
        incoming.fail()
        self.host.send_control(incoming.sender, files.encode("cancel", id=offer_id))
        self._end(offer_id, f"stopped receiving {incoming.name} from {incoming.sender}", problem=False)

    # --- over a bulk stream ----------------------------------------------------------------

    def _open_stream(self, incoming: Incoming) -> None:
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
            progress=lambda done, i=incoming: self._stream_progress(i, done),
            done=lambda error, i=incoming: self._stream_received(i, error),
        )
        self.stream_in[incoming.id] = receiver
        incoming.last_heard = self.clock.seconds()
        self.host.send_control(incoming.sender, files.encode("accept", id=incoming.id, stream=token))
        self.host.open_stream(receiver)

    def _stream_progress(self, incoming: Incoming, done: int) -> None:
        incoming.last_heard = self.clock.seconds()
        self._progress(f"receiving {incoming.name} from {incoming.sender}", incoming.id, done, incoming.size)

    def _stream_received(self, incoming: Incoming, error: str | None) -> None:
        self.stream_in.pop(incoming.id, None)
        if incoming.id not in self.incoming:
            return  # cancelled or timed out meanwhile
        if error == CUT and incoming.resumes < MAX_RESUMES:
            # Cut, not corrupted: what was verified stays; pick up from there
            # now, or once the chat connection is back -- after a moment: the
            # cut may be the relay going away, the chat's drop not seen yet.
            incoming.resumes += 1
            percent = incoming.received * 100 // max(1, incoming.size)
            self.host.notice(f"receiving {incoming.name} from {incoming.sender} was cut at {percent}%; resuming")
            self.clock.callLater(RESUME_DELAY * incoming.resumes, self._resume_if_ready, incoming)
            return
        del self.incoming[incoming.id]
        if error is not None:
            incoming.fail()
            self.host.send_control(incoming.sender, files.encode("cancel", id=incoming.id))
            self._end(incoming.id, f"receiving {incoming.name} from {incoming.sender} failed: {error}")
        else:
            self.host.send_control(incoming.sender, files.encode("ack", id=incoming.id, i=-1, stream=1))
            self._saved(incoming)
        self.host.transfers_changed()

    def _saved(self, incoming: Incoming) -> None:
        final = incoming.finish()
        self._end(incoming.id, f"saved {incoming.name} from {incoming.sender} as {final} "
                  f"({files.describe(incoming.size, incoming.image, incoming.head)})", problem=False)

    def _resume_if_ready(self, incoming: Incoming) -> None:
        if self.incoming.get(incoming.id) is incoming and incoming.id not in self.stream_in and self.host.ready:
            self._open_stream(incoming)
        # not ready: reconnected() picks it up

    # --- in the chat --------------------------------------------------------------------------

    def on_chunk(self, sender: str, offer_id: str, fields: dict) -> None:
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
            self._saved(incoming)
            self.host.transfers_changed()

    def on_cancel(self, sender: str, offer_id: str) -> None:
        """The sender stopped sending (only the sender of a file can: anyone can name any id)."""
        incoming = self.incoming.get(offer_id)
        if incoming is not None and name_key(incoming.sender) == name_key(sender):
            del self.incoming[offer_id]
            close_end(self.stream_in.pop(offer_id, None))
            incoming.fail()
            self._end(offer_id, f"{sender} stopped sending {incoming.name}")

    # --- time and the chat connection -----------------------------------------------------------

    def expire(self, now: float) -> None:
        for offer_id, incoming in list(self.incoming.items()):
            if now - incoming.last_heard > STALL_TIMEOUT:
                close_end(self.stream_in.pop(offer_id, None))
                del self.incoming[offer_id]
                incoming.fail()  # the partial file goes
                self.host.send_control(incoming.sender, files.encode("cancel", id=offer_id))
                self._end(offer_id, f"{incoming.sender} stopped sending {incoming.name}; gave up receiving it")

    def disconnected(self) -> None:
        """Files over bulk streams resume once the chat is back; those in the chat cannot."""
        for offer_id, incoming in list(self.incoming.items()):
            if incoming.stream_key is None:
                incoming.fail()
                del self.incoming[offer_id]
                self._end(offer_id, f"receiving {incoming.name} from {incoming.sender} was interrupted")

    def reconnected(self) -> None:
        for incoming in list(self.incoming.values()):
            if incoming.stream_key is not None and incoming.id not in self.stream_in:
                self._open_stream(incoming)

    def stop(self) -> None:
        for incoming in self.incoming.values():
            incoming.fail()
        self.incoming.clear()
        for end in list(self.stream_in.values()):
            close_end(end)
        self.stream_in.clear()
