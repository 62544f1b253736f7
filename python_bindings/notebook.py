"""Jupyter: how :class:`vkbands.Bands` and :class:`vkbands.Rollout` display themselves, and
:func:`live`, the interactive widget.

Displays (called by the two classes' ``_repr_png_`` / ``_repr_html_``; every picture is the labelled
sheet grid drawn on the device, the same pixels as ``vkbands rollout``'s files):

- :func:`bands_png`: the sheet grid ``[s^(0..L), D^(0..L-1)]`` of one member of a decomposition, PNG.
- :func:`rollout_html`: a summary table (system, parameters, shape, steps, status, and per band the
  first and last energy, the kill step and the contraction rate), the energy plot (matplotlib, the
  closed form dashed; an inline PNG) and an animation of the sheets over the snapshots: an animated
  GIF in an ``<img>`` (no codec, no script: JupyterLab, classic Notebook, VS Code -- whose Electron
  has no H.264 -- and static renderers all show it). Bounded: at most :data:`MAX_FRAMES` frames
  (snapshots evenly subsampled, the last one kept) and :data:`MAX_WIDTH` pixels wide (larger frames
  shown at 1/2, 1/3... by taking every n-th pixel); the HTML says what was left out. Without
  snapshots, the sheet grid of the final state, with a note.

The widget (needs ``ipywidgets``: ``pip install 'vkbands[notebook]'``)::

    w = vkbands.notebook.live("grayscott", size=81, preset="spots", steps_per_frame=20)
    w             # in JupyterLab: play/pause, step, reset, steps per frame, one slider per live parameter
    w.step()      # or drive it from code; w.sim is the Simulation, w.png the current picture

Design: everything runs on the kernel's main thread, between cells. Play/pause is an
``ipywidgets.Play`` -- a timer in the browser that advances its ``value``; each tick arrives as a
message and runs one frame (``steps_per_frame`` steps, the labelled picture rendered offscreen and
sent as the ``ipywidgets.Image``'s PNG). No background thread touches the Vulkan context, so a cell
that uses vkbands while the widget plays is never submitted concurrently with it (a thread would
share the context's queue). A frame slower than the timer lengthens the timer's interval, so ticks do
not pile up. Nothing plays while the kernel runs a cell; it continues afterwards.
"""
from __future__ import annotations

import base64
import builtins
import html
import io
import math
import time

import numpy as np

__all__ = ["bands_picture", "bands_png", "rollout_picture", "rollout_frames", "rollout_html", "energies_png",
           "png_bytes", "gif_bytes", "live", "Live", "MAX_FRAMES", "MAX_WIDTH", "MAX_BYTES", "FRAME_MS"]

MAX_FRAMES = 40        # frames of a rollout's inline animation (snapshots subsampled evenly beyond)
MAX_WIDTH = 1000       # pixels: wider frames are shown at 1/n size in the animation
FRAME_MS = 200         # animation: milliseconds per frame
MAX_BYTES = 3 << 20    # the GIF's size: beyond, every other frame is dropped (then pixels) until it fits


