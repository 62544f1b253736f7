"""Headless pictures of a rollout: sheet grids (SPEC section 6), the energies plot, the GIF.

- :class:`SheetRenderer` draws the sheet grid of one field on the device: the panel stack
  ``[s^(0..L), D^(0..L-1)]`` from :meth:`vkbands.bands.BandPlan.record_sheets`, coloured by
  ``write_image.comp`` through :class:`vkbands.image.ImageWriter` (the same path as the viewer, so the
  files and the window show the same pixels). 2-D: row 1 the cumulative sheets, row 2 the details;
  1-D: the 2L+1 sheets as strips stacked in one column. One fixed colour range for every frame of a
  rollout (no per-frame rescale), so decay is visible.
- :func:`band_time_image`: a 1-D rollout's energies as a band x time picture (rows = bands
  E_0..E_{L-1}, E_c; columns = observed steps; grey = log10 E, fixed range).
- :func:`save_energies_plot`: log E_l(t) per band (matplotlib), tree closed form dashed.
- :func:`save_gif`: frames -> animated GIF (Pillow).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vkbands.engine import default_context

from ._owner import Owner
from .image import ImageWriter, save_png

__all__ = ["SheetRenderer", "band_time_image", "save_energies_plot", "save_gif", "save_png"]


def _default_scale(spatial, target=192):
    if len(spatial) == 1:
        return (max(4, spatial[0] // 48), 1)
    return max(1, target // max(spatial))


class SheetRenderer(Owner):
    """Sheet-grid pictures of fields of ``spatial`` shape ((N,) or (H, W)) with ``arity``.

    ``render(field, vmax)`` -> ``(H', W', 4) uint8``; ``field`` is one field (NumPy). The colour map
    (``cmap``: "diverging", blue < 0 < red, or "log", the same colours on ``sign(s) log1p(|s|/eps)``
    so that decaying sheets stay visible over decades) uses the fixed range [-vmax, vmax].
    ``close()`` frees the device objects (or use it as a context manager).
    """

    def __init__(self, spatial, arity, ctx=None, scale=None, cmap="diverging", eps=1e-3):
        from .bands import BandPlan
        self.ctx = ctx = ctx or default_context()
        self.spatial = tuple(int(n) for n in spatial)
        self.cmap, self.eps = cmap, eps
        try:
            self.plan = self._own(BandPlan(ctx, self.spatial, arity, batch=1))
            L = self.levels = self.plan.levels
            P = 2 * L + 1
            if len(self.spatial) == 1:
                H, W, cols = 1, self.spatial[0], 1
            else:
                (H, W), cols = self.spatial, L + 1
            self.writer = self._own(ImageWriter(ctx, P, H, W, cols=cols,
                                                scale=_default_scale(self.spatial) if scale is None else scale))
            self.image = self._own(self.writer.image())
            self.x = self._own(ctx.zeros(self.spatial))
            self.panels = self._own(ctx.zeros((P, H, W)))
            self._recs = {}
        except BaseException:
            self.close()
            raise

    def _recording(self, vmax):
        rec = self._recs.get(vmax)
        if rec is None:
            rec = self._own(self.ctx.recorder())
            self.plan.record_sheets(rec, self.x, self.panels, member=0)
            self.writer.record(rec, self.panels, self.image, cmap=self.cmap, range="fixed", vmin=-vmax, vmax=vmax,
                               eps=self.eps)
            self._recs[vmax] = rec
        return rec

    def render(self, field, vmax=1.0) -> np.ndarray:
        field = np.asarray(field, dtype=np.float32)
        if field.shape != self.spatial:
            raise ValueError(f"field has shape {field.shape}; this renderer draws {self.spatial}")
        vmax = float(vmax) if np.isfinite(vmax) and vmax > 0 else 1.0
        self.x.upload(field)
        self._recording(vmax).submit()
        return self.image.numpy()



def robust_vmax(fields, q=99.5) -> float:
    """The colour range half-width for ``fields``: the ``q``-th percentile of |x| over the finite
    values (outliers saturate instead of washing everything out); 1.0 if that is 0 or there are none."""
    a = np.asarray(fields, dtype=np.float64)
    a = np.abs(a[np.isfinite(a)])
    m = float(np.percentile(a, q)) if a.size else 0.0
    if m <= 0 and a.size:
        m = float(a.max())
    return m if m > 0 else 1.0


def band_time_image(energies, scale=None, ctx=None, decades=30.0) -> np.ndarray:
    """``energies (T, L+1)`` of one member -> band x time RGBA picture (grey = log10 E over at most
    ``decades`` below the largest value; rows E_0..E_{L-1}, E_c; columns = observed steps)."""
    from .image import render_image
    E = np.asarray(energies, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logE = np.log10(E)
    ok = np.isfinite(logE)
    lo, hi = (float(logE[ok].min()), float(logE[ok].max())) if ok.any() else (0.0, 1.0)
    lo = max(lo, hi - decades)
    if hi <= lo:
        hi = lo + 1.0
    img = np.clip(np.where(ok, logE, lo), lo, hi).T.astype(np.float32)          # (L+1, T)
    T = img.shape[1]
    if scale is None:
        scale = (max(4, 64 // img.shape[0]), max(1, 512 // max(T, 1)))
    return render_image(img, cmap="grey", vmin=lo, vmax=hi, scale=scale, ctx=ctx)


def save_energies_plot(path, steps, energies, closed_form=None, title="", member=0):
    """log E_l(t) per band of one member (matplotlib, Agg); ``closed_form`` dashed if given."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    E = np.asarray(energies)[:, member]
    L1 = E.shape[-1]
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    colors = plt.cm.viridis(np.linspace(0, 0.9, L1))
    for l in range(L1):
        label = f"E_{l}" if l < L1 - 1 else "E_c"
        y = np.where(E[:, l] > 0, E[:, l], np.nan)
        ax.plot(steps, y, color=colors[l], label=label, lw=1.6)
        if closed_form is not None:
            cf = np.asarray(closed_form)[:, member, l]
            ax.plot(steps, np.where(cf > 0, cf, np.nan), color=colors[l], ls="--", lw=1.0, alpha=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel("band energy E_l(t)")
    if closed_form is not None:
        title = (title + "  " if title else "") + "(dashed: closed form λ_l^(2t) E_l(0))"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2 if L1 > 8 else 1, loc="best")
    ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_gif(path, frames, duration_ms=200):
    """Animated GIF (looping) of RGBA ``frames`` (list of (H, W, 4) uint8), Pillow."""
    from PIL import Image

    frames = list(frames)
    if not frames:
        raise ValueError("save_gif: no frames")
    imgs = [Image.fromarray(np.ascontiguousarray(f), "RGBA").convert("RGB") for f in frames]
    pal = [im.quantize(colors=255, method=Image.Quantize.MEDIANCUT) for im in imgs]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pal[0].save(path, format="GIF", save_all=True, append_images=pal[1:], duration=int(duration_ms), loop=0)
    return path
