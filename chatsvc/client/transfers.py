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
Over a relay that splices bulk streams, the bytes go over a connection of
their own instead (``stream.py``).

L{Transfers} is what the session and the commands see; the two directions
are ``sending_files.py`` and ``receiving_files.py``, the numbers and the
progress line ``transfer_limits.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from twisted.internet import task

from chatsvc.client import files
from chatsvc.client.files import Incoming, TransferError
from chatsvc.client.receiving_files import ReceivingFiles
from chatsvc.client.sending_files import SendingFiles, Stream  # noqa: F401
from chatsvc.client.transfer_limits import (  # noqa: F401 -- the numbers, importable from here as before
    ACK_EVERY, ANSWER_GRACE, CHUNKS_PER_SECOND, MAX_INCOMING, MAX_INCOMING_PER_SENDER, MAX_RESUMES,
    MAX_WAITING_OFFERS, OFFER_LIFETIME, RECENT_FOR, RECENT_KEPT, RESUME_DELAY, STALL_TIMEOUT, WINDOW, Progress,
    rate_and_eta,
)


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


class Transfers:
    def __init__(self, host: TransferHost, downloads: Path, auto_accept_bytes: int, clock, run_slow=None) -> None:
        self.host = host
        self.clock = clock
        self.progress = Progress(host, clock)
        self.sending = SendingFiles(host, clock, run_slow, self.progress, self._ensure_ticking)
        self.receiving = ReceivingFiles(host, clock, downloads, auto_accept_bytes, self.progress, self._ensure_ticking)
        self._ticker: task.LoopingCall | None = None

    # what tests and /transfers read
    @property
    def incoming(self) -> dict[str, Incoming]:
        return self.receiving.incoming

    @property
    def offers(self) -> dict:
        return self.receiving.offers

    @property
    def stream_in(self) -> dict:
        return self.receiving.stream_in

    @property
    def offered(self) -> dict:
        return self.sending.offered

    @property
    def streams(self) -> list:
        return self.sending.streams

    # --- user commands -------------------------------------------------------------------

    def send(self, target: str, path: str) -> None:
        self.sending.send(target, path)

    def accept(self, prefix: str) -> None:
        offer_id = self._find(prefix)
        if offer_id is not None:
            offer, sender, target = self.offers.pop(offer_id)
            self.receiving.start(offer, sender, target)

    def reject(self, prefix: str) -> None:
        offer_id = self._find(prefix)
        if offer_id is None:
            return
        offer, sender, _ = self.offers.pop(offer_id)
        self.host.send_control(sender, files.encode("reject", id=offer_id))
        self.host.notice(f"declined {files.safe_name(offer.get('name', 'file'))} from {sender}")

    def _find(self, prefix: str) -> str | None:
        matches = [i for i in self.offers if i.startswith(prefix)] if prefix else list(self.offers)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            self.host.problem("no such file offer" if prefix else "no file offers waiting")
        else:
            self.host.problem("several offers: name one by its id, e.g. /accept " + matches[0][:6])
        return None

    def list(self) -> None:
        """/transfers: what is in flight, with ids for /cancel and /accept."""
        lines = []
        for incoming in self.incoming.values():
            lines.append(f"{incoming.id[:6]} receiving {incoming.name} from {incoming.sender}: "
                         f"{self.progress.describe(incoming.id, incoming.received, incoming.size)}")
        for offer_id, (outgoing, _) in self.offered.items():
            receivers = self.sending.receivers_of(offer_id)
            to = f" to {', '.join(receivers)}" if receivers else f" offered to {outgoing.target}"
            lines.append(f"{offer_id[:6]} sending {outgoing.name}{to}")
        for offer_id, (fields, sender, _) in self.offers.items():
            lines.append(f"{offer_id[:6]} waiting: {files.safe_name(fields.get('name', 'file'))} from {sender} "
                         f"(/accept {offer_id[:6]} or /reject {offer_id[:6]})")
        recent = self.progress.recent_lines()
        if not lines and not recent:
            self.host.notice("no file transfers")
        for line in lines:
            self.host.notice(line)
        if recent:
            self.host.notice("recent: " + "; ".join(recent))

    def cancel(self, prefix: str) -> None:
        """/cancel id: stop receiving or sending a file."""
        if not prefix:
            self.host.problem("usage: /cancel id (/transfers lists them)")
            return
        incoming_ids = [i for i in self.incoming if i.startswith(prefix)]
        matches = incoming_ids + [i for i in self.offered if i.startswith(prefix)]
        if len(matches) != 1:
            self.host.problem("no such transfer (/transfers lists them)" if not matches else
                              "several transfers match: give more of the id")
            return
        if incoming_ids:
            self.receiving.cancel(matches[0])
        else:
            self.sending.cancel(matches[0])
        self.host.transfers_changed()

    # --- messages from peers ---------------------------------------------------------------

    def handle(self, sender: str, target: str, fields: dict) -> None:
        kind, offer_id = fields["t"], fields["id"]
        handlers = {
            "offer": lambda: self.receiving.on_offer(sender, target, offer_id, fields),
            "chunk": lambda: self.receiving.on_chunk(sender, offer_id, fields),
            "accept": lambda: self.sending.on_accept(sender, offer_id, fields),
            "reject": lambda: self.sending.on_reject(sender, offer_id),
            "ack": lambda: self.sending.on_ack(sender, offer_id, fields),
            "cancel": lambda: (self.receiving.on_cancel(sender, offer_id), self.sending.on_cancel(sender, offer_id)),
        }
        if kind not in handlers:
            return  # a newer client's message kind
        try:
            try:
                handlers[kind]()
            except (KeyError, TypeError, ValueError):
                raise TransferError(f"damaged {kind} message")
        except TransferError as e:
            self.host.problem(f"file transfer with {sender} stopped: {e}")

    # --- pacing ----------------------------------------------------------------------------

    def _ensure_ticking(self) -> None:
        if self._ticker is None:
            self._ticker = task.LoopingCall(self._tick)
            self._ticker.clock = self.clock
            self._ticker.start(1 / CHUNKS_PER_SECOND, now=True)

    def _tick(self) -> None:
        now = self.clock.seconds()
        self.sending.expire(now)
        self.receiving.expire(now)
        self.host.transfers_changed()
        if not self.sending.in_flight() and not self.incoming and not self.sending.fresh_offers(now):
            if self._ticker is not None and self._ticker.running:
                self._ticker.stop()
            self._ticker = None
            return
        if self.streams and self.host.ready:  # (reconnecting: wait)
            self.sending.next_chunk()

    def busy(self) -> bool:
        """Something in flight that ending the session now would cut short."""
        return bool(self.sending.in_flight() or self.incoming or self.sending.preparing
                    or self.sending.fresh_offers(self.clock.seconds()))

    # --- the chat connection ------------------------------------------------------------------

    def disconnected(self) -> None:
        """The chat dropped: bulk streams resume once it is back (L{reconnected}); chunks in the chat cannot."""
        self.receiving.disconnected()
        self.sending.disconnected()
        self.progress.paused()

    def reconnected(self) -> None:
        """Resume what was cut: as a receiver by accepting again, as a sender by offering again."""
        self.receiving.reconnected()
        self.sending.reconnected()

    def stop(self) -> None:
        self.receiving.stop()
        self.sending.stop()
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        self._ticker = None
