"""Level 2: the terminal front ends, with no terminal (StringTransport)."""

from __future__ import annotations

from twisted.conch.insults import insults
from twisted.internet.testing import StringTransport

from chatsvc.client.stamps import Stamps
from chatsvc.client.terminal import InteractiveFrontEnd, PipedFrontEnd

UP = b"\x1b[A"
LEFT = b"\x1b[D"


class RecordingSession:
    def __init__(self):
        self.typed: list[str] = []
        self.eof = False
        self.quitting = False
        self.input_closed = False

    def user_line(self, text):
        self.typed.append(text)

    def user_eof(self):
        self.eof = True
        self.input_closed = True


def interactive(**kw):
    kw.setdefault("stamps", Stamps(None))  # exact lines; timestamps are tested on their own
    front = InteractiveFrontEnd(**kw)
    front.session = RecordingSession()
    terminal = insults.ServerProtocol(lambda: front)
    transport = StringTransport()
    terminal.makeConnection(transport)
    transport.clear()
    return front, terminal, transport


def test_incoming_line_leaves_half_typed_input_intact():
    front, terminal, transport = interactive()
    front.set_prompt("[#lobby] ")
    terminal.dataReceived("half typed ñandú".encode())
    transport.clear()
    front.show("[#lobby] bob: hello")
    out = transport.value()
    # the input line is erased, the message printed, then the input redrawn
    assert out.startswith(b"\r\x1b[2K[#lobby] bob: hello\r\n")
    assert out.endswith("[#lobby] half typed ñandú".encode())
    assert b"".join(front.lineBuffer).decode() == "half typed ñandú"
    terminal.dataReceived(b"!\r")
    assert front.session.typed == ["half typed ñandú!"]


def test_cursor_is_put_back_where_it_was():
    front, terminal, transport = interactive()
    terminal.dataReceived(b"abcdef" + LEFT + LEFT)
    transport.clear()
    front.show("news")
    assert transport.value().endswith(b"abcdef\x1b[2D")
    terminal.dataReceived(b"X\r")
    assert front.session.typed == ["abcdXef"]


def test_utf8_characters_are_single_editing_units():
    front, terminal, transport = interactive()
    terminal.dataReceived("ñú".encode() + b"\x7f" + "é".encode() + b"\r")
    assert front.session.typed == ["ñé"]


def test_history_with_up_arrow():
    front, terminal, transport = interactive()
    terminal.dataReceived(b"first\rsecond\r" + UP + UP + b"!\r")
    assert front.session.typed == ["first", "second", "first!"]


def test_ctrl_c_and_ctrl_d_quit():
    front, terminal, transport = interactive()
    terminal.dataReceived(b"\x03")
    assert front.session.typed == ["/quit"]
    front, terminal, transport = interactive()
    terminal.dataReceived(b"text\x04")  # ctrl-d with text does nothing
    assert front.session.typed == []
    terminal.dataReceived(b"\x15\x04")  # ctrl-u clears, then ctrl-d quits
    assert front.session.typed == ["/quit"]


def test_prompt_follows_the_room():
    front, terminal, transport = interactive()
    front.set_prompt("[#dev] ")
    assert transport.value().endswith(b"[#dev] ")


def piped():
    front = PipedFrontEnd()
    front.session = RecordingSession()
    transport = StringTransport()
    front.makeConnection(transport)
    return front, transport


def test_piped_lines_in_and_out():
    front, transport = piped()
    front.dataReceived("hello\r\n/join #x\n¡sí".encode())
    assert front.session.typed == ["hello\r", "/join #x"]
    front.readConnectionLost()  # EOF: the unterminated last line still counts
    assert front.session.typed[-1] == "¡sí"
    assert front.session.eof
    front.show("[#x] bob: hi")
    assert transport.value() == "[#x] bob: hi\n".encode()


def test_piped_invalid_utf8_does_not_crash():
    front, transport = piped()
    front.dataReceived(b"\xff\xfe\n")
    assert front.session.typed == ["\ufffd\ufffd"]


def test_status_line_stays_above_the_input_and_output_goes_above_both():
    front, terminal, transport = interactive()
    front.set_prompt("> ")
    terminal.dataReceived(b"typing")
    front.set_status("sending a.bin [#####---------------] 25%")
    transport.clear()
    front.show("[#lobby] bob: hi")
    out = transport.value()
    # input erased, cursor up, status erased, message, then status + input again
    assert out.startswith(b"\r\x1b[2K\x1b[1A\x1b[2K[#lobby] bob: hi\r\n")
    assert out.endswith(b"sending a.bin [#####---------------] 25%\r\n> typing")
    transport.clear()
    front.set_status(None)
    assert transport.value() == b"\r\x1b[2K\x1b[1A\x1b[2K> typing"
    assert b"".join(front.lineBuffer) == b"typing"


def test_timestamps_on_every_line_and_a_marker_when_the_day_changes():
    import time

    clock = [time.mktime((2026, 12, 1, 23, 59, 0, 0, 0, -1))]
    front, terminal, transport = interactive(stamps=Stamps("%H:%M", now=lambda: clock[0]))
    front.show("[#lobby] bob: late")
    clock[0] += 120
    front.show("[#lobby] bob: early")
    out = transport.value().decode()
    assert "23:59 [#lobby] bob: late\r\n" in out
    assert "-- Wednesday 02 December 2026 --\r\n00:01 [#lobby] bob: early\r\n" in out


def test_a_line_that_names_you_is_bold_and_rings_the_bell_unless_told_not_to():
    front, terminal, transport = interactive()
    front.show_alert("[#lobby] bob: tia, look")
    assert b"\x1b[1m[#lobby] bob: tia, look\x1b[0m\r\n" in transport.value() and b"\a" in transport.value()
    front, terminal, transport = interactive(bell=False)
    front.show_alert("[#lobby] bob: tia, look")
    assert b"\a" not in transport.value()


def test_unread_counts_and_progress_share_the_status_line():
    front, terminal, transport = interactive()
    front.set_activity("#dev 3 #ops 1!")
    front.set_status("sending a.bin 50%")
    assert front.status == "[#dev 3 #ops 1!]  sending a.bin 50%"
    front.set_status(None)
    assert front.status == "[#dev 3 #ops 1!]"
    front.set_activity(None)
    assert front.status is None


class CompletingSession(RecordingSession):
    class commands:
        @staticmethod
        def completions(before):
            from chatsvc.client.completion import complete

            return complete(before, ["join", "jump", "msg"], ["#lobby", "#lounge"], ["alice", "Albert", "bob"])


def test_tab_completes_nicks_commands_and_rooms():
    front, terminal, transport = interactive()
    front.session = CompletingSession()
    terminal.dataReceived(b"bo\t")
    assert b"".join(front.lineBuffer).decode() == "bob: "
    terminal.dataReceived(b"\x15/ms\t")
    assert b"".join(front.lineBuffer).decode() == "/msg "
    terminal.dataReceived(b"\x15see #lou\t")
    assert b"".join(front.lineBuffer).decode() == "see #lounge "
    transport.clear()
    terminal.dataReceived(b"\x15al\t")  # two match: both are shown, the common part stays
    assert b"".join(front.lineBuffer).decode() == "al"
    assert b"alice  Albert" in transport.value() or b"Albert  alice" in transport.value()


def test_alt_digit_switches_window():
    front, terminal, transport = interactive()
    terminal.dataReceived(b"\x1b2")
    assert front.session.typed == ["/window 2"]
