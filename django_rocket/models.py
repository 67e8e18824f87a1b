"""The run log: declared tasks, their runs, and the scheduler processes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, models, router, transaction
from django.db.models import Case, F, Max, When
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class RunStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    SUCCESS = "success", _("Success")
    FAIL = "fail", _("Fail")
    TERMINATE = "terminate", _("Terminate")
    INACTION = "inaction", _("Inaction")
    CRASH = "crash", _("Crash")


FINISHED_STATUSES = (
    RunStatus.SUCCESS,
    RunStatus.FAIL,
    RunStatus.TERMINATE,
    RunStatus.INACTION,
    RunStatus.CRASH,
)
OPEN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
# Finishes that count as failures: alerts, the admin's failure columns, retry and re-run.
FAILURE_STATUSES = (RunStatus.FAIL, RunStatus.CRASH, RunStatus.TERMINATE)
# What finishing a run writes.
FINISH_FIELDS = (
    "status",
    "finished_at",
    "runtime",
    "message",
    "exc_text",
    "result",
    "exception_types",
)


class RunTrigger(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    RETRY = "retry", _("Retry")
    MANUAL = "manual", _("Manual")


class TaskSource(models.TextChoices):
    SETTINGS = "settings", _("Settings (ROCKET_TASKS)")
    RUNTIME = "runtime", _("Runtime (schedule())")


class TaskQuerySet(models.QuerySet["Task"]):
    def update(self, **kwargs: Any) -> int:
        """Update the rows, giving them the next revision (see :class:`Counter`)."""
        if "revision" in kwargs:
            return super().update(**kwargs)
        with transaction.atomic(using=self.db, savepoint=False):
            return super().update(**kwargs, revision=next_task_revision(self.db))

    def declared(self) -> TaskQuerySet:
        return self.filter(declared=True)

    def enabled(self) -> TaskQuerySet:
        return self.filter(declared=True, enabled=True)

    def runtime(self) -> TaskQuerySet:
        return self.filter(source=TaskSource.RUNTIME)


class Task(models.Model):
    """A task: declared in ``ROCKET_TASKS`` (synced when the scheduler starts) or by ``schedule()``.

    The effective start condition is ``start_cond_override`` when it is set, else
    ``start_cond`` (and likewise for the end condition).
    """

    name = models.CharField(_("name"), max_length=200, unique=True)
    func = models.CharField(_("function"), max_length=300, help_text=_("Dotted path."))
    start_cond = models.TextField(_("start condition"), blank=True)
    end_cond = models.TextField(_("end condition"), blank=True)
    start_cond_override = models.TextField(
        _("start condition override"),
        blank=True,
        help_text=_("Replaces the declared start condition while set; blank: use the declared."),
    )
    end_cond_override = models.TextField(
        _("end condition override"),
        blank=True,
        help_text=_("Replaces the declared end condition while set; blank: use the declared."),
    )
    source = models.CharField(
        _("source"),
        max_length=10,
        choices=TaskSource.choices,
        default=TaskSource.SETTINGS,
        help_text=_("Where the task is declared: settings.py, or schedule() at runtime."),
    )
    parameters = models.JSONField(
        _("parameters"), default=dict, blank=True, help_text=_("Runtime tasks: keyword arguments.")
    )
    timeout = models.CharField(
        _("timeout"),
        max_length=100,
        blank=True,
        help_text=_("Runtime tasks: a duration or 'never'; blank: ROCKET_TIMEOUT."),
    )
    execution = models.CharField(_("execution"), max_length=20, blank=True)
    # Defaults in the database too: rows written by an older version during a rolling
    # deploy, or by SQL that predates these columns, still insert.
    backend = models.CharField(
        _("backend"),
        max_length=100,
        blank=True,
        default="",
        db_default="",
        help_text=_("Execution 'tasks': the alias in TASKS to enqueue on; blank: 'default'."),
    )
    queue = models.CharField(
        _("queue"),
        max_length=100,
        blank=True,
        default="",
        db_default="",
        help_text=_("Execution 'tasks': the queue to enqueue on; blank: 'default'."),
    )
    multilaunch = models.BooleanField(
        _("runs may overlap"),
        default=False,
        db_default=False,
        help_text=_("Start a new run while one is in progress."),
    )
    description = models.TextField(_("description"), blank=True)
    enabled = models.BooleanField(
        _("enabled"), default=True, help_text=_("Paused tasks are not started by the scheduler.")
    )
    declared = models.BooleanField(
        _("declared"),
        default=True,
        help_text=_(
            "False once the task is removed from ROCKET_TASKS or unscheduled; its history is kept."
        ),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True, db_index=True)
    # Which change to the row was the last (Counter): what the scheduler's poll follows.
    revision = models.BigIntegerField(
        _("revision"), default=0, db_default=0, db_index=True, editable=False
    )

    objects = TaskQuerySet.as_manager()

    class Meta:
        verbose_name = _("task")
        verbose_name_plural = _("tasks")
        ordering = ["name"]
        permissions = [("run_task", _("Can run, retry and pause tasks"))]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save the row with the next revision (see :class:`Counter`)."""
        using = kwargs.get("using") or router.db_for_write(Task, instance=self)
        with transaction.atomic(using=using, savepoint=False):
            self.revision = next_task_revision(using)
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "revision"}
            super().save(*args, **kwargs)

    @property
    def effective_start_cond(self) -> str:
        return self.start_cond_override or self.start_cond

    @property
    def effective_end_cond(self) -> str:
        return self.end_cond_override or self.end_cond


