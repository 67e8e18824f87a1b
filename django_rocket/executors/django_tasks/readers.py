"""Read what Tasks framework backends say about results in flight, batched where they can."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from django_rocket.executors.django_tasks.framework import FAILED, READY, SUCCESSFUL
from django_rocket.executors.outcome import ActiveRun

# Ids per look-up query: far below SQLite's and PostgreSQL's parameter limits.
DB_CHUNK = 900
# Results a backend without a batch look-up is asked about per poll.
GENERIC_PER_POLL = 50


@dataclass
class Seen:
    """What a backend reports about one result."""

    status: str
    worker: str = ""
    value: Any = None
    exception: str = ""
    traceback: str = ""
    finished_at: datetime | None = None  # when the worker finished it, as the backend says


def _aware(moment: Any) -> datetime | None:
    """A backend's finish time as an aware datetime (RQ's may be naive UTC); None if absent."""
    if not isinstance(moment, datetime):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def seen_from_result(result: Any) -> Seen:
    """Describe a framework TaskResult (from either framework) as :class:`Seen`."""
    status = str(result.status)
    error = result.errors[-1] if result.errors else None
    return Seen(
        status=status,
        worker=result.worker_ids[-1] if result.worker_ids else "",
        value=result.return_value if status == SUCCESSFUL else None,
        exception=error.exception_class_path if error else "",
        traceback=error.traceback if error else "",
        finished_at=_aware(getattr(result, "finished_at", None)),
    )


@dataclass
class Remote:
    """A run enqueued on a backend, followed until its result is final."""

    active: ActiveRun
    backend: str
    queue: str
    result_id: str
    started: bool = False
    missing: int = 0

    @property
    def run_id(self) -> str:
        return self.active.launch.run_id

    def ref(self) -> tuple[str, str, str]:
        """Where the run went, as its row keeps it: backend alias, queue, result id."""
        return (self.backend, self.queue, self.result_id)

    def where(self) -> str:
        """Name the backend, queue and result, for messages."""
        return f"backend {self.backend!r}, queue {self.queue!r}, result {self.result_id}"


class ResultReader:
    """Look up results of one backend; subclasses batch the look-ups."""

    def __init__(self, backend: Any, no_result: type[Exception]) -> None:
        self.backend = backend
        self.no_result = no_result
        self._cursor = 0

    def read(self, remotes: list[Remote]) -> dict[str, Seen | None]:
        """Map result ids to what the backend says, None for a result it does not know.

        An id left out was not looked at this time. The generic way asks
        ``get_result()`` about a bounded share of the results per poll, round robin.
        """
        if not remotes:
            return {}
        start = self._cursor % len(remotes)
        share = (remotes[start:] + remotes[:start])[:GENERIC_PER_POLL]
        self._cursor = start + len(share)
        seen: dict[str, Seen | None] = {}
        for remote in share:
            try:
                seen[remote.result_id] = seen_from_result(self.backend.get_result(remote.result_id))
            except self.no_result:
                seen[remote.result_id] = None
        return seen

    def cancel(self, remote: Remote, reason: str) -> str:
        """Stop the result's work if the backend can; return what was done, or ''."""
        return ""


class DatabaseReader(ResultReader):
    """django-tasks-db: one query for every result in flight (per 900)."""

    def read(self, remotes: list[Remote]) -> dict[str, Seen | None]:
        from django_tasks_db.models import DBTaskResult  # optional: django-tasks-db

        ids = [remote.result_id for remote in remotes]
        seen: dict[str, Seen | None] = dict.fromkeys(ids)
        for start in range(0, len(ids), DB_CHUNK):
            rows = DBTaskResult.objects.filter(id__in=ids[start : start + DB_CHUNK]).values_list(
                "id",
                "status",
                "worker_ids",
                "return_value",
                "exception_class_path",
                "traceback",
                "finished_at",
            )
            for result_id, status, workers, value, exception, text, finished in rows:
                failed = status == FAILED
                seen[str(result_id)] = Seen(
                    status=status,
                    worker=workers[-1] if workers else "",
                    value=value,
                    exception=exception if failed else "",
                    traceback=text if failed else "",
                    finished_at=_aware(finished),
                )
        return seen

    def cancel(self, remote: Remote, reason: str) -> str:
        from django_tasks_db.models import DBTaskResult  # optional: django-tasks-db

        # Only a result no worker has claimed can be withdrawn; the status guard makes
        # this atomic against a worker claiming it at the same moment.
        withdrawn = DBTaskResult.objects.filter(id=remote.result_id, status=READY).update(
            status=FAILED,
            finished_at=timezone.now(),
            exception_class_path="django_rocket.TaskTerminated",
            traceback=f"Withdrawn by django-rocket before a worker took it: {reason}",
        )
        return "withdrawn from the queue before a worker took it" if withdrawn else ""


class RQReader(ResultReader):
    """django-tasks-rq: one pipelined round trip per queue for every job in flight."""

    def read(self, remotes: list[Remote]) -> dict[str, Seen | None]:
        # Optional: django-tasks-rq, and django-rq with it.
        import django_rq
        from django_tasks_rq.backend import RQ_STATUS_TO_RESULT_STATUS, Job

        seen: dict[str, Seen | None] = {}
        by_queue: dict[str, list[str]] = {}
        for remote in remotes:
            by_queue.setdefault(remote.queue, []).append(remote.result_id)
        for queue, ids in by_queue.items():
            jobs: list[Any] = Job.fetch_many(ids, connection=django_rq.get_connection(queue))
            for result_id, job in zip(ids, jobs, strict=True):
                if job is None:
                    seen[result_id] = None
                    continue
                status = str(RQ_STATUS_TO_RESULT_STATUS.get(job.get_status(refresh=False), READY))
                if status in (SUCCESSFUL, FAILED):
                    # Once per run: the backend's own reading of a finished job.
                    seen[result_id] = seen_from_result(job.task_result)
                else:
                    seen[result_id] = Seen(status, worker=job.worker_name or "")
        return seen

    def cancel(self, remote: Remote, reason: str) -> str:
        # Optional: django-tasks-rq, and django-rq and rq with it.
        import django_rq
        from django_tasks_rq.backend import Job
        from rq.command import send_stop_job_command
        from rq.exceptions import NoSuchJobError
        from rq.job import JobStatus
        from rq.worker import Worker

        connection = django_rq.get_connection(remote.queue)
        try:
            job = Job.fetch(remote.result_id, connection=connection)
        except NoSuchJobError:
            return ""
        status = job.get_status(refresh=False)
        if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            job.cancel()
            return "cancelled in its queue before a worker took it"
        if status == JobStatus.STARTED and job.worker_name:
            key = Worker.redis_worker_namespace_prefix + job.worker_name
            if Worker.find_by_key(key, connection=connection) is None:
                return ""  # its worker is gone: nobody is left to stop it
            send_stop_job_command(connection, remote.result_id)
            return f"worker {job.worker_name} was told to stop it"
        return ""
