"""Migrating the test database to a given migration of django_rocket, as tests of migrations do."""

from django.db import connection
from django.db.migrations.executor import MigrationExecutor

APP = "django_rocket"


def migrate(target: str) -> None:
    """Apply or unapply django_rocket's migrations up to ``target`` on the test database."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([(APP, target)])


def latest() -> str:
    """The name of django_rocket's newest migration."""
    return MigrationExecutor(connection).loader.graph.leaf_nodes(APP)[0][1]
