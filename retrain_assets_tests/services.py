"""Real services that tests start and stop themselves: an MLflow tracking server and a PostgreSQL
server, each on loopback and a free port, each in its own process group, each stopped in the
fixture's teardown, which then asserts that no process of it is left.

* :func:`mlflow_server` runs ``mlflow server`` (this venv's) as a team would run it: a database
  backend store and **proxied artifacts** (``--artifacts-destination``). Clients then need only
  the HTTP URI: the server hands out ``mlflow-artifacts:/`` locations and moves the bytes itself,
  so run workers, the serving smoke test and model consumers need no access to the artifact store
  (and no cloud credentials). With ``--default-artifact-root`` every client would write to and read
  from that root directly, which works here only because everything shares one disk.
* :func:`postgres` runs Debian's PostgreSQL server binaries (``/usr/lib/postgresql/<v>/bin``),
  as the unprivileged ``postgres`` user when the tests run as root (CI), with a data folder and a
  Unix-socket folder of its own and a password (Dagster connects over TCP with it).
  :func:`postgres_home` is a DAGSTER_HOME holding ``deploy/postgres/dagster.yaml`` with the
  ``DAGSTER_PG_*`` variables it reads set to that server.
* :func:`redis_server` runs Debian's ``redis-server`` with no persistence (no RDB snapshot, no
  append-only file): the Celery executor's broker and result backend.

Nothing is skipped: a missing binary fails the fixture with what to install.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from retrain_assets.constants import REPO_ROOT
from retrain_assets_tests.dagster_dev import free_port, group_members, group_signalable, stop_group

MLFLOW = str(Path(sys.executable).with_name("mlflow"))
MLFLOW_STARTUP_TIMEOUT = 120
"""Seconds ``mlflow server`` may take until /health answers (5–11 s measured; more on a busy box)."""

POSTGRES_ROOT = Path("/usr/lib/postgresql")
POSTGRES_OS_USER = "postgres"
POSTGRES_STARTUP_TIMEOUT = 60
POSTGRES_YAML = REPO_ROOT / "deploy" / "postgres" / "dagster.yaml"
DAGSTER_DB = "dagster"

REDIS_SERVER = Path("/usr/bin/redis-server")
REDIS_STARTUP_TIMEOUT = 30


def _log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return f"--- end of {path} ---\n" + "\n".join(text.splitlines()[-lines:])


def stop_and_check(proc: subprocess.Popen, what: str) -> None:
    """Stop ``proc``'s process group (if anything of it still runs) and assert nothing is left."""
    stop_group(proc)
    assert proc.returncode is not None, f"{what} is still running after SIGKILL"
    left = group_members(proc.pid)
    assert not left, f"processes of the {what} group still running after killpg: {left}"
    if group_signalable(proc.pid):  # only zombies that init has not reaped yet: nothing runs
        print(f"note: process group {proc.pid} ({what}) still holds zombies 10 s after the stop")


def wait_ready(what: str, proc: subprocess.Popen, log_path: Path, probe, timeout: float) -> float:
    """Poll ``probe`` until it is true; seconds it took. Fails if ``proc`` exits or time runs out."""
    started = time.monotonic()
    while not probe():
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with code {proc.returncode} before it was ready\n{_log_tail(log_path)}")
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} not ready after {timeout:.0f} s\n{_log_tail(log_path)}")
        time.sleep(0.2)
    return time.monotonic() - started


# --------------------------------------------------------------------------
# MLflow tracking server
# --------------------------------------------------------------------------


@dataclass
class MlflowServer:
    """A running ``mlflow server`` and where it keeps things."""

    proc: subprocess.Popen
    port: int
    root: Path
    log_path: Path
    startup_seconds: float = 0.0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend_store(self) -> Path:
        """The server's SQLite backend store (runs, experiments, registry)."""
        return self.root / "mlflow.db"

    @property
    def artifacts(self) -> Path:
        """The server's ``--artifacts-destination``: every artifact byte lands here, via HTTP."""
        return self.root / "artifacts"

    def log_tail(self, lines: int = 40) -> str:
        return _log_tail(self.log_path, lines)


