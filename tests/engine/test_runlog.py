"""The run log's batched writes convert values exactly as Django's fields do."""

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection

from django_rocket.engine import runlog
from django_rocket.models import SchedulerLease, Task, TaskRun

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLES = {
    "run_id": [uuid.UUID("12345678-1234-5678-1234-567812345678"), str(uuid.uuid4())],
    "started_at": [
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 2, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
    ],
    "finished_at": [datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5)))],
    "runtime": [timedelta(seconds=1.5), timedelta(days=2, microseconds=7)],
    "result": [{"n": 1, "items": [1, 2]}, "released", 3],
    "status": ["success"],
    "pid": [4242],
}


@pytest.mark.parametrize(
    ("name", "value"), [(n, v) for n, values in SAMPLES.items() for v in values]
)
def test_fast_conversion_equals_the_fields_own(name, value):
    field = TaskRun._meta.get_field(name)
    convert = runlog._converter(field)
    fast = value if convert is None else convert(value)
    expected = field.get_db_prep_save(value, connection)
    if hasattr(expected, "dumps"):  # psycopg's Jsonb wrapper: compare what it wraps
        fast, expected = fast.obj, expected.obj
    assert fast == expected


TRICKY = ["", "NULL", "quote ' double \" back \\ brace {a,b} comma, ünïcødé ✓", "line\nbreak\ttab"]
RESULTS = [None, {"n": [1, {"k": "v"}]}, 'quote " back \\ ünï ✓', 3.25]
# Offsets, and durations a day or more, below a second and negative: each goes through
# the database's own text input on PostgreSQL.
OFFSETS = [
    timezone(timedelta(hours=h, minutes=m)) for h, m in [(0, 0), (2, 0), (-5, -30), (13, 45)]
]
RUNTIMES = [
    timedelta(seconds=2),
    timedelta(days=2, microseconds=7),
    timedelta(microseconds=1),
    timedelta(seconds=-1.5),
]


def test_rows_written_in_batches_read_back_as_written():
    task = Task.objects.create(name="t", func="tests.support.tasks.noop", start_cond="daily")
    parent = Task.objects.create(name="p", func="tests.support.tasks.noop", start_cond="daily")
    started = datetime(2026, 3, 29, 1, 30, 0, 250000, tzinfo=UTC)
    ids = [uuid.uuid4() for _ in TRICKY]
    runlog.insert_runs(
        [(parent.pk, ids[0], "fail", "scheduled", None, started, "h", None, None, "", "")]
        + [
            (task.pk, run_id, "running", "retry", None, started, "h", 7, None, text, "")
            for run_id, text in zip(ids[1:], TRICKY[1:], strict=True)
        ]
    )
    first = TaskRun.objects.get(run_id=ids[0])
    finished = started + timedelta(seconds=2, microseconds=5)
    runlog.finish_runs(
        (
            str(run_id),
            (
                "success",
                (finished + timedelta(seconds=i)).astimezone(OFFSETS[i]),
                RUNTIMES[i],
                t,
                t,
                r,
                [f"m.E{i}", "builtins.Exception"],
            ),
        )
        for i, (run_id, t, r) in enumerate(zip(ids, TRICKY, RESULTS, strict=True))
    )
    runs = {r.run_id: r for r in TaskRun.objects.all()}
    assert set(runs) == set(ids)
    assert runs[ids[0]].pk == first.pk and runs[ids[0]].pid is None
    for i, (run_id, text, result) in enumerate(zip(ids, TRICKY, RESULTS, strict=True)):
        run = runs[run_id]
        assert run.status == "success"
        assert run.started_at == started
        assert run.finished_at == finished + timedelta(seconds=i)
        assert run.runtime == RUNTIMES[i]
        assert (run.message, run.exc_text) == (text, text)
        assert run.result == result
        assert run.exception_types == [f"m.E{i}", "builtins.Exception"]
    assert runs[ids[1]].trigger == "retry" and runs[ids[1]].pid == 7


