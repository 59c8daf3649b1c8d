"""The fakesnow HTTP server as a local Snowflake stand-in, with the emulator's known bugs patched.

Run as ``python -m sf2pg.devstack.emulator --port P --db-path DIR``. The patches live here, in the
launcher, so production code never special-cases the emulator. Beyond the fixes, the launcher serves
results and long queries the way real Snowflake does (``serve_like_snowflake``): large results in
chunks downloaded from URLs (``result_chunks.py``), queries longer than a poll answered "in progress"
and cancelled by their statement timeout (``long_queries.py``), logins and statement parameters kept
(``session_state.py``). Their settings come from this process's environment (``start_emulator``'s
``settings``):

- ``SF2PG_EMULATOR_INLINE_ROWS`` (default 2000): rows of a result's first chunk, sent inline;
- ``SF2PG_EMULATOR_CHUNK_ROWS`` (default 16000): rows of the first downloaded chunk, doubling after;
- ``SF2PG_EMULATOR_MAX_CHUNK_ROWS`` (default 256000): the most rows a chunk grows to;
- ``SF2PG_EMULATOR_QUERY_WAIT`` (default 45): seconds a query request waits before "in progress".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

FAKE_USER = "fake"
FAKE_PASSWORD = "snow"
FAKE_ACCOUNT = "fakesnow"


def _timestamp_to_sf_struct_with_nulls(ts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """fakesnow 0.12 builds this struct without a null mask, so NULL timestamps arrive as 1970-01-01."""
    if isinstance(ts, pa.ChunkedArray):
        ts = ts.combine_chunks()
    if not isinstance(ts.type, pa.TimestampType):
        raise ValueError(f"Expected TimestampArray, got {type(ts)}")
    whole_seconds = pc.floor_temporal(ts, unit="second")
    epoch = pc.divide(whole_seconds.cast(pa.int64()), _units_per_second(ts.type)).fill_null(0)
    fraction = pc.round(pc.multiply(pc.subsecond(ts), 1_000_000_000)).cast(pa.int32()).fill_null(0)
    arrays = [epoch, fraction]
    fields = [pa.field("epoch", pa.int64(), nullable=False), pa.field("fraction", pa.int32(), nullable=False)]
    if ts.type.tz:
        arrays.append(pa.array([1440] * len(ts), type=pa.int32()))
        fields.append(pa.field("timezone", pa.int32(), nullable=False))
    return pa.StructArray.from_arrays(arrays, fields=fields, mask=ts.is_null())


def _units_per_second(ts_type: pa.TimestampType) -> int:
    return {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[ts_type.unit]


def patch_fakesnow() -> None:
    """Apply the emulator fixes the test harness and the demo both rely on."""
    import fakesnow.arrow
    import fakesnow.server
    from starlette.routing import request_response

    fakesnow.arrow.timestamp_to_sf_struct = _timestamp_to_sf_struct_with_nulls
    for route in fakesnow.server.app.routes:
        if getattr(route, "path", None) == "/session/v1/login-request":
            route.endpoint = _with_master_token(route.endpoint)
            route.app = request_response(route.endpoint)
    from sf2pg.devstack import functions, translation_cache

    functions.install()  # the Snowflake functions the checks use
    translation_cache.install()  # each SQL text parsed and rewritten once


def _with_master_token(login_request: Any) -> Any:
    """fakesnow 0.12's login answer has no ``masterToken``, without which the connector cannot log out:
    ``close()`` fails quietly, the client keeps the connection open and the emulator keeps the session."""
    from starlette.responses import JSONResponse

    async def login(request: Any) -> Any:
        response = await login_request(request)
        body = json.loads(response.body)
        if body.get("success"):
            body["data"].setdefault("masterToken", body["data"]["token"])
        return JSONResponse(body, status_code=response.status_code)

    return login


def _register_macros_without_database(fs: object) -> None:
    """fakesnow creates its helper macros (e.g. ``_fs_to_timestamp``, behind every CAST to TIMESTAMP)
    only inside named databases, so a session with no current database cannot run such a cast.
    Real Snowflake needs no current database for fully qualified queries; register them in DuckDB's
    default catalog too."""
    from fakesnow import macros

    fs.duck_conn.execute(macros.creation_sql("memory"))  # type: ignore[attr-defined]


def _attach_existing_databases(fs: object, db_path: Path) -> None:
    """fakesnow attaches a persisted database only on CREATE DATABASE or a login naming it, so after a
    restart a fully qualified query in a session without a database finds nothing. Attach them all."""
    from fakesnow import info_schema, macros

    conn = fs.duck_conn  # type: ignore[attr-defined]
    for db_file in sorted(db_path.glob("*.db")):
        name = db_file.stem
        if conn.execute("SELECT 1 FROM information_schema.schemata WHERE upper(catalog_name) = ?", [name]).fetchone():
            continue
        conn.execute(f"ATTACH DATABASE '{db_file}' AS {name}")
        conn.execute(info_schema.per_db_creation_sql(name))
        conn.execute(macros.creation_sql(name))


def serve_like_snowflake(duck_conn: Any) -> None:
    """Chunked results, long-query polling, statement timeouts and session state on fakesnow's routes."""
    import fakesnow.server
    from starlette.routing import Route, request_response

    from sf2pg.devstack.long_queries import LongQueries, register_system_wait
    from sf2pg.devstack.result_chunks import ROUTE, ChunkSizes, ResultChunking
    from sf2pg.devstack.session_state import SessionState

    state, chunking, queries = SessionState(), ResultChunking(ChunkSizes.from_env()), LongQueries()
    fakesnow.server.to_ipc = chunking.to_ipc(fakesnow.server.to_ipc)
    wrappers = {
        "/session/v1/login-request": state.login,
        "/queries/v1/query-request": lambda endpoint: state.query(queries.submit(chunking.answer(endpoint))),
        "/session": state.end,
        "/queries/v1/abort-request": lambda _: queries.abort,
    }
    for route in fakesnow.server.app.routes:
        if (wrap := wrappers.get(getattr(route, "path", None))) is not None:
            route.endpoint = wrap(route.endpoint)
            route.app = request_response(route.endpoint)
    fakesnow.server.app.routes.extend(
        [
            Route("/queries/{key}/result", queries.result, methods=["GET"]),
            Route(ROUTE + "/{path:path}", chunking.download, methods=["GET"]),
            Route(INTROSPECT + "/logins", state.introspect_logins, methods=["GET"]),
            Route(INTROSPECT + "/queries", state.introspect_queries, methods=["GET"]),
            Route(INTROSPECT + "/downloads", chunking.introspect_downloads, methods=["GET"]),
        ]
    )
    register_system_wait(duck_conn)


