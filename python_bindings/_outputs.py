"""Output folders of the commands (``vkbands rollout``, ``vkbands demo``): claimed atomically, files
written crash-safe (SECURITY.md, "Outputs").

- :func:`claim` creates the folder with one ``mkdir`` that fails when the path exists, so two runs can
  never share a folder (nothing is ever overwritten); missing parents are created first. The path is
  used as given; folders and files get the user's umask.
- :meth:`OutputDir.write` writes each file under a temporary name in the same folder
  (``.tmp-<name>``), flushes it to disk and renames it to its name only when complete: a crash, a full
  disk or a signal never leaves a truncated file under a final name.
- :func:`write_new` creates one new file anywhere (screenshots, recordings, a sweep's summary and
  pictures): written to a hidden temporary file in the same folder, flushed, then hard-linked to its
  name, a link that fails when the name exists -- complete or absent, and never over an existing file,
  not even one another process made in the same second.
- :func:`jsonable`: a value made of NumPy scalars/arrays, Paths, tuples as plain JSON (non-finite
  floats as null).
- :meth:`OutputDir.discard` removes the folder (and the parents :func:`claim` made) when nothing was
  written into it: a run that fails before doing any work leaves nothing behind.
"""
from __future__ import annotations

import datetime as _dt
import errno
import os
import secrets
from pathlib import Path

import numpy as np

__all__ = ["claim", "OutputDir", "OutputError", "timestamp", "write_new", "jsonable"]

_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}


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
            _fsync(tmp)
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


# ----------------------------------------------------------------------------- single new files
def _fsync(path):
    """Flush a file written by path (by a writer that opened and closed it itself) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exists_error(path) -> FileExistsError:
    return FileExistsError(errno.EEXIST, "already exists; vkbands never overwrites a file "
                           "(choose another name or remove it)", str(path))


def _publish(tmp: Path, path: Path):
    """Give the complete file ``tmp`` the name ``path``; FileExistsError when that name exists."""
    try:
        os.link(tmp, path)          # atomic and never replaces: fails with EEXIST
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        # a file system without hard links: rename, which replaces, so look first (a small window)
        if path.exists() or path.is_symlink():
            raise _exists_error(path) from None
        os.rename(tmp, path)


def write_new(path, write, another=None, *, by_path=False) -> Path:
    """Create the new file ``path`` with ``write(f)`` (``f`` a binary file object; ``by_path=True``:
    ``write(p)`` with the temporary file's path, for writers that open a path themselves), atomically:
    the bytes go to a hidden temporary file in the same folder (mode 0o666 less the umask), flushed to
    disk, then linked to ``path``. Nothing ever appears under ``path`` unless complete, and an
    existing ``path`` is never replaced: FileExistsError, or, with ``another`` (a function giving a
    new name: generated names), the next name it gives. Returns the path written. On any error the
    temporary file is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        if by_path:
            os.close(fd)
            write(tmp)
            _fsync(tmp)
        else:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        while True:
            try:
                _publish(tmp, path)
                return path
            except FileExistsError:
                if another is None:
                    raise
                path = Path(another())
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def jsonable(v):
    """``v`` with NumPy arrays / scalars, tuples and Paths as plain JSON values; non-finite floats as
    None (JSON has no NaN)."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, Path):
        return str(v)
    return v
