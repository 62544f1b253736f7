"""Output folders of the commands (``vkbands rollout``, ``vkbands demo``): claimed atomically, files
written crash-safe (SECURITY.md, "Outputs").

- :func:`claim` creates the folder with one ``mkdir`` that fails when the path exists, so two runs can
  never share a folder (nothing is ever overwritten); missing parents are created first. The path is
  used as given; folders and files get the user's umask.
- :meth:`OutputDir.write` writes each file under a temporary name in the same folder
  (``.tmp-<name>``), flushes it to disk and renames it to its name only when complete: a crash, a full
  disk or a signal never leaves a truncated file under a final name.
- :meth:`OutputDir.discard` removes the folder (and the parents :func:`claim` made) when nothing was
  written into it: a run that fails before doing any work leaves nothing behind.
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

__all__ = ["claim", "OutputDir", "OutputError", "timestamp"]


class OutputError(ValueError):
    """The output folder cannot be claimed (it exists, or cannot be created): bad input."""


def timestamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _exists_message(option, path):
    return (f"{option} {path}: already exists; allowed: a path that does not exist yet (each run claims a new "
            "folder; nothing is ever overwritten)")


def claim(path=None, default=None, option="--out") -> "OutputDir":
    """A new folder: ``path`` (refused with :class:`OutputError` when it exists or cannot be made), or,
    without one, ``default`` (a Path), ``default-2``, ``default-3``... whichever is free first."""
    if path is not None:
        path = Path(path)
        made = _parents(path.parent, option, path)
        try:
            os.mkdir(path)
        except FileExistsError:
            _remove_empty(made)
            raise OutputError(_exists_message(option, path)) from None
        except OSError as e:
            _remove_empty(made)
            raise OutputError(f"{option} {path}: cannot create the folder: {e.strerror or e}") from None
        return OutputDir(path, made)
    base = Path(default)
    made = _parents(base.parent, option, base)
    n, path = 1, base
    while True:
        try:
            os.mkdir(path)
            return OutputDir(path, made)
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        except OSError as e:
            _remove_empty(made)
            raise OutputError(f"{option} {path}: cannot create the folder: {e.strerror or e}") from None


def _parents(parent: Path, option, path) -> list:
    """Create the missing parents of a folder; returns the ones made (deepest last)."""
    missing = []
    p = parent
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    made = []
    for p in reversed(missing):
        try:
            os.mkdir(p)
            made.append(p)
        except FileExistsError:
            continue
        except OSError as e:
            _remove_empty(made)
            raise OutputError(f"{option} {path}: cannot create the folder {p}: {e.strerror or e}") from None
    return made


def _remove_empty(folders):
    for p in reversed(folders):
        try:
            os.rmdir(p)
        except OSError:
            return


class OutputDir:
    """A claimed output folder. ``path``; ``files``: the names written so far, in order."""

    def __init__(self, path: Path, made_parents=()):
        self.path = Path(path)
        self.files = []
        self._made = list(made_parents)

    def write(self, name: str, write_to) -> Path:
        """Write file ``name`` by calling ``write_to(tmp_path)`` (a path ending like ``name``, in this
        folder); renamed to ``name`` once written and flushed. On any error the temporary is removed and
        the error raised: no file under ``name`` unless it is complete."""
        final = self.path / name
        tmp = self.path / f".tmp-{name}"
        try:
            write_to(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except BaseException as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(e, OSError):
                e.output_file = name          # which file could not be written (a full disk names none)
            raise
        if name not in self.files:
            self.files.append(name)
        return final

    def write_text(self, name: str, text: str) -> Path:
        def put(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
        return self.write(name, put)

    def discard(self) -> bool:
        """Remove the folder (and the parents :func:`claim` made) if nothing is in it; True if removed."""
        try:
            os.rmdir(self.path)
        except OSError:
            return False
        _remove_empty(self._made)
        return True

    def __fspath__(self):
        return os.fspath(self.path)

    def __str__(self):
        return str(self.path)