def test_a_run_finished_twice_in_one_batch_keeps_the_last_values():
    task = Task.objects.create(name="t", func="tests.support.tasks.noop", start_cond="daily")
    run_id = uuid.uuid4()
    started = datetime(2026, 1, 1, tzinfo=UTC)
    runlog.insert_runs(
        [(task.pk, run_id, "running", "scheduled", None, started, "h", 1, None, "", "")]
    )
    runlog.finish_runs(
        [
            (run_id, ("fail", started, None, "first", "", None, ["builtins.OSError"])),
            (str(run_id), ("terminate", started, None, "second", "", None, [])),
        ]
    )
    run = TaskRun.objects.get()
    assert (run.status, run.message, run.exception_types) == ("terminate", "second", [])


def test_one_statement_writes_a_tick_only_while_the_lease_is_held():
    """PostgreSQL's tick write: lease, finishes and starts together, or nothing at all."""
    if not runlog.writes_tick_at_once():
        pytest.skip("one statement a tick on PostgreSQL only")
    task = Task.objects.create(name="t", func="tests.support.tasks.noop", start_cond="daily")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    expires = now + timedelta(seconds=30)
    SchedulerLease.objects.create(name="default", token=3, expires_at=now)
    running, done, new = (str(uuid.uuid4()) for _ in range(3))
    runlog.insert_runs(
        [
            (task.pk, running, "running", "scheduled", None, now, "h", 1, None, "", ""),
            (task.pk, done, "crash", "scheduled", None, now, "h", 1, None, "", ""),
        ]
    )
    later = now + timedelta(seconds=2)
    finishes = [
        (run_id, ("success", later, timedelta(seconds=2), "", "", {"n": 1}, []))
        for run_id in (running, done)
    ]
    starts = [(task.pk, new, "running", "scheduled", None, later, "h", 1, None, "", "")]

    def log() -> dict[str, str]:
        return {str(r): s for r, s in TaskRun.objects.values_list("run_id", "status")}

    assert runlog.write_tick(finishes, starts, ("default", 2, expires)) is None  # fenced
    assert log() == {running: "running", done: "crash"}
    assert SchedulerLease.objects.get().expires_at == now
    assert runlog.write_tick(finishes, starts, ("default", 3, expires)) == 1
    assert log() == {running: "success", done: "crash", new: "running"}  # crash stays
    assert TaskRun.objects.get(run_id=running).result == {"n": 1}
    assert SchedulerLease.objects.get().expires_at == expires


def test_empty_batches_issue_no_statement(django_assert_num_queries):
    with django_assert_num_queries(0):
        runlog.insert_runs([])
        runlog.finish_runs([])


def test_run_ids_made_in_a_batch_are_distinct_time_ordered_uuids(monkeypatch):
    from django_rocket.engine import recorder

    # The id's clock is the system's (an id, not a recorded instant): pinned here.
    monkeypatch.setattr(recorder.time, "time_ns", lambda: 1_767_225_600_123_456_789)
    texts = list(recorder.new_run_ids(1000))
    ids = [uuid.UUID(text) for text in texts]
    assert texts == [str(u) for u in ids]  # canonical form
    assert len(set(ids)) == 1000
    assert {u.version for u in ids} == {7}
    assert {u.variant for u in ids} == {uuid.RFC_4122}
    assert {u.int >> 80 for u in ids} == {1_767_225_600_123}  # milliseconds since the epoch
    assert len({u.int & (1 << 62) - 1 for u in ids}) == 1000  # the random bits differ
    monkeypatch.setattr(recorder.time, "time_ns", lambda: 1_767_225_600_124_000_000)
    assert min(uuid.UUID(t) for t in recorder.new_run_ids(100)) > max(ids)  # sorts after
    assert list(recorder.new_run_ids(0)) == []


def test_a_large_batch_of_finishes_is_split_to_fit_a_mysql_packet(monkeypatch):
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(runlog, "MYSQL_DOCUMENT_BYTES", 2000)
    task = Task.objects.create(name="t", func="tests.support.tasks.noop", start_cond="daily")
    started = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [uuid.uuid4() for _ in range(20)]
    runlog.insert_runs(
        [(task.pk, i, "running", "scheduled", None, started, "h", 1, None, "", "") for i in ids]
    )
    text = "🚀" * 100  # 400 bytes, and the rest of the row: three rows a document
    with CaptureQueriesContext(connection) as ctx:
        runlog.finish_runs([(i, ("success", started, None, text, "", None, [])) for i in ids])
    assert TaskRun.objects.filter(status="success", message=text).count() == 20
    if runlog._dialect() == "json_table":
        assert len(ctx.captured_queries) == 7
