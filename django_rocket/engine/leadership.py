"""Which scheduler starts runs: the heartbeat, the lease, the role and the fencing token.

Every instance records a heartbeat; the one holding the ``SchedulerLease`` row is
active. Taking the lease increments its token, and every write of starts renews the
lease conditionally on that token, so an instance that lost it cannot start runs.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q

import django_rocket
from django_rocket.clock import Clock
from django_rocket.engine import runlog
from django_rocket.engine.clocks import (
    TOLERANCE,
    WallClockWatch,
    describe_offset,
    server_clock_offset,
)
from django_rocket.engine.connection import log_database_error, reconnect
from django_rocket.models import SchedulerInstance, SchedulerLease, SchedulerRole

logger = logging.getLogger("django_rocket.scheduler")

LEASE = "default"


class Leadership:
    """This process's instance row and its hold on the lease."""

    def __init__(
        self,
        clock: Clock,
        *,
        heartbeat_every: float,
        lease_timeout: timedelta,
        on_active: Callable[[datetime], None],
    ) -> None:
        self.clock = clock
        self.heartbeat_every = heartbeat_every
        self.lease_timeout = lease_timeout
        self.on_active = on_active
        # False between taking the lease and a successful on_active (a snapshot that could
        # not be read is read again at the next heartbeat, with the lease still held).
        self.activated = False
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.pid_namespace = pid_namespace()
        self.instance: SchedulerInstance | None = None
        self.token: int | None = None
        self.next_heartbeat: float = 0.0
        self.wall = WallClockWatch()

    @property
    def active(self) -> bool:
        """True once this instance holds the lease and has become active on it."""
        return self.token is not None and self.activated

    @property
    def instance_pk(self) -> int | None:
        return self.instance.pk if self.instance else None

    def register(self, now: datetime) -> SchedulerInstance:
        """Create this process's instance row (once) and the lease row if there is none."""
        self.instance = self.instance or SchedulerInstance.objects.create(
            host=self.host,
            pid=self.pid,
            pid_namespace=self.pid_namespace,
            started_at=now,
            last_seen=now,
            version=django_rocket.__version__,
        )
        SchedulerLease.objects.get_or_create(name=LEASE)
        self.check_server_clock()
        return self.instance

    def check_server_clock(self) -> None:
        """Warn when this machine's clock and the database server's disagree."""
        try:
            offset = server_clock_offset(connection)
        except DatabaseError:
            return  # the heartbeat that follows reports the database
        if offset is not None and abs(offset) > TOLERANCE:
            logger.warning(
                "%s. The lease's expiry and the runs' times are compared across machines: "
                "keep their clocks in sync (NTP), or a standby may take over early or late "
                "and intervals between runs stretch or shrink.",
                describe_offset(offset, connection.alias),
            )

    def notice_clock_step(self, now: datetime) -> None:
        """Warn when the wall clock stepped since the last heartbeat (NTP, a resumed VM)."""
        step = self.wall.step(now, self.clock.monotonic())
        if step is None:
            return
        if step < timedelta(0):
            effect = (
                "conditions read wall time, so a task whose interval or period started "
                "later than the clock now shows waits until the clock gets there again"
            )
        else:
            effect = "conditions take that time as passed: what fell due in it runs once now"
        logger.warning(
            "The wall clock stepped %s by %s between two heartbeats; %s. Keep the clock in "
            "sync with NTP, which slews the clock instead of stepping it.",
            "back" if step < timedelta(0) else "forward",
            abs(step),
            effect,
        )
        self.check_server_clock()

    def heartbeat(self, now: datetime) -> None:
        """Record that this instance is alive; renew or try to take the lease."""
        self.next_heartbeat = self.clock.monotonic() + self.heartbeat_every
        assert self.instance is not None
        self.notice_clock_step(now)
        try:
            SchedulerInstance.objects.filter(pk=self.instance.pk).update(last_seen=now)
            if self.token is not None:
                if not self.renew(now):
                    logger.warning("Lost the scheduler lease; standing by.")
                    self.stand_by()
                elif not self.activated:
                    self._activate(now)
            else:
                self._try_acquire(now)
        except DatabaseError:
            log_database_error(
                logger, logging.WARNING, "Heartbeat failed; will retry.", now=self.clock.monotonic()
            )
            reconnect()

    def renew(self, now: datetime) -> bool:
        """Extend the lease if this instance still holds it; the fenced write of every start."""
        name, token, expires_at = self.fence(now)
        with connection.cursor() as cursor:
            cursor.execute(
                runlog.renew_lease_statement(),
                [connection.ops.adapt_datetimefield_value(expires_at), name, token],
            )
            return bool(cursor.rowcount > 0)

    def fence(self, now: datetime) -> runlog.Fence:
        """The lease a write renews and is fenced by: its name, this token, the new expiry."""
        assert self.token is not None  # called with the lease held (heartbeat, start)
        return LEASE, self.token, now + self.lease_timeout

    def stand_by(self) -> None:
        """Give up the role after losing the lease."""
        self.token = None
        self.activated = False
        self._set_role(SchedulerRole.STANDBY)

    def _try_acquire(self, now: datetime) -> None:
        assert self.instance is not None
        with transaction.atomic():
            free = _lease_free(now)
            holder = (
                SchedulerLease.objects.filter(name=LEASE)
                .select_related("holder")
                .values_list("token", "holder__host", "holder__pid", "holder__pid_namespace")
                .first()
            )
            if holder and self.sees_pids_of(holder[1], holder[3]) and not pid_alive(holder[2]):
                # The holder was on this machine and its process is gone: no need to wait
                # for its lease to expire. Conditional on the token we saw, as always.
                free = free | Q(token=holder[0])
            taken = (
                SchedulerLease.objects.filter(name=LEASE)
                .filter(free)
                .update(
                    holder=self.instance,
                    token=F("token") + 1,
                    expires_at=now + self.lease_timeout,
                )
            )
            if not taken:
                return
            self.token = SchedulerLease.objects.values_list("token", flat=True).get(name=LEASE)
        self._set_role(SchedulerRole.ACTIVE)
        logger.info("This scheduler is now active (fencing token %s).", self.token)
        self._activate(now)

    @property
    def here(self) -> Here:
        return Here(self.host, self.pid, self.pid_namespace)

    def sees_pids_of(self, host: str | None, namespace: str | None) -> bool:
        """Whether a pid recorded by a scheduler on ``host`` names a process this one sees.

        The same hostname is not enough: containers sharing one (host networking, an
        explicit ``hostname:``) or machines cloned from one image each number their own
        processes, and a pid missing here may be a live scheduler there.
        """
        return bool(host) and host == self.host and namespace == self.pid_namespace

    def _activate(self, now: datetime) -> None:
        """Run on_active; a database error there leaves it for the next heartbeat."""
        self.activated = False
        self.on_active(now)  # a DatabaseError reaches heartbeat(), which logs it
        self.activated = True

    def _set_role(self, role: str) -> None:
        assert self.instance is not None
        self.instance.role = role
        SchedulerInstance.objects.filter(pk=self.instance.pk).update(role=role, token=self.token)

    def release(self, now: datetime) -> None:
        """Mark this instance stopped and free the lease if it holds it."""
        if self.instance is None:
            return
        SchedulerInstance.objects.filter(pk=self.instance.pk).update(
            role=SchedulerRole.STOPPED, stopped_at=now, last_seen=now, token=None
        )
        if self.token is not None:
            SchedulerLease.objects.filter(name=LEASE, token=self.token).update(
                holder=None, expires_at=now
            )


def _lease_free(now: datetime) -> Q:
    return Q(holder__isnull=True) | Q(expires_at__isnull=True) | Q(expires_at__lt=now)


class Here(NamedTuple):
    """This scheduler process, as rows record it: host, pid and where the pid is valid."""

    host: str
    pid: int
    pid_namespace: str


def pid_namespace() -> str:
    """Where this process's pid names it: the kernel's boot id and its PID namespace.

    Empty where ``/proc`` does not say (not Linux): there the hostname alone decides, as
    before the namespace was recorded.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}/pid:{namespace}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
