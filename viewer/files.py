"""The viewer's files: output names that never overwrite, PNG screenshots, GIF recordings, and the
.npy fields read for ``--load`` / ``--watch``. No Vulkan, no window."""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np

MAX_RECORD_FRAMES = 1800  # a minute at 30 fps; then the recording is saved and stops


def unique_path(directory, stem: str, suffix: str) -> Path:
    """``directory/stem-YYYYmmdd-HHMMSS[-k].suffix`` that does not exist yet (never overwrites)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    base = f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"
    path, k = directory / f"{base}{suffix}", 1
    while path.exists():
        path, k = directory / f"{base}-{k}{suffix}", k + 1
    return path


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


def save_png(path, pixels: np.ndarray):
    """(H, W, 4) RGBA uint8 pixels as a PNG file."""
    from PIL import Image
    Image.fromarray(pixels, "RGBA").save(path, format="PNG")


class GifRecording:
    """Frames taken at most ``fps`` times a second (wall clock; the rate may change while recording),
    saved as one GIF at ``path``."""

    def __init__(self, path, max_frames: int = MAX_RECORD_FRAMES):
        self.path, self.max_frames = Path(path), int(max_frames)
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

    def save(self, fps: float):
        """Write the GIF played at ``fps``; the path, or None when no frame was taken."""
        if not self.frames:
            return None
        self.frames[0].save(self.path, save_all=True, append_images=self.frames[1:],
                            duration=int(round(1000 / fps)), loop=0)
        return self.path


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
