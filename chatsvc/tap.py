"""
twistd glue: the ``chat`` subcommand's options and the service it runs.

``twistd -n chat --port 8000`` finds this module through the one-line plugin
in ``twisted/plugins/chatsvc_plugin.py``.
"""

from __future__ import annotations

import ipaddress
import secrets
import sqlite3

from twisted.application import service
from twisted.internet import defer, endpoints, threads
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python import usage
from zope.interface import implementer

from chatsvc import grammar, netinfo, skeleton
from chatsvc.history import History, SQLiteStore
from chatsvc.relay import Relay, new_salt
from chatsvc.hub import Limits
from chatsvc.tcpdoor import ChatFactory
from chatsvc.tlspolicy import server_endpoint

DEFAULT_PORT = "tcp:8000"


DEFAULT_BACKLOG = 1024


def normalize_port(description: str) -> str:
    """
    A bare port number means TCP on every interface.  TCP listeners get a
    deeper accept queue than Twisted's default of 50 unless one is given:
    after a restart, every client reconnects at once.
    """
    description = description.strip()
    if description.isdigit():
        description = f"tcp:{description}"
    kind = description.split(":", 1)[0]
    if kind in ("tcp", "tcp6", "ssl") and "backlog=" not in description:
        description += f":backlog={DEFAULT_BACKLOG}"
    return description


class _ParseOnlyReactor:
    """
    Stand-in for the reactor while checking an endpoint description: parsing
    only stores the reactor, and twistd installs the real one after options
    are parsed, so it must not be imported here.
    """


