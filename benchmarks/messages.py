"""
What a chat message costs the terminal client's cipher: encrypt and open
one aes3 room message (signed, 100 characters), in an ordinary room and in
a sealed room, and -- as the baseline of the same run -- with the cipher of
another revision (default: the commit before sealed rooms) in an ordinary
room.  Run by hand:

    python benchmarks/messages.py [--count 5000] [--baseline REV]

Results go in docs/performance.md with the date.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatsvc.client import aesgcm, sealed  # noqa: E402
from chatsvc.client.ciphers import Context  # noqa: E402
from chatsvc.client.identity import Identity  # noqa: E402

TEXT = "x" * 100


def old_module(rev: str):
    """aesgcm.py as it was at ``rev``, loaded beside today's."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:chatsvc/client/aesgcm.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "aesgcm_then.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("aesgcm_then", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["aesgcm_then"] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def pair(module, sealed_master: bytes | None):
    master = os.urandom(32)
    made = []
    for _ in range(2):
        cipher = module.AesGcmCipher(master, identity=Identity.generate(), max_age=1e9)
        cipher.use_v2(master, "salt-for-the-benchmark")
        if sealed_master is not None:
            cipher.room_master = lambda room: sealed_master
        made.append(cipher)
    return made


def per_message(module, count: int, sealed_master: bytes | None = None) -> float:
    alice, bob = pair(module, sealed_master)
    context = Context(target="#ops", sender="alice")
    payloads = [alice.encrypt(TEXT, context) for _ in range(100)]  # warm the key caches
    start = time.perf_counter()
    for _ in range(count):
        payload = alice.encrypt(TEXT, context)
        bob.open(payload, context)
    del payloads
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--baseline", default="9c5bcdb", help="the revision whose cipher is the baseline")
    args = parser.parse_args()
    then = old_module(args.baseline)
    master = sealed.room_master(os.urandom(32), "#ops", 1)
    for _ in range(2):  # twice, interleaved: a shared machine is noisy
        print(f"baseline ({args.baseline}), ordinary room: {per_message(then, args.count):7.1f} µs per message")
        print(f"now, ordinary room:                {per_message(aesgcm, args.count):7.1f} µs per message")
        print(f"now, sealed room:                  {per_message(aesgcm, args.count, master):7.1f} µs per message")


if __name__ == "__main__":
    main()
