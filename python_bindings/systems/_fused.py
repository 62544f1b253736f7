"""The fused tree kernels (``step_tree.comp`` / ``step_coupled.comp``, body in ``tree_fused.glsl``):
the base of the tree and coupled systems, their layouts and dispatch plans, and the subgroup probes.

The band coefficients of each field stay in private memory for all the steps of a dispatch,
observables and snapshots are computed in the kernel, and the band state is kept in a device buffer
between dispatches (exact: no re-decomposition round-off). Layouts (``FusedTreeSystem._layout``):

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

Every device gets its recordings split into dispatches of bounded work
(``FusedTreeSystem._dispatches``): steps into several dispatches (the band state carries over exactly)
and, for big batches, the fields into slices. Bounds: a driver's loop-iteration cap
(``ctx.loop_iteration_cap``: llvmpipe silently leaves a shader invocation's loops after 65535
iterations), and everywhere a time budget, so that no dispatch runs long enough for a GPU watchdog
(TDR: VK_ERROR_DEVICE_LOST after ~2 s): see ``_SERIAL_BUDGET`` and ``_WORK_BUDGET``.
``invalidate()`` tells a tree/coupled system that its state buffer was written from outside.
"""
from __future__ import annotations

import numpy as np

from vkbands.engine.probes import required_subgroup_works, subgroup_size  # noqa: F401 (re-exported)

from .. import reference as R
from ._base import ARITY, ObsBuffers, SystemBase, check_buffers

__all__ = ["FusedTreeSystem", "subgroup_size", "required_subgroup_works"]

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
_WORK_BUDGET = 1 << 28
# loop iterations summed over a dispatch's invocations (throughput when the GPU is full). ~0.27 s on
# a slow integrated GPU (~1e9 such iterations/s: ~200 lanes at ~1 GHz, several operations and some
# local-memory traffic per iteration), ~0.6 s on lavapipe here (4.6e8/s), 3-30 ms on a big discrete
# GPU (1e10-1e11/s): well under the ~2 s of the usual watchdogs (Windows TDR, i915 hangcheck), and
# under the ~1 s a Ctrl-C may wait. Each dispatch reloads and stores the band state, so the budget
# is a trade: measured on lavapipe (tree 4096 x 729, 400 steps, unobserved, best of 3 interleaved
# with the unsplit kernel): 2^26 cost ~20% per step, 2^28 ~5-10%. Not measured on a GPU yet.
_SLICE_INVOCATIONS = 1 << 11
# a batch slice keeps at least this many invocations: below what a slow GPU runs at once (~2k lanes)
# a dispatch's time is that of its longest invocation (bounded by _SERIAL_BUDGET), so smaller slices
# would only add dispatches (and leave a big GPU idler).
_MODE1_MAX_QM = 81      # REDUCE 1 chosen automatically only up to this many leaves per invocation
_MAX_QM = 6561          # leaves per invocation: private arrays beyond this are refused
_MODE1_LOCAL = 64       # REDUCE 1: workgroup size (whole subgroups; one subgroup when it is wider)
_BLOCK = 8              # tree_fused.glsl BLOCK: observations computed in one pass over the coefficients


