"""Which process runs a Dagster run, and whether it is still alive. Pure Python (no Dagster).

Dagster's default run launcher starts each run in a local subprocess but cannot tell the daemon
that this process died (it does not implement run-worker health checks), so a run whose worker
was killed with SIGKILL, or lost with its machine, stays STARTED forever: it keeps its pool slots
and the retrain policy waits on it. The platform therefore records ``<host>:<pid>`` of the worker
on the run when its first step starts, and a run whose recorded worker on this host no longer
exists is dead.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
from pathlib import Path

WORKER_TAG = "retrain/worker"


def this_worker() -> str:
    """``<host>:<pid>`` of the run worker this code runs in (the parent when it runs in a step
    subprocess of the multiprocess executor)."""
    parent = multiprocessing.parent_process()
    pid = parent.pid if parent is not None and parent.pid else os.getpid()
    return f"{socket.gethostname()}:{pid}"


def in_celery_worker() -> bool:
    """Whether this code runs in a Celery worker's process (the celery executor's steps): such a process
    serves many runs, so it must not be recorded as a run's worker."""
    # Celery's worker modules are loaded only in a worker's processes (a run's own process that hands
    # steps to Celery imports the client side only); its task stack is thread-local, so not asked.
    return "celery.worker" in sys.modules


def worker_gone(worker: str | None) -> bool:
    """Whether the recorded worker is certainly gone: on this host and no such live process. A
    worker on another host, or not recorded, is never declared gone."""
    if not worker or ":" not in worker:
        return False
    host, _, pid_text = worker.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    status = Path(f"/proc/{pid}/status")
    try:  # a zombie (killed, not yet reaped) is gone too
        return any(line.startswith("State:") and "Z" in line.split()[1] for line in status.read_text().splitlines())
    except OSError:
        return False
