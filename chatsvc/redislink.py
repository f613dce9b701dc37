"""
The link from one relay to the others, through Redis (``--redis URL``).

Every relay appends what its clients change to one Redis stream, the
cluster log, and reads the whole log back in order, applying each entry to
its replica (``cluster.py``).  Redis gives what one process gave before:
one order everyone agrees on.  A small Lua script numbers the entries
``1-0, 2-0, ...``, so a relay notices at once if it missed some (the log
was trimmed past it, or Redis lost its data) and starts again from the
latest snapshot.

Keys (prefix ``chatsvc:``): ``log`` (the stream), ``seq`` (its numbering),
``epoch`` (which incarnation of the log this is), ``snapshot`` and
``snapshot-at`` (the state as of one log entry, for relays that join later;
the log before the previous snapshot is trimmed), ``snaplock``,
``alive:<relay>`` (a heartbeat with an expiry: a relay whose key expires
is declared gone and its members quit everywhere) and ``stream:<token>``
(which relay holds the waiting end of a bulk stream).

Redis holds what the relay already sees -- nicks, room names with join
proofs, ciphertext, addresses -- and nothing more.

When Redis is unreachable the relay keeps its clients connected and keeps
answering what it can from its replica (NAMES, HISTORY, ROOMS, PING);
commands that change the chat wait in a bounded queue and go out, in
order, when Redis is back; past the bound they are refused with an error.
Clients are told with a NOTICE when the link goes down and comes back.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from urllib.parse import unquote, urlsplit

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from chatsvc import grammar
from chatsvc.relay import new_salt
from chatsvc.cluster import GONE, JOIN, MSG, NICK, PART, QUIT, REPLICATED, TOPIC, Replica
from chatsvc.grammar import error_line, format_line

PREFIX = "chatsvc:"
LOG, SEQ, EPOCH = PREFIX + "log", PREFIX + "seq", PREFIX + "epoch"
SNAPSHOT, SNAPSHOT_AT, SNAPLOCK = PREFIX + "snapshot", PREFIX + "snapshot-at", PREFIX + "snaplock"
ALIVE, STREAM = PREFIX + "alive:", PREFIX + "stream:"

#: A relay renews its heartbeat this often (seconds) ...
HEARTBEAT = 1.0
#: ... and is declared gone this long after its last one.
RELAY_TTL = 5.0
#: Entries read from the log at once, and how long one read waits (ms).
READ_BATCH = 1000
READ_BLOCK_MS = 1000
#: A snapshot is taken after this many entries (by one relay, whichever
#: gets the lock); the log before the previous one is then trimmed.
SNAPSHOT_EVERY = 20_000
#: While Redis is unreachable, at most this many entries (and bytes) wait
#: for it; past that, commands that change the chat are refused.
MAX_QUEUED = 10_000
MAX_QUEUED_BYTES = 16 * 1024 * 1024
#: Entries appended with one call at most (all those of one reactor turn).
APPEND_BATCH = 500
#: A relay that lost Redis tries again this often (seconds) ...
RETRY_DELAY = 0.5
#: ... and gives up waiting for an answer after this long.
ASK_TIMEOUT = 5.0

# Appends entries, each numbered right after the last: ids 1-0, 2-0, ...
_APPEND = """
for _, entry in ipairs(ARGV) do
  local n = redis.call('INCR', KEYS[2])
  redis.call('XADD', KEYS[1], n .. '-0', 'e', entry)
end
return #ARGV
"""

# Starts a new log from this relay's state, unless someone already has.
_SEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[5], '0-0')
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

# Keeps a new snapshot, trims the log before the one it replaces (relays
# still reading that far back start again from the new one), frees the lock.
_SNAPSHOT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local previous = redis.call('GET', KEYS[3])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[2])
if previous and previous ~= '0-0' then
  redis.call('XTRIM', KEYS[4], 'MINID', previous)
end
redis.call('DEL', KEYS[5])
return 1
"""


