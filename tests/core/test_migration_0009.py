"""Migration 0009 drops the run log's own index on the task column, and puts it back."""

import pytest
from django.db import connection

from tests.support.migrations import latest, migrate

TABLE = "django_rocket_taskrun"


def task_indexes() -> dict[str, list[str]]:
    """Non-unique indexes whose first column is the task (name: columns)."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    return {
        name: c["columns"]
        for name, c in constraints.items()
        if c["index"] and not c["unique"] and c["columns"][:1] == ["task_id"]
    }


@pytest.mark.django_db(transaction=True)
def test_0009_drops_only_the_task_index_and_reverses():
    newest = latest()
    after = task_indexes()
    assert ["task_id"] not in after.values()
    # What serves look-ups by task instead (and InnoDB's foreign key, on MySQL).
    assert after["rocket_run_task_started"] == ["task_id", "started_at"]
    try:
        migrate("0008_task_execution_options")
        before = task_indexes()
        if connection.vendor == "mysql":  # InnoDB never kept one: nothing to drop or restore
            assert before == after
        else:
            assert before == {**after, "django_rocket_taskrun_task_id_6dacfc46": ["task_id"]}
        migrate("0009_taskrun_task_index")
        assert task_indexes() == after
    finally:
        migrate(newest)
    with connection.cursor() as cursor:  # the foreign key itself stays
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    assert any(
        c["foreign_key"] == ("django_rocket_task", "id") and c["columns"] == ["task_id"]
        for c in constraints.values()
    )
