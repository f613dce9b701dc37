"""The one fake display the client tests share: it records what a session shows."""

from __future__ import annotations


class RecordingDisplay:
    """
    A session's Display: keeps every line shown and the prompt.  ``seen``
    (for tests on the real reactor) returns a Deferred that fires once a
    line has been shown, so nothing waits a fixed time.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.prompt = ""
        self._waiting: list = []

    def show(self, text: str) -> None:
        self.lines.append(text)
        for wanted, d in list(self._waiting):
            if text == wanted:
                self._waiting.remove((wanted, d))
                d.callback(text)

    def set_prompt(self, text: str) -> None:
        self.prompt = text

    def take(self) -> list[str]:
        """What was shown since the last call."""
        lines, self.lines = self.lines, []
        return lines

    def seen(self, wanted: str, timeout: float = 10):
        from twisted.internet import defer, reactor

        if wanted in self.lines:
            return defer.succeed(wanted)
        d = defer.Deferred()
        self._waiting.append((wanted, d))
        return d.addTimeout(timeout, reactor)
