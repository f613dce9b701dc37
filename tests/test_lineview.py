"""The input line's view in display columns (chatsvc/client/lineview.py): pure functions."""

from __future__ import annotations

from hypothesis import given, strategies as st

from chatsvc.client.lineview import MORE, text_width, visible


def test_wide_and_combining_characters_take_their_columns():
    assert text_width("ab😀cd") == 6
    assert text_width("李雷") == 4
    assert text_width("e\u0301") == 1  # e + combining acute: one column
    assert visible(list("ab😀cd"), 3, 80) == ("ab😀cd", 4)  # the cursor after the emoji is in column 4


def test_long_input_scrolls_sideways_and_keeps_the_cursor_in_view():
    chars = list("x" * 200)
    shown, column = visible(chars, 200, 40)
    assert shown.startswith(MORE) and text_width(shown) <= 39 and column == text_width(shown)
    shown, column = visible(chars, 0, 40)
    assert shown.endswith(MORE) and column == 0
    shown, column = visible(chars, 100, 40)
    assert shown.startswith(MORE) and shown.endswith(MORE) and 0 < column < 39


wide_text = st.lists(st.sampled_from(list("ab ñ李😀é") + ["e\u0301"]), max_size=120)


@given(wide_text, st.integers(0, 200), st.integers(10, 120))
def test_the_view_fits_one_row_and_shows_the_cursor(chars, cursor, columns):
    chars = [c for item in chars for c in item]
    cursor = min(cursor, len(chars))
    shown, column = visible(chars, cursor, columns)
    assert text_width(shown) <= columns - 1  # one row; the last column stays free
    assert 0 <= column <= text_width(shown)
    if text_width(chars) <= columns - 1:
        assert shown == "".join(chars) and column == text_width(chars[:cursor])
