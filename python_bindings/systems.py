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
buffer between dispatches (exact: no re-decomposition round-off). The layout is chosen per device from
a subgroup probe (``subgroup_probe.comp``): one invocation per field (CPU drivers, fields <= 1024
leaves), a field's invocations inside one subgroup with shuffle reductions (GPUs: p=3, L=6 -> 27
invocations of 27 leaves), or one workgroup per field with a shared-memory reduction (large fields;
more than 6561 leaves per invocation is refused with a ValueError; a 729 x 729 field runs). On CPU devices (llvmpipe caps a
shader invocation at 65535 loop iterations and silently leaves longer loops) a recording is split
into dispatches under an estimated budget; GPUs run a recording as one dispatch.
``invalidate()`` tells a tree/coupled system that its state buffer was written from outside.
"""
from __future__ import annotations

import math

import numpy as np

from . import reference as R
from ._owner import Owner

__all__ = ["SYSTEMS", "make_system", "ObsBuffers", "resolve_shape", "default_arity"]

SYSTEMS = ("tree", "coupled", "heat", "grayscott")
PHIS = ("tanh", "sign", "square")
_TREE_PARAMS = {"rates", "tau", "alpha"}
_COUPLED_PARAMS = _TREE_PARAMS | {"eps", "phi", "C", "coupling_seed"}
_HEAT_PARAMS = {"alpha"}
_GS_PARAMS = {"Du", "Dv", "F", "k", "dt", "preset"}
_GRID_RY = 8          # rows per invocation of the stencil kernels
_GRID_LOCAL = 64
_LOOP_BUDGET = 50000  # loop iterations per invocation per dispatch on CPU devices (llvmpipe caps 65535)


_subgroup_sizes = {}


def subgroup_size(ctx) -> int:
    """The device's subgroup size as seen by a compute shader (``subgroup_probe.comp``, run once per
    context: drivers may compile compute shaders to another width than the reported default); 1 when
    the device reports no subgroup shuffles in compute, a workgroup of that size is not one subgroup,
    or shuffles misbehave."""
    if not ctx.subgroup_shuffle:
        return 1
    key = id(ctx)
    hit = _subgroup_sizes.get(key)
    if hit is not None and hit[0] is ctx:
        return hit[1]
    out = ctx.zeros((3,), np.uint32)
    try:
        size = 1
        for local in (1, None):        # the size, then: is a workgroup of that size one subgroup?
            k = ctx.kernel("subgroup_probe.comp", spec={"LOCAL_X": local or size})
            with ctx.recorder() as rec:
                rec.dispatch(k, 1, out)
            got, count, ok = (int(v) for v in out.numpy())
            if not ok or count != 1 or got < 1 or got > int(ctx.limits.maxComputeWorkGroupInvocations):
                size = 1
                break
            size = got
    finally:
        out.close()
    _subgroup_sizes[key] = (ctx, size)
    return size


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

    def __init__(self, ctx, B, spatial, dims, arity=3, **params):
        super().__init__(ctx, B, spatial, dims)
        self.arity = R._check_arity(arity)
        self.levels = L = R.levels(self.spatial, self.arity, dims)
        self.state_shape = (self.batch,) + self.spatial
        self.n = int(np.prod(self.spatial))
        self._q = self.arity ** dims
        self._local = None
        self._spec = self._layout(ctx)
        self.kernel = None
        self._param_buf = None
        self._coef, self._coef_valid = None, False
        self.params, self._raw = {}, {}
        self.set_params(**params)

    def _layout(self, ctx):
        """step_tree.comp layout: TPF invocations per field, each holding Q**M leaves; REDUCE mode.

        - a field's invocations fit one subgroup with at most 81 leaves each: subgroup shuffles
          (REDUCE 1, no barrier; GPUs: p=3, L=6 -> 27 invocations of 27 leaves);
        - else a small field (<= 1024 leaves) is held by one invocation (REDUCE 0, no barrier; CPU
          drivers with 8-wide subgroups), ``subgroup`` fields per workgroup;
        - else one workgroup per field, up to 32 leaves per invocation, shared-memory reduction
          (REDUCE 2), within the device's invocation and shared-memory limits."""
        q, L, N = self._q, self.levels, self.n
        sg = subgroup_size(ctx)
        max_inv = int(ctx.limits.maxComputeWorkGroupInvocations)
        shared_limit = int(ctx.limits.maxComputeSharedMemorySize)
        mode = None
        for M in range(1, L + 1):
            tpf = N // q ** M
            if 2 <= tpf <= sg and q ** M <= 81:
                mode, fpw = 1, max(1, sg // tpf)
                break
        if mode is None and N <= 1024:
            mode, M, fpw = 0, L, max(1, min(sg, 64))
        if mode is None:
            mode, fpw = 2, 1

            def shared_bytes(m, bufs):     # subtree means (2 buffers) + partials
                tpf = N // q ** m
                return 4 * (2 * tpf + bufs * tpf * (L + 3))

            M = 1
            while M < L and q ** (M + 1) <= 32:
                M += 1
            while M < L and (N // q ** M > max_inv or shared_bytes(M, 1) > shared_limit):
                M += 1
            red_bufs = 2 if shared_bytes(M, 2) <= shared_limit else 1
        QM = q ** M
        if QM > 6561:
            raise ValueError(f"{self.name}: a {self.spatial} field with arity {self.arity} needs {QM} leaves per "
                             f"invocation (device limit {max_inv} invocations per workgroup); use a smaller field")
        tpf = N // QM
        loc = (QM * q - q) // (q - 1)
        ups = (tpf * q - 1) // (q - 1)
        self._local = tpf * fpw
        self._fpw = fpw
        self._mode = mode
        return dict(LOCAL_X=tpf * fpw, P=self.arity, DIMS=self.dims, L=L, Q=q, N=N, SIDE=self.spatial[-1], M=M,
                    QM=QM, LOC=loc, UPS=ups, TPF=tpf, FPW=fpw, REDUCE=mode,
                    RED_BUFS=red_bufs if mode == 2 else 2)

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
        self.kernel = self.ctx.kernel(self.shader, spec=self._kernel_spec())

    def _kernel_spec(self):
        return dict(self._spec)

    def new_obs(self, rows):
        return ObsBuffers(self.ctx, rows, self.batch, self.levels)

    # -- loop budget: CPU drivers (llvmpipe) cap the loop iterations of one shader invocation at
    # 65535 (all loops together) and silently exit the loops beyond it, so on CPU devices a recording
    # is split into dispatches that each stay under _LOOP_BUDGET (estimated per invocation). GPUs
    # run a whole recording in one dispatch.
    def _loop_costs(self):
        """(fixed, per_step, per_run, per_obs, per_snap) loop iterations of step_tree.comp."""
        sp = self._spec
        LOC, QM, M, L, TPF, UP, Q = sp["LOC"], sp["QM"], sp["M"], sp["L"], sp["TPF"], sp["L"] - sp["M"], sp["Q"]
        nat = (L + 1) if self.dims == 2 else 0
        per_snap = QM * (3 + nat) + LOC + 2 * M + 2 * UP + 4
        fixed = 2 * L + LOC + 2 * UP + 16 + (LOC + UP + 2) + per_snap          # coef load, coef + leaf store
        decompose = QM * (1 + nat) + LOC * (Q + 4) + TPF + ((TPF * Q) // max(Q - 1, 1)) * (Q + 2) + 2 * UP + 32
        per_obs = LOC + 4 * M + 3 * UP + 2 * QM + (L + 3) * (TPF + 2) + 3 * L + 8
        return fixed + (0 if self._coef_valid else decompose), LOC + UP, 2 * (LOC + UP + M) + 4, per_obs, per_snap

    def _plan(self, n, every, snap_every, observe_first, snap_first):
        """Dispatches ``(k0, steps, row0, srow0, observe_first, snap_first)`` covering n steps."""
        every, snap_every = int(every or 0), int(snap_every or 0)
        if self.ctx.info.get("type") != "cpu":
            return [(0, n, 0, 0, observe_first, snap_first)]
        fixed, per_step, per_run, per_obs, per_snap = self._loop_costs()
        budget = _LOOP_BUDGET - fixed - (per_obs if observe_first else 0) - (per_snap if snap_first else 0)
        out, k0 = [], 0
        row0, srow0 = int(bool(observe_first)), int(bool(snap_first))
        first = True
        while first or k0 < n:
            room = budget if first else budget + (per_obs if observe_first else 0) + (per_snap if snap_first else 0)
            steps, cost = 0, per_run
            while k0 + steps < n:
                g = k0 + steps + 1
                c = per_step + (per_obs + per_run if every and g % every == 0 else 0) \
                    + (per_snap + per_run if snap_every and g % snap_every == 0 else 0)
                if cost + c > room and steps > 0:
                    break
                cost += c
                steps += 1
            if not first and steps == 0:
                break
            out.append((k0, steps, 0 if first else row0, 0 if first else srow0,
                        observe_first and first, snap_first and first))
            if not first:
                row0 += (sum(1 for g in range(k0 + 1, k0 + steps + 1) if g % every == 0) if every else 0)
                srow0 += (sum(1 for g in range(k0 + 1, k0 + steps + 1) if g % snap_every == 0) if snap_every else 0)
            else:
                row0 = int(bool(observe_first)) + (sum(1 for g in range(1, steps + 1) if g % every == 0) if every else 0)
                srow0 = int(bool(snap_first)) + (sum(1 for g in range(1, steps + 1) if g % snap_every == 0)
                                                 if snap_every else 0)
            k0 += steps
            first = False
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

    def _push(self, n, every, snap_every, observe_first, snap_first, load_coef, row0, srow0, k0, last):
        return dict(batch=self.batch, steps=int(n), every=int(every or 0), snap_every=int(snap_every or 0),
                    observe_first=int(bool(observe_first)), snap_first=int(bool(snap_first)),
                    load_coef=int(bool(load_coef)), row0=int(row0), srow0=int(srow0), k0=int(k0),
                    write_x=int(bool(last)))

    def record(self, rec, state, n, every=0, snap_every=0, observe_first=False, snap_first=False, obs=None,
               snap=None):
        _check_buffers(every, snap_every, observe_first, snap_first, obs, snap)
        dummy = self._dummy_array()
        groups = self.kernel.grid(-(-self.batch // self._fpw))
        coef = self._coef_array()
        plan = self._plan(int(n), every, snap_every, observe_first, snap_first)
        for i, (k0, steps, row0, srow0, ofirst, sfirst) in enumerate(plan):
            push = self._push(steps, every, snap_every, ofirst, sfirst, self._coef_valid, row0, srow0, k0,
                              i == len(plan) - 1)
            rec.dispatch(self.kernel, groups, state, self._param_buf,
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

    def _loop_costs(self):
        """Tree costs, with a coupled step: new leaves top-down, decomposition, chain (per step)."""
        fixed, per_step, per_run, per_obs, per_snap = super()._loop_costs()
        if self.eps != 0.0:
            sp = self._spec
            LOC, QM, TPF, UP, Q = sp["LOC"], sp["QM"], sp["TPF"], sp["L"] - sp["M"], sp["Q"]
            ups = sp["UPS"]
            per_step = 4 * LOC + 2 * QM + 2 * TPF + ups * (Q + 2) + 4 * UP + 4 * sp["M"] + 16
            per_run += LOC + 2 * sp["M"] + 2 * UP
        return fixed, per_step, per_run, per_obs, per_snap

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
