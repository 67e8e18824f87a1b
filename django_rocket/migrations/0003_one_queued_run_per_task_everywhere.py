"""One queued run per task on every database, and no partial index in the model.

The partial unique constraint of 0001 does not exist on MySQL and MariaDB (no partial
indexes there), so a generated column holding the task's id while a run is queued,
unique, replaces it everywhere. Queued duplicates a MySQL database may hold from
before are deleted first (the oldest of each task's queued runs is kept), or the
unique column could not be added.

The partial index "rocket_run_open" stays in the databases that have it (0001 created
it on PostgreSQL and SQLite) but leaves the model's state, so that MySQL and MariaDB
do not warn about it (models.W037) on every migrate.
"""

from django.db import migrations, models
from django.db.models import Min


def delete_queued_duplicates(apps, schema_editor):
    TaskRun = apps.get_model("django_rocket", "TaskRun")
    queued = TaskRun.objects.using(schema_editor.connection.alias).filter(status="queued")
    keep = queued.values("task_id").annotate(first=Min("id")).values_list("first", flat=True)
    queued.exclude(id__in=list(keep)).delete()


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
        ),
    ]
