"""MP4 video (H.264, yuv420p) written off the caller's loop: :class:`VideoWriter`, and :func:`read_video`.

The encoder is PyAV's libx264 (ffmpeg ships in PyAV's wheel; nothing to install besides ``av``).

- **Nothing dropped, nothing repeated.** :meth:`VideoWriter.write` hands a copy of the frame to a
  background thread through a bounded queue (``queue_frames``); when the queue is full, ``write``
  blocks until the encoder has taken a frame, so a slow encoder slows the producer (the simulation)
  instead of losing frames. Frame ``i`` gets the timestamp ``i`` in a time base of ``1/fps``, so the
  file holds exactly one frame per ``write`` call, each shown for ``1/fps`` seconds.
- **Complete or absent, never overwriting.** The encoder thread writes the whole file through
  :func:`vkbands._outputs.write_new`: a hidden temporary file in the destination folder, flushed
  to disk, then linked to its name (an existing name is never replaced: ``FileExistsError``, or the
  next name from ``another`` for generated names). :meth:`VideoWriter.abort` (or an error) removes the
  temporary file: no partial video ever appears under its name.
- **Errors reach the caller.** An exception in the encoder thread is raised again by the next
  :meth:`~VideoWriter.write` or by :meth:`~VideoWriter.close`.
- **Size and colour.** yuv420p needs an even width and height: an odd one is padded by one
  column/row that repeats the last one (edge replication, so the chroma of the border is not mixed
  with a foreign colour); :attr:`VideoWriter.video_size` is the size in the file. RGB is converted
  with the BT.709 matrix in limited ("MPEG", 16-235) range, and the stream is tagged so
  (colorspace, primaries, transfer, range), which is what players assume for HD content; the
  conversion back in :func:`read_video` uses the same matrix (:func:`yuv420_roundtrip`: what the
  format alone, without the encoder, makes of a frame). Quality: ``crf`` (default 16, visually
  lossless for these pictures), ``preset`` (default ``veryfast``: the encoder runs beside a render
  loop on the same CPU).
"""
from __future__ import annotations

import queue
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["VideoWriter", "read_video", "even_size", "yuv420_roundtrip", "DEFAULT_CRF", "DEFAULT_PRESET"]

DEFAULT_CRF = 16
DEFAULT_PRESET = "veryfast"
_END, _ABORT = object(), object()


def _interpolation(encode: bool):
    """swscale flags of the RGB -> yuv420p conversion (``encode``: chroma averaged over each 2 x 2
    block) and back (bilinear chroma, as players do), both with accurate rounding and full
    horizontal chroma interpolation (swscale's fast default is 1-2 LSB off on average on smooth
    gradients)."""
    from av.video.reformatter import Interpolation as I
    return (I.AREA if encode else I.BILINEAR) | I.ACCURATE_RND | I.FULL_CHR_H_INT


def to_yuv420(frame_rgb):
    """An (H, W, 3) RGB or (H, W, 4) RGBA uint8 array (even H, W; alpha ignored) as the yuv420p PyAV
    frame the encoder gets (swscale converts and drops alpha in one pass)."""
    import av
    from av.video.reformatter import ColorRange, Colorspace
    a = np.ascontiguousarray(frame_rgb)
    return av.VideoFrame.from_ndarray(a, format="rgba" if a.shape[2] == 4 else "rgb24").reformat(
        format="yuv420p", src_colorspace=Colorspace.ITU709, dst_colorspace=Colorspace.ITU709,
        dst_color_range=ColorRange.MPEG, interpolation=_interpolation(True))


def from_yuv(frame) -> np.ndarray:
    """A decoded (yuv420p, BT.709 limited range) PyAV frame as (H, W, 3) uint8 RGB."""
    from av.video.reformatter import ColorRange, Colorspace
    return frame.reformat(format="rgb24", src_colorspace=Colorspace.ITU709, dst_colorspace=Colorspace.ITU709,
                          src_color_range=ColorRange.MPEG, interpolation=_interpolation(False)).to_ndarray()


def yuv420_roundtrip(frame_rgb) -> np.ndarray:
    """What yuv420p itself (no encoder) makes of an (H, W, 3) uint8 RGB frame of even size: the
    reference a decoded frame is compared with to measure the codec's own loss."""
    return from_yuv(to_yuv420(frame_rgb))


class _Aborted(Exception):
    """The writer was aborted: the temporary file is removed, nothing is published."""


def even_size(width: int, height: int) -> tuple[int, int]:
    """The (width, height) a frame of this size has in the video (yuv420p: both even)."""
    return int(width) + int(width) % 2, int(height) + int(height) % 2


def _rate(fps) -> Fraction:
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps={fps}: must be > 0")
    return rate


