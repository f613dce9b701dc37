"""
The relay and two client sessions on the real reactor, in this process,
over real loopback TCP -- driven with pytest-twisted's Deferred support.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet import defer, endpoints, reactor

from chatsvc.client.ciphers import CaesarCipher
from chatsvc.client.connection import make_endpoint, make_service
from chatsvc.client.session import ChatSession
from chatsvc.relay import Relay
from chatsvc.tcpdoor import ChatFactory
from tests.displays import RecordingDisplay


@pytest_twisted.ensureDeferred
async def test_two_sessions_through_a_relay_on_the_real_reactor(tmp_path):
    factory = ChatFactory(Relay())
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    services, displays = [], {}
    try:
        for nick in ("alice", "bob"):
            display = displays[nick] = RecordingDisplay()
            session = ChatSession(display, CaesarCipher(3), nick, "#lobby", "here", downloads=tmp_path, clock=reactor)
            service = make_service(reactor, make_endpoint(reactor, "127.0.0.1", port.getHost().port), session)
            session.stop_connecting = lambda: None
            service.startService()
            services.append((service, session))
            await service.whenConnected()
            await display.seen("* you joined #lobby")
        await displays["alice"].seen("* bob joined #lobby")
        services[0][1].user_line("hello over real TCP")
        await displays["bob"].seen("[#lobby] alice: hello over real TCP")
        services[1][1].user_line("/quit")
        await displays["alice"].seen("* bob quit")
    finally:
        for service, _ in services:
            await service.stopService()
        # every session over, every server-side connection closed: nothing
        # of this test is left for the next one (no fixed wait)
        await defer.gatherResults([session.done for _, session in services])
        await port.stopListening()
        await factory.close_all()
