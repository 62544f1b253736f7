"""The sheet pipeline: a running rollout decomposed into its sheet grid, drawn on the device (no ImGui).

:class:`SheetPipeline` holds a :class:`vkbands.rollout.Simulation`, a :class:`vkbands.bands.BandPlan`,
the picture (:class:`SheetPicture`: an :class:`vkbands.image.ImageWriter` and the rgba8 storage image
the preview samples) and, for 1-D fields, the band x time history (:class:`BandTimeHistory`). Each
frame it replays one Recorder (built once per configuration, kept in a :class:`RecordingCache`): advance
N steps (the system's own step kernels), the sheet panel stack ``[s^0..s^L, D^0..D^{L-1}]`` of the
observed field, a copy of the visible panels, optionally their resampling to the size shown,
``write_image.comp`` into the storage image, and a copy of the step's observables into host-visible
memory read a frame later (:mod:`vkbands.viewer.observables`; no stall, no field readback).

Sheet grid (SPEC section 6): 2-D fields: row 1 the cumulative sheets, row 2 the detail sheets; 1-D
fields: one column of strips (cumulative then detail), plus the band x time image. A system with
several fields per member shows its observed field (Gray-Scott: v, the pattern-forming species), as
its observables do. The set-up is a :class:`vkbands.Setup`.

What it tells the app goes through callbacks given at construction: ``on_picture(image)`` whenever
the storage image is (re)created, ``retire(*objects)`` for replaced objects a frame in flight may
still use.
"""
from __future__ import annotations

import math
import time
from collections import deque

import numpy as np

from vkbands import systems
from vkbands.bands import BandPlan
from vkbands.image import DEFAULT_RANGE, GAP, ImageWriter
from vkbands.image import layout as picture_layout
from vkbands.labels import Caption, LabelledWriter, labelled_frame, sheet_titles
from vkbands.rollout import Simulation
from vkbands.setup import Setup

from .observables import ObsMirrors

MAX_RECORDINGS = 8       # cached frame recordings (per steps/frame, slot, profiling part)
MIN_PANEL_PX = 96        # small sheets are block-expanded to at least this many pixels
BAND_TIME_COLUMNS = 340  # frames shown by the band x time image of 1-D fields
BAND_TIME_ROW_PX = 10
ENERGY_HISTORY = 4000    # energy samples kept for the panel's plot
MIN_LABEL_CHARS = 40     # the labelled picture is at least 40 characters wide (fits small windows)
DISPLAY_KEYS = ("cmap", "range", "vmin", "vmax", "fade", "show_cumulative", "show_detail", "visible_levels")
LAYOUT_KEYS = ("show_cumulative", "show_detail", "visible_levels")


def close_in_order(*objects):
    """Close ``objects`` now (None skipped): what a pipeline without a viewer does with replaced ones."""
    for obj in objects:
        if obj is not None:
            obj.close()