INTROSPECT = "/sf2pg-devstack/v1"


def serve(host: str, port: int, db_path: str | None) -> None:
    """Run the emulator in this process until SIGINT/SIGTERM."""
    import fakesnow

    run_server = fakesnow.server  # grab the function: importing the submodule rebinds the name
    patch_fakesnow()
    import fakesnow.server
    from fakesnow.instance import FakeSnow

    if db_path:
        # fakesnow's server mode ignores --db_path; persisting needs the shared instance set by hand.
        Path(db_path).mkdir(parents=True, exist_ok=True)
        fakesnow.server.shared_fs = FakeSnow(db_path=db_path)
    _register_macros_without_database(fakesnow.server.shared_fs)
    if db_path:
        _attach_existing_databases(fakesnow.server.shared_fs, Path(db_path))
    serve_like_snowflake(fakesnow.server.shared_fs.duck_conn)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with run_server(port=port, host=host):
        print(f"fakesnow listening on {host}:{port}", flush=True)
        stop.wait()


@dataclass
class Emulator:
    """A running emulator subprocess and the settings a Snowflake client needs to reach it."""

    host: str
    port: int
    process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        """SNOWFLAKE_* variables that point sf2pg at this emulator."""
        return {
            "SNOWFLAKE_ACCOUNT": FAKE_ACCOUNT,
            "SNOWFLAKE_USER": FAKE_USER,
            "SNOWFLAKE_PASSWORD": FAKE_PASSWORD,
            "SNOWFLAKE_HOST": self.host,
            "SNOWFLAKE_PORT": str(self.port),
            "SNOWFLAKE_PROTOCOL": "http",
        }

    def logins(self) -> list[dict[str, Any]]:
        """What each login sent (authenticator, session parameters; tokens only as digests)."""
        return self._introspect("logins")

    def queries(self) -> list[dict[str, Any]]:
        """What each statement sent: its text, effective QUERY_TAG and statement parameters."""
        return self._introspect("queries")

    def downloads(self) -> int:
        """How many result chunks clients have downloaded from this emulator so far."""
        return self._introspect("downloads")["served"]

    def _introspect(self, what: str) -> Any:
        from urllib.request import urlopen

        with urlopen(f"http://{self.host}:{self.port}{INTROSPECT}/{what}", timeout=10) as response:
            return json.loads(response.read())

    def stop(self, grace: float = 10) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds (uvicorn waits for idle keep-alive connections;
        an in-memory emulator at the end of a test session has nothing to save)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port(host: str = "127.0.0.1") -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_open(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def start_emulator(
    db_path: Path | None,
    port: int | None = None,
    host: str = "127.0.0.1",
    log_path: Path | None = None,
    settings: Mapping[str, str] | None = None,
) -> Emulator:
    """Start the emulator in a child process and wait until it accepts connections.

    With a ``db_path``, an emulator this folder started earlier (recorded in ``emulator.json`` beside
    it) is reused; an unrelated server on the wanted port is never reused: another port is taken.
    ``settings`` are ``SF2PG_EMULATOR_*`` variables for the child (chunk sizes, query wait).
    """
    state = db_path.parent / "emulator.json" if db_path else None
    if state and state.exists():
        known = json.loads(state.read_text())
        if _alive(known["pid"]) and port_is_open(host, known["port"]):
            return Emulator(host, known["port"])
    if not port or port_is_open(host, port):
        port = free_port(host)
    cmd = [sys.executable, "-m", "sf2pg.devstack.emulator", "--host", host, "--port", str(port)]
    if db_path:
        cmd += ["--db-path", str(db_path)]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    env = {**os.environ, **(settings or {}), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while not port_is_open(host, port):
        if proc.poll() is not None:
            raise RuntimeError(f"the Snowflake emulator exited early (code {proc.returncode}); see {log_path}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the Snowflake emulator did not start within 60 s; see {log_path}")
        time.sleep(0.1)
    if state:
        state.write_text(json.dumps({"pid": proc.pid, "port": port}))
    return Emulator(host, port, proc)


def stop_recorded_emulator(db_path: Path) -> bool:
    """Stop an emulator a previous run left behind for this folder (e.g. ``sf2pg demo --keep-running``);
    True when one was still running."""
    state = db_path.parent / "emulator.json"
    if not state.exists():
        return False
    known = json.loads(state.read_text())
    running = _alive(known["pid"])
    if running:
        os.kill(known["pid"], signal.SIGTERM)
    state.unlink()
    return running


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fakesnow Snowflake emulator with sf2pg's fixes.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--db-path", default=None, help="folder for persistent databases (default: in memory)")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.db_path)


if __name__ == "__main__":
    main()
