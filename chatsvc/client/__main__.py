"""
``python -m chatsvc.client [HOST]``: the terminal chat client.

Asks for what is missing (server address, nickname) like the original
client, connects, joins the room, and hands the terminal to a front end.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from twisted.internet import defer, endpoints, stdio, task, threads

from chatsvc import grammar
from chatsvc.client import aesgcm, ciphers, config, connection, passphrases, sealed, terminal
from chatsvc.client.protocol import describe_failure
from chatsvc.client.identity import Identity
from chatsvc.client.keyring import Keyring, KeyringError
from chatsvc.client.membership import Held
from chatsvc.client.pins import KnownKeys
from chatsvc.client.replay import ReplayGuard
from chatsvc.client.session import ChatSession
from chatsvc.client.stamps import DEFAULT_FORMAT, Stamps

DEFAULT_PORT = 8000
PASSPHRASE_ENV = "CHATSVC_PASSPHRASE"
CIPHER_NAMES = ("aes", "caesar")
DEFAULT_ROOM = "#lobby"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chatsvc.client",
        description="Chat through a chatsvc relay. Messages are encrypted before they leave this machine.",
        epilog="Defaults for these options can live in client.toml in the config directory "
        "(~/.config/chatsvc/client.toml; see docs/client.md); the command line wins. "
        "Type /help once connected for the chat commands: /join /part /msg /query /me /names /whois "
        "/away /ignore /window /send /accept /clear /quit ... FIN or /quit leaves.",
    )
    parser.add_argument("host", nargs="?", help="server address (asked for if missing)")
    _connection_options(parser.add_argument_group("connection"))
    _key_options(parser.add_argument_group("passphrase and keys"))
    _screen_options(parser.add_argument_group("screen and files"))
    return parser


def _connection_options(group) -> None:
    group.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"server port (default {DEFAULT_PORT})")
    group.add_argument("--nick", help="your nickname (asked for if missing)")
    group.add_argument("--room", default=DEFAULT_ROOM, help=f"room to join first (default {DEFAULT_ROOM})")
    group.add_argument("--rooms", metavar="#A,#B", help="rooms to join, comma-separated; the first is current (instead of --room)")
    group.add_argument("--tls", action="store_true", help="connect with TLS, checking the server's certificate against the system's CAs")
    group.add_argument("--ca-file", metavar="PATH", help="connect with TLS, trusting only the CA (or self-signed certificate) in PATH")
    group.add_argument("--join", metavar="LINK",
                       help="join the sealed room of an invitation link (chatsvc://… or https://…/#join=…): "
                       "it names the server and the room, and needs no passphrase")
    group.add_argument("--no-reconnect", dest="reconnect", action="store_false",
                       help="exit (status 1) when the connection drops, instead of reconnecting")


def _key_options(group) -> None:
    group.add_argument("--new-passphrase", action="store_true",
                       help=f"print a new random passphrase ({passphrases.GENERATED_WORDS} words, over 100 bits) to share "
                       "with the people you chat with, and exit")
    group.add_argument("--allow-weak-passphrase", action="store_true",
                       help=f"use a passphrase estimated below {passphrases.REFUSE_BELOW_BITS} bits anyway (not recommended)")
    group.add_argument("--passphrase-file", metavar="PATH",
                       help=f"read the shared passphrase from the first line of PATH "
                       f"(else ${PASSPHRASE_ENV}, else it is asked for without echo)")
    group.add_argument("--config-dir", metavar="DIR", default=str(default_config_dir()),
                       help="where the client keeps its state, e.g. what it has seen from whom, so a replayed "
                       "message is caught even after a restart (default $XDG_CONFIG_HOME/chatsvc or ~/.config/chatsvc)")
    group.add_argument("--identity", metavar="PATH",
                       help="your identity keys (Ed25519 to sign, X25519 for private messages), made on first run "
                       "(default: identity in --config-dir, mode 0600); known_keys beside it pins the keys of others")
    group.add_argument("--cipher", choices=CIPHER_NAMES, default="aes",
                       help="aes: AES-256-GCM keyed by a shared passphrase (default); "
                       "caesar: the original teaching cipher, not secure")
    group.add_argument("--shift", type=int, default=10, help="Caesar key: how far letters move (default 10)")


def _screen_options(group) -> None:
    group.add_argument("--timestamps", metavar="FORMAT",
                       help="time in front of each line, a strftime format (default %%H:%%M in a terminal, none when piped); "
                       "'off' for none")
    group.add_argument("--no-timestamps", dest="timestamps", action="store_const", const="off", help="no timestamps")
    group.add_argument("--no-bell", dest="bell", action="store_false", default=True,
                       help="do not ring the terminal bell when a line names you")
    group.add_argument("--downloads", metavar="DIR", default=str(Path.home() / "Downloads" / "chatsvc"),
                       help="where received files are saved (default ~/Downloads/chatsvc)")
    group.add_argument("--auto-accept-mb", type=float, default=10, metavar="MB",
                       help="files up to this size are saved without asking; bigger ones wait for /accept (default 10)")


def default_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "chatsvc"


def ask(prompt: str) -> str | None:
    """
    Read one answer from standard input without buffering past its newline,
    so that later input (a script's chat lines) is left for the front end.
    """
    sys.stdout.write(prompt)
    sys.stdout.flush()
    data = bytearray()
    while True:
        byte = os.read(0, 1)
        if not byte:
            return data.decode("utf-8", "replace").strip() if data else None
        if byte == b"\n":
            return data.decode("utf-8", "replace").strip()
        data += byte


def settle_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Fill in what was not given and reject what cannot work, before connecting."""
    if not args.host:
        args.host = ask("Server address: ")
        if not args.host:
            parser.exit(1, "no server address given\n")
    if not args.nick:
        args.nick = ask("Nickname: ")
        if not args.nick:
            parser.exit(1, "no nickname given\n")
    if not grammar.is_valid_nick(args.nick):
        parser.exit(
            1,
            f"{args.nick!r} is not a valid nickname: use 1-32 letters, digits, '_', '-' or '.', "
            "not starting with '-' or '.'\n",
        )
    rooms = [r.strip() for r in args.rooms.split(",") if r.strip()] if args.rooms else [args.room]
    rooms = [r if r.startswith("#") else "#" + r for r in rooms]
    for room in rooms:
        if not grammar.is_valid_room(room):
            parser.exit(1, f"{room!r} is not a valid room name\n")
    args.room, args.extra_rooms = rooms[0], rooms[1:]
    if args.auto_accept_mb < 0:
        parser.exit(1, "--auto-accept-mb must be 0 or more\n")
    if not 0 < args.port < 65536:
        parser.exit(1, f"--port must be between 1 and 65535, not {args.port}\n")


def get_passphrase(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """
    From --passphrase-file, the environment, or the terminal (no echo).  A
    passphrase typed at the terminal that is empty or too weak is asked for
    again (the host and nick already given are kept); one from a file or the
    environment ends the client with the reason.
    """
    if args.passphrase_file or os.environ.get(PASSPHRASE_ENV):
        passphrase = _given_passphrase(args, parser)
        problem = judge_passphrase(passphrase, args.allow_weak_passphrase)
        if problem:
            parser.exit(1, problem + "\n")
        return _warned(passphrase)
    while True:
        passphrase = ask_secret("Passphrase (shared with the people you chat with): ")
        if passphrase is None:
            parser.exit(
                1,
                "no passphrase: give --passphrase-file PATH or set "
                f"{PASSPHRASE_ENV} (or run in a terminal to be asked)\n",
            )
        problem = judge_passphrase(passphrase, args.allow_weak_passphrase)
        if not problem:
            return _warned(passphrase)
        sys.stderr.write(problem + " Try another (Ctrl-D gives up).\n")


def _given_passphrase(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    if args.passphrase_file:
        try:
            with open(args.passphrase_file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            parser.exit(1, f"cannot read passphrase file {args.passphrase_file}: {getattr(e, 'strerror', None) or e}\n")
    return os.environ[PASSPHRASE_ENV]


def judge_passphrase(passphrase: str, allow_weak: bool) -> str | None:
    """Why this passphrase cannot be used, or None."""
    if not passphrase:
        return "the passphrase is empty."
    bits = passphrases.strength_bits(passphrase)
    if bits < passphrases.REFUSE_BELOW_BITS and not allow_weak:
        return (f"this passphrase is too easy to guess (about {bits:.0f} bits; at least "
                f"{passphrases.REFUSE_BELOW_BITS} are needed): whoever sees the traffic can try guesses "
                "offline. Make one with --new-passphrase and share it, or pass --allow-weak-passphrase.")
    return None


def _warned(passphrase: str) -> str:
    bits = passphrases.strength_bits(passphrase)
    if bits < passphrases.WARN_BELOW_BITS:
        sys.stderr.write(
            f"warning: this passphrase is estimated at {bits:.0f} bits; {passphrases.WARN_BELOW_BITS} or more "
            "keeps it safe against offline guessing (--new-passphrase makes one)\n"
        )
    return passphrase


def ask_secret(prompt: str) -> str | None:
    """Ask on the controlling terminal without echo; None if there is none."""
    import getpass

    # getpass itself talks to /dev/tty, but silently falls back to an
    # echoing stdin when there is none; check first so that never happens.
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return None
    try:
        return getpass.getpass(prompt)
    except (EOFError, KeyboardInterrupt):
        return None


async def make_cipher(reactor, args: argparse.Namespace) -> ciphers.Cipher:
    if args.cipher == "caesar":
        return ciphers.CaesarCipher(args.shift)
    # PBKDF2 is deliberately slow; keep it off the reactor thread.  This is
    # the aes1 key (older relays, old history); the aes2 key follows once
    # the relay has said its salt.
    if args.passphrase is None:  # in by invitation link alone: a key nobody shares for everything else
        master = os.urandom(32)
    else:
        master = await threads.deferToThread(aesgcm.derive_master_key, args.passphrase)
    replay = ReplayGuard(Path(args.config_dir).expanduser() / "replay.json")
    path = Path(args.identity).expanduser() if args.identity else Path(args.config_dir).expanduser() / "identity"
    try:
        me, made = Identity.load_or_create(path)
    except (OSError, ValueError) as e:
        sys.stderr.write(f"cannot use the identity {path}: {getattr(e, 'strerror', None) or e}\n")
        raise SystemExit(1)
    cipher = aesgcm.AesGcmCipher(master, replay=replay, passphrase=args.passphrase, identity=me)
    cipher.identity_made = str(path) if made else None  # said once connected
    cipher.link_only = args.passphrase is None
    return cipher


def make_keyring(args: argparse.Namespace) -> Keyring | None:
    """The sealed rooms held (sealed.json in the config directory), with the --join link's room in it."""
    if args.cipher == "caesar":
        return None
    try:
        keyring = Keyring(Path(args.config_dir).expanduser() / "sealed.json")
    except KeyringError as e:
        sys.stderr.write(f"{e}\n")
        raise SystemExit(1)
    link = getattr(args, "link", None)
    if link is not None:
        held = keyring.get(link.room)
        if held is None or held.epoch < link.epoch:
            keyring.put(link.room, Held(link.room.casefold(), link.epoch, {link.epoch: link.secret},
                                        link_owner=link.owner))
    return keyring


def take_link(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """--join LINK: the server and room come from the link (a HOST given on the command line wins)."""
    try:
        args.link = sealed.parse_link(args.join)
    except sealed.SealError as e:
        parser.exit(1, f"--join: {e}\n")
    host, _, port = args.link.chat.rpartition(":")
    if not args.host:
        args.host = host.strip("[]")
        args.port = int(port) if port.isdigit() else args.port
    args.room, args.rooms = args.link.room, None


def known_keys(args: argparse.Namespace) -> KnownKeys | None:
    """The keys pinned for others (None: the Caesar cipher signs nothing)."""
    if args.cipher == "caesar":
        return None
    path = Path(args.identity).expanduser().with_name("known_keys") if args.identity else (
        Path(args.config_dir).expanduser() / "known_keys")
    try:
        return KnownKeys(path)
    except ValueError as e:
        sys.stderr.write(f"{e}\n")
        raise SystemExit(1)


def make_front_end(args: argparse.Namespace, interactive: bool):
    """A terminal with a line editor and a status line, or plain lines for a pipe."""
    fmt = args.timestamps if args.timestamps != "off" else None
    if interactive:
        stamps = Stamps(fmt if args.timestamps is not None else DEFAULT_FORMAT)
        return terminal.InteractiveFrontEnd(stamps, bell=args.bell)
    return terminal.PipedFrontEnd(Stamps(fmt))


async def run(reactor, args: argparse.Namespace) -> None:
    interactive = os.isatty(0) and os.isatty(1)
    server = f"{args.host}:{args.port}"
    front_end = make_front_end(args, interactive)
    try:
        endpoint = connection.make_endpoint(reactor, args.host, args.port, args.tls, args.ca_file)
    except connection.CertificateFileError as e:
        sys.stderr.write(f"{e}\n")
        raise SystemExit(1)
    cipher = await make_cipher(reactor, args)
    known = known_keys(args)
    session = ChatSession(
        front_end, cipher, args.nick, args.room, server, interactive, args.reconnect,
        downloads=Path(args.downloads).expanduser(),
        auto_accept_bytes=int(args.auto_accept_mb * 1024 * 1024),
        clock=reactor,
        extra_rooms=args.extra_rooms,
        known_keys=known,
        keyring=make_keyring(args),
    )
    front_end.session = session
    # Each file transfer gets a connection of its own (docs/protocol.md,
    # *Bulk streams*), to the same address, with the same TLS.
    session.connect_stream = lambda stream: endpoints.connectProtocol(endpoint, stream)

    service = connection.make_service(reactor, endpoint, session)
    stopping: list[defer.Deferred] = []

    def stop_connecting() -> None:
        # Called from inside connection callbacks, where ClientService must
        # not be re-entered: stop it on the next turn of the reactor.
        if not stopping:
            stopping.append(task.deferLater(reactor, 0, service.stopService))

    session.stop_connecting = stop_connecting
    service.startService()
    try:
        await service.whenConnected(failAfterFailures=1)
    except Exception:
        failure = defer.Failure()
        stop_connecting()
        sys.stderr.write(f"cannot connect to {server}: {describe_failure(failure)}\n")
        raise SystemExit(1)

    if interactive:
        with terminal.RawTerminal():
            io = stdio.StandardIO(terminal.make_interactive_transport_protocol(front_end))
            status = await session.done
            await _flush(reactor, io, front_end)
    else:
        io = stdio.StandardIO(front_end)
        status = await session.done
        await _flush(reactor, io, front_end)
    stop_connecting()
    await stopping[0]
    if status:
        raise SystemExit(status)


async def _flush(reactor, io: stdio.StandardIO, front_end) -> None:
    """Let queued output reach stdout before the process exits."""
    if not front_end.closed.called:
        io.loseConnection()
        try:
            await front_end.closed.addTimeout(3, reactor)
        except defer.TimeoutError:
            pass  # stdout is stuck (nobody reading); exit anyway


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    # The config file (in the config directory, which may be an option
    # itself) gives defaults; then the command line is read for real.
    early, _ = parser.parse_known_args(argv)
    try:
        defaults, note = config.load(Path(early.config_dir))
    except config.ConfigError as e:
        parser.exit(1, f"{e}\n")
    if note:
        sys.stderr.write(note + "\n")
    parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    if "rooms" in defaults and any(a == "--room" or a.startswith("--room=") for a in given) \
            and not any(a == "--rooms" or a.startswith("--rooms=") for a in given):
        args.rooms = None  # --room on the command line wins over the file's rooms
    if args.new_passphrase:
        print(passphrases.generate())
        return
    try:
        if args.join:
            take_link(args, parser)
        settle_options(args, parser)
        link_only = args.join and not (args.passphrase_file or os.environ.get(PASSPHRASE_ENV))
        args.passphrase = get_passphrase(args, parser) if args.cipher == "aes" and not link_only else None
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        raise SystemExit(130)
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
