"""
Front ends: how a L{ChatSession} meets a person or a script.

- L{PipedFrontEnd}: standard input is not a terminal.  A line in is a line
  typed; each output line is a line out.  End of input quits once what was
  typed has been handled.
- L{InteractiveFrontEnd}: standard input is a terminal.  Built on Twisted's
  own ``conch.insults`` terminal layer and ``conch.recvline`` line editor
  (the pieces ``twisted.conch.stdio`` uses), so it runs on the reactor with
  no thread and no extra dependency, yet has line editing and up/down
  history.  Incoming lines are printed *above* the input line, which is then
  redrawn intact -- a half-typed message is never clobbered.
"""

from __future__ import annotations

import codecs
import os
import shutil
import sys

from twisted.conch.insults import insults
from twisted.conch.recvline import HistoricRecvLine
from twisted.internet import defer, interfaces
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from chatsvc.client import lineview
from chatsvc.client.stamps import Stamps
from chatsvc.client.text import clean
from chatsvc.client.windows import Windows, indent_of

CTRL_C = b"\x03"
CTRL_D = b"\x04"
CTRL_L = b"\x0c"
CTRL_U = b"\x15"
#: Alt-1 .. Alt-9 switch the current room (/window N), as in irssi.
ALT_WINDOWS = frozenset(b"%d" % n for n in range(1, 10))


