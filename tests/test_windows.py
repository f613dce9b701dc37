"""The terminal's windows (issue #23, 6) and wrapping with a hanging indent, as pure functions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chatsvc.client.lineview import text_width, wrap
from chatsvc.client.windows import Windows, indent_of


def test_each_window_keeps_its_own_lines_and_the_first_takes_what_came_before():
    w = Windows()
    assert w.add(None, "* connected")  # before any room: shown
    w.select("#lobby")
    assert w.add("#lobby", "[#lobby] bob: hi")
    assert not w.add("#dev", "[#dev] carol: elsewhere")  # kept, not shown
    assert w.view(80, 10) == ["* connected", "[#lobby] bob: hi"]
    w.select("#dev")
    assert w.view(80, 10) == ["[#dev] carol: elsewhere"]
    assert w.add(None, "* a notice")  # unplaced: the window in view
    assert w.view(80, 10)[-1] == "* a notice"


def test_page_up_and_down_scroll_the_window_in_view():
    w = Windows()
    w.select("#lobby")
    for n in range(30):
        w.add("#lobby", f"line {n}")
    assert w.view(80, 10)[-1] == "line 29"
    assert w.page(9, 80, 10)
    assert w.view(80, 10) == [f"line {n}" for n in range(11, 21)]
    assert not w.add("#lobby", "line 30")  # scrolled back: not drawn, kept
    assert w.page(-100, 80, 10) and w.back == 0
    assert w.view(80, 10)[-1] == "line 30"
    assert not w.page(-1, 80, 10)  # already at the bottom
    assert w.page(1000, 80, 10) and w.view(80, 10)[0] == "line 0"  # no further than the top


def test_long_lines_wrap_at_words_under_the_text():
    line = "12:04 [#lobby] bob: the quick brown fox jumps over the lazy dog"
    rows = wrap(line, 40, indent_of(line))
    assert rows == ["12:04 [#lobby] bob: the quick brown fox", "                    jumps over the lazy", "                    dog"]
    assert indent_of("12:04 * bob joined #lobby") == len("12:04 * ")


@given(st.text(alphabet=st.sampled_from("ab 😀界"), max_size=200), st.integers(4, 60), st.integers(0, 30))
def test_wrapped_rows_fit_and_keep_every_word(text, columns, indent):
    rows = wrap(text, columns, indent)
    assert all(text_width(row) <= columns for row in rows)
    assert "".join(text.split()) == "".join("".join(rows).split())
