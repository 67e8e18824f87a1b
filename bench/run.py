"""django-rocket side by side with Rocketry and django-apscheduler: one command, one table.

Run from the repository root (``make bench`` does the same)::

    .venv/bin/python bench/run.py                 # every workload, 3 repetitions (~25 min)
    .venv/bin/python bench/run.py --quick         # a smoke version (~2 min)
    .venv/bin/python bench/run.py --workloads W1,W4 --systems rocket-sqlite,rocketry-sql
    .venv/bin/python bench/run.py --workloads W1,W4 --baseline e0f12e8   # before / after
    .venv/bin/python bench/run.py --workloads W5 --w5-n 100000 --reps 1  # runtime tasks

The peers are installed on first use into their own virtualenvs under
``~/.cache/django-rocket-bench/`` (``--cache-dir``) from PyPI; nothing of theirs
is in this repository. Every measured scheduler runs as its own subprocess; this
process samples its CPU (user+sys of the process tree, from /proc) and peak RSS,
and each driver reads its run log after the scheduler stopped. bench/README.md
explains the workloads and what "due" and "lateness" mean for each system; the
table goes to stdout and to the top of bench/RESULTS.md (``--no-record`` skips that).
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DRIVERS = BENCH / "drivers"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
# MariaDB (or MySQL) as the test suite reaches it: root without a password, over TCP.
MARIADB_SERVER = {"host": "127.0.0.1", "port": 3306, "user": "root"}
PEERS = {
    "rocketry": ["rocketry==2.5.1", "pydantic<2", "sqlalchemy<2"],
    "apscheduler": ["django-apscheduler==0.7.0", "Django>=5.2,<6", "psycopg[binary]>=3.1"],
}


class System(NamedTuple):
    """One measured system: which venv runs which driver on which database."""

    venv: str
    driver: Path
    engine: str
    label: str
    # The django-rocket checkout a baseline system runs; None: this working tree.
    tree: Path | None = None


SYSTEMS = {
    "rocket-sqlite": System("self", DRIVERS / "rocket.py", "sqlite", "django-rocket, SQLite WAL"),
    "rocket-pg": System("self", DRIVERS / "rocket.py", "pg", "django-rocket, PostgreSQL"),
    "rocket-mariadb": System("self", DRIVERS / "rocket.py", "mariadb", "django-rocket, MariaDB"),
    "rocketry-sql": System(
        "rocketry", DRIVERS / "rocketry_driver.py", "sqlite", "Rocketry 2.5.1, SQLRepo/SQLite"
    ),
    "rocketry-mem": System(
        "rocketry", DRIVERS / "rocketry_driver.py", "memory", "Rocketry 2.5.1, MemoryRepo"
    ),
    "aps-sqlite": System(
        "apscheduler", DRIVERS / "aps_driver.py", "sqlite", "django-apscheduler, SQLite WAL"
    ),
    "aps-pg": System(
        "apscheduler", DRIVERS / "aps_driver.py", "pg", "django-apscheduler, PostgreSQL"
    ),
    "raw-sqlite": System(
        "self", DRIVERS / "raw_insert.py", "sqlite", "raw INSERT+COMMIT, SQLite WAL"
    ),
    "raw-pg": System("self", DRIVERS / "raw_insert.py", "pg", "raw INSERT+COMMIT, PostgreSQL"),
    "raw-mariadb": System(
        "self", DRIVERS / "raw_insert.py", "mariadb", "raw INSERT+COMMIT, MariaDB"
    ),
}
PEERS_W1 = ["rocketry-sql", "rocketry-mem", "aps-sqlite", "aps-pg"]
BASE = "@base"  # suffix of the systems that run the --baseline checkout
# Which systems take part in each workload (W3 needs history-reading conditions; W4's raw
# rows are the physical limit).
WORKLOAD_SYSTEMS = {
    "W1": ["rocket-sqlite", "rocket-pg", "rocket-mariadb", *PEERS_W1],
    "W2": ["rocket-sqlite", "rocket-pg", "rocket-mariadb", *PEERS_W1],
    "W3": ["rocket-sqlite", "rocket-pg", "rocket-mariadb", "rocketry-sql"],
    "W4": [
        "raw-sqlite",
        "raw-pg",
        "raw-mariadb",
        "rocket-sqlite",
        "rocket-pg",
        "rocket-mariadb",
        "rocketry-sql",
        "rocketry-mem",
        "aps-sqlite",
        "aps-pg",
    ],
    "W5": ["rocket-sqlite", "rocket-pg"],  # runtime tasks: no peer has schedule()
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- processes


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def tree(root: int) -> list[int]:
    """The process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(root: int) -> tuple[float, float]:
    """(user+sys of the tree from /proc/PID/stat in clock ticks, including reaped children;
    the same from the per-thread scheduler statistics in nanoseconds, live threads only)."""
    ticks = 0.0
    precise = 0.0
    for pid in tree(root):
        fields = _stat(pid)
        if not fields:
            continue
        ticks += sum(int(x) for x in fields[11:15]) / CLK_TCK
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                    precise += int(fh.read().split()[0]) / 1e9
        except (FileNotFoundError, ProcessLookupError):
            pass
        precise += sum(int(x) for x in fields[13:15]) / CLK_TCK
    return ticks, precise


