"""Follow django-tasks-celery's results in one round trip per poll, and revoke them.

django-tasks-celery's ``get_result()`` reads one result per call, so the generic reader
asks about at most ``GENERIC_PER_POLL`` results per poll. Celery's key-value result
backends (Redis, Valkey, Memcached…) read many keys at once: :class:`CeleryReader` reads
every result in flight with one ``MGET`` per ``MGET_CHUNK`` ids and turns each into a
Django ``TaskResult`` with django-tasks-celery's own mapping, exactly as ``get_result()``
would. On a result backend without ``mget`` (a database, RPC) it falls back to the generic
reader.

Celery stores nothing for a task no worker has started, and answers ``PENDING`` for an
id it has never seen, so a result this backend lost is indistinguishable from one still
waiting: such a run ends at its timeout, not after two polls without a result.
"""

from __future__ import annotations

from typing import Any

from django_rocket.executors.django_tasks.framework import FAILED, READY, RUNNING
from django_rocket.executors.django_tasks.readers import (
    Remote,
    ResultReader,
    Seen,
    seen_from_result,
)

# Keys per MGET: one round trip each, far below Redis's limits.
MGET_CHUNK = 1000
# Seconds to wait for a worker's answer to a revoke (the scheduler's loop waits with it).
REPLY_TIMEOUT = 1.0


class CeleryReader(ResultReader):
    """django-tasks-celery: one MGET per 1,000 results in flight; revoke to stop one."""

    def _app(self) -> Any:
        return self.backend._get_celery_app()

    def read(self, remotes: list[Remote]) -> dict[str, Seen | None]:
        """Map result ids to what the result backend holds, reading all of them at once."""
        from celery.backends.base import BaseKeyValueStoreBackend  # optional: celery
        from django_tasks_celery.results import meta_to_task_result  # optional

        results = self._app().backend
        batched = isinstance(results, BaseKeyValueStoreBackend) and (
            type(results).mget is not BaseKeyValueStoreBackend.mget  # the base cannot
        )
        if not batched:
            return super().read(remotes)
        ids = [remote.result_id for remote in remotes]
        seen: dict[str, Seen | None] = {}
        for start in range(0, len(ids), MGET_CHUNK):
            chunk = ids[start : start + MGET_CHUNK]
            keys = [results.get_key_for_task(result_id) for result_id in chunk]
            payloads = results.mget(keys)
            if isinstance(payloads, dict):  # Memcached answers by key, Redis in order
                payloads = [payloads.get(key) for key in keys]
            for result_id, payload in zip(chunk, payloads, strict=True):
                if payload is None:
                    seen[result_id] = Seen(READY)  # not started yet, or unknown to Celery
                    continue
                meta = results.decode_result(payload)
                found = seen_from_result(
                    meta_to_task_result(result_id, meta, backend_alias=self.backend.alias)
                )
                if found.status == RUNNING and not found.worker:
                    found.worker = started_on(meta)
                error = meta.get("result")
                if found.status == FAILED and not found.traceback and error is not None:
                    # A lost pool process or a revoke leaves no traceback: say what Celery says.
                    found.traceback = f"{found.exception}: {error}"
                seen[result_id] = found
        return seen

    def cancel(self, remote: Remote, reason: str) -> str:
        """Revoke a task not started yet; terminate one a live worker is running."""
        from celery import states  # optional: celery

        app = self._app()
        meta = app.backend.get_task_meta(remote.result_id, cache=False)
        status = meta.get("status")
        if status in (states.PENDING, states.RECEIVED, states.RETRY):
            # terminate=True as well: without CELERY_TASK_TRACK_STARTED a started task
            # still reads PENDING, and its worker stops it.
            replies = app.control.revoke(
                remote.result_id,
                terminate=True,
                reply=True,
                timeout=REPLY_TIMEOUT,
                limit=1,
            )
            return "revoked before a worker ran it; Celery workers drop it" if replies else ""
        worker = started_on(meta)
        if status != states.STARTED or not worker:
            return ""
        replies = app.control.revoke(
            remote.result_id,
            terminate=True,
            destination=[worker],
            reply=True,
            timeout=REPLY_TIMEOUT,
            limit=1,
        )
        answers = [str(answer.get("ok", "")) for reply in replies for answer in reply.values()]
        if any(remote.result_id in answer for answer in answers):
            return f"worker {worker} was told to stop it"
        return ""  # its worker is gone, or no longer runs it


def started_on(meta: dict[str, Any]) -> str:
    """Return the worker a Celery result's meta says ran or runs the task, or ''."""
    if meta.get("worker"):  # CELERY_RESULT_EXTENDED
        return str(meta["worker"])
    progress = meta.get("result")
    if meta.get("status") == "STARTED" and isinstance(progress, dict):
        return str(progress.get("hostname") or "")  # CELERY_TASK_TRACK_STARTED
    return ""
