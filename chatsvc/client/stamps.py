"""
Timestamps on output lines (``14:02``) and a marker when the day changes,
for the terminal front ends.  The clock is injected, so tests choose it.
"""

from __future__ import annotations

import time
from typing import Callable

DEFAULT_FORMAT = "%H:%M"


class Stamps:
    def __init__(self, fmt: str | None = DEFAULT_FORMAT, now: Callable[[], float] = time.time) -> None:
        self.fmt = fmt  # None: no timestamps
        self.now = now
        self._day: str | None = None

    def lines(self, text: str) -> list[str]:
        """The line(s) to print for ``text``: a day marker first when the date changed."""
        if not self.fmt:
            return [text]
        local = time.localtime(self.now())
        out = []
        day = time.strftime("%Y-%m-%d", local)
        if self._day is not None and day != self._day:
            out.append(time.strftime("-- %A %d %B %Y --", local))
        self._day = day
        out.append(f"{time.strftime(self.fmt, local)} {text}")
        return out
