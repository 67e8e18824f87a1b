"""A ``runtask`` run records, while it runs, when its process last said it was alive.

Crash recovery could not see a ``runtask`` process on another host or in another
container, so it took the run as gone once it was older than its task's timeout plus
the lease. But ``runtask`` does not enforce the timeout: a run going on past it was
recorded as ``crash`` (and alerted as one) while it went on, and its task could start
again beside it. The process now writes ``last_seen`` every ``ROCKET_HEARTBEAT``, and
recovery judges it as it judges a scheduler, by a heartbeat older than the lease. The
column is nullable without a default, so adding it alters the table in place everywhere;
rows written before have none, and keep the timeout rule.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_rocket", "0011_taskrun_pid_namespace"),
    ]

    operations = [
        migrations.AddField(
            model_name="taskrun",
            name="last_seen",
            field=models.DateTimeField(
                blank=True, editable=False, null=True, verbose_name="last seen"
            ),
        ),
    ]