# ----------------------------------------------------------------------------- encoding
def png_bytes(img) -> bytes:
    """An ``(H, W, 3|4) uint8`` picture as PNG bytes (Pillow, lossless)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
    return buf.getvalue()


def gif_bytes(frames, duration_ms=FRAME_MS) -> bytes:
    """Frames (``(H, W, 4) uint8``, one size) as a looping animated GIF (Pillow; as
    :func:`vkbands.render.save_gif`: each frame quantised to its own 255 colours)."""
    from PIL import Image
    imgs = [Image.fromarray(np.ascontiguousarray(f)).convert("RGB")
            .quantize(colors=255, method=Image.Quantize.MEDIANCUT) for f in frames]
    if not imgs:
        raise ValueError("gif_bytes: no frames")
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=int(duration_ms), loop=0)
    return buf.getvalue()


def _img_tag(mime, data, alt, pixelated=True):
    style = "max-width:100%;height:auto" + (";image-rendering:pixelated" if pixelated else "")
    return (f'<img src="data:{mime};base64,{base64.b64encode(data).decode("ascii")}" alt="{html.escape(alt)}"'
            f' style="{style}"/>')


# ----------------------------------------------------------------------------- Bands
def _sheet_scale(spatial):
    """The block expansion of :class:`vkbands.render.SheetRenderer` (its default)."""
    if len(spatial) == 1:
        return (max(4, spatial[0] // 48), 1)
    return max(1, 192 // max(spatial))


def bands_picture(bands, member=0, cmap="diverging", range="per_band", ctx=None) -> np.ndarray:
    """The labelled sheet grid (row 1 ``s^(0..L)``, row 2 ``D^(0..L-1)``; 1-D: strips) of field
    ``member`` (flat index over the batch) of a :class:`vkbands.Bands`, at its own L, as
    ``(H, W, 4) uint8``: the field is reconstructed, its sheets recorded by
    :meth:`vkbands.BandPlan.record_sheets` and drawn by :func:`vkbands.labels.render_labelled`."""
    from vkbands.engine import default_context

    from .bands import BandPlan, reconstruct
    from .labels import Caption, render_labelled, sheet_titles
    x = reconstruct(bands)
    if not isinstance(x, np.ndarray):
        x = x.numpy()
    spatial, L, p = tuple(bands.spatial_shape), bands.levels, bands.arity
    B = int(np.prod(bands.batch_shape, dtype=np.int64))
    member = int(member)
    if not 0 <= member < max(B, 1):
        raise ValueError(f"member={member}: allowed 0..{B - 1} (the batch has {B} fields)")
    field = x.reshape((-1,) + spatial)[member] if B else None
    if field is None:
        raise ValueError("these Bands hold no field (an empty batch)")
    ctx = ctx or default_context()
    P = 2 * L + 1
    H, W = (1, spatial[0]) if len(spatial) == 1 else spatial
    cols = 1 if len(spatial) == 1 else L + 1
    caption = Caption("bands", spatial, p, L, member, max(B, 1), step=False)
    with BandPlan(ctx, spatial, p, batch=1, levels=L) as plan:
        with ctx.array(field) as xd, ctx.zeros((P, H, W)) as panels:
            with ctx.recorder() as rec:
                plan.record_sheets(rec, xd, panels, member=0)
            return render_labelled(panels, caption=caption, titles=sheet_titles(list(builtins.range(P)), L, p, len(spatial)),
                                   cmap=cmap, range=range, scale=_sheet_scale(spatial), cols=cols, ctx=ctx,
                                   header_lines=len(caption.lines()))



def bands_png(bands, member=0):
    """PNG bytes of :func:`bands_picture` (None for closed or empty Bands: nothing to show)."""
    if bands.closed or int(np.prod(bands.batch_shape, dtype=np.int64)) == 0:
        return None
    return png_bytes(bands_picture(bands, member))


# ----------------------------------------------------------------------------- Rollout
def _member_fields(r, states, member):
    """The observed field of ``member`` in each state of ``states`` (a stack of states shaped like x0)."""
    spec = r.spec
    batched = spec.resolve_shape(np.shape(states)[1:], r.dims)[0]
    states = np.asarray(states)
    if batched:
        states = states[:, member]
    elif member:
        raise ValueError(f"member={member}: this rollout has one unbatched field")
    return spec.observed_field(states, r.dims)


def _caption(r, member, spatial):
    from .render import sheet_caption
    return sheet_caption(r, member, shape=spatial)


def _render(r, fields, steps, member, ctx=None):
    from .render import SheetRenderer
    spatial = fields[0].shape
    with SheetRenderer(spatial, r.arity, ctx=ctx, cmap=r.spec.picture.cmap, caption=_caption(r, member, spatial)) as sr:
        return [(int(t), sr.render(f, step=int(t))) for t, f in zip(steps, fields)]


def rollout_frames(r, member=0, max_frames=MAX_FRAMES, ctx=None) -> list:
    """``[(step, (H, W, 4) uint8)]``: the labelled sheet grid of ``member`` at (at most ``max_frames``
    of, evenly spaced, first and last kept) the rollout's snapshots; [] without snapshots."""
    if r.snapshots is None or not len(r.snapshots):
        return []
    S = len(r.snapshots)
    idx = np.unique(np.linspace(0, S - 1, min(S, max(1, int(max_frames)))).round().astype(int))
    fields = _member_fields(r, r.snapshots[idx], member)
    return _render(r, list(fields), r.snapshot_steps[idx], member, ctx)