def _positive_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise usage.UsageError(f"--{name} must be a whole number, not {value!r}")
    if number <= 0:
        raise usage.UsageError(f"--{name} must be greater than 0")
    return number


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the chatsvc relay.  Clients connect over TCP, pick a nick, join "
        "rooms and exchange messages whose bodies they encrypt end to end; the "
        "relay only routes them.  --port takes a port number (meaning "
        "tcp:PORT on every interface) or any Twisted server endpoint "
        "description, e.g. tcp:8000:interface=127.0.0.1, tcp6:8000, "
        "ssl:8443:privateKey=key.pem:certKey=cert.pem or "
        "systemd:domain=INET6:index=0 for socket activation.  Every limit "
        "below turns off when set to 0.  The protocol is in docs/protocol.md."
    )

    optParameters = [
        ["port", "p", DEFAULT_PORT, "Where to listen: a port number or an endpoint description."],
        ["max-line", None, str(grammar.DEFAULT_MAX_LINE), "Longest line accepted from a client, in bytes."],
        ["history", None, "1000", "Messages kept per room for clients that missed them (0: none)."],
        ["store", None, None, "SQLite file keeping room history (and message ids) across restarts."],
        ["store-max-mb", None, "1024", "Megabytes of messages the store keeps in all; the oldest go first (0: no bound)."],
        ["large-room", None, str(grammar.DEFAULT_LARGE_ROOM),
         "Members from which a room is large: no JOIN/PART/QUIT notices, a periodic count instead (0: never)."],
        ["max-sendq", None, str(Limits.max_sendq),
         "Bytes of unsent output a client may have queued before it is disconnected."],
        ["flood-burst", None, str(Limits.flood_burst),
         "Lines a client may send at once before it is slowed down."],
        ["flood-rate", None, f"{Limits.flood_rate:g}",
         "Lines per second a client may send after its burst (it is slowed, never cut off)."],
        ["max-clients", None, str(Limits.max_clients), "Connections the server accepts in all."],
        ["max-per-ip", None, str(Limits.max_per_ip), "Connections accepted from one IPv4 address or IPv6 /64."],
        ["max-total-sendq", None, str(Limits.max_total_sendq),
         "Bytes of unsent output all clients together may have queued; past it the furthest behind is cut off."],
        ["register-timeout", None, f"{Limits.register_timeout:g}",
         "Seconds a new connection has to send NICK."],
        ["idle-timeout", None, f"{Limits.idle_timeout:g}",
         "Seconds of silence after which a client is sent PING."],
        ["ping-timeout", None, f"{Limits.ping_timeout:g}",
         "Seconds a client has to answer that PING before it is disconnected."],
        ["close-grace", None, f"{Limits.close_grace:g}",
         "Seconds a connection the relay closes (a timeout, a broken rule) has to go away politely before it "
         "is cut off."],
        ["web", None, None,
         "Also serve the browser client (the page and its WebSocket) here: a port number or an endpoint "
         "description, e.g. 8080 or ssl:8443:privateKey=key.pem:certKey=cert.pem.  Browsers allow the "
         "page's encryption only over https, or http on localhost."],
        ["web-proxy", None, None,
         "Comma-separated addresses of reverse proxies in front of --web (e.g. 127.0.0.1): from them, the "
         "browser's address is taken from X-Forwarded-For, so per-address limits hold per person."],
        ["redis", None, None,
         "Link this relay to others through Redis, so they act as one chat: redis://[[user]:password@]HOST[:PORT][/DB] "
         "or rediss:// for TLS; env:NAME reads it from that environment variable (keeps a password out of ps).  "
         "Without it the relay runs on its own (docs/operating.md, Running at scale)."],
        ["redis-ca", None, None,
         "With a rediss:// URL: a PEM file of the certificate authority Redis's certificate must chain to "
         "(default: the system's)."],
        ["link", None, "tcp:0:interface=127.0.0.1",
         "With --redis: where the other relays reach this one's end of a file stream (an endpoint on the "
         "private network; port 0 picks a free one)."],
        ["link-host", None, None,
         "With --redis: the address the other relays use for --link (default: its interface, or 127.0.0.1)."],
        ["web-origin", None, None,
         "Comma-separated origins allowed to open the chat socket (e.g. https://chat.example.org); "
         "default: the page's own, as the browser names it.  Their host names are accepted as --web-host."],
        ["web-host", None, None,
         "Comma-separated host names the web port is reached by besides loopback and this machine's own "
         "names and addresses (e.g. chat.example.org behind a reverse proxy); a request naming any other host "
         "is refused (421), so a DNS-rebinding page cannot reach the relay through a visitor's browser."],
        ["web-hsts", None, "0",
         "Send Strict-Transport-Security with this max-age (seconds) from the web port; only with a real "
         "certificate over https (0: off, the default: a self-signed certificate would lock browsers out)."],
        ["tls-profile", None, "intermediate",
         "TLS on every ssl: port: intermediate (TLS 1.2 with ECDHE and AEAD suites, and TLS 1.3) or modern "
         "(TLS 1.3 only)."],
    ]

    # Limits where 0 means "off" (a limit that must stay on is validated
    # separately).
    _zero_allowed = ("large-room", "max-sendq", "flood-burst", "flood-rate", "max-clients", "max-per-ip",
                     "register-timeout", "idle-timeout", "ping-timeout", "store-max-mb", "max-total-sendq",
                     "close-grace")
    optFlags = [
        ["log-messages", None, "Log every relayed message (as the ciphertext received)."],
        ["reuse-port", None,
         "Share --port with other relays on this machine (SO_REUSEPORT; tcp ports only): the kernel spreads "
         "connections over them.  Use with --redis, one relay per core (etc/chatsvc@.service)."],
        ["require-proof", None,
         "Refuse JOIN without a join proof: only clients of encryption scheme aes2 or later get in."],
    ]

    def parseOptions(self, options=None) -> None:
        """
        Under twistd (which makes us a sub-command, with a parent), a
        mistake prints one line saying what is wrong -- not twistd's whole
        help before it; ``--help`` still prints the help.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if getattr(self, "parent", None) is None:
                raise
            raise SystemExit(f"twistd chat: {e}\n(twistd chat --help lists the options)")

    def opt_version(self) -> None:
        """Print chatsvc's version (and Twisted's) and exit."""
        import sys

        import twisted

        from chatsvc import __version__

        print(f"chatsvc {__version__} (Twisted {twisted.__version__})")
        sys.exit(0)

    def postOptions(self) -> None:
        self._check_ports()
        self._check_redis()
        self["web-origin"] = _origins(self["web-origin"])
        self["web-proxy"] = _addresses(self["web-proxy"])
        self["web-host"] = _hosts(self["web-host"])
        self["web-hsts"] = int(_limit("web-hsts", self["web-hsts"]))
        from chatsvc.tlspolicy import PROFILES

        if self["tls-profile"] not in PROFILES:
            raise usage.UsageError(f"--tls-profile is one of {', '.join(PROFILES)}, not {self['tls-profile']!r}")
        self["max-line"] = _positive_int("max-line", self["max-line"])
        self["history"] = int(_limit("history", self["history"]))
        for name in self._zero_allowed:
            self[name] = _limit(name, self[name])
        if self["idle-timeout"] and not self["ping-timeout"]:
            raise usage.UsageError("--ping-timeout must be greater than 0 while --idle-timeout is on")
        if bool(self["flood-burst"]) != bool(self["flood-rate"]):
            raise usage.UsageError("--flood-burst and --flood-rate are 0 together (off) or both above 0")

    def _check_ports(self) -> None:
        self["port"] = normalize_port(self["port"])
        try:
            endpoints.serverFromString(_ParseOnlyReactor(), self["port"])
        except Exception as e:  # parsers raise ValueError, KeyError, OSError...
            if self["port"].startswith("systemd:"):
                raise usage.UsageError(
                    f"bad --port {self['port']!r}: no such socket was passed by systemd "
                    "(start chatsvc through its .socket unit, see docs/operating.md)"
                )
            raise usage.UsageError(f"bad --port {self['port']!r}: {e}")
        if self["web"]:
            self["web"] = normalize_port(self["web"])
            try:
                endpoints.serverFromString(_ParseOnlyReactor(), self["web"])
            except Exception as e:
                raise usage.UsageError(f"bad --web {self['web']!r}: {e}")
        if self["reuse-port"] and _tcp_port(self["port"]) is None:
            raise usage.UsageError("--reuse-port works with a tcp port (e.g. --port 8000 or tcp:8000:interface=...)")

    def _check_redis(self) -> None:
        if self["redis"] and self["redis"].startswith("env:"):
            import os

            name = self["redis"][4:]
            if not os.environ.get(name):
                raise usage.UsageError(f"--redis {self['redis']}: the environment variable {name} is not set")
            self["redis"] = os.environ[name]
        if self["redis-ca"]:
            try:
                with open(self["redis-ca"], "rb") as f:
                    self["redis-ca"] = f.read()
            except OSError as e:
                raise usage.UsageError(f"--redis-ca: cannot read {self['redis-ca']}: {e.strerror}")
        if not self["redis"]:
            return
        from chatsvc.redislink import parse_url

        try:
            parse_url(self["redis"])
        except ValueError as e:
            raise usage.UsageError(f"bad --redis: {e}")
        if self["store"]:
            raise usage.UsageError(
                "--store and --redis do not go together: linked relays keep history in Redis "
                "(make it durable with Redis's appendonly; docs/operating.md, Running at scale)"
            )
        try:
            endpoints.serverFromString(_ParseOnlyReactor(), self["link"])
        except Exception as e:
            raise usage.UsageError(f"bad --link {self['link']!r}: {e}")

    def limits(self) -> Limits:
        return Limits(
            max_line=self["max-line"],
            max_sendq=self["max-sendq"],
            flood_burst=self["flood-burst"],
            flood_rate=self["flood-rate"],
            max_clients=self["max-clients"],
            max_per_ip=self["max-per-ip"],
            max_total_sendq=self["max-total-sendq"],
            register_timeout=self["register-timeout"],
            idle_timeout=self["idle-timeout"],
            ping_timeout=self["ping-timeout"],
            close_grace=self["close-grace"],
        )


def _tcp_port(description: str) -> dict | None:
    """A tcp:/tcp6: description's parts (port, interface, backlog), or None for other kinds."""
    kind, _, rest = description.partition(":")
    if kind not in ("tcp", "tcp6"):
        return None
    port, *options = rest.split(":")
    if not port.isdigit():
        return None
    parts = {"port": int(port), "interface": "::" if kind == "tcp6" else "", "backlog": 50}
    for option in options:
        key, _, value = option.partition("=")
        if key == "interface":
            parts["interface"] = value
        elif key == "backlog" and value.isdigit():
            parts["backlog"] = int(value)
        else:
            return None
    return parts


