"""Band (sheet) decomposition on the GPU: tree-Haar for any arity, 1-D and 2-D, batched (SPEC §1-2).

Public API (NumPy in -> NumPy out; device arrays in -> device arrays out; inside
``with ctx.recorder():`` the functions only record, as everywhere in vkbands):

- ``decompose(x, arity=3, dims=None) -> Bands``; ``x`` is ``(N,)``, ``(H, W)``, ``(B, N)`` (``dims=1``),
  ``(B, H, W)`` (any number of leading batch axes). ``Bands`` has ``.arity``, ``.levels`` (L),
  ``.dims``, ``.coarse`` (batch shape; rectangular 2-D fields keep their ``(p**(Ly-L), p**(Lx-L))``
  top grid, as ``vkbands.reference.coarse``), ``.detail(l, leaf=False)``, ``.cumulative(l)``,
  ``.energies()``, ``.nonfinite``, ``.numpy() -> (details, coarse)`` (the structure of
  ``vkbands.reference.decompose``), ``.close()``.
- ``reconstruct(bands)``: ``x = U^L c + sum_l U^l d^(l)`` (exact inverse, from the stored bands).
- ``energies(x, arity=3, dims=None)`` -> ``batch_shape + (L+1,)``: ``[E_0..E_{L-1}, E_c]``, the fast
  path: no band array is ever materialised.
- ``leakage(x_or_bands, arity=3, dims=None)`` -> ``(L+1, L+1)`` NumPy float64 (a host diagnostic:
  it reads the bands back, so it cannot be recorded).

Sizes are validated by ``vkbands.reference`` (``levels`` / ``split_shape`` / ``infer_dims``): the
one validator and the one set of error messages of the project.

NaN / Inf input (documented behaviour): nothing raises; non-finite values propagate through the
block means into every band that contains them, into the coarse part and into the energies of the
affected field (NaN). ``Bands.nonfinite`` (bool, batch shape) flags those fields; for ``energies``
check ``~np.isfinite(E).all(-1)``.

Recording entry points for the rollout engine and the viewer (no allocation per call)
--------------------------------------------------------------------------------------
``BandPlan(ctx, spatial_shape, arity, batch=1)`` plans the passes for fields of ``spatial_shape``
(``(N,)`` or ``(H, W)``; dims = len(spatial_shape)) and owns the scratch buffers (allocated once,
the sheet pyramid on first use). ``.levels`` is L.

- ``plan.record_energies(rec, x, out, row=0)``: records, into Recorder ``rec``, the energies of
  ``x`` (DeviceArray float32 holding ``(batch, *spatial)``) into ``out`` (DeviceArray float32 viewed
  as ``(rows, batch, L+1)``) at row ``row``. ``row`` is a push constant: recording many rows (one
  per rollout step) allocates nothing. Shapes are checked by element count only.
- ``plan.record_observables(rec, x, energies_out, stats_out, row=0)``: the energies as
  ``record_energies`` (bit for bit) and, from the same passes (one read of ``x``), ``[mass, min, max,
  nonfinite]`` per field into row ``row`` of ``stats_out`` (viewed as ``(rows, batch, 4)``): min / max
  over the finite values, nonfinite 1.0 when any value is NaN/Inf, mass = N * c (NaN/Inf for a
  non-finite field). What a heat / Gray-Scott observation records (``vkbands.systems``).
- ``plan.record_sheets(rec, x, out, member=0)``: writes the ``(2L+1, *spatial)`` leaf-resolution
  panel stack ``[s^(0), ..., s^(L), D^(0), ..., D^(L-1)]`` of batch member ``member`` of ``x``
  into ``out`` (the sheet grid of SPEC §6).
- ``plan.close()`` (or use it as a context manager) frees the scratch buffers. A plan must outlive
  every submission of the recordings it was recorded into.

How it runs: one pass of ``bands_pyramid.comp`` reduces K levels of a tile (p**K leaves, or
p**K x p**K): every invocation reduces micro-tiles of p**M leaves (p**M x p**M) M levels in
registers, the remaining K - M levels run in shared memory, and per-tile sums of d^(l)**2 come out of
one short shared reduction. The next pass reduces the tile means and the partials of the tiles below
it, so a 729 x 729 (p = 3) or 1024 x 1024 (p = 2) energies call is two dispatches, a batch of 1-D
fields of 729 leaves one. ``decompose`` runs the same passes and also writes every detail from the
registers that formed it (no pyramid is kept); ``record_sheets`` writes the pyramid of one field and
expands it (``bands_sheets.comp``); leaf-resolution bands, cumulative sheets and the reconstruction
come from ``bands_synth.comp``; rectangular fields sum their p^L x p^L squares (``bands_rowsum.comp``).
``record_observables`` runs the energies passes compiled with ``STATS``: the first pass also takes
min / max / NaN-Inf flag of the leaves it loads, every pass reduces them with the sums.
Accuracy: each d is formed from its own node's children (no long cancellation) and every sum is a
short serial sum of such terms followed by trees; errors vs the float64 reference are ~1e-7 relative.
"""
from __future__ import annotations

