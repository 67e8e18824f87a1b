"""The admin: declared tasks, their run log, and the scheduler processes.

Everything here is read-only except three requests — run now, retry, pause or
resume — which go through :mod:`django_rocket.ops.queue` as POST requests and
need the ``django_rocket.run_task`` permission. Tasks come from settings only;
nothing in the admin accepts a function path or code.

One module per ModelAdmin; importing them registers them at autodiscovery.
"""

from django_rocket.admin import scheduler, task, taskrun

__all__ = ["scheduler", "task", "taskrun"]
