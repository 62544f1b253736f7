"""Band (sheet) decomposition on the GPU: tree-Haar for any arity, 1-D and 2-D, batched (SPEC §1-2).

Public API (NumPy in -> NumPy out; device arrays in -> device arrays out; inside
``with ctx.recorder():`` the functions only record, as everywhere in vkbands):

- ``decompose(x, arity=3, dims=None, levels=None) -> Bands``; ``x`` is ``(N,)``, ``(H, W)``, ``(B, N)``
  (``dims=1``), ``(B, H, W)`` (any number of leading batch axes), of any size: ``levels`` defaults to
  the largest L with ``p**L`` dividing every spatial axis (SPEC §1; L = 0 when none does: the coarse
  grid is the field itself).
  ``Bands`` has ``.arity``, ``.levels`` (L), ``.dims``, ``.coarse`` (batch shape when the size is
  ``p**L``; else the coarse grid ``batch + (H/p**L, W/p**L)``, as ``vkbands.reference.coarse``), ``.detail(l, leaf=False)``, ``.cumulative(l)``,
  ``.energies()``, ``.nonfinite``, ``.numpy() -> (details, coarse)`` (the structure of
  ``vkbands.reference.decompose``), ``.close()``.
- ``reconstruct(bands)``: ``x = U^L c + sum_l U^l d^(l)`` (exact inverse, from the stored bands).
- ``energies(x, arity=3, dims=None, out=None, levels=None)`` -> ``batch_shape + (L+1,)``: ``[E_0..E_{L-1}, E_c]``, the fast
  path: no band array is ever materialised.
- ``leakage(x_or_bands, arity=3, dims=None, levels=None)`` -> ``(L+1, L+1)`` NumPy float64 (a host diagnostic:
  it reads the bands back, so it cannot be recorded).

Sizes follow the conventions of ``vkbands.reference`` (``levels`` / ``split_shape`` / ``infer_dims``)
and are checked by ``vkbands._checks``: one set of error messages for the whole project.

NaN / Inf input (documented behaviour): nothing raises; non-finite values propagate through the
block means into every band that contains them, into the coarse part and into the energies of the
affected field (NaN). ``Bands.nonfinite`` (bool, batch shape) flags those fields; for ``energies``
check ``~np.isfinite(E).all(-1)``.

Recording entry points for the rollout engine and the viewer (no allocation per call)
--------------------------------------------------------------------------------------
``BandPlan(ctx, spatial_shape, arity, batch=1, levels=None)`` plans the passes for fields of ``spatial_shape``
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
come from ``bands_synth.comp``; a field with a coarse grid (rectangular, or any size that is not
p**L) sums its p^L x p^L squares (``bands_rowsum.comp``); L = 0 (no p divides every axis) runs a 1-D
plan over each field's values with their smallest prime factor and sums its energies into E_c.
``record_observables`` runs the energies passes compiled with ``STATS``: the first pass also takes
min / max / NaN-Inf flag of the leaves it loads, every pass reduces them with the sums.
Accuracy: each d is formed from its own node's children (no long cancellation) and every sum is a
short serial sum of such terms followed by trees; errors vs the float64 reference are ~1e-7 relative.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from vkbands.engine import DeviceArray, Kernel
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
_STATS_VALUES = 3         # min, max, nonfinite flag: reduced with the sums (mass comes from the coarse)
_STATS_ROW = 4            # [mass, min, max, nonfinite] per field
_ROWSUM_LOCAL = 64        # workgroup size of bands_rowsum


def _prod(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def _shape_of(x):
    return tuple(x.shape) if isinstance(x, DeviceArray) else tuple(np.shape(x))


class _Geometry:
    """Shapes of a batch of fields (SPEC names: p, L, B fields of N leaves, H x W; 1-D: H = 1),
    validated by vkbands.reference / vkbands._checks."""

    def __init__(self, shape, arity, dims, levels=None):
        self.p = _checks.arity(arity)
        self.batch_shape, self.spatial = R.split_shape(shape, dims)
        self.dims = len(self.spatial)
        self.L = R.levels(shape, self.p, self.dims, levels)
        self.B = _prod(self.batch_shape)
        self.N = _prod(self.spatial)
        self.H, self.W = (self.spatial if self.dims == 2 else (1, self.spatial[0]))
        self.level_sizes = []          # (rows, columns) of one field at levels 0..L
        rows, columns = self.H, self.W
        for _ in range(self.L + 1):
            self.level_sizes.append((rows, columns))
            rows, columns = (rows // self.p if self.dims == 2 else 1), columns // self.p
        top = self.level_sizes[self.L]
        self.top_shape = top if self.dims == 2 else (top[1],)
        self.coarse_values = top[0] * top[1]    # per field: 1 when the size is p**L, else a coarse grid

    def level_offsets(self, fields):
        """Element offsets of levels 0..L+1 in the levels layout of ``fields`` fields."""
        offsets = [0]
        for rows, columns in self.level_sizes:
            offsets.append(offsets[-1] + fields * rows * columns)
        return offsets


# ---------------------------------------------------------------------- the band schedule
class _Buffer(enum.Enum):
    """The buffers a pass reads or writes, by role; ``BandPlan._record`` binds each to a DeviceArray."""
    FIELD = "the fields x"
    PYRAMID = "levels 1..L of one field (record_sheets)"
    SCRATCH = "tile means and energy partials passed between passes"
    OUT = "the energies row"
    BANDS = "d^(0..L-1) and c in the levels layout (record_decompose)"
    STATS = "the [mass, min, max, nonfinite] row (record_observables)"
    LEVEL = "a level-a grid and its partials, written by a step kernel (record_observables_from)"


@dataclass(frozen=True)
class _Products:
    """What a schedule writes besides the energies; at most one flag is set."""
    stats: bool = False      # [mass, min, max, nonfinite] per field: bands_pyramid.comp with STATS
    pyramid: bool = False    # levels 1..L of the field (WRITE_PYR)
    bands: bool = False      # d^(0..L-1) at own resolution and c (WRITE_BANDS)


_ENERGIES, _OBSERVABLES = _Products(), _Products(stats=True)
_SHEET_PYRAMID, _DECOMPOSITION = _Products(pyramid=True), _Products(bands=True)


@dataclass(frozen=True)
class _RowsumPass:
    """Rectangular fields: ``bands_rowsum.comp`` adds the energies (and combines the statistics) of
    the p^L x p^L squares of every field, from scratch into the output rows."""
    kernel: Kernel
    groups: tuple
    push: dict               # nb, r, src_off (and stats_src_off); out_off / stats_off come at recording
    stats: bool


@dataclass(frozen=True)
class _PyramidPass:
    """One dispatch of ``bands_pyramid.comp``: ``levels`` levels of every tile, starting at ``first``.

    ``push`` holds the push constants known when planning; ``BandPlan._record`` fills in the
    offsets of the recording (the field's, the output row's) for the passes that read the fields
    or write the output rows. ``then`` is the rowsum that finishes a field with a coarse grid (final pass)."""
    kernel: Kernel
    groups: tuple
    push: dict
    source: _Buffer          # binding 0: the level-``first`` grid
    dest: _Buffer            # binding 2: the tile means (or pyramid levels)
    partials_out: _Buffer    # binding 3: per-tile energy partials, or the energies
    bands: _Buffer           # binding 4
    stats: _Buffer | None    # binding 5 (STATS kernels only)
    first: int
    levels: int
    then: _RowsumPass | None = None
    partials_in: _Buffer = _Buffer.SCRATCH   # binding 1: the previous pass's partials

    @property
    def bindings(self):
        """The buffer roles of bindings 0..4 (and 5 for STATS kernels), in the shader's order."""
        roles = (self.source, self.partials_in, self.dest, self.partials_out, self.bands)
        return roles + ((self.stats,) if self.stats is not None else ())


