"""Records logged in a real forkserver child reach the handlers of this process."""

import logging
import multiprocessing
import os
import signal
import time

import pytest

from django_rocket.executors.logforward import LogListener, forward_to


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Unpicklable:
    def __reduce__(self):
        raise TypeError("not picklable")

    def __repr__(self) -> str:
        return "<Unpicklable>"


def child_logs(conn, marker: str) -> None:
    # A handler the child's own logging configuration set up must stay silent.
    own = logging.FileHandler(marker)
    logging.getLogger("tests.child").addHandler(own)
    logging.getLogger("tests.child").propagate = False
    forward_to(conn)
    log = logging.getLogger("tests.child")
    log.warning("hello %s", "parent", extra={"task_name": "t1", "odd": Unpicklable()})
    try:
        print(1 / 0)
    except ZeroDivisionError:
        log.exception("it failed")
    logging.getLogger("django_rocket.task").error(
        "task record", extra={"task_name": "t2", "run_id": "r-1", "action": "fail"}
    )
    log.debug("below the level: never created")


def child_sleeps(conn) -> None:
    forward_to(conn)
    logging.getLogger("tests.child").warning("about to sleep")
    time.sleep(60)


@pytest.fixture
def forkserver():
    return multiprocessing.get_context("forkserver")


@pytest.fixture
def collect():
    handler = Collect()
    loggers = [logging.getLogger("tests.child"), logging.getLogger("django_rocket.task")]
    for item in loggers:
        item.addHandler(handler)
    yield handler
    for item in loggers:
        item.removeHandler(handler)


def start(ctx, listener: LogListener, target, *args):
    conn = listener.channel()
    proc = ctx.Process(target=target, args=(conn, *args))
    proc.start()
    conn.close()
    return proc


def test_child_records_reach_parent_handlers(forkserver, collect, tmp_path):
    listener = LogListener()
    marker = tmp_path / "child-handler.log"
    proc = start(forkserver, listener, child_logs, str(marker))
    proc.join(30)
    assert proc.exitcode == 0
    assert listener.wait_idle(10)
    assert listener.close(timeout=2)

    hello, failed, task = collect.records
    assert hello.name == "tests.child"
    assert hello.getMessage() == "hello parent"
    assert hello.levelno == logging.WARNING
    assert hello.task_name == "t1"
    assert hello.odd == "<Unpicklable>"
    assert hello.process == proc.pid
    assert "ZeroDivisionError" in failed.exc_text
    assert failed.exc_info is None
    assert (task.name, task.task_name, task.run_id, task.action) == (
        "django_rocket.task",
        "t2",
        "r-1",
        "fail",
    )
    assert marker.read_text() == ""


def test_parent_formatter_renders_forwarded_traceback(forkserver, tmp_path):
    listener = LogListener()
    handler = Collect()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.getLogger("tests.child").addHandler(handler)
    try:
        proc = start(forkserver, listener, child_logs, str(tmp_path / "x.log"))
        proc.join(30)
        listener.close(timeout=5)
    finally:
        logging.getLogger("tests.child").removeHandler(handler)
    text = handler.format(handler.records[1])
    assert text.startswith("tests.child: it failed\nTraceback")
    assert "print(1 / 0)" in text


def test_a_killed_child_ends_its_channel(forkserver, collect):
    listener = LogListener()
    proc = start(forkserver, listener, child_sleeps)
    deadline = time.monotonic() + 20
    while not collect.records and time.monotonic() < deadline:
        time.sleep(0.01)
    assert collect.records[0].getMessage() == "about to sleep"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert listener.wait_idle(5)
    started = time.monotonic()
    assert listener.close(timeout=2)
    assert time.monotonic() - started < 1


def test_close_is_bounded_while_a_child_still_runs(forkserver, collect, caplog):
    listener = LogListener()
    proc = start(forkserver, listener, child_sleeps)
    try:
        started = time.monotonic()
        assert listener.close(timeout=0.5) is False
        assert time.monotonic() - started < 2.5
        assert "still writing" in caplog.text
    finally:
        proc.kill()
        proc.join(10)


def test_a_raising_parent_handler_is_logged_and_the_listener_goes_on(forkserver, tmp_path, caplog):
    class Raising(logging.Handler):
        def handle(self, record):
            raise RuntimeError("handler broke")

    bad = Raising()
    good = Collect()
    log = logging.getLogger("tests.child")
    log.addHandler(bad)
    logging.getLogger("django_rocket.task").addHandler(good)
    listener = LogListener()
    try:
        proc = start(forkserver, listener, child_logs, str(tmp_path / "x.log"))
        proc.join(30)
        assert listener.close(timeout=5)
    finally:
        log.removeHandler(bad)
        logging.getLogger("django_rocket.task").removeHandler(good)
    assert [r.task_name for r in good.records] == ["t2"]
    assert "A record forwarded from a child process was lost." in caplog.text
    assert "handler broke" in caplog.text


def test_channel_after_close_is_refused():
    listener = LogListener()
    listener.close()
    with pytest.raises(RuntimeError, match="closed"):
        listener.channel()
