"""The systems a rollout can evolve (SPEC section 3): parameters, state shapes, and what one step records.

``make_system(ctx, name, shape, **params)`` returns a system object for a state of array ``shape``
(batched or not). Every system has:

- ``name``, ``arity``, ``dims``, ``levels`` (L), ``batch`` (B), ``spatial`` (the shape of one
  observed field), ``state_shape`` (the batched device state: ``(B, N)``, ``(B, H, W)`` or
  ``(B, 2, H, W)``), ``params`` (resolved, JSON-friendly), ``fused`` (observables computed inside
  the step kernel);
- ``new_obs(rows)`` -> an :class:`ObsBuffers` of ``rows`` observation rows;
- ``record(rec, state, n, every=0, snap_every=0, observe_first=False, snap_first=False, obs=None,
  snap=None)``: records ``n`` steps of ``state`` (a DeviceArray of ``state_shape``, updated in place)
  into the Recorder ``rec``. Observables of the state after local step k (1..n) go to the next row
  of ``obs`` when ``k % every == 0``; a copy of the state to the next row of ``snap`` (a DeviceArray
  ``(rows,) + state_shape``) when ``k % snap_every == 0``; ``observe_first``/``snap_first`` first
  record the incoming state into row 0;
- ``set_params(**params)`` (takes effect at the next ``record``), ``close()``.

Systems and their parameters:

- ``tree`` (SPEC 3.1): ``arity`` (3), ``rates`` (L factors, explicit) or the p-adic heat profile
  ``tau`` (1.0), ``alpha`` (1.0). 1-D ``(N,)`` / ``(B, N)`` (pass ``dims=1`` for a batch) or square 2-D.
- ``coupled`` (SPEC 3.2): the tree parameters plus ``eps`` (0.0), ``phi`` ("tanh" | "sign" |
  "square"), ``C`` (L x L in {-1, 0, 1}) or ``coupling_seed`` (0, for reference.coupling_matrix).
- ``heat`` (SPEC 3.3): ``alpha`` (0.2, stable for <= 0.25); fields ``(H, W)`` / ``(B, H, W)``.
- ``grayscott`` (SPEC 3.3): ``Du`` 0.16, ``Dv`` 0.08, ``F`` 0.035, ``k`` 0.065, ``dt`` 1.0, or
  ``preset`` (a name of reference.GRAYSCOTT_PRESETS; explicit F/k override it); state u then v:
  ``(2, H, W)`` / ``(B, 2, H, W)``. Its observables (energies, mass, min, max) are those of v, the
  pattern-forming species; the NaN/Inf flag covers u and v.

For heat and Gray-Scott ``arity`` (used for the band energies) defaults to 3 when H and W are powers
of 3, else 2.

Tree and coupled steps run fused (``step_tree.comp`` / ``step_coupled.comp``, body in
``tree_fused.glsl``): the band coefficients of each field stay in private memory for all the steps of a
dispatch, observables and snapshots are computed in the kernel, and the band state is kept in a device
buffer between dispatches (exact: no re-decomposition round-off). Layouts (``TreeSystem._layout``):

- REDUCE 1: a field's invocations are lanes of one subgroup, reduced with shuffles (p=3, L=6 -> 27
  invocations of 27 leaves in a 32-wide subgroup). Only in a pipeline that *requires* that subgroup
  width with full subgroups (VK_EXT_subgroup_size_control, ``ctx.subgroup_size_control``), checked
  once per context with ``subgroup_probe.comp`` built the same way; drivers pick a width per pipeline
  otherwise (Intel: SIMD8/16/32), so without that guarantee this layout is never used;
- REDUCE 0: one invocation per field (fields <= 1024 leaves), no communication at all;
- REDUCE 2: one workgroup per field with a shared-memory reduction (large fields; more than 6561
  leaves per invocation is refused with a ValueError; a 729 x 729 field runs).

``make_system(..., reduce=k)`` forces a layout (tests, benchmarks; a ValueError where the device or
the field cannot run it).

Every device gets its recordings split into dispatches of bounded work (``TreeSystem._dispatches``):
steps into several dispatches (the band state carries over exactly) and, for big batches, the fields
into slices. Bounds: a driver's loop-iteration cap (``ctx.loop_iteration_cap``: llvmpipe silently
leaves a shader invocation's loops after 65535 iterations), and everywhere a time budget, so that no
dispatch runs long enough for a GPU watchdog (TDR: VK_ERROR_DEVICE_LOST after ~2 s): see
``_SERIAL_BUDGET`` and ``_WORK_BUDGET``.
``invalidate()`` tells a tree/coupled system that its state buffer was written from outside.
"""
from __future__ import annotations

import math

import numpy as np

from . import reference as R
from ._owner import Owner

__all__ = ["SYSTEMS", "make_system", "ObsBuffers", "resolve_shape", "default_arity", "subgroup_size"]

SYSTEMS = ("tree", "coupled", "heat", "grayscott")
PHIS = ("tanh", "sign", "square")
_TREE_PARAMS = {"rates", "tau", "alpha"}
_COUPLED_PARAMS = _TREE_PARAMS | {"eps", "phi", "C", "coupling_seed"}
_HEAT_PARAMS = {"alpha"}
_GS_PARAMS = {"Du", "Dv", "F", "k", "dt", "preset"}
_GRID_RY = 8          # rows per invocation of the stencil kernels
_GRID_LOCAL = 64