class _PassSpan(NamedTuple):
    """The levels one pass reduces (the shader's NPREV = first, K = levels, M = in_registers)."""
    first: int               # the level the pass reads
    levels: int              # K: levels reduced
    in_registers: int        # M: of which per invocation in registers
    final: bool              # the pass reaches level L

    @property
    def values(self):
        """Energy sums reduced per tile (NV): the previous planes, this pass's, and E_c when final."""
        return self.first + self.levels + int(self.final)


class _ScratchLayout:
    """Consecutive regions of one scratch buffer, handed out in planning order."""

    def __init__(self):
        self.size = 0

    def take(self, floats):
        offset, self.size = self.size, self.size + floats
        return offset


class BandPlan(Owner):
    """Planned band passes for fields of ``spatial_shape`` with ``batch`` members; owns its scratch.

    See the module docstring for the contracts of :meth:`record_energies` and :meth:`record_sheets`.
    """

    def __init__(self, ctx, spatial_shape, arity, batch=1, levels=None):
        spatial = tuple(int(n) for n in spatial_shape)
        if len(spatial) not in (1, 2):
            raise ValueError(f"spatial_shape must be (N,) or (H, W), got {spatial_shape!r}")
        batch = _checks.integer("batch", batch, 1)
        self.ctx = ctx
        self.geo = geo = _Geometry(spatial, arity, len(spatial), levels)
        self.arity, self.levels, self.dims, self.batch = geo.p, geo.L, geo.dims, batch
        self.spatial_shape = spatial
        # energies schedule (batch fields) and its scratch; the others are planned on first use
        self._energy_sched, scratch_floats = self._schedule(self.batch, _ENERGIES)
        self._scratch = ctx.empty((max(scratch_floats, 1),), np.float32)
        self._sheet_sched = self._sheet_pyr = self._sheet_scratch = None
        self._obs_sched = self._obs_scratch = None
        self._decomp_sched = self._decomp_scratch = None
        self._sheets_kernel = ctx.kernel("bands_sheets.comp", spec={
            "LOCAL_X": _ELEMENTWISE_LOCAL, "P": geo.p, "DIMS": geo.dims})
        self._flat = self._flat_rows = self._flat_sum = None
        if geo.L == 0:
            self._plan_no_levels()

    def _plan_no_levels(self):
        """L = 0 (no p divides every axis; SPEC 1): the only band is the coarse grid, the field itself,
        and E_c = sum(x**2). The passes of a 1-D plan over the N values of each field with their
        smallest prime factor q give energies summing to sum(x**2) and the same statistics; a
        ``bands_rowsum.comp`` with NV = 1 adds each field's L'+1 energies into its E_c."""
        n = self.geo.N
        if n < 2:
            raise ValueError(f"spatial_shape {self.spatial_shape}: a field of one value has no band pass")
        q = next(d for d in range(2, n + 1) if n % d == 0)
        self._flat = BandPlan(self.ctx, (n,), q, batch=self.batch)
        self._flat_rows = self.ctx.empty((self.batch * (self._flat.levels + 1),), np.float32)
        self._flat_sum = self.ctx.kernel("bands_rowsum.comp", spec={"LOCAL_X": _ROWSUM_LOCAL, "NV": 1})

    def _record_no_levels(self, rec, x, out, out_off, stats_out=None, stats_off=0, field_off=0, field_stride=None):
        """L = 0: E_c of every field into ``out`` at ``out_off`` (and the statistics row at ``stats_off``;
        the fields at ``field_off`` + b * ``field_stride`` of x)."""
        flat = self._flat
        buffers = {_Buffer.FIELD: x, _Buffer.OUT: self._flat_rows}
        if stats_out is None:
            flat._record(rec, flat._energy_sched, {**buffers, _Buffer.SCRATCH: flat._scratch})
        else:
            if flat._obs_sched is None:
                flat._obs_sched, scratch_floats = flat._schedule(flat.batch, _OBSERVABLES)
                flat._obs_scratch = flat.ctx.empty((max(scratch_floats, 1),), np.float32)
            flat._record(rec, flat._obs_sched, {**buffers, _Buffer.SCRATCH: flat._obs_scratch, _Buffer.STATS: stats_out},
                         stats_off=stats_off, field_off=field_off, field_stride=field_stride)
        rec.dispatch(self._flat_sum, self._flat_sum.grid(self.batch), self._flat_rows, out,
                     push={"nb": self.batch, "r": flat.levels + 1, "src_off": 0, "out_off": out_off})

    # ------------------------------------------------------------------ planning
    def _threads(self, micro_tiles, tiles, shared_floats, values):
        """(invocations per tile, tiles per workgroup) for a pass with ``micro_tiles`` micro-tiles per
        tile, ``tiles`` tiles, ``shared_floats`` shared levels per tile and ``values`` reduced per tile.
        GPUs: up to 256 invocations per tile, small tiles packed side by side up to 256 per
        workgroup. CPU devices: _CPU_THREADS (few invocations per tile and a few tiles per
        workgroup: lavapipe runs a workgroup as SIMD-8 chunks that switch at every barrier)."""
        cpu = str(self.ctx.info.get("type", "")).lower() == "cpu"
        max_invocations = min(256, int(self.ctx.limits.maxComputeWorkGroupInvocations))
        if cpu:
            per_tile, per_group = min(_CPU_THREADS[0], _pow2_at_least(micro_tiles)), _CPU_THREADS[1]
        else:
            per_tile = min(max_invocations, _pow2_at_least(micro_tiles))
            per_group = max(1, max_invocations // per_tile)
        shared_limit = int(self.ctx.limits.maxComputeSharedMemorySize) // 4
        shared_per_tile = shared_floats + values * per_tile + values * min(per_tile, 8)
        return per_tile, max(1, min(per_group, tiles, shared_limit // shared_per_tile,
                                    max_invocations // per_tile))

    def _register_levels(self):
        """Levels each invocation reduces in registers: largest m with p**(m*dims) <= _MICRO_MAX[dims]."""
        geo = self.geo
        cap = _MICRO_MAX[geo.dims] if isinstance(_MICRO_MAX, dict) else _MICRO_MAX
        levels = 1
        while levels < geo.L and geo.p ** ((levels + 1) * geo.dims) <= cap:
            levels += 1
        return levels

    def _levels_per_pass(self, in_registers, extra_values=0):
        """Levels per pass: ``in_registers`` plus as many shared-memory levels as keep the micro-tiles
        of a tile <= _NODE_MAX and the shared memory within the device limit (``extra_values``:
        statistics reduced alongside the L+1 energies)."""
        geo = self.geo
        shared_limit = int(self.ctx.limits.maxComputeSharedMemorySize) // 4
        in_shared = 0
        while True:
            micro_tiles = geo.p ** ((in_shared + 1) * geo.dims)
            shared_floats = sum(geo.p ** (i * geo.dims) for i in range(in_shared + 2))
            per_tile = min(256, _pow2_at_least(micro_tiles))   # the most invocations per tile any policy uses
            if (micro_tiles > _NODE_MAX
                    or shared_floats + (geo.L + 1 + extra_values) * (per_tile + 8) > shared_limit):
                return in_registers + in_shared
            in_shared += 1

    def _pass_spans(self, extra_values, start=0):
        """The level spans of the passes: as many levels per pass as fit, the last pass reaching L
        (from level ``start``)."""
        geo = self.geo
        in_registers = self._register_levels()
        per_pass = self._levels_per_pass(in_registers, extra_values)
        first, ranges = start, []
        while first < geo.L:
            levels = min(per_pass, geo.L - first)
            ranges.append(_PassSpan(first, levels, min(in_registers, levels), first + levels == geo.L))
            first += levels
        return ranges

    def _pyramid_kernel(self, span: _PassSpan, tiles, products: _Products):
        """(kernel, workgroups) of ``bands_pyramid.comp`` for the pass ``span`` over ``tiles`` tiles."""
        p, dims = self.geo.p, self.geo.dims
        tile = p ** span.levels
        micro_tiles = p ** ((span.levels - span.in_registers) * dims)
        shared_floats = sum(p ** (i * dims) for i in range(span.levels - span.in_registers + 1))
        extra_values = _STATS_VALUES if products.stats else 0
        per_tile, per_group = self._threads(micro_tiles, tiles, shared_floats, span.values + extra_values)
        spec = {"LOCAL_X": per_tile * per_group, "LPT": per_tile, "TPW": per_group, "P": p, "DIMS": dims,
                "K": span.levels, "M": span.in_registers, "NPREV": span.first, "FINAL": int(span.final),
                "WRITE_PYR": int(products.pyramid), "WRITE_BANDS": int(products.bands), "C": p ** dims,
                "T": tile, "SM": p ** span.in_registers, "CM": p ** (span.in_registers * dims), "NM": micro_tiles,
                "SH": shared_floats, "NV": span.values}
        defines = {"STATS": 1} if products.stats else {}
        if span.first == 0 and p % 2 == 0:   # leaves in vec2 pairs: N, member offsets and micro-tile columns are even
            defines["PAIRS"] = 1
        kernel = self.ctx.kernel("bands_pyramid.comp", spec=spec, defines=defines or None)
        return kernel, kernel.grid(-(-tiles // per_group))

    def _rowsum_pass(self, fields, partials_off, stats_partials_off):
        """The rowsum that adds the squares' energies (and statistics) of each field with a coarse grid."""
        stats = stats_partials_off is not None
        kernel = self.ctx.kernel("bands_rowsum.comp", spec={"LOCAL_X": _ROWSUM_LOCAL, "NV": self.geo.L + 1},
                                 defines={"STATS": 1} if stats else None)
        push = {"nb": fields, "r": self.geo.coarse_values, "src_off": partials_off}
        if stats:
            push["stats_src_off"] = stats_partials_off
        return _RowsumPass(kernel, kernel.grid(fields), push, stats)

    def _schedule(self, fields, products: _Products, start=0):
        """The passes for ``fields`` fields and the scratch floats they need: ``(passes, floats)``.

        Every pass reduces its level span of every tile. A pass before the last writes the tile
        means (its grid for the next pass) and the per-tile energy partials to scratch (with
        ``products.pyramid`` the means are the pyramid levels instead); the last pass writes the
        energies to the output rows, or, for a field with a coarse grid, one row per p^L x p^L square to
        scratch, which its ``then`` rowsum adds up. ``start`` > 0: the first pass reads a level-``start``
        grid and its partials from one LEVEL buffer (grid, then the planes; record_observables_from)."""
        geo = self.geo
        level_offsets = geo.level_offsets(fields)
        scratch = _ScratchLayout()
        passes = []
        rows, columns = geo.level_sizes[start]
        for span in self._pass_spans(_STATS_VALUES if products.stats else 0, start):
            tile = geo.p ** span.levels
            tile_rows, tile_columns = (rows // tile if geo.dims == 2 else 1), columns // tile
            tiles = fields * tile_rows * tile_columns
            kernel, groups = self._pyramid_kernel(span, tiles, products)
            previous = passes[-1] if passes else None
            from_level = previous is None and start > 0
            push = {"nb": fields, "h": rows, "w": columns, "L": geo.L, "src_bstride": rows * columns,
                    "src_off": 0 if from_level else self._source_offset(span, previous, level_offsets, products),
                    "pin_off": previous.push["pout_off"] if previous else fields * rows * columns * from_level,
                    "bands_off": level_offsets[span.first]}
            roles, offsets = self._pass_outputs(span, fields, tiles, products, level_offsets, scratch)
            if from_level:
                roles["partials_in"] = _Buffer.LEVEL
            passes.append(_PyramidPass(kernel, groups, {**push, **offsets},
                                       source=previous.dest if previous else (_Buffer.LEVEL if from_level else _Buffer.FIELD),
                                       bands=_Buffer.BANDS if products.bands else _Buffer.SCRATCH,
                                       first=span.first, levels=span.levels, **roles))
            rows, columns = tile_rows, tile_columns
        return passes, scratch.size

    @staticmethod
    def _source_offset(span, previous, level_offsets, products):
        """Where the pass ``span`` reads its level-``first`` grid."""
        if previous is None:
            return 0                                            # the fields (offset given at recording)
        if products.pyramid:
            return level_offsets[span.first] - level_offsets[1]  # in the pyramid the previous passes wrote
        return previous.push["dst_off"]                         # the previous pass's tile means

    def _pass_outputs(self, span, fields, tiles, products, level_offsets, scratch):
        """Where the pass ``span`` writes: ``(roles, offsets)`` with the buffer roles ``dest``,
        ``partials_out``, ``stats`` and the rowsum ``then``, and the push constants ``dst_off``,
        ``pout_off`` (and ``stats_off``). Scratch is taken in this order: tile means, then partials
        (the last pass of a field with a coarse grid: the squares' energies, then their statistics)."""
        extra_values = _STATS_VALUES if products.stats else 0
        if products.pyramid:
            dest, offsets = _Buffer.PYRAMID, {"dst_off": level_offsets[span.first + 1] - level_offsets[1]}
        else:
            dest, offsets = _Buffer.SCRATCH, {"dst_off": 0 if span.final else scratch.take(tiles)}
        stats = _Buffer.SCRATCH if products.stats else None
        if products.stats:
            offsets["stats_off"] = 0
        rowsum = None
        if not span.final:
            partials_out = _Buffer.SCRATCH
            offsets["pout_off"] = scratch.take(tiles * (span.values + extra_values))
        elif self.geo.coarse_values > 1:   # a coarse grid: energies per square, then the rowsum
            partials_out = _Buffer.SCRATCH
            offsets["pout_off"] = scratch.take(tiles * span.values)
            if products.stats:
                offsets["stats_off"] = scratch.take(tiles * _STATS_ROW)
            rowsum = self._rowsum_pass(fields, offsets["pout_off"], offsets["stats_off"] if products.stats else None)
        else:
            partials_out, offsets["pout_off"] = _Buffer.OUT, 0
            if products.stats:
                stats = _Buffer.STATS
        return dict(dest=dest, partials_out=partials_out, stats=stats, then=rowsum), offsets

    # ------------------------------------------------------------------ recording
    def _record(self, rec, passes, buffers, field_off=0, out_off=0, stats_off=0, field_stride=None):
        """Record ``passes`` with their buffer roles bound to ``buffers`` ({_Buffer: DeviceArray});
        ``field_off``, ``out_off``, ``stats_off``: element offsets of the first field, the energies
        row and the statistics row of this recording; ``field_stride``: elements from one field to the
        next (default N)."""
        for step in passes:
            push = dict(step.push)
            if step.source is _Buffer.FIELD:
                push["src_off"], push["src_bstride"] = field_off, (self.geo.N if field_stride is None else field_stride)
            if step.partials_out is _Buffer.OUT:
                push["pout_off"] = out_off
            if step.stats is _Buffer.STATS:
                push["stats_off"] = stats_off
            rec.dispatch(step.kernel, step.groups, *(buffers[role] for role in step.bindings), push=push)
        rowsum = passes[-1].then
        if rowsum is not None:
            push = dict(rowsum.push, out_off=out_off)
            bound = [buffers[_Buffer.SCRATCH], buffers[_Buffer.OUT]]
            if rowsum.stats:
                push["stats_off"] = stats_off
                bound.append(buffers[_Buffer.STATS])
            rec.dispatch(rowsum.kernel, rowsum.groups, *bound, push=push)

    def _check_array(self, name, array, need, multiple=False):
        if not isinstance(array, DeviceArray):
            raise TypeError(f"{name} must be a DeviceArray, got {type(array).__name__}")
        if array.ctx is not self.ctx:
            raise ValueError(f"{name}: device array belongs to another Context")
        if array.dtype != np.float32:
            raise TypeError(f"{name}: dtype {array.dtype} not supported; allowed: float32")
        ok = (array.size % need == 0 and array.size > 0) if multiple else array.size == need
        if not ok:
            what = f"a multiple of {need}" if multiple else f"{need}"
            raise ValueError(f"{name}: has {array.size} elements (shape {array.shape}); needs {what}")

    def record_energies(self, rec, x, out, row: int = 0):
        """Record ``[E_0..E_{L-1}, E_c]`` of every field of ``x`` (batch, *spatial) into row ``row``
        of ``out`` viewed as ``(rows, batch, L+1)`` float32."""
        self._require_open()
        geo = self.geo
        self._check_array("x", x, self.batch * geo.N)
        per_row = self.batch * (geo.L + 1)
        self._check_array("out", out, per_row, multiple=True)
        rows = out.size // per_row
        row = _checks.integer("row", row, 0, rows - 1, f"out holds {rows} rows of {self.batch} x {geo.L + 1}")
        if geo.L == 0:
            return self._record_no_levels(rec, x, out, row * per_row)
        self._record(rec, self._energy_sched, {_Buffer.FIELD: x, _Buffer.SCRATCH: self._scratch, _Buffer.OUT: out},
                     out_off=row * per_row)

    def record_observables(self, rec, x, energies_out, stats_out, row: int = 0, *, field_offset: int = 0,
                           field_stride: int | None = None):
        """Record the observables of SPEC §5 of every field of ``x`` (batch, *spatial) in one read of
        the field: ``[E_0..E_{L-1}, E_c]`` into row ``row`` of ``energies_out`` (viewed as ``(rows,
        batch, L+1)``) and ``[mass, min, max, nonfinite]`` into row ``row`` of ``stats_out`` (viewed
        as ``(rows, batch, 4)``), all float32. The passes are those of :meth:`record_energies`
        (``bands_pyramid.comp`` with ``STATS``): min / max are over the finite values (+Inf / -Inf
        when there are none), ``nonfinite`` is 1.0 when any value is NaN/Inf, else 0.0, and mass is
        ``N * c`` (the coarse mean times the leaf count: a tree sum; NaN/Inf in a non-finite field).

        ``field_stride`` (elements, default N) and ``field_offset``: field b is the N values at
        ``field_offset + b * field_stride`` of ``x`` (which then holds ``batch * field_stride`` values),
        e.g. the v of every member of a Gray-Scott state (B, 2, H, W): offset N, stride 2N. The same
        passes run (bit for bit the values of a contiguous copy of those fields)."""
        self._require_open()
        geo = self.geo
        stride = geo.N if field_stride is None else _checks.integer("field_stride", field_stride, geo.N)
        field_offset = _checks.integer("field_offset", field_offset, 0, stride - geo.N)
        reader = self._flat if geo.L == 0 else self
        if reader.arity % 2 == 0 and (field_offset % 2 or stride % 2):   # the first pass loads vec2 pairs
            raise ValueError(f"field_offset {field_offset}, field_stride {stride}: with an even arity both "
                             "must be even")
        self._check_array("x", x, self.batch * stride)
        per_row = self.batch * (geo.L + 1)
        stats_per_row = self.batch * _STATS_ROW
        self._check_array("energies_out", energies_out, per_row, multiple=True)
        self._check_array("stats_out", stats_out, stats_per_row, multiple=True)
        rows = min(energies_out.size // per_row, stats_out.size // stats_per_row)
        row = _checks.integer("row", row, 0, rows - 1,
                              f"energies_out / stats_out hold {rows} rows of {self.batch} fields")
        if geo.L == 0:
            return self._record_no_levels(rec, x, energies_out, row * per_row, stats_out, row * stats_per_row,
                                          field_off=field_offset, field_stride=stride)
        if self._obs_sched is None:
            self._obs_sched, scratch_floats = self._schedule(self.batch, _OBSERVABLES)
            self._obs_scratch = self.ctx.empty((max(scratch_floats, 1),), np.float32)
        self._record(rec, self._obs_sched, {_Buffer.FIELD: x, _Buffer.SCRATCH: self._obs_scratch,
                                            _Buffer.OUT: energies_out, _Buffer.STATS: stats_out},
                     out_off=row * per_row, stats_off=row * stats_per_row, field_off=field_offset,
                     field_stride=stride)

    def level_floats(self, first: int) -> int:
        """Floats of the LEVEL buffer :meth:`record_observables_from` reads at level ``first``: the
        level-``first`` grid of every field, then ``first`` energy planes and 3 statistics planes
        (min, max, NaN/Inf flag) of one value per grid value (bands_pyramid.comp's NPREV layout)."""
        rows, columns = self.geo.level_sizes[first]
        return self.batch * rows * columns * (1 + first + _STATS_VALUES)

    def record_observables_from(self, rec, level, energies_out, stats_out, row: int = 0, *, first: int):
        """:meth:`record_observables` from a level-``first`` grid that a step kernel already wrote
        with its partials (``level``: :meth:`level_floats` floats): the passes of the same schedule
        from level ``first`` on (levels 0..first-1 were reduced by the writer; energy sums in another
        order: equal to float32 round-off, not bit for bit). Needs 1 <= first < L."""
        self._require_open()
        geo = self.geo
        first = _checks.integer("first", first, 1, geo.L - 1)
        self._check_array("level", level, self.level_floats(first))
        per_row, stats_per_row = self.batch * (geo.L + 1), self.batch * _STATS_ROW
        self._check_array("energies_out", energies_out, per_row, multiple=True)
        self._check_array("stats_out", stats_out, stats_per_row, multiple=True)
        rows = min(energies_out.size // per_row, stats_out.size // stats_per_row)
        row = _checks.integer("row", row, 0, rows - 1,
                              f"energies_out / stats_out hold {rows} rows of {self.batch} fields")
        scheds = self.__dict__.setdefault("_from_scheds", {})
        if first not in scheds:
            sched, scratch_floats = self._schedule(self.batch, _OBSERVABLES, start=first)
            scheds[first] = (sched, self.ctx.empty((max(scratch_floats, 1),), np.float32))
        sched, scratch = scheds[first]
        self._record(rec, sched, {_Buffer.LEVEL: level, _Buffer.SCRATCH: scratch, _Buffer.OUT: energies_out,
                                  _Buffer.STATS: stats_out}, out_off=row * per_row, stats_off=row * stats_per_row)

    def record_sheets(self, rec, x, out, member: int = 0):
        """Record the ``(2L+1, *spatial)`` panel stack ``[s^(0..L), D^(0..L-1)]`` of field
        ``member`` of ``x`` into ``out``."""
        self._require_open()
        geo = self.geo
        self._check_array("x", x, self.batch * geo.N)
        self._check_array("out", out, (2 * geo.L + 1) * geo.N)
        member = _checks.integer("member", member, 0, self.batch - 1)
        if geo.L == 0:          # one panel: s^(0) = x (the sheets kernel reads no pyramid level)
            kernel = self._sheets_kernel
            rec.dispatch(kernel, kernel.grid(-(-geo.N // kernel.local_size[0])), x, self._scratch, out,
                         push={"H": geo.H, "W": geo.W, "L": 0, "src_off": member * geo.N})
            return
        if self._sheet_sched is None:
            self._sheet_sched, scratch_floats = self._schedule(1, _SHEET_PYRAMID)
            offsets = geo.level_offsets(1)
            self._sheet_pyr = self.ctx.empty((max(offsets[-1] - offsets[1], 1),), np.float32)
            # the final pass's energies of the member are not needed: they land in scratch too
            self._sheet_scratch = self.ctx.empty((scratch_floats + geo.coarse_values * (geo.L + 1),), np.float32)
            self._sheet_out_off = scratch_floats
        self._record(rec, self._sheet_sched, {_Buffer.FIELD: x, _Buffer.PYRAMID: self._sheet_pyr,
                                              _Buffer.SCRATCH: self._sheet_scratch, _Buffer.OUT: self._sheet_scratch},
                     field_off=member * geo.N, out_off=self._sheet_out_off)
        kernel = self._sheets_kernel
        rec.dispatch(kernel, kernel.grid(-(-geo.N // kernel.local_size[0])), x, self._sheet_pyr, out,
                     push={"H": geo.H, "W": geo.W, "L": geo.L, "src_off": member * geo.N})

    def record_decompose(self, rec, x, bands, energies_out):
        """Record the full decomposition of all fields of ``x`` into ``bands`` (levels layout:
        d^(0..L-1) at own resolution, then c; ``Bands``' storage) and ``energies_out`` (batch, L+1):
        the energies passes, also writing every detail from the registers that formed it."""
        self._require_open()
        geo = self.geo
        self._check_array("x", x, self.batch * geo.N)
        self._check_array("bands", bands, geo.level_offsets(self.batch)[-1])
        self._check_array("energies_out", energies_out, self.batch * (geo.L + 1))
        if geo.L == 0:          # the coarse grid is the field itself
            rec.copy(x, bands)
            return self._record_no_levels(rec, x, energies_out, 0)
        if self._decomp_sched is None:
            self._decomp_sched, scratch_floats = self._schedule(self.batch, _DECOMPOSITION)
            self._decomp_scratch = self.ctx.empty((max(scratch_floats, 1),), np.float32)
        self._record(rec, self._decomp_sched, {_Buffer.FIELD: x, _Buffer.SCRATCH: self._decomp_scratch,
                                               _Buffer.OUT: energies_out, _Buffer.BANDS: bands})

    # ------------------------------------------------------------------ lifetime
    def _require_open(self):
        if self.closed:
            raise ValueError("this BandPlan is closed")

    def _close_now(self):
        for scratch in (self._scratch, self._sheet_pyr, self._sheet_scratch, self._obs_scratch, self._decomp_scratch,
                        self._flat_rows):
            if scratch is not None:
                scratch.close()
        if self._flat is not None:
            self._flat.close()
        for _, scratch in self.__dict__.get("_from_scheds", {}).values():
            scratch.close()

    def __repr__(self):
        return (f"<vkbands.BandPlan spatial={self.spatial_shape} arity={self.arity} L={self.levels} "
                f"batch={self.batch}>")


# ---------------------------------------------------------------------- cached plans
def _plan(ctx, spatial, p, batch, levels=None) -> BandPlan:
    """A plan per (spatial shape, arity, batch, levels), cached on the context (``Context.cache``) for
    its lifetime: its scratch may be referenced by recordings not yet submitted."""
    levels = R.levels(tuple(spatial), p, len(spatial), levels)
    key = ("vkbands.bands.BandPlan", tuple(spatial), int(p), int(batch), levels)
    return ctx.cache(key, lambda c: BandPlan(c, spatial, p, batch, levels))


def _float32_input(call, name="x"):
    array = call.arrays[name]
    if array.dtype != np.float32:
        call.close()
        raise TypeError(f"{name}: dtype {array.dtype} not supported; allowed: float32 (float64 is cast)")
    return array


# ---------------------------------------------------------------------- public functions
def energies(x, arity=3, dims=None, out=None, levels=None):
    """Band energies ``[E_0, ..., E_{L-1}, E_c]`` of every field of ``x``: ``batch_shape + (L+1,)``
    (``out``: a float32 DeviceArray of that shape to write into; it is returned).

    ``E_l = p**(l*dims) * sum(d^(l)**2)``, ``E_c = p**(L*dims) * sum(c**2)`` (c the coarse grid);
    Parseval: ``E.sum(-1) == sum(x**2)``. No band array is materialised (a few small scratch
    buffers, cached per shape). NaN/Inf in a field make its energies NaN/Inf.
    """
    geo = _Geometry(_shape_of(x), arity, dims, levels)
    call = Call(x=x)
    field = _float32_input(call)
    out = call.output(out, geo.batch_shape + (geo.L + 1,), np.float32)
    if geo.B:
        # batches over maxStorageBufferRange run in member ranges (aligned row views, no copy)
        fields, rows = field.reshape((geo.B,) + geo.spatial), out.reshape(geo.B, geo.L + 1)
        for start, stop in row_ranges(call.ctx, geo.B, geo.N * 4, (geo.L + 1) * 4, what="energies: x"):
            _plan(call.ctx, geo.spatial, geo.p, stop - start, geo.L).record_energies(
                call.rec, fields.rows(start, stop), rows.rows(start, stop))
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
    def _level_shape(self, level):
        rows, columns = self._geo.level_sizes[level]
        return self.batch_shape + ((rows, columns) if self.dims == 2 else (columns,))

    def _slice(self, level, shape):
        start, stop = self._offsets[level], self._offsets[level + 1]
        if not self.device:
            return self._buf[start:stop].reshape(shape).copy()
        call = Call(b=self._buf)
        out = call.ctx.empty(shape, np.float32)
        call.rec.copy(self._buf, out, nbytes=(stop - start) * 4, src_offset=start * 4)
        return call.result(out)

    def _synth(self, first, stop, with_coarse):
        """``sum_{first <= l < stop} D^(l)`` (plus ``U^L c`` when ``with_coarse``) at leaf resolution."""
        geo = self._geo
        call = Call(b=self._buf)
        out = call.empty(self.batch_shape + self.spatial_shape, np.float32)
        kernel = call.ctx.kernel("bands_synth.comp", spec={"LOCAL_X": _ELEMENTWISE_LOCAL, "P": geo.p,
                                                          "DIMS": geo.dims, "PER_INVOCATION": _PER_INVOCATION})
        per_group = kernel.local_size[0] * _PER_INVOCATION
        if geo.B:
            call.rec.dispatch(kernel, kernel.grid(-(-(geo.B * geo.N) // per_group)), call.arrays["b"], out,
                              push={"nb": geo.B, "H": geo.H, "W": geo.W, "L": geo.L, "l0": first, "l1": stop,
                                    "with_coarse": int(with_coarse), "out_off": 0})
        return call.result(out)

    def _require_open(self):
        if self.device and self._buf.closed:
            raise ValueError("these Bands are closed")

    # ------------------------------------------------------------------ public
    @property
    def coarse(self):
        """``c = A^(L)``: batch shape (a scalar for one field) when the size is ``p**L``, else the
        coarse grid ``batch + spatial // p**L`` (as ``vkbands.reference.coarse``)."""
        self._require_open()
        shape = self.batch_shape + (self._geo.top_shape if self._geo.coarse_values > 1 else ())
        coarse = self._slice(self.levels, shape)
        return coarse[()] if not self.device and coarse.ndim == 0 else coarse

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
        return ~np.isfinite(top.reshape(self.batch_shape + (self._geo.coarse_values,))).all(axis=-1)

    def numpy(self):
        """``(details, coarse)`` as NumPy float32, the structure of ``vkbands.reference.decompose``:
        ``details[l]`` = d^(l) at own resolution, ``coarse`` as :attr:`coarse`."""
        self._require_open()
        storage = self._buf.numpy() if self.device else self._buf
        details = [storage[self._offsets[level]:self._offsets[level + 1]].reshape(self._level_shape(level)).copy()
                   for level in range(self.levels)]
        shape = self.batch_shape + (self._geo.top_shape if self._geo.coarse_values > 1 else ())
        coarse = storage[self._offsets[self.levels]:].reshape(shape).copy()
        return details, (coarse[()] if coarse.ndim == 0 else coarse)

    def _close_now(self):
        """Free the device memory of device-backed Bands (``close()``: idempotent; NumPy-backed Bands
        hold no device memory)."""
        if self.device:
            for array in [self._buf, self._energies] + self._scratch:
                array.close()

    def _repr_png_(self):
        """Jupyter: the labelled sheet grid of the first field (vkbands.notebook.bands_png)."""
        from .notebook import bands_png
        return bands_png(self)

    def __repr__(self):
        kind = "device" if self.device else "numpy"
        return (f"<vkbands.Bands arity={self.arity} L={self.levels} batch={self.batch_shape} "
                f"spatial={self.spatial_shape} ({kind})>")


def decompose(x, arity=3, dims=None, levels=None, out=None) -> Bands:
    """Tree-Haar band decomposition of ``x`` (SPEC §2): see :class:`Bands`.

    ``x``: ``(N,)``, ``(H, W)``, ``(B, N)`` with ``dims=1``, ``(B, H, W)``; NumPy or DeviceArray.
    ``levels``: L (default the maximum, SPEC §1; 0..max). ``out``: device-backed Bands of the same
    shape, arity and levels (an earlier ``decompose`` of a DeviceArray) to write into; it is returned.
    """
    geo = _Geometry(_shape_of(x), arity, dims, levels)
    call = Call(x=x)
    field = _float32_input(call)
    ctx = call.ctx
    size = geo.level_offsets(geo.B)[-1]
    if out is not None:
        _check_bands_out(out, geo, ctx, call)
        storage, energy_rows = out._buf, out._energies
    else:
        storage = ctx.empty((max(size, 1),), np.float32)
        energy_rows = ctx.empty(geo.batch_shape + (geo.L + 1,), np.float32)
    try:
        if geo.B:
            _plan(ctx, geo.spatial, geo.p, geo.B, geo.L).record_decompose(call.rec, field, storage, energy_rows)
        call.result()
        if out is not None:
            return out
        if call.host:
            bands = Bands(geo, storage.numpy()[:size], energy_rows.numpy())
            storage.close(), energy_rows.close()
            return bands
    except BaseException:
        call.close()
        if out is None:
            storage.close(), energy_rows.close()
        raise
    return Bands(geo, storage, energy_rows)


def _check_bands_out(out, geo, ctx, call):
    """``out=`` of decompose: open device-backed Bands of this geometry on this context."""
    ok = (isinstance(out, Bands) and out.device and not out.closed and out._buf.ctx is ctx
          and (out.batch_shape, out.spatial_shape, out.arity, out.levels)
          == (tuple(geo.batch_shape), tuple(geo.spatial), geo.p, geo.L))
    if not ok:
        call.close()
        got = (f"{type(out).__name__}" if not isinstance(out, Bands) else
               f"Bands batch={out.batch_shape} spatial={out.spatial_shape} arity={out.arity} L={out.levels}"
               f"{'' if out.device else ' (NumPy-backed)'}{' (closed)' if out.closed else ''}")
        raise ValueError(f"out: needs open device-backed Bands with batch={tuple(geo.batch_shape)} "
                         f"spatial={tuple(geo.spatial)} arity={geo.p} L={geo.L} on this context; got {got}")


def reconstruct(bands: Bands):
    """The exact inverse of :func:`decompose`: ``x = U^L c + sum_l U^l d^(l)`` (shape of x)."""
    if not isinstance(bands, Bands):
        raise TypeError(f"bands must be a vkbands.bands.Bands (from decompose), got {type(bands).__name__}")
    bands._require_open()
    return bands._synth(0, bands.levels, True)


def leakage(x_or_bands, arity=3, dims=None, levels=None):
    """Normalised Gram matrix ``G[k, l] = <D_k, D_l> / (||D_k|| ||D_l||)`` of the bands
    ``[D^(0), ..., D^(L-1), U^L c]`` summed over space and batch: ``(L+1, L+1)`` NumPy float64.

    Computed on the host in float64 from the (float32) bands at their own resolution
    (``<U^k a, U^l b> = p**(k*dims) <a, U^(l-k) b>``), so it measures the orthogonality of what the
    GPU produced. A band whose norm is below ``1e-6`` of the total (zero up to float32 round-off)
    gets a zero row and column and a 1 on the diagonal (as ``vkbands.reference.leakage``, with a
    float32 threshold). ``arity``/``dims`` are ignored when Bands are given.
    """
    own = not isinstance(x_or_bands, Bands)
    bands = decompose(x_or_bands, arity, dims, levels) if own else x_or_bands
    try:
        details, coarse = bands.numpy()
    finally:
        if own:
            bands.close()
    p, dims, L = bands.arity, bands.dims, bands.levels
    top = np.asarray(coarse, np.float64).reshape(bands.batch_shape + tuple(bands._geo.top_shape))
    parts = [np.asarray(detail, np.float64) for detail in details] + [top]
    gram = np.zeros((L + 1, L + 1))
    for k in range(L + 1):           # bands k <= l: <U^k a, U^l b> = p**(k*dims) <a, U^(l-k) b>
        for l in range(k, L + 1):
            expanded = R.expand(parts[l], p, l - k, dims) if l > k else parts[l]
            gram[k, l] = gram[l, k] = float(p) ** (k * dims) * np.sum(parts[k] * expanded)
    norm = np.sqrt(np.maximum(np.diag(gram), 0.0))
    nonzero = norm > 1e-6 * np.sqrt(norm @ norm)
    out = np.zeros_like(gram)
    out[np.ix_(nonzero, nonzero)] = gram[np.ix_(nonzero, nonzero)] / np.outer(norm[nonzero], norm[nonzero])
    np.fill_diagonal(out, 1.0)
    return out