def peak_rss_mb(root: int) -> float:
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1024


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (/proc/stat).

    Busy is user, nice, system, irq and softirq: the scheduler, its database server and
    anything else. Over a window, divided by its length, it says how many cores were in
    use: beside the scheduler's own share, what the database server used.
    """
    with open("/proc/stat") as fh:
        fields = fh.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / CLK_TCK


@dataclass
class Sample:
    at: float
    ticks: float
    precise: float
    machine: float = 0.0


def cpu_between(a: Sample, b: Sample) -> float:
    # Per-thread statistics are exact but forget threads that ended; clock ticks remember
    # them but round to 10 ms. The larger of the two is the better estimate.
    return max(b.ticks - a.ticks, b.precise - a.precise)


@dataclass
class Measured:
    launch: float
    events: dict[str, float] = field(default_factory=dict)
    samples: dict[str, Sample] = field(default_factory=dict)
    rss_mb: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    returncode: int = 0
    stderr: str = ""


def python_of(venv: str, cache: Path) -> str:
    if venv == "self":
        return sys.executable
    return str(cache / venv / "bin" / "python")


# Every system starts from compiled bytecode, as a deployed project does: pip compiled the
# peers' at install time, and compile_tree() does it for this working tree and a baseline
# checkout. A machine-wide PYTHONDONTWRITEBYTECODE would otherwise make django-rocket alone
# recompile every module at each start, which W2's start-up and W3's first decision would
# measure.
DRIVER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def compile_tree(root: Path) -> None:
    """Compile a django-rocket checkout's package and bench drivers to bytecode."""
    for package in (root / "django_rocket", root / "bench" / "drivers"):
        if package.is_dir():
            compileall.compile_dir(str(package), quiet=1)


