"""Preloaded by the fork server: Django is set up once, and each run forks from here."""

import os

import django

if os.environ.get("DJANGO_SETTINGS_MODULE"):
    django.setup()
    from django.db import connections

    # A fork must never share a database connection with its parent.
    connections.close_all()
    django._rocket_ready = True  # type: ignore[attr-defined]
