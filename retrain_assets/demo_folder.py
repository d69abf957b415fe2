"""The demo's own folder, and the rule that `make demo` removes only what it made. No Dagster.

`make demo` keeps everything under one folder (``data/`` by default): ``landing/`` (the files it
lands), ``state/`` (DuckDB, MLflow, reports, the rejected area) and ``dagster_home/`` (its own
Dagster instance; an exported ``DAGSTER_HOME`` is never read). Each run starts afresh, so the
previous run's results must go; but a person may have put files of their own there (a file dropped
into ``landing/`` to try it, a folder made by an older version). So:

* a sub-folder the demo made carries a marker file, :data:`MARKER`; only marked folders are emptied;
* a file in ``landing/``, or refused into ``state/rejected/``, is removed only if its SHA-256 is one
  the demo recorded when it landed it (:data:`MANIFEST`); any other file is moved, byte for byte,
  to ``kept/<UTC time>/`` beside them, and the demo says so;
* an unmarked, non-empty sub-folder is moved whole to ``kept/<UTC time>/``.

Nothing is ever deleted that the demo did not make.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

MARKER = ".created-by-make-demo"
"""Marker file in each sub-folder the demo made (its text says what the folder is)."""

MANIFEST = ".demo-landed.json"
"""In the demo folder: the SHA-256 of every file the demo landed."""

SUBFOLDERS = ("landing", "state", "dagster_home")
"""The demo's sub-folders (the demo config's landing_dir and storage.root, and its Dagster home)."""

KEPT = "kept"
"""Where files the demo did not make are moved to, under the demo folder."""

MARKER_TEXT = (
    "This folder was made by `make demo`, which empties it on its next run (files it did not make are\n"
    "moved to ../kept/ instead of being deleted). Keep your own data elsewhere.\n"
)


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Reset:
    """What preparing the demo folder did.

    Attributes:
        removed: Files the demo had made, removed.
        kept: (original path, where it was moved) for everything the demo did not make.
    """

    removed: int = 0
    kept: list[tuple[Path, Path]] = field(default_factory=list)

    def notes(self) -> list[str]:
        """One line per moved item, for the demo's output."""
        return [f"kept {src} (not made by the demo): moved, untouched, to {dst}" for src, dst in self.kept]


class DemoFolder:
    """The demo's folder: its sub-folders, and what the demo landed there.

    Args:
        root: The demo folder (``data/`` by default).
    """

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    @property
    def home(self) -> Path:
        """The demo's Dagster home."""
        return self.root / "dagster_home"

    def _manifest(self) -> set[str]:
        path = self.root / MANIFEST
        if not path.is_file():
            return set()
        try:
            return set(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError):
            return set()

    def record_landed(self, path: Path) -> None:
        """Remember that the demo made this file (by content), so the next run may remove it."""
        known = self._manifest() | {sha256(path)}
        (self.root / MANIFEST).write_text(json.dumps(sorted(known), indent=0), encoding="utf-8")

    def _keep(self, path: Path, stamp: str, reset: Reset) -> None:
        target = self.root / KEPT / stamp / path.relative_to(self.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(target))
        reset.kept.append((path, target))

    def reset(self, now: datetime | None = None) -> Reset:
        """Empty the demo's sub-folders for a fresh run, removing only what the demo made.

        Returns:
            What was removed and what was moved aside.
        """
        stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        reset = Reset()
        self.root.mkdir(parents=True, exist_ok=True)
        landed = self._manifest()
        for name in SUBFOLDERS:
            folder = self.root / name
            if not folder.exists():
                continue
            if not (folder / MARKER).is_file():
                if any(folder.iterdir()):
                    self._keep(folder, stamp, reset)
                else:
                    folder.rmdir()
                continue
            # Landed bytes: the demo's own go, anyone else's are kept.
            for area in (folder,) if name == "landing" else (folder / "rejected",) if name == "state" else ():
                if not area.is_dir():
                    continue
                for path in sorted(p for p in area.rglob("*") if p.is_file() and p.name != MARKER):
                    if path.name.endswith(".reason.json"):
                        continue  # the refusal note beside a refused file; judged with its file below
                    if sha256(path) not in landed:
                        self._keep(path, stamp, reset)
                        note = Path(f"{path}.reason.json")
                        if note.is_file():
                            self._keep(note, stamp, reset)
            for item in folder.iterdir():
                if item.name == MARKER:
                    continue
                if item.is_dir():
                    reset.removed += sum(1 for p in item.rglob("*") if p.is_file())
                    shutil.rmtree(item)
                else:
                    reset.removed += 1
                    item.unlink()
        (self.root / MANIFEST).unlink(missing_ok=True)
        for name in SUBFOLDERS:
            folder = self.root / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
        return reset
