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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """
    One real redis-server for the session (with a password, as in
    production), shared by the linked-relay tests: each cluster of
    relays gets a database of its own (``redis_db``).
    """
    from tests.redis_support import REDIS_SERVER, RedisServer

    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis"), password="s3cret pass")
    server.start()
    server.next_db = 0
    yield server
    server.stop()


@pytest.fixture
def redis_db(redis_server):
    """A URL to an empty database of the session's Redis, password included."""
    from tests.redis_support import DATABASES

    redis_server.next_db += 1
    assert redis_server.next_db < DATABASES, "more tests linking relays than the test redis-server has databases"
    return f"redis://:s3cret%20pass@127.0.0.1:{redis_server.port}/{redis_server.next_db}"