@implementer(IStreamServerEndpoint)
class SharedPortEndpoint:
    """
    A TCP port several processes listen on at once (SO_REUSEPORT): the
    kernel hands each new connection to one of them.  Twisted's endpoint
    strings have no option for it; ``tcp.makeBinding`` does.
    """

    def __init__(self, reactor, port: int, interface: str = "", backlog: int = 50) -> None:
        self.reactor, self.port, self.interface, self.backlog = reactor, port, interface, backlog

    def listen(self, factory) -> defer.Deferred:
        from twisted.internet.tcp import makeBinding

        binding = makeBinding(self.interface, self.port, reuseAddress=True, reusePort=True)
        return defer.execute(self.reactor.listenTCP, binding, factory, self.backlog, self.interface)


def _origins(value: str | None) -> frozenset[str]:
    """--web-origin: scheme://host[:port], comma-separated."""
    if not value:
        return frozenset()
    origins = set()
    for item in value.split(","):
        item = item.strip().lower().rstrip("/")
        scheme, sep, rest = item.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
            raise usage.UsageError(f"bad --web-origin {item!r}: write it as https://host or https://host:port")
        origins.add(item)
    return frozenset(origins)


def _hosts(value: str | None) -> frozenset[str]:
    """--web-host: host names, comma-separated."""
    from chatsvc.webnames import split_host

    hosts = set()
    for item in (value or "").split(","):
        if not item.strip():
            continue
        parsed = split_host(item)
        if parsed is None or parsed[1] is not None:
            raise usage.UsageError(f"bad --web-host {item.strip()!r}: a host name like chat.example.org, no port")
        hosts.add(parsed[0])
    return frozenset(hosts)


