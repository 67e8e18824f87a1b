"""Demo task functions: plain callables, nothing to decorate."""

import logging
import random

logger = logging.getLogger(__name__)


def heartbeat() -> str:
    logger.info("Still alive.")
    return "ok"


def flaky_report() -> dict:
    if random.random() < 0.6:
        raise ConnectionError("The report server did not answer (this demo fails at random).")
    return {"rows": random.randint(100, 999)}


def always_fails() -> None:
    raise ValueError("This demo task always fails; its traceback is in the admin.")