def rollout_picture(r, member=0, ctx=None) -> np.ndarray | None:
    """The labelled sheet grid of ``member`` in the rollout's final state (at step ``n_steps``), or
    None when there is no final state."""
    if r.final is None:
        return None
    field = _member_fields(r, np.asarray(r.final)[None], member)[0]
    return _render(r, [field], [r.n_steps], member, ctx)[0][1]


def energies_png(r, member=0) -> bytes | None:
    """The energy plot of ``member`` as PNG bytes (None without observations): the figure of
    :func:`vkbands.render.energies_figure` (a bare Figure: the notebook's inline backend and the
    user's open figures are left alone)."""
    from .render import energies_figure
    if not len(r.steps):
        return None
    title = f"{r.system}  p={r.arity} L={r.levels} B={r.batch}  member {member}"
    fig = energies_figure(r.steps, r.energies, r.closed_form(), title, member, figsize=(7.5, 4.0), dpi=100)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _fmt(v):
    if v is None:
        return "–"
    if isinstance(v, (float, np.floating)):
        return "nan" if not np.isfinite(v) else f"{v:.4g}"
    if isinstance(v, (list, tuple, np.ndarray)):
        vals = np.asarray(v, dtype=object).reshape(-1)
        s = ", ".join(_fmt(x) for x in vals[:6])
        return f"[{s}{', …' if len(vals) > 6 else ''}]"
    return str(v)


def _table(rows, head=None):
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head) if head else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return (f'<table style="border-collapse:collapse;font-size:12px">'
            f'{"<thead><tr>" + th + "</tr></thead>" if th else ""}<tbody>{body}</tbody></table>')


def _summary_rows(r):
    shape = None if r.final is None else " x ".join(map(str, np.shape(r.final)))
    steps = f"{r.n_steps}" + (f" of {r.steps_requested}" if r.steps_requested != r.n_steps else "")
    rows = [("system", r.system), ("status", r.status), ("steps", steps), ("batch B", r.batch),
            ("state shape", shape), ("p, L, dims", f"{r.arity}, {r.levels}, {r.dims}"),
            ("observed steps", f"{len(r.steps)}" + (f" (every {int(r.steps[1] - r.steps[0])})" if len(r.steps) > 1
                                                      else "")),
            ("snapshots", 0 if r.snapshots is None else len(r.snapshots))]
    rows += [(f"param {k}", v) for k, v in r.params.items() if k != "arity"]
    sps = r.timings.get("steps_per_s") if r.timings else None
    if sps:
        rows.append(("steps/s", float(sps)))
    return rows


def _band_rows(r, member):
    if not len(r.steps):
        return []
    E = r.energies[:, member]
    kill, rate = r.kill_steps()[member], r.contraction_rates()[member]
    L1 = E.shape[-1]
    return [(f"E_{l}" if l < L1 - 1 else "E_c", float(E[0, l]), float(E[-1, l]),
             "never" if kill[l] < 0 else int(kill[l]), float(rate[l])) for l in range(L1)]