import weakref

import numpy as np

from vkbands.engine import DeviceArray
from vkbands.engine.limits import row_ranges

from . import _checks
from . import reference as R
from ._call import Call
from ._owner import Owner

__all__ = ["Bands", "BandPlan", "decompose", "reconstruct", "energies", "leakage"]

_NODE_MAX = 1024          # micro-tiles (= invocation work items) per workgroup tile
_CPU_THREADS = (2, 4)     # CPU devices: (invocations per tile, tiles per workgroup); lavapipe, CPU time
                          # per call vs (8, 1): 4096x729 1-D 38 vs 47 ms, 1024^2 13.5 vs 14.2, 729^2 equal
_MICRO_MAX = {1: 27, 2: 9}  # values per micro-tile reduced in registers by one invocation, by dims
                            # (lavapipe: 2-D p=2 with 4x4 micro-tiles ran 2.3x slower than 2x2)
_ELEMENTWISE_LOCAL = 256  # workgroup size of the elementwise kernels
_PER_INVOCATION = 4       # elements per invocation in bands_synth


def _prod(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def _shape_of(x):
    return tuple(x.shape) if isinstance(x, DeviceArray) else tuple(np.shape(x))


class _Geometry:
    """Shapes of a batch of fields: validated by vkbands.reference."""

    def __init__(self, shape, arity, dims):
        self.p = _checks.arity(arity)
        self.batch_shape, self.spatial = R.split_shape(shape, dims)
        self.dims = len(self.spatial)
        self.L = R.levels(shape, self.p, self.dims)
        self.B = _prod(self.batch_shape)
        self.N = _prod(self.spatial)
        self.H, self.W = (self.spatial if self.dims == 2 else (1, self.spatial[0]))
        # level sizes per field, levels 0..L
        self.hw = []
        h, w = self.H, self.W
        for _ in range(self.L + 1):
            self.hw.append((h, w))
            h, w = (h // self.p if self.dims == 2 else 1), w // self.p
        top = self.hw[self.L]
        self.top_shape = top if self.dims == 2 else (top[1],)
        self.r = top[0] * top[1]       # coarse values per field (1 unless rectangular)

    def level_offsets(self, nb):
        """Element offsets of levels 0..L+1 in the levels layout of nb fields."""
        off = [0]
        for h, w in self.hw:
            off.append(off[-1] + nb * h * w)
        return off


class _Pass:
    __slots__ = ("kernel", "push", "groups", "src", "pin", "dst", "pout", "bands", "st")


class BandPlan(Owner):
    """Planned band passes for fields of ``spatial_shape`` with ``batch`` members; owns its scratch.

    See the module docstring for the contracts of :meth:`record_energies` and :meth:`record_sheets`.
    """

    def __init__(self, ctx, spatial_shape, arity, batch=1):
        spatial = tuple(int(n) for n in spatial_shape)
        if len(spatial) not in (1, 2):
            raise ValueError(f"spatial_shape must be (N,) or (H, W), got {spatial_shape!r}")
        batch = _checks.integer("batch", batch, 1)
        self.ctx = ctx
        self.geo = g = _Geometry(spatial, arity, len(spatial))
        self.arity, self.levels, self.dims, self.batch = g.p, g.L, g.dims, int(batch)
        self.spatial_shape = spatial
        # energies schedule (batch fields) and its scratch
        self._energy_sched, n_scratch = self._schedule(self.batch, "energies")
        self._scratch = ctx.empty((max(n_scratch, 1),), np.float32)
        self._sheet_sched = None
        self._sheet_pyr = self._sheet_scratch = None
        self._rowsum = (ctx.kernel("bands_rowsum.comp", spec={"LOCAL_X": 64, "NV": g.L + 1})
                        if g.r > 1 else None)
        self._obs_sched = self._obs_scratch = None
        self._sheets_kernel = ctx.kernel("bands_sheets.comp", spec={
            "LOCAL_X": _ELEMENTWISE_LOCAL, "P": g.p, "DIMS": g.dims})

    # ------------------------------------------------------------------ planning
    def _threads(self, nm, ntiles, sh, nv):
        """(invocations per tile, tiles per workgroup) for a pass with nm micro-tiles per tile.
        GPUs: up to 256 invocations per tile, small tiles packed side by side up to 256 per
        workgroup. CPU devices: _CPU_THREADS (few invocations per tile and a few tiles per
        workgroup: lavapipe runs a workgroup as SIMD-8 chunks that switch at every barrier)."""
        cpu = str(self.ctx.info.get("type", "")).lower() == "cpu"
        cap = min(256, int(self.ctx.limits.maxComputeWorkGroupInvocations))
        if cpu:
            lpt, tpw = min(_CPU_THREADS[0], _pow2_at_least(nm)), _CPU_THREADS[1]
        else:
            lpt = min(cap, _pow2_at_least(nm))
            tpw = max(1, cap // lpt)
        smem = int(self.ctx.limits.maxComputeSharedMemorySize) // 4
        per_tile = sh + nv * lpt + nv * min(lpt, 8)
        return lpt, max(1, min(tpw, ntiles, smem // per_tile, cap // lpt))

    def _micro_levels(self):
        """Levels each invocation reduces in registers: largest m with p**(m*dims) <= _MICRO_MAX[dims]."""
        g = self.geo
        cap = _MICRO_MAX[g.dims] if isinstance(_MICRO_MAX, dict) else _MICRO_MAX
        m = 1
        while m < g.L and g.p ** ((m + 1) * g.dims) <= cap:
            m += 1
        return m

    def _kmax(self, m, ns=0):
        """Levels per pass: m in registers plus as many shared-memory levels as keep the micro-tiles
        of a tile <= _NODE_MAX and the shared memory within the device limit (ns: statistics
        reduced alongside the L+1 energies)."""
        g = self.geo
        smem = int(self.ctx.limits.maxComputeSharedMemorySize) // 4
        s = 0
        while True:
            nm = g.p ** ((s + 1) * g.dims)
            sh = sum(g.p ** (i * g.dims) for i in range(s + 2))
            lpt = min(256, _pow2_at_least(nm))   # the most invocations per tile any policy uses
            if nm > _NODE_MAX or sh + (g.L + 1 + ns) * (lpt + 8) > smem:
                return m + s
            s += 1

    def _schedule(self, nb, mode):
        """Passes for nb fields. mode: "energies" (tile means in scratch), "observables" (the same,
        plus [mass, min, max, nonfinite] per field: ``STATS`` kernels), "pyramid" (levels 1..L to a
        pyramid buffer: levels layout of nb fields starting at level 1) or "bands" (d^(0..L-1) and c
        to a bands buffer, levels layout). Returns (passes, scratch floats)."""
        g, p, d = self.geo, self.geo.p, self.geo.dims
        stats = mode == "observables"
        ns = 3 if stats else 0      # min, max, flag reduced with the sums (mass comes from the coarse)
        micro = self._micro_levels()
        kmax = self._kmax(micro, ns)
        lev_off = g.level_offsets(nb)
        pyramid = mode == "pyramid"
        passes, a, scratch = [], 0, 0
        h, w = g.H, g.W
        prev = None  # (means_off, parts_off) of the previous pass in scratch
        rowsum_src = None
        while a < g.L:
            k = min(kmax, g.L - a)
            m = min(micro, k)
            T = p ** k
            final = a + k == g.L
            th, tw = (h // T if d == 2 else 1), w // T
            ntiles = nb * th * tw
            nm = p ** ((k - m) * d)
            nv = a + k + (1 if final else 0)
            sh = sum(p ** (i * d) for i in range(k - m + 1))
            lpt, tpw = self._threads(nm, ntiles, sh, nv + ns)
            spec = {"LOCAL_X": lpt * tpw, "LPT": lpt, "TPW": tpw, "P": p, "DIMS": d, "K": k, "M": m,
                    "NPREV": a, "FINAL": int(final), "WRITE_PYR": int(pyramid),
                    "WRITE_BANDS": int(mode == "bands"), "C": p ** d, "T": T, "SM": p ** m,
                    "CM": p ** (m * d), "NM": nm, "SH": sh, "NV": nv}
            ps = _Pass()
            defs = {"STATS": 1} if stats else {}
            if a == 0 and p % 2 == 0:   # leaves in vec2 pairs: N, member offsets and micro-tile columns are even
                defs["PAIRS"] = 1
            ps.kernel = self.ctx.kernel("bands_pyramid.comp", spec=spec, defines=defs or None)
            ps.groups = ps.kernel.grid(-(-ntiles // tpw))
            push = {"nb": nb, "h": h, "w": w, "L": g.L, "src_off": 0, "src_bstride": h * w,
                    "pin_off": 0, "dst_off": 0, "pout_off": 0, "bands_off": lev_off[a]}
            ps.src = "x" if a == 0 else ("pyr" if pyramid else "scratch")
            ps.pin = "scratch"
            ps.dst = "pyr" if pyramid else "scratch"
            ps.bands = "bands" if mode == "bands" else "scratch"
            ps.st = None
            if stats:
                push["stats_off"] = 0
                ps.st = "scratch"
            if a > 0:
                push["src_off"] = (lev_off[a] - lev_off[1]) if pyramid else prev[0]
                push["pin_off"] = prev[1]
            if pyramid:
                push["dst_off"] = lev_off[a + 1] - lev_off[1]
            elif not final:
                push["dst_off"] = scratch
                scratch += ntiles
            if final:
                if g.r > 1:
                    ps.pout = "scratch"
                    push["pout_off"] = rowsum_src = scratch
                    scratch += ntiles * nv
                    if stats:          # the squares' statistics rows, combined by bands_rowsum
                        push["stats_off"] = scratch
                        scratch += ntiles * 4
                else:
                    ps.pout = "out"
                    if stats:
                        ps.st = "stats"
            else:
                ps.pout = "scratch"
                push["pout_off"] = scratch
                prev = (push["dst_off"], scratch)
                scratch += ntiles * (nv + ns)
            ps.push = push
            passes.append(ps)
            a += k
            h, w = th, tw
        passes[-1].push["_rowsum_src"] = rowsum_src
        return passes, scratch

    # ------------------------------------------------------------------ recording
    def _record(self, rec, passes, x, x_off, pyr, scratch, out, out_off, nb, bands=None, stats=None, stats_off=0):
        res = {"x": x, "pyr": pyr, "scratch": scratch, "out": out, "bands": bands, "stats": stats}
        g = self.geo
        for ps in passes:
            push = {k: v for k, v in ps.push.items() if not k.startswith("_")}
            if ps.src == "x":
                push["src_off"] = x_off
                push["src_bstride"] = g.N
            if ps.pout == "out":
                push["pout_off"] = out_off
            if ps.st == "stats":
                push["stats_off"] = stats_off
            extra = (res[ps.st],) if ps.st is not None else ()
            rec.dispatch(ps.kernel, ps.groups, res[ps.src], res[ps.pin], res[ps.dst], res[ps.pout], res[ps.bands],
                         *extra, push=push)
        last = passes[-1]
        rs = last.push["_rowsum_src"]
        if rs is not None and last.st is None:
            k = self._rowsum
            rec.dispatch(k, k.grid(nb), scratch, out, push={"nb": nb, "r": g.r, "src_off": rs, "out_off": out_off})
        elif rs is not None:
            k = self._rowsum_stats
            rec.dispatch(k, k.grid(nb), scratch, out, stats,
                         push={"nb": nb, "r": g.r, "src_off": rs, "out_off": out_off,
                               "stats_src_off": last.push["stats_off"], "stats_off": stats_off})

    def _check_array(self, name, arr, need, multiple=False):
        if not isinstance(arr, DeviceArray):
            raise TypeError(f"{name} must be a DeviceArray, got {type(arr).__name__}")
        if arr.ctx is not self.ctx:
            raise ValueError(f"{name}: device array belongs to another Context")
        if arr.dtype != np.float32:
            raise TypeError(f"{name}: dtype {arr.dtype} not supported; allowed: float32")
        ok = (arr.size % need == 0 and arr.size > 0) if multiple else arr.size == need
        if not ok:
            what = f"a multiple of {need}" if multiple else f"{need}"
            raise ValueError(f"{name}: has {arr.size} elements (shape {arr.shape}); needs {what}")

    def record_energies(self, rec, x, out, row: int = 0):
        """Record ``[E_0..E_{L-1}, E_c]`` of every field of ``x`` (batch, *spatial) into row ``row``
        of ``out`` viewed as ``(rows, batch, L+1)`` float32."""
        self._require_open()
        g = self.geo
        self._check_array("x", x, self.batch * g.N)
        per_row = self.batch * (g.L + 1)
        self._check_array("out", out, per_row, multiple=True)
        rows = out.size // per_row
        row = _checks.integer("row", row, 0, rows - 1, f"out holds {rows} rows of {self.batch} x {g.L + 1}")
        self._record(rec, self._energy_sched, x, 0, self._scratch, self._scratch, out,
                     int(row) * per_row, self.batch)

    def record_observables(self, rec, x, energies_out, stats_out, row: int = 0):
        """Record the observables of SPEC §5 of every field of ``x`` (batch, *spatial) in one read of
        the field: ``[E_0..E_{L-1}, E_c]`` into row ``row`` of ``energies_out`` (viewed as ``(rows,
        batch, L+1)``) and ``[mass, min, max, nonfinite]`` into row ``row`` of ``stats_out`` (viewed
        as ``(rows, batch, 4)``), all float32. The passes are those of :meth:`record_energies`
        (``bands_pyramid.comp`` with ``STATS``): min / max are over the finite values (+Inf / -Inf
        when there are none), ``nonfinite`` is 1.0 when any value is NaN/Inf, else 0.0, and mass is
        ``N * c`` (the coarse mean times the leaf count: a tree sum; NaN/Inf in a non-finite field)."""
        self._require_open()
        g = self.geo
        self._check_array("x", x, self.batch * g.N)
        per_row = self.batch * (g.L + 1)
        self._check_array("energies_out", energies_out, per_row, multiple=True)
        self._check_array("stats_out", stats_out, self.batch * 4, multiple=True)
        rows = min(energies_out.size // per_row, stats_out.size // (self.batch * 4))
        row = _checks.integer("row", row, 0, rows - 1,
                              f"energies_out / stats_out hold {rows} rows of {self.batch} fields")
        if self._obs_sched is None:
            self._obs_sched, n_scratch = self._schedule(self.batch, "observables")
            self._obs_scratch = self.ctx.empty((max(n_scratch, 1),), np.float32)
            if g.r > 1:
                self._rowsum_stats = self.ctx.kernel("bands_rowsum.comp", spec={"LOCAL_X": 64, "NV": g.L + 1},
                                                     defines={"STATS": 1})
        self._record(rec, self._obs_sched, x, 0, self._obs_scratch, self._obs_scratch, energies_out,
                     int(row) * per_row, self.batch, stats=stats_out, stats_off=int(row) * self.batch * 4)

    def record_sheets(self, rec, x, out, member: int = 0):
        """Record the ``(2L+1, *spatial)`` panel stack ``[s^(0..L), D^(0..L-1)]`` of field
        ``member`` of ``x`` into ``out``."""
        self._require_open()
        g = self.geo
        self._check_array("x", x, self.batch * g.N)
        self._check_array("out", out, (2 * g.L + 1) * g.N)
        member = _checks.integer("member", member, 0, self.batch - 1)
        if self._sheet_sched is None:
            self._sheet_sched, n_scratch = self._schedule(1, "pyramid")
            off = g.level_offsets(1)
            self._sheet_pyr = self.ctx.empty((max(off[-1] - off[1], 1),), np.float32)
            # the final pass's energies of the member are not needed: they land in scratch too
            self._sheet_scratch = self.ctx.empty((n_scratch + g.r * (g.L + 1),), np.float32)
            self._sheet_out_off = n_scratch
        self._record(rec, self._sheet_sched, x, int(member) * g.N, self._sheet_pyr, self._sheet_scratch,
                     self._sheet_scratch, self._sheet_out_off, 1)
        k = self._sheets_kernel
        rec.dispatch(k, k.grid(-(-g.N // k.local_size[0])), x, self._sheet_pyr, out,
                     push={"H": g.H, "W": g.W, "L": g.L, "src_off": int(member) * g.N})

    def record_decompose(self, rec, x, bands, energies_out):
        """Record the full decomposition of all fields of ``x`` into ``bands`` (levels layout:
        d^(0..L-1) at own resolution, then c; ``Bands``' storage) and ``energies_out`` (batch, L+1):
        the energies passes, also writing every detail from the registers that formed it."""
        self._require_open()
        g = self.geo
        self._check_array("x", x, self.batch * g.N)
        self._check_array("bands", bands, g.level_offsets(self.batch)[-1])
        self._check_array("energies_out", energies_out, self.batch * (g.L + 1))
        if not hasattr(self, "_decomp_sched"):
            self._decomp_sched, n = self._schedule(self.batch, "bands")
            self._decomp_scratch = self.ctx.empty((max(n, 1),), np.float32)
        self._record(rec, self._decomp_sched, x, 0, self._decomp_scratch, self._decomp_scratch, energies_out,
                     0, self.batch, bands=bands)

    # ------------------------------------------------------------------ lifetime
    def _require_open(self):
        if self.closed:
            raise ValueError("this BandPlan is closed")

    def _close_now(self):
        for a in (self._scratch, self._sheet_pyr, self._sheet_scratch, self._obs_scratch,
                  getattr(self, "_decomp_scratch", None)):
            if a is not None:
                a.close()

    def __repr__(self):
        return (f"<vkbands.BandPlan spatial={self.spatial_shape} arity={self.arity} L={self.levels} "
                f"batch={self.batch}>")


# ---------------------------------------------------------------------- cached plans
_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _plan(ctx, spatial, p, batch) -> BandPlan:
    """A plan per (context, spatial shape, arity, batch), kept for the context's lifetime (its scratch
    may be referenced by recordings not yet submitted)."""
    plans = _PLANS.setdefault(ctx, {})
    key = (tuple(spatial), int(p), int(batch))
    plan = plans.get(key)
    if plan is None or plan.closed or plan._scratch.closed:
        plan = plans[key] = BandPlan(ctx, spatial, p, batch)
    return plan


def _float32_input(call, name="x"):
    arr = call.arrays[name]
    if arr.dtype != np.float32:
        call.close()
        raise TypeError(f"{name}: dtype {arr.dtype} not supported; allowed: float32 (float64 is cast)")
    return arr


# ---------------------------------------------------------------------- public functions
def energies(x, arity=3, dims=None):
    """Band energies ``[E_0, ..., E_{L-1}, E_c]`` of every field of ``x``: ``batch_shape + (L+1,)``.

    ``E_l = p**(l*dims) * sum(d^(l)**2)``, ``E_c = N * c**2`` (rectangular: ``sum((U^L A^(L))**2)``);
    Parseval: ``E.sum(-1) == sum(x**2)``. No band array is materialised (a few small scratch
    buffers, cached per shape). NaN/Inf in a field make its energies NaN/Inf.
    """
    g = _Geometry(_shape_of(x), arity, dims)
    call = Call(x=x)
    X = _float32_input(call)
    out = call.empty(g.batch_shape + (g.L + 1,), np.float32)
    if g.B:
        # batches over maxStorageBufferRange run in member ranges (aligned row views, no copy)
        xs, outs = X.reshape((g.B,) + g.spatial), out.reshape(g.B, g.L + 1)
        for start, stop in row_ranges(call.ctx, g.B, g.N * 4, (g.L + 1) * 4, what="energies: x"):
            _plan(call.ctx, g.spatial, g.p, stop - start).record_energies(
                call.rec, xs.rows(start, stop), outs.rows(start, stop))
    return call.result(out)


class Bands(Owner):
    """A tree-Haar decomposition (SPEC §2) of a batch of fields. Made by :func:`decompose`.

    Stores the detail bands at their own resolution and the coarse part in one flat buffer (the
    "levels layout": level m of all fields, row-major, levels 0..L in order, level L = coarse) and the
    energies. Backed by NumPy (``x`` was NumPy) or by device arrays (``x`` was a DeviceArray); every
    method returns arrays of that kind. Device-backed Bands own device memory: ``close()`` it (or use
    ``with``) when done; arrays returned by methods are new and owned by the caller.
    """

    def __init__(self, geo: _Geometry, buf, energies_, scratch=()):
        self._geo = geo
        self._buf = buf
        self._energies = energies_
        self._scratch = list(scratch)
        self.arity, self.levels, self.dims = geo.p, geo.L, geo.dims
        self.batch_shape, self.spatial_shape = tuple(geo.batch_shape), tuple(geo.spatial)
        self.device = isinstance(buf, DeviceArray)
        self._offsets = geo.level_offsets(geo.B)

    # ------------------------------------------------------------------ helpers
    def _level_shape(self, m):
        h, w = self._geo.hw[m]
        return self.batch_shape + ((h, w) if self.dims == 2 else (w,))

    def _slice(self, m, shape):
        start, stop = self._offsets[m], self._offsets[m + 1]
        if not self.device:
            return self._buf[start:stop].reshape(shape).copy()
        call = Call(b=self._buf)
        out = call.ctx.empty(shape, np.float32)
        call.rec.copy(self._buf, out, nbytes=(stop - start) * 4, src_offset=start * 4)
        return call.result(out)

    def _synth(self, l0, l1, with_coarse):
        g = self._geo
        call = Call(b=self._buf)
        out = call.empty(self.batch_shape + self.spatial_shape, np.float32)
        k = call.ctx.kernel("bands_synth.comp", spec={"LOCAL_X": _ELEMENTWISE_LOCAL, "P": g.p, "DIMS": g.dims,
                                                     "PER_INVOCATION": _PER_INVOCATION})
        per = k.local_size[0] * _PER_INVOCATION
        if g.B:
            call.rec.dispatch(k, k.grid(-(-(g.B * g.N) // per)), call.arrays["b"], out,
                              push={"nb": g.B, "H": g.H, "W": g.W, "L": g.L, "l0": l0, "l1": l1,
                                    "with_coarse": int(with_coarse), "out_off": 0})
        return call.result(out)

    def _require_open(self):
        if self.device and self._buf.closed:
            raise ValueError("these Bands are closed")

    # ------------------------------------------------------------------ public
    @property
    def coarse(self):
        """``c = A^(L)``: batch shape (a scalar for one field); rectangular 2-D fields keep their
        top grid ``batch + (p**(Ly-L), p**(Lx-L))`` (as ``vkbands.reference.coarse``)."""
        self._require_open()
        shape = self.batch_shape + (self._geo.top_shape if self._geo.r > 1 else ())
        c = self._slice(self.levels, shape)
        return c[()] if not self.device and c.ndim == 0 else c

    def detail(self, l, leaf=False):
        """Detail band ``d^(l)`` at its own resolution (``batch + spatial // p**l``), or with
        ``leaf=True`` ``D^(l) = U^l d^(l)`` at leaf resolution (the shape of x). l in 0..L-1."""
        self._require_open()
        l = _checks.integer("l", l, 0, self.levels - 1)
        if leaf:
            return self._synth(l, l + 1, False)
        return self._slice(l, self._level_shape(l))

    def cumulative(self, l):
        """Cumulative sheet ``s^(l) = U^l A^(l)`` at leaf resolution, l in 0..L (``s^(0)`` = x)."""
        self._require_open()
        l = _checks.integer("l", l, 0, self.levels)
        return self._synth(l, self.levels, True)

    def energies(self):
        """``[E_0, ..., E_{L-1}, E_c]``: ``batch_shape + (L+1,)`` (computed during decompose)."""
        self._require_open()
        if not self.device:
            return self._energies.copy()
        call = Call(e=self._energies)
        out = call.ctx.empty(self._energies.shape, np.float32)
        call.rec.copy(self._energies, out)
        return call.result(out)

    @property
    def nonfinite(self):
        """Bool, batch shape: True for fields that contained NaN/Inf (or overflowed): their bands,
        coarse part and energies carry NaN/Inf. Reads the coarse part back for device Bands."""
        self._require_open()
        top = self._buf[self._offsets[self.levels]:] if not self.device else \
            self._buf.numpy()[self._offsets[self.levels]:]
        return ~np.isfinite(top.reshape(self.batch_shape + (self._geo.r,))).all(axis=-1)

    def numpy(self):
        """``(details, coarse)`` as NumPy float32, the structure of ``vkbands.reference.decompose``:
        ``details[l]`` = d^(l) at own resolution, ``coarse`` as :attr:`coarse`."""
        self._require_open()
        buf = self._buf.numpy() if self.device else self._buf
        details = [buf[self._offsets[m]:self._offsets[m + 1]].reshape(self._level_shape(m)).copy()
                   for m in range(self.levels)]
        shape = self.batch_shape + (self._geo.top_shape if self._geo.r > 1 else ())
        c = buf[self._offsets[self.levels]:].reshape(shape).copy()
        return details, (c[()] if c.ndim == 0 else c)

    def _close_now(self):
        """Free the device memory of device-backed Bands (``close()``: idempotent; NumPy-backed Bands
        hold no device memory)."""
        if self.device:
            for a in [self._buf, self._energies] + self._scratch:
                a.close()

    def __repr__(self):
        kind = "device" if self.device else "numpy"
        return (f"<vkbands.Bands arity={self.arity} L={self.levels} batch={self.batch_shape} "
                f"spatial={self.spatial_shape} ({kind})>")


def decompose(x, arity=3, dims=None) -> Bands:
    """Tree-Haar band decomposition of ``x`` (SPEC §2): see :class:`Bands`.

    ``x``: ``(N,)``, ``(H, W)``, ``(B, N)`` with ``dims=1``, ``(B, H, W)``; NumPy or DeviceArray.
    """
    g = _Geometry(_shape_of(x), arity, dims)
    call = Call(x=x)
    X = _float32_input(call)
    ctx = call.ctx
    off = g.level_offsets(g.B)
    buf = ctx.empty((max(off[-1], 1),), np.float32)
    en = ctx.empty(g.batch_shape + (g.L + 1,), np.float32)
    try:
        if g.B:
            _plan(ctx, g.spatial, g.p, g.B).record_decompose(call.rec, X, buf, en)
        call.result()
        if call.host:
            bands = Bands(g, buf.numpy()[:off[-1]], en.numpy())
            buf.close(), en.close()
            return bands
    except BaseException:
        call.close()
        buf.close(), en.close()
        raise
    return Bands(g, buf, en)


def reconstruct(bands: Bands):
    """The exact inverse of :func:`decompose`: ``x = U^L c + sum_l U^l d^(l)`` (shape of x)."""
    if not isinstance(bands, Bands):
        raise TypeError(f"bands must be a vkbands.bands.Bands (from decompose), got {type(bands).__name__}")
    bands._require_open()
    return bands._synth(0, bands.levels, True)


def leakage(x_or_bands, arity=3, dims=None):
    """Normalised Gram matrix ``G[k, l] = <D_k, D_l> / (||D_k|| ||D_l||)`` of the bands
    ``[D^(0), ..., D^(L-1), U^L c]`` summed over space and batch: ``(L+1, L+1)`` NumPy float64.

    Computed on the host in float64 from the (float32) bands at their own resolution
    (``<U^k a, U^l b> = p**(k*dims) <a, U^(l-k) b>``), so it measures the orthogonality of what the
    GPU produced. A band whose norm is below ``1e-6`` of the total (zero up to float32 round-off)
    gets a zero row and column and a 1 on the diagonal (as ``vkbands.reference.leakage``, with a
    float32 threshold). ``arity``/``dims`` are ignored when Bands are given.
    """
    own = not isinstance(x_or_bands, Bands)
    bands = decompose(x_or_bands, arity, dims) if own else x_or_bands
    try:
        details, c = bands.numpy()
    finally:
        if own:
            bands.close()
    p, d, L = bands.arity, bands.dims, bands.levels
    top = np.asarray(c, np.float64).reshape(bands.batch_shape + tuple(bands._geo.top_shape))
    parts = [np.asarray(a, np.float64) for a in details] + [top]
    G = np.zeros((L + 1, L + 1))
    for k in range(L + 1):
        for l in range(k, L + 1):
            up = R.expand(parts[l], p, l - k, d) if l > k else parts[l]
            G[k, l] = G[l, k] = float(p) ** (k * d) * np.sum(parts[k] * up)
    norm = np.sqrt(np.maximum(np.diag(G), 0.0))
    nz = norm > 1e-6 * np.sqrt(norm @ norm)
    out = np.zeros_like(G)
    out[np.ix_(nz, nz)] = G[np.ix_(nz, nz)] / np.outer(norm[nz], norm[nz])
    np.fill_diagonal(out, 1.0)
    return out
