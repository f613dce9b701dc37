"""Shared fixtures: in-memory connections and a real twistd subprocess."""

from __future__ import annotations

import pytest

from tests.support import PipedClient, RelayProcess


@pytest.fixture
def relay_process(tmp_path):
    """Start the real ``twistd -n chat`` on a free loopback port."""
    started = []

    def start(*extra_args: str, listen: str = "tcp:{port}:interface=127.0.0.1") -> RelayProcess:
        proc = RelayProcess(tmp_path, extra_args, listen)
        started.append(proc)
        proc.start()
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def clients():
    made: list[PipedClient] = []

    def make(*args, **kw) -> PipedClient:
        client = PipedClient(*args, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.kill()
