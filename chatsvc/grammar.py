"""
The chatsvc wire grammar: parsing and formatting lines, and the name rules.

This module is shared by the relay and the clients and deliberately imports
nothing from Twisted, so it can be tested (and reused, e.g. by a browser-side
port) as plain functions.  ``docs/protocol.md`` is the normative description;
keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PROTOCOL_VERSION = 1

#: Default maximum length of a received line, in bytes, excluding the ``\n``.
DEFAULT_MAX_LINE = 65536

#: Rooms with at least this many members are "large" (see docs/protocol.md).
DEFAULT_LARGE_ROOM = 250
#: How often members of a changing large room hear its member count.
MEMBERS_INTERVAL = 5.0

#: How much longer than the limit a relayed line may be (the server inserts
#: the sender's nick).  Clients must accept lines up to limit + this.
RELAY_OVERHEAD = 256

MAX_NICK_CHARS = 32
MAX_ROOM_CHARS = 64  # not counting the leading '#'

#: Longest PING/PONG token the server echoes (a longer one is refused: an
#: echo is output the sender did not pay for).
MAX_TOKEN_CHARS = 64

#: A join proof (``JOIN <room> <proof>``): base64url, 16 to 64 characters.
MIN_PROOF_CHARS = 16
MAX_PROOF_CHARS = 64

#: What ``CAPS`` announces (docs/protocol.md, *Capabilities*).
CAP_JOIN_PROOF = "join-proof"
CAP_STREAMS = "streams"
CAP_TOPIC = "topic"
#: A room topic's payload (ciphertext) is at most this long: it is kept
#: for rooms no one is in, so it must stay small.
MAX_TOPIC_CHARS = 2048


class ProtocolError(Exception):
    """
    A line broke the protocol.  ``code`` is the machine-readable error code
    sent as ``ERROR <code> <text>``.
    """

    def __init__(self, code: str, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


# --- names -----------------------------------------------------------------

#: Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt):
#: characters that render as nothing.  Some are letters to Python (the
#: Hangul fillers U+115F, U+1160, U+3164, U+FFA0), so ``alice`` followed by
#: one would pass as a different nick that looks exactly like ``alice``.
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def is_default_ignorable(ch: str) -> bool:
    code = ord(ch)
    return any(low <= code <= high for low, high in _DEFAULT_IGNORABLE)


def _name_char_ok(ch: str) -> bool:
    # str.isalnum() is true for every Unicode letter and digit category
    # (L*, Nd, Nl, No) -- the "Unicode letter or digit" of the spec --
    # minus the ones that are invisible.
    return (ch.isalnum() and not is_default_ignorable(ch)) or ch in "_-."


def _is_name(text: str, max_chars: int) -> bool:
    return (
        0 < len(text) <= max_chars
        and text[0] not in "-."
        and all(_name_char_ok(ch) for ch in text)
    )


def is_valid_nick(text: str) -> bool:
    return _is_name(text, MAX_NICK_CHARS)


def is_valid_room(text: str) -> bool:
    return text.startswith("#") and _is_name(text[1:], MAX_ROOM_CHARS)


def name_key(name: str) -> str:
    """The form under which nicks and rooms are compared."""
    return name.casefold()


def is_decimal(text: str, max_digits: int = 20) -> bool:
    """
    ASCII digits only.  ``str.isdigit`` also accepts ``²`` or ``٣``, which
    ``int()`` then refuses (or reads in ways the sender did not mean).
    """
    return 0 < len(text) <= max_digits and text.isascii() and text.isdigit()


_B64URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def is_valid_proof(text: str) -> bool:
    """A join proof: 16-64 base64url characters (the relay never decodes it)."""
    return MIN_PROOF_CHARS <= len(text) <= MAX_PROOF_CHARS and all(ch in _B64URL_CHARS for ch in text)


def is_valid_stream_token(text: str) -> bool:
    """A bulk stream's token: base64url, at least 128 bits (22 characters), at most 64."""
    return 22 <= len(text) <= MAX_PROOF_CHARS and all(ch in _B64URL_CHARS for ch in text)


# --- parsing ---------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One parsed protocol line."""

    command: str  # upper-cased
    args: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Shape:
    """How many arguments a command takes and whether the last is 'rest'."""

    min_args: int
    max_args: int
    trailing: bool = False  # last argument is the rest of the line
    usage: str = ""  # shown in bad-syntax errors


#: Commands a client may send to the server, with their argument shapes.
CLIENT_COMMANDS: dict[str, Shape] = {
    "NICK": Shape(1, 1, usage="NICK <nick>"),
    "JOIN": Shape(1, 2, usage="JOIN <#room> [proof]"),
    "PART": Shape(1, 2, trailing=True, usage="PART <#room> [reason]"),
    "MSG": Shape(2, 2, trailing=True, usage="MSG <#room|nick> <payload>"),
    "NAMES": Shape(1, 1, usage="NAMES <#room>"),
    "ROOMS": Shape(0, 0, usage="ROOMS"),
    "PING": Shape(0, 1, usage="PING [token]"),
    "PONG": Shape(0, 1, usage="PONG [token]"),
    "HISTORY": Shape(3, 3, usage="HISTORY <#room> after <id> | HISTORY <#room> last <count>"),
    "QUIT": Shape(0, 1, trailing=True, usage="QUIT [reason]"),
    "CAPS": Shape(0, 0, usage="CAPS"),
    "STREAM": Shape(2, 2, usage="STREAM <token> send|recv"),
    "TOPIC": Shape(1, 2, trailing=True, usage="TOPIC <#room> [payload]"),
}

