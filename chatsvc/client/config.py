"""
The client's config file, ``client.toml`` in its config directory
(``~/.config/chatsvc/client.toml``): defaults for the command-line options.
Whatever is given on the command line wins.

    host = "chat.example.org"
    port = 8443
    nick = "alice"
    rooms = ["#lobby", "#dev"]     # joined in order; the first is current
    tls = true                     # or: ca_file = "~/chatsvc-cert.pem"
    timestamps = "%H:%M"           # a strftime format, or false
    bell = true                    # ring when a line names you
    downloads = "~/Downloads/chatsvc"
    auto_accept_mb = 10
    reconnect = true

Read with the standard library's ``tomllib`` (Python 3.11+); on 3.10 the
file is read only if ``tomli`` is installed, and ignored with a note if not.
"""

from __future__ import annotations

from pathlib import Path

FILE_NAME = "client.toml"

# setting -> (argparse destination, accepted types)
SETTINGS = {
    "host": ("host", (str,)),
    "port": ("port", (int,)),
    "nick": ("nick", (str,)),
    "room": ("room", (str,)),
    "rooms": ("rooms", (list,)),
    "tls": ("tls", (bool,)),
    "ca_file": ("ca_file", (str,)),
    "timestamps": ("timestamps", (str, bool)),
    "bell": ("bell", (bool,)),
    "downloads": ("downloads", (str,)),
    "auto_accept_mb": ("auto_accept_mb", (int, float)),
    "reconnect": ("reconnect", (bool,)),
    "cipher": ("cipher", (str,)),
}


class ConfigError(Exception):
    """The file is there but cannot be used; the message says where and why."""


def _toml():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            return None
    return tomllib


def load(directory: Path) -> tuple[dict, str | None]:
    """
    Argparse defaults from ``directory/client.toml``, and a note for the
    user (or None).  A missing file is no error.
    """
    path = Path(directory).expanduser() / FILE_NAME
    if not path.exists():
        return {}, None
    toml = _toml()
    if toml is None:
        return {}, f"note: {path} ignored: reading it needs Python 3.11, or the tomli package"
    try:
        data = toml.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it: {e}")
    except ValueError as e:  # tomllib.TOMLDecodeError
        raise ConfigError(f"{path}: not valid TOML: {e}")
    defaults = {}
    for key, value in data.items():
        if key not in SETTINGS:
            raise ConfigError(f"{path}: unknown setting {key!r} (known: {', '.join(sorted(SETTINGS))})")
        dest, types = SETTINGS[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join("true/false" if t is bool else t.__name__ for t in types)
            raise ConfigError(f"{path}: {key} should be {wanted}, not {value!r}")
        if key == "rooms":
            if not value or not all(isinstance(r, str) for r in value):
                raise ConfigError(f"{path}: rooms should be a list of room names, e.g. [\"#lobby\", \"#dev\"]")
            value = ",".join(value)
        if key == "timestamps" and value is True:
            value = "%H:%M"
        if key == "timestamps" and value is False:
            value = "off"
        defaults[dest] = value
    return defaults, None