def _addresses(value: str | None) -> frozenset[str]:
    """--web-proxy: IP addresses, comma-separated."""
    out = set()
    for item in (value or "").split(","):
        if not item.strip():
            continue
        try:
            out.add(str(ipaddress.ip_address(item.strip())))
        except ValueError:
            raise usage.UsageError(f"bad --web-proxy {item.strip()!r}: an IP address, like 127.0.0.1")
    return frozenset(out)


def _limit(name: str, value: str):
    """A non-negative number; whole numbers stay ints."""
    try:
        number = float(value)
    except ValueError:
        raise usage.UsageError(f"--{name} must be a number, not {value!r}")
    if number < 0 or number != number or number == float("inf"):
        raise usage.UsageError(f"--{name} must be 0 (off) or a positive number")
    return int(number) if number.is_integer() else number


class ListeningService(service.Service):
    """
    Listen on an endpoint while running.

    Unlike a plain StreamServerEndpointService, a failure to listen is raised
    straight out of startup (so twistd exits non-zero), and the bound
    address is logged once known.
    """

    log = Logger()

    def __init__(self, endpoint: IStreamServerEndpoint, factory, description: str, web: bool = False,
                 what: str | None = None) -> None:
        self.what = what or ("chatsvc web client" if web else "chatsvc relay")
        self.endpoint = endpoint
        self.factory = factory
        self.description = description
        # The browser client's site shares the relay's clients: the relay's
        # own listener says goodbye to all of them at shutdown, not this one.
        self.web = web
        self.port: IListeningPort | None = None
        self._listening = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listening = self.endpoint.listen(self.factory)
        failures = []
        self._listening.addCallbacks(self._listened, failures.append)
        if failures:
            # SystemExit prints one line and makes twistd exit non-zero;
            # anything else would end in a traceback.
            raise SystemExit(f"chatsvc: cannot listen on {self.description}: {_reason(failures[0])}")

    def startService(self) -> None:
        super().startService()
        if self._listening is None:
            self.privilegedStartService()

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        host = port.getHost()
        address = getattr(host, "host", None)
        self.log.info(
            "{what} listening on {description} ({address})",
            what=self.what,
            description=self.description,
            address=f"{address} port {host.port}" if address is not None else host,
        )
        everywhere = address in ("0.0.0.0", "::", "")
        if self.web:
            self._web_hint(host.port, everywhere)
            self._announce_page(host.port)
        elif everywhere and self.what == "chatsvc relay":
            shown = netinfo.local_addresses()
            self.log.info(
                "clients can connect to {addresses} port {port}",
                addresses=", ".join(shown) or "this machine's address",
                port=host.port,
            )
        return port

    def _announce_page(self, port: int) -> None:
        """CAPS page=: the first --web-origin, else scheme:port (a client puts the host it dialled between)."""
        site = self.factory
        origins = sorted(getattr(site, "origins", ()) or ())
        scheme = "https" if self.description.startswith("ssl:") else "http"
        site.hub.page = origins[0] if origins else f"{scheme}:{port}"

    def _web_hint(self, port: int, everywhere: bool) -> None:
        secure = self.description.startswith("ssl:")
        if secure and everywhere:
            urls = [f"https://{a if ':' not in a else f'[{a}]'}:{port}/" for a in netinfo.local_addresses()]
            self.log.info("browsers: open {urls}", urls=", ".join(urls) or f"https://this-machine:{port}/")
        else:
            self.log.info("browsers: open {url}", url=f"{'https' if secure else 'http'}://localhost:{port}/")
        if not secure:
            self.log.info(
                "over plain http, browsers run the page's encryption only for localhost; "
                "for other machines serve --web ssl:PORT:privateKey=KEY:certKey=CERT (docs/page.md)"
            )

    def stopService(self) -> defer.Deferred:
        super().stopService()
        # Stop accepting first, then say goodbye to everyone; twistd waits
        # for the returned Deferred before the process exits.
        stopped = defer.maybeDeferred(self.port.stopListening) if self.port else defer.succeed(None)
        self.port = None
        if self.web or self.what != "chatsvc relay":
            return stopped
        return stopped.addCallback(lambda _: self.factory.close_all())