# ----------------------------------------------------------------------------- picture layout
def grid_layout(spatial, n_cum: int, n_det: int):
    """``(P, H, W, cols, (sy, sx))`` of the full-resolution sheet grid of ``n_cum`` cumulative and
    ``n_det`` detail panels of a field of shape ``spatial`` (1-D: strips of a readable height)."""
    P = n_cum + n_det or 1
    if len(spatial) == 1:
        W = spatial[0]
        return P, 1, W, 1, (min(max(4, -(-W // 48)), 24), 1)
    H, W = spatial
    k = max(1, -(-MIN_PANEL_PX // max(H, W)))
    return P, H, W, max(n_cum, n_det, 1), (k, k)


def shown_resolution(layout, width, height, limit: int, resample: bool = True):
    """``(h, w, scale)`` of panels resampled for a grid of ``layout`` (:func:`grid_layout`) shown
    ``width`` x ``height`` screen pixels large, or None for full resolution. Never larger than
    ``limit`` (the device's maxImageDimension2D)."""
    P, H, W, cols, (sy, sx) = layout
    lh, lw = picture_layout(P, H, W, cols, sx, sy)
    if max(lw, lh) > limit:      # a full-resolution grid the device cannot hold: shrink it
        k = limit / max(lw, lh)
        width, height = min(width, lw * k), min(height, lh * k)
    elif not resample or min(width / lw, height / lh) >= 1:
        return None
    rows, g = -(-P // cols), GAP
    cell_w = max(1, int((width + g) // cols) - g)    # largest cells that fit, gaps kept
    cell_h = max(1, int((height + g) // rows) - g)
    if H == 1:   # strips keep one value row; their height shrinks with the block size
        return (1, min(W, cell_w), (max(1, min(sy, cell_h)), 1))
    f = min(cell_w / (W * sx), cell_h / (H * sy), 1.0)
    return (max(1, int(H * sy * f)), max(1, int(W * sx * f)), (1, 1))


class SheetPicture:
    """One configuration of the picture: the visible sheet ids, their panel buffer (None when all are
    shown), the resampled panels (None at full resolution), the ImageWriter (inside a LabelledWriter
    when ``labels``, a dict of its layout keywords: the labelled picture of vkbands.labels, as the
    files have) and its storage image."""

    def __init__(self, ctx, ids, n_sheets: int, layout, resolution, resample_kernel, labels=None):
        P, H, W, cols, scale = layout
        self.ids, self.HW, self._resample = list(ids), (H, W), resample_kernel
        if resolution is not None:
            h, w, scale = resolution
            self.small = ctx.empty((P, h, w))
        else:
            h, w, self.small = H, W, None
        if labels is not None:
            self.labelled = LabelledWriter(ctx, P, h, w, cols=cols, scale=scale, **labels)
            self.writer = self.labelled.writer
        else:
            self.labelled = None
            self.writer = ImageWriter(ctx, P, h, w, cols=cols, scale=scale)
        self.image = self.writer.image()
        self.panels = None if self.ids == list(range(n_sheets)) else ctx.empty((P, H, W))

    def record(self, rec, sheets, reset: bool, style: dict, slot: int = 0, caption=None, titles=()):
        """Record the visible panels of ``sheets`` (copied, resampled) drawn into the image (labelled:
        ``caption``, ``titles``, the step and time from frame slot ``slot``'s values)."""
        panels = sheets
        if self.panels is not None:
            per = int(np.prod(self.HW)) * 4
            for j, i in enumerate(self.ids):
                rec.copy(sheets, self.panels, nbytes=per, src_offset=i * per, dst_offset=j * per)
            panels = self.panels
        if self.small is not None:
            k = self._resample
            P, (H, W), (h, w) = self.writer.P, self.HW, self.small.shape[-2:]
            per_group = k.local_size[0] * k.spec["PER_INVOCATION"]
            rec.dispatch(k, k.grid(-(-(P * h * w) // per_group)), panels, self.small,
                         push=dict(n_panels=P, H=H, W=W, h=h, w=w))
            panels = self.small
        wr = self.writer
        if self.labelled is not None:
            self.labelled.record(rec, panels.reshape(wr.P, wr.H, wr.W), self.image, caption=caption, titles=titles,
                                 reset=reset, slot=slot, **style)
        else:
            wr.record(rec, panels.reshape(wr.P, wr.H, wr.W), self.image, reset=reset, **style)

    def close(self):
        close_in_order(self.image, self.labelled or self.writer, self.panels, self.small)


# ----------------------------------------------------------------------------- band x time
class BandTimeHistory:
    """1-D fields: a scrolling band x time image of log-energies (rows = bands, one column per frame,
    newest right), drawn by its own ImageWriter into :attr:`image` (the panel shows it)."""

    def __init__(self, ctx, levels: int, columns: int = BAND_TIME_COLUMNS, row_px: int = BAND_TIME_ROW_PX):
        self.rows, self.columns = levels + 1, columns
        self._buffers = [ctx.zeros((self.rows, columns)) for _ in (0, 1)]
        self._writer = ImageWriter(ctx, 1, self.rows, columns, scale=(row_px, 1))
        self.image = self._writer.image()

    def record(self, rec, slot: int, energies, offset: int):
        """Scroll left by one column (ping-pong: slot s reads buffer s, writes the other, so consecutive
        frames chain) and put the ``rows`` energies at ``energies[offset:]`` in the last column."""
        src, dst = self._buffers[slot % 2], self._buffers[(slot + 1) % 2]
        T = self.columns
        rec.copy(src, dst, nbytes=(src.size - 1) * 4, src_offset=4, dst_offset=0)
        for l in range(self.rows):
            rec.copy(energies, dst, nbytes=4, src_offset=(offset + l) * 4, dst_offset=(l * T + T - 1) * 4)
        self._writer.record(rec, dst, self.image, cmap="log", range="symmetric", eps=1e-6)

    def clear(self):
        for b in self._buffers:
            b.fill(0)

    def close(self):
        close_in_order(self.image, self._writer, *self._buffers)


# ----------------------------------------------------------------------------- recordings
class RecordingCache:
    """The frame recordings of the current configuration by key, built once and replayed; one-off
    recordings (not kept); per frame slot, the recording whose observables wait to be read; and the
    recordings handed to ``retire`` that may still be running."""

    def __init__(self, slots: int, limit: int = MAX_RECORDINGS):
        self.slots, self.limit = slots, limit
        self._kept: dict = {}
        self._one_offs: list = []
        self._handed_off: list = []
        self.pending = [None] * slots

    def __len__(self):
        return len(self._kept)

    def full_for(self, keys) -> bool:
        """Whether building the missing ones of ``keys`` would pass the limit."""
        return len(self._kept) >= self.limit and any(k not in self._kept for k in keys)

    def get(self, key, build):
        rec = self._kept.get(key)
        if rec is None:
            rec = self._kept[key] = build()
        return rec

    def make_one_off(self, key):
        """``key``'s recording is not kept: freed once its observables are taken (or dropped)."""
        self._one_offs.append(self._kept.pop(key))

    def take(self, slot: int):
        """The recording slot ``slot`` submitted last (None: none waits); waits for it (at once after
        the slot's fence)."""
        rec, self.pending[slot] = self.pending[slot], None
        if rec is not None:
            rec.wait()
        return rec

    def release_one_offs(self, rec):
        """After ``rec`` was taken: one-off recordings end with their frame."""
        if rec in self._one_offs:
            for r in self._one_offs:
                r.wait()
                r.close()
            self._one_offs = []

    def drop(self, retire: bool = False):
        """Forget every recording. ``retire=False``: close them now (each waits for its own submission:
        needed before the host writes what they use, e.g. a reset) and wait for those retired earlier;
        ``retire=True``: return them for the caller to retire instead (no wait)."""
        recs = list(self._kept.values()) + self._one_offs
        self._kept, self._one_offs = {}, []
        self.pending = [None] * self.slots   # their observables are dropped with them
        if retire:
            self._handed_off = [r for r in self._handed_off if not r.closed] + recs
            return recs
        for rec in recs:
            rec.close()       # waits for its submission first
        for rec in self._handed_off:
            rec.wait()        # retired earlier, maybe not freed yet: the host may write what they use next
        self._handed_off = []
        return []


# ----------------------------------------------------------------------------- the pipeline
class SheetPipeline:
    """A Simulation shown as its sheet grid in a storage image (see the module docstring).

    Args:
        ctx: the viewer's Context.
        system: a :class:`vkbands.Setup`, or a registered system name (default
            ``systems.DEFAULT_VIEW``) with ``options``, the keywords of a Setup (arity, depth or size,
            dims, batch, seed, init and its options, the system's parameters).
        x0: a given initial state instead of the set-up's (``options`` then hold system parameters
            and arity only).  dims: with a given 1-D batch x0 (B, N) of a tree system, pass 1.
        member: which batch member is drawn.
        cmap, range, vmin, vmax, fade: the picture (vkbands.image); ``cmap`` None: the system's
            (``SystemSpec.picture.view_cmap``); ``range`` None: ``vkbands.image.DEFAULT_RANGE``
            (per_band: each panel by its own max|x|, so a decaying rollout stays visible); ``vmin/vmax``
            None: the fixed range (range="fixed") from the initial field (symmetric, max |x0| of the
            observed field).
        labels: the labelled picture (header with system, step, time and parameters; panel titles;
            colour bar: vkbands.labels, the same composition as the files); False: the bare grid.
        slots: frame slots (each its own observables mirror).  resample: shrink the picture to the
            size it is shown at (:meth:`set_view`).
        on_picture: called with the storage image each time it is (re)created.
        retire: where replaced objects go (old picture, dropped recordings); the viewer passes its
            ``FrameSync.retire`` (freed once every frame that may use them has finished); default:
            closed at once (a recorder's close waits for its own work).
    """

    def __init__(self, ctx, system=None, x0=None, *, member=0, cmap=None, range=None, vmin=None, vmax=None,
                 fade=0.0, slots=2, resample=True, dims=None, on_picture=None, retire=None, labels=True, **options):
        self.ctx = ctx
        self.retire = retire or close_in_order
        self._on_picture = on_picture
        spec, setup, x0, dims, params = self._resolve_setup(system, x0, dims, options)
        self.spec, self.system_name, self.setup = spec, spec.name, setup   # setup None: from a given x0
        self._given_params = {} if setup is not None else dict(params)
        self.sim = Simulation(ctx, spec.name, x0, dims=dims, **params)
        try:
            self._init_geometry(member)
        except BaseException:
            self.sim.close()
            raise
        self.cmap = spec.picture.view_cmap if cmap is None else cmap
        self.range = DEFAULT_RANGE if range is None else range     # per_band: a decaying field stays visible
        self.fade = float(fade)
        self.vmin, self.vmax = self._initial_range(x0, vmin, vmax)
        self.show_cumulative, self.show_detail = True, True
        self.visible_levels = [True] * (self.L + 1)
        self.resample = bool(resample)
        self.labels = bool(labels)
        self._probe_kernel = ctx.kernel("probe.comp")
        self._probe_at = [ctx.empty((2,), np.uint32, host=True) for _ in np.arange(max(1, int(slots)))]
        self._probe_out = [ctx.empty((1,), np.float32, host=True) for _ in np.arange(max(1, int(slots)))]
        self._probe_pick = [None] * max(1, int(slots))     # what each slot's submission probes
        self.cursor_pick = None          # (sheet id, iy, ix) under the cursor, or None (set_cursor)
        self.cursor = None               # {"band", "position", "value"} a frame late, or None
        self._resample_kernel = ctx.kernel("resample.comp")
        self.slots = max(1, int(slots))
        self._recordings = RecordingCache(self.slots)
        self._obs = ObsMirrors(ctx, self.sim.system.new_obs(1), self.slots, self.member)
        self._pending_reset = True       # the fade accumulator restarts on the next frame
        self._dirty = True               # the picture must be redrawn even when paused
        self.nonfinite = False
        self.ms_per_step = 0.0
        self.last_times = {"simulate": 0.0, "decompose": 0.0}
        self.energy_history: deque = deque(maxlen=ENERGY_HISTORY)   # [E_0..E_c] per frame, a frame late
        self.band_history = BandTimeHistory(ctx, self.L) if len(self.spatial) == 1 else None
        self.picture = None
        self._resolution = self._shown_resolution(math.inf, math.inf)   # full, unless the device is too small
        self._build_picture()

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _resolve_setup(system, x0, dims, options):
        """``(spec, setup or None, x0, dims, params)`` from the constructor's arguments."""
        options = {k: v for k, v in options.items() if v is not None}
        setup = system if isinstance(system, Setup) else None
        if setup is not None and options:
            raise TypeError(f"with a Setup, the options come from it; got {sorted(options)}: use setup.replace(...)")
        spec = systems.get(setup.system if setup is not None else
                           (systems.DEFAULT_VIEW if system is None else system))
        if x0 is None:
            setup = setup or Setup(spec.name, **options)
            return spec, setup, setup.x0(), setup.dims, setup.params
        if setup is not None:
            return spec, setup, np.asarray(x0, np.float32), setup.dims, setup.params
        # a given state fixes the field: the options are the system's parameters only
        extra = sorted(set(options) - set(spec.param_names) - {"arity"})
        if extra:
            raise ValueError(f"{', '.join(extra)}: do(es) not apply with a given x0 (the state fixes the field "
                             f"and its start); allowed: arity, {', '.join(spec.param_names)}")
        return spec, None, np.asarray(x0, np.float32), dims, options

    def _init_geometry(self, member):
        """Shapes, the BandPlan and the sheet stack of the observed field of the drawn member."""
        sysobj = self.sim.system
        self.spatial = tuple(sysobj.spatial)
        self.batch, self.L, self.arity = sysobj.batch, sysobj.levels, sysobj.arity
        self._per_member = int(np.prod(sysobj.state_shape[1:])) // int(np.prod(self.spatial))
        self.member = int(member)
        if not 0 <= self.member < self.batch:
            raise ValueError(f"member={member}: the batch has members 0..{self.batch - 1}")
        self.plan = BandPlan(self.ctx, self.spatial, self.arity, batch=self.batch * self._per_member)
        self._field_view = self.sim.state.reshape((self.batch * self._per_member,) + self.spatial)
        self._field_member = self.member * self._per_member + self.spec.observed_index
        self.sheets = self.ctx.empty((2 * self.L + 1,) + self.spatial)

    def _initial_range(self, x0, vmin, vmax):
        """vmin/vmax: given, else from the initial observed field (symmetric; grey: its min..max)."""
        if vmin is not None and vmax is not None:
            return float(vmin), float(vmax)
        obs = x0.reshape((self.batch * self._per_member, -1))[self._field_member] if x0.ndim else x0
        m = float(np.nanmax(np.abs(obs))) if obs.size else 1.0
        m = m if m > 0 and math.isfinite(m) else 1.0
        if self.cmap == "grey":
            lo, hi = float(np.nanmin(obs)), float(np.nanmax(obs))
            return (lo - 1, hi + 1) if not hi > lo else (lo, hi)
        return -m, m

    def restart_options(self) -> dict:
        """``system`` plus the Setup keywords this pipeline was started from (those of a given x0: its
        parameters): where the panel's restart section starts editing."""
        return dict(system=self.system_name,
                    **(self.setup.options if self.setup is not None else self._given_params))

    # ------------------------------------------------------------------ picture configuration
    @property
    def step(self) -> int:
        return self.sim.step

    @property
    def image(self):
        """The rgba8 storage image of the sheet grid (sampled by the preview)."""
        return self.picture.image

    @property
    def band_time(self):
        """1-D fields: the band x time image (:class:`BandTimeHistory`); else None."""
        return None if self.band_history is None else self.band_history.image

    @property
    def writer(self):
        return self.picture.writer

    @property
    def small(self):
        """The resampled panels (None at full resolution)."""
        return self.picture.small

    @property
    def recording_count(self) -> int:
        """Frame recordings kept for replay (at most MAX_RECORDINGS)."""
        return len(self._recordings)

    def panel_ids(self):
        """Indices into the sheet stack of the panels drawn, in grid order."""
        L = self.L
        cum = [l for l in range(L + 1) if self.show_cumulative and self.visible_levels[l]]
        det = [L + 1 + l for l in range(L) if self.show_detail and self.visible_levels[l]]
        return cum, det

    def _grid(self):
        cum, det = self.panel_ids()
        return cum + det or [0], grid_layout(self.spatial, len(cum), len(det))

    @property
    def logical_size(self):
        """(width, height) of the picture at full resolution (every leaf value a block of pixels; with
        labels, the labelled picture around that grid)."""
        P, H, W, cols, (sy, sx) = self._grid()[1]
        if self.labels:
            frame = labelled_frame(P, H, W, cols, (sy, sx), GAP, **self._label_layout())[0]
            return frame.width, frame.height
        h, w = picture_layout(P, H, W, cols, sx, sy)
        return w, h

    # ------------------------------------------------------------------ labels
    def caption(self) -> Caption:
        """What the picture's header says: system, shape, p, L, member of batch, the parameters (and
        init, seed when started from a Setup); the step and time come from each frame."""
        extra = {}
        if self.setup is not None:
            extra = dict(init=self.setup.init, seed=self.setup.seed)
        params = {k: v for k, v in self.sim.params.items() if k != "arity"}
        return Caption(self.system_name, self.spatial, self.arity, self.L, self.member, self.batch, params=params,
                       extra=extra, observed=self.spec.observed if self.spec.fields_per_member > 1 else None)

    def titles(self):
        """The titles of the panels shown, in grid order (vkbands.labels.sheet_titles)."""
        return sheet_titles(self._grid()[0], self.L, self.arity, len(self.spatial))

    def _label_layout(self):
        """The LabelledWriter layout keywords: glyph scale 1 (screen text), at least MIN_LABEL_CHARS
        wide, enough header lines for the caption at the narrowest picture (so changed parameters never need another layout), two title
        lines (so the margins do not change when the panels are resampled to the size shown)."""
        return dict(k=1, title_lines=2, min_chars=MIN_LABEL_CHARS,
                    header_lines=labelled_frame(1, 1, 1, 1, 1, GAP, k=1, min_chars=MIN_LABEL_CHARS,
                                                caption=self.caption())[3])

    def set_view(self, width: float, height: float):
        """The picture is shown ``width`` x ``height`` screen pixels large: when that is smaller than
        the full-resolution grid, the panels are resampled (nearest, on the device) to the size shown,
        so the picture costs screen pixels rather than leaf pixels. Rebuilds when the size changes."""
        res = self._shown_resolution(width, height)
        if res != self._resolution:
            self._resolution = res
            self._build_picture()

    def _shown_resolution(self, width, height):
        layout = self._grid()[1]
        limit = int(self.ctx.limits.maxImageDimension2D)
        if self.labels:      # the panels get what the labels leave of the area shown (and of the device)
            P, H, W, cols, (sy, sx) = layout
            frame = labelled_frame(P, H, W, cols, (sy, sx), GAP, **self._label_layout())[0]
            gh, gw = picture_layout(P, H, W, cols, sx, sy)
            mw = frame.width - gw if frame.width == gw + 2 * frame.ox else 0   # 0: the text sets the width
            mh = frame.height - gh
            width, height = max(1.0, width - mw), max(1.0, height - mh)
            limit = max(1, limit - max(mw, mh, 2 * frame.ox))
        return shown_resolution(layout, width, height, limit, self.resample)

    def _build_picture(self):
        """(Re)create the picture for the visible panels. The old one (and the recordings that use it)
        is retired, not closed: the frame in flight may still be drawing the old image."""
        old = (*self._forget_recordings(retire=True), self.picture)
        ids, layout = self._grid()
        labels = dict(self._label_layout(), slots=self.slots) if self.labels else None
        self.picture = SheetPicture(self.ctx, ids, 2 * self.L + 1, layout, self._resolution, self._resample_kernel,
                                    labels)
        self.retire(*old)
        self._pending_reset = True
        if self._on_picture is not None:
            self._on_picture(self.picture.image)

    def set_display(self, **kw):
        """Change cmap / range / vmin / vmax / fade (re-records) or visibility (show_cumulative,
        show_detail, visible_levels: rebuilds the picture)."""
        unknown = sorted(set(kw) - set(DISPLAY_KEYS))
        if unknown:
            raise TypeError(f"set_display: {', '.join(unknown)}: unknown; allowed: {', '.join(DISPLAY_KEYS)}")
        if kw.get("fade", 0) > 0 and self.fade == 0:
            self._pending_reset = True       # the accumulator is stale while fade is off
        for k, v in kw.items():
            setattr(self, k, v)
        if any(k in LAYOUT_KEYS for k in kw):
            self._build_picture()
        else:
            self.retire(*self._forget_recordings(retire=True))

    def set_params(self, **params):
        """Change live parameters of the system (checked against its spec)."""
        self._forget_recordings()       # first: the host may rewrite parameter buffers they read
        self.sim.set_params(**params)

    def _forget_recordings(self, retire: bool = False):
        """Every recording is re-recorded on the next frame (see :meth:`RecordingCache.drop`)."""
        self._dirty = True
        return self._recordings.drop(retire)

    # ------------------------------------------------------------------ the frame's compute
    def _record(self, n: int, reset: bool, slot: int, part: str = "all"):
        """One recording of the frame's compute; ``part`` "steps" or "picture" records only that half
        (the profiling mode times them apart)."""
        rec = self.ctx.recorder()
        if part in ("all", "steps"):
            if n > 0:
                self.sim.record_steps(rec, n, every=n, obs=self._obs.obs)
            else:
                self.sim.record_steps(rec, 0, observe_first=True, obs=self._obs.obs)
            self._obs.record_copy(rec, slot)
            if self.band_history is not None:
                self.band_history.record(rec, slot, *self._obs.energy_location())
        if part in ("all", "picture"):
            self.plan.record_sheets(rec, self._field_view, self.sheets, member=self._field_member)
            k = self._probe_kernel
            rec.dispatch(k, (1, 1, 1), self.sheets, self._probe_at[slot], self._probe_out[slot],
                         push=dict(n=int(self.sheets.size)))
            self.picture.record(rec, self.sheets, reset, dict(cmap=self.cmap, range=self.range, vmin=self.vmin,
                                                                vmax=self.vmax, fade=self.fade),
                                slot=slot, caption=self.caption(), titles=self.titles())
        rec.finish()
        return rec

    def submit(self, n: int, slot: int = 0, profile: bool = False):
        """Submit this frame's compute: ``n`` steps (0: none), the sheets and the picture; its
        observables go to frame slot ``slot``'s host mirror (taken by :meth:`observables`). Returns
        False (nothing submitted) when paused with nothing changed since the last picture.

        ``profile=True``: submit the steps and the picture (sheets + write_image) as two recordings
        and wait for each, timing them into ``last_times`` ("simulate", "decompose", seconds) and,
        with steps, ``ms_per_step``."""
        n, slot = int(n), int(slot) % self.slots
        if n == 0 and not self._dirty and self.fade == 0 and not profile:
            return False             # paused and nothing changed: the image already shows this state
        self._take(slot)             # normally already taken by observables(slot) after the fence
        reset = self._pending_reset and self.fade > 0
        parts = ("steps", "picture") if profile else ("all",)
        cache = self._recordings
        if cache.full_for([(n, reset, slot, p) for p in parts]):
            # e.g. steps/frame dragged over many values: keep the cache small
            self.retire(*self._forget_recordings(retire=True))
        self._probe_pick[slot] = pick = self.cursor_pick     # the value under the cursor, read a frame late
        if pick is not None:
            l, iy, ix = pick
            flat = (l * int(np.prod(self.spatial)) + (iy * self.spatial[-1] if len(self.spatial) == 2 else 0) + ix)
            self._probe_at[slot].upload(np.array([flat, 1], np.uint32))
        else:
            self._probe_at[slot].upload(np.array([0, 0], np.uint32))
        if self.picture.labelled is not None:    # the step (and time) this frame's picture shows
            step = self.sim.step + n
            dt = self.caption().dt
            self.picture.labelled.set_values(step, step * dt if dt is not None else None, slot)
        recs = []
        for part in parts:
            key = (n, reset, slot, part)
            rec = cache.get(key, lambda: self._record(n, reset, slot, part))
            t0 = time.perf_counter()
            rec.submit(wait=profile)
            if profile:
                self.last_times["simulate" if part == "steps" else "decompose"] = time.perf_counter() - t0
            if reset:  # a one-off recording: freed once its observables are taken (or dropped)
                cache.make_one_off(key)
            recs.append(rec)
        if profile and n > 0:
            self.ms_per_step = self.last_times["simulate"] * 1e3 / n
        self._pending_reset = False
        self._dirty = False
        self.sim.step += n
        cache.pending[slot] = recs[0]
        return True

    def _take(self, slot):
        rec = self._recordings.take(slot)
        if rec is None:
            return None
        pick = self._probe_pick[slot]
        if pick is not None:
            value = float(self._probe_out[slot].numpy()[0])
            title = sheet_titles([pick[0]], self.L, self.arity, len(self.spatial))[0]
            pos = pick[1:] if len(self.spatial) == 2 else pick[2:]
            self.cursor = dict(band=title, position=tuple(int(i) for i in pos), value=value)
        else:
            self.cursor = None
        try:
            energies, self.nonfinite = self._obs.read(slot)
        except Exception:  # noqa: BLE001 — observables are advisory; never stop the viewer
            energies = None
        self._recordings.release_one_offs(rec)
        return energies

    def observables(self, slot: int = 0):
        """Energies ``[E_0..E_{L-1}, E_c]`` of the drawn member after the frame last submitted in
        ``slot`` (call after that slot's fence: no stall), or None; also appended to
        ``energy_history``."""
        energies = self._take(int(slot) % self.slots)
        if energies is not None:
            self.energy_history.append(energies)
        return energies

    # ------------------------------------------------------------------ state
    def _restart_history(self):
        if self.band_history is not None:
            self.band_history.clear()
        self.energy_history.clear()
        self._pending_reset = True

    def reset(self):
        """Back to the initial state at step 0 (histories cleared)."""
        self._forget_recordings()
        self.sim.reset()
        self._restart_history()

    def load(self, x):
        """Replace the state with ``x`` (the simulation's state shape; with batch 1 the batch axis may
        be left out) and restart at step 0. Errors are ValueError/TypeError with a clear message and
        leave the state untouched."""
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"field dtype {x.dtype} is not numeric; expected float32 of shape {self.sim.shape}")
        want = tuple(self.sim.shape)
        if self.batch == 1 and tuple(x.shape) == want[1:]:
            x = x[None]
        if tuple(x.shape) != want:
            also = f" or {want[1:]}" if self.batch == 1 else ""
            raise ValueError(f"field has shape {tuple(x.shape)}; this {self.system_name} viewer needs {want}{also}")
        if not np.isfinite(x).all():
            raise ValueError("field contains NaN or Inf")
        self._forget_recordings()
        self.sim.reset(x.astype(np.float32))
        self._restart_history()

    def read_field(self) -> np.ndarray:
        """The drawn field (observed species of the drawn member) as NumPy (a readback: tests/tools only)."""
        self._forget_recordings()
        return self._field_view.numpy()[self._field_member]

    # ------------------------------------------------------------------ cursor read-out
    def pick(self, u: float, v: float):
        """``(sheet id, iy, ix)`` of the leaf value drawn at pixel ``(u, v)`` of the picture (the
        storage image; resampled panels map back to the leaf they sampled), or None off the panels."""
        wr, pic = self.writer, self.picture
        u, v = int(math.floor(u)), int(math.floor(v))
        for p in range(wr.P):
            y0, x0, y1, x1 = wr.panel_rect(p)
            if y0 <= v < y1 and x0 <= u < x1:
                r, c = (v - y0) // wr.sy, (u - x0) // wr.sx
                H, W = pic.HW
                if pic.small is not None:           # nearest resampling: value (r, c) came from this leaf
                    r, c = ((2 * r + 1) * H) // (2 * wr.H), ((2 * c + 1) * W) // (2 * wr.W)
                return pic.ids[p], int(r), int(c)
        return None

    def set_cursor(self, pick):
        """Probe the value at ``pick`` ((sheet id, iy, ix), e.g. from :meth:`pick`; None: stop) in the
        frames submitted from now on; :attr:`cursor` gives it a frame later."""
        pick = None if pick is None else tuple(int(i) for i in pick)
        if pick != self.cursor_pick:
            self._dirty = True           # paused too: the next frame probes the new position
        self.cursor_pick = pick

    def close(self):
        self._forget_recordings()
        close_in_order(*self._probe_at, *self._probe_out)
        close_in_order(self.band_history, self.picture, self.sheets, self.plan, self._obs)
        self.sim.close()
