"""
The numbers file transfers live by, and the progress line both directions
share.  Plain Python; ``transfers.py`` (and its two halves,
``sending_files.py`` and ``receiving_files.py``) use them.
"""

from __future__ import annotations

from chatsvc.client import files

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
#: /transfers' "recent" section: transfers that ended, for this long (seconds), at most this many.
RECENT_FOR = 600.0
RECENT_KEPT = 10


def rate_and_eta(started: tuple[float, int] | None, now: float, done: int, total: int) -> str:
    """', 118 MiB/s, 3 s left' once there is something to measure."""
    if started is None or now - started[0] < 0.5 or done <= started[1]:
        return ""
    rate = (done - started[1]) / (now - started[0])
    left = (total - done) / rate
    when = f"{left:.0f} s" if left < 120 else f"{left / 60:.0f} min"
    return f", {files.human_size(int(rate))}/s, {when} left"


class Progress:
    """A live bar with rate and time left in a terminal; a line per quarter when piped."""

    def __init__(self, host, clock) -> None:
        self.host = host
        self.clock = clock
        self.shown: dict[str, int] = {}
        self.began: dict[str, tuple[float, int]] = {}  # key -> (when, bytes) it started
        self.state: dict[str, tuple[str, int, int]] = {}  # key -> (what, done, total)
        self.recent: list[tuple[float, str]] = []  # (when, how it ended), oldest first

    def __call__(self, what: str, key: str, done: int, total: int) -> None:
        now = self.clock.seconds()
        started = self.began.setdefault(key, (now, done))
        self.state[key] = (what, done, total)
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

    def ended(self, key: str, text: str) -> None:
        """A transfer ended (done, failed, cancelled): out of the live lines, into the recent ones."""
        for table in (self.state, self.began, self.shown):
            table.pop(key, None)
        self.recent = [*self.recent, (self.clock.seconds(), text)][-RECENT_KEPT:]

    def recent_lines(self) -> list[str]:
        """How the transfers that ended lately ended, oldest first (older ones are forgotten)."""
        now = self.clock.seconds()
        self.recent = [(when, text) for when, text in self.recent if now - when <= RECENT_FOR]
        return [text for _, text in self.recent]

    def paused(self) -> None:
        """The chat dropped: a live bar says so (instead of freezing); rates start afresh after."""
        self.began.clear()
        if not self.host.interactive:
            return
        for what, done, total in list(self.state.values())[-1:]:
            percent = 100 if total == 0 else done * 100 // total
            if percent < 100:
                filled = percent // 5
                self.host.show_progress(f"{what} [{'#' * filled}{'-' * (20 - filled)}] {percent}% — paused: "
                                        "not connected")
                self.shown.pop(next(k for k, v in self.state.items() if v == (what, done, total)), None)

    def describe(self, key: str, done: int, total: int) -> str:
        """'42%, 118 MiB/s, 3 s left' for /transfers."""
        _, done, total = self.state.get(key, ("", done, total))
        return f"{done * 100 // max(1, total)}%{rate_and_eta(self.began.get(key), self.clock.seconds(), done, total)}"


def close_end(end) -> None:
    """Stop one end of a bulk stream (a StreamSender or StreamReceiver), if any."""
    if end is not None:
        end.finished = True
        if getattr(end, "file", None) is not None:
            end.file.close()  # (its own ending is skipped once finished)
        if end.transport is not None:
            end.transport.loseConnection()