def _tree_costs(sp, mode, dims, decompose, coupled, mean=False, minmax=True):
    """(fixed, per_step, per_run, per_obs, per_snap) loop iterations of the fused tree kernel with
    specialisation ``sp`` (``decompose``: the dispatch starts from the leaves; ``coupled``: coupled
    steps, eps != 0), of the busiest invocation (``mean``: averaged over a field's invocations, for the
    work summed over them; ``minmax``: kept for callers, the estimate covers both). Counted from the
    shader's loops as written (no unrolling assumed; a loop entered costs one more than its
    iterations, even where an `if` around it is false: llvmpipe), over every path the kernel may take:
    an estimate that errs high. Measured on llvmpipe (p=3 L=6, every step observed, every energy
    overflowing so that each observation rebuilds the leaves, the dearest path): one dispatch of 70
    steps computes right, 80 do not; planned: 40 (tests/test_systems.py test_plan_errs_high_on_llvmpipe
    runs 4/3 of the plan in one dispatch)."""
    LOC, QM, M, L, TPF, UP, Q = sp["LOC"], sp["QM"], sp["M"], sp["L"], sp["TPF"], sp["L"] - sp["M"], sp["Q"]
    nat = (L + 1) if dims == 2 else 0
    per_snap = QM * (3 + nat) + LOC + 2 * M + 2 * UP + 4
    fixed = 2 * L + LOC + 2 * UP + 18 + (LOC + UP + 2) + per_snap          # coef load, coef + leaf store
    fixed += LOC + M + UP + 2                                               # band_energies (observe_first)
    if decompose:
        fixed += QM * (1 + nat) + LOC * (Q + 4) + TPF + ((TPF * Q) // max(Q - 1, 1)) * (Q + 2) + 2 * UP + 32
    # reduction of the L + 3 partials: every invocation shuffles over the TPF lanes (REDUCE 1); in
    # shared memory (REDUCE 2) invocation k < L + 3 combines quantity k over the TPF invocations
    red = (L + 3) * (TPF + 2)
    if mean and mode == 2:
        red = (L + 3) * (1 + -(-min(L + 3, TPF) * (TPF + 2) // TPF))
    # observe(): the energy checks; the leaves (always with min / max; without, when an energy is not
    # finite: the same count either way): reconstruct() (chain, top level, then every level's children
    # four per iteration) and the scan (four per iteration); the reduction; writes and the fin check
    rebuild = (UP + 1) + (Q + 1) + LOC // 4 + 6 * M + (QM // 4 + 5)
    per_obs = rebuild + red + 4 * (L + 1) + 8
    # a block of rows (2..8, REDUCE 0/1): one loop over every band (LOC + M), the chain's rows, and
    # observe_block's rows: per row, and at worst a block of 2
    block = (LOC + 2 * M + 2) // 2 + (L + 1) * (TPF + 2) + 3 * UP + 8
    per_obs = max(per_obs, block)
    # per step of a run of 8 steps or more (runs end at observations and snapshots; see _plan, which
    # charges a run's steps from its 8th, with its loop entries: one per coefficient): the
    # multiplications, 4 per loop iteration; the chain's one per step
    per_step = (LOC + 3) // 4 + UP + 1
    # per run (to an observation or a snapshot): one loop over each band's coefficients, 4 per
    # iteration and the remainder, the chain's loop and its steps in a run of < 8, the step loop's own
    per_run = LOC // 4 + 6 * M + 9 * UP + 8
    if coupled:     # new leaves top-down, decomposition, chain (per step)
        per_step = 4 * LOC + 2 * QM + 2 * TPF + sp["UPS"] * (Q + 2) + 4 * UP + 4 * M + 16
        per_run += LOC + 2 * M + 2 * UP
    return fixed, per_step, per_run, per_obs, per_snap


# ----------------------------------------------------------------------------- the fused base
class FusedTreeSystem(SystemBase):
    """The fused tree kernels' machinery (layouts, dispatch plans, recording; see the module docstring).
    A subclass sets ``shader`` and resolves its parameters in ``set_params`` into ``self.params`` and
    the values ``_param_values()`` uploads: the kernel's parameter buffer, one row of S floats per batch
    member (B, S), read by each field from its member's row (per-member values, SPEC 3.2b)."""
    fused = True
    shader = "?"
    _may_couple = False      # steps may be coupled (eps != 0 later): plan for the dearer step

    def __init__(self, ctx, B, spatial, dims, arity=3, reduce=None, **params):
        super().__init__(ctx, B, spatial, dims)
        self.arity = ARITY.convert(3 if arity is None else arity)
        try:
            self.levels = R.tree_levels(self.spatial, self.arity, dims)
        except ValueError as e:
            if dims == 2 and len(set(self.spatial)) == 1:   # square, read as one 2-D field by default
                raise ValueError(f"{e} (a ({self.spatial[0]}, {self.spatial[1]}) array is read as one 2-D "
                                 f"field; for a batch of 1-D fields pass dims=1)") from None
            raise
        self._check_params(params)          # refused before any probe or allocation
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
        coupled = self._may_couple           # eps may change later: count coupled steps
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

    def _upload_params(self):
        # (B, S): member b's row is read by its fields whether the values are shared or per member
        # (SPEC 3.2b), so a batch runs the same pipeline and arithmetic as a separate run of one member
        self._member_buffer(self._param_values())
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

    def _blocks(self):
        """The kernel may observe in blocks of _BLOCK rows (tree_fused.glsl, ``blocks`` in main): tree
        steps, minmax off, REDUCE 0 or 1, every rate of magnitude <= 1 (float32, as the kernel reads them)."""
        return (not self.observe_minmax and self._mode != 2 and not self._coupled_steps()
                and bool(np.all(np.abs(np.asarray(self._param_values())[:, :self.levels]) <= 1.0)))

    def _loop_costs(self, mean=False):
        """(fixed, per_step, per_run, per_obs, per_snap) loop iterations of this system's kernel (see
        :func:`_tree_costs`)."""
        return _tree_costs(self._spec, self._mode, self.dims, not self._coef_valid, self._coupled_steps(), mean,
                           self.observe_minmax)

    def _budgets(self):
        """(loop iterations per invocation, loop iterations x invocations) allowed in one dispatch."""
        per_inv = _SERIAL_BUDGET
        cap = getattr(self.ctx, "loop_iteration_cap", None)
        if cap:
            per_inv = min(per_inv, int(cap * _LOOP_CAP_USE))
        return per_inv, _WORK_BUDGET

    def _dispatches(self, n, every, snap_every, observe_first, snap_first, phase=0):
        """Dispatches ``(b0, nb, k0, steps, row0, srow0, observe_first, snap_first)`` covering ``n`` steps
        of every field: fields b0 .. b0+nb-1 (whole workgroups), steps k0+1 .. k0+steps (counted from
        ``phase``: see :meth:`_plan`)."""
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
        steps = self._plan(n, every, snap_every, observe_first, snap_first, limits, phase=phase)
        return [(b0, min(nb, B - b0)) + st for b0 in range(0, B, nb) for st in steps]

    def _plan(self, n, every, snap_every, observe_first, snap_first, limits=None, phase=0):
        """Dispatches ``(k0, steps, row0, srow0, observe_first, snap_first)`` covering n steps. ``limits``:
        ``[(costs, budget)]``, each dispatch keeps every cost model (a ``_loop_costs`` tuple) within its
        budget of loop iterations, but runs at least one step (default: the busiest invocation within
        this device's per-invocation budget). ``phase``: the steps are numbered ``phase + 1 ..
        phase + n`` (observations after step g when g % every == 0, the kernel's ``k0 + k``), so a
        recording can start between observations; rows still start at 0."""
        every, snap_every = int(every or 0), int(snap_every or 0)
        if limits is None:
            limits = [(self._loop_costs(), self._budgets()[0])]
        phase = int(phase)
        n = phase + int(n)
        blocks = bool(every) and self._blocks()
        coupled = self._coupled_steps()
        out, k0, row, srow = [], phase, 0, 0
        while not out or k0 < n:
            first = not out
            room, cost = [], []
            for (fixed, per_step, per_run, per_obs, per_snap), budget in limits:
                first_extra = (per_obs if observe_first else 0) + (per_snap if snap_first else 0)
                room.append(budget - fixed - (first_extra if first else 0))
                cost.append(per_run)
            steps = run = 0
            while k0 + steps < n:
                g = k0 + steps + 1
                obs_now, snap_now = bool(every and g % every == 0), bool(snap_every and g % snap_every == 0)
                # tree steps: per_step counts a run's loops of multiplications, which only runs of 8 steps
                # or more have: nothing before its 8th step, then its 8 steps and its loop entries
                # (<= 4 per_step), then per_step a step. Coupled steps: per_step each.
                run += 1
                k = 1 if coupled else (0 if run < 8 else 12 if run == 8 else 1)
                if obs_now or snap_now:
                    run = 0
                c = [k * per_step + (per_obs + per_run if obs_now else 0) + (per_snap + per_run if snap_now else 0)
                     for (fixed, per_step, per_run, per_obs, per_snap), _ in limits]
                if any(a + b > r for a, b, r in zip(cost, c, room)):
                    if steps > 0:
                        break
                    if first and (observe_first or snap_first):
                        break             # the incoming state's observation / snapshot in a dispatch of its own
                cost = [a + b for a, b in zip(cost, c)]
                steps += 1
            if blocks and k0 + steps < n:
                # end a dispatch that is not the last after a whole number of blocks when it holds one
                # (a block's rows come from one pass; a remainder of a row or two would cost a pass each)
                rows = (k0 + steps) // every - k0 // every
                if rows > _BLOCK:
                    steps = (k0 // every + rows // _BLOCK * _BLOCK) * every - k0
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
            self._coef = self.ctx.zeros((self.batch * sp["TPF"] * (sp["LOC"] + sp["L"] - sp["M"] + 2),))
            self._own(self._coef)
        return self._coef

    def invalidate(self):
        """The leaves were changed from outside (upload, reset): the next dispatch re-decomposes them."""
        self._coef_valid = False

    def _push(self, n, every, snap_every, observe_first, snap_first, load_coef, row0, srow0, k0, last, b0, nb):
        return dict(batch=self.batch, steps=int(n), every=int(every or 0), snap_every=int(snap_every or 0),
                    observe_first=int(bool(observe_first)), snap_first=int(bool(snap_first)),
                    load_coef=int(bool(load_coef)), row0=int(row0), srow0=int(srow0), k0=int(k0),
                    write_x=int(bool(last)), b0=int(b0), nb=int(nb), minmax=int(bool(self.observe_minmax)))

    def record(self, rec, state, n, every=0, snap_every=0, observe_first=False, snap_first=False, obs=None,
               snap=None, phase=0):
        check_buffers(every, snap_every, observe_first, snap_first, obs, snap)
        if not (0 <= int(phase) and int(phase) + int(n) < 1 << 31):
            raise ValueError(f"phase {phase} + {n} steps: over the kernel's 32-bit step counter")
        dummy = self._dummy_array()
        coef = self._coef_array()
        plan = self._dispatches(int(n), every, snap_every, observe_first, snap_first, phase=phase)
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
