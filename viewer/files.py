"""The viewer's files: output names that never overwrite, PNG screenshots, MP4 and GIF recordings, and
the .npy fields read for ``--load`` / ``--watch``. No Vulkan, no window.

Everything written here appears complete or not at all (:func:`write_new`): the bytes go to a hidden
temporary file in the destination folder (created with the user's umask), which is then linked to
its final name, a link that fails when the name exists. So a crash or a full disk never leaves a
truncated file under a final name, and no file is ever overwritten, not even by a second viewer
that picked the same generated name in the same second."""
from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from vkbands._outputs import write_new  # noqa: F401  (the one never-overwriting writer; re-exported)

MAX_RECORD_FRAMES = 1800  # a minute at 30 fps; then the recording is saved and stops


def unique_path(directory, stem: str, suffix: str) -> Path:
    """``directory/stem-YYYYmmdd-HHMMSS[-k].suffix`` that does not exist yet (the folder is created).
    Write it with :func:`write_new` and ``another=`` a call of this again: a name taken between the
    choice and the write is then replaced by the next free one."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    base = f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"
    path, k = directory / f"{base}{suffix}", 1
    while path.exists() or path.is_symlink():
        path, k = directory / f"{base}-{k}{suffix}", k + 1
    return path


def check_new_file(option: str, path) -> Path:
    """``path`` for a file the command will create (``--screenshot``), checked before any work: its
    folder exists and is writable, and nothing is there yet (never overwritten). ValueError naming
    the option, the path and why."""
    p = Path(path)
    where = f"{option} {path}"
    if p.is_dir():
        raise ValueError(f"{where}: is a folder; give the name of a new file (.png)")
    if p.exists() or p.is_symlink():
        raise ValueError(f"{where}: already exists; vkbands never overwrites a file (choose another name "
                         "or remove it)")
    folder = p.parent
    if not folder.exists():
        raise ValueError(f"{where}: the folder {folder} does not exist (create it first)")
    if not folder.is_dir():
        raise ValueError(f"{where}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{where}: the folder {folder} is not writable")
    return p


def check_out_dir(option: str, path) -> Path:
    """``path`` for a folder that is created when the first file goes there (``--out-dir``), checked
    before any work: it is a folder, or the nearest existing folder above it is writable."""
    p = Path(path)
    where = f"{option} {path}"
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{where}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{where}: the folder {existing} is not writable")
    return p


def read_npy(path) -> np.ndarray:
    """A .npy file as an array (``allow_pickle=False``); ValueError with a clear message otherwise."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise ValueError("not a .npy file (no NumPy header)")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise ValueError("holds Python objects (pickled data), not a numeric field") from None
        raise


def read_input(option: str, path) -> np.ndarray:
    """:func:`read_npy` for a command-line input: any failure is a ValueError ``"<option> <path>: why"``
    (a missing or unreadable file is bad input too)."""
    try:
        return read_npy(path)
    except OSError as e:
        why = (e.strerror or str(e)).lower() if not isinstance(e, FileNotFoundError) else "no such file"
        raise ValueError(f"{option} {path}: {why}") from e
    except (ValueError, EOFError) as e:
        raise ValueError(f"{option} {path}: {e or type(e).__name__}") from e


def save_png(path, pixels: np.ndarray, another=None) -> Path:
    """(H, W, 4) RGBA uint8 pixels as a new PNG file (:func:`write_new`: complete or absent, never
    overwriting). Returns the path written."""
    from PIL import Image
    img = Image.fromarray(np.ascontiguousarray(pixels), "RGBA")
    return write_new(path, lambda f: img.save(f, format="PNG"), another=another)


class GifRecording:
    """Frames taken at most ``fps`` times a second (wall clock; the rate may change while recording),
    saved as one GIF at ``path`` (``another``: where to when that name was taken meanwhile)."""

    def __init__(self, path, max_frames: int = MAX_RECORD_FRAMES, another=None):
        self.path, self.max_frames, self.another = Path(path), int(max_frames), another
        self.frames: list = []
        self._last_t = 0.0

    def due(self, fps: float) -> bool:
        """Whether a frame should be taken now at ``fps`` frames a second (then the clock restarts)."""
        now = time.perf_counter()
        if now - self._last_t < 1.0 / fps:
            return False
        self._last_t = now
        return True

    def add(self, pixels: np.ndarray) -> bool:
        """Add an (H, W, 4) frame; True when the recording is full (``max_frames``)."""
        from PIL import Image
        # palette frames (1 byte per pixel) keep a long recording in memory; GIF needs them anyway
        self.frames.append(Image.fromarray(np.ascontiguousarray(pixels[..., :3])).quantize(256))
        return len(self.frames) >= self.max_frames

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def abort(self):
        self.frames = []

    def save(self, fps: float):
        """Write the GIF played at ``fps`` (:func:`write_new`); the path written, or None when no
        frame was taken."""
        if not self.frames:
            return None
        first, rest = self.frames[0], self.frames[1:]
        self.path = write_new(self.path, lambda f: first.save(f, format="GIF", save_all=True, append_images=rest,
                                                              duration=int(round(1000 / fps)), loop=0),
                              another=self.another)
        return self.path


