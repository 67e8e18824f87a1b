"""What the management commands and the admin share: runs, overviews, pruning, explain, export.

The write requests are importable from here: ``from django_rocket.ops import queue_run``.
"""

from django_rocket.ops.queue import RunRefused, queue_run, set_enabled

__all__ = ["RunRefused", "queue_run", "set_enabled"]