def drive(
    system: System,
    cfg: dict,
    work: Path,
    cache: Path,
    *,
    warmup: float = 0.0,
    timeout: float = 600,
) -> Measured:
    """Run one driver; sample CPU at READY (+warmup) and at STOPPING; return what it saw."""
    driver = system.driver.name
    env = DRIVER_ENV
    if system.tree is not None:
        # Read by this tree's drivers/rocket.py when it drives a baseline that has none.
        env = {**DRIVER_ENV, "ROCKET_BENCH_TREE": str(system.tree)}
    cfg = dict(cfg)
    cfg["out"] = str(work / f"result-{time.monotonic_ns()}.json")
    cfg_path = work / f"cfg-{time.monotonic_ns()}.json"
    cfg_path.write_text(json.dumps(cfg))
    err_path = work / f"stderr-{time.monotonic_ns()}.txt"
    with open(err_path, "w") as err:
        launch = time.time()
        proc = subprocess.Popen(
            [python_of(system.venv, cache), str(system.driver), str(cfg_path)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=str(work),
            env=env,
        )
    m = Measured(launch=launch)

    def sample(name: str) -> None:
        ticks, precise = cpu_seconds(proc.pid)
        m.samples[name] = Sample(time.time(), ticks, precise, machine_busy_seconds())

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("READY", "STOPPING", "STOPPED"):
                m.events[parts[0]] = float(parts[1])
                if parts[0] == "READY":
                    if warmup:
                        threading.Timer(warmup, sample, ("start",)).start()
                    else:
                        sample("start")
                elif parts[0] == "STOPPING":
                    sample("stop")
                    m.rss_mb = peak_rss_mb(proc.pid)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    thread.join(timeout=10)
    m.returncode = proc.returncode
    m.stderr = err_path.read_text()[-3000:]
    out = Path(cfg["out"])
    if out.exists():
        m.result = json.loads(out.read_text())
    elif cfg.get("mode", "run") == "run" or proc.returncode:
        raise RuntimeError(f"{driver} {cfg.get('mode')} failed ({proc.returncode}):\n{m.stderr}")
    return m


# ----------------------------------------------------------------------------- databases


def pg(sql: str, dbname: str = "postgres") -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/{dbname}", autocommit=True) as con:
        con.execute(sql)


def pg_available() -> bool:
    try:
        pg("SELECT 1")
        return True
    except Exception:
        return False


def mariadb(sql: str, *args: Any) -> list[tuple]:
    """Run one statement on the MariaDB server (autocommit); return its rows."""
    import MySQLdb

    con = MySQLdb.connect(**MARIADB_SERVER, charset="utf8mb4", autocommit=True)
    try:
        cur = con.cursor()
        cur.execute(sql, args or None)
        return list(cur.fetchall())
    finally:
        con.close()


def mariadb_missing() -> str | None:
    """Why the MariaDB rows cannot run (no mysqlclient, no server), or None."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        return "mysqlclient is not installed (.venv/bin/pip install --group mysql)"
    try:
        mariadb("SELECT 1")
    except Exception as exc:
        where = f"{MARIADB_SERVER['host']}:{MARIADB_SERVER['port']}"
        return f"MariaDB is not reachable at {where} as {MARIADB_SERVER['user']} ({exc})"
    return None


def mariadb_clone(template: str, name: str) -> None:
    """A copy of a migrated MariaDB database (which has no CREATE DATABASE ... TEMPLATE).

    Each table as SHOW CREATE TABLE gives it (keys, foreign keys and generated columns
    included; foreign-key checks off while they are created in any order), then its rows,
    generated columns left out.
    """
    import MySQLdb

    con = MySQLdb.connect(**MARIADB_SERVER, charset="utf8mb4", autocommit=True)
    try:
        cur = con.cursor()
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_type = 'BASE TABLE'",
            (template,),
        )
        tables = [row[0] for row in cur.fetchall()]
        cur.execute(f"USE `{name}`")
        cur.execute("SET foreign_key_checks = 0")
        for table in tables:
            cur.execute(f"SHOW CREATE TABLE `{template}`.`{table}`")
            cur.execute(cur.fetchone()[1])
        for table in tables:
            cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s AND is_generated = 'NEVER' ORDER BY ordinal_position",
                (template, table),
            )
            columns = ", ".join(f"`{row[0]}`" for row in cur.fetchall())
            cur.execute(
                f"INSERT INTO `{table}` ({columns}) SELECT {columns} FROM `{template}`.`{table}`"
            )
    finally:
        con.close()


class Databases:
    """Throwaway databases: a migrated template per schema, copied for each repetition."""

    def __init__(self, work: Path, cache: Path) -> None:
        self.work = work
        self.cache = cache
        self.templates: dict[tuple[str, str], Any] = {}
        self.pg_names: list[str] = []
        self.mariadb_names: list[str] = []
        self.tag = f"{os.getpid()}"
        self.w3: dict[tuple[str, int], dict] = {}

    def _template(self, system: str) -> Any:
        """The system's schema, migrated once (a baseline by its own migrations)."""
        # The raw rows go into django-rocket's table, migrated by this tree.
        migrator = SYSTEMS[system.replace("raw-", "rocket-")]
        schema = product_of(system) + ("_base" if migrator.tree else "")
        key = (schema, migrator.engine)
        if key in self.templates:
            return self.templates[key]
        if migrator.engine == "sqlite":
            db = {"engine": "sqlite", "path": str(self.work / f"tmpl-{schema}.sqlite3")}
        elif migrator.engine == "mariadb":
            name = f"rocketbench_{schema}_tmpl_{self.tag}"
            mariadb(f"DROP DATABASE IF EXISTS `{name}`")
            # utf8mb4, as docs/installation.rst asks of a MariaDB database.
            mariadb(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            self.mariadb_names.append(name)
            db = {"engine": "mariadb", "name": name}
        else:
            name = f"rocketbench_{schema}_tmpl_{self.tag}"
            pg(f'DROP DATABASE IF EXISTS "{name}"')
            pg(f'CREATE DATABASE "{name}"')
            self.pg_names.append(name)
            db = {"engine": "pg", "name": name}
        drive(migrator, {"mode": "migrate", "db": db}, self.work, self.cache)
        self.templates[key] = db
        return db

    def fresh(self, system: str, label: str) -> dict:
        """A new database for one repetition: a copy of the migrated template."""
        product, engine = product_of(system), SYSTEMS[system].engine
        label = label.replace("@", "-")
        if product == "rocketry":
            if engine == "memory":
                return {"engine": "memory"}
            path = self.work / f"{label}.sqlite3"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return {"engine": "sqlite", "path": str(path)}
        template = self._template(system)
        if engine == "sqlite":
            path = self.work / f"{label}.sqlite3"
            for suffix in ("-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(template["path"], path)
            return {"engine": "sqlite", "path": str(path)}
        name = f"rocketbench_{label}_{self.tag}".replace("-", "_").lower()
        if engine == "mariadb":
            mariadb(f"DROP DATABASE IF EXISTS `{name}`")
            if name not in self.mariadb_names:
                self.mariadb_names.append(name)
            mariadb_clone(template["name"], name)
            return {"engine": "mariadb", "name": name}
        pg(f'DROP DATABASE IF EXISTS "{name}"')
        pg(f'CREATE DATABASE "{name}" TEMPLATE "{template["name"]}"')
        if name not in self.pg_names:
            self.pg_names.append(name)
        return {"engine": "pg", "name": name}

    def drop(self, db: dict) -> None:
        if db["engine"] == "pg":
            pg(f'DROP DATABASE IF EXISTS "{db["name"]}" WITH (FORCE)')
            self.pg_names.remove(db["name"]) if db["name"] in self.pg_names else None
        elif db["engine"] == "mariadb":
            mariadb(f"DROP DATABASE IF EXISTS `{db['name']}`")
            if db["name"] in self.mariadb_names:
                self.mariadb_names.remove(db["name"])
        elif db["engine"] == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db['path']}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        for name in list(self.pg_names):
            try:
                pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:
                print(f"could not drop {name}: {exc}", file=sys.stderr)
        for name in list(self.mariadb_names):
            try:
                mariadb(f"DROP DATABASE IF EXISTS `{name}`")
            except Exception as exc:
                print(f"could not drop {name}: {exc}", file=sys.stderr)


def product_of(system: str) -> str:
    """What a system runs: rocket (also raw and baseline rows), rocketry or aps."""
    return {"rocket": "rocket", "raw": "rocket", "rocketry": "rocketry", "aps": "aps"}[
        system.split("-")[0]
    ]


# ----------------------------------------------------------------------------- peers


def ensure_peers(cache: Path, wanted: set[str]) -> dict[str, str]:
    """Create each peer's venv once (a marker records what was installed); return versions."""
    versions = {}
    for venv, reqs in PEERS.items():
        if venv not in wanted:
            continue
        target = cache / venv
        marker = target / ".bench-installed"
        if not marker.exists() or marker.read_text() != json.dumps(reqs):
            print(f"Installing {venv} into {target} ...", flush=True)
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
            subprocess.run(
                [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", *reqs],
                check=True,
            )
            marker.write_text(json.dumps(reqs))
        out = subprocess.run(
            [str(target / "bin" / "python"), "-m", "pip", "list", "--format=json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        names = {"rocketry", "redbird", "sqlalchemy", "pydantic", "django-apscheduler"}
        names |= {"apscheduler", "django", "psycopg"}
        for pkg in json.loads(out):
            if pkg["name"].lower() in names:
                versions[f"{venv}:{pkg['name']}"] = pkg["version"]
    return versions


# ----------------------------------------------------------------------------- baseline


@dataclass
class Baseline:
    """A commit of this repository checked out beside it, measured in the same run."""

    short: str
    subject: str
    tree: Path


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def resolve_commit(ref: str) -> str | None:
    try:
        return git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        return None


def checkout_baseline(commit: str, cache: Path) -> Baseline:
    """Check a commit out into a temporary git worktree under the cache; add its @base systems."""
    short = git("rev-parse", "--short", commit)
    tree = Path(tempfile.mkdtemp(prefix=f"baseline-{short}-", dir=cache))
    git("worktree", "add", "--detach", "--quiet", str(tree), commit)
    baseline = Baseline(short, git("log", "-1", "--format=%s", commit), tree)
    try:
        compile_tree(tree)
    except BaseException:
        remove_baseline(baseline)
        raise
    # The baseline's own driver imports its modules from where they were at that commit;
    # a commit older than bench/ is driven by this tree's driver (ROCKET_BENCH_TREE).
    own = tree / "bench" / "drivers" / "rocket.py"
    driver = own if own.exists() else DRIVERS / "rocket.py"
    # A driver from before MariaDB was benchmarked: this tree's drives its MariaDB row.
    mariadb_driver = driver if "mariadb" in driver.read_text() else DRIVERS / "rocket.py"
    head = git("describe", "--always", "--dirty")
    for name in ("rocket-sqlite", "rocket-pg", "rocket-mariadb"):
        ours = SYSTEMS[name]
        before = ours.label.replace("django-rocket", f"django-rocket {short} (before)")
        own_driver = mariadb_driver if ours.engine == "mariadb" else driver
        SYSTEMS[name + BASE] = ours._replace(driver=own_driver, label=before, tree=tree)
        after = ours.label.replace("django-rocket", f"django-rocket {head} (after)")
        SYSTEMS[name] = ours._replace(label=after)
    return baseline


def remove_baseline(baseline: Baseline) -> None:
    git("worktree", "remove", "--force", str(baseline.tree))
    shutil.rmtree(baseline.tree, ignore_errors=True)


def with_baseline(systems: list[str], rep: int) -> list[str]:
    """Each django-rocket system beside its baseline twin, the pair's order alternating."""
    out: list[str] = []
    for system in systems:
        pair = [system, system + BASE] if system + BASE in SYSTEMS else [system]
        out += pair if rep % 2 == 0 else pair[::-1]
    return out


# ----------------------------------------------------------------------------- workloads


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(round(q * (len(values) - 1)), len(values) - 1)
    return values[k]


def conditions(workload: str, system: str, hour: int) -> tuple[str, float | None]:
    product = product_of(system)
    if workload == "W1":
        return {
            "rocket": ("every('1 second')", 1.0),
            "rocketry": ("every:1 second", 1.0),
            "aps": ("every:1", None),
        }[product]
    if workload == "W2":
        at = f"{hour:02d}:00"
        texts = {
            "rocket": f"daily.at('{at}')",
            "rocketry": f"daily_at:{at}",
            "aps": f"daily_at:{at}",
        }
        return texts[product], None
    if workload == "W3":
        return {"rocket": "daily | retry(3)", "rocketry": "daily|retry(3)"}[product], None
    return {"rocket": "true", "rocketry": "true", "aps": "every:0.01"}[product], None


@dataclass
class Plan:
    reps: int
    w1_n: list[int]
    w1_seconds: float
    w2_n: list[int]
    w2_seconds: float
    w2_warmup: float
    w3_rows: list[int]
    w3_seconds: float
    w4_n: int
    w4_seconds: float
    w5_n: list[int] = field(default_factory=lambda: [100_000])
    w5_idle: float = 20.0  # seconds of idle CPU measured
    w5_burst: float = 5.0  # seconds of schedule() calls
    w5_writers: int = 1  # processes calling schedule()


FULL = Plan(3, [100, 1000], 10, [1000, 10000], 8, 2, [0, 100_000, 1_000_000], 20, 100, 6)
QUICK = Plan(1, [100], 4, [1000], 4, 1, [0, 10_000], 3, 100, 3, [10_000], 5.0, 3.0)


def one_run(
    workload: str, system: str, param: int, plan: Plan, dbs: Databases, cache: Path, hour: int
) -> dict[str, float]:
    """One repetition of one workload on one system; returns its metrics."""
    if workload == "W5":
        return run_w5(system, param, plan, cache)
    product = product_of(system)
    label = f"{workload}-{system}-{param}"
    cond, interval = conditions(workload, system, hour)
    seconds = {"W1": plan.w1_seconds, "W2": plan.w2_seconds, "W3": plan.w3_seconds}.get(
        workload, plan.w4_seconds
    )
    n = {"W1": param, "W2": param, "W3": 100, "W4": plan.w4_n}[workload]
    tasks = {"n": n, "cond": cond, "prefix": f"{workload.lower()}-", "execution": "thread"}
    cfg = {"mode": "run", "tasks": tasks, "seconds": seconds, "interval": interval}
    spec = SYSTEMS[system]
    if workload == "W3":
        db = dbs.w3[(system, param)]
        cfg["db"] = db
        since = time.time()
        m = drive(spec, cfg, dbs.work, cache, timeout=900)
        reset = {"mode": "reset", "db": db, "tasks": tasks, "since": since}
        drive(spec, reset, dbs.work, cache)
    else:
        db = dbs.fresh(system, label)
        cfg["db"] = db
        m = drive(spec, cfg, dbs.work, cache, warmup=plan.w2_warmup if workload == "W2" else 0)
        dbs.drop(db)
    if m.returncode not in (0, None):
        print(f"  ! {label} exited {m.returncode}: {m.stderr[-500:]}", file=sys.stderr)
    ready, stop = m.events.get("READY", m.launch), m.events.get("STOPPING", time.time())
    window = max(stop - ready, 1e-9)
    cpu = cpu_between(m.samples["start"], m.samples["stop"]) if len(m.samples) == 2 else 0.0
    out: dict[str, float] = {"rss_mb": m.rss_mb, "startup_s": ready - m.launch}
    if system.startswith("raw"):
        r = m.result
        out["runs_s"] = r["inserted"] / r["elapsed"]
        if r.get("batched"):  # rows/s in 1,000-row transactions; a run writes two rows
            out["limit_runs_s"] = r["batched"] / r["batched_elapsed"] / 2
        if r.get("batched_v4"):  # the same with random ids, as before December 2026
            out["limit_v4_runs_s"] = r["batched_v4"] / r["batched_v4_elapsed"] / 2
        if r.get("recorded"):  # W4's runs recorded with no scheduling, 100 a transaction
            out["record_runs_s"] = r["recorded"] / r["recorded_elapsed"]
        if r.get("floor"):  # the same, each run's function called in a worker thread
            out["floor_runs_s"] = r["floor"] / r["floor_elapsed"]
        return out
    runs = [tuple(r) for r in m.result.get("runs", [])]
    # Whole seconds, half open: a task on every('1 second') starts exactly once in each
    # second of it, whatever its phase. The closed window [READY, STOPPING], a few
    # milliseconds over 10 s, also took the 11th start of every task whose slots fell at
    # its ends: W1 at N = 10,000 showed 10,476-10,571 runs/s for 10,000 tasks.
    span = float(math.floor(window)) if window >= 1 else window
    in_window = [r for r in runs if ready <= r[0] < ready + span]
    if workload in ("W1", "W4"):
        out["runs_s"] = len(in_window) / span
        # The CPU was sampled over the whole window: its share of the counted span.
        out["cpu_ms_run"] = 1000 * cpu * (span / window) / max(len(in_window), 1)
        if len(m.samples) == 2:
            # Cores in use: the scheduler's (its process tree), and the whole machine's,
            # which adds the database server's. Their sum far below the core count means
            # that the two took turns (bench/README.md).
            a, b = m.samples["start"], m.samples["stop"]
            span = max(b.at - a.at, 1e-9)
            out["own_cores"] = cpu / span
            out["machine_cores"] = (b.machine - a.machine) / span
        late = [1000 * (s - d) for s, d in in_window if d is not None]
        out["late_p50"] = percentile(late, 0.5)
        out["late_p99"] = percentile(late, 0.99)
        out["late_max"] = max(late) if late else float("nan")
    if workload == "W2":
        span = m.samples["stop"].at - m.samples["start"].at
        out["cpu_pct"] = 100 * cpu / span
    if workload == "W3":
        first = min((r[0] for r in runs), default=float("nan"))
        out["first_decision_s"] = first - m.launch
        ticks = m.result.get("tick_cpu", [])
        out["ticks"] = len(ticks)
        out["first_tick_ms"] = 1000 * max(ticks[:3], default=float("nan"))
        steady = ticks[3:] if product == "rocket" else ticks
        out["tick_ms"] = 1000 * statistics.median(steady) if steady else float("nan")
    return out


def run_w5(system: str, n: int, plan: Plan, cache: Path) -> dict[str, float]:
    """W5: bench/w5_runtime_tasks.py, from this tree or the baseline's (if it has one)."""
    spec = SYSTEMS[system]
    script = (spec.tree or ROOT) / "bench" / "w5_runtime_tasks.py"
    if not script.exists():
        return {}
    command = [python_of("self", cache), str(script), "--db", spec.engine, "--tasks", str(n)]
    command += ["--idle", f"{plan.w5_idle:g}", "--burst", f"{plan.w5_burst:g}"]
    if plan.w5_writers != 1:
        command += ["--writers", str(plan.w5_writers)]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=1800, env=DRIVER_ENV, cwd=str(ROOT)
    )
    steps = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            step = json.loads(line)
            steps[step["step"]] = step
    if proc.returncode != 0:
        failed = f"  ! W5-{system}-{n} exited {proc.returncode}: {proc.stderr[-500:]}"
        print(failed, file=sys.stderr)
    out: dict[str, float] = {}
    pairs = [
        ("startup", "seconds", "startup_s"),
        ("startup", "cpu_s", "startup_cpu_s"),
        ("startup", "rss_mb", "rss_mb"),
        ("quiet_tick", "cpu_ms", "tick_ms"),
        ("idle", "cpu_percent", "cpu_pct"),
        ("pickup", "rate_per_s", "schedule_s"),
        ("pickup", "cpu_ms_call", "schedule_cpu_ms"),
        ("pickup", "p99_s", "pickup_p99_s"),
        ("pickup", "max_s", "pickup_max_s"),
        ("pickup", "missing", "missing"),
    ]
    for step, key, metric in pairs:
        value = steps.get(step, {}).get(key)
        out[metric] = float("nan") if value is None else float(value)
    admin = steps.get("admin", {}).get("last", {})
    out["admin_ms"] = float(admin.get("ms", float("nan")))
    out["admin_queries"] = float(admin.get("queries", float("nan")))
    return out


def prepare_w3(plan: Plan, systems: list[str], dbs: Databases, cache: Path) -> None:
    """Build each W3 database once: the template copy plus ``rows`` runs in the log."""
    dbs.w3 = {}
    for system in systems:
        for rows in plan.w3_rows:
            label = f"w3-{system}-{rows}"
            db = dbs.fresh(system, label)
            tasks = {
                "n": 100,
                "cond": conditions("W3", system, 0)[0],
                "prefix": "w3-",
                "execution": "thread",
            }
            t = time.time()
            drive(
                SYSTEMS[system],
                {"mode": "prefill", "db": db, "rows": rows, "tasks": tasks},
                dbs.work,
                cache,
                timeout=1800,
            )
            print(f"  prefilled {label}: {rows:,} rows in {time.time() - t:.1f}s", flush=True)
            dbs.w3[(system, rows)] = db


# ----------------------------------------------------------------------------- reporting

COLUMNS = {
    "W1": [
        ("runs_s", "runs/s", "{:.0f}"),
        ("late_p50", "late p50 ms", "{:.1f}"),
        ("late_p99", "late p99 ms", "{:.1f}"),
        ("late_max", "late max ms", "{:.0f}"),
        ("cpu_ms_run", "CPU ms/run", "{:.3f}"),
        ("own_cores", "its cores", "{:.2f}"),
        ("machine_cores", "machine cores", "{:.2f}"),
        ("rss_mb", "peak RSS MB", "{:.0f}"),
    ],
    "W2": [
        ("cpu_pct", "CPU % of a core", "{:.2f}"),
        ("rss_mb", "peak RSS MB", "{:.0f}"),
        ("startup_s", "start-up s", "{:.1f}"),
    ],
    "W3": [
        ("first_decision_s", "1st decision s", "{:.2f}"),
        ("first_tick_ms", "1st tick CPU ms", "{:.1f}"),
        ("tick_ms", "tick CPU ms", "{:.2f}"),
        ("rss_mb", "peak RSS MB", "{:.0f}"),
    ],
    "W4": [
        ("runs_s", "runs/s", "{:.0f}"),
        ("cpu_ms_run", "CPU ms/run", "{:.3f}"),
        ("own_cores", "its cores", "{:.2f}"),
        ("machine_cores", "machine cores", "{:.2f}"),
        ("rss_mb", "peak RSS MB", "{:.0f}"),
    ],
    "W5": [
        ("startup_s", "start-up s", "{:.2f}"),
        ("startup_cpu_s", "start-up CPU s", "{:.2f}"),
        ("rss_mb", "RSS MB", "{:.0f}"),
        ("tick_ms", "quiet tick CPU ms", "{:.2f}"),
        ("cpu_pct", "idle CPU %", "{:.2f}"),
        ("schedule_s", "schedule()/s", "{:.0f}"),
        ("schedule_cpu_ms", "CPU ms/call", "{:.2f}"),
        ("pickup_p99_s", "pick-up p99 s", "{:.2f}"),
        ("pickup_max_s", "pick-up max s", "{:.2f}"),
        ("missing", "missing", "{:.0f}"),
        ("admin_ms", "admin last page ms", "{:.0f}"),
        ("admin_queries", "admin queries", "{:.0f}"),
    ],
}
# What an after / before row compares when a --baseline ran.
BEFORE_AFTER = {
    "W1": {"runs_s", "late_p99", "cpu_ms_run", "rss_mb"},
    "W2": {"cpu_pct", "rss_mb", "startup_s"},
    "W3": {"first_decision_s", "tick_ms", "rss_mb"},
    "W4": {"runs_s", "cpu_ms_run", "rss_mb"},
    "W5": {
        "startup_s",
        "startup_cpu_s",
        "rss_mb",
        "cpu_pct",
        "schedule_s",
        "schedule_cpu_ms",
        "pickup_max_s",
    },
}
# The metric each ratio compares, and whether a higher value is better.
RATIO = {
    "W1": [("runs_s", True), ("cpu_ms_run", False)],
    "W2": [("cpu_pct", False)],
    "W3": [("first_decision_s", False)],
    "W4": [("runs_s", True)],
    "W5": [],
}
TITLES = {
    "W1": "W1 fan-out: N tasks every('1 second') doing nothing (thread)",
    "W2": "W2 idle: N tasks not due for hours",
    "W3": "W3 history: 100 tasks daily | retry(3), rows already in the run log",
    "W4": "W4 log throughput: 100 tasks always due (true), thread runs",
    "W5": "W5 runtime tasks: N schedule() tasks daily.at(...) staggered, not due; "
    "schedule() from other processes",
}


def fmt(value: float | None, pattern: str) -> str:
    if value is None or value != value:
        return "n/a"
    return pattern.format(value)


def reference(system: str) -> str:
    return "rocket-pg" if system.endswith("-pg") else "rocket-sqlite"


def median_of(reps: list[dict[str, float]], key: str) -> float:
    return statistics.median([r.get(key, float("nan")) for r in reps])


def after_before(after: float, before: float) -> str:
    if not after or not before or after != after or before != before:
        return "n/a"
    return f"{after / before:.2f}"


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip(" :,;") + "…"


def table(results: dict, workloads: list[str], baseline: Baseline | None = None) -> str:
    lines = []
    for workload in workloads:
        rows = {k: v for k, v in results.items() if k[0] == workload}
        if not rows:
            continue
        cols = COLUMNS[workload]
        reps = max(len(v) for v in rows.values())
        lines.append(f"**{TITLES[workload]}** (medians of {reps} repetitions)")
        lines.append("")
        ratio_heads = [f"ratio {c}" for c, _ in RATIO[workload]]
        head = ["param", "system", *[c[1] for c in cols], *ratio_heads]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for (_, system, param), reps in sorted(rows.items(), key=lambda kv: (kv[0][2], kv[0][1])):
            med = {key: median_of(reps, key) for key in {k for r in reps for k in r}}
            cells = [f"{param:,}", SYSTEMS[system].label]
            cells += [fmt(med.get(key), pattern) for key, _, pattern in cols]
            ref = rows.get((workload, reference(system), param))
            if system.startswith("raw") and workload == "W4":
                ref_rows = rows.get((workload, system.replace("raw", "rocket"), param))
                ours = median_of(ref_rows, "runs_s") if ref_rows else None
                limit = med.get("limit_runs_s")
                text = f"ours = {ours / med['runs_s']:.2f} of this" if ours else ""
                if ours and limit and limit == limit:
                    text += f"; {ours / limit:.2f} of the two-writes limit ({limit:,.0f} runs/s)"
                random_ids = med.get("limit_v4_runs_s")
                if ours and random_ids and random_ids == random_ids:
                    text += (
                        f"; {ours / random_ids:.2f} of it with random (version 4) run ids "
                        f"({random_ids:,.0f} runs/s)"
                    )
                recording = med.get("record_runs_s")
                if ours and recording and recording == recording:
                    text += (
                        f"; {ours / recording:.2f} of the run-recording limit in W4's batches "
                        f"({recording:,.0f} runs/s)"
                    )
                floor = med.get("floor_runs_s")
                if ours and floor and floor == floor:
                    text += f"; {ours / floor:.2f} of the thread-run floor ({floor:,.0f} runs/s)"
                cells.append(text)
                lines.append("| " + " | ".join(cells) + " |")
                continue
            for key, higher_better in RATIO[workload]:
                if ref is None or product_of(system) == "rocket":
                    cells.append("")
                    continue
                ours = median_of(ref, key)
                theirs = med.get(key)
                if not ours or not theirs or ours != ours or theirs != theirs:
                    cells.append("n/a")
                    continue
                ratio = ours / theirs if higher_better else theirs / ours
                cells.append(f"{ratio:.1f}x")
            lines.append("| " + " | ".join(cells) + " |")
            after = rows.get((workload, system.removesuffix(BASE), param))
            if system.endswith(BASE) and after:
                database = SYSTEMS[system].label.rsplit(", ", 1)[1]
                cells = [f"{param:,}", f"**after / before**, {database}"]
                cells += [
                    after_before(median_of(after, key), med.get(key, float("nan")))
                    if key in BEFORE_AFTER[workload]
                    else ""
                    for key, _, _ in cols
                ]
                cells += [""] * len(RATIO[workload])
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(
        "Ratios: how many times better django-rocket is than that row on the same database "
        "(SQLite WAL for SQLite and in-memory peers, PostgreSQL for PostgreSQL ones; no peer "
        "runs on MariaDB): "
        "throughput ours/theirs, costs theirs/ours. For raw rows: django-rocket's recorded "
        "runs/s as a fraction of one process's single-row INSERT+COMMIT rate, and of the "
        "two-writes-a-run limit: half the rows/s the same process inserts in 1,000-row "
        "transactions (a run writes its start and its finish), and of the run-recording "
        "limit in W4's batches: runs/s of the same process when each transaction inserts "
        "100 starts and updates the previous 100 rows to finished, and of the thread-run "
        "floor: the same with each run's function (one doing nothing) called in a worker "
        "thread after its start commits, with no scheduling at all (bench/README.md)."
    )
    if baseline:
        lines.append("")
        lines.append(
            f"After / before: this working tree's median divided by that of {baseline.short} "
            f'("{shorten(baseline.subject, 72)}"), measured in the same run on the same database: '
            "above 1 is better for runs/s, below 1 for CPU, lateness, RSS and start-up."
        )
    return "\n".join(lines)


def machine(load_at_start: tuple[float, float, float]) -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    end = os.getloadavg()
    return (
        f"{os.cpu_count()} cores, {model}, {mem_kb / 1024**2:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}; load average (1, 5, 15 min) at start "
        f"{', '.join(f'{x:.2f}' for x in load_at_start)}, at the end "
        f"{', '.join(f'{x:.2f}' for x in end)} (machine shared with other engineers' test runs)"
    )


def versions_text(peer_versions: dict[str, str]) -> str:
    import django

    server = "PostgreSQL (unavailable)"
    try:
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/postgres") as con:
            server = "PostgreSQL " + con.execute("SHOW server_version").fetchone()[0].split()[0]
    except Exception:
        pass
    import sqlite3

    maria = "MariaDB (unavailable)"
    try:
        maria = "MariaDB " + mariadb("SELECT VERSION()")[0][0].split("-")[0]
    except Exception:
        pass
    ours = (
        f"django-rocket {rocket_version()} (git {git_head()}), Django {django.__version__}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {server}, {maria}"
    )
    peers = ", ".join(f"{k.split(':')[1]} {v}" for k, v in sorted(peer_versions.items()))
    peers = peers or "none in this run"
    return f"{ours}; peers: {peers}"


def rocket_version() -> str:
    sys.path.insert(0, str(ROOT))
    import django_rocket

    return django_rocket.__version__


def git_head() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "?"


def record(text: str) -> None:
    path = BENCH / "RESULTS.md"
    header = (
        "# Benchmark results\n\n"
        "Produced by `make bench` (`bench/run.py`); see bench/README.md for the workloads. "
        "Newest first: earlier tables stay below so progress shows.\n\n"
    )
    old = path.read_text() if path.exists() else header
    body = old[len(header) :] if old.startswith(header) else old
    path.write_text(header + text + "\n\n" + body.lstrip("\n"))


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke version (~3 min)")
    parser.add_argument("--workloads", default="W1,W2,W3,W4", help="e.g. W1,W4")
    parser.add_argument("--systems", default="", help=f"subset of {','.join(SYSTEMS)}")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--seconds", type=float, help="override the W1/W2/W4 window length")
    parser.add_argument("--w1-n", help="comma-separated task counts for W1 (default 100,1000)")
    parser.add_argument("--w3-rows", help="comma-separated run-log sizes for W3")
    parser.add_argument("--w3-seconds", type=float, help="how long W3 keeps ticking (default 20)")
    parser.add_argument("--w5-n", help="comma-separated runtime task counts for W5 (100000)")
    parser.add_argument("--w5-writers", type=int, help="W5: processes calling schedule() (1)")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run django-rocket at this commit, branch or tag (rows @base) for before/after",
    )
    parser.add_argument(
        "--cache-dir",
        default=os.environ.get(
            "ROCKET_BENCH_CACHE", str(Path.home() / ".cache" / "django-rocket-bench")
        ),
        help="where the peers' virtualenvs and the throwaway SQLite files live",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.reps:
        plan.reps = args.reps
    if args.seconds:
        plan.w1_seconds = plan.w2_seconds = plan.w4_seconds = args.seconds
    if args.w3_seconds:
        plan.w3_seconds = args.w3_seconds
    if args.w3_rows:
        plan.w3_rows = [int(x) for x in args.w3_rows.split(",")]
    if args.w1_n:
        plan.w1_n = [int(x) for x in args.w1_n.split(",")]
    if args.w5_n:
        plan.w5_n = [int(x) for x in args.w5_n.split(",")]
    if args.w5_writers:
        plan.w5_writers = args.w5_writers
    commit = resolve_commit(args.baseline) if args.baseline else None
    if args.baseline and not commit:
        parser.error(f"--baseline: {args.baseline} is not a commit of this repository")
    workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    wanted = set(args.systems.split(",")) if args.systems else set(SYSTEMS)
    unknown = wanted - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    # Only the systems the chosen workloads run (W5 alone installs no peer).
    wanted &= {s for w in workloads for s in WORKLOAD_SYSTEMS.get(w, [])}
    if not pg_available():
        print("PostgreSQL is not reachable at", PG_SERVER, "- skipping PostgreSQL rows.")
        wanted = {s for s in wanted if not s.endswith("-pg")}
    if any(s.endswith("-mariadb") for s in wanted) and (why := mariadb_missing()):
        print(f"{why} - skipping MariaDB rows.")
        wanted = {s for s in wanted if not s.endswith("-mariadb")}
    cache = Path(args.cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    peer_versions = ensure_peers(cache, {SYSTEMS[s].venv for s in wanted} - {"self"})
    started = time.time()
    load_at_start = os.getloadavg()
    compile_tree(ROOT)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=cache))
    dbs = Databases(work, cache)
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    hour = (datetime.now(UTC) + timedelta(hours=6)).hour
    baseline = None
    try:
        baseline = checkout_baseline(commit, cache) if commit else None
        for workload in workloads:
            systems = [s for s in WORKLOAD_SYSTEMS[workload] if s in wanted]
            params = {
                "W1": plan.w1_n,
                "W2": plan.w2_n,
                "W3": plan.w3_rows,
                "W4": [plan.w4_n],
                "W5": plan.w5_n,
            }[workload]
            if workload == "W3" and systems:
                prepare_w3(plan, with_baseline(systems, 0), dbs, cache)
            for param in params:
                for rep in range(plan.reps):
                    # Systems interleaved within a repetition, so that a burst of load from
                    # other users of the machine lands on all of them alike.
                    for system in with_baseline(systems, rep):
                        t = time.time()
                        metrics = one_run(workload, system, param, plan, dbs, cache, hour)
                        results.setdefault((workload, system, param), []).append(metrics)
                        shown = ", ".join(
                            f"{k}={v:.3g}" for k, v in metrics.items() if k != "startup_s"
                        )
                        print(
                            f"[{time.time() - started:6.0f}s] {workload} {param:>9,} rep {rep + 1}"
                            f" {system:<18} {shown} ({time.time() - t:.0f}s)",
                            flush=True,
                        )
            if workload == "W3":
                for db in dbs.w3.values():
                    dbs.drop(db)
    finally:
        dbs.close()
        shutil.rmtree(work, ignore_errors=True)
        if baseline:
            remove_baseline(baseline)
    text = table(results, workloads, baseline)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    subset = ""
    if args.workloads != parser.get_default("workloads") or args.systems:
        subset = f" — workloads {','.join(workloads)}; systems {','.join(sorted(wanted))}"
    if baseline:
        named = "" if baseline.short.startswith(args.baseline) else f" ({args.baseline})"
        subset += f" — baseline {baseline.short}{named}"
    report = (
        f"## {stamp}{' (--quick)' if args.quick else ''}{subset}\n\n"
        f"Machine: {machine(load_at_start)}.\n\nVersions: {versions_text(peer_versions)}.\n\n"
        f"Repetitions: {plan.reps}; windows: W1 {plan.w1_seconds:g}s, W2 {plan.w2_seconds:g}s "
        f"(after {plan.w2_warmup:g}s warm-up), W3 {plan.w3_seconds:g}s, W4 {plan.w4_seconds:g}s, "
        f"W5 idle {plan.w5_idle:g}s and schedule() {plan.w5_burst:g}s from "
        f"{plan.w5_writers} process(es); "
        f"total wall time {(time.time() - started) / 60:.1f} min.\n\n{text}"
    )
    print()
    print(report)
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / f"{stamp.replace(' ', '_').replace(':', '')}.json").write_text(
        json.dumps({"-".join(map(str, k)): v for k, v in results.items()}, indent=1)
    )
    if not args.no_record:
        record(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
