"""
Strong shared secrets: a generated passphrase to offer, and an estimate of
how guessable a chosen one is.

The passphrase is the real bound on secrecy: anyone holding ciphertext can
guess offline, each guess costing one PBKDF2 (600,000 rounds; about 10
guesses per second per core in Python, far more on a GPU).  Generated
passphrases are words drawn uniformly from the EFF long wordlist (7,776
words, 12.9 bits each) that ``xkcdpass`` ships; the estimate is ``zxcvbn``'s
(dictionary words, names, dates, keyboard patterns, l33t), both maintained
libraries rather than a table of our own.
"""

from __future__ import annotations

import math
import secrets
from functools import lru_cache

#: Words in a generated passphrase: 8 x 12.92 bits = 103 bits.
GENERATED_WORDS = 8
#: Below this estimate the client refuses the passphrase (unless told to
#: allow it): 2**40 guesses at 10 per second per core is about 3,500
#: core-years -- but a GPU farm is much faster than Python.
REFUSE_BELOW_BITS = 40
#: Below this it warns.
WARN_BELOW_BITS = 64
#: zxcvbn's cost grows with length; longer text is estimated on its start
#: (the estimate only grows with more text).
_ESTIMATE_CHARS = 72  # zxcvbn refuses longer input


@lru_cache(maxsize=1)
def _words() -> tuple[str, ...]:
    from xkcdpass import xkcd_password

    words = xkcd_password.generate_wordlist(
        wordfile=xkcd_password.locate_wordfile("eff-long"), min_length=1, max_length=20
    )
    return tuple(sorted(set(words)))


def generate(words: int = GENERATED_WORDS) -> str:
    """Words chosen with the operating system's CSPRNG, joined by dashes."""
    pool = _words()
    return "-".join(secrets.choice(pool) for _ in range(words))


def generated_bits(words: int = GENERATED_WORDS) -> float:
    return words * math.log2(len(_words()))


def strength_bits(passphrase: str) -> float:
    """log2 of zxcvbn's estimate of the guesses needed."""
    from zxcvbn import zxcvbn

    result = zxcvbn(passphrase[:_ESTIMATE_CHARS])
    return max(0.0, float(result["guesses_log10"]) * math.log2(10))
