"""
Key exchange with one person, as an explicit state machine (docs/trust.md,
*Key exchange*).

A private message goes out keyed to both identities and both sessions, or
not at all until the user says so.  To key it, the sender needs the
recipient's session key, which comes with their answer to a key request.

    idle      --send-->    asking_1  [hold, request, arm 5]
    asking_1  --timeout--> asking_2  [request, arm 10]
    asking_2  --timeout--> asking_3  [request, arm 20]
    asking_3  --timeout--> unanswered [tell_unanswered]
    asking_*  --answer-->  ready     [remember, disarm, flush]
    ready     --send-->    ready     [deliver]
    unanswered --send-->   asking_1  [hold, request, arm 5]   (the mark expires: ask again)
    unanswered --retry-->  asking_1  [request, arm 5]         (/retry nick)
    unanswered --force-->  idle      [flush_weaker]           (/unsafe nick: the user asked, for these messages)
    any       --gone-->    idle      [disarm, drop_held]      (the relay says nobody has that nick)

No message is ever sent weaker than sessions without ``force``.  The whole
table, every state by every event, is ``docs/vectors/keyexchange.json``;
``chatsvc/web/keyexchange.js`` is the same table in JavaScript and both
pass it.  The machine does no I/O: its outputs call an L{Effects} the
session provides (send a request, arm a timer on its clock, encrypt and
send what was held).
"""

from __future__ import annotations

from typing import Protocol

from automat import MethodicalMachine

#: Seconds to wait for an answer before each next request, then giving up.
RETRY_DELAYS = (5.0, 10.0, 20.0)


class Effects(Protocol):
    """What a machine's outputs do, for one peer (the session implements it)."""

    def request(self) -> None:
        """Send a key request (signed, carrying our session key)."""

    def arm(self, seconds: float) -> None:
        """Fire ``timeout`` after ``seconds`` (replacing any armed timer)."""

    def disarm(self) -> None: ...

    def deliver(self, message: object, session: bytes) -> None:
        """Encrypt ``message`` keyed to both sessions and send it."""

    def tell_unanswered(self, held: int) -> None:
        """Three requests went unanswered: ``held`` messages wait for /retry or /unsafe."""

    def deliver_weaker(self, message: object) -> None:
        """The user asked: send keyed as well as we can without their session key."""

    def dropped(self, messages: list) -> None:
        """Nobody has the nick: these held messages went nowhere (the user is told)."""


