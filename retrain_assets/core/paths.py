"""Batch ids and paths that must stay inside their folder: one rule for every source, one check for every path.

A batch id comes from a landed file's name, a partition key (which a person can add by hand in the
UI), a run tag or a job's config; each is checked with :func:`check_batch_id`. Every path the
platform reads, moves or writes under the landing folder, the rejected area or the storage root
goes through :func:`contained`. Pure Python (no Dagster).
"""

from __future__ import annotations

import re
from pathlib import Path

BATCH_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class UnsafePathError(ValueError):
    """A batch id or path would lead outside the folder it must stay in; the message says which."""


def batch_id_problem(batch_id: object) -> str | None:
    """Why a string cannot be a batch id (the rule landed file names follow), or None if it can."""
    if isinstance(batch_id, str) and BATCH_ID_PATTERN.fullmatch(batch_id):
        return None
    return (
        f"batch id {batch_id!r} must start with a letter or digit and use only letters, digits, '.', '_' "
        "and '-' (at most 128 characters), e.g. 2024-05-01 or batch_0007"
    )


def check_batch_id(batch_id: object, *, source: str) -> str:
    """The batch id, checked with the landing rule whatever it came from.

    Args:
        batch_id: A partition key, run tag or config value.
        source: Where it came from, for the message (e.g. ``"partition key"``).

    Returns:
        ``batch_id`` unchanged.

    Raises:
        UnsafePathError: It is not a batch id (``../x``, ``a/b``, a leading ``.`` or ``_``, ...).
    """
    problem = batch_id_problem(batch_id)
    if problem:
        raise UnsafePathError(f"{source}: {problem}; nothing was read, moved or written")
    return batch_id  # type: ignore[return-value]


def contained(path: Path, folder: Path, *, what: str) -> Path:
    """``path`` as it lies in ``folder``, refused if it or what it links to is outside ``folder``.

    Both the entry itself (its folder resolved) and its target (every link followed) must lie in
    ``folder`` (resolved), so neither ``..`` nor a symlink leads out. The one check every path the
    platform reads, moves or writes goes through (landing folder, rejected area, storage root).

    Args:
        path: The path to check (need not exist).
        folder: The folder it must stay in.
        what: What the path is, for the message (e.g. ``"the landed file"``).

    Returns:
        The entry's absolute path, its parent resolved (a symlink stays a symlink).

    Raises:
        UnsafePathError: It leads outside ``folder``.
    """
    root = Path(folder).resolve()
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise UnsafePathError(f"{what} {str(path)!r} is not a file name inside {root}")
    entry = path.absolute().parent.resolve() / path.name
    target = path.resolve()
    for place in (entry, target):
        if place != root and root not in place.parents:
            via = f" (it links to {target})" if place is target and target != entry else ""
            raise UnsafePathError(f"{what} {str(path)!r} is outside {root}{via}; nothing was read or moved")
    return entry
