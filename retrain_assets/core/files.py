"""Writing and moving the platform's files so that a fault never leaves half of one. Pure Python.

Every file the platform writes (schema, reports, plots, reason files) is written to a temporary
name in the same folder, flushed to disk and renamed over the final name: a full disk or a killed
process leaves the old file or none, never a truncated one. A move to another filesystem is a
copy to a temporary name, fsync, rename, and only then the removal of the source.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_TEXTS = ("no space left on device", "disk quota exceeded", "disk full")


class StorageUnavailable(OSError):
    """The platform's storage cannot be written now (disk full, DuckDB file held by another process).

    An outside cause, not a verdict on the batch: nothing was half-written, and the same work
    succeeds once the cause is gone (the landing sensor retries the batch). Never a
    ``dagster.Failure``, which would refuse the batch for good.
    """


def disk_full(error: BaseException | None) -> bool:
    """Whether an error, or one it was raised from, says the disk (or the user's quota) is full."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
            return True
        if any(text in str(error).lower() for text in _FULL_TEXTS):
            return True
        error = error.__cause__ or error.__context__
    return False


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def free_space(path: Path) -> str:
    """``"12.0 KB free of 2.0 MB"`` for the filesystem holding ``path`` (or its nearest existing folder)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return "free space unknown"
    return f"{_size(usage.free)} free of {_size(usage.total)}"


def disk_full_message(path: Path | str, doing: str, safe: str, todo: str) -> str:
    """What a person reads when the disk holding ``path`` filled up while ``doing`` something."""
    return (
        f"the disk holding {path} is full ({free_space(Path(path))}; No space left on device) while {doing}. "
        f"{safe} {todo}"
    )


def _temp_prefix(path: Path) -> str:
    """A hidden temporary name beside ``path`` that stays within the 255-byte name limit."""
    return "." + path.name.encode()[:100].decode(errors="ignore") + "."


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_FREE_SPACE = "Free space on that disk (or point storage.root at a larger one) and run again."


def make_folder(folder: Path) -> Path:
    """``mkdir -p``, with a full disk reported as :class:`StorageUnavailable`."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        if disk_full(error):
            raise StorageUnavailable(disk_full_message(
                folder, f"creating the folder {folder}", "Nothing was written.", _FREE_SPACE)) from error
        raise
    return Path(folder)


def write_atomic(path: Path, data: bytes | str, *, exclusive: bool = False) -> Path:
    """Write a whole file or nothing: temp name in the same folder, fsync, then rename.

    Args:
        path: The final file.
        data: Its contents (text is written as UTF-8).
        exclusive: Fail with :class:`FileExistsError` if ``path`` exists (first writer wins);
            otherwise an existing file is replaced in one step.

    Returns:
        ``path``.

    Raises:
        StorageUnavailable: the disk is full; the old file (if any) is untouched, no temp file is left.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    make_folder(path.parent)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".partial")
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)  # atomic, and refuses to replace an existing file
        else:
            os.replace(tmp, path)
            tmp = None
        _fsync_folder(path.parent)
    except OSError as error:
        if disk_full(error):
            state = "unchanged" if path.exists() else "not written"
            raise StorageUnavailable(disk_full_message(
                path.parent, f"writing {path.name}",
                f"Nothing was half-written: {path.name} is {state} and no temporary file is left.", _FREE_SPACE,
            )) from error
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def move_file(source: Path, target: Path, *, before_commit=None) -> None:
    """Move a file to a path that does not exist yet, never leaving a half-written copy nor losing it.

    On one filesystem this is a rename. Across filesystems it is a copy to a temporary name beside
    ``target``, fsync, rename to ``target`` and only then the removal of ``source``; when anything
    fails the partial copy is removed and ``source`` is left as it was.

    Args:
        source: The file to move.
        target: Where it goes (its folder exists; the caller made sure the name is free).
        before_commit: Called once the bytes are safely beside ``target`` and before anything is
            renamed or removed (e.g. to write a reason file); if it raises, nothing is moved.

    Raises:
        StorageUnavailable: the disk holding ``target`` is full; ``source`` is untouched.
        OSError: any other failure; ``source`` is untouched.
    """
    source, target = Path(source), Path(target)
    staged: str | None = None
    try:
        if os.stat(source).st_dev != os.stat(target.parent).st_dev:
            fd, staged = tempfile.mkstemp(dir=target.parent, prefix=_temp_prefix(target), suffix=".partial")
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            shutil.copystat(source, staged)
        if before_commit is not None:
            before_commit()
        if staged is None:
            os.rename(source, target)
        else:
            os.rename(staged, target)
            staged = None
            _fsync_folder(target.parent)
            os.unlink(source)
    except OSError as error:
        if disk_full(error) and not isinstance(error, StorageUnavailable):
            raise StorageUnavailable(disk_full_message(
                target.parent, f"moving {source.name} there",
                f"No partial copy was left and {source.name} was not removed: it is still at {source}.",
                "Free space on that disk (or point storage.root at a larger one); the move is tried again.",
            )) from error
        raise
    finally:
        if staged is not None and os.path.exists(staged):
            os.unlink(staged)
