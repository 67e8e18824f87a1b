"""A real PgBouncer in transaction pooling mode in front of the test PostgreSQL server.

Debian's ``pgbouncer`` package provides the binary (``.ci/run`` installs it). Without it
the tests that need it skip, unless ``ROCKET_PGBOUNCER=required`` (CI) makes them fail.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.smtp import free_port

CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {auth_file}
pool_mode = transaction
max_client_conn = 200
default_pool_size = 10
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
"""


def binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("no unprivileged user (postgres, nobody) to run pgbouncer as")


class PgBouncer:
    """``pgbouncer`` on a free port, pooling each transaction to ``host:port``."""

    def __init__(self, host: str, port: int, user: str) -> None:
        path = binary()
        if path is None:
            if os.environ.get("ROCKET_PGBOUNCER") == "required":
                pytest.fail("ROCKET_PGBOUNCER=required but no pgbouncer binary is installed")
            pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
        self.port = free_port()
        # Not pytest's tmp_path: its parents are private, and pgbouncer drops root.
        self.workdir = workdir = Path(tempfile.mkdtemp(prefix="rocket-pgbouncer-"))
        workdir.chmod(0o755)
        auth = workdir / "users.txt"
        auth.write_text(f'"{user}" ""\n')
        ini = workdir / "pgbouncer.ini"
        ini.write_text(CONFIG.format(host=host, port=port, listen_port=self.port, auth_file=auth))
        args = [path, str(ini)]
        if os.geteuid() == 0:  # it refuses to run as root
            args[1:1] = ["-u", _unprivileged_user()]
            for item in (auth, ini):
                item.chmod(0o644)
        # A file, not a pipe: it logs every login, and a pipe nobody reads would fill up.
        self._log = open(workdir / "pgbouncer.log", "w+")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        output = self.output()
        self.stop()
        raise RuntimeError(f"pgbouncer did not start: {output}")

    def output(self) -> str:
        self._log.flush()
        return (self.workdir / "pgbouncer.log").read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
