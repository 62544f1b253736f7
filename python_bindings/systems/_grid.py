"""The 2-D grid systems' base (:class:`GridSystem`): periodic stencil steps by ping-pong dispatches
(``step_heat.comp``, ``step_grayscott.comp``, ...), observables through ``BandPlan``."""
from __future__ import annotations

import math

import numpy as np

from .. import reference as R
from ._base import ARITY, ObsBuffers, SystemBase, check_buffers

__all__ = ["GridSystem", "default_arity"]

_GRID_RY = 8          # rows per invocation of the stencil kernels
_GRID_LOCAL = 64


def _prime_factors(n):
    out, q = [], 2
    while q * q <= n:
        if n % q == 0:
            out.append(q)
            while n % q == 0:
                n //= q
        q += 1
    return out + ([n] if n > 1 else [])


def default_arity(spatial):
    """The arity of the band observables of a grid of any size (SPEC 1): 2 or 3, whichever leaves the
    smaller coarse grid (the larger ``p**L``; a tie: 2), so powers of 3 get 3 and powers of 2 get 2 as
    before, 100 x 100 gets 2 (L = 2, coarse 25 x 25) and 54 x 81 gets 3; when neither divides every
    size, the smallest prime that does (e.g. 5 for 25 x 35); 2 when the sizes share no factor (L = 0)."""
    reduction = {p: p ** R.levels(spatial, p, len(spatial)) for p in (2, 3)}
    if max(reduction.values()) > 1:
        return 3 if reduction[3] > reduction[2] else 2
    factors = _prime_factors(math.gcd(*(int(n) for n in spatial)))
    return factors[0] if factors else 2