@implementer(interfaces.IHalfCloseableProtocol)
class PipedFrontEnd(LineOnlyReceiver):
    """Plain lines in and out, for scripts and tests."""

    delimiter = b"\n"
    MAX_LENGTH = 1024 * 1024
    session = None

    def __init__(self, stamps: Stamps | None = None) -> None:
        self.closed: defer.Deferred[None] = defer.Deferred()  # stdio gone
        # Scripts read these lines: no timestamps unless asked for.
        self.stamps = stamps or Stamps(None)

    def lineReceived(self, line: bytes) -> None:
        self.session.user_line(line.decode("utf-8", errors="replace"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.show("! input line too long; ignored")

    def readConnectionLost(self) -> None:
        # Half-close: stdin ended but stdout stays open for the replies to
        # what was typed last.
        if self._buffer:
            rest, self._buffer = self._buffer, b""
            self.lineReceived(rest)
        self.session.user_eof()

    def writeConnectionLost(self) -> None:
        pass  # nobody reads our output any more; keep going until done

    def connectionLost(self, reason=None) -> None:
        if self.session is not None and not self.session.input_closed:
            self.session.user_eof()
        if not self.closed.called:
            self.closed.callback(None)

    # Display
    def show(self, text: str) -> None:
        if self.transport is not None:
            for line in self.stamps.lines(clean(text)):
                self.transport.write(line.encode("utf-8", errors="replace") + b"\n")

    def set_prompt(self, text: str) -> None:
        pass


class InteractiveFrontEnd(HistoricRecvLine):
    """A line editor whose input line survives incoming messages."""

    session = None
    ps = (b"> ", b"> ")

    def __init__(self, stamps: Stamps | None = None, bell: bool = True) -> None:
        self.closed: defer.Deferred[None] = defer.Deferred()  # stdio gone
        self.stamps = stamps or Stamps()
        self.bell = bell
        self.activity: str | None = None  # unread counts per room
        self.progress: str | None = None  # a transfer's bar
        self.windows = Windows()  # each room's and query's own scrollback

    def connectionLost(self, reason=None) -> None:
        super().connectionLost(reason)
        if not self.closed.called:
            self.closed.callback(None)

    def connectionMade(self) -> None:
        super().connectionMade()
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.keyHandlers.update(
            {
                CTRL_C: self.handle_QUIT,
                CTRL_D: self.handle_EOF,
                CTRL_L: self.handle_REDRAW,
                CTRL_U: self.handle_KILL_LINE,
                self.terminal.PGUP: self.handle_PGUP,
                self.terminal.PGDN: self.handle_PGDN,
            }
        )

    def initializeScreen(self) -> None:
        # Unlike RecvLine, don't wipe the user's screen; just start a prompt.
        # The terminal stays in its normal (overwrite) mode: every change
        # redraws the one input row (lineview.py), in display columns.
        self.mode = "insert"
        self._draw()

    # --- editing: the buffer changes, then the row is drawn again ----------
    # (RecvLine moves the cursor one column per character, which is wrong
    # for emoji, CJK and combining marks.)

    def characterReceived(self, ch, moreCharactersComing) -> None:
        self.lineBuffer.insert(self.lineBufferIndex, ch)
        self.lineBufferIndex += 1
        if not moreCharactersComing:
            self._redraw()

    def _move(self, index: int) -> None:
        index = max(0, min(index, len(self.lineBuffer)))
        if index != self.lineBufferIndex:
            self.lineBufferIndex = index
            self._redraw()

    def handle_LEFT(self) -> None:
        self._move(self.lineBufferIndex - 1)

    def handle_RIGHT(self) -> None:
        self._move(self.lineBufferIndex + 1)

    def handle_HOME(self) -> None:
        self._move(0)

    def handle_END(self) -> None:
        self._move(len(self.lineBuffer))

    def handle_BACKSPACE(self) -> None:
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            del self.lineBuffer[self.lineBufferIndex]
            self._redraw()

    def handle_DELETE(self) -> None:
        if self.lineBufferIndex < len(self.lineBuffer):
            del self.lineBuffer[self.lineBufferIndex]
            self._redraw()

    def handle_INSERT(self) -> None:
        pass  # always inserting

    def handle_TAB(self) -> None:
        chars = [ch.decode("utf-8", errors="replace") for ch in self.lineBuffer]
        before = "".join(chars[: self.lineBufferIndex])
        after = chars[self.lineBufferIndex :]
        completed, choices = self.session.commands.completions(before)
        if choices:
            self.show("  ".join(choices))
        if completed != before:
            self.lineBuffer = [ch.encode("utf-8") for ch in completed] + [ch.encode("utf-8") for ch in after]
            self.lineBufferIndex = len(completed)
            self._redraw()

    def _set_line(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace")
        self.lineBuffer = [ch.encode("utf-8") for ch in text]
        self.lineBufferIndex = len(self.lineBuffer)
        self._redraw()

    def handle_UP(self) -> None:
        if self.lineBuffer and self.historyPosition == len(self.historyLines):
            self.historyLines.append(b"".join(self.lineBuffer))
        if self.historyPosition > 0:
            self.historyPosition -= 1
            self._set_line(self.historyLines[self.historyPosition])

    def handle_DOWN(self) -> None:
        if self.historyPosition < len(self.historyLines) - 1:
            self.historyPosition += 1
            self._set_line(self.historyLines[self.historyPosition])
        else:
            self.historyPosition = len(self.historyLines)
            self._set_line(b"")

    # --- keys --------------------------------------------------------------

    def keystrokeReceived(self, keyID, modifier) -> None:
        if modifier == insults.ServerProtocol.ALT and keyID in ALT_WINDOWS:
            self.session.user_line(f"/window {keyID.decode()}")  # Alt-1..9, as in irssi
            return
        # RecvLine only accepts printable ASCII; typed UTF-8 arrives one byte
        # at a time, so gather each character's bytes into one buffer entry.
        if isinstance(keyID, bytes) and len(keyID) == 1 and keyID[0] >= 0x80:
            char = self._utf8.decode(keyID)
            if char:
                self.characterReceived(char.encode("utf-8"), False)
            return
        super().keystrokeReceived(keyID, modifier)

    def handle_RETURN(self) -> None:
        line = b"".join(self.lineBuffer)
        if line:
            self.historyLines.append(line)
        self.historyPosition = len(self.historyLines)
        self.lineBuffer = []
        self.lineBufferIndex = 0
        # Replace the typed line by whatever the session echoes for it.
        self._erase()
        self.session.user_line(line.decode("utf-8", errors="replace"))
        if not self.session.quitting:
            self._redraw()

    def handle_QUIT(self) -> None:
        self.session.user_line("/quit")

    def handle_EOF(self) -> None:
        if not self.lineBuffer:
            self.session.user_line("/quit")

    def handle_REDRAW(self) -> None:
        """The screen again: the current window's last rows (or where it is scrolled to), status, input."""
        self.terminal.eraseDisplay()
        self.terminal.cursorHome()
        rows = self.windows.view(self._columns() - 1, max(self._rows() - 2, 1))
        if rows:
            self.terminal.write("\n".join(rows).encode("utf-8", errors="replace") + b"\n")
        self._status_drawn = False
        self._set_status_line()

    def handle_PGUP(self) -> None:
        if self.windows.page(max(self._rows() - 3, 1), self._columns() - 1, max(self._rows() - 2, 1)):
            self.handle_REDRAW()

    def handle_PGDN(self) -> None:
        if self.windows.page(-max(self._rows() - 3, 1), self._columns() - 1, max(self._rows() - 2, 1)):
            self.handle_REDRAW()

    def handle_KILL_LINE(self) -> None:
        self.lineBuffer = []
        self.lineBufferIndex = 0
        self._redraw()

    # --- output ------------------------------------------------------------

    # The bottom of the screen is [status line,] input line; output goes
    # above both, which are then drawn again.
    status: str | None = None
    _status_drawn = False

    def _erase(self) -> None:
        self.terminal.write(b"\r")
        self.terminal.eraseLine()
        if self._status_drawn:
            self.terminal.cursorUp(1)
            self.terminal.eraseLine()
            self._status_drawn = False

    def _redraw(self) -> None:
        self._erase()
        self._draw()

    def _columns(self) -> int:
        # Asked on each draw (a cheap ioctl), so a resized window is right
        # on the next keystroke.  The terminal is the one we read keys from.
        for stream in (sys.stdin, sys.stdout):
            try:
                return os.get_terminal_size(stream.fileno()).columns or 80
            except (OSError, ValueError, AttributeError):
                continue
        return shutil.get_terminal_size((80, 24)).columns

    def _rows(self) -> int:
        for stream in (sys.stdin, sys.stdout):
            try:
                return os.get_terminal_size(stream.fileno()).lines or 24
            except (OSError, ValueError, AttributeError):
                continue
        return shutil.get_terminal_size((80, 24)).lines

    def _draw(self) -> None:
        columns = self._columns()
        if self.status is not None and not self._status_drawn:
            # One row, never wrapped: erasing it must take it all away.
            status, _ = lineview.visible(list(self.status), 0, columns)
            self.terminal.write(status.encode("utf-8", errors="replace") + b"\n")
            self._status_drawn = True
        prompt = self.ps[self.pn].decode("utf-8", errors="replace")
        prompt_width = lineview.text_width(prompt)
        chars = [ch.decode("utf-8", errors="replace") for ch in self.lineBuffer]
        shown, column = lineview.visible(chars, self.lineBufferIndex, max(columns - prompt_width, 8))
        self.terminal.write((prompt + shown).encode("utf-8", errors="replace"))
        back = lineview.text_width(shown) - column
        if back > 0:
            self.terminal.cursorBackward(back)

    def drawInputLine(self) -> None:
        self._draw()

    # Display
    def show(self, text: str, highlight: bool = False) -> None:
        self.show_in(None, text, highlight)

    def show_in(self, where: str | None, text: str, alert: bool = False) -> None:
        """A line for ``where``'s window (None: the one in view); drawn if that window is in view."""
        drawn = False
        for line in self.stamps.lines(clean(text)):
            if not self.windows.add(where, line):
                continue
            if not drawn:
                self._erase()
                drawn = True
            # wrapped here, at word boundaries under the text (insults turns "\n" into "\r\n")
            for row in lineview.wrap(line, self._columns() - 1, indent_of(line)):
                data = row.encode("utf-8", errors="replace")
                if alert:
                    data = b"\x1b[1m" + data + b"\x1b[0m"  # bold: it names you
                self.terminal.write(data + b"\n")
        if drawn:
            self._draw()
        if alert and self.bell:
            self.terminal.write(b"\a")

    def show_alert(self, text: str) -> None:
        """A line that names you (or is for you alone): bold, and the bell if wanted."""
        self.show_in(None, text, alert=True)

    def set_window(self, where: str | None) -> None:
        """Show ``where``'s window (/window, Alt-1..9, /query, a join)."""
        if self.windows.select(where):
            self.handle_REDRAW()

    def clear(self) -> None:
        """/clear: the window in view starts empty."""
        self.windows.windows[self.windows.current].lines.clear()
        self.windows.back = 0
        self.handle_REDRAW()

    def set_activity(self, text: str | None) -> None:
        self.activity = clean(text) if text else None
        self._set_status_line()

    def set_prompt(self, text: str) -> None:
        prompt = clean(text).encode("utf-8", errors="replace")
        self.ps = (prompt, prompt)
        self._redraw()

    def set_status(self, text: str | None) -> None:
        """A line kept just above the input line (e.g. a progress bar)."""
        self.progress = clean(text) if text is not None else None
        self._set_status_line()

    def _set_status_line(self) -> None:
        # unread counts first (they change less), then a transfer's progress
        self._erase()
        more = self.windows.back and "-- more below: PageDown --"
        parts = [p for p in (more, self.activity and f"[{self.activity}]", self.progress) if p]
        self.status = "  ".join(parts) if parts else None
        self._draw()


def make_interactive_transport_protocol(front_end: InteractiveFrontEnd) -> insults.ServerProtocol:
    """Wrap a front end in the insults terminal layer for StandardIO."""
    return insults.ServerProtocol(lambda: front_end)


class RawTerminal:
    """
    Put the controlling terminal in raw mode (keys arrive one by one, no
    local echo) for the interactive front end, and restore it afterwards.
    """

    def __init__(self, fd: int | None = None) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.saved = None

    def __enter__(self) -> "RawTerminal":
        import termios
        import tty

        self.saved = termios.tcgetattr(self.fd)
        tty.setraw(self.fd)
        return self

    def __exit__(self, *exc) -> None:
        import termios

        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSANOW, self.saved)
            os.write(sys.stdout.fileno(), b"\r\n")
