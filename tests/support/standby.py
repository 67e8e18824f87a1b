"""A real PostgreSQL hot standby: a throwaway primary and a standby streaming from it.

Two tiny clusters made with the server binaries that run the test database (Debian's
``postgresql`` package puts them under /usr/lib/postgresql/VERSION/bin), on free ports,
in a temporary directory, owned by the ``postgres`` user when the tests run as root
(the server refuses to run as root). Without the binaries the tests that need it skip,
unless ``ROCKET_STANDBY=required`` (CI) makes them fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.smtp import free_port


def bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Standby:
    """A primary on ``primary_port`` and a hot standby of it on ``port``."""

    def __init__(self) -> None:
        bins = bindir()
        if bins is None:
            if os.environ.get("ROCKET_STANDBY") == "required":
                pytest.fail("ROCKET_STANDBY=required but no PostgreSQL server binaries")
            pytest.skip("PostgreSQL's server binaries are not installed")
        self.bins = bins
        self.user = "postgres" if os.geteuid() == 0 else None
        self.workdir = Path(tempfile.mkdtemp(prefix="rocket-standby-"))
        self.workdir.chmod(0o755)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
        self.primary_port, self.port = free_port(), free_port()
        self.primary, self.standby = self.workdir / "primary", self.workdir / "standby"
        self.started: list[Path] = []
        try:
            self._run("initdb", "-D", str(self.primary), "-U", "postgres", "--auth=trust")
            self._configure(self.primary, self.primary_port)
            with (self.primary / "pg_hba.conf").open("a") as hba:
                hba.write("host replication all 127.0.0.1/32 trust\n")
            self._start(self.primary)
            self._run(
                "pg_basebackup",
                *("-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres"),
                *("-D", str(self.standby), "-R", "-X", "stream"),
            )
            self._configure(self.standby, self.port)
            self._start(self.standby)
            self._wait_for_recovery()
        except BaseException:
            self.stop()
            raise

    def params(self, port: int) -> dict:
        """psycopg connection parameters for the ``postgres`` database on ``port``."""
        return {"host": "127.0.0.1", "port": port, "user": "postgres", "dbname": "postgres"}

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(self.bins / program), *args],
            check=True,
            capture_output=True,
            user=self.user,
            cwd=self.workdir,
        )

    def _configure(self, data: Path, port: int) -> None:
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.workdir}'\n"
                "wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n"
                "shared_buffers = 16MB\nfsync = off\n"
            )

    def _start(self, data: Path) -> None:
        self._run("pg_ctl", "-D", str(data), "-l", str(data / "server.log"), "-w", "start")
        self.started.append(data)

    def _wait_for_recovery(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(**self.params(self.port), connect_timeout=2) as conn:
                    if conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,):
                        return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise RuntimeError("the standby did not come up in recovery within 30 s")
            time.sleep(0.1)

    def stop(self) -> None:
        for data in reversed(self.started):
            try:
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
            except subprocess.CalledProcessError:
                pass
        self.started.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
