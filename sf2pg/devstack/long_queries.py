"""Queries that run long, answered the way Snowflake answers them: in progress, polled, timed out, aborted.

Snowflake never holds a query's HTTP request for longer than about 45 seconds: a query still running
then is answered with code ``333333`` and a ``getResultUrl`` the connector polls (each poll again
waits up to 45 seconds), so no read ever hits the connector's 60-second socket timeout. A statement
running past its ``STATEMENT_TIMEOUT_IN_SECONDS`` (session or statement parameter) is cancelled by the
server with error ``000630``; one the client aborts (``abort-request``) fails with ``000604``.
fakesnow holds the request until the query ends and ignores both, so a query longer than a minute
would be re-sent by the connector forever. ``SYSTEM$WAIT(n)`` (seconds) makes a query as slow as a
test needs.

``SF2PG_EMULATOR_QUERY_WAIT`` (environment of the emulator process): seconds a request waits for
its query before answering "in progress" (default 45, as Snowflake).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

IN_PROGRESS = "333333"
ABANDONED_SECONDS = 3600.0  # a query nobody polls for this long is forgotten
ABORT_DELAY_SECONDS = 0.2


@dataclass
class _Job:
    task: asyncio.Task
    token: str
    timeout: float | None  # seconds, from STATEMENT_TIMEOUT_IN_SECONDS; None: no limit
    started: float = field(default_factory=time.monotonic)
    polled: float = field(default_factory=time.monotonic)
    aborted: asyncio.Event = field(default_factory=asyncio.Event)


class LongQueries:
    """Runs each query as a task and answers within ``wait_seconds``: its result, or "in progress"."""

    def __init__(self, wait_seconds: float | None = None) -> None:
        self.wait_seconds = (
            float(os.environ.get("SF2PG_EMULATOR_QUERY_WAIT", "45")) if wait_seconds is None else wait_seconds
        )
        self._jobs: dict[str, _Job] = {}
        self._by_request: dict[str, str] = {}

    def submit(self, query_request: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        """Wrap fakesnow's query endpoint. ``request.state.sf_parameters`` holds the statement's
        effective parameters (session, then statement)."""

        async def endpoint(request: Any) -> Any:
            import fakesnow.server

            self._forget_abandoned()
            request_id = request.query_params.get("requestId")
            key = self._by_request.get(request_id or "")
            if key not in self._jobs:  # a retried POST (same requestId) rejoins its running query
                key = uuid.uuid4().hex
                timeout = int(getattr(request.state, "sf_parameters", {}).get("STATEMENT_TIMEOUT_IN_SECONDS") or 0)
                self._jobs[key] = _Job(
                    asyncio.create_task(query_request(request)),
                    fakesnow.server.to_token(request),
                    float(timeout) if timeout > 0 else None,
                )
                if request_id:
                    self._by_request[request_id] = key
            return await self._answer(key)

        return endpoint

    async def result(self, request: Any) -> Any:
        """``GET /queries/{key}/result``: the poll that follows an "in progress" answer."""
        import fakesnow.server

        key = request.path_params["key"]
        job = self._jobs.get(key)
        if job is None or job.token != fakesnow.server.to_token(request):
            return _error("000709", f"Statement {key} not found", "02000")
        return await self._answer(key)

    async def abort(self, request: Any) -> Any:
        """``POST /queries/v1/abort-request``: the query named by its requestId fails with 000604."""
        import gzip
        import json

        from starlette.responses import JSONResponse

        body = await request.body()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request_id = json.loads(body or b"{}").get("requestId")
        key = self._by_request.get(request_id or "")
        if key in self._jobs:  # as on Snowflake, the cancel lands a moment after it is acknowledged
            asyncio.get_running_loop().call_later(ABORT_DELAY_SECONDS, self._jobs[key].aborted.set)
        return JSONResponse({"data": None, "code": None, "message": None, "success": True})

    async def _answer(self, key: str) -> Any:
        job = self._jobs[key]
        job.polled = time.monotonic()
        wait = self.wait_seconds
        if job.timeout is not None:
            wait = min(wait, max(0.0, job.started + job.timeout - time.monotonic()))
        aborted = asyncio.ensure_future(job.aborted.wait())
        done, _ = await asyncio.wait({job.task, aborted}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        aborted.cancel()
        if job.task in done:
            self._forget(key)
            return job.task.result()
        if job.aborted.is_set():
            self._forget(key, interrupt=True)
            return _error("000604", "SQL execution canceled", "57014")
        if job.timeout is not None and time.monotonic() >= job.started + job.timeout:
            self._forget(key, interrupt=True)
            return _error(
                "000630",
                f"Statement reached its statement or warehouse timeout of {int(job.timeout)} second(s) and was canceled.",
                "57014",
            )
        return _in_progress(key)

    def _forget(self, key: str, interrupt: bool = False) -> None:
        job = self._jobs.pop(key, None)
        for request_id, known in list(self._by_request.items()):
            if known == key:
                del self._by_request[request_id]
        if job is not None and interrupt:
            _interrupt(job.token)

    def _forget_abandoned(self) -> None:
        now = time.monotonic()
        for key, job in list(self._jobs.items()):
            if now - job.polled > ABANDONED_SECONDS:
                self._forget(key, interrupt=not job.task.done())


def _interrupt(token: str) -> None:
    """Best effort: stop the session's DuckDB statement (a Python sleep inside it runs to its end)."""
    import fakesnow.server

    conn = fakesnow.server.sessions.get(token)
    duck = getattr(conn, "_duck_conn", None)
    if duck is not None:
        duck.interrupt()


def _in_progress(key: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(
        {
            "data": {
                "queryId": key,
                "getResultUrl": f"/queries/{key}/result",
                "queryAbortsAfterSecs": 300,
                "progressDesc": None,
            },
            "code": IN_PROGRESS,
            "message": "Query execution in progress. Query will be continued to be executed after the client "
            "connection is closed.",
            "success": True,
        }
    )


def _error(code: str, message: str, sql_state: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(
        {
            "data": {"errorCode": code, "sqlState": sql_state, "internalError": False},
            "code": code,
            "message": message,
            "success": False,
            "headers": None,
        }
    )


def register_system_wait(duck_conn: Any) -> None:
    """``SYSTEM$WAIT(seconds)`` as Snowflake has it, on the emulator's DuckDB (seen by every session)."""

    def system_wait(seconds: int) -> str:
        time.sleep(seconds)
        return f"waited {seconds} seconds"

    duck_conn.create_function("system$wait", system_wait, ["BIGINT"], "VARCHAR", side_effects=True)