def rollout_html(r, member=0, max_frames=MAX_FRAMES, max_width=MAX_WIDTH, ctx=None) -> str:
    """The HTML display of a :class:`vkbands.Rollout` (see the module docstring): a ``<div>`` with the
    summary and per-band tables, the energy plot (``<img src="data:image/png;base64,...">``) and the
    sheet animation (``<img src="data:image/gif;base64,...">``) or, without snapshots, the final
    state's sheet grid (PNG) and a note."""
    parts = [f"<div><b>vkbands.Rollout</b> &nbsp;{html.escape(r.system)}, member {member} of {r.batch}"]
    band_rows = _band_rows(r, member)
    tables = _table(_summary_rows(r))
    if band_rows:
        tables += "&nbsp;" * 4 + _table(band_rows, ("band", "E(first)", "E(last)", "kill step (1e-3)",
                                                    "rate d log E/dt"))
    parts.append(f'<div style="display:flex;gap:16px;align-items:flex-start">{tables}</div>')
    plot = energies_png(r, member)
    if plot is not None:
        parts.append('<div class="vkbands-energies">' + _img_tag("image/png", plot, "band energies E_l(t)", pixelated=False)
                     + "</div>")
    else:
        parts.append("<p><i>no observations (every=None): no energy plot.</i></p>")
    frames = rollout_frames(r, member, max_frames, ctx)
    if frames:
        parts.append(_animation(r, frames, member, max_width))
    else:
        pic = rollout_picture(r, member, ctx)
        if pic is not None:
            parts.append('<div class="vkbands-final">' + _img_tag("image/png", png_bytes(pic), "final sheets")
                         + f"<br/><small>no snapshots (snapshot_every=None): the sheets of the final state, "
                         f"step {r.n_steps}; pass snapshot_every= for an animation</small></div>")
        else:
            parts.append("<p><i>no snapshots and no final state to show.</i></p>")
    parts.append("</div>")
    return "\n".join(parts)