class PeerKeys:
    """The key exchange with one peer: its state, what is held, their session key."""

    _machine = MethodicalMachine()

    def __init__(self, effects: Effects) -> None:
        self.effects = effects
        self.held: list = []
        #: their session's X25519 key, from their last request or answer
        self.session: bytes | None = None
        self._message: object = None
        self._announced: bytes | None = None

    # --- states ------------------------------------------------------------------------

    @_machine.state(initial=True, serialized="idle")
    def idle(self):
        "No exchange going on; nothing held."

    @_machine.state(serialized="asking_1")
    def asking_1(self):
        "A request is out; messages wait."

    @_machine.state(serialized="asking_2")
    def asking_2(self):
        "The first went unanswered; a second is out."

    @_machine.state(serialized="asking_3")
    def asking_3(self):
        "The last try."

    @_machine.state(serialized="unanswered")
    def unanswered(self):
        "Three requests unanswered: messages wait for the user (/retry, /unsafe)."

    @_machine.state(serialized="ready")
    def ready(self):
        "Their session key is known: messages go at once, keyed to both sessions."

    # --- what happens (the public methods take the data; the machine's inputs take none) ------

    def send(self, message: object) -> None:
        """A private message for them (from the user, or automatic)."""
        self._message = message
        self._send()

    def answer(self, session: bytes) -> None:
        """They announced their session key (a request or an answer of theirs)."""
        self._announced = session
        self._answer()

    def timeout(self) -> None:
        """The armed timer fired."""
        self._timeout()

    def retry(self) -> None:
        """/retry: ask again now."""
        self._retry()

    def force(self) -> None:
        """/unsafe: the user sends what is held without their session key."""
        self._force()

    def gone(self) -> None:
        """The relay says nobody has the nick (no-such-nick to our request)."""
        self._gone()

    @_machine.input()
    def _send(self):
        "send"

    @_machine.input()
    def _answer(self):
        "answer"

    @_machine.input()
    def _timeout(self):
        "timeout"

    @_machine.input()
    def _retry(self):
        "retry"

    @_machine.input()
    def _force(self):
        "force"

    @_machine.input()
    def _gone(self):
        "gone"

    # --- outputs ---------------------------------------------------------------------------

    @_machine.output()
    def _hold(self):
        self.held.append(self._message)

    @_machine.output()
    def _request(self):
        self.effects.request()

    @_machine.output()
    def _arm_1(self):
        self.effects.arm(RETRY_DELAYS[0])

    @_machine.output()
    def _arm_2(self):
        self.effects.arm(RETRY_DELAYS[1])

    @_machine.output()
    def _arm_3(self):
        self.effects.arm(RETRY_DELAYS[2])

    @_machine.output()
    def _disarm(self):
        self.effects.disarm()

    @_machine.output()
    def _remember(self):
        self.session = self._announced

    @_machine.output()
    def _flush(self):
        held, self.held = self.held, []
        for message in held:
            self.effects.deliver(message, self.session)

    @_machine.output()
    def _deliver(self):
        self.effects.deliver(self._message, self.session)

    @_machine.output()
    def _tell_unanswered(self):
        self.effects.tell_unanswered(len(self.held))

    @_machine.output()
    def _flush_weaker(self):
        held, self.held = self.held, []
        for message in held:
            self.effects.deliver_weaker(message)

    @_machine.output()
    def _drop_held(self):
        held, self.held = self.held, []
        self.session = None
        if held:
            self.effects.dropped(held)

    # --- the table (docs/vectors/keyexchange.json) -------------------------------------------

    idle.upon(_send, enter=asking_1, outputs=[_hold, _request, _arm_1])
    idle.upon(_answer, enter=ready, outputs=[_remember])
    idle.upon(_timeout, enter=idle, outputs=[])
    idle.upon(_retry, enter=idle, outputs=[])
    idle.upon(_force, enter=idle, outputs=[])
    idle.upon(_gone, enter=idle, outputs=[])

    for _asking, _next, _arm in ((asking_1, asking_2, _arm_2), (asking_2, asking_3, _arm_3)):
        _asking.upon(_send, enter=_asking, outputs=[_hold])
        _asking.upon(_answer, enter=ready, outputs=[_remember, _disarm, _flush])
        _asking.upon(_timeout, enter=_next, outputs=[_request, _arm])
        _asking.upon(_retry, enter=_asking, outputs=[])
        _asking.upon(_force, enter=idle, outputs=[_disarm, _flush_weaker])
        _asking.upon(_gone, enter=idle, outputs=[_disarm, _drop_held])
    del _asking, _next, _arm
    asking_3.upon(_send, enter=asking_3, outputs=[_hold])
    asking_3.upon(_answer, enter=ready, outputs=[_remember, _disarm, _flush])
    asking_3.upon(_timeout, enter=unanswered, outputs=[_tell_unanswered])
    asking_3.upon(_retry, enter=asking_3, outputs=[])
    asking_3.upon(_force, enter=idle, outputs=[_disarm, _flush_weaker])
    asking_3.upon(_gone, enter=idle, outputs=[_disarm, _drop_held])

    unanswered.upon(_send, enter=asking_1, outputs=[_hold, _request, _arm_1])
    unanswered.upon(_answer, enter=ready, outputs=[_remember, _flush])
    unanswered.upon(_timeout, enter=unanswered, outputs=[])
    unanswered.upon(_retry, enter=asking_1, outputs=[_request, _arm_1])
    unanswered.upon(_force, enter=idle, outputs=[_flush_weaker])
    unanswered.upon(_gone, enter=idle, outputs=[_drop_held])

    ready.upon(_send, enter=ready, outputs=[_deliver])
    ready.upon(_answer, enter=ready, outputs=[_remember, _flush])
    ready.upon(_timeout, enter=ready, outputs=[])
    ready.upon(_retry, enter=asking_1, outputs=[_request, _arm_1])
    ready.upon(_force, enter=ready, outputs=[])
    ready.upon(_gone, enter=idle, outputs=[_drop_held])

    # --- reading the state (for /whois and tests) ----------------------------------------------

    @_machine.serializer()
    def state(self, state):
        return state
