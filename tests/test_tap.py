"""The twistd glue: options, service construction, plugin discovery, layout."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock as MemoryReactor
from twisted.plugin import getPlugins
from twisted.python import usage

from chatsvc import tap
from tests.support import REPO, TWISTD, subprocess_env


def parse(*args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(args))
    return options


def test_defaults():
    options = parse()
    assert options["port"] == "tcp:8000:backlog=1024"
    assert options["max-line"] == 65536
    assert not options["log-messages"]


@pytest.mark.parametrize(
    "given, expected",
    [
        ("8000", "tcp:8000:backlog=1024"),
        (" 9001 ", "tcp:9001:backlog=1024"),
        ("tcp:8000:interface=127.0.0.1", "tcp:8000:interface=127.0.0.1:backlog=1024"),
        ("tcp:8000:backlog=5", "tcp:8000:backlog=5"),
        ("tcp6:8000", "tcp6:8000:backlog=1024"),
        ("unix:/tmp/chat.sock", "unix:/tmp/chat.sock"),
    ],
)
def test_port_forms(given, expected):
    assert parse("--port", given)["port"] == expected


@pytest.mark.parametrize("bad", ["nonsense:1", "tcp:notaport", "ssl:8443:privateKey=/nonexistent.pem"])
def test_bad_port_is_a_usage_error(bad):
    with pytest.raises(usage.UsageError) as e:
        parse("--port", bad)
    assert "bad --port" in str(e.value)


def test_systemd_port_outside_systemd_is_explained():
    with pytest.raises(usage.UsageError) as e:
        parse("--port", "systemd:domain=INET:index=0")
    assert "passed by systemd" in str(e.value)


@pytest.mark.parametrize(
    "args",
    [
        ["--max-sendq", "-1"],
        ["--history", "lots"],
        ["--idle-timeout", "nan"],
        ["--flood-burst", "5", "--flood-rate", "0"],
        ["--idle-timeout", "10", "--ping-timeout", "0"],
    ],
)
def test_bad_limits_are_usage_errors(args):
    with pytest.raises(usage.UsageError):
        parse(*args)


def test_zero_turns_limits_off():
    limits = parse(
        "--max-sendq", "0", "--flood-burst", "0", "--flood-rate", "0", "--max-clients", "0",
        "--max-per-ip", "0", "--register-timeout", "0", "--idle-timeout", "0", "--large-room", "0",
    ).limits()
    assert (limits.max_sendq, limits.flood_burst, limits.max_clients, limits.idle_timeout) == (0, 0, 0, 0)


@pytest.mark.parametrize("bad", ["0", "-5", "big"])
def test_bad_max_line(bad):
    with pytest.raises(usage.UsageError):
        parse("--max-line", bad)


def test_help_mentions_every_option():
    text = str(tap.Options())
    for option in ("--port", "--max-line", "--log-messages"):
        assert option in text


def test_make_service_listens_on_the_endpoint():
    reactor = MemoryReactor()
    svc = tap.makeService(parse("--port", "tcp:1234:interface=127.0.0.1", "--max-line", "99", "--log-messages"), reactor)
    svc.privilegedStartService()
    svc.startService()
    [(port, factory, backlog, interface)] = reactor.tcpServers
    assert (port, backlog, interface) == (1234, 1024, "127.0.0.1")
    assert factory.relay.max_line == 99
    assert factory.relay.log_messages
    svc.stopService()


def test_plugin_is_discoverable():
    env = subprocess_env()
    code = (
        "from twisted.plugin import getPlugins;"
        "from twisted.application.service import IServiceMaker;"
        "import twisted.plugins;"
        "print([p.tapname for p in getPlugins(IServiceMaker, twisted.plugins)])"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd="/")
    assert "'chat'" in out.stdout, out.stderr


def test_plugin_object_in_process():
    import twisted.plugins

    makers = {p.tapname: p for p in getPlugins(IServiceMaker, twisted.plugins)}
    if "chat" not in makers:
        pytest.skip("checkout not on twisted.plugins path in this process")
    assert IServiceMaker.providedBy(makers["chat"])
    assert makers["chat"].options is tap.Options


def test_plugin_folder_layout():
    plugins = REPO / "twisted" / "plugins"
    assert not (plugins / "__init__.py").exists()
    assert not (REPO / "twisted" / "__init__.py").exists()
    tree = ast.parse((plugins / "chatsvc_plugin.py").read_text())
    statements = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom, ast.Expr))]
    assert len(statements) == 1  # the single ServiceMaker(...)


# Every module of the relay: chatsvc/*.py (the client and the page live in subfolders).
SERVER_MODULES = sorted(p.stem for p in (REPO / "chatsvc").glob("*.py") if p.stem != "__init__")


def test_server_never_imports_cipher_code():
    # At run time: none of chatsvc's client or cipher modules get loaded.
    # (Twisted itself loads the cryptography package for TLS; that is fine.)
    code = (
        "import sys;"
        + "".join(f"import chatsvc.{m};" for m in SERVER_MODULES)
        + "print([m for m in sys.modules if m.startswith('chatsvc.') and m[8:] not in "
        + repr(SERVER_MODULES)
        + "])"
    )
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    # In the source: no direct use of a crypto library either.
    for name in SERVER_MODULES:
        for imported in _imports(REPO / "chatsvc" / f"{name}.py"):
            assert not imported.startswith(("cryptography", "Crypto", "nacl", "hashlib", "chatsvc.client"))


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        alias.name if isinstance(node, ast.Import) else (node.module or "")
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]


def test_grammar_has_no_twisted_imports():
    assert not [name for name in _imports(REPO / "chatsvc" / "grammar.py") if name.startswith("twisted")]


def test_twistd_with_a_bad_option_says_only_what_is_wrong():
    for args, wanted in (
        (["--port", "nonsense:1"], "twistd chat: bad --port 'nonsense:1'"),
        (["--max-line", "x"], "twistd chat: --max-line must be a whole number"),
        (["--frobnicate"], "twistd chat: option --frobnicate not recognized"),
    ):
        out = subprocess.run(
            TWISTD + ["-n", "--pidfile=", "chat", *args], env=subprocess_env(), capture_output=True, text=True,
            timeout=60,
        )
        assert out.returncode == 1
        assert wanted in out.stderr, out.stderr
        assert "Usage:" not in out.stdout + out.stderr  # no wall of help first
    helped = subprocess.run(
        TWISTD + ["chat", "--help"], env=subprocess_env(), capture_output=True, text=True, timeout=60
    )
    assert "--max-line" in helped.stdout


def test_web_options():
    config = tap.Options()
    config.parseOptions(["--web", "8080", "--web-origin", "HTTPS://Chat.Example.org/, http://10.0.0.5:8080",
                         "--web-proxy", "127.0.0.1,::1"])
    assert config["web"] == "tcp:8080:backlog=1024"
    assert config["web-origin"] == frozenset({"https://chat.example.org", "http://10.0.0.5:8080"})
    assert config["web-proxy"] == frozenset({"127.0.0.1", "::1"})
    assert parse()["web"] is None  # no web client unless asked


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["--web", "nonsense:1"], "bad --web"),
        (["--web-origin", "chat.example.org"], "bad --web-origin"),
        (["--web-origin", "https://x/path"], "bad --web-origin"),
        (["--web-proxy", "localhost"], "bad --web-proxy"),
    ],
)
def test_bad_web_options_are_usage_errors(args, complaint):
    with pytest.raises(usage.UsageError, match=complaint):
        tap.Options().parseOptions(args)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--redis", "foo"], "must start with redis:// or rediss://"),
        (["--redis", "redis://h:99999"], "the port must be a number from 1 to 65535"),
        (["--redis", "redis://h/zero"], "the database after / must be a number"),
        (["--redis", "env:CHATSVC_TEST_NOT_SET"], "the environment variable CHATSVC_TEST_NOT_SET is not set"),
        (["--redis", "redis://h", "--store", "x.db"], "--store and --redis do not go together"),
        (["--reuse-port", "--port", "unix:/tmp/chat.sock"], "--reuse-port works with a tcp port"),
    ],
)
def test_linked_relay_options_explain_their_mistakes(args, says):
    with pytest.raises(usage.UsageError, match=re.escape(says)):
        parse(*args)


def test_redis_url_from_the_environment_with_password_and_database(monkeypatch):
    from chatsvc.redislink import parse_url

    monkeypatch.setenv("CHATSVC_TEST_REDIS", "rediss://chat:p%40ss@redis.example:6380/3")
    config = parse("--redis", "env:CHATSVC_TEST_REDIS", "--reuse-port")
    assert parse_url(config["redis"]) == {
        "host": "redis.example", "port": 6380, "dbid": 3, "password": "p@ss", "username": "chat", "tls": True,
    }


def test_twistd_chat_version_is_chatsvcs(tmp_path):
    from chatsvc import __version__

    out = subprocess.run([*TWISTD, "chat", "--version"], cwd=tmp_path, env=subprocess_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.startswith(f"chatsvc {__version__} (Twisted ")
