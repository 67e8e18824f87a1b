"""Make the database refuse updates of runs, with a trigger, on each backend we test."""

from __future__ import annotations

from django.db import connection


def refuse_run_updates(name: str, message: str, *, only_status: str = "") -> None:
    """Refuse every UPDATE of a run (or only those setting ``only_status``).

    With ``only_status`` the refusal is an integrity error (the database refusing a
    value); without it, an error like a failing disk.
    """
    when = f"NEW.status = '{only_status}'" if only_status else "1 = 1"
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER {name} BEFORE UPDATE ON django_rocket_taskrun "
                f"WHEN {when} BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
        elif connection.vendor == "mysql":
            # errno 1048 makes mysqlclient raise IntegrityError; the default, OperationalError.
            errno = ", MYSQL_ERRNO = 1048" if only_status else ""
            cursor.execute(
                f"CREATE TRIGGER {name} BEFORE UPDATE ON django_rocket_taskrun FOR EACH ROW "
                f"IF {when} THEN SIGNAL SQLSTATE '{'23000' if only_status else '45000'}' "
                f"SET MESSAGE_TEXT = '{message}'{errno}; END IF"
            )
        else:
            code = " USING ERRCODE = 'check_violation'" if only_status else ""
            cursor.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN "
                f"IF {when} THEN RAISE EXCEPTION '{message}'{code}; END IF; RETURN NEW; END $$ "
                "LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER {name} BEFORE UPDATE ON django_rocket_taskrun "
                f"FOR EACH ROW EXECUTE FUNCTION {name}()"
            )


def allow_run_updates(name: str) -> None:
    """Drop the trigger :func:`refuse_run_updates` made."""
    with connection.cursor() as cursor:
        if connection.vendor in ("sqlite", "mysql"):
            cursor.execute(f"DROP TRIGGER {name}")
        else:
            cursor.execute(f"DROP TRIGGER {name} ON django_rocket_taskrun")
            cursor.execute(f"DROP FUNCTION {name}()")
