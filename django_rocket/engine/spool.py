"""The spool: finished runs kept in a file while the database cannot take them.

A scheduler that cannot record finishes writes them to its spool file; the next
scheduler to start on the same database writes every spool file it finds before
anything else, then deletes it.

Nothing in the spool is trusted that this user did not write (docs/reference/settings,
``ROCKET_SPOOL_DIR``): the directory must be this user's and is made private (0700);
files are created 0600, written whole to a temporary file and renamed over the old
one, never through a link. A file that is not a regular file of this user, or holds a
line that is torn, not JSON or not a finish, is logged with its name and line number
and moved aside as ``*.rejected``; its good lines are still written. A spooled finish
only finishes a run that is still ``running``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import connection
from django.utils import timezone

from django_rocket.conf import conf
from django_rocket.executors.outcome import Outcome
from django_rocket.models import FINISHED_STATUSES, RunStatus, TaskRun

logger = logging.getLogger("django_rocket.scheduler")

PATTERN = "spool-*.jsonl"
TEMPORARY = ".spool-*.tmp"
# A temporary file older than this was left by a writer that died before its rename.
STALE_TEMPORARY_SECONDS = 3600.0
# The longest line read back; the writer cuts an outcome to fit (see _encode).
MAX_LINE_BYTES = 64 * 1024 * 1024
# Finishes written to the database at a time while a spool file is read.
CHUNK = 500
FIELDS = {
    "run_id",
    "task",
    "status",
    "finished_at",
    "message",
    "exc_text",
    "result",
    "exception_types",
}

# Writes the finishes of runs still running; returns those the database refused whole.
WriteSpooled = Callable[[list[Outcome]], list[Outcome]]


class SpoolRefused(Exception):
    """The spool directory is not safe to use: another user could read or plant files."""


def spool_location() -> Path:
    """Return where the spool files are: ROCKET_SPOOL_DIR, or one directory per database.

    The default is under the user's state directory (``$XDG_STATE_HOME``, else
    ``~/.local/state``), in ``django-rocket/`` and a folder named from the database's
    engine, host, port and name, so that two projects never read each other's spool.
    """
    configured = conf.spool_dir
    if configured:
        return Path(configured)
    state = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):  # the XDG rule: a relative path is ignored
        home = os.path.expanduser("~")
        state = os.path.join(home, ".local", "state") if os.path.isabs(home) else ""
    if not state:  # no home directory: a folder of this user's under the temp dir
        state = os.path.join(tempfile.gettempdir(), f"django-rocket-state-{os.geteuid()}")
    s = connection.settings_dict
    key = f"{connection.vendor}://{s.get('HOST') or ''}:{s.get('PORT') or ''}/{s.get('NAME')}"
    return Path(state) / "django-rocket" / f"spool-{uuid.uuid5(uuid.NAMESPACE_URL, key)}"


def private_dir(path: Path) -> Path:
    """Create ``path`` (0700) if needed and make sure only this user can use it.

    Raise :class:`SpoolRefused` if it is not a directory, is owned by another user, or
    is a symbolic link another user made; a directory of this user's that others may
    read or write is made private, with a warning.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    refused = not_usable(path)
    if refused:
        raise SpoolRefused(refused)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        os.chmod(path, 0o700)
        logger.warning(
            "The spool directory %s was open to other users (mode %s); made it private (0700).",
            path,
            oct(mode),
        )
    return path


def not_usable(path: Path) -> str | None:
    """Why the existing ``path`` must not hold a spool, or None if this user owns it."""
    me = os.geteuid()
    link = os.lstat(path)
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (me, 0):
        return f"{path} is a symbolic link owned by uid {link.st_uid}"
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if info.st_uid != me:
        return f"{path} is owned by uid {info.st_uid}, not by this user (uid {me})"
    return None


def _encode(o: Outcome) -> bytes:
    """One finish as a line of JSON (ASCII), cut to fit :data:`MAX_LINE_BYTES`."""

    def encode(message: str, exc_text: str, result: Any) -> bytes:
        data = {
            "run_id": o.run_id,
            "task": o.task,
            "status": o.status,
            "finished_at": o.finished_at.isoformat() if o.finished_at else None,
            "message": message,
            "exc_text": exc_text,
            "result": result,
            "exception_types": list(o.exception_types),
        }
        return (json.dumps(data) + "\n").encode("ascii")

    line = encode(o.message or "", o.exc_text or "", o.result)
    if len(line) <= MAX_LINE_BYTES:
        return line
    # An escaped character takes at most 12 bytes: the cut line fits with room to spare.
    keep = MAX_LINE_BYTES // 24
    note = " [The traceback was cut and the result dropped to fit the spool.]"
    return encode((o.message or "")[:2000] + note, (o.exc_text or "")[-keep:], None)