class TaskRunQuerySet(models.QuerySet["TaskRun"]):
    def queued(self) -> TaskRunQuerySet:
        return self.filter(status=RunStatus.QUEUED)

    def running(self) -> TaskRunQuerySet:
        return self.filter(status=RunStatus.RUNNING)

    def remote(self) -> TaskRunQuerySet:
        """Runs handed to a Tasks framework backend, which any scheduler can follow."""
        return self.exclude(remote_id="")

    def local(self) -> TaskRunQuerySet:
        return self.filter(remote_id="")

    def open(self) -> TaskRunQuerySet:
        return self.filter(status__in=OPEN_STATUSES)

    def finished(self) -> TaskRunQuerySet:
        return self.filter(status__in=FINISHED_STATUSES)

    def succeeded(self) -> TaskRunQuerySet:
        return self.filter(status=RunStatus.SUCCESS)

    def failed(self) -> TaskRunQuerySet:
        return self.filter(status=RunStatus.FAIL)

    def for_task(self, name: str) -> TaskRunQuerySet:
        return self.filter(task__name=name)

    def start(self, started_at: datetime, host: str, pid: int, scheduler_id: int | None) -> int:
        """Mark these runs running, started by ``host``:``pid``; return how many were."""
        return self.update(
            status=RunStatus.RUNNING,
            started_at=started_at,
            host=host,
            pid=pid,
            scheduler_id=scheduler_id,
        )


