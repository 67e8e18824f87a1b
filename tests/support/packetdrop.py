"""Drop every TCP packet to or from one local port: a partition the kernel does not hide.

The test proxy's ``pause()`` holds bytes, but the kernel still acknowledges them, so no
TCP timeout ever fires behind it. Dropping packets in netfilter (``nft``, root) is what a
lost route or a failover that moved the server's address does: data sent goes
unacknowledged, and a client that waits for an answer hears nothing, keep-alive probes
included. Only the given port (a test proxy's) is touched: the server and every other
client of it carry on.

Without ``nft`` or root the tests that need it skip, unless ``ROCKET_NFT=required`` (CI)
makes them fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest


def refusal() -> str:
    """Why this process cannot drop packets here; "" if it can."""
    if shutil.which("nft") is None:
        return "nft is not installed (apt-get install nftables)"
    if os.geteuid() != 0:
        return "dropping packets with nft needs root"
    probe = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"nft cannot change this host's rules: {probe.stderr.strip()}"
    return ""


def available() -> None:
    """Skip (or fail, with ROCKET_NFT=required) unless this process can drop packets."""
    reason = refusal()
    if reason:
        if os.environ.get("ROCKET_NFT") == "required":
            pytest.fail(f"ROCKET_NFT=required but {reason}")
        pytest.skip(reason)


PREFIX = "rocket_test_drop_"


def _tables() -> list[str]:
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return [line.split()[-1] for line in listed.stdout.splitlines() if PREFIX in line]


def _alive(pid: int) -> bool:
    # As django_rocket.engine.leadership.pid_alive, which cannot be imported here:
    # bench/soak.py imports this module without Django set up, and leadership imports models.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans() -> list[str]:
    """Delete the tables of test processes that died inside :func:`dropping`; return them.

    A left table would go on dropping its port, and a port is reused: later as the source
    port of an unrelated client's connection, which would then hang.
    """
    removed = []
    for table in _tables():
        pid = table.removeprefix(PREFIX).split("_")[0]
        if pid.isdigit() and not _alive(int(pid)):
            subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
            removed.append(table)
    return removed


@contextlib.contextmanager
def dropping(port: int) -> Iterator[None]:
    """While inside, every TCP packet to or from ``port`` is dropped, silently, both ways."""
    remove_orphans()
    table = f"{PREFIX}{os.getpid()}_{port}"
    rules = (
        f"table inet {table} {{\n"
        "  chain output {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    tcp dport {port} drop\n"
        f"    tcp sport {port} drop\n"
        "  }\n"
        "}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=True, capture_output=True)
