"""Hand runs to Django's Tasks framework and follow their results, batched.

A task declared with ``"execution": "tasks"`` is enqueued through ``django.tasks``
(Django >= 6.0) or the ``django-tasks`` backport (Django 5.2), so whatever worker
fleet serves that backend runs it. Every run is one call of
:data:`~django_rocket.executors.django_tasks.worker.call_in_worker`, which receives the
run id, the function's dotted path and its parameters, runs the function in the worker,
and returns how it ended (and where).

The scheduler's :class:`~django_rocket.executors.runner.Runner` asks
:class:`~django_rocket.executors.django_tasks.follower.TasksFollower` to look at every
result in flight at most once per ``ROCKET_POLL_INTERVAL``: one query for all of them on
django-tasks-db, one pipelined round trip on RQ, and a bounded number of ``get_result()``
calls on any other backend (:mod:`~django_rocket.executors.django_tasks.readers`).
Finished results become outcomes; the run row is updated with the worker's host in one
statement.

The parts: :mod:`.framework` (which Tasks framework is installed), :mod:`.worker` (what
runs in the worker), :mod:`.readers`, :mod:`.follower`, and :mod:`.checks` (what a task
entry with execution ``tasks`` needs).
"""
