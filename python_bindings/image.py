"""Pictures of fields (SPEC section 6): float32 panels -> rgba8 image, rendered on the device.

``shaders/write_image.comp`` draws P panels of H x W values into one rgba8 :class:`StorageImage`:
panel p in grid cell ``(p // cols, p % cols)``, every value a ``sy x sx`` block of pixels (nearest
block expansion), cells ``gap`` pixels apart, everything outside the panels :data:`BACKGROUND`.
The exact colour maths (colour maps, range modes, fade) is defined, and tested against, in
``vkbands.reference`` (section "pictures": :func:`vkbands.reference.render_panels`).

- Colour maps ``cmap``: ``"grey"``; ``"diverging"`` (blue < 0 < red, white at the centre);
  ``"ternary"`` (``sign(s) * (|s| > tau)`` as blue / white / red); ``"log"``
  (``sign(s) * log1p(|s| / eps) / log1p(1 / eps)``, then diverging); ``"energy-height"`` (the energy
  ``s**2`` as a height: ``h = 1 + log|s| / log(1 / eps)`` clipped to [0, 1], i.e. 2 log10(1 / eps)
  decades of energy below the range, on a dark-to-light ramp; the sign is not shown). ``s`` is the
  value normalised by the range (``s = +-1`` at the range limits), so ``tau`` and ``eps`` are fractions
  of the range.
- Range ``range``: ``"fixed"`` (``vmin``, ``vmax``; default [0, 1] for grey, [-1, 1] otherwise; no
  per-frame rescale, the default for watching a rollout), ``"symmetric"`` (per frame: ``s = d / max|d|``
  over all panels), ``"per_band"`` (the same per panel). ``max|d|`` ignores NaN/Inf and is reduced on
  the device (``shaders/maxabs.comp``), over the current frame's values; a max of 0 shows the middle
  colour.
- NaN and +-Inf are drawn :data:`NONFINITE` (magenta) in every map; gaps and empty grid cells are
  :data:`BACKGROUND` (dark grey).
- Temporal fade: an r32f accumulator image of the output's size holds ``acc = fade * acc +
  (1 - fade) * current`` on the values (before the colour map); ``reset=True`` sets ``acc = current``.
  With ``fade=0`` the accumulator is not touched (half the image traffic); the first faded frame after
  unfaded ones (or the first ever) resets it automatically.

1-D fields and time series are panels too: a 1-D field ``(N,)`` is one ``(1, 1, N)`` panel drawn as a
strip with a vertical expansion ``sy``; the detail bands of a 1-D field are ``(P, 1, N)`` panels
(stacked, ``cols=1``); a band x time image (rows = bands, columns = steps) is one ``(1, T, L)`` or
``(1, L, T)`` panel, expanded with ``(sy, sx)`` to a readable size.

Labelled pictures (titles, colour bar, header line) are :mod:`vkbands.labels`: the same ImageWriter
given a ``frame`` (the grid at an offset, title space above each row, the colour bar drawn with the
same colour-map code), then the text. Without a frame the picture is exactly the unlabelled one.

Two ways in:
- :func:`render_image` / :func:`save_png`: one picture, NumPy or device field in, ``(H', W', 4) uint8`` out.
- :class:`ImageWriter`: holds the kernels, the accumulator and the reduction scratch for one layout;
  ``record(rec, panels, image, ...)`` records the whole render into a Recorder, so a viewer can
  record or replay it every frame with no host work.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from vkbands.engine import DeviceArray, StorageImage, as_host_array, current, default_context

from . import reference as R
from ._checks import option_choice, option_int, option_real
from ._owner import Owner

__all__ = ["ImageWriter", "render_image", "save_png", "layout", "CMAPS", "RANGES", "BACKGROUND",
           "NONFINITE", "GAP", "DEFAULT_RANGE"]

# The colour maps, range modes and default limits are SPEC section 6, defined once in the reference
# (whose colorize() every write_image.comp test compares against); the shader takes their indices.
CMAPS = R.PICTURE_CMAPS
RANGES = R.PICTURE_RANGES
DEFAULT_LIMITS = R.PICTURE_DEFAULT_LIMITS
# The range pictures of a rollout use unless told otherwise (files, demo, viewer): each panel scaled by
# its own max|x| of the frame, so a decaying field stays visible (its colour bar and titles say so).
DEFAULT_RANGE = "per_band"
BACKGROUND = (32, 32, 32, 255)   # gaps and empty grid cells (also written in write_image.comp)
NONFINITE = (255, 0, 255, 255)   # NaN, +Inf, -Inf in every colour map
GAP = 2                          # default pixels between panels
DEFAULT_TAU = 1e-3
DEFAULT_EPS = 1e-3
_REDUCE_VALUES_PER_INVOCATION = 32


# ----------------------------------------------------------------------------- argument checks
def _scale(scale):
    """``scale`` -> (sy, sx): an int k means (k, k)."""
    if isinstance(scale, (tuple, list)):
        if len(scale) != 2:
            raise ValueError(f"scale={scale!r}: give an int >= 1 or a pair (sy, sx) of ints >= 1")
        return option_int("scale[0] (sy)", scale[0], 1), option_int("scale[1] (sx)", scale[1], 1)
    k = option_int("scale", scale, 1)
    return k, k


def _default_cols(P, H):
    """All panels in one row, except strips (H == 1), which stack in one column."""
    return 1 if H == 1 else P


def layout(P, H, W, cols=None, sx=1, sy=1, gap=GAP):
    """``(height, width)`` in pixels of the picture of P panels of H x W values.

    ``rows = ceil(P / cols)``; height ``rows * (H * sy + gap) - gap``, width ``cols * (W * sx + gap) - gap``.
    ``cols=None``: one row (one column when H == 1, i.e. for 1-D strips)."""
    P, H, W = option_int("P", P, 1), option_int("H", H, 1), option_int("W", W, 1)
    cols = _default_cols(P, H) if cols is None else option_int("cols", cols, 1)
    cols = min(cols, P)
    sx, sy, gap = option_int("sx", sx, 1), option_int("sy", sy, 1), option_int("gap", gap, 0)
    rows = -(-P // cols)
    return rows * (H * sy + gap) - gap, cols * (W * sx + gap) - gap


def _style(cmap, range, vmin, vmax, tau, eps):
    """Checked push-constant values of the colour mapping (shared by ImageWriter.record and render_image)."""
    cmap = option_choice("cmap", cmap, CMAPS)
    range = option_choice("range", range, RANGES)
    lo, hi = DEFAULT_LIMITS[cmap]
    vmin = lo if vmin is None else option_real("vmin", vmin)
    vmax = hi if vmax is None else option_real("vmax", vmax)
    if not vmax > vmin:
        raise ValueError(f"vmin={vmin!r}, vmax={vmax!r}: need vmin < vmax")
    tau = option_real("tau", tau, lo=0.0, allowed=" >= 0")
    eps = option_real("eps", eps, lo=0.0, lo_open=True, allowed=" > 0")
    return dict(cmap=CMAPS.index(cmap), range_mode=RANGES.index(range),
                centre=(vmin + vmax) / 2.0 if range == "fixed" else 0.0,
                inv_half=2.0 / (vmax - vmin) if range == "fixed" else 0.0,
                tau=tau, inv_eps=1.0 / eps, log_norm=1.0 / math.log1p(1.0 / eps),
                e_norm=1.0 / math.log(1.0 / eps) if eps != 1.0 else 0.0)


# ----------------------------------------------------------------------------- the device renderer
class ImageWriter(Owner):
    """Renders P panels of H x W float32 values into an rgba8 image of one fixed layout.

    Args:
        ctx: the Context (default: the default context).
        P, H, W: panels and their size; the panels array given to :meth:`record` has shape
            ``(P, H, W)`` (``(H, W)`` when P == 1, ``(W,)`` when P == H == 1), float32.
        cols: panels per row (default: one row; one column for strips, H == 1).
        scale: nearest block expansion, an int or ``(sy, sx)``.
        gap: pixels between grid cells.
        frame: a labelled layout (:class:`vkbands.labels.Frame`: image size, grid origin, title space
            above each panel row, colour bar); None: the picture is the grid alone.
    Attributes: ``height``, ``width`` (``shape = (height, width)``), ``acc`` (the r32f accumulator),
    ``P, H, W, cols, rows, sx, sy, gap, frame``. :meth:`image` makes a matching rgba8 image.
    """

    def __init__(self, ctx=None, P=1, H=1, W=1, cols=None, scale=1, gap=GAP, frame=None):
        self.ctx = ctx = ctx or default_context()
        self.P, self.H, self.W = option_int("P", P, 1), option_int("H", H, 1), option_int("W", W, 1)
        self.sy, self.sx = _scale(scale)
        self.gap = option_int("gap", gap, 0)
        self.cols = min(self.P, _default_cols(self.P, self.H) if cols is None else option_int("cols", cols, 1))
        self.rows = -(-self.P // self.cols)
        self.height, self.width = layout(self.P, self.H, self.W, self.cols, self.sx, self.sy, self.gap)
        self.frame = frame
        self._offset = (0, 0, 0)               # (oy, ox, pad_top)
        self._bar = (0, 0, 0, 0)
        if frame is not None:
            gh = self.rows * (self.H * self.sy + self.gap + frame.pad_top) - self.gap
            if frame.oy + gh > frame.height or frame.ox + self.width > frame.width:
                raise ValueError(f"frame {frame!r} does not hold the {gh}x{self.width} grid")
            self.height, self.width = int(frame.height), int(frame.width)
            self._offset = (int(frame.oy), int(frame.ox), int(frame.pad_top))
            self._bar = tuple(int(b) for b in frame.bar)
        limit = int(ctx.limits.maxImageDimension2D)
        if self.height > limit or self.width > limit:
            raise ValueError(f"picture size {self.height}x{self.width} (P={self.P}, H={self.H}, W={self.W}, "
                             f"cols={self.cols}, scale=({self.sy}, {self.sx}), gap={self.gap}) exceeds this "
                             f"device's maxImageDimension2D={limit}; use a smaller scale or more/less cols")
        self._draw = ctx.kernel("write_image.comp")
        self._reduce = ctx.kernel("maxabs.comp")
        n = self.H * self.W
        self._chunk = self._reduce.local_size[0] * _REDUCE_VALUES_PER_INVOCATION
        self._chunks = -(-n // self._chunk)
        self._last_fade = 0.0
        try:
            self.acc = self._own(ctx.image(self.height, self.width, "r32f"))
            self._partial = self._own(ctx.empty((self.P * self._chunks,))) if self._chunks > 1 else None
            self._panel_max = self._own(ctx.empty((self.P,)))
            self._all_max = self._own(ctx.empty((1,)))
        except BaseException:
            self.close()
            raise

    @property
    def shape(self):
        return self.height, self.width

    def image(self) -> StorageImage:
        """A new rgba8 :class:`StorageImage` of this layout's size (the caller closes it)."""
        return self.ctx.image(self.height, self.width, "rgba8")

    def panel_rect(self, p):
        """Pixel rectangle ``(y0, x0, y1, x1)`` (half-open: ``img[y0:y1, x0:x1]``) of panel p."""
        p = option_int("p", p, 0)
        if p >= self.P:
            raise ValueError(f"p={p}: this layout has panels 0..{self.P - 1}")
        oy, ox, pad = self._offset
        y0 = oy + pad + (p // self.cols) * (self.H * self.sy + self.gap + pad)
        x0 = ox + (p % self.cols) * (self.W * self.sx + self.gap)
        return y0, x0, y0 + self.H * self.sy, x0 + self.W * self.sx

    def scale_buffer(self, range):
        """The device buffer of max|x| that ``range`` reads after :meth:`record`: per panel
        (per_band, or one panel), else the one over all panels (symmetric); fixed: the per-panel one
        (unused)."""
        return self._all_max if range == "symmetric" and self.P > 1 else self._panel_max

    def _check(self, panels, image):
        if not isinstance(panels, DeviceArray):
            raise TypeError(f"panels: expected a DeviceArray (vkbands.asarray), got {type(panels).__name__}")
        allowed = [(self.P, self.H, self.W)]
        if self.P == 1:
            allowed.append((self.H, self.W))
            if self.H == 1:
                allowed.append((self.W,))
        if tuple(panels.shape) not in allowed:
            raise ValueError(f"panels.shape={tuple(panels.shape)}: this ImageWriter draws "
                             f"{' or '.join(map(str, allowed))}")
        if panels.dtype != np.float32:
            raise TypeError(f"panels: dtype {panels.dtype} not supported; allowed: float32")
        if panels.ctx is not self.ctx:
            raise ValueError("panels: device array belongs to another Context")
        if not isinstance(image, StorageImage) or image.format != "rgba8":
            raise TypeError(f"image: expected an rgba8 StorageImage, got {image!r}")
        if (image.height, image.width) != self.shape:
            raise ValueError(f"image is {image.height}x{image.width}; this layout needs "
                             f"{self.height}x{self.width} (ImageWriter.image() makes one)")

    def _record_reduction(self, rec, panels, symmetric):
        """max|v| over finite values on the device: per panel, then (symmetric) over all panels."""
        k, n = self._reduce, self.H * self.W
        if self._chunks == 1:
            rec.dispatch(k, k.grid(self.P), panels, self._panel_max,
                         push=dict(n_groups=self.P, seg_len=n, chunk=n, chunks=1))
        else:
            g = self.P * self._chunks
            rec.dispatch(k, k.grid(g), panels, self._partial,
                         push=dict(n_groups=g, seg_len=n, chunk=self._chunk, chunks=self._chunks))
            rec.dispatch(k, k.grid(self.P), self._partial, self._panel_max,
                         push=dict(n_groups=self.P, seg_len=self._chunks, chunk=self._chunks, chunks=1))
        if not symmetric or self.P == 1:
            return self._panel_max
        rec.dispatch(k, (1, 1, 1), self._panel_max, self._all_max,
                     push=dict(n_groups=1, seg_len=self.P, chunk=self.P, chunks=1))
        return self._all_max

    def record(self, rec, panels, image, cmap="diverging", range="fixed", vmin=None, vmax=None,
               tau=DEFAULT_TAU, eps=DEFAULT_EPS, fade=0.0, reset=False):
        """Record the render of ``panels`` (DeviceArray, float32) into ``image`` (rgba8, this layout's
        size) into Recorder ``rec``: the range reduction (symmetric/per_band) and one draw dispatch.
        Nothing is submitted; replaying the recording re-renders the panels' current contents
        (fading again from the accumulator). See the module docstring for the arguments."""
        style = _style(cmap, range, vmin, vmax, tau, eps)
        fade = option_real("fade", fade, lo=0.0, hi=1.0, hi_open=True, allowed=" in [0, 1)")
        if self.closed:
            raise ValueError("this ImageWriter is closed")
        self._check(panels, image)
        scale = self._panel_max
        if style["range_mode"] != 0:
            scale = self._record_reduction(rec, panels, symmetric=style["range_mode"] == 1)
        if fade > 0.0 and self._last_fade == 0.0:
            reset = True  # without fade the shader leaves the accumulator stale: start it from this frame
        self._last_fade = fade
        (oy, ox, pad), (by, bx, bh, bw) = self._offset, self._bar
        compact = self.frame is not None
        push = dict(n_panels=self.P, height=self.H, width=self.W, cols=self.cols, sx=self.sx, sy=self.sy,
                    gap=self.gap, reset=int(bool(reset)), fade=fade, ox=ox, oy=oy, pad_top=pad,
                    bar_x=bx, bar_y=by, bar_w=bw, bar_h=bh, compact=int(compact), **style)
        d = self._draw
        if compact:   # labelled: clear the margins, then only the panel rows and the bar are computed
            rec.clear(image, tuple(c / 255.0 for c in BACKGROUND))
            gh, gw = layout(self.P, self.H, self.W, self.cols, self.sx, self.sy, self.gap)
            rec.dispatch(d, d.groups(max(gw, bw), gh + bh), panels, scale, self.acc, image, push=push)
        else:
            rec.dispatch(d, d.groups(self.width, self.height), panels, scale, self.acc, image, push=push)
        return image

    def __repr__(self):
        return (f"<vkbands.ImageWriter P={self.P} panels {self.H}x{self.W} cols={self.cols} "
                f"scale=({self.sy}, {self.sx}) gap={self.gap} -> {self.height}x{self.width}>")


# ----------------------------------------------------------------------------- one-shot pictures
def _panels_shape(shape):
    if len(shape) == 1:
        return 1, 1, shape[0]
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    if len(shape) == 3:
        return tuple(shape)
    raise ValueError(f"field.shape={tuple(shape)}: allowed are (N,) (a strip), (H, W) or (P, H, W) panels")


def render_image(field, cmap="diverging", vmin=None, vmax=None, range="fixed", scale=None, cols=None,
                 gap=GAP, tau=DEFAULT_TAU, eps=DEFAULT_EPS, ctx=None) -> np.ndarray:
    """The picture of ``field`` as a NumPy ``(H', W', 4) uint8`` RGBA array, rendered on the device.

    Args:
        field: NumPy array or DeviceArray (float32), shape ``(H, W)``, ``(P, H, W)`` (P panels on a
            grid) or ``(N,)`` (a 1-D field, drawn as a strip).
        cmap: "grey", "diverging", "ternary", "log", "energy-height".  range: "fixed", "symmetric", "per_band".
        vmin, vmax: the fixed range (default [0, 1] for grey, [-1, 1] for the signed maps).
        scale: nearest block expansion, int or ``(sy, sx)``; default 1, except strips (H == 1), which
            get ``sy = ceil(W / 8)`` (an 8:1 strip).
        cols: panels per row (default: one row; one column for strips).  gap: pixels between cells.
        tau: ternary threshold, eps: log-map knee; both as fractions of the range's half-width.
    Always returns NumPy (it reads the picture back), so it cannot run inside a recording: use
    :class:`ImageWriter` there.
    """
    if current() is not None:
        raise RuntimeError("render_image reads the picture back and cannot run inside a recording; "
                           "use vkbands.image.ImageWriter.record(rec, ...) there")
    if isinstance(field, DeviceArray):
        if field.dtype != np.float32:
            raise TypeError(f"field: dtype {field.dtype} not supported; allowed: float32")
        shape = tuple(field.shape)
    else:
        if isinstance(field, (str, bytes)) or field is None:
            raise TypeError(f"field: expected a NumPy array or DeviceArray, got {type(field).__name__}")
        field = as_host_array(field, np.float32, "field")
        shape = field.shape
    P, H, W = _panels_shape(shape)
    if P * H * W == 0:
        raise ValueError(f"field.shape={tuple(shape)}: the field is empty")
    if scale is None:
        scale = (max(1, -(-W // 8)), 1) if H == 1 else 1
    sy, sx = _scale(scale)
    _style(cmap, range, vmin, vmax, tau, eps)   # check every argument before touching the device
    ctx = ctx or (field.ctx if isinstance(field, DeviceArray) else default_context())
    temps = []
    try:
        if isinstance(field, DeviceArray):
            panels = field
        else:
            panels = ctx.array(field)
            temps.append(panels)
        writer = ImageWriter(ctx, P, H, W, cols=cols, scale=(sy, sx), gap=gap)
        temps.append(writer)
        img = writer.image()
        temps.append(img)
        with ctx.recorder() as rec:
            writer.record(rec, panels.reshape(P, H, W), img, cmap=cmap, range=range, vmin=vmin, vmax=vmax,
                          tau=tau, eps=eps)
        return img.numpy()
    finally:
        for t in reversed(temps):
            t.close()


def save_png(path, image_or_field, **render_kwargs) -> Path:
    """Write a PNG (Pillow) and return its path; parent folders are created.

    ``image_or_field``: an ``(H, W, 4) uint8`` RGBA image (written as is; ``render_kwargs`` must then
    be empty), or a field that :func:`render_image` accepts (rendered with ``render_kwargs`` first).
    """
    from PIL import Image

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path={path!r}: must be a str or os.PathLike")
    img = image_or_field
    is_image = (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 4)
    if is_image:
        if render_kwargs:
            raise TypeError(f"save_png: {sorted(render_kwargs)} apply to fields only; an (H, W, 4) uint8 "
                            "image is written as is")
    else:
        img = render_image(img, **render_kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(img), "RGBA").save(path, format="PNG")
    return path