# ---- Per-dispatch limits of the fused tree / coupled kernels (TreeSystem._dispatches), every device.
# Work is counted in the kernel's loop iterations (TreeSystem._loop_costs: an estimate from the
# shader's loops; one iteration is a few float operations on private arrays, which GPUs keep in
# registers or spill to cached local memory).
_LOOP_CAP_USE = 0.75    # of a driver's loop-iteration cap (llvmpipe 65535 -> 49151): the cost model is
                        # an estimate, a quarter is kept as margin (the old fixed budget was 50000)
_SERIAL_BUDGET = 1 << 18
# loop iterations ONE invocation runs per dispatch (its dependent chain: time even on an idle GPU).
# Chosen for <= ~50 ms at a pessimistic 200 ns per iteration (a local-memory round trip every
# iteration on a slow GPU); typical GPUs take 1-5 ns (0.3-1.3 ms), next to ~10 us per extra dispatch.
_WORK_BUDGET = 1 << 26
# loop iterations summed over a dispatch's invocations (throughput when the GPU is full). Chosen for
# <= ~70 ms on a slow integrated GPU (~1e9 such iterations/s: ~200 lanes at ~1 GHz, several
# operations and some local-memory traffic per iteration); a big discrete GPU (1e11-1e12/s) gets
# through it in 0.1-1 ms, so the extra dispatches cost it a few percent at most. Not measured on a
# GPU yet; well under the ~2 s of the usual watchdogs (Windows TDR, i915 hangcheck) either way.
_SLICE_INVOCATIONS = 1 << 11
# a batch slice keeps at least this many invocations: below what a slow GPU runs at once (~2k lanes)
# a dispatch's time is that of its longest invocation (bounded by _SERIAL_BUDGET), so smaller slices
# would only add dispatches (and leave a big GPU idler).
_MODE1_MAX_QM = 81      # REDUCE 1 chosen automatically only up to this many leaves per invocation
_MAX_QM = 6561          # leaves per invocation: private arrays beyond this are refused
_MODE1_LOCAL = 64       # REDUCE 1: workgroup size (whole subgroups; one subgroup when it is wider)


