"""Helpers shared by the drivers (standard library only: each driver runs in its own venv)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def emit(event: str) -> None:
    """Tell the harness (reading our stdout) that an instant was reached, with its epoch."""
    sys.stdout.write(f"{event} {time.time():.6f}\n")
    sys.stdout.flush()


def load_config() -> dict[str, Any]:
    with open(sys.argv[1], encoding="utf-8") as fh:
        return json.load(fh)


def write_result(cfg: dict[str, Any], result: dict[str, Any]) -> None:
    with open(cfg["out"], "w", encoding="utf-8") as fh:
        json.dump(result, fh)


def summarise_ticks(cpu: list[float], wall: list[float]) -> dict[str, Any]:
    return {"tick_cpu": cpu, "tick_wall": wall}
