"""
Getting (and keeping) a connection to the relay: the endpoint, TLS, and
automatic reconnection with exponential backoff.
"""

from __future__ import annotations

import random
from typing import Callable

from twisted.application.internet import ClientService
from twisted.internet import endpoints, ssl

from chatsvc.client.protocol import ChatClientFactory

CONNECT_TIMEOUT = 15
RETRY_FIRST = 1.0
RETRY_MAX = 30.0


class CertificateFileError(Exception):
    pass


def make_endpoint(reactor, host: str, port: int, tls: bool = False, ca_file: str | None = None):
    """
    TCP to host:port, optionally inside TLS.  TLS checks the server's
    certificate against the system's CAs, or only against ``ca_file`` (for
    self-signed deployments), and that it names ``host``.
    """
    endpoint = endpoints.HostnameEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT)
    if not (tls or ca_file):
        return endpoint
    trust = None  # the platform's trust store
    if ca_file:
        try:
            with open(ca_file, "rb") as f:
                trust = ssl.Certificate.loadPEM(f.read())
        except OSError as e:
            raise CertificateFileError(f"cannot read CA file {ca_file}: {e.strerror}")
        except Exception as e:
            raise CertificateFileError(f"{ca_file} is not a PEM certificate: {e}")
    return endpoints.wrapClientTLS(ssl.optionsForClientTLS(host, trustRoot=trust), endpoint)


def retry_delay(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """
    Exponential backoff, 1 s doubling up to 30 s, with jitter: each delay is
    drawn from the upper half of its step, so that clients dropped together
    (a server restart) do not all come back in the same instant.
    """
    step = min(RETRY_FIRST * 2 ** min(attempt, 16), RETRY_MAX)
    return step * (0.5 + rand() / 2)


def make_service(reactor, endpoint, session, on_retry: Callable[[float], None] | None = None) -> ClientService:
    """A ClientService that builds the session's protocol on every connection."""

    def policy(attempt: int) -> float:
        delay = retry_delay(attempt)
        if on_retry is not None:
            on_retry(delay)
        return delay

    return ClientService(endpoint, ChatClientFactory(session.events), retryPolicy=policy, clock=reactor)