LIVE_PRESET = "ultrafast"


class VideoRecording:
    """An MP4 recording (:class:`vkbands.video.VideoWriter`) sampled by simulation steps: one frame
    every ``every`` steps, played at ``fps``. The app asks :meth:`limit` how many steps a frame may
    advance (never past the next sampled step) and tells :meth:`advanced` how many it did; the first
    frame after the start is taken, then every frame that lands on a sampled step, so no sampled step
    is skipped and none is taken twice (paused frames advance no step: not taken).

    The writer starts with the first frame, at its size; a frame of another size (the window was
    resized) is cropped or padded (black) to it. Saved by :meth:`save` (complete or absent, never
    overwriting: ``another`` gives the next generated name when ``path`` was taken meanwhile)."""

    def __init__(self, path, fps: float, every: int, another=None, queue_frames: int = 8):
        self.path, self.fps, self.every, self.another = Path(path), float(fps), max(1, int(every)), another
        self.queue_frames = queue_frames
        self.writer = None
        self._due = None           # steps until the next sampled one (None: take the next frame)

    def limit(self, steps: int) -> int:
        """The steps a frame may advance (``steps`` asked for) without passing the next sampled step."""
        return steps if self._due is None else min(steps, self._due)

    def advanced(self, steps: int) -> bool:
        """A frame advanced ``steps`` (at most :meth:`limit`); whether it is to be recorded."""
        if self._due is None or steps >= self._due:
            self._due = self.every
            return True
        self._due -= steps
        return False

    @property
    def n_frames(self) -> int:
        return self.writer.frames_written if self.writer is not None else 0

    def add(self, pixels: np.ndarray) -> bool:
        """Queue an (H, W, 3 or 4) uint8 frame for the encoder (blocks while its queue is full; raises
        the encoder's error). Returns False (an MP4 has no frame limit)."""
        from vkbands.video import VideoWriter
        h, w = pixels.shape[:2]
        if self.writer is None:
            # x264's 'ultrafast' preset: the encoder shares the CPU with a live render loop (measured here,
            # a 1280 x 800 frame: 7.7 ms vs 19 ms with 'veryfast'); crf keeps the quality, files are larger
            self.writer = VideoWriter(self.path, self.fps, (w, h), queue_frames=self.queue_frames,
                                      another=self.another, preset=LIVE_PRESET)
        W, H = self.writer.size
        if (w, h) != (W, H):
            fitted = np.zeros((H, W, pixels.shape[2]), np.uint8)
            fitted[:min(h, H), :min(w, W)] = pixels[:H, :W]
            pixels = fitted
        self.writer.write(pixels)
        return False

    def save(self, fps: float | None = None):
        """Finish the file (waits for the encoder); the path written, or None when no frame was taken.
        (``fps`` is the one given at the start; the argument is :class:`GifRecording`'s.)"""
        if self.writer is None:
            return None
        self.path = self.writer.close()
        return self.path

    def abort(self):
        """Drop the recording: nothing is written."""
        if self.writer is not None:
            self.writer.abort()


class FileWatch:
    """A .npy file re-read whenever another process rewrites it (looked at most every ``interval``
    seconds; a change is its (mtime, size) ``signature``)."""

    def __init__(self, path, interval: float = 0.2):
        self.path, self.interval = Path(path), float(interval)
        self.signature = None
        self.last_check = 0.0

    def poll(self):
        """The new field when the file changed since the last read, else None. An unreadable write (a
        partial one, say) raises ValueError/OSError; it is not retried until the file changes again."""
        now = time.perf_counter()
        if now - self.last_check < self.interval:
            return None
        self.last_check = now
        try:
            st = self.path.stat()
        except OSError:
            return None
        sig = (st.st_mtime_ns, st.st_size)
        if sig == self.signature:
            return None
        self.signature = sig
        return read_npy(self.path)

    def read(self, option: str = "--watch") -> np.ndarray:
        """Read the file now (what a script's start needs: it must be usable): the field, remembered
        as read; ValueError ``"<option> <path>: why"`` when it cannot be used."""
        try:
            st = self.path.stat()
        except OSError:
            st = None
        x = read_input(option, self.path)
        if st is not None:
            self.signature = (st.st_mtime_ns, st.st_size)
        self.last_check = time.perf_counter()
        return x