def _tree_costs(sp, mode, dims, decompose, coupled, mean=False):
    """(fixed, per_step, per_run, per_obs, per_snap) loop iterations of the fused tree kernel with
    specialisation ``sp`` (``decompose``: the dispatch starts from the leaves; ``coupled``: coupled
    steps, eps != 0), of the busiest invocation (``mean``: averaged over a field's invocations, for the
    work summed over them). Counted from the shader's loops; an estimate that errs high."""
    LOC, QM, M, L, TPF, UP, Q = sp["LOC"], sp["QM"], sp["M"], sp["L"], sp["TPF"], sp["L"] - sp["M"], sp["Q"]
    nat = (L + 1) if dims == 2 else 0
    per_snap = QM * (3 + nat) + LOC + 2 * M + 2 * UP + 4
    fixed = 2 * L + LOC + 2 * UP + 16 + (LOC + UP + 2) + per_snap          # coef load, coef + leaf store
    if decompose:
        fixed += QM * (1 + nat) + LOC * (Q + 4) + TPF + ((TPF * Q) // max(Q - 1, 1)) * (Q + 2) + 2 * UP + 32
    # reduction of the L + 3 partials: every invocation shuffles over the TPF lanes (REDUCE 1); in
    # shared memory (REDUCE 2) invocation k < L + 3 combines quantity k over the TPF invocations
    red = (L + 3) * (TPF + 2)
    if mean and mode == 2:
        red = (L + 3) * (1 + -(-min(L + 3, TPF) * (TPF + 2) // TPF))
    per_obs = LOC + 4 * M + 3 * UP + 2 * QM + red + 3 * L + 8
    per_step, per_run = LOC + UP, 2 * (LOC + UP + M) + 4
    if coupled:     # new leaves top-down, decomposition, chain (per step)
        per_step = 4 * LOC + 2 * QM + 2 * TPF + sp["UPS"] * (Q + 2) + 4 * UP + 4 * M + 16
        per_run += LOC + 2 * M + 2 * UP
    return fixed, per_step, per_run, per_obs, per_snap


def _probe_subgroups(ctx, local, required=None):
    """Run ``subgroup_probe.comp`` with a workgroup of ``local`` (requiring ``required``-wide full
    subgroups where given): ``(OR of sizes, subgroups, failed shuffles, non-contiguous invocations)``."""
    out = ctx.zeros((4,), np.uint32)
    try:
        k = ctx.kernel("subgroup_probe.comp", spec={"LOCAL_X": int(local)}, subgroup_size=required)
        with ctx.recorder() as rec:
            rec.dispatch(k, 1, out)
        return tuple(int(v) for v in out.numpy())
    finally:
        out.close()


def _measure_default_subgroup(ctx):
    limit = int(ctx.limits.maxComputeWorkGroupInvocations)
    size = _probe_subgroups(ctx, 1)[0]
    if size < 1 or size & (size - 1) or size > limit:
        return 1
    got, count, bad, _ = _probe_subgroups(ctx, size)     # is a workgroup of that size one subgroup?
    return size if (got == size and count == 1 and bad == 0) else 1


def subgroup_size(ctx) -> int:
    """The subgroup size a compute pipeline gets by default (``subgroup_probe.comp``, measured once per
    context with ``ctx.probe``: drivers may compile compute shaders to another width than the reported
    default); 1 when the device reports no subgroup shuffles in compute, a workgroup of that size is
    not one subgroup, or shuffles misbehave. Another pipeline may get another width: the tree kernel
    does not rely on this (see :func:`required_subgroup_works`)."""
    if not ctx.subgroup_shuffle:
        return 1
    return ctx.probe("vkbands.systems.subgroup_size", _measure_default_subgroup)


def required_subgroup_works(ctx, size, local) -> bool:
    """Whether a pipeline with a workgroup of ``local`` invocations that requires ``size``-wide full
    subgroups (VK_EXT_subgroup_size_control) gets exactly that: ``local / size`` subgroups of ``size``
    lanes with working shuffles. Measured once per context and (size, local)."""
    size, local = int(size), int(local)
    if not (ctx.subgroup_shuffle and ctx.subgroup_size_control
            and ctx.min_subgroup_size <= size <= ctx.max_subgroup_size and local % size == 0
            and local <= int(ctx.limits.maxComputeWorkGroupInvocations)):
        return False

    def measure(c):
        try:
            got, count, bad, _ = _probe_subgroups(c, local, required=size)
        except ValueError:
            return False
        return got == size and count == local // size and bad == 0
    return ctx.probe(("vkbands.systems.required_subgroup", size, local), measure)


def _power_of(n, p):
    while n % p == 0 and n > 1:
        n //= p
    return n == 1


def default_arity(spatial):
    """3 when every spatial size is a power of 3, else 2 (the arity used for 2-D band energies)."""
    return 3 if all(_power_of(n, 3) for n in spatial) else 2


def resolve_shape(system, shape, dims=None):
    """``(batched, B, spatial, dims)`` of a state of array ``shape`` for ``system``."""
    shape = tuple(int(n) for n in shape)
    if system not in SYSTEMS:
        raise ValueError(f"system={system!r}: choose one of {', '.join(SYSTEMS)}")
    if system in ("tree", "coupled"):
        batch, spatial = R.split_shape(shape, dims)
        if len(batch) > 1:
            raise ValueError(f"state shape {shape}: at most one batch axis (B, N) or (B, H, W)")
        if len(spatial) == 2 and spatial[0] != spatial[1]:
            raise ValueError(f"{system}: 2-D fields must be square (p**L x p**L), got {spatial}")
        return bool(batch), (batch[0] if batch else 1), spatial, len(spatial)
    if system == "heat":
        if len(shape) not in (2, 3):
            raise ValueError(f"heat: state must be (H, W) or (B, H, W), got shape {shape}")
        return len(shape) == 3, (shape[0] if len(shape) == 3 else 1), shape[-2:], 2
    if len(shape) not in (3, 4) or shape[-3] != 2:
        raise ValueError(f"grayscott: state must stack u then v: (2, H, W) or (B, 2, H, W), got shape {shape}")
    return len(shape) == 4, (shape[0] if len(shape) == 4 else 1), shape[-2:], 2


def _check_params(system, params, allowed):
    unknown = set(params) - allowed - {"arity"}
    if unknown:
        raise TypeError(f"{system}: unknown parameter(s) {sorted(unknown)}; allowed: {sorted(allowed | {'arity'})}")


def _finite(name, v, lo=-math.inf, hi=math.inf):
    v = float(v)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{name}={v!r}: must be finite and in [{lo}, {hi}]")
    return v


def make_system(ctx, system, shape, dims=None, **params):
    """The system object for a state of array ``shape`` (see the module docstring)."""
    batched, B, spatial, dims = resolve_shape(system, shape, dims)
    cls = {"tree": TreeSystem, "coupled": CoupledSystem, "heat": HeatSystem, "grayscott": GrayScottSystem}[system]
    return cls(ctx, B, spatial, dims, **params)


# ----------------------------------------------------------------------------- observation buffers
class ObsBuffers(Owner):
    """Device buffers for ``rows`` observation rows of ``B`` fields.

    Fused systems write one array ``(rows, B, L + 5)``: ``[E_0..E_{L-1}, E_c, mass, min, max,
    nonfinite]``; grid systems write ``energies (rows, F, L + 1)`` and ``stats (rows, F, 4)``
    ``[mass, min, max, nonfinite]`` for F observed fields (F = 2B for Gray-Scott: u and v), both from
    ``BandPlan.record_observables`` (one read of the fields per observation; min / max over the finite
    values, mass = N * coarse mean).
    ``read(n)`` returns the first n rows as a dict of NumPy arrays: ``energies (n, B, L+1)``,
    ``mass``, ``min``, ``max`` (n, B) float64 and ``nonfinite`` (n, B) bool.
    """

    def __init__(self, ctx, rows, B, L, fields=None, pick=None):
        self.rows, self.B, self.L = int(rows), int(B), int(L)
        self.pick = pick                     # for F = 2B: which of (u, v) to report
        if fields is None:
            self.fused = self._own(ctx.zeros((self.rows, B, L + 5)))
            self.energies = self.stats = None
        else:
            self.fused = None
            self.fields = fields
            self.energies = self._own(ctx.zeros((self.rows, fields, L + 1)))
            self.stats = self._own(ctx.zeros((self.rows, fields, 4)))

    def read(self, n=None):
        n = self.rows if n is None else int(n)
        if self.fused is not None:
            a = self.fused.numpy()[:n].astype(np.float64)
            L = self.L
            return dict(energies=a[..., :L + 1], mass=a[..., L + 1], min=a[..., L + 2], max=a[..., L + 3],
                        nonfinite=a[..., L + 4] > 0)
        E = self.energies.numpy()[:n].astype(np.float64)
        S = self.stats.numpy()[:n].astype(np.float64)
        flag = S[..., 3] > 0
        if self.pick is not None:
            k = self.fields // self.B
            E = E.reshape(n, self.B, k, -1)[:, :, self.pick]
            flag = flag.reshape(n, self.B, k).any(axis=2)
            S = S.reshape(n, self.B, k, 4)[:, :, self.pick]
        return dict(energies=E, mass=S[..., 0], min=S[..., 1], max=S[..., 2], nonfinite=flag)


def _check_buffers(every, snap_every, observe_first, snap_first, obs, snap):
    """The buffers a ``record`` call needs for the observations and snapshots it was asked for."""
    if (every or observe_first) and obs is None:
        raise ValueError("observables requested but no obs buffers given")
    if (snap_every or snap_first) and snap is None:
        raise ValueError("snapshots requested but no snapshot buffer given")


class _System(Owner):
    name = "?"
    fused = False

    def __init__(self, ctx, B, spatial, dims, **params):
        self.ctx, self.batch, self.spatial, self.dims = ctx, int(B), tuple(spatial), int(dims)
        self._dummy = None

    def _dummy_array(self):
        if self._dummy is None:
            self._dummy = self._own(self.ctx.zeros((4,)))
        return self._dummy

    def invalidate(self):
        """The state was written from outside (nothing cached for this system)."""

    def close(self):
        super().close()
        self._dummy = None

    def __repr__(self):
        return f"<vkbands {self.name} system B={self.batch} spatial={self.spatial} p={self.arity} L={self.levels}>"


# ----------------------------------------------------------------------------- tree and coupled
class TreeSystem(_System):
    """Tree diffusion (SPEC 3.1), fused multi-step kernel ``step_tree.comp`` (see the module docstring)."""
    name = "tree"
    fused = True
    shader = "step_tree.comp"
    allowed = _TREE_PARAMS

    def __init__(self, ctx, B, spatial, dims, arity=3, reduce=None, **params):
        super().__init__(ctx, B, spatial, dims)
        self.arity = R._check_arity(arity)
        self.levels = L = R.levels(self.spatial, self.arity, dims)
        self.state_shape = (self.batch,) + self.spatial
        self.n = int(np.prod(self.spatial))
        self._q = self.arity ** dims
        self._local = None
        self._spec = self._layout(ctx, reduce)
        self.kernel = None
        self._param_buf = None
        self._coef, self._coef_valid = None, False
        self.params, self._raw = {}, {}
        self.set_params(**params)

    def _layout(self, ctx, reduce=None):
        """step_tree.comp layout: TPF invocations per field, each holding QM = Q**M leaves; REDUCE mode.

        Tried in this order (``reduce`` forces one, a ValueError where it cannot run):

        - 1: a field's invocations are lanes of one subgroup, shuffle reductions, no barrier (the
          smallest M with 2 <= TPF <= a subgroup width the device can require, and at most 81 leaves
          per invocation; GPUs: p=3, L=6 -> 27 invocations of 27 leaves). Only where the pipeline can
          require that width with full subgroups and the probe confirms it (never on the strength of
          a default width: drivers choose it per pipeline);
        - 0: a small field (<= 1024 leaves) is held by one invocation (no barrier),
          ``ctx.subgroup_size`` fields per workgroup (at most 64);
        - 2: one workgroup per field, up to 32 leaves per invocation, shared-memory reduction, within
          the device's invocation and shared-memory limits."""
        if reduce is not None and int(reduce) not in (0, 1, 2):
            raise ValueError(f"reduce={reduce!r}: choose 0 (one invocation per field), 1 (subgroup shuffles) "
                             f"or 2 (shared memory)")
        forced = reduce is not None
        q, L, N = self._q, self.levels, self.n
        cap = getattr(ctx, "loop_iteration_cap", None)
        why = None
        for mode in ((int(reduce),) if forced else (1, 0, 2)):
            lay = (self._layout1, self._layout0, self._layout2)[(1, 0, 2).index(mode)](ctx, forced)
            if lay is None:              # (layout 2 always has one)
                why = (f"more than {_MAX_QM} leaves for one invocation" if mode == 0 else
                       f"no subgroup width in {ctx.min_subgroup_size}..{ctx.max_subgroup_size} can be required "
                       f"(subgroup size control: {ctx.subgroup_size_control}, shuffles: {ctx.subgroup_shuffle}) "
                       f"that holds 2 or more of the field's subtrees")
                continue
            mode, M, fpw, local, sg, red_bufs = lay
            QM = q ** M
            if QM > _MAX_QM:
                raise ValueError(f"{self.name}: a {self.spatial} field with arity {self.arity} needs {QM} leaves "
                                 f"per invocation (device limit {int(ctx.limits.maxComputeWorkGroupInvocations)} "
                                 f"invocations per workgroup); use a smaller field")
            tpf = N // QM
            spec = dict(LOCAL_X=local, P=self.arity, DIMS=self.dims, L=L, Q=q, N=N, SIDE=self.spatial[-1], M=M,
                        QM=QM, LOC=(QM * q - q) // (q - 1), UPS=(tpf * q - 1) // (q - 1), TPF=tpf, FPW=fpw,
                        REDUCE=mode, RED_BUFS=red_bufs, SG=sg or 1)
            need = self._least_dispatch(spec, mode)
            if cap and need > cap:
                # a driver that leaves loops after `cap` iterations would compute garbage: the dispatch
                # plan cannot make a dispatch smaller than one step (or the first decomposition)
                why = (f"one dispatch needs ~{need} loop iterations per invocation, over this driver's cap of "
                       f"{cap}")
                if mode == 2 or forced:
                    break
                continue
            self._local, self._fpw, self._mode = local, fpw, mode
            self._sg = sg                  # required subgroup width (REDUCE 1), else None
            return spec
        raise ValueError(f"{self.name}: layout {'reduce=%s' % reduce if forced else 'of the fused kernel'} cannot "
                         f"run a {self.spatial} field with arity {self.arity} on this device: {why}")

    def _least_dispatch(self, spec, mode):
        """Loop iterations per invocation of the smallest dispatches a plan can make with this layout:
        the first (decomposition, observation and snapshot of the incoming state, no step) and one
        observed and snapshotted step from the band state."""
        coupled = self.name == "coupled"     # eps may change later: count coupled steps
        fixed, step, run, obs, snap = _tree_costs(spec, mode, self.dims, True, coupled)
        first = fixed + obs + snap + run
        fixed, step, run, obs, snap = _tree_costs(spec, mode, self.dims, False, coupled)
        return max(first, fixed + 3 * run + step + obs + snap)

    def _layout1(self, ctx, forced):
        """(1, M, fields per workgroup, workgroup size, subgroup width, 2) or None."""
        if not (ctx.subgroup_shuffle and ctx.subgroup_size_control):
            return None
        q, L, N = self._q, self.levels, self.n
        lo, hi = int(ctx.min_subgroup_size), int(ctx.max_subgroup_size)
        widths = [1 << k for k in range(max(lo, 1).bit_length() - 1, hi.bit_length()) if lo <= 1 << k <= hi]
        if not widths:
            return None
        max_inv = int(ctx.limits.maxComputeWorkGroupInvocations)
        for M in range(1, L + 1):
            tpf = N // q ** M
            if tpf < 2 or q ** M > (_MAX_QM if forced else _MODE1_MAX_QM):
                break
            fits = [w for w in widths if w >= tpf]
            if not fits:
                continue
            # the default width where it fits (what the driver prefers), else the narrowest that does
            sg = int(ctx.subgroup_size) if ctx.subgroup_size in fits else fits[0]
            nsub = max(1, min(_MODE1_LOCAL, max_inv) // sg)
            if not required_subgroup_works(ctx, sg, sg * nsub):
                return None
            return 1, M, (sg // tpf) * nsub, sg * nsub, sg, 2
        return None

    def _layout0(self, ctx, forced):
        if self.n > (_MAX_QM if forced else 1024):
            return None
        fpw = max(1, min(int(ctx.subgroup_size), 64))
        return 0, self.levels, fpw, fpw, None, 2

    def _layout2(self, ctx, forced):
        q, L, N = self._q, self.levels, self.n
        max_inv = int(ctx.limits.maxComputeWorkGroupInvocations)
        shared_limit = int(ctx.limits.maxComputeSharedMemorySize)

        def shared_bytes(m, bufs):     # subtree means (2 buffers) + partials
            tpf = N // q ** m
            return 4 * (2 * tpf + bufs * tpf * (L + 3))

        M = 1
        while M < L and q ** (M + 1) <= 32:
            M += 1
        while M < L and (N // q ** M > max_inv or shared_bytes(M, 1) > shared_limit):
            M += 1
        red_bufs = 2 if shared_bytes(M, 2) <= shared_limit else 1
        return 2, M, 1, N // q ** M, None, red_bufs

    def _rates(self, params):
        L = self.levels
        if params.get("rates") is not None:
            rates = np.asarray(params["rates"], dtype=np.float64).reshape(-1)
            if rates.size == 1:
                rates = np.repeat(rates, L)
            rates = R._check_rates(rates, L)
            if not np.all(np.isfinite(rates)):
                raise ValueError(f"rates must be finite, got {rates}")
            return rates
        return R.tree_rates(self.arity, L, tau=float(params.get("tau", 1.0)), alpha=float(params.get("alpha", 1.0)))

    def set_params(self, **params):
        _check_params(self.name, params, self.allowed)
        merged = {**self._raw, **params}
        if "rates" in params and params["rates"] is not None:
            merged.pop("tau", None), merged.pop("alpha", None)
        elif ("tau" in params or "alpha" in params):
            merged.pop("rates", None)
        if "C" in params and params["C"] is not None:
            merged.pop("coupling_seed", None)
        elif "coupling_seed" in params:
            merged.pop("C", None)
        self.rates = self._rates(merged)
        self.params = self._resolve(merged)
        self._raw = merged
        self._upload_params()

    def _resolve(self, merged):
        out = dict(arity=self.arity, rates=[float(r) for r in self.rates])
        if merged.get("rates") is None:
            out.update(tau=float(merged.get("tau", 1.0)), alpha=float(merged.get("alpha", 1.0)))
        return out

    def _param_values(self):
        return self.rates.astype(np.float32)

    def _upload_params(self):
        vals = self._param_values()
        if self._param_buf is None or self._param_buf.size != vals.size:
            self._param_buf = self.ctx.array(vals)
            self._own(self._param_buf)
        else:
            self._param_buf.upload(vals)
        self.kernel = self.ctx.kernel(self.shader, defines={"SUBGROUPS": 1} if self._mode == 1 else None,
                                      spec=self._kernel_spec(), subgroup_size=self._sg)

    def _kernel_spec(self):
        return dict(self._spec)

    def new_obs(self, rows):
        return ObsBuffers(self.ctx, rows, self.batch, self.levels)

    # -- dispatch plan: no dispatch may run long (GPU watchdogs) or past a driver's loop-iteration cap
    # (llvmpipe silently leaves a shader invocation's loops after 65535 iterations in all), so every
    # recording is split into dispatches under budgets of estimated loop iterations (see
    # _SERIAL_BUDGET, _WORK_BUDGET, _LOOP_CAP_USE): steps into several dispatches and, where one step
    # of the whole batch is already too much work, the batch into slices of fields.
    def _coupled_steps(self):
        return False

    def _loop_costs(self, mean=False):
        """(fixed, per_step, per_run, per_obs, per_snap) loop iterations of this system's kernel (see
        :func:`_tree_costs`)."""
        return _tree_costs(self._spec, self._mode, self.dims, not self._coef_valid, self._coupled_steps(), mean)

    def _budgets(self):
        """(loop iterations per invocation, loop iterations x invocations) allowed in one dispatch."""
        per_inv = _SERIAL_BUDGET
        cap = getattr(self.ctx, "loop_iteration_cap", None)
        if cap:
            per_inv = min(per_inv, int(cap * _LOOP_CAP_USE))
        return per_inv, _WORK_BUDGET

    def _dispatches(self, n, every, snap_every, observe_first, snap_first):
        """Dispatches ``(b0, nb, k0, steps, row0, srow0, observe_first, snap_first)`` covering ``n`` steps
        of every field: fields b0 .. b0+nb-1 (whole workgroups), steps k0+1 .. k0+steps."""
        per_inv, work = self._budgets()
        mean = self._loop_costs(mean=True)
        tpf, fpw, B = self._spec["TPF"], self._fpw, self.batch
        fixed, per_step, per_run, per_obs, per_snap = mean
        # the dearest one-step dispatch (first observation and snapshot, then one step observed and
        # snapshotted): a slice must afford it within the work budget, but keeps _SLICE_INVOCATIONS
        one = fixed + 2 * (per_obs + per_snap) + 3 * per_run + per_step
        fit = max(work // max(1, one * tpf), -(-_SLICE_INVOCATIONS // tpf))
        nb = B
        if fit < B:
            nb = max(fpw, fit // fpw * fpw)
            slices = -(-B // nb)
            nb = min(nb, -(-(-(-B // slices)) // fpw) * fpw)      # even slices of whole workgroups
        limits = [(self._loop_costs(), per_inv), (mean, work // (nb * tpf))]
        steps = self._plan(n, every, snap_every, observe_first, snap_first, limits)
        return [(b0, min(nb, B - b0)) + st for b0 in range(0, B, nb) for st in steps]

    def _plan(self, n, every, snap_every, observe_first, snap_first, limits=None):
        """Dispatches ``(k0, steps, row0, srow0, observe_first, snap_first)`` covering n steps. ``limits``:
        ``[(costs, budget)]``, each dispatch keeps every cost model (a ``_loop_costs`` tuple) within its
        budget of loop iterations, but runs at least one step (default: the busiest invocation within
        this device's per-invocation budget)."""
        every, snap_every = int(every or 0), int(snap_every or 0)
        if limits is None:
            limits = [(self._loop_costs(), self._budgets()[0])]
        out, k0, row, srow = [], 0, 0, 0
        while not out or k0 < n:
            first = not out
            room, cost = [], []
            for (fixed, per_step, per_run, per_obs, per_snap), budget in limits:
                first_extra = (per_obs if observe_first else 0) + (per_snap if snap_first else 0)
                room.append(budget - fixed - (first_extra if first else 0))
                cost.append(per_run)
            steps = 0
            while k0 + steps < n:
                g = k0 + steps + 1
                obs_now, snap_now = bool(every and g % every == 0), bool(snap_every and g % snap_every == 0)
                c = [per_step + (per_obs + per_run if obs_now else 0) + (per_snap + per_run if snap_now else 0)
                     for (fixed, per_step, per_run, per_obs, per_snap), _ in limits]
                if any(a + b > r for a, b, r in zip(cost, c, room)):
                    if steps > 0:
                        break
                    if first and (observe_first or snap_first):
                        break             # the incoming state's observation / snapshot in a dispatch of its own
                cost = [a + b for a, b in zip(cost, c)]
                steps += 1
            out.append((k0, steps, row, srow, bool(observe_first) and first, bool(snap_first) and first))
            if first:            # the kernel itself writes the first rows before its steps
                row, srow = int(bool(observe_first)), int(bool(snap_first))
            row += ((k0 + steps) // every - k0 // every) if every else 0
            srow += ((k0 + steps) // snap_every - k0 // snap_every) if snap_every else 0
            k0 += steps
        return out

    def _coef_array(self):
        if self._coef is None:
            sp = self._spec
            self._coef = self.ctx.zeros((self.batch * sp["TPF"] * (sp["LOC"] + sp["L"] - sp["M"] + 1),))
            self._own(self._coef)
        return self._coef

    def invalidate(self):
        """The leaves were changed from outside (upload, reset): the next dispatch re-decomposes them."""
        self._coef_valid = False

    def _push(self, n, every, snap_every, observe_first, snap_first, load_coef, row0, srow0, k0, last, b0, nb):
        return dict(batch=self.batch, steps=int(n), every=int(every or 0), snap_every=int(snap_every or 0),
                    observe_first=int(bool(observe_first)), snap_first=int(bool(snap_first)),
                    load_coef=int(bool(load_coef)), row0=int(row0), srow0=int(srow0), k0=int(k0),
                    write_x=int(bool(last)), b0=int(b0), nb=int(nb))

    def record(self, rec, state, n, every=0, snap_every=0, observe_first=False, snap_first=False, obs=None,
               snap=None):
        _check_buffers(every, snap_every, observe_first, snap_first, obs, snap)
        dummy = self._dummy_array()
        coef = self._coef_array()
        plan = self._dispatches(int(n), every, snap_every, observe_first, snap_first)
        valid = self._coef_valid           # every slice starts from the same state
        for i, (b0, nb, k0, steps, row0, srow0, ofirst, sfirst) in enumerate(plan):
            first = i == 0 or plan[i - 1][0] != b0                   # the first dispatch of its slice
            last = i == len(plan) - 1 or plan[i + 1][0] != b0       # the last one
            push = self._push(steps, every, snap_every, ofirst, sfirst, valid or not first, row0, srow0, k0,
                              last, b0, nb)
            rec.dispatch(self.kernel, self.kernel.grid(-(-nb // self._fpw)), state, self._param_buf,
                         obs.fused if obs is not None else dummy, snap if snap is not None else dummy,
                         *self._extra(coef), push=push)
        self._coef_valid = True

    def _extra(self, coef):
        return (coef,)


class CoupledSystem(TreeSystem):
    """Band-coupled tree operator (SPEC 3.2), fused multi-step kernel ``step_coupled.comp`` (the tree
    kernel's state layout; eps = 0 runs the tree step itself, bit-exact)."""
    name = "coupled"
    shader = "step_coupled.comp"
    allowed = _COUPLED_PARAMS

    def _resolve(self, merged):
        out = super()._resolve(merged)
        L = self.levels
        phi = merged.get("phi", "tanh")
        if phi not in PHIS:
            raise ValueError(f"phi={phi!r}: choose one of {', '.join(PHIS)}")
        eps = _finite("eps", merged.get("eps", 0.0))
        if merged.get("C") is not None:
            C = np.asarray(merged["C"])
            if C.shape != (L, L) or not np.isin(C, (-1, 0, 1)).all():
                raise ValueError(f"C must be an ({L}, {L}) matrix with entries in {{-1, 0, 1}}, got shape {C.shape}")
            C = C.astype(np.int64)
            seed = None
        else:
            seed = int(merged.get("coupling_seed", 0))
            C = R.coupling_matrix(L, seed)
        self.C, self.eps, self.phi = C, eps, phi
        out.update(eps=eps, phi=phi, C=C.tolist())
        if seed is not None:
            out["coupling_seed"] = seed
        return out

    def _param_values(self):
        C = self.C.astype(np.float64).copy()
        np.fill_diagonal(C, 0.0)
        w = C.sum(axis=0)                # w_b = sum_{b' != b} C[b', b]
        return np.concatenate([self.rates, w]).astype(np.float32)

    def _kernel_spec(self):
        return dict(self._spec, PHI=PHIS.index(self.phi))

    def _coupled_steps(self):
        return self.eps != 0.0

    def _push(self, *args):
        return dict(super()._push(*args), eps=self.eps)


# ----------------------------------------------------------------------------- grid systems
class _GridSystem(_System):
    shader = "?"
    fields_per_member = 1
    pick = None

    def __init__(self, ctx, B, spatial, dims, arity=None, **params):
        super().__init__(ctx, B, spatial, dims)
        H, W = self.spatial
        self.arity = default_arity(self.spatial) if arity is None else R._check_arity(arity)
        self.levels = R.levels(self.spatial, self.arity, 2)
        k = self.fields_per_member
        self.state_shape = (self.batch,) + ((k,) if k > 1 else ()) + self.spatial
        self.fields = self.batch * k
        defines = {"ALIGNED": 1} if W % 4 == 0 else None
        self.kernel = ctx.kernel(self.shader, defines=defines, spec={"LOCAL_X": _GRID_LOCAL, "RY": _GRID_RY})
        inv = (-(-W // 4)) * (-(-H // _GRID_RY)) * self.batch
        self._groups = self.kernel.grid(-(-inv // _GRID_LOCAL))
        self._other = ctx.zeros(self.state_shape)
        self._own(self._other)
        # observables: band energies, mass, min, max, NaN/Inf flag in one read of the fields
        # (BandPlan.record_observables)
        self._plan = None
        self.params, self._raw = {}, {}
        self.set_params(**params)

    def _bandplan(self):
        if self._plan is None:
            from .bands import BandPlan
            self._plan = BandPlan(self.ctx, self.spatial, self.arity, batch=self.fields)
        return self._plan

    def new_obs(self, rows):
        return ObsBuffers(self.ctx, rows, self.batch, self.levels, fields=self.fields, pick=self.pick)

    def _observe(self, rec, x, obs, row):
        flat = x.reshape(self.fields, *self.spatial)
        self._bandplan().record_observables(rec, flat, obs.energies, obs.stats, row=row)

    def record(self, rec, state, n, every=0, snap_every=0, observe_first=False, snap_first=False, obs=None,
               snap=None):
        _check_buffers(every, snap_every, observe_first, snap_first, obs, snap)
        orow = srow = 0
        if observe_first:
            self._observe(rec, state, obs, orow)
            orow += 1
        if snap_first:
            rec.copy(state, snap, nbytes=state.nbytes, dst_offset=srow * state.nbytes)
            srow += 1
        push = self._push()
        cur, nxt = state, self._other
        for k in range(1, int(n) + 1):
            rec.dispatch(self.kernel, self._groups, cur, nxt, push=push)
            cur, nxt = nxt, cur
            if every and k % every == 0:
                self._observe(rec, cur, obs, orow)
                orow += 1
            if snap_every and k % snap_every == 0:
                rec.copy(cur, snap, nbytes=state.nbytes, dst_offset=srow * state.nbytes)
                srow += 1
        if cur is not state:
            rec.copy(cur, state)

    def close(self):
        if self._plan is not None:
            self._plan.close()
            self._plan = None
        super().close()


class HeatSystem(_GridSystem):
    """Explicit heat equation (SPEC 3.3), ``step_heat.comp``, ping-pong."""
    name = "heat"
    shader = "step_heat.comp"

    def set_params(self, **params):
        _check_params(self.name, params, _HEAT_PARAMS)
        merged = {**self._raw, **params}
        alpha = float(merged.get("alpha", 0.2))
        if not math.isfinite(alpha) or not 0.0 <= alpha <= 0.25:
            raise ValueError(f"alpha={alpha!r}: must be in [0, 0.25] (explicit-Euler stability)")
        self.params, self._raw = dict(arity=self.arity, alpha=alpha), merged

    def _push(self):
        H, W = self.spatial
        return dict(H=H, W=W, batch=self.batch, alpha=self.params["alpha"])


class GrayScottSystem(_GridSystem):
    """Gray-Scott reaction-diffusion (SPEC 3.3), ``step_grayscott.comp``, ping-pong, state u then v."""
    name = "grayscott"
    shader = "step_grayscott.comp"
    fields_per_member = 2
    pick = 1

    def set_params(self, **params):
        _check_params(self.name, params, _GS_PARAMS)
        merged = {**self._raw, **params}
        preset = merged.get("preset")
        vals = dict(Du=0.16, Dv=0.08, F=0.035, k=0.065, dt=1.0)
        if preset is not None:
            if preset not in R.GRAYSCOTT_PRESETS:
                raise ValueError(f"preset={preset!r}: choose one of {', '.join(R.GRAYSCOTT_PRESETS)}")
            vals.update(R.GRAYSCOTT_PRESETS[preset])
            if "preset" in params:      # a new preset replaces earlier explicit F / k
                for key in ("F", "k"):
                    if key not in params:
                        merged.pop(key, None)
        for key in ("Du", "Dv", "F", "k", "dt"):
            if merged.get(key) is not None:
                vals[key] = _finite(key, merged[key])
        self.params, self._raw = dict(arity=self.arity, preset=preset, **vals), merged

    def _push(self):
        H, W = self.spatial
        p = self.params
        return dict(H=H, W=W, batch=self.batch, Du=p["Du"], Dv=p["Dv"], F=p["F"], k=p["k"], dt=p["dt"])
