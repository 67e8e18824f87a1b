"""Number the changes to Task rows, so the scheduler's poll misses none of them.

The poll read the tasks whose ``updated_at`` was at most two seconds behind the newest
stamp it had seen. Stamps come from each writer's clock and are taken before the
writer commits: a pause stamped further behind (a web server whose clock is behind, a
request that committed seconds after it paused the task) was never applied by a
running scheduler. Each change now takes the next number from the ``tasks`` counter,
whose row stays locked until the change commits, and the poll reads the tasks whose
``revision`` is above the last one it saw. Existing rows get revision 0: the
scheduler reads them all when it starts.
"""

from django.db import migrations, models


def create_counter(apps, schema_editor):
    counter = apps.get_model("django_rocket", "Counter")
    counter.objects.using(schema_editor.connection.alias).get_or_create(
        name="tasks", defaults={"value": 0}
    )


class Migration(migrations.Migration):
    dependencies = [
        ("django_rocket", "0012_taskrun_last_seen"),
    ]

    operations = [
        migrations.CreateModel(
            name="Counter",
            fields=[
                (
                    "name",
                    models.CharField(
                        max_length=50, primary_key=True, serialize=False, verbose_name="name"
                    ),
                ),
                ("value", models.BigIntegerField(default=0, verbose_name="value")),
            ],
            options={"verbose_name": "counter", "verbose_name_plural": "counters"},
        ),
        migrations.AddField(
            model_name="task",
            name="revision",
            field=models.BigIntegerField(
                db_default=0, db_index=True, default=0, editable=False, verbose_name="revision"
            ),
        ),
        migrations.RunPython(create_counter, migrations.RunPython.noop, elidable=True),
    ]
