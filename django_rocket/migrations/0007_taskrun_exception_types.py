# Added by issue 22: retry(on=[...]) reads the failed run's exception class and bases.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_rocket', '0006_taskrun_due_at'),
    ]

    operations = [
        migrations.AddField(
            model_name='taskrun',
            name='exception_types',
            field=models.JSONField(blank=True, null=True, verbose_name='exception types'),
        ),
    ]
