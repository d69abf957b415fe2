"""`dagster dev` (webserver + daemon) as a user starts it, for tests that drive the running platform.

:func:`running_dagster_dev` starts it on a temp DAGSTER_HOME and config, in its own process group
(`dagster dev` ignores SIGTERM otherwise, and one killpg then reaches every process it starts:
webserver, daemon, code server, run workers), waits until the webserver answers, and on the way out
stops the group and checks that no process of it is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from retrain_assets.constants import REPO_ROOT
from retrain_assets.settings import Settings, load_settings

DAGSTER = str(Path(sys.executable).with_name("dagster"))
DG = str(Path(sys.executable).with_name("dg"))
INSTANCE_YAML = REPO_ROOT / "deploy" / "local" / "dagster.yaml"
STARTUP_TIMEOUT = 120
"""Seconds `dagster dev` may take until /server_info answers (~10 s idle; far more on a busy box)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_members(pgid: int) -> list[str]:
    """Live (non-zombie) processes of a process group, as 'pid state command' (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        # Fields after the command (which is in parentheses and may hold spaces): state, ppid, pgrp.
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            found.append(f"{entry.name} {state} {cmdline[:160]}")
    return found


def group_signalable(pgid: int) -> bool:
    """Whether ``os.killpg(pgid, 0)`` still reaches anything (zombies included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(proc: subprocess.Popen, grace_seconds: float = 15) -> None:
    """SIGTERM the whole group (`dagster dev` stops its webserver, daemon, code server and run
    workers), SIGKILL whatever still runs after the grace period, then give init a few seconds to
    reap the children that outlived their parents (until then signal 0 still reaches them)."""
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 10)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and (proc.poll() is None or group_members(pgid)):
            time.sleep(0.2)
        if proc.poll() is not None and not group_members(pgid):
            break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and group_signalable(pgid):
        time.sleep(0.2)


def server_answers(port: int) -> bool:
    """Whether the webserver on ``port`` answers /server_info."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


LOCATIONS_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } ... on PythonError { message } } }"""


def make_home(root: Path) -> Path:
    """A fresh DAGSTER_HOME under ``root`` with the project's instance settings (deploy/local)."""
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(INSTANCE_YAML, home / "dagster.yaml")
    return home


@dataclass
class DagsterDev:
    """A running `dagster dev` and the user's setup it serves."""

    proc: subprocess.Popen
    home: Path
    root: Path
    config_path: Path
    log_path: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def graphql(self, query: str, timeout: float = 10) -> dict:
        """The ``data`` of a GraphQL query to the webserver (what the UI asks it)."""
        request = urllib.request.Request(f"{self.url}/graphql", data=json.dumps({"query": query}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.load(response)
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def code_locations_loaded(self) -> bool:
        """Whether the webserver has loaded every code location, so a page shows the definitions rather
        than a loading state. `/server_info` answers before that; a load error fails the test at once."""
        try:
            workspace = self.graphql(LOCATIONS_QUERY)["workspaceOrError"]
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False  # a busy webserver: ask again
        if workspace["__typename"] != "Workspace":
            pytest.fail(f"the webserver cannot read its workspace: {workspace}\n{self.log_tail()}")
        entries = workspace["locationEntries"]
        broken = [(e["name"], e["locationOrLoadError"]["message"]) for e in entries
                  if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
        if broken:
            pytest.fail(f"code location failed to load in the webserver: {broken}\n{self.log_tail()}")
        return bool(entries) and all(
            e["loadStatus"] == "LOADED" and (e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
            for e in entries)

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.5,
                 explain: Callable[[], str] | None = None) -> Any:
        """Poll ``probe`` until it returns something truthy; fail naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"dagster dev exited with code {self.proc.returncode} while waiting for {what}\n"
                            f"--- end of {self.log_path} ---\n{self.log_tail()}")
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                extra = f"\n{explain()}" if explain else ""
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{extra}\n"
                            f"--- end of {self.log_path} ---\n{self.log_tail()}")
            time.sleep(interval)


@contextmanager
def running_dagster_dev(root: Path, config_path: Path, home: Path | None = None,
                        startup_timeout: float = STARTUP_TIMEOUT,
                        location_file: Path | None = None, cli: str = "dagster") -> Iterator[DagsterDev]:
    """`dagster dev` on ``home`` (default: a fresh one under ``root``) serving ``config_path``.

    ``location_file``: a Python file to load as the code location instead of the project's module
    (a test's variant of the definitions). ``cli="dg"`` runs `dg dev` from the repo root instead (the
    project's ``[tool.dg]`` names the module). Yields once the webserver answers; on exit stops the process group and asserts that nothing of
    it still runs. The log (webserver, daemon, runs) is ``root/dagster_dev.log``.
    """
    home = home or make_home(root)
    log_path = root / "dagster_dev.log"
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "RETRAIN_CONFIG": str(config_path), "PYTHONUNBUFFERED": "1"}
    if cli == "dg":
        command = [DG, "dev", "--host", "127.0.0.1", "--port", str(port)]
        env["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)
    else:
        command = [DAGSTER, "dev", *(["-f", str(location_file)] if location_file else ["-m", "retrain_assets.definitions"]),
                   "-h", "127.0.0.1", "-p", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    dev = DagsterDev(proc, home, root, config_path, log_path, port)
    try:
        dev.wait_for("the webserver to answer /server_info", lambda: server_answers(port), startup_timeout)
        yield dev
    finally:
        stop_group(proc)
        left = group_members(proc.pid)
        assert proc.returncode is not None, "dagster dev is still running after SIGKILL"
        assert not left, f"processes of the dagster dev group still running after killpg: {left}"
        if group_signalable(proc.pid):  # only zombies that init has not reaped yet: nothing runs
            print(f"note: process group {proc.pid} still holds zombies 10 s after the stop")
