"""A tiny hook so the CLI can show per-chunk progress of loads that run inside Dagster in-process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_listeners: list[Callable[[str, Any], None]] = []
_lock = threading.Lock()


def subscribe(listener: Callable[[str, Any], None]) -> Callable[[], None]:
    """Call ``listener(table, chunk_result)`` after every chunk; returns the unsubscribe function."""
    with _lock:
        _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def reporter(table: str) -> Callable[[Any], None]:
    def report(result: Any) -> None:
        for listener in list(_listeners):
            listener(table, result)

    return report