def _animation(r, frames, member, max_width, max_bytes=None):
    """The ``<div>`` of the animated GIF of ``frames``, within ``max_width`` pixels and ``max_bytes``."""
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    S = len(r.snapshots)
    h, w = frames[0][1].shape[:2]
    n = max(1, math.ceil(w / max_width))
    while True:
        gif = gif_bytes([img[::n, ::n] for _, img in frames])
        if len(gif) <= max_bytes or (len(frames) <= 2 and w // n < 64):
            break
        if len(frames) > 2:
            frames = frames[::2] if len(frames) % 2 else frames[::2] + frames[-1:]   # keep the last one
        else:
            n += 1
    note = (f"sheets of member {member}, {len(frames)} frame{'s' if len(frames) > 1 else ''}"
            + (f" of {S} snapshots (evenly spaced)" if len(frames) < S else "")
            + f", steps {frames[0][0]}..{frames[-1][0]}, {FRAME_MS} ms each; {w}x{h} pixels"
            + (f", shown at 1/{n} size" if n > 1 else "") + f"; animated GIF, {len(gif) // 1024} KiB")
    return ('<div class="vkbands-animation">' + _img_tag("image/gif", gif, "sheet animation")
            + f"<br/><small>{html.escape(note)}</small></div>")


# ----------------------------------------------------------------------------- live widget
def _readout(fmt):
    """ipywidgets' readout format (Python format spec) of a printf ``fmt`` such as ``%.4f``."""
    return fmt[1:] if isinstance(fmt, str) and fmt.startswith("%") else ".3f"


class Live:
    """The interactive widget of :func:`live`. Attributes: ``sim`` (the :class:`vkbands.Simulation`),
    ``widget`` (the ``ipywidgets.VBox`` shown), ``image`` (``ipywidgets.Image``, PNG), ``play``
    (``ipywidgets.Play``), ``step_button``, ``reset_button``, ``steps_per_frame`` (IntSlider),
    ``sliders`` (name -> FloatSlider, one per live parameter), ``status`` (HTML: step, time, energies).
    Methods: :meth:`step`, :meth:`reset`, :meth:`refresh`, :meth:`close`; ``png`` the current picture."""

    def __init__(self, system, x0=None, *, member=0, steps_per_frame=1, interval_ms=100, cmap=None,
                 range="per_band", ctx=None, dims=None, **params):
        import ipywidgets as W

        from . import systems
        from .rollout import Simulation
        from .setup import Setup
        if x0 is None and isinstance(system, str):
            options = dict(params, **({"dims": dims} if dims is not None else {}))
            system, params, dims = Setup(system, **options), {}, None
        self.sim = Simulation(ctx, system, x0, dims=dims, **params)
        try:
            self.ctx = self.sim.ctx
            self.spec = systems.get(self.sim.name)
            self.member = int(member)
            if not 0 <= self.member < self.sim.batch:
                raise ValueError(f"member={member}: allowed 0..{self.sim.batch - 1}")
            self.cmap = cmap or self.spec.picture.view_cmap
            self.range = range
            self._renderer = None
            self._error = None

            self.image = W.Image(format="png")
            self.play = W.Play(value=0, min=0, max=2 ** 31 - 1, step=1, interval=int(interval_ms), show_repeat=False,
                               description="play")
            self.step_button = W.Button(description="step", tooltip="run one frame (steps per frame steps)")
            self.reset_button = W.Button(description="reset", tooltip="back to the initial state, step 0")
            self.steps_per_frame = W.IntSlider(value=int(steps_per_frame), min=1, max=max(256, int(steps_per_frame)),
                                               description="steps/frame", continuous_update=False)
            self.sliders = {}
            for p in self.spec.live_params:
                cur = self.sim.params.get(p.name)
                if isinstance(cur, bool) or not isinstance(cur, (int, float)):
                    continue          # e.g. tau / alpha while explicit rates are in use
                lo, hi = p.slider_range()
                lo, hi = min(lo, float(cur)), max(hi, float(cur))
                s = W.FloatSlider(value=float(cur), min=lo, max=hi, step=(hi - lo) / 1000, description=p.name,
                                  readout_format=_readout(p.fmt), continuous_update=False,
                                  tooltip=p.help, style={"description_width": "initial"})
                s.observe(self._on_param(p.name), names="value")
                self.sliders[p.name] = s
            self.status = W.HTML()
            self.play.observe(self._on_tick, names="value")
            self.step_button.on_click(lambda _b: self._guard(self.step))
            self.reset_button.on_click(lambda _b: self._guard(self.reset))
            controls = W.HBox([self.play, self.step_button, self.reset_button, self.steps_per_frame])
            self.widget = W.VBox([controls, W.HBox(list(self.sliders.values()),
                                                    layout=W.Layout(flex_flow="row wrap")), self.image, self.status])
            self.refresh()
        except BaseException:
            self.sim.close()
            raise

    # ------------------------------------------------------------------ driving
    def step(self, n=None):
        """Run one frame: ``n`` steps (default the steps-per-frame slider), then :meth:`refresh`."""
        self.sim.advance(int(self.steps_per_frame.value if n is None else n))
        self.refresh()
        return self

    def reset(self):
        """Back to the initial state at step 0 (the parameters stay as set)."""
        self.sim.reset()
        self.refresh()
        return self

    def set_params(self, **params):
        """Set live parameters (as the sliders do): the simulation's and the sliders' values."""
        self.sim.set_params(**params)
        for k, v in params.items():
            s = self.sliders.get(k)
            if s is not None and s.value != v:
                s.min, s.max = min(s.min, float(v)), max(s.max, float(v))     # a slider would clamp it
                s.value = v          # observed: the handler sees the simulation has it already
        self._renderer_stale()
        return self

    def _renderer_stale(self):
        if self._renderer is not None:      # the header names the parameters: drawn anew
            self._renderer.close()
            self._renderer = None

    def _field(self):
        x = self.sim.read()
        if self.sim.batched:
            x = x[self.member]
        return self.spec.observed_field(x, self.sim.dims)

    def picture(self) -> np.ndarray:
        """The labelled sheet grid of the current state (``(H, W, 4) uint8``), rendered offscreen."""
        from .labels import Caption
        from .render import SheetRenderer
        field = self._field()
        if self._renderer is None:
            sim = self.sim
            params = {k: v for k, v in dict(sim.params).items() if k != "arity"}
            cap = Caption(sim.name, field.shape, sim.arity, sim.levels, self.member, sim.batch, params=params,
                          observed=self.spec.observed if self.spec.fields_per_member > 1 else None)
            self._renderer = SheetRenderer(field.shape, sim.arity, ctx=self.ctx, cmap=self.cmap, caption=cap,
                                           range=self.range)
        return self._renderer.render(field, step=self.sim.step)

    def refresh(self):
        """Render the current state into the image and update the status line."""
        self.image.value = self.png = png_bytes(self.picture())
        obs = self.sim.observe()
        E = obs["energies"][self.member]
        L1 = len(E)
        energies = "  ".join(f"E_{l if l < L1 - 1 else 'c'}={v:.3g}" for l, v in enumerate(E))
        bad = bool(obs["nonfinite"][self.member])
        err = f' <b style="color:#c00">{html.escape(self._error)}</b>' if self._error else ""
        self.status.value = (f"<code>step {self.sim.step}  {energies}"
                             f"{'  NaN/Inf in the state' if bad else ''}</code>{err}")
        if bad:
            self.play.playing = False
        return self

    def _guard(self, fn, *args, **kwargs):
        """Run a handler; an error is shown in the status line (a widget callback has no cell to
        raise into) and stops playing."""
        try:
            self._error = None
            fn(*args, **kwargs)
        except Exception as e:          # noqa: BLE001 -- shown to the user, playing stops
            self._error = f"{type(e).__name__}: {e}"
            self.play.playing = False
            self.status.value = f'<b style="color:#c00">{html.escape(self._error)}</b>'
            return e
        return None

    def _on_tick(self, change):
        if change["new"] <= change["old"]:
            return                      # the Play widget's stop/rewind: no frame
        t0 = time.perf_counter()
        self._guard(self.step)
        dt_ms = (time.perf_counter() - t0) * 1000
        if dt_ms > 0.8 * self.play.interval:          # slower than the timer: tick less often
            self.play.interval = int(min(2000, dt_ms * 1.5))

    def _on_param(self, name):
        def handler(change):
            current = self.sim.params.get(name)
            if current == change["new"]:
                return
            err = self._guard(self.set_params, **{name: change["new"]})
            if err is not None and isinstance(current, (int, float)):
                self.sliders[name].value = current      # refused: the slider shows what runs
            elif err is None:
                self._guard(self.refresh)
        return handler

    # ------------------------------------------------------------------ display and lifetime
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def close(self):
        """Stop, close the widgets and free the simulation and renderer."""
        self.play.playing = False
        self._renderer_stale()
        self.sim.close()
        for w in [self.play, self.step_button, self.reset_button, self.steps_per_frame, self.image, self.status,
                  *self.sliders.values(), self.widget]:
            w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def live(system, x0=None, **kwargs) -> Live:
    """An interactive widget of a running simulation: ``system`` a registered name (then, without
    ``x0``, the keywords are :class:`vkbands.Setup`'s: ``size``, ``depth``, ``batch``, ``init``, the
    parameters...) or a :class:`vkbands.Setup`. Keywords: ``member`` (shown), ``steps_per_frame``,
    ``interval_ms`` (the play timer), ``cmap`` (default the system's viewer map), ``range``
    (default ``per_band``), ``ctx``. Display it (last expression of a cell); see :class:`Live`."""
    return Live(system, x0, **kwargs)