class TaskRun(models.Model):
    """One run of a task. Written before the function starts, updated when it ends."""

    # No index of its own: "rocket_run_task_started" (task, started_at) leads with it and
    # serves every look-up by task, the foreign key's checks and cascades included; one
    # index fewer for every run written (migration 0009).
    task = models.ForeignKey(
        Task, models.CASCADE, related_name="runs", verbose_name=_("task"), db_index=False
    )
    run_id = models.UUIDField(_("run id"), default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(_("status"), max_length=10, choices=RunStatus.choices)
    trigger = models.CharField(
        _("trigger"), max_length=10, choices=RunTrigger.choices, default=RunTrigger.SCHEDULED
    )
    retry_of = models.ForeignKey(
        "self",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="retries",
        verbose_name=_("retry of"),
    )
    queued_at = models.DateTimeField(_("queued"), null=True, blank=True)
    due_at = models.DateTimeField(
        _("due"),
        null=True,
        blank=True,
        help_text=_(
            "A queued run for a given time (runtask --at, Run at…) starts at this instant."
        ),
    )
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    runtime = models.DurationField(_("runtime"), null=True, blank=True)
    message = models.TextField(_("message"), blank=True)
    exc_text = models.TextField(_("traceback"), blank=True)
    result = models.JSONField(_("result"), null=True, blank=True)
    # A failed run's exception class and its bases, qualified, most derived first
    # (["builtins.ConnectionError", "builtins.OSError", ...]): what retry(on=...) reads.
    # NULL until the run ends (the batched INSERT of starts does not write it).
    exception_types = models.JSONField(_("exception types"), null=True, blank=True)
    host = models.CharField(_("host"), max_length=255, blank=True)
    pid = models.IntegerField(_("pid"), null=True, blank=True)
    # Where ``pid`` names the process, for a run with no scheduler of its own (``runtask``):
    # its kernel boot id and PID namespace, as on SchedulerInstance. Crash recovery checks
    # that pid only from the same namespace. NULL on rows written before migration 0011 and
    # on the scheduler's own runs (its instance says). Nullable, without a default: adding
    # it is then an ALTER TABLE on every database, where a default would make Django copy
    # the whole run log into a new table on SQLite.
    pid_namespace = models.CharField(  # noqa: DJ001
        _("PID namespace"), max_length=100, null=True, blank=True
    )
    # When the process running a run with no scheduler of its own (``runtask``) last said
    # it was alive: it writes this every ROCKET_HEARTBEAT while the function runs. Crash
    # recovery takes a run whose process it cannot see (another host or container) as
    # gone once this is older than the lease, as it does a scheduler. NULL on the
    # scheduler's own runs (their instance's last_seen says) and on rows written before
    # migration 0012 (judged by their task's timeout). Nullable, without a default, as
    # ``pid_namespace``.
    last_seen = models.DateTimeField(_("last seen"), null=True, blank=True, editable=False)
    scheduler = models.ForeignKey(
        "SchedulerInstance",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="runs",
        verbose_name=_("scheduler"),
    )
    # A double-submitted "Run now" or "Retry" creates one queued run, not two: the task's
    # id while the run is queued, NULL otherwise, and unique. The database computes it on
    # every write, so no writer can forget it; a unique column, not a partial unique
    # index, because MySQL and MariaDB have none.
    queued_task = models.GeneratedField(
        # A run queued for a given time (due_at: runtask --at, "Run at…") is not counted:
        # those are as many as were asked for.
        expression=Case(When(status=RunStatus.QUEUED, due_at__isnull=True, then=F("task_id"))),
        output_field=models.BigIntegerField(null=True),
        db_persist=True,
        unique=True,
        editable=False,
        verbose_name=_("queued task"),
    )
    # Where a run with execution "tasks" went, so any scheduler can follow it to its end.
    remote_backend = models.CharField(
        _("task backend"),
        max_length=100,
        blank=True,
        default="",
        db_default="",  # the run log's batched INSERT leaves these out
        help_text=_("Alias in TASKS."),
    )
    remote_queue = models.CharField(
        _("task queue"), max_length=100, blank=True, default="", db_default=""
    )
    remote_id = models.CharField(
        _("task result id"),
        max_length=255,
        blank=True,
        default="",
        db_default="",
        help_text=_("The backend's id of the enqueued result or job."),
    )

    objects = TaskRunQuerySet.as_manager()

    class Meta:
        verbose_name = _("task run")
        verbose_name_plural = _("task runs")
        ordering = ["-started_at", "-id"]
        indexes = [
            # History snapshot and the task page: a task's runs in time order.
            models.Index(fields=["task", "started_at"], name="rocket_run_task_started"),
            # Latest finish of each outcome per task.
            models.Index(
                fields=["task", "status", "finished_at"], name="rocket_run_task_status_fin"
            ),
            # The run changelist, its date hierarchy, and pruning.
            models.Index(fields=["started_at", "id"], name="rocket_run_started"),
            models.Index(fields=["finished_at"], name="rocket_run_finished"),
            # The run changelist filtered by status or by trigger, newest first.
            models.Index(fields=["status", "started_at", "id"], name="rocket_run_status_started"),
            models.Index(fields=["trigger", "started_at", "id"], name="rocket_run_trigger_started"),
            # Not declared here: "rocket_run_open", a partial index on status for the queued
            # and running rows (the scheduler's poll), which migration 0001 creates where
            # partial indexes exist (PostgreSQL, SQLite) and 0003 takes out of the model,
            # so that MySQL and MariaDB, which have none, do not warn (models.W037) on
            # every migrate. There 0003 drops the plain index 0001 made instead, and
            # (status, started_at, id) serves the poll.
        ]

    def __str__(self) -> str:
        return f"{self.task_id and self.task.name} {self.run_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def finish(
        self,
        status: str,
        finished_at: datetime,
        *,
        message: str = "",
        exc_text: str = "",
        result: Any = None,
        exception_types: Sequence[str] = (),
    ) -> None:
        """Record how the run ended."""
        self.status = status
        self.finished_at = finished_at
        self.runtime = finished_at - self.started_at if self.started_at else None
        self.message = message
        self.exc_text = exc_text
        self.result = result
        self.exception_types = list(exception_types)
        self.save(update_fields=FINISH_FIELDS)

    def crash(self, detected_at: datetime, message: str) -> bool:
        """Record that the process running it died before it ended; False if it ended first.

        Only a row still ``running`` is changed: a finish written since the row was read
        (a ``runtask`` on another host ending just then) is the truth, and stays.
        """
        values = {
            "status": RunStatus.CRASH,
            "finished_at": detected_at,
            "runtime": detected_at - self.started_at if self.started_at else None,
            "message": message,
        }
        if not TaskRun.objects.filter(pk=self.pk, status=RunStatus.RUNNING).update(**values):
            return False
        for name, value in values.items():
            setattr(self, name, value)
        return True


