"""The run log's task column loses its own index: (task, started_at) serves it.

Every look-up of runs by task, the foreign key's checks and the cascade when a task is
deleted can use "rocket_run_task_started", whose first column is the task: the
single-column index only cost a write for every run started (on SQLite a tick of 54
runs wrote about 47 more pages with it). MySQL and MariaDB never had it (InnoDB's own
index for the foreign key goes once another index leads with the column), so only
PostgreSQL and SQLite drop it.

Only the index is dropped: ``AlterField`` would drop and re-add the foreign key, which
validates every row again (PostgreSQL) or copies the whole table (SQLite).
"""

import django.db.models.deletion
from django.db import migrations, models

TABLE = "django_rocket_taskrun"
# The name Django gave the foreign key's index in 0001 (a hash of table and column).
INDEX = "django_rocket_taskrun_task_id_6dacfc46"


def _own_task_indexes(schema_editor) -> list[str]:
    """Plain indexes on the task column alone (none on MySQL: InnoDB keeps what it needs)."""
    connection = schema_editor.connection
    if connection.vendor == "mysql":
        return []
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    return [
        name
        for name, c in constraints.items()
        if c["columns"] == ["task_id"]
        and c["index"]
        and not (c["unique"] or c["primary_key"] or c["foreign_key"])
    ]


def drop_task_index(apps, schema_editor):
    for name in _own_task_indexes(schema_editor):
        schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def recreate_task_index(apps, schema_editor):
    if schema_editor.connection.vendor == "mysql" or _own_task_indexes(schema_editor):
        return
    qn = schema_editor.quote_name
    schema_editor.execute(f"CREATE INDEX {qn(INDEX)} ON {qn(TABLE)} ({qn('task_id')})")


class Migration(migrations.Migration):
    dependencies = [
        ("django_rocket", "0008_task_execution_options"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="taskrun",
                    name="task",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="runs",
                        to="django_rocket.task",
                        verbose_name="task",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(drop_task_index, recreate_task_index),
            ],
        ),
    ]
