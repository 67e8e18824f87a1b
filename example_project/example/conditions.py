"""A custom condition for the demo: one that raises, to show a silenced error.

Listed in ROCKET_CONDITION_MODULES, so condition strings can name it.
"""

from django_rocket.conditions import condition


@condition(recheck="1 minute")
def report_server_up() -> bool:
    """Ask the report server whether it is up; in this demo it never answers."""
    raise ConnectionError(
        "The report server's status page did not answer (this demo condition always raises)."
    )