class SchedulerRole(models.TextChoices):
    ACTIVE = "active", _("Active")
    STANDBY = "standby", _("Standby")
    STOPPED = "stopped", _("Stopped")


class SchedulerInstance(models.Model):
    """A ``runscheduler`` process, seen through its heartbeat."""

    host = models.CharField(_("host"), max_length=255)
    pid = models.IntegerField(_("pid"))
    # Where ``pid`` names this process: the kernel's boot id and the PID namespace (Linux).
    # Another scheduler checks the pid only from the same one (engine.leadership).
    pid_namespace = models.CharField(_("PID namespace"), max_length=100, blank=True, default="")
    role = models.CharField(
        _("role"), max_length=10, choices=SchedulerRole.choices, default=SchedulerRole.STANDBY
    )
    token = models.BigIntegerField(_("fencing token"), null=True, blank=True)
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    last_seen = models.DateTimeField(_("last seen"), default=timezone.now, db_index=True)
    stopped_at = models.DateTimeField(_("stopped"), null=True, blank=True)
    version = models.CharField(_("version"), max_length=50, blank=True)

    class Meta:
        verbose_name = _("scheduler instance")
        verbose_name_plural = _("scheduler instances")
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return f"{self.host}:{self.pid} ({self.role})"


class SchedulerLease(models.Model):
    """The single row deciding which scheduler starts runs; ``token`` fences old holders."""

    name = models.CharField(_("name"), max_length=50, primary_key=True, default="default")
    holder = models.ForeignKey(
        SchedulerInstance, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    token = models.BigIntegerField(_("fencing token"), default=0)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)

    class Meta:
        verbose_name = _("scheduler lease")
        verbose_name_plural = _("scheduler leases")

    def __str__(self) -> str:
        return f"lease {self.name} (token {self.token})"


# The counter row that numbers changes to Task rows (Counter.name).
TASK_REVISIONS = "tasks"


class Counter(models.Model):
    """A named number a write takes the next of, its row locked until that write commits.

    ``tasks`` numbers the changes to Task rows (``Task.revision``): a write that takes a
    revision holds the row until it commits, so the next revision is taken only after it,
    and revisions commit in their order. The scheduler's poll reads the tasks whose
    revision is above the last one it saw, and misses none, whatever the writers' clocks
    and however long their transactions.
    """

    name = models.CharField(_("name"), max_length=50, primary_key=True)
    value = models.BigIntegerField(_("value"), default=0)

    class Meta:
        verbose_name = _("counter")
        verbose_name_plural = _("counters")

    def __str__(self) -> str:
        return f"{self.name}: {self.value}"


def next_task_revision(using: str) -> int:
    """Take the next task revision, locking the counter until this transaction ends.

    The caller must be inside a transaction (``atomic``): the lock is what orders the
    commits. One statement: ``UPDATE ... RETURNING`` (PostgreSQL, SQLite 3.35+), or
    MySQL's ``LAST_INSERT_ID(expr)``, which the driver hands back as ``lastrowid``.
    A missing row (deleted, a test's flush) is created above every revision taken.
    """
    value = _increment(using)
    if value is not None:
        return value
    top = Task.objects.using(using).aggregate(top=Max("revision"))["top"] or 0
    try:
        with transaction.atomic(using=using):  # a savepoint: the caller's transaction goes on
            Counter.objects.using(using).create(name=TASK_REVISIONS, value=top + 1)
    except IntegrityError:  # another writer created it meanwhile
        value = _increment(using)
        assert value is not None
        return value
    return top + 1


def _increment(using: str) -> int | None:
    connection = connections[using]
    table = connection.ops.quote_name(Counter._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute(
                f"UPDATE {table} SET value = LAST_INSERT_ID(value + 1) WHERE name = %s",
                [TASK_REVISIONS],
            )
            return int(cursor.lastrowid) if cursor.rowcount else None
        if connection.vendor == "postgresql" or connection.features.can_return_columns_from_insert:
            cursor.execute(
                f"UPDATE {table} SET value = value + 1 WHERE name = %s RETURNING value",
                [TASK_REVISIONS],
            )
            row = cursor.fetchone()
            return int(row[0]) if row else None
        cursor.execute(f"UPDATE {table} SET value = value + 1 WHERE name = %s", [TASK_REVISIONS])
        if not cursor.rowcount:
            return None
        cursor.execute(f"SELECT value FROM {table} WHERE name = %s", [TASK_REVISIONS])
        return int(cursor.fetchone()[0])
