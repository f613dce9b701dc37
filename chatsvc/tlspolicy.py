"""
The TLS policy of every TLS door (``--port``, ``--web``, ``--link`` given as
``ssl:...``): Mozilla's profiles instead of OpenSSL's defaults, which
Twisted's ``ssl:`` endpoint offers as they are -- CBC suites (LUCKY13 to a
scanner) and, with an RSA certificate, key exchange by static RSA (no
forward secrecy).  The endpoint string cannot say otherwise, so an ``ssl:``
description is read here and its endpoint built with our options.

- ``intermediate`` (the default): TLS 1.2 with ECDHE and AEAD suites only
  (AES-GCM, ChaCha20-Poly1305), and TLS 1.3.
- ``modern``: TLS 1.3 only.

Plain parsing of Twisted's endpoint syntax (``\\:`` escapes a colon), then
``CertificateOptions``; everything else about the description means what it
means to Twisted.
"""

from __future__ import annotations

from twisted.internet import endpoints, ssl
from twisted.python.filepath import FilePath

PROFILES = ("intermediate", "modern")

#: Mozilla's "intermediate" TLS 1.2 suites, ECDHE only (no DH parameters are
#: configured, so the DHE ones would never be used); TLS 1.3 brings its own.
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


def split_description(description: str) -> tuple[list[str], dict[str, str]]:
    """An endpoint description's positional arguments and ``key=value`` options, ``\\:`` unescaped."""
    parts, current, escaped = [], [], False
    for ch in description:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    args, options = [], {}
    for part in parts:
        key, eq, value = part.partition("=")
        if eq:
            options[key] = value
        else:
            args.append(part)
    return args, options


def context_factory(options: dict[str, str], profile: str) -> ssl.CertificateOptions:
    """Our CertificateOptions for an ``ssl:`` description's key, certificate and chain."""
    key_path = options.get("privateKey")
    if not key_path:
        raise ValueError("an ssl: endpoint needs privateKey=FILE")
    key_pem = FilePath(key_path).getContent()
    cert_pem = FilePath(options.get("certKey", key_path)).getContent()
    private = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
    chain = []
    if options.get("extraCertChain"):
        data = FilePath(options["extraCertChain"]).getContent()
        marker = b"-----END CERTIFICATE-----"
        chain = [ssl.Certificate.loadPEM(block + marker).original for block in data.split(marker) if b"BEGIN" in block]
    minimum = ssl.TLSVersion.TLSv1_3 if profile == "modern" else ssl.TLSVersion.TLSv1_2
    return ssl.CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        extraCertChain=chain or None,
        raiseMinimumTo=minimum,
        acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(INTERMEDIATE_CIPHERS),
    )


def server_endpoint(reactor, description: str, profile: str = "intermediate"):
    """The endpoint for ``description``: ours for ``ssl:``, Twisted's for anything else."""
    if profile not in PROFILES:
        raise ValueError(f"unknown TLS profile {profile!r} (one of {', '.join(PROFILES)})")
    args, options = split_description(description)
    if args[0] != "ssl":
        return endpoints.serverFromString(reactor, description)
    port = int(options.get("port") or (args[1] if len(args) > 1 else ""))
    return endpoints.SSL4ServerEndpoint(
        reactor, port, context_factory(options, profile),
        backlog=int(options.get("backlog", 50)), interface=options.get("interface", ""),
    )
