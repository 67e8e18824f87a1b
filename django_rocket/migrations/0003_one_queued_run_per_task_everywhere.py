"""One queued run per task on every database, and no partial index in the model.

The partial unique constraint of 0001 does not exist on MySQL and MariaDB (no partial
indexes there), so a generated column holding the task's id while a run is queued,
unique, replaces it everywhere. Queued duplicates a MySQL database may hold from
before are deleted first (the oldest of each task's queued runs is kept), or the
unique column could not be added.

The partial index "rocket_run_open" stays in the databases that have it (0001 created
it on PostgreSQL and SQLite) but leaves the model's state, so that MySQL and MariaDB
do not warn about it (models.W037) on every migrate. There 0001 made it a plain index
on status, which (status, started_at, id) makes redundant: it is dropped.
"""

from django.db import migrations, models
from django.db.models import Min


def delete_queued_duplicates(apps, schema_editor):
    TaskRun = apps.get_model("django_rocket", "TaskRun")
    queued = TaskRun.objects.using(schema_editor.connection.alias).filter(status="queued")
    keep = queued.values("task_id").annotate(first=Min("id")).values_list("first", flat=True)
    queued.exclude(id__in=list(keep)).delete()


def _open_index_sql(schema_editor, create: bool) -> str | None:
    """The statement that drops or recreates the plain "rocket_run_open" (MySQL), if due."""
    connection = schema_editor.connection
    if connection.features.supports_partial_indexes:
        return None
    table = "django_rocket_taskrun"
    with connection.cursor() as cursor:
        exists = "rocket_run_open" in connection.introspection.get_constraints(cursor, table)
    if exists == create:
        return None
    qn = schema_editor.quote_name
    if create:
        return f"CREATE INDEX {qn('rocket_run_open')} ON {qn(table)} ({qn('status')})"
    return f"DROP INDEX {qn('rocket_run_open')} ON {qn(table)}"


def drop_plain_open_index(apps, schema_editor):
    if sql := _open_index_sql(schema_editor, create=False):
        schema_editor.execute(sql)


def recreate_plain_open_index(apps, schema_editor):
    if sql := _open_index_sql(schema_editor, create=True):
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("django_rocket", "0002_taskrun_filter_indexes"),
    ]

    operations = [
        migrations.RunPython(delete_queued_duplicates, migrations.RunPython.noop, elidable=True),
        migrations.AddField(
            model_name="taskrun",
            name="queued_task",
            field=models.GeneratedField(
                db_persist=True,
                expression=models.Case(models.When(status="queued", then=models.F("task_id"))),
                output_field=models.BigIntegerField(null=True),
                unique=True,
                verbose_name="queued task",
            ),
        ),
        migrations.RemoveConstraint(
            model_name="taskrun",
            name="rocket_one_queued_run_per_task",
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="taskrun", name="rocket_run_open"),
            ],
            database_operations=[
                migrations.RunPython(drop_plain_open_index, recreate_plain_open_index),
            ],
        ),
    ]
