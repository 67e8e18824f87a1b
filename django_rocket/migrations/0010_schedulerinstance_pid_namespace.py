"""Each scheduler instance records the PID namespace its pid belongs to.

A standby that finds the lease holder on its own host checks whether the holder's pid is
still alive and, if not, takes over without waiting for the lease to expire. Two
containers (or two cloned machines) can share a hostname without sharing processes; the
pid is now checked only when the holder's kernel boot and PID namespace are this
process's. Rows written before have none, and their holders are waited for.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_rocket", "0009_taskrun_task_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="schedulerinstance",
            name="pid_namespace",
            field=models.CharField(
                blank=True, default="", max_length=100, verbose_name="PID namespace"
            ),
        ),
    ]
