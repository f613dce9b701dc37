"""Level 1: ciphers as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatsvc.client.ciphers import CaesarCipher, Context, DecryptError, split_scheme

ROOM = Context(target="#lobby", sender="alice")


@pytest.mark.parametrize(
    "shift, plain, body",
    [
        (10, "Hola", "Ryvk"),  # the original client's default key
        (10, "hello bob", "rovvy lyl"),
        (3, "abcxyz ABCXYZ", "defabc DEFABC"),
        (13, "Why did the chicken cross the road?", "Jul qvq gur puvpxra pebff gur ebnq?"),
        (10, "¡Hola! ¿Sí? ñandú", "¡Ryvk! ¿Cí? ñkxnú"),  # non-ASCII untouched
        (36, "abc", "klm"),  # keys wrap around the alphabet
        (-1, "abc", "zab"),
        (0, "same", "same"),
    ],
)
def test_caesar_known_answers(shift, plain, body):
    cipher = CaesarCipher(shift)
    assert cipher.encrypt(plain, ROOM) == "caesar:" + body
    assert cipher.decrypt("caesar:" + body, ROOM) == plain


def test_original_accent_bug_is_gone():
    # The original shifted "í" out of the alphabet: "Sí" came back as "Sk".
    cipher = CaesarCipher(10)
    assert cipher.decrypt(cipher.encrypt("Sí", ROOM), ROOM) == "Sí"


def test_payload_names_its_scheme():
    assert split_scheme(CaesarCipher().encrypt("x", ROOM))[0] == "caesar"


@pytest.mark.parametrize("payload", ["no tag here", ":empty", "x" * 20 + ":long tag"])
def test_untagged_payload_is_refused(payload):
    with pytest.raises(DecryptError, match="scheme tag"):
        CaesarCipher().decrypt(payload, ROOM)


def test_other_scheme_is_named():
    with pytest.raises(DecryptError, match="'aes1'"):
        CaesarCipher().decrypt("aes1:AAAA", ROOM)


@given(st.text(), st.integers(-1000, 1000))
def test_caesar_round_trips_any_string(text, shift):
    cipher = CaesarCipher(shift)
    assert cipher.decrypt(cipher.encrypt(text, ROOM), ROOM) == text


@given(st.text())
def test_caesar_changes_only_ascii_letters(text):
    body = CaesarCipher(7).encrypt(text, ROOM).split(":", 1)[1]
    assert len(body) == len(text)
    for a, b in zip(text, body):
        assert (a == b) != (a.isascii() and a.isalpha())
