"""What the viewer shows: a running rollout decomposed into its sheet grid, drawn on the device.

:class:`SheetSource` holds a :class:`vkbands.rollout.Simulation`, a :class:`vkbands.bands.BandPlan`,
a :class:`vkbands.image.ImageWriter` and the rgba8 storage image the preview samples. Each frame it
replays one Recorder (built once per configuration, then only replayed): advance N steps (the system's
own step kernels), the sheet panel stack ``[s^0..s^L, D^0..D^{L-1}]`` of the observed field, a copy
of the visible panels, ``write_image.comp`` into the storage image, and a copy of the step's
observables into host-visible memory that the viewer reads a frame later (no stall, no field
readback).

Sheet grid (SPEC section 6): 2-D fields: row 1 the cumulative sheets, row 2 the detail sheets; 1-D
fields: one column of strips (cumulative then detail), plus, in the panel, the band x time plot.
A system with several fields per member shows its observed field (Gray-Scott: v, the
pattern-forming species), as its observables do. The set-up is a :class:`vkbands.Setup`; the panel's
widgets come from the system's spec (:mod:`vkbands.viewer.panel`).
"""
from __future__ import annotations

import math
import time

import numpy as np

from vkbands.bands import BandPlan
from vkbands.image import CMAPS, GAP, RANGES, ImageWriter
from vkbands.image import layout as picture_layout
from vkbands import systems
from vkbands.rollout import Simulation
from vkbands.setup import Setup

from . import panel

MAX_RECORDINGS = 8       # cached frame recordings (per steps/frame, slot, profiling part)
MIN_PANEL_PX = 96        # small sheets are block-expanded to at least this many pixels
BAND_TIME_COLUMNS = 340  # frames shown by the band x time image of 1-D fields
BAND_TIME_ROW_PX = 10


def _close_in_order(*objects):
    for obj in objects:
        if obj is not None:
            obj.close()