def _mlflow_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200 and response.read().strip() == b"OK"
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    """``mlflow server`` on 127.0.0.1 and a free port, SQLite backend and proxied artifacts under
    ``tmp_path``; job execution off (it is not used, and it costs memory and start-up time)."""
    root = tmp_path / "mlflow_server"
    root.mkdir()
    port = free_port()
    server = MlflowServer(proc=None, port=port, root=root, log_path=root / "server.log")  # type: ignore[arg-type]
    command = [
        MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{server.backend_store.as_posix()}",
        "--artifacts-destination", str(server.artifacts),
        "--workers", "1",  # 2-core CI; a production server runs several behind a database backend
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with open(server.log_path, "wb") as log:
        # Its own process group: one killpg reaches the CLI and the uvicorn worker it starts.
        server.proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        server.startup_seconds = wait_ready("mlflow server", server.proc, server.log_path,
                                       lambda: _mlflow_healthy(port), MLFLOW_STARTUP_TIMEOUT)
        print(f"mlflow server healthy after {server.startup_seconds:.1f} s at {server.uri}")
        yield server
    finally:
        stop_and_check(server.proc, "mlflow server")


# --------------------------------------------------------------------------
# PostgreSQL server
# --------------------------------------------------------------------------


@dataclass
class Postgres:
    """A running PostgreSQL server and how to reach it."""

    proc: subprocess.Popen
    bin_dir: Path
    base: Path
    port: int
    user: str
    password: str
    host: str = "127.0.0.1"
    startup_seconds: float = 0.0

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "socket"

    @property
    def log_path(self) -> Path:
        return self.base / "postgres.log"

    def dagster_env(self, db_name: str = DAGSTER_DB) -> dict[str, str]:
        """The variables deploy/postgres/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": db_name,
        }

    def connect(self, db_name: str = DAGSTER_DB):
        """A psycopg2 connection over TCP with the password (as Dagster connects)."""
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname=db_name, connect_timeout=5)

    def query(self, sql: str, params: tuple = (), db_name: str = DAGSTER_DB) -> list[tuple]:
        """Rows of one query, on a short-lived connection."""
        conn = self.connect(db_name)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and postgres."""
    found = [p.parent for p in POSTGRES_ROOT.glob("*/bin/initdb") if (p.parent / "postgres").exists()]
    if not found:
        pytest.fail(
            f"PostgreSQL server binaries not found ({POSTGRES_ROOT}/*/bin/initdb): `make test` installs the "
            "`postgresql` package on CI; on your machine run `sudo apt-get install postgresql`"
        )
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def _server_user() -> tuple[list[str], int | None, int | None]:
    """(command prefix, uid, gid) to run PostgreSQL's binaries with: they refuse to run as root, so
    as root (CI) they run as the ``postgres`` user the package creates; otherwise as ourselves."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        user = pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        pytest.fail(f"running as root and there is no {POSTGRES_OS_USER!r} user to run PostgreSQL as: "
                    "the `postgresql` package creates it (`make test` installs it: scripts/system-packages.sh)")
    # setpriv execs the command (no PAM session, no extra process): the server is the group leader.
    prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
    return prefix, user.pw_uid, user.pw_gid


def _accepts_connections(server: Postgres) -> bool:
    import psycopg2

    try:
        server.connect("postgres").close()
        return True
    except psycopg2.OperationalError:
        return False


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server on 127.0.0.1 and a free port, with password authentication over TCP and
    an empty database ``dagster``; stopped with ``pg_ctl stop -m immediate`` (nothing to keep)."""
    bin_dir = postgres_bin_dir()
    prefix, uid, gid = _server_user()
    # Not under pytest's tmp_path: the server user must reach it (tmp_path's parents are root-only
    # on CI), and a Unix-socket path must stay under ~100 characters.
    base = Path(tempfile.mkdtemp(prefix="retrain-pg-", dir="/tmp"))
    server = Postgres(proc=None, bin_dir=bin_dir, base=base, port=free_port(), user="retrain",  # type: ignore[arg-type]
                      password=secrets.token_hex(12))
    try:
        password_file = base / "password"
        password_file.write_text(server.password + "\n")
        server.socket_dir.mkdir()
        if uid is not None:
            for path in (base, password_file, server.socket_dir):
                os.chown(path, uid, gid)
        password_file.chmod(0o600)
        initdb = subprocess.run(
            [*prefix, str(bin_dir / "initdb"), "-D", str(server.data_dir), "-U", server.user,
             f"--pwfile={password_file}", "--auth-local=trust", "--auth-host=scram-sha-256",
             "--no-locale", "--encoding=UTF8", "--no-sync", "--no-instructions"],
            cwd=base, capture_output=True, text=True, timeout=120,
        )
        if initdb.returncode != 0:
            pytest.fail(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}\n{initdb.stderr}")
        started = time.monotonic()
        with open(server.log_path, "wb") as log:
            server.proc = subprocess.Popen(
                [*prefix, str(bin_dir / "postgres"), "-D", str(server.data_dir), "-p", str(server.port),
                 "-c", f"listen_addresses={server.host}", "-c", f"unix_socket_directories={server.socket_dir}",
                 # A throw-away test database: durability off, it only costs time.
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                cwd=base, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        wait_ready("postgres", server.proc, server.log_path, lambda: _accepts_connections(server), POSTGRES_STARTUP_TIMEOUT)
        server.startup_seconds = time.monotonic() - started
        conn = server.connect("postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {DAGSTER_DB}")
        finally:
            conn.close()
        print(f"postgres {bin_dir.parent.name} accepting connections after {server.startup_seconds:.1f} s "
              f"on port {server.port}")
        yield server
    finally:
        if server.proc is not None:
            stop = subprocess.run(
                [*prefix, str(bin_dir / "pg_ctl"), "stop", "-D", str(server.data_dir), "-m", "immediate", "-w",
                 "-t", "30"], cwd=base, capture_output=True, text=True, timeout=60,
            )
            try:
                server.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            stop_and_check(server.proc, "postgres")  # a no-op when pg_ctl stopped it; the check stays
            assert stop.returncode == 0, f"pg_ctl stop failed: {stop.stdout}\n{stop.stderr}"
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_home(postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME with deploy/postgres/dagster.yaml, its DAGSTER_PG_* variables set (here and
    for child processes) to the :func:`postgres` server."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(POSTGRES_YAML, home / "dagster.yaml")
    for key, value in postgres.dagster_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


# --------------------------------------------------------------------------
# Redis server
# --------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A running ``redis-server`` and how to reach it."""

    proc: subprocess.Popen
    port: int
    root: Path
    log_path: Path
    host: str = "127.0.0.1"
    startup_seconds: float = 0.0

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"


def _redis_answers(server: RedisServer) -> bool:
    import redis

    try:
        with redis.Redis(host=server.host, port=server.port, socket_connect_timeout=1, socket_timeout=1) as client:
            return bool(client.ping())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """``redis-server`` on 127.0.0.1 and a free port, its working folder under ``tmp_path``, with
    nothing written to disk (``save ""``, no append-only file); stopped with SIGTERM."""
    if not REDIS_SERVER.exists():
        pytest.fail(f"{REDIS_SERVER} not found: `make test` installs the `redis-server` package "
                    "(scripts/system-packages.sh); on your machine run `sudo apt-get install redis-server`")
    root = tmp_path / "redis"
    root.mkdir()
    server = RedisServer(proc=None, port=free_port(), root=root, log_path=root / "redis.log")  # type: ignore[arg-type]
    command = [str(REDIS_SERVER), "--bind", server.host, "--port", str(server.port), "--dir", str(root),
               "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"]
    with open(server.log_path, "wb") as log:
        server.proc = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        server.startup_seconds = wait_ready("redis-server", server.proc, server.log_path,
                                       lambda: _redis_answers(server), REDIS_STARTUP_TIMEOUT)
        print(f"redis-server answering after {server.startup_seconds:.1f} s at {server.url()}")
        yield server
    finally:
        stop_and_check(server.proc, "redis-server")
