"""Headless pictures of a rollout: sheet grids (SPEC section 6), the energies plot, the GIF.

- :class:`SheetRenderer` draws the sheet grid of one field on the device: the panel stack
  ``[s^(0..L), D^(0..L-1)]`` from :meth:`vkbands.bands.BandPlan.record_sheets`, coloured by
  ``write_image.comp`` and labelled by ``labels.comp`` through :class:`vkbands.labels.LabelledWriter`
  (the same path as the viewer, so the files and the window show the same pixels): a header line
  (system, shape, p, L, member, step and time, the parameters), a title per panel (band, scale in
  leaves, its range with ``per_band``) and the colour bar with its numeric range. 2-D: row 1 the
  cumulative sheets, row 2 the details; 1-D: the 2L+1 sheets as strips stacked in one column.
  ``labels=False`` gives the bare grid (exactly the panels of the labelled one).
- :func:`band_time_image`: a 1-D rollout's energies as a band x time picture with a title, band names
  and a step axis (rows = bands E_0..E_{L-1}, E_c; columns = observed steps; grey = log10 E).
- :func:`save_energies_plot`: log E_l(t) per band (matplotlib), closed form dashed, y axis clipped to
  the measured decades.
- :func:`save_gif`: frames -> animated GIF (Pillow).

Range: :data:`vkbands.image.DEFAULT_RANGE` (``per_band``: each panel scaled by its own max|x| of the
frame, so a decaying rollout stays visible; the titles give each panel's max, the colour bar says so);
``range="fixed"`` with ``vmax`` keeps one range over a rollout (decay shows as fading).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vkbands.engine import default_context

from ._owner import Owner
from .image import DEFAULT_RANGE, ImageWriter, save_png

__all__ = ["SheetRenderer", "band_time_image", "save_energies_plot", "save_gif", "save_png", "sheet_caption"]


def sheet_caption(r, member=0, extra=None, shape=None):
    """The :class:`vkbands.labels.Caption` of member ``member`` of Rollout ``r`` (or any object with
    ``system, params, arity, levels, batch, spec, dims`` and a snapshot shape); ``shape``: the observed
    field's shape (default: read from the snapshots, batched or not)."""
    from .labels import Caption
    spec = getattr(r, "spec", None)
    observed = spec.observed if spec is not None and spec.fields_per_member > 1 else None
    shape = () if shape is None else tuple(shape)
    if not shape and getattr(r, "snapshots", None) is not None and len(r.snapshots) and spec is not None:
        snap = np.asarray(r.snapshots[0])
        one = r.dims + (1 if spec.fields_per_member > 1 else 0)      # axes of one member's state
        shape = tuple(spec.observed_field(snap[member] if snap.ndim > one else snap, r.dims).shape)
    params = {k: v for k, v in dict(r.params).items() if k != "arity"}
    return Caption(r.system, shape, r.arity, r.levels, member, r.batch, params=params, extra=dict(extra or {}),
                   observed=observed)


