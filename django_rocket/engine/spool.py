"""The spool: finished runs kept in a file while the database cannot take them.

A scheduler that cannot record finishes writes them to its spool file; the next
scheduler to start on the same database writes every spool file it finds before
anything else, then deletes it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import connection
from django.utils import timezone

from django_rocket.conf import conf
from django_rocket.executors.outcome import Outcome

logger = logging.getLogger("django_rocket.scheduler")


def spool_dir() -> Path:
    """Return (and create) the folder of spool files: ROCKET_SPOOL_DIR or one per database."""
    configured = conf.spool_dir
    if configured:
        path = Path(configured)
    else:
        db = str(connection.settings_dict.get("NAME", "default"))
        path = Path(tempfile.gettempdir()) / f"django-rocket-{uuid.uuid5(uuid.NAMESPACE_URL, db)}"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Spool:
    """This process's spool file, named after its host, pid and instance."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def open_for(self, host: str, pid: int, instance_pk: int) -> None:
        """Name the file this process spools to."""
        self.path = spool_dir() / f"spool-{host}-{pid}-{instance_pk}.jsonl"

    def write(self, batch: list[Outcome]) -> None:
        """Replace the file's content with ``batch``, synced to disk."""
        if self.path is None:
            return
        with open(self.path, "w", encoding="utf-8") as fh:
            for o in batch:
                fh.write(
                    json.dumps(
                        {
                            "run_id": o.run_id,
                            "task": o.task,
                            "status": o.status,
                            "finished_at": o.finished_at.isoformat() if o.finished_at else None,
                            "message": o.message,
                            "exc_text": o.exc_text,
                            "result": o.result,
                        }
                    )
                    + "\n"
                )
            fh.flush()
            os.fsync(fh.fileno())

    def clear(self) -> None:
        """Delete the file: what it held is recorded."""
        if self.path is not None and self.path.exists():
            self.path.unlink()


def apply_spools(write_finishes: Callable[[list[Outcome]], None]) -> None:
    """Write finishes that an earlier process spooled while the database was down."""
    for path in sorted(spool_dir().glob("spool-*.jsonl")):
        outcomes = [_outcome(json.loads(line)) for line in _lines(path)]
        write_finishes(outcomes)
        path.unlink()
        logger.info("Recorded %d spooled run(s) from %s.", len(outcomes), path.name)


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _outcome(data: dict[str, Any]) -> Outcome:
    finished = data["finished_at"]
    return Outcome(
        data["run_id"],
        data["task"],
        data["status"],
        datetime.fromisoformat(finished) if finished else timezone.now(),
        data.get("message", ""),
        data.get("exc_text", ""),
        data.get("result"),
    )