def parse_url(url: str) -> dict:
    """
    ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://`` (TLS),
    as txredisapi connection arguments.  Raises ValueError saying what is
    wrong.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"{url!r}: the URL must start with redis:// or rediss://")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535")
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"{url!r}: the database after / must be a number")
    args = {
        "host": parts.hostname, "port": port, "dbid": int(path) if path else None,
        "password": unquote(parts.password) if parts.password else None,
        "username": unquote(parts.username) if parts.username else None,
        "tls": parts.scheme == "rediss",
    }
    return args


def _connect(args: dict, ca: bytes | None = None):
    import txredisapi
    from twisted.internet import ssl

    tls = None
    if args["tls"]:
        trust = ssl.Certificate.loadPEM(ca) if ca else ssl.platformTrust()
        tls = ssl.optionsForClientTLS(args["host"], trustRoot=trust)
    return txredisapi.lazyConnection(
        host=args["host"], port=args["port"], dbid=args["dbid"], password=args["password"],
        username=args["username"], ssl_context_factory=tls or False,
        convertNumbers=False,  # or a payload "007" comes back as the integer 7
        connectTimeout=5,
    )


def _shorten_backoff(handler) -> None:
    # txredisapi backs off up to 10 s between attempts; a chat relay wants
    # its clients' messages moving again soon after Redis returns.
    factory = handler._factory
    factory.initialDelay = 0.2
    factory.maxDelay = 2.0


def _number(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


class LogAppender:
    """
    Entries on their way into the cluster log: queued (bounded, in entries
    and bytes: past either, a client's change is refused, never lost
    silently), sent in calls of APPEND_BATCH once per reactor turn, popped
    when Redis answered.  A new *generation* (the link went down and came
    back) sends what is still queued again, in order; entries carry their
    relay's sequence numbers, so a resent one takes effect once.
    """

    def __init__(self, link: "ClusterLink", max_queued: int = MAX_QUEUED, max_bytes: int = MAX_QUEUED_BYTES) -> None:
        self.link = link
        self.max_queued = max_queued
        self.max_bytes = max_bytes
        self.queue: deque[str] = deque()  # entries not yet acknowledged by Redis
        self.queued_bytes = 0
        self.generation = 0
        self._seq = 0
        self._sent = 0  # entries at the queue's head sent, their answer awaited
        self._flushed: list[defer.Deferred] = []
        self._flush_call = None

    def entry(self, conn: int, op: str, *args) -> str:
        self._seq += 1
        link = self.link
        return Replica.entry(link.relay_id, conn, self._seq, int(link.clock.seconds() * 1000), op, *args)

    def append(self, entry: str, force: bool = False) -> bool:
        if not force and (len(self.queue) >= self.max_queued or self.queued_bytes + len(entry) > self.max_bytes):
            return False
        self.queue.append(entry)
        self.queued_bytes += len(entry)
        if self.link.up and self._flush_call is None:
            # Everything appended in this reactor turn goes in one call.
            self._flush_call = self.link.clock.callLater(0, self.flush)
        return True

    def restart(self) -> None:
        """The link is (back) up, or went down: what is queued goes (again) from the start."""
        self.generation += 1
        self._sent = 0

    def flush(self) -> None:
        """Send what is queued and not yet sent, in calls of APPEND_BATCH."""
        self._flush_call = None
        link = self.link
        if not link.up:
            return
        generation = self.generation
        while self._sent < len(self.queue):
            batch = list(itertools.islice(self.queue, self._sent, self._sent + APPEND_BATCH))
            self._sent += len(batch)
            d = link.writer.eval(_APPEND, [LOG, SEQ], batch)
            d.addCallbacks(self._appended, self._failed, callbackArgs=(len(batch), generation),
                           errbackArgs=(generation,))

    def _appended(self, _, count: int, generation: int) -> None:
        if generation != self.generation:
            return  # sent again since (applied once: entries carry their seq)
        for _ in range(count):
            self.queued_bytes -= len(self.queue.popleft())
        self._sent -= count
        if not self.queue:
            for d in self._flushed:
                d.callback(None)
            self._flushed = []

    def _failed(self, failure, generation: int) -> None:
        if generation == self.generation:
            self.link.down(failure.getErrorMessage())

    def flushed(self) -> defer.Deferred:
        """Fires once every entry appended so far is in Redis."""
        if not self.queue:
            return defer.succeed(None)
        d = defer.Deferred()
        self._flushed.append(d)
        return d

    def stop(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()


class Liveness:
    """
    Relays alive and gone: our heartbeat key (renewed every HEARTBEAT, with
    our link port's address in it), the others' checked, and a relay whose
    key expired declared gone in the log -- once, by whoever saw it first.
    """

    def __init__(self, link: "ClusterLink") -> None:
        self.link = link
        self.up_since = 0.0
        self._declared: dict[str, float] = {}  # relays we said are gone, and when
        self._addresses: dict[str, str] = {}

    def beat(self) -> None:
        link = self.link
        if not link.up:
            return
        ttl = str(int(RELAY_TTL * 1000))
        link.writer.execute_command("SET", ALIVE + link.relay_id, self.link_address(), "PX", ttl).addErrback(
            lambda f: None)
        others = sorted(link.replica.relays() - {link.relay_id})
        if not others or link.clock.seconds() - self.up_since < RELAY_TTL:
            return  # just (re)connected: the others may not have renewed theirs yet
        link.writer.execute_command("MGET", *[ALIVE + r for r in others]).addCallbacks(
            lambda values: self._check(others, values), lambda f: None)

    def link_address(self) -> str:
        """host:port of our link port, as the other relays reach it ('-': none)."""
        port = getattr(self.link.link_service, "port", None)
        if port is None:
            return "-"
        bound = port.getHost()
        host = self.link.link_host or bound.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"[{host}]:{bound.port}" if ":" in host else f"{host}:{bound.port}"

    def address_of(self, relay_id: str) -> defer.Deferred:
        """Where another relay's link port is (from its heartbeat)."""
        known = self._addresses.get(relay_id)
        if known is not None:
            return defer.succeed(known)
        return self.link.ask(self.link.writer, "GET", ALIVE + relay_id)

    def _check(self, others: list[str], values: list) -> None:
        link = self.link
        now = link.clock.seconds()
        for relay_id, value in zip(others, values):
            if value is not None:
                self._addresses[relay_id] = value
                continue
            if now - self._declared.get(relay_id, -RELAY_TTL) < RELAY_TTL:
                continue  # said already; the entry is on its way
            self._declared[relay_id] = now
            link.log.warn("relay {relay} stopped its heartbeat: its members leave", relay=relay_id)
            link.appender.append(link.appender.entry(0, GONE, relay_id, "connection lost"), force=True)


class ClusterLink(service.Service):
    """
    This relay's link to the others: appends its clients' changes to the
    cluster log, applies the log, keeps the heartbeat, declares dead relays
    gone, takes snapshots.  The connection core asks it (``hub.cluster``)
    whether to append a command and whether a line must wait.
    """

    log = Logger()

    def __init__(self, url: str, replica: Replica, hub, clock, link_service=None, link_host: str | None = None,
                 ca: bytes | None = None, connect=_connect, *, snapshot_every: int = SNAPSHOT_EVERY,
                 max_queued: int = MAX_QUEUED, max_queued_bytes: int = MAX_QUEUED_BYTES) -> None:
        self.url_args = parse_url(url)
        self.ca = ca
        self.shown_url = f"{'rediss' if self.url_args['tls'] else 'redis'}://{self.url_args['host']}:{self.url_args['port']}"
        self.replica = replica
        self.relay_id = replica.relay_id
        replica.on_gone = self._gone
        self.hub = hub
        hub.cluster = self
        self.clock = clock
        self.link_service = link_service  # where other relays bring us stream ends (streamlink.py)
        self.link_host = link_host
        self._connect = connect
        self.synced = False  # the replica holds the cluster's state (once, at start)
        self.up = False  # Redis reachable and the replica current
        self.epoch: str | None = None
        self.position = "0-0"  # the last log entry applied
        self.appender = LogAppender(self, max_queued, max_queued_bytes)
        self.liveness = Liveness(self)
        self.snapshot_every = snapshot_every
        self._next_conn = 0
        self._since_snapshot = 0
        self._last_error = ""
        self.running = False
        self.stopping = False
        self.writer = self.reader = None
        self._loop_done: defer.Deferred | None = None
        self.snapshotting: defer.Deferred | None = None  # while one is being taken
        self._beat: task.LoopingCall | None = None

    # --- the connection core's questions -------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.synced

    def replicates(self, line) -> bool:
        return line.command in REPLICATED and not (line.command == "TOPIC" and len(line.args) < 2)

    def opened(self, conn) -> None:
        self._next_conn += 1
        conn.number = self._next_conn
        self.replica.local[conn.number] = conn

    def closed(self, conn, reason: str) -> None:
        self.replica.local.pop(conn.number, None)
        if conn.order.left() and not self.hub.relay.closing:
            self.appender.append(self.appender.entry(conn.number, QUIT, reason), force=True)

    def hello(self) -> bytes:
        text = f"chatsvc relay {self.relay_id}, linked; message bodies stay end-to-end encrypted"
        if self.synced and not self.up:
            text += "; the link to the other relays is down: what you send waits until it is back"
        return format_line("HELLO", "chatsvc", str(grammar.PROTOCOL_VERSION), text)

    def submit(self, conn, command: str, args: tuple, cid: str | None) -> bool:
        """Append a client's command to the log; False if refused (the client was told)."""
        op = REPLICATED[command]
        if op == NICK:
            fields = [args[0], conn.origin, conn.door.peer]
        elif op in (JOIN, PART):
            fields = [args[0], args[1] if len(args) > 1 else None]
        elif op == MSG:
            fields = [args[0], args[1], cid]
        elif op == TOPIC:
            fields = [args[0], args[1]]
        else:
            fields = [args[0] if args else ""]
        if self.appender.append(self.appender.entry(conn.number, op, *fields), force=op == QUIT):
            return True
        text = "the relays' shared store (Redis) is unreachable and too much is waiting for it; try again later"
        code = "store-failed" if op == MSG else "cluster-unavailable"
        conn.send_line(error_line(code, text, cid=cid if op == MSG else None))
        return False

    @property
    def queue(self) -> deque[str]:
        """Entries not yet in Redis (LogAppender)."""
        return self.appender.queue

    # --- reading the log ---------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.running = True
        self.writer = self._connect(self.url_args, self.ca)
        self.reader = self._connect(self.url_args, self.ca)
        for handler in (self.writer, self.reader):
            _shorten_backoff(handler)
        self.log.info("relay {relay} linking to the other relays through {url}", relay=self.relay_id, url=self.shown_url)
        self._loop_done = defer.ensureDeferred(self._loop())
        self._beat = task.LoopingCall(self.liveness.beat)
        self._beat.clock = self.clock
        self._beat.start(HEARTBEAT, now=False)

    async def _loop(self) -> None:
        while self.running:
            try:
                if not self.up:
                    await self._sync()
                reply = await self.ask(
                    self.reader, "XREAD", "COUNT", str(READ_BATCH), "BLOCK", str(READ_BLOCK_MS), "STREAMS", LOG,
                    self.position,
                )
            except Exception as e:
                if not self.running:
                    return
                why = str(e) or e.__class__.__name__
                if self.up:
                    self.down(why)
                elif why != self._last_error:
                    self.log.error("relay {relay} cannot use Redis at {url}: {why}; trying again",
                                   relay=self.relay_id, url=self.shown_url, why=why)
                self._last_error = why
                self._revive()
                await task.deferLater(self.clock, RETRY_DELAY, lambda: None)
                continue
            if reply:
                self._apply(reply[0][1])

    def ask(self, handler, *command) -> defer.Deferred:
        """
        A command whose answer the link waits for.  txredisapi waits for a
        connection without end while Redis is unreachable (or refused our
        password): after ASK_TIMEOUT the link says so and tries afresh.  A
        read given up is harmless: the next one asks again from the same
        position.
        """
        return handler.execute_command(*command).addTimeout(ASK_TIMEOUT, self.clock)

    def _revive(self) -> None:
        """
        txredisapi gives up on a connection whose AUTH or SELECT failed (a
        wrong password, a database that does not exist); make new ones, so
        that fixing Redis's side is enough.
        """
        for name in ("writer", "reader"):
            handler = getattr(self, name)
            if handler._factory.stopped and not handler._factory.size:
                self.log.error("Redis refused this relay's login or database (see above): check the --redis URL")
                handler._factory.disconnect()
                fresh = self._connect(self.url_args, self.ca)
                _shorten_backoff(fresh)
                setattr(self, name, fresh)

    def _apply(self, entries) -> None:
        replica = self.replica
        last = _number(self.position)
        for entry_id, fields in entries:
            number = _number(entry_id)
            if number != last + 1:
                # Entries we never saw: the log was trimmed past us (we
                # fell far behind), or Redis lost its data.  Start again.
                self.log.warn("cluster log: expected entry {want}, got {got}; reloading the state", want=last + 1, got=number)
                self.epoch = None
                self.down("missed part of the cluster log")
                return
            replica.apply(fields[1])  # the one field, "e" (see _APPEND)
            last = number
            self.position = entry_id
        self._since_snapshot += len(entries)
        if self._since_snapshot >= self.snapshot_every and self.snapshotting is None:
            self._since_snapshot = 0
            self.snapshotting = defer.ensureDeferred(self._snapshot())
            self.snapshotting.addErrback(
                lambda f: self.log.warn("could not take a cluster snapshot: {why}", why=f.getErrorMessage()))
            self.snapshotting.addBoth(self._snapshot_done)

    def _snapshot_done(self, _) -> None:
        self.snapshotting = None

    async def _sync(self) -> None:
        await catch_up(self)

    def synced_now(self) -> None:
        self._last_error = ""
        was_down = self.synced
        self.synced = self.up = True
        self.liveness.up_since = self.clock.seconds()
        self.appender.restart()  # what waited goes (again), in order
        self.appender.flush()
        self.liveness.beat()
        if was_down:
            self.log.info("relay {relay}: the link to the other relays is back", relay=self.relay_id)
            self._tell_all("the link to the other relays is back")
        for conn in list(self.replica.local.values()):
            conn.release_held()

    def down(self, why: str) -> None:
        if not self.up:
            return
        self.up = False
        self.appender.restart()
        self.log.warn("relay {relay}: lost the link to the other relays ({why}); serving local clients, "
                      "changes wait (at most {max} of them)", relay=self.relay_id, why=why, max=self.appender.max_queued)
        self._tell_all("the link to the other relays is down: what you send waits until it is back")

    def _tell_all(self, text: str) -> None:
        line = format_line("NOTICE", text)
        for conn in list(self.replica.local.values()):
            if conn.member is not None and conn.member.nick is not None:
                conn.send_line(line)

    # --- relays alive and gone ------------------------------------------------------------

    def link_address(self) -> str:
        return self.liveness.link_address()

    def address_of(self, relay_id: str) -> defer.Deferred:
        return self.liveness.address_of(relay_id)

    def _gone(self, relay_id: str) -> None:
        if relay_id != self.relay_id or not self.running or self.stopping:
            return  # (our own goodbye, read back while stopping, is no news)
        # The others declared us dead (we were cut off longer than
        # RELAY_TTL): our clients are no longer in the chat.
        self.log.warn("relay {relay} was declared gone by the others; its clients must reconnect", relay=relay_id)
        for conn in list(self.replica.local.values()):
            if conn.member is not None and conn.member.nick is not None:
                conn.close("relay-resync", "this relay was cut off from the others; reconnect", "relay resync")

    # --- snapshots ------------------------------------------------------------------------

    async def _snapshot(self) -> None:
        w = self.writer
        if not await w.execute_command("SET", SNAPLOCK, self.relay_id, "NX", "PX", "30000"):
            return  # another relay is taking this one
        at, state = self.position, self.replica.snapshot()
        await w.eval(_SNAPSHOT, [EPOCH, SNAPSHOT, SNAPSHOT_AT, LOG, SNAPLOCK], [self.epoch or "", at, state])
        self.log.info("cluster snapshot at entry {at}: {size} bytes", at=at, size=len(state))

    # --- stopping ----------------------------------------------------------------------------

    def flushed(self) -> defer.Deferred:
        return self.appender.flushed()

    async def _stop(self) -> None:
        self.stopping = True
        if self.up:
            # One entry for all of this relay's members, not one per member.
            self.appender.append(self.appender.entry(0, GONE, self.relay_id, "server shutdown"), force=True)
            waiting = self.flushed()
            timer = self.clock.callLater(2.0, waiting.cancel)
            try:
                await waiting
            except defer.CancelledError:
                self.log.warn("relay {relay}: could not tell the others it stopped", relay=self.relay_id)
            if timer.active():
                timer.cancel()
        self.running = False
        self.appender.stop()
        if self._beat is not None and self._beat.running:
            self._beat.stop()
        for handler in (self.reader, self.writer):
            try:
                await handler.disconnect()
            except Exception:
                pass
        if self._loop_done is not None:
            await self._loop_done

    def stopService(self):
        super().stopService()
        return defer.ensureDeferred(self._stop())


async def catch_up(link: "ClusterLink") -> None:
    """Catch up with the cluster: continue the log, or load a snapshot, or start the log."""
    w = link.writer
    while True:
        epoch = await link.ask(w, "GET", EPOCH)
        if epoch is None:
            # A new cluster, or Redis lost its data: start the log from
            # what this relay knows, unless another relay just did.
            if not link.replica.relay.salt:
                link.replica.relay.salt = new_salt()
            # Ids above this moment's milliseconds x 1000, as a lone
            # relay's are: they keep increasing across a lost log too.
            history = link.replica.relay.history
            history.floor = max(history.floor, int(link.clock.seconds() * 1000) * 1000)
            history.issued_max = max(history.issued_max, history.floor)
            mine = secrets.token_hex(8)
            snapshot = link.replica.snapshot()
            seeded = w.eval(_SEED, [EPOCH, SNAPSHOT, LOG, SEQ, SNAPSHOT_AT], [mine, snapshot])
            if await seeded.addTimeout(ASK_TIMEOUT, link.clock):
                link.log.info("relay {relay} started the cluster log (epoch {epoch})", relay=link.relay_id, epoch=mine)
                link.epoch, link.position = mine, "0-0"
                link.synced_now()
                return
            continue
        if epoch == link.epoch:
            link.synced_now()  # Redis kept its data: go on from where we were
            return
        at = await link.ask(w, "GET", SNAPSHOT_AT)
        snapshot = await link.ask(w, "GET", SNAPSHOT)
        if at is None or snapshot is None or epoch != await link.ask(w, "GET", EPOCH):
            continue  # changing under us: read again
        stale = link.replica.restore(snapshot)
        for conn in stale:
            conn.close("relay-resync", "the relays lost track of you while the link was down; reconnect",
                       "relay resync")
        link.log.info("relay {relay} loaded the cluster state as of entry {at} ({size} bytes)",
                      relay=link.relay_id, at=at, size=len(snapshot))
        link.epoch, link.position = epoch, at
        link.synced_now()
        return