class VideoWriter:
    """An MP4 file (H.264, yuv420p) of RGB(A) frames of ``size`` = (width, height), played at ``fps``.

    ``write(frame)`` takes an (height, width, 3 or 4) uint8 array (alpha ignored) and returns once the
    frame is queued (a copy is taken); ``close()`` encodes what is queued, finishes the file, publishes
    it under ``path`` (or, when ``path`` was taken meanwhile, ``another()``: generated names) and returns
    the path written. Use it as a context manager: an exception in the ``with`` block aborts (no file).
    ``frames_written``: frames accepted by ``write``; ``frames_encoded``: frames the encoder has sent.
    """

    def __init__(self, path, fps, size, *, queue_frames: int = 8, crf: int = DEFAULT_CRF,
                 preset: str = DEFAULT_PRESET, another=None):
        try:
            import av  # noqa: F401  (fail here, in the caller, when PyAV is missing)
        except ImportError as e:
            raise ImportError(f"MP4 video needs PyAV, a dependency of vkbands that is not installed here: "
                              f"pip install av ({e})") from e
        self.path = Path(path)
        self.fps = float(fps)
        self.rate = _rate(fps)
        w, h = (int(s) for s in size)
        if w < 1 or h < 1:
            raise ValueError(f"video size {w}x{h}: width and height must be >= 1")
        self.size = (w, h)
        self.video_size = even_size(w, h)
        self.crf, self.preset, self.another = int(crf), str(preset), another
        self.frames_written = 0
        self.frames_encoded = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(queue_frames)))
        self._error: BaseException | None = None
        self._result: Path | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"vkbands video {self.path.name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer side
    def write(self, frame):
        """Queue one frame (blocks while the queue is full). Raises the encoder's error, if it failed."""
        if self._closed:
            raise ValueError(f"video {self.path}: already closed")
        self._raise_failed()
        a = np.asarray(frame)
        w, h = self.size
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[:2] != (h, w) or a.shape[2] not in (3, 4):
            raise ValueError(f"video frame of shape {a.shape} and dtype {a.dtype}: expected ({h}, {w}, 3 or 4) uint8")
        if (w, h) == tuple(self.video_size):
            item = np.array(a, order="C", copy=True)   # one contiguous copy: RGB(A) -> yuv happens off this thread
        else:                                         # odd size: repeat the last column / row
            item = np.empty(self.video_size[::-1] + (a.shape[2],), np.uint8)
            item[:h, :w] = a
            if w % 2:
                item[:h, w] = a[:, -1]
            if h % 2:
                item[h] = item[h - 1]
        while True:        # block while full, but never on an encoder that died
            try:
                self._queue.put(item, timeout=0.2)
                break
            except queue.Full:
                self._raise_failed()
                if not self._thread.is_alive():
                    raise RuntimeError(f"video {self.path}: the encoder thread stopped")
        self.frames_written += 1

    @property
    def queued(self) -> int:
        """Frames waiting for the encoder now."""
        return self._queue.qsize()

    def _raise_failed(self):
        if self._error is not None:
            raise self._error

    def close(self) -> Path:
        """Encode the queued frames, finish and publish the file; its path. Raises the encoder's
        error (then no file was published). Idempotent."""
        if not self._closed:
            self._closed = True
            self._put_always(_END)
            self._thread.join()
        self._raise_failed()
        return self._result

    def abort(self):
        """Stop without publishing anything (the temporary file is removed); waits for the thread."""
        if self._closed:
            return
        self._closed = True
        while True:        # drop what is queued so the marker goes in at once
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._put_always(_ABORT)
        self._thread.join()

    def _put_always(self, item):
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # ------------------------------------------------------------------ encoder thread
    def _run(self):
        from ._outputs import write_new
        try:
            self._result = write_new(self.path, self._encode_all, another=self.another)
        except _Aborted:
            pass
        except BaseException as e:       # noqa: BLE001 — handed to the caller's thread
            self._error = e
            while True:                  # unblock a producer waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def _encode_all(self, f):
        import av
        from av.video.reformatter import ColorRange, Colorspace
        container = av.open(f, mode="w", format="mp4")
        try:
            stream = container.add_stream("libx264", rate=self.rate)
            stream.width, stream.height = self.video_size
            stream.pix_fmt = "yuv420p"
            cc = stream.codec_context
            cc.time_base = 1 / self.rate
            cc.colorspace, cc.color_range = Colorspace.ITU709, ColorRange.MPEG
            cc.color_primaries = cc.color_trc = 1          # BT.709 (ColorPrimaries/ColorTrc.BT709)
            stream.options = {"crf": str(self.crf), "preset": self.preset}
            index = 0
            while True:
                item = self._queue.get()
                if item is _END:
                    break
                if item is _ABORT:
                    raise _Aborted()
                yuv = to_yuv420(item)
                yuv.pts = index
                yuv.time_base = cc.time_base
                self._encode(container, stream, yuv)
                index += 1
                self.frames_encoded = index
            self._encode(container, stream, None)          # flush the encoder's delayed frames
        finally:
            container.close()

    def _encode(self, container, stream, frame):
        """Encode one frame (None: flush) and mux its packets (tests wrap this to slow it down)."""
        for packet in stream.encode(frame):
            container.mux(packet)


def read_video(path, max_frames: int | None = None) -> tuple[list, float]:
    """Decode an MP4 written by :class:`VideoWriter` (or any H.264 file): its frames as (H, W, 3)
    uint8 RGB arrays (BT.709, limited range, as written) and its frame rate."""
    import av
    frames = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        rate = float(stream.average_rate or stream.base_rate or 0)
        for frame in c.decode(stream):
            frames.append(from_yuv(frame))
            if max_frames is not None and len(frames) >= max_frames:
                break
    return frames, rate
