"""Progress events of the CLI's loads (direct or inside Dagster in-process), so the CLI can show them live.

The loader and the retry logic report; listeners (the CLI's display) draw. Three events:

- ``table_started(table)``: a table's load begins (the loader calls it before its first chunk), so a
  display measures rows/s over that table's own load, not from when every table was planned;
- a chunk finished (``reporter(table)`` is the loader's per-chunk callback);
- ``retry_scheduled(...)``: a step failed and will be tried again after a delay (by Dagster's
  retry policy, or by the direct runner's own loop).

Reporting never fails a load: a listener's error is logged and dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("sf2pg")


@dataclass(frozen=True)
class RetryScheduled:
    """A failed step that Dagster runs again in ``seconds``."""

    asset_key: tuple[str, ...]  # the table asset's key path (``[source_name, target]``)
    attempt: int  # the attempt that failed, from 1
    attempts: int  # attempts in all, the first included
    seconds: float  # until the next attempt starts
    reason: str  # the failure, one line


class Listener(Protocol):
    def on_table_started(self, table: str) -> None: ...
    def on_chunk(self, table: str, result: Any) -> None: ...
    def on_retry(self, event: RetryScheduled) -> None: ...


_listeners: list[Listener] = []
_lock = threading.Lock()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Send every event to ``listener``; returns the unsubscribe function."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            _listeners.remove(listener)

    return unsubscribe


def _emit(method: str, *args: Any) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            getattr(listener, method)(*args)
        except Exception:  # a display must never fail the load it shows
            log.debug("progress listener %r failed on %s", listener, method, exc_info=True)


def table_started(table: str) -> None:
    """``table``'s load begins now (called by the loader before its first chunk)."""
    _emit("on_table_started", table)


def reporter(table: str) -> Callable[[Any], None]:
    """The loader's per-chunk callback for ``table``: ``report(chunk_result)``."""

    def report(result: Any) -> None:
        _emit("on_chunk", table, result)

    return report


def retry_scheduled(event: RetryScheduled) -> None:
    _emit("on_retry", event)