def _default_scale(spatial, target=192):
    if len(spatial) == 1:
        return (max(4, spatial[0] // 48), 1)
    return max(1, target // max(spatial))


class SheetRenderer(Owner):
    """Sheet-grid pictures of fields of ``spatial`` shape ((N,) or (H, W)) with ``arity``.

    ``render(field, vmax=None, step=0, time=None)`` -> ``(H', W', 4) uint8``; ``field`` is one field
    (NumPy). ``cmap``: any of :data:`vkbands.image.CMAPS` (e.g. "log": the diverging colours on
    ``sign(s) log1p(|s|/eps)``, so decaying sheets stay visible over decades). ``range``: "per_band"
    (default), "symmetric", or "fixed" (then [-vmax, vmax], vmax given to render). ``labels``: header,
    titles and colour bar (:class:`vkbands.labels.LabelledWriter`; ``caption`` a
    :class:`vkbands.labels.Caption`, the step and time passed to render); False: the bare grid.
    ``close()`` frees the device objects (or use it as a context manager).

    For video frames and notebooks: one renderer per field shape, ``render`` per frame (the
    recording is built once per vmax and replayed; the step and time are written before each replay).
    """

    def __init__(self, spatial, arity, ctx=None, scale=None, cmap="diverging", eps=1e-3, labels=True, caption=None,
                 range=DEFAULT_RANGE, member=0):
        from .bands import BandPlan
        from .labels import LabelledWriter, sheet_titles
        self.ctx = ctx = ctx or default_context()
        self.spatial = tuple(int(n) for n in spatial)
        self.cmap, self.eps, self.range, self.caption = cmap, eps, range, caption
        self.labels = bool(labels)
        try:
            self.plan = self._own(BandPlan(ctx, self.spatial, arity, batch=1))
            L = self.levels = self.plan.levels
            P = 2 * L + 1
            if len(self.spatial) == 1:
                H, W, cols = 1, self.spatial[0], 1
            else:
                (H, W), cols = self.spatial, L + 1
            scale = _default_scale(self.spatial) if scale is None else scale
            if self.labels:
                self.labelled = self._own(LabelledWriter(ctx, P, H, W, cols=cols, scale=scale, caption=caption))
                self.writer = self.labelled.writer
                self.titles = sheet_titles(np.arange(P).tolist(), L, arity, len(self.spatial))
            else:
                self.labelled, self.titles = None, []
                self.writer = self._own(ImageWriter(ctx, P, H, W, cols=cols, scale=scale))
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
            style = dict(cmap=self.cmap, range=self.range, eps=self.eps,
                         vmin=-vmax if self.range == "fixed" else None, vmax=vmax if self.range == "fixed" else None)
            if self.labelled is not None:
                self.labelled.record(rec, self.panels, self.image, caption=self.caption, titles=self.titles, **style)
            else:
                self.writer.record(rec, self.panels, self.image, **style)
            self._recs[vmax] = rec
        return rec

    def render(self, field, vmax=None, step=0, time=None) -> np.ndarray:
        """The picture of ``field`` (NumPy, this renderer's spatial shape) at ``step`` (``time``:
        default step * the caption's dt). ``vmax``: the fixed range's half-width (range="fixed" only)."""
        field = np.asarray(field, dtype=np.float32)
        if field.shape != self.spatial:
            raise ValueError(f"field has shape {field.shape}; this renderer draws {self.spatial}")
        if self.range == "fixed":
            vmax = float(vmax) if vmax is not None and np.isfinite(vmax) and vmax > 0 else 1.0
        else:
            vmax = None
        self.x.upload(field)
        if self.labelled is not None:
            dt = self.caption.dt if self.caption is not None else None
            self.labelled.set_values(step, time if time is not None else (step * dt if dt is not None else None))
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


def band_time_image(energies, scale=None, ctx=None, decades=30.0, labels=True, title=None, steps=None) -> np.ndarray:
    """``energies (T, L+1)`` of one member -> band x time RGBA picture (grey = log10 E over at most
    ``decades`` below the largest value; rows E_0..E_{L-1}, E_c; columns = observed steps, ``steps``
    their step numbers). ``labels``: a title line, the band names left of the rows, step ticks above
    the columns and the grey bar with its range in E (:class:`vkbands.labels.LabelledWriter`)."""
    from .image import render_image
    from .labels import LabelledWriter
    E = np.asarray(energies, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logE = np.log10(E)
    ok = np.isfinite(logE)
    lo, hi = (float(logE[ok].min()), float(logE[ok].max())) if ok.any() else (0.0, 1.0)
    lo = max(lo, hi - decades)
    if hi <= lo:
        hi = lo + 1.0
    img = np.clip(np.where(ok, logE, lo), lo, hi).T.astype(np.float32)          # (L+1, T)
    rows, T = img.shape
    if scale is None:
        scale = (max(12, 96 // rows), max(1, 720 // max(T, 1)))
    if not labels:
        return render_image(img, cmap="grey", vmin=lo, vmax=hi, scale=scale, ctx=ctx)
    ctx = ctx or default_context()
    steps = np.arange(T) if steps is None else np.asarray(steps)
    sy, sx = scale if isinstance(scale, (tuple, list)) else (scale, scale)
    names = [f"E_{l}" for l in range(rows - 1)] + ["E_c"]
    ticks = sorted({0, T // 2, T - 1}) if T > 1 else [0]
    title = title or "band energies log10 E_l(t): rows = bands, columns = observed steps"
    with LabelledWriter(ctx, 1, rows, T, scale=(sy, sx), header_lines=1, title_lines=1, left_chars=5, k=1,
                        min_chars=min(72, len(title) + 2)) as lw:
        x = ctx.array(img[None])
        out = lw.image()
        try:
            with ctx.recorder() as rec:
                lw.record(rec, x, out, caption=title, cmap="grey", range="fixed", vmin=lo, vmax=hi,
                          row_labels=names, col_ticks=[(c, f"step {int(steps[c])}" if c == 0 else str(int(steps[c])))
                                                       for c in ticks],
                          bar_caption=f"grey: log10 E from {10 ** lo:.1e} (black) to {10 ** hi:.1e} (white)",
                          bar_ticks=[(0.0, f"{10 ** lo:.1e}"), (0.5, f"{10 ** ((lo + hi) / 2):.1e}"),
                                     (1.0, f"{10 ** hi:.1e}")])
            return out.numpy()
        finally:
            out.close()
            x.close()


def energies_figure(steps, energies, closed_form=None, title="", member=0, figsize=(7.5, 4.5), dpi=110):
    """The energy plot of one member as a bare ``matplotlib.figure.Figure`` (pyplot untouched): log
    E_l(t) per band, ``closed_form`` (T, B, L+1) dashed if given; the y axis spans the measured energies
    (a closed form below them is clipped, not followed to 1e-180). ``energies``: (T, B, L+1)."""
    from ._plotting import plt     # bare Figures: never switches the process's matplotlib backend
    plt = plt()
    E = np.asarray(energies)[:, member]
    L1 = E.shape[-1]
    measured = E[np.isfinite(E) & (E > 0)]
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    colors = plt.cm.viridis(np.linspace(0, 0.9, L1))
    for l in range(L1):
        label = f"E_{l}" if l < L1 - 1 else "E_c"
        y = np.where(E[:, l] > 0, E[:, l], np.nan)
        ax.plot(steps, y, color=colors[l], label=label, lw=1.6)
        if closed_form is not None:
            cf = np.asarray(closed_form)[:, member, l]
            ax.plot(steps, np.where(cf > 0, cf, np.nan), color=colors[l], ls="--", lw=1.0, alpha=0.8)
    ax.set_yscale("log")
    if measured.size:       # the measured decades only: a closed form far below float32 range is clipped
        ax.set_ylim(float(measured.min()) / 3.0, float(measured.max()) * 3.0)
    ax.set_xlabel("step t")
    ax.set_ylabel("band energy E_l(t)")
    if closed_form is not None:
        title = (title + "  " if title else "") + "(dashed: closed form λ_l^(2t) E_l(0))"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2 if L1 > 8 else 1, loc="best")
    ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    return fig


def save_energies_plot(path, steps, energies, closed_form=None, title="", member=0):
    """:func:`energies_figure` saved as a PNG at ``path`` (folders created); returns the path."""
    fig = energies_figure(steps, energies, closed_form, title, member)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
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
