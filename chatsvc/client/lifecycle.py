"""
The life of a client session, as an explicit state machine.

    CONNECTING --connected--> REGISTERING --nick accepted--> JOINING
    JOINING --back in every room--> READY
    REGISTERING / JOINING / READY --dropped--> OFFLINE (reconnecting) or CLOSED
    OFFLINE --connected--> REGISTERING
    any --/quit--> CLOSING (a connection to close) or CLOSED
    CLOSING --closed--> CLOSED

A transition that is not in the table is a bug, and raises: the session's
flags can no longer contradict each other.  Plain Python.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    CONNECTING = "connecting"  # the first connection is being made
    REGISTERING = "registering"  # connected: waiting for HELLO, then for OK NICK
    JOINING = "joining"  # nick accepted: (re)joining rooms
    READY = "ready"  # in every room: typed lines go out
    OFFLINE = "offline"  # dropped; the connection is being redialled
    CLOSING = "closing"  # quitting: QUIT sent, waiting for the close
    CLOSED = "closed"  # over


S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    S.CONNECTING: frozenset({S.REGISTERING, S.CLOSED}),
    S.REGISTERING: frozenset({S.JOINING, S.OFFLINE, S.CLOSING, S.CLOSED}),
    S.JOINING: frozenset({S.READY, S.OFFLINE, S.CLOSING, S.CLOSED}),
    S.READY: frozenset({S.OFFLINE, S.CLOSING, S.CLOSED}),
    S.OFFLINE: frozenset({S.REGISTERING, S.CLOSED}),
    S.CLOSING: frozenset({S.CLOSED}),
    S.CLOSED: frozenset(),
}


class BadTransition(Exception):
    pass


class Lifecycle:
    def __init__(self) -> None:
        self.state = State.CONNECTING

    def to(self, new: State) -> None:
        if new is self.state:
            return
        if new not in TRANSITIONS[self.state]:
            raise BadTransition(f"{self.state.value} -> {new.value}")
        self.state = new

    @property
    def online(self) -> bool:
        """A connection is up."""
        return self.state in (S.REGISTERING, S.JOINING, S.READY, S.CLOSING)

    @property
    def ready(self) -> bool:
        return self.state is S.READY

    @property
    def quitting(self) -> bool:
        return self.state in (S.CLOSING, S.CLOSED)