class SheetSource:
    """A Simulation shown as its sheet grid in a storage image (see the module docstring).

    Args:
        ctx: the viewer's Context.
        system: a :class:`vkbands.Setup`, or a registered system name (default
            ``systems.DEFAULT_VIEW``) with ``options``, the keywords of a Setup (arity, depth or size,
            dims, batch, seed, init and its options, the system's parameters).
        x0: a given initial state instead of the set-up's (``options`` then hold system parameters
            and arity only).  dims: with a given 1-D batch x0 (B, N) of a tree system, pass 1.
        member: which batch member is drawn.
        cmap, range, vmin, vmax, fade: the picture (vkbands.image); ``cmap``/``range`` None: the
            system's (``SystemSpec.picture``); ``vmin/vmax`` None: fixed range from the initial field
            (symmetric, max |x0| of the observed field).
    """

    def __init__(self, ctx, system=None, x0=None, *, member=0, cmap=None, range=None,
                 vmin=None, vmax=None, fade=0.0, slots=2, resample=True, dims=None, **options):
        self.ctx = ctx
        options = {k: v for k, v in options.items() if v is not None}
        setup = system if isinstance(system, Setup) else None
        if setup is not None and options:
            raise TypeError(f"with a Setup, the options come from it; got {sorted(options)}: use setup.replace(...)")
        spec = systems.get(setup.system if setup is not None else
                           (systems.DEFAULT_VIEW if system is None else system))
        if x0 is None:
            setup = setup or Setup(spec.name, **options)
            x0, dims, params = setup.x0(), setup.dims, setup.params
        elif setup is not None:
            params, dims = setup.params, setup.dims
            x0 = np.asarray(x0, np.float32)
        else:   # a given state fixes the field: the options are the system's parameters only
            extra = sorted(set(options) - set(spec.param_names) - {"arity"})
            if extra:
                raise ValueError(f"{', '.join(extra)}: do(es) not apply with a given x0 (the state fixes the field "
                                 f"and its start); allowed: arity, {', '.join(spec.param_names)}")
            params = options
            x0 = np.asarray(x0, np.float32)
        self.spec, self.system_name = spec, spec.name
        self.setup = setup                # None when started from a given x0 (restarts use defaults)
        self._given_params = {} if setup is not None else dict(params)
        cmap = spec.picture.view_cmap if cmap is None else cmap
        range = spec.picture.range if range is None else range
        self.sim = Simulation(ctx, spec.name, x0, dims=dims, **params)
        sysobj = self.sim.system
        self.spatial = tuple(sysobj.spatial)
        self.batch = sysobj.batch
        self.L = sysobj.levels
        self.arity = sysobj.arity
        per_member = int(np.prod(sysobj.state_shape[1:])) // int(np.prod(self.spatial))
        self.member = int(member)
        if not 0 <= self.member < self.batch:
            raise ValueError(f"member={member}: the batch has members 0..{self.batch - 1}")
        self.plan = BandPlan(ctx, self.spatial, self.arity, batch=self.batch * per_member)
        self._field_view = self.sim.state.reshape((self.batch * per_member,) + self.spatial)
        self._field_member = self.member * per_member + spec.observed_index
        P = 2 * self.L + 1
        self.sheets = ctx.empty((P,) + self.spatial)
        self.panels = None
        self.cmap, self.range, self.fade = cmap, range, float(fade)
        if vmin is None or vmax is None:
            obs = x0.reshape((self.batch * per_member, -1))[self._field_member] if x0.ndim else x0
            m = float(np.nanmax(np.abs(obs))) if obs.size else 1.0
            m = m if m > 0 and math.isfinite(m) else 1.0
            if cmap == "grey":
                vmin, vmax = float(np.nanmin(obs)), float(np.nanmax(obs))
                if not vmax > vmin:
                    vmin, vmax = vmin - 1, vmax + 1
            else:
                vmin, vmax = -m, m
        self.vmin, self.vmax = float(vmin), float(vmax)
        self.show_cumulative, self.show_detail = True, True
        self.visible_levels = [True] * (self.L + 1)
        self.writer = self.image = self.small = None
        self.resample = bool(resample)
        self._res = None                 # (h, w, scale) of resampled panels, or None: full resolution
        self._resample = ctx.kernel("resample.comp")
        self._recorders: dict = {}
        self._pending_reset = True       # fade accumulator restarts on the next frame
        self.slots = max(1, int(slots))
        self._obs = None
        self._pending = [None] * self.slots   # per frame slot: the recorder whose observables wait
        self._retired = []
        # Where replaced objects go (old picture, dropped recordings): the viewer sets its
        # FrameSync.retire, which frees them once every frame that may still use them has finished;
        # on its own a source closes them at once (a recorder's close waits for its own work).
        self.retire = _close_in_order
        self._handed_off = []            # recordings given to retire, possibly still running
        self.nonfinite = False
        self.ms_per_step = 0.0
        self.last_times = {"simulate": 0.0, "decompose": 0.0}
        self.error = None                # a message for the panel (set by widgets that failed)
        # 1-D fields: a scrolling band x time image of log-energies (rows = bands, one column per
        # frame), drawn by its own ImageWriter into an image the panel shows (ImGui texture).
        self.band_time = None
        if len(self.spatial) == 1:
            self._bt_T = BAND_TIME_COLUMNS
            self._bt = [ctx.zeros((self.L + 1, self._bt_T)) for _ in (0, 1)]
            self._bt_writer = ImageWriter(ctx, 1, self.L + 1, self._bt_T, scale=(BAND_TIME_ROW_PX, 1))
            self.band_time = self._bt_writer.image()
        self.restart_request = None      # set by the panel: dict(system=..., **setup) for a new source
        self.expand_ui = False           # open every panel section (tests exercise all widgets)
        self._res = self._resolution(math.inf, math.inf)   # full resolution unless the device is too small
        self._build_picture()

    # ------------------------------------------------------------------ configuration
    @property
    def step(self) -> int:
        return self.sim.step

    def panel_ids(self):
        """Indices into the sheet stack of the panels drawn, in grid order."""
        L = self.L
        cum = [l for l in range(L + 1) if self.show_cumulative and self.visible_levels[l]]
        det = [L + 1 + l for l in range(L) if self.show_detail and self.visible_levels[l]]
        return cum, det

    def _layout(self):
        """Visible panel ids and the full-resolution layout: ids, P, H, W, cols, (sy, sx)."""
        cum, det = self.panel_ids()
        ids = cum + det or [0]
        one_d = len(self.spatial) == 1
        H, W = (1, self.spatial[0]) if one_d else self.spatial
        if one_d:
            return ids, len(ids), H, W, 1, (min(max(4, -(-W // 48)), 24), 1)   # strips: a readable height
        k = max(1, -(-MIN_PANEL_PX // max(H, W)))
        return ids, len(ids), H, W, max(len(cum), len(det), 1), (k, k)

    @property
    def logical_size(self):
        """(width, height) of the sheet grid at full resolution (every leaf value a block of pixels)."""
        _ids, P, H, W, cols, (sy, sx) = self._layout()
        h, w = picture_layout(P, H, W, cols, sx, sy)
        return w, h

    def set_view(self, width: float, height: float):
        """The picture is shown ``width`` x ``height`` screen pixels large: when that is smaller than
        the full-resolution grid, the panels are resampled (nearest, on the device) to the size shown,
        so the picture costs screen pixels rather than leaf pixels. Rebuilds when the size changes."""
        res = self._resolution(width, height)
        if res != self._res:
            self._res = res
            self._build_picture()

    def _resolution(self, width, height):
        """(h, w, scale) of resampled panels for a picture shown ``width`` x ``height``, or None for
        full resolution. Never larger than the device's maxImageDimension2D."""
        lw, lh = self.logical_size
        limit = int(self.ctx.limits.maxImageDimension2D)
        if max(lw, lh) > limit:      # a full-resolution grid the device cannot hold: shrink it
            k = limit / max(lw, lh)
            width, height = min(width, lw * k), min(height, lh * k)
        elif not self.resample or min(width / lw, height / lh) >= 1:
            return None
        _ids, P, H, W, cols, (sy, sx) = self._layout()
        rows, g = -(-P // cols), GAP
        cell_w = max(1, int((width + g) // cols) - g)    # largest cells that fit, gaps kept
        cell_h = max(1, int((height + g) // rows) - g)
        if H == 1:   # strips keep one value row; their height shrinks with the block size
            return (1, min(W, cell_w), (max(1, min(sy, cell_h)), 1))
        f = min(cell_w / (W * sx), cell_h / (H * sy), 1.0)
        return (max(1, int(H * sy * f)), max(1, int(W * sx * f)), (1, 1))

    def _build_picture(self):
        """(Re)create the writer, the panel buffers and the image for the visible panels. The old
        ones (and the recordings that use them) are retired, not closed: the frame in flight may
        still be drawing the old image."""
        recs = self._drop_recorders(retire=True)
        ids, P, H, W, cols, scale = self._layout()
        old = (*recs, self.image, self.writer, self.panels, self.small)
        if self._res is not None:
            h, w, scale = self._res
            self.small = self.ctx.empty((P, h, w))
        else:
            h, w, self.small = H, W, None
        self.writer = ImageWriter(self.ctx, P, h, w, cols=cols, scale=scale)
        self.image = self.writer.image()
        self._ids, self._HW = ids, (H, W)
        full = ids == list(range(2 * self.L + 1))
        self.panels = None if full else self.ctx.empty((P, H, W))
        self.retire(*old)
        self._pending_reset = True

    def set_display(self, **kw):
        """Change cmap / range / vmin / vmax / fade (re-records) or visibility (rebuilds the picture)."""
        layout = False
        if kw.get("fade", 0) > 0 and self.fade == 0:
            self._pending_reset = True       # the accumulator is stale while fade is off
        for k, v in kw.items():
            if k in ("show_cumulative", "show_detail", "visible_levels"):
                layout = True
            setattr(self, k, v)
        if layout:
            self._build_picture()
        else:
            self.retire(*self._drop_recorders(retire=True))

    def set_params(self, **params):
        self._drop_recorders()       # first: the host may rewrite parameter buffers they read
        self.sim.set_params(**params)

    def _drop_recorders(self, retire: bool = False):
        """Forget every recording (re-recorded on the next frame). ``retire=False``: close them now
        (each waits for its own submission: needed before the host writes what they use, e.g. a
        reset); ``retire=True``: return them for the caller to retire instead (no wait)."""
        recs = list(self._recorders.values()) + self._retired
        self._recorders, self._retired = {}, []
        self._pending = [None] * self.slots   # their observables are dropped with them
        self._dirty = True                    # the picture must be redrawn even when paused
        if retire:
            self._handed_off = [r for r in self._handed_off if not r.closed] + recs
            return recs
        for rec in recs:
            rec.close()       # waits for its submission first
        for rec in self._handed_off:
            rec.wait()        # retired earlier, maybe not freed yet: the host may write what they use next
        self._handed_off = []
        return []

    # ------------------------------------------------------------------ the frame's compute
    def _ensure_obs(self):
        if self._obs is None:
            self._obs = self.sim.system.new_obs(1)
            # Per frame slot, host-visible mirrors the recording copies the observables into: the
            # viewer reads them after that slot's fence, with no submission and no stall.
            self._mirrors, self._obs_hosts = [], []
            for _ in range(self.slots):
                mirror = {}
                for name in ("fused", "energies", "stats"):
                    arr = getattr(self._obs, name, None)
                    if arr is not None:
                        mirror[name] = self.ctx.empty(arr.shape, arr.dtype, host=True)
                host = type(self._obs).__new__(type(self._obs))
                host.__dict__.update(self._obs.__dict__)
                host.__dict__.update(mirror)
                self._mirrors.append(mirror)
                self._obs_hosts.append(host)

    def _record(self, n: int, reset: bool, slot: int, part: str = "all"):
        """One recording of the frame's compute; ``part`` "steps" or "picture" records only that half
        (the profiling mode times them apart)."""
        self._ensure_obs()
        rec = self.ctx.recorder()
        if part in ("all", "steps"):
            if n > 0:
                self.sim.record_steps(rec, n, every=n, obs=self._obs)
            else:
                self.sim.record_steps(rec, 0, observe_first=True, obs=self._obs)
            for name, dst in self._mirrors[slot].items():
                rec.copy(getattr(self._obs, name), dst)
            if self.band_time is not None:
                self._record_band_time(rec, slot)
        if part in ("all", "picture"):
            self.plan.record_sheets(rec, self._field_view, self.sheets, member=self._field_member)
            panels = self.sheets
            if self.panels is not None:
                per = int(np.prod(self.spatial)) * 4
                for j, i in enumerate(self._ids):
                    rec.copy(self.sheets, self.panels, nbytes=per, src_offset=i * per, dst_offset=j * per)
                panels = self.panels
            if self.small is not None:
                k = self._resample
                P, (H, W), (h, w) = self.writer.P, self._HW, self.small.shape[-2:]
                per_group = k.local_size[0] * k.spec["PER_INVOCATION"]
                rec.dispatch(k, k.grid(-(-(P * h * w) // per_group)), panels, self.small,
                             push=dict(n_panels=P, H=H, W=W, h=h, w=w))
                panels = self.small
            self.writer.record(rec, panels.reshape(self.writer.P, self.writer.H, self.writer.W), self.image,
                               cmap=self.cmap, range=self.range, vmin=self.vmin, vmax=self.vmax, fade=self.fade,
                               reset=reset)
        rec.finish()
        return rec

    def _record_band_time(self, rec, slot):
        """Scroll the band x time buffer left by one column (ping-pong: slot s reads buffer s, writes
        the other, so consecutive frames chain) and put this frame's log-energies in the last column."""
        src, dst = self._bt[slot % 2], self._bt[(slot + 1) % 2]
        T, L = self._bt_T, self.L
        rec.copy(src, dst, nbytes=(src.size - 1) * 4, src_offset=4, dst_offset=0)
        obs = self._obs
        if obs.fused is not None:
            base, buf = self.member * (L + 5), obs.fused
        else:
            base, buf = self._field_member * (L + 1), obs.energies
        for l in range(L + 1):
            rec.copy(buf, dst, nbytes=4, src_offset=(base + l) * 4, dst_offset=(l * T + T - 1) * 4)
        self._bt_writer.record(rec, dst, self.band_time, cmap="log", range="symmetric", eps=1e-6)

    def submit(self, n: int, slot: int = 0, profile: bool = False):
        """Submit this frame's compute: ``n`` steps (0: none), the sheets and the picture; its
        observables go to frame slot ``slot``'s host mirror (read by :meth:`observables`). Returns
        False (nothing submitted) when paused with nothing changed since the last picture.

        ``profile=True``: submit the steps and the picture (sheets + write_image) as two recordings
        and wait for each, timing them into ``last_times`` ("simulate", "decompose", seconds)."""
        n, slot = int(n), int(slot) % self.slots
        if n == 0 and not self._dirty and self.fade == 0 and not profile:
            return False             # paused and nothing changed: the image already shows this state
        self._take(slot)             # normally already taken by observables(slot) after the fence
        reset = self._pending_reset and self.fade > 0
        parts = ("steps", "picture") if profile else ("all",)
        if len(self._recorders) >= MAX_RECORDINGS and any((n, reset, slot, p) not in self._recorders for p in parts):
            # e.g. steps/frame dragged over many values: keep the cache small
            self.retire(*self._drop_recorders(retire=True))
            self._dirty = False
        recs = []
        for part in parts:
            key = (n, reset, slot, part)
            rec = self._recorders.get(key)
            if rec is None:
                rec = self._recorders[key] = self._record(n, reset, slot, part)
            t0 = time.perf_counter()
            rec.submit(wait=profile)
            if profile:
                self.last_times["simulate" if part == "steps" else "decompose"] = time.perf_counter() - t0
            if reset:  # a one-off recording: freed once its observables are taken (or dropped)
                del self._recorders[key]
                self._retired.append(rec)
            recs.append(rec)
        self._pending_reset = False
        self._dirty = False
        self.sim.step += n
        self._pending[slot] = recs[0]
        return True

    def _take(self, slot):
        rec, self._pending[slot] = self._pending[slot], None
        if rec is None:
            return None
        rec.wait()                   # returns at once when the slot's fence has signalled
        try:
            row = self._obs_hosts[slot].read(1)
            energies = np.asarray(row["energies"][0, self.member], np.float64)
            self.nonfinite = bool(row["nonfinite"][0, self.member])
        except Exception:  # noqa: BLE001 — observables are advisory; never stop the viewer
            energies = None
        if rec in self._retired:   # one-off recordings end with their frame
            for r in self._retired:
                r.wait()
                r.close()
            self._retired = []
        return energies

    def observables(self, slot: int = 0):
        """Energies ``[E_0..E_{L-1}, E_c]`` of the drawn member after the frame last submitted in
        ``slot`` (call after that slot's fence: no stall), or None."""
        return self._take(int(slot) % self.slots)

    # ------------------------------------------------------------------ state
    def _clear_history(self):
        if self.band_time is not None:
            for b in self._bt:
                b.fill(0)

    def reset(self):
        self._drop_recorders()
        self.sim.reset()
        self._clear_history()
        self._pending_reset = True

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
        self._drop_recorders()
        self.sim.reset(x.astype(np.float32))
        self._clear_history()
        self._pending_reset = True

    def read_field(self) -> np.ndarray:
        """The drawn field (observed species of the drawn member) as NumPy (a readback: tests/tools only)."""
        self._drop_recorders()
        return self._field_view.numpy()[self._field_member]

    # ------------------------------------------------------------------ panel widgets
    def _restart_ui(self, imgui):
        """Options that need a new simulation (widgets from the specs: :mod:`vkbands.viewer.panel`),
        edited here, applied by the viewer on "Restart"."""
        ed = self._edit = getattr(self, "_edit", None) or dict(
            system=self.system_name, **(self.setup.options if self.setup is not None else self._given_params))
        current = dict(depth=self.L, arity=self.arity, batch=self.batch)
        for w, v in panel.draw(imgui, panel.restart_widgets(ed, current)):
            ed = self._edit = panel.apply(ed, w, v)
        imgui.text_wrapped("as `vkbands rollout` (int options -1: not set; rates: l0,l1,...)")
        if imgui.button("Restart with these"):
            self.restart_request = dict(ed)
            self._edit = None

    def build_ui(self, imgui):
        s = self.sim
        imgui.text(f"{self.system_name}  {' x '.join(map(str, self.spatial))}  p={self.arity} L={self.L}"
                   f"  batch={self.batch} (showing {self.member})")
        if imgui.tree_node("parameters", imgui.TREE_NODE_DEFAULT_OPEN):
            live = panel.live_widgets(self.spec, s.params)
            for w, v in panel.draw(imgui, live):
                try:
                    self.set_params(**{w.key: v})
                except Exception as e:  # noqa: BLE001 — show it, keep running
                    self.error = str(e)
            shown = {w.key for w in live} | {p.name for p in self.spec.live_params}
            others = {k: v for k, v in s.params.items() if k not in shown}
            if others:
                imgui.text_wrapped("fixed (restart to change): " + ", ".join(f"{k}={v}" for k, v in others.items()
                                                                             if not isinstance(v, (list, tuple))))
            imgui.tree_pop()
        if self.expand_ui:
            imgui.set_next_item_open(True)
        if imgui.tree_node("restart (system, size, initial state)"):
            self._restart_ui(imgui)
            imgui.tree_pop()
        if imgui.tree_node("picture", imgui.TREE_NODE_DEFAULT_OPEN):
            changed, i = imgui.combo("colour map", CMAPS.index(self.cmap), list(CMAPS))
            if changed:
                self.set_display(cmap=CMAPS[i])
            changed, i = imgui.combo("range", RANGES.index(self.range), list(RANGES))
            if changed:
                self.set_display(range=RANGES[i])
            if self.range == "fixed":
                changed, (a, b) = imgui.drag_float2("vmin/vmax", self.vmin, self.vmax,
                                                   change_speed=max(abs(self.vmax - self.vmin), 1e-6) / 200)
                if changed and b > a:
                    self.set_display(vmin=a, vmax=b)
            changed, f = imgui.slider_float("fade", self.fade, 0.0, 0.99, "%.2f")
            if changed:
                self.set_display(fade=f)
            c1, v1 = imgui.checkbox("cumulative row", self.show_cumulative)
            imgui.same_line()
            c2, v2 = imgui.checkbox("detail row", self.show_detail)
            if c1 or c2:
                self.set_display(show_cumulative=v1, show_detail=v2)
            vis = list(self.visible_levels)
            changed_any = False
            for l in range(self.L + 1):
                if l:
                    imgui.same_line()
                c, vis[l] = imgui.checkbox(f"{l}##lvl{l}", vis[l])
                changed_any |= c
            if changed_any and any(vis):
                self.set_display(visible_levels=vis)
            imgui.tree_pop()

    def close(self):
        self._drop_recorders()
        if self.band_time is not None:
            for obj in (self.band_time, self._bt_writer, *self._bt):
                obj.close()
        for obj in (self.image, self.writer, self.panels, self.small, self.sheets, self.plan):
            if obj is not None:
                obj.close()
        if self._obs is not None:
            self._obs.close()
            for mirror in self._mirrors:
                for m in mirror.values():
                    m.close()
        self.sim.close()