#: Lines the server sends, for clients.  NAMES carries a variable list, so
#: its maximum is open-ended.
SERVER_COMMANDS: dict[str, Shape] = {
    "HELLO": Shape(2, 3, trailing=True),
    "OK": Shape(1, 3),
    "ERROR": Shape(1, 2, trailing=True),
    "NICK": Shape(2, 2),
    "JOIN": Shape(2, 2),
    "PART": Shape(2, 3, trailing=True),
    "QUIT": Shape(1, 2, trailing=True),
    "MSG": Shape(3, 3, trailing=True),
    "NAMES": Shape(1, 1_000_000),
    "ENDNAMES": Shape(1, 1),
    "MEMBERS": Shape(2, 2),
    "GAP": Shape(2, 2),
    "ENDHISTORY": Shape(2, 2),
    "ROOM": Shape(2, 2),
    "ENDROOMS": Shape(0, 0),
    "TOPIC": Shape(1, 4),
    "PING": Shape(0, 1),
    "PONG": Shape(0, 1),
    "CAPS": Shape(0, 64),
    "NOTICE": Shape(1, 1, trailing=True),
}


def parse_tags(block: str) -> dict[str, str]:
    """
    Parse a tag block (without the leading ``@``).  Tags are reserved for
    later versions, so this is lenient: a malformed tag is skipped, never an
    error.
    """
    tags: dict[str, str] = {}
    for item in block.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        tags[key] = value
    return tags


def _split_args(text: str, shape: Shape, command: str) -> tuple[str, ...]:
    args: list[str] = []
    rest = text.lstrip(" ")
    while rest:
        if shape.trailing and len(args) == shape.max_args - 1:
            args.append(rest)
            break
        token, _, rest = rest.partition(" ")
        args.append(token)
        rest = rest.lstrip(" ")
    if not shape.min_args <= len(args) <= shape.max_args:
        usage = shape.usage or f"{shape.min_args} to {shape.max_args} arguments"
        raise ProtocolError("bad-syntax", f"{command} usage: {usage}")
    return tuple(args)


def parse_line(
    text: str, commands: dict[str, Shape] = CLIENT_COMMANDS
) -> Line | None:
    """
    Parse one decoded line (without its line ending).

    Returns ``None`` for a line with nothing in it (blank, or tags only),
    which receivers ignore.  Raises L{ProtocolError} with code
    ``unknown-command`` or ``bad-syntax``.
    """
    tags: dict[str, str] = {}
    text = text.lstrip(" ")
    if text.startswith("@"):
        block, _, text = text[1:].partition(" ")
        tags = parse_tags(block)
        text = text.lstrip(" ")
    if not text.strip(" "):
        return None
    word, _, rest = text.partition(" ")
    command = word.upper()
    shape = commands.get(command)
    if shape is None:
        raise ProtocolError("unknown-command", f"{printable(word, 32)} is not a command")
    return Line(command, _split_args(rest, shape, command), tags)


_CID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def is_valid_cid(text: str) -> bool:
    """A client's message id (the ``cid`` tag): 1-64 of [A-Za-z0-9-_.]."""
    return 0 < len(text) <= 64 and all(ch in _CID_CHARS for ch in text)


def printable(text: str, limit: int) -> str:
    """Shorten and neutralise untrusted text for echoing back in an error."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


# --- formatting ------------------------------------------------------------


def format_line(command: str, *args: str) -> bytes:
    """
    Encode a line for the wire (with its ``\\n``).  Only the last argument
    may contain spaces; callers guarantee that by construction.
    """
    return (" ".join((command, *args)) + "\n").encode("utf-8")


def error_line(code: str, text: str, cid: str | None = None) -> bytes:
    line = format_line("ERROR", code, text)
    return tagged(line, cid=cid) if cid else line


def tagged(line: bytes, **tags: object) -> bytes:
    """
    ``line`` with a tag block in front: ``@key=value;key2=value2 LINE``.
    Values are ids, cids and flags the relay made or checked, never free
    text (``True`` makes a bare flag: ``history``).  None is left out.
    """
    items = [key if value is True else f"{key}={value}" for key, value in tags.items() if value is not None]
    if not items:
        return line
    return b"@" + ";".join(items).encode("ascii") + b" " + line


def names_lines(room: str, nicks: list[str], max_line: int) -> list[bytes]:
    """
    The ``NAMES <room> <nick> ...`` lines (each at most ``max_line`` bytes
    before its newline) followed by ``ENDNAMES <room>``.
    """
    lines: list[bytes] = []
    head = f"NAMES {room}"
    budget = max_line - len(head.encode("utf-8"))
    batch: list[str] = []
    used = 0
    for nick in nicks:
        cost = 1 + len(nick.encode("utf-8"))
        if batch and used + cost > budget:
            lines.append(format_line("NAMES", room, *batch))
            batch, used = [], 0
        batch.append(nick)
        used += cost
    if batch or not lines:
        lines.append(format_line("NAMES", room, *batch))
    lines.append(format_line("ENDNAMES", room))
    return lines