# ----------------------------------------------------------------------------- grid systems
class GridSystem(SystemBase):
    """A 2-D stencil system stepped by ping-pong dispatches of ``shader`` (fields ``(B[, k], H, W)``,
    ``k`` = the spec's fields per member), observed by ``BandPlan.record_observables``.

    A subclass sets ``shader`` (a file in ``shaders/`` or a path; spec constants ``LOCAL_X``, ``RY``:
    one invocation updates 4 cells x RY rows of one member, see ``grid_common.glsl``) and ``_push()``
    (the push constants from ``self.params``); ``set_params`` checks parameters against the spec and
    ``_resolve`` fills in the defaults (override it for presets).

    Per-member parameters (SPEC 3.2b): a subclass that lists ``member_params`` (names, in order) gets
    them in a (B, S) float32 buffer bound after src and dst (binding 2), one row per member (shared
    values repeated), which its kernel reads at row b; any of them may then be given as B numbers.
    Without ``member_params`` (a kernel reading push constants only) a per-member value is refused.

    Several fields per member (Gray-Scott: u, v): an observation runs the band passes over the observed
    field of each member only (``BandPlan.record_observables`` reading every ``k``-th field); the NaN/Inf
    flag of the others comes from the step kernel (``kernel_flags``): binding 3 of the kernel is a (B,)
    flag buffer that a step sets to 1.0 when a new value of an unobserved field is NaN/Inf and never
    clears (a NaN/Inf stays one in those systems: the flag of a state is "non-finite now"); spec constant
    ``MODE`` = 1 sets it from the state alone. The flags restart from the state (cleared, then a MODE 1
    dispatch) in the first ``record`` after the system is made or ``invalidate()`` is called; an
    observation copies them into its row (``ObsBuffers.flags``, OR-ed into ``nonfinite``)."""
    shader = "?"
    member_params = None      # e.g. ("alpha",): the kernel's parameter buffer row, in order
    kernel_flags = False      # True: the kernel flags the unobserved fields (binding 3, MODE), see above
    # True: the kernel's spec constant OBS = 1 also writes the observation's levels 1-2 (binding 3; see
    # grid_common.glsl obs_block) where the tile allows (p = 2, W % 4 == 0, H % 8 == 0, L >= 3): an
    # observed step then runs that variant and the remaining band passes on a 16x smaller grid
    # (BandPlan.record_observables_from). Unobserved steps run the OBS = 0 pipeline (binding 3 unused).
    fused_levels = False
    obs_binding = False       # True: the kernel declares that binding (OBS = 0 steps bind a dummy there)

    def __init__(self, ctx, B, spatial, dims, arity=None, **params):
        super().__init__(ctx, B, spatial, dims)
        H, W = self.spatial
        self.arity = default_arity(self.spatial) if arity is None else ARITY.convert(arity)
        # any size: the largest L with p**L dividing H and W (L = 0: E_c alone, the coarse grid is the field)
        self.levels = R.levels(self.spatial, self.arity, 2)
        k = self.fields_per_member = self.spec.fields_per_member
        self.pick = self.spec.observed_index if k > 1 else None     # ObsBuffers: which field to report
        self.state_shape = (self.batch,) + ((k,) if k > 1 else ()) + self.spatial
        self.fields = self.batch * k
        self.params, self._raw = {}, {}
        self.set_params(**params)        # checked before anything is allocated
        defines = {"ALIGNED": 1} if W % 4 == 0 else None
        spec = {"LOCAL_X": _GRID_LOCAL, "RY": _GRID_RY}
        self.kernel = ctx.kernel(self.shader, defines=defines, spec=spec)
        inv = (-(-W // 4)) * (-(-H // _GRID_RY)) * self.batch
        self._groups = self.kernel.grid(-(-inv // _GRID_LOCAL))
        self._other = ctx.zeros(self.state_shape)
        self._own(self._other)
        # observables: band energies, mass, min, max, NaN/Inf flag of the observed fields in one read of
        # them (BandPlan.record_observables); the unobserved fields' flags from the step kernel
        self._plan = None
        self._flags = self._scan = None
        self._flags_stale = True
        if self.kernel_flags:
            self._flags = self._own(ctx.zeros((self.batch,)))
            self._scan = ctx.kernel(self.shader, defines=defines, spec=dict(spec, MODE=1))
        self._fuse = (self.fused_levels and self.arity == 2 and W % 4 == 0 and H % _GRID_RY == 0
                      and _GRID_RY % 4 == 0 and self.levels >= 3)
        self._obs_kernel = self._levels_buf = None
        if self._fuse:
            self._obs_kernel = ctx.kernel(self.shader, defines=defines, spec=dict(spec, OBS=1))

    def set_params(self, **params):
        """Takes effect at the next ``record``; checked against the spec (TypeError for unknown names,
        ValueError for values)."""
        given = self._check_params(params)
        if self.member_params is None:
            for name, v in given.items():
                if isinstance(v, list):
                    raise ValueError(f"{name}: {len(v)} values given; allowed: one value for the whole batch "
                                     f"(the {self.name} kernel takes its parameters as push constants: no "
                                     f"per-member values)")
        merged = self.spec.merge(self._raw, given)
        resolved = self._resolve(merged, given)
        if self.member_params is not None:
            table = np.stack([self._per_member(resolved[n]) for n in self.member_params], axis=1)
            self._member_buffer(table)
            resolved = {k: (self._reported(v) if k in self.member_params else v) for k, v in resolved.items()}
        self.params, self._raw = dict(arity=self.arity, **resolved), merged

    def _resolve(self, merged, given):
        """The resolved parameters (every one of the spec's; defaults where not set)."""
        return {p.name: (merged[p.name] if merged.get(p.name) is not None else p.default) for p in self.spec.params}

    def _push(self):
        raise NotImplementedError

    def _bandplan(self):
        if self._plan is None:
            from ..bands import BandPlan
            observed = self.batch if self.kernel_flags else self.fields
            self._plan = BandPlan(self.ctx, self.spatial, self.arity, batch=observed)
        return self._plan

    def new_obs(self, rows):
        if self.kernel_flags:
            return ObsBuffers(self.ctx, rows, self.batch, self.levels, fields=self.batch, flags=True,
                              minmax=self.observe_minmax)
        return ObsBuffers(self.ctx, rows, self.batch, self.levels, fields=self.fields, pick=self.pick,
                          minmax=self.observe_minmax)

    def invalidate(self):
        """The state was written from outside: the next ``record`` restarts the kernel's flags from it."""
        self._flags_stale = True

    def _refresh_flags(self, rec, state):
        """The unobserved fields' flags of ``state`` itself (cleared, then one MODE 1 dispatch)."""
        rec.fill(self._flags, 0)
        unused = (self._dummy_array(),) if self.obs_binding else ()
        rec.dispatch(self._scan, self._groups, state, self._other, self._param_buf, self._flags, *unused,
                     push=self._push())
        self._flags_stale = False

    def _observe(self, rec, x, obs, row):
        plan = self._bandplan()
        if not self.kernel_flags:
            flat = x.reshape(self.fields, *self.spatial)
            plan.record_observables(rec, flat, obs.energies, obs.stats, row=row)
            return
        n = plan.geo.N
        k = self.fields_per_member
        plan.record_observables(rec, x, obs.energies, obs.stats, row=row, field_offset=self.pick * n,
                                field_stride=k * n)
        rec.copy(self._flags, obs.flags, nbytes=self.batch * 4, dst_offset=row * self.batch * 4)

    def record(self, rec, state, n, every=0, snap_every=0, observe_first=False, snap_first=False, obs=None,
               snap=None, phase=0):
        check_buffers(every, snap_every, observe_first, snap_first, obs, snap)
        phase = int(phase)
        orow = srow = 0
        if self.kernel_flags and self._flags_stale:
            self._refresh_flags(rec, state)
        if observe_first:
            self._observe(rec, state, obs, orow)
            orow += 1
        if snap_first:
            rec.copy(state, snap, nbytes=state.nbytes, dst_offset=srow * state.nbytes)
            srow += 1
        push = self._push()
        cur, nxt = state, self._other
        extra = (self._param_buf,) if self.member_params is not None else ()
        extra += (self._flags,) if self.kernel_flags else ()
        plain = extra + ((self._dummy_array(),) if self.obs_binding else ())
        for k in range(1, int(n) + 1):
            observed = every and (phase + k) % every == 0
            if observed and self._fuse:
                plan = self._bandplan()
                if self._levels_buf is None:
                    self._levels_buf = self._own(self.ctx.zeros((plan.level_floats(2),)))
                rec.dispatch(self._obs_kernel, self._groups, cur, nxt, *extra, self._levels_buf, push=push)
                plan.record_observables_from(rec, self._levels_buf, obs.energies, obs.stats, row=orow, first=2)
                if self.kernel_flags:
                    rec.copy(self._flags, obs.flags, nbytes=self.batch * 4, dst_offset=orow * self.batch * 4)
                cur, nxt = nxt, cur
                orow += 1
            else:
                rec.dispatch(self.kernel, self._groups, cur, nxt, *plain, push=push)
                cur, nxt = nxt, cur
                if observed:
                    self._observe(rec, cur, obs, orow)
                    orow += 1
            if snap_every and (phase + k) % snap_every == 0:
                rec.copy(cur, snap, nbytes=state.nbytes, dst_offset=srow * state.nbytes)
                srow += 1
        if cur is not state:
            rec.copy(cur, state)

    def close(self):
        if self._plan is not None:
            self._plan.close()
            self._plan = None
        super().close()