class StoreService(service.Service):
    """Runs the history store's writer thread; on stop, lets it finish."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def startService(self) -> None:
        super().startService()
        self.store.start()

    def stopService(self):
        super().stopService()
        return threads.deferToThread(self.store.stop)


def _reason(failure) -> str:
    socket_error = getattr(failure.value, "socketError", None)
    if isinstance(socket_error, OSError) and socket_error.strerror:
        return socket_error.strerror.lower()
    return failure.getErrorMessage()


def makeService(config: Options, reactor=None) -> service.MultiService:
    if reactor is None:
        from twisted.internet import reactor
    skeleton.preload()  # not on the first NICK, while clients wait
    top = service.MultiService()
    store = None
    if config["redis"]:
        return _linked_service(config, reactor)
    if config["store"]:
        try:
            store = SQLiteStore(
                config["store"], config["history"], reactor.callFromThread,
                max_bytes=int(config["store-max-mb"] * 1024 * 1024),
            )
            salt = store.salt(new_salt)
        except sqlite3.Error as e:
            raise SystemExit(f"chatsvc: cannot open store {config['store']}: {e}")
        StoreService(store).setServiceParent(top)  # stops after the listener
    else:
        salt = new_salt()
    relay = Relay(
        salt=salt,
        require_proof=config["require-proof"],
        max_line=config["max-line"],
        log_messages=config["log-messages"],
        large_room=int(config["large-room"]),
        history=History(config["history"], int(reactor.seconds() * 1000), store),
        now=reactor.seconds,
    )
    factory = ChatFactory(relay, config.limits(), clock=reactor)
    _listen(config, reactor, factory, top)
    return top


def _listen(config: Options, reactor, factory: ChatFactory, top: service.MultiService) -> None:
    """The relay's own port, and the browser client's if asked for."""
    shared = _tcp_port(config["port"]) if config["reuse-port"] else None
    if shared is not None:
        endpoint = SharedPortEndpoint(reactor, **shared)
    else:
        endpoint = server_endpoint(reactor, config["port"], config["tls-profile"])
    ListeningService(endpoint, factory, config["port"]).setServiceParent(top)
    if config["web"]:
        from chatsvc.webpage import WebSite

        site = WebSite(factory.hub, config["web-origin"], config["web-proxy"], config["web-host"],
                       hsts=config["web-hsts"], secure=config["web"].startswith("ssl:"))
        ListeningService(
            server_endpoint(reactor, config["web"], config["tls-profile"]), site, config["web"], web=True,
        ).setServiceParent(top)


def _linked_service(config: Options, reactor) -> service.MultiService:
    """
    A relay linked to others through Redis (cluster.py, redislink.py):
    its state is the cluster's, applied from the shared log.
    """
    from chatsvc.cluster import Replica, new_relay
    from chatsvc.redislink import ClusterLink
    from chatsvc.streamlink import LinkedStreams, LinkFactory

    top = service.MultiService()
    relay = new_relay(config["history"], config["max-line"], int(config["large-room"]), config["log-messages"],
                      config["require-proof"])
    replica = Replica(secrets.token_hex(4), relay)
    factory = ChatFactory(relay, config.limits(), clock=reactor)
    hub = factory.hub
    link_port = ListeningService(
        server_endpoint(reactor, config["link"], config["tls-profile"]), LinkFactory(hub), config["link"],
        what="relay link"
    )
    link = ClusterLink(config["redis"], replica, hub, reactor, link_port, config["link-host"], ca=config["redis-ca"])
    hub.streams = LinkedStreams(hub.streams, link, reactor)
    link.setServiceParent(top)  # first in, last out: the relay says goodbye through it
    link_port.setServiceParent(top)
    _listen(config, reactor, factory, top)
    return top
