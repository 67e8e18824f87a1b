"""A run with no scheduler of its own (``runtask``) records the PID namespace of its pid.

Crash recovery ended such a run as ``crash`` when its pid was missing on a host of the
same name. A ``runtask`` in another container with that hostname (host networking, an
explicit ``hostname:``) numbers its processes apart, and its live run was recorded as
crashed. Its pid is now checked only from its own namespace, as a scheduler's since 0010.
The column is nullable without a default, so adding it alters the table in place
everywhere (a default would make Django copy the run log into a new table on SQLite).
Rows written before have none, and keep the check by hostname alone.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_rocket", "0010_schedulerinstance_pid_namespace"),
    ]

    operations = [
        migrations.AddField(
            model_name="taskrun",
            name="pid_namespace",
            field=models.CharField(
                blank=True, max_length=100, null=True, verbose_name="PID namespace"
            ),
        ),
    ]
