"""A module no runtime task may import: importing it leaves a mark the tests look for."""

import os

os.environ["ROCKET_TEST_FORBIDDEN_IMPORTED"] = "1"


def boom() -> None:
    raise AssertionError("a function off ROCKET_TASK_FUNCTIONS was run")