def _write_atomically(directory: Path, name: str, data: bytes) -> None:
    """Replace ``directory/name`` with ``data``: a private temporary file, synced, renamed."""
    temporary = directory / f".{name}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # A rename replaces a link planted at the name; it never writes through it.
        os.replace(temporary, directory / name)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


class Spool:
    """This process's spool file, named after its host, pid and instance."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def open_for(self, host: str, pid: int, instance_pk: int) -> None:
        """Name the file this process spools to (nothing is created yet).

        Absolute from here on: a relative ``ROCKET_SPOOL_DIR`` is taken from the directory
        the scheduler starts in, where the next one looks, even after a thread run
        changed the working directory (``os.chdir``) of the process.
        """
        self.path = spool_location().absolute() / f"spool-{host}-{pid}-{instance_pk}.jsonl"

    def write(self, batch: list[Outcome]) -> bool:
        """Replace the file's content with ``batch``, atomically; False (logged) if it failed."""
        if self.path is None:
            return False
        try:
            directory = private_dir(self.path.parent)
            _write_atomically(directory, self.path.name, b"".join(map(_encode, batch)))
            return True
        except (OSError, SpoolRefused) as exc:
            logger.error(
                "Could not spool %d finished run(s) to %s (%s); they are kept in memory only.",
                len(batch),
                self.path,
                exc,
            )
            return False

    def clear(self) -> None:
        """Delete the file: what it held is recorded."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def apply_spools(write: WriteSpooled) -> None:
    """Write finishes that an earlier process spooled while the database was down.

    A database error other than a refused row propagates (the database is down: start-up
    retries); nothing else in a spool file stops start-up.
    """
    try:
        directory = private_dir(spool_location())
    except (OSError, SpoolRefused) as exc:
        logger.error(
            "The spool directory cannot be used (%s); spooled runs in it are not recorded. "
            "Set ROCKET_SPOOL_DIR to a directory only this user can use, or fix its owner.",
            exc,
        )
        return
    _remove_stale_temporaries(directory)
    for path in sorted(directory.glob(PATTERN)):
        recorded = 0
        sound = True
        read: list[int] = []  # the inode read, once opened
        for chunk in _chunks(_read(path, read)):
            if chunk is None:
                sound = False
                continue
            live = _still_running(path, chunk)
            refused = write(live) if live else []
            recorded += len(live) - len(refused)
            sound = sound and not refused
        if _rewritten(path, read):
            # Its scheduler is alive (a second one on this host, started during the
            # outage): it replaced the file with what it holds now, unread here.
            logger.info(
                "Recorded %d spooled run(s) from %s; its scheduler wrote it again meanwhile, "
                "and records the rest itself.",
                recorded,
                path.name,
            )
            continue
        if sound:
            path.unlink()
        else:
            _move_aside(path)
        logger.info("Recorded %d spooled run(s) from %s.", recorded, path.name)


def _rewritten(path: Path, read: list[int]) -> bool:
    """Whether ``path`` is no longer the file that was read (its writer renamed another over it)."""
    try:
        return bool(read) and os.lstat(path).st_ino != read[0]
    except OSError:
        return False


def _chunks(items: Iterator[Outcome | None]) -> Iterator[list[Outcome] | None]:
    """Batches of :data:`CHUNK` finishes; a None (a bad line) is passed on as it comes."""
    batch: list[Outcome] = []
    for item in items:
        if item is None:
            yield None
            continue
        batch.append(item)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _read(path: Path, read: list[int]) -> Iterator[Outcome | None]:
    """The finishes in a spool file; None for a line (or a file) that is logged as bad.

    ``read`` is given the file's inode once it is open.
    """
    try:
        # Not through a link; O_NONBLOCK so that a planted FIFO cannot block start-up.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        _bad(path, None, f"it cannot be opened as a regular file ({exc.strerror})")
        yield None
        return
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        read.append(info.st_ino)
        if not stat.S_ISREG(info.st_mode):
            _bad(path, None, "it is not a regular file")
            yield None
            return
        if info.st_uid != os.geteuid():
            _bad(path, None, f"it is owned by uid {info.st_uid}, not by this user")
            yield None
            return
        number = 0
        while raw := fh.readline(MAX_LINE_BYTES + 1):
            number += 1
            if not raw.strip():
                continue
            try:
                yield _parse(raw)
            except ValueError as exc:
                _bad(path, number, str(exc))
                yield None
            # The rest of an oversized line is not a line of its own: skip it, a bounded
            # read at a time.
            while len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raw = fh.readline(MAX_LINE_BYTES + 1)


def _parse(raw: bytes) -> Outcome:
    """A finish from one line; ValueError says what is wrong with it."""
    if len(raw) > MAX_LINE_BYTES:
        raise ValueError(f"the line is longer than {MAX_LINE_BYTES} bytes")
    if not raw.endswith(b"\n"):
        raise ValueError("the line is torn (no end of line): its write was cut short")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the line is not UTF-8") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("the line is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"the line is not an object but {type(data).__name__}")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))}")
    run_id, status = data.get("run_id"), data.get("status")
    try:
        run_id = str(uuid.UUID(run_id)) if isinstance(run_id, str) else None
    except ValueError:
        run_id = None
    if run_id is None:
        raise ValueError(f"run_id {_short(data.get('run_id'))} is not a run id")
    if status not in FINISHED_STATUSES:
        raise ValueError(f"status {_short(status)} is not the status of a finished run")
    for key in ("task", "message", "exc_text"):
        if not isinstance(data.get(key, ""), str):
            raise ValueError(f"{key} {_short(data[key])} is not text")
    types = data.get("exception_types", [])
    if not isinstance(types, list) or not all(isinstance(name, str) for name in types):
        raise ValueError(f"exception_types {_short(types)} is not a list of class names")
    return Outcome(
        run_id,
        data.get("task", ""),
        status,
        _finished_at(data.get("finished_at")),
        data.get("message", ""),
        data.get("exc_text", ""),
        data.get("result"),
        exception_types=tuple(types),
    )


def _finished_at(value: object) -> datetime:
    if value is None:  # written by a version that did not always know the finish time
        return timezone.now()
    try:
        finished = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        finished = None
    if finished is None or finished.utcoffset() is None:
        raise ValueError(f"finished_at {_short(value)} is not an aware ISO 8601 date and time")
    return finished


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _bad(path: Path, number: int | None, reason: str) -> None:
    where = path.name if number is None else f"{path.name} line {number}"
    logger.error(
        "Spool file %s is not recorded: %s. The file is moved aside as %s.rejected.",
        where,
        reason,
        path.name,
    )


def _still_running(path: Path, batch: list[Outcome]) -> list[Outcome]:
    """The finishes of runs still ``running``; the others change nothing and are logged."""
    rows = {
        str(run_id): (status, task)
        for run_id, status, task in TaskRun.objects.filter(
            run_id__in=[o.run_id for o in batch]
        ).values_list("run_id", "status", "task__name")
    }
    live = []
    for o in batch:
        status, task = rows.get(o.run_id, (None, None))
        if status == RunStatus.RUNNING and task == o.task:
            live.append(o)
            continue
        if status is None:
            state = "the run is not in the run log"
        elif task != o.task:
            state = f"the run belongs to task {task!r}"
        else:
            state = f"the run is already {status}"
        logger.warning(
            "Spool file %s: the finish of run %s (task %r, %s) is ignored: %s.",
            path.name,
            o.run_id,
            o.task,
            o.status,
            state,
        )
    return live


def _move_aside(path: Path) -> None:
    try:
        os.replace(path, path.with_name(f"{path.name}.rejected"))
    except OSError as exc:  # e.g. the directory became read-only: at least it is logged
        logger.error("Could not move the spool file %s aside: %s.", path.name, exc)


def _remove_stale_temporaries(directory: Path) -> None:
    """Delete temporary files whose writer died before renaming them; they are never read."""
    limit = time.time() - STALE_TEMPORARY_SECONDS
    for temporary in directory.glob(TEMPORARY):
        try:
            info = os.lstat(temporary)
            if info.st_mtime < limit:
                temporary.unlink()
                logger.info(
                    "Removed %s, left by a writer that died while spooling.", temporary.name
                )
        except OSError:
            continue
