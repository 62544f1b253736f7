"""Headless batch rollouts (SPEC sections 3 and 5): evolve B fields for K steps on the device.

One call::

    r = vkbands.rollout("tree", x0, 200, every=1, snapshot_every=50, tau=1.0)
    r = vkbands.rollout(vkbands.Setup("tree", depth=6, batch=256, tau=1.0), steps=200)   # or from a Setup
    r.energies        # (T, B, L+1) band energies [E_0..E_{L-1}, E_c] at steps r.steps
    r.mass, r.min, r.max, r.nonfinite          # (T, B)
    r.snapshots       # (S,) + x0.shape at steps r.snapshot_steps
    r.final           # the state after the last step, shape of x0
    r.deepest_surviving_band(), r.kill_steps(), r.contraction_rates(), r.leakage()

``x0``: ``(N,)`` / ``(B, N)`` (pass ``dims=1``) / ``(H, W)`` / ``(B, H, W)``; Gray-Scott stacks u then v:
``(2, H, W)`` / ``(B, 2, H, W)``. Observations are taken at steps ``0, every, 2*every, ... <= steps``
(``every=None``: none), snapshots at ``0, snapshot_every, ...``. The B axis of the observables is
always there (B = 1 for an unbatched x0). System parameters: see :mod:`vkbands.systems` and
docs/SYSTEMS.md; they are checked against the system's spec before anything runs (a ValueError naming
the parameter, the value and what is allowed). With a :class:`vkbands.Setup` instead of a system name,
x0 (default ``setup.x0()``), dims and the parameters come from the set-up.

How it runs: the steps are recorded once into a command buffer per chunk (tree/coupled: ONE dispatch
runs the whole chunk in shared memory; heat/Gray-Scott: ping-pong step dispatches plus observation
dispatches), the chunk is replayed until the rollout is done, and each chunk's observables and
snapshots are read back once. A NaN/Inf seen in a chunk's observables stops the rollout with
:class:`NonFiniteError` naming the step and batch member. A progress bar (tqdm, steps/s) appears on
rollouts that last more than a second.

Incremental use (the viewer): :class:`Simulation` is the stepping object behind ``rollout``::

    sim = Simulation(ctx, "grayscott", x0, preset="spots")    # or Simulation(ctx, setup)
    sim.state                  # DeviceArray (B, ...) of the current state (stays the same buffer)
    sim.advance(10)            # record + submit 10 steps, sim.step += 10
    sim.record_steps(rec, 10)  # or record 10 steps into your own Recorder (does not touch sim.step;
                               # add n to sim.step yourself each time that recording runs)
    sim.observe()              # observables of the current state (NumPy dict, one row)
    sim.read()                 # the state as NumPy, shape of x0
    sim.set_params(F=0.03)     # applies to steps recorded afterwards
    sim.reset()                # back to x0 (or sim.reset(new_x0)), step 0
    sim.close()

The tree system keeps its state in the band basis between dispatches (exact decay, no re-decomposition
round-off); ``state`` holds the leaves after every recorded run. If you write ``state`` yourself, call
``sim.reset(x)`` instead (or ``sim.system.invalidate()`` before recording).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from vkbands.engine import as_host_array, default_context
from vkbands.engine.errors import LimitError, _human

from . import reference as R
from ._owner import Owner
from . import systems
from .setup import Setup
from .systems import ParamSpec, make_system

__all__ = ["rollout", "Rollout", "Simulation", "NonFiniteError"]

_CHUNK_BYTES = 64 << 20          # device buffers for one chunk's observables + snapshots
_FUSED_CHUNK_STEPS = 2000        # steps per replayed dispatch for tree/coupled
_GRID_CHUNK_STEPS = 100          # steps recorded per replayed command buffer for the grid systems
_STEPS = ParamSpec("steps", 0, "int", lo=0)
_EVERY = ParamSpec("every", 1, "int", lo=1)
_SNAPSHOT_EVERY = ParamSpec("snapshot_every", None, "int", lo=1)


class NonFiniteError(FloatingPointError):
    """A NaN or Inf appeared in the state. Attributes: ``step`` (the first observed step where it
    was seen), ``member`` (batch index), ``system``, ``last_finite_step``."""

    def __init__(self, system, step, member, last_finite_step=None, how="observed"):
        self.system, self.step, self.member, self.last_finite_step = system, int(step), int(member), last_finite_step
        prev = "" if last_finite_step is None else f"; the previous {how} state (step {last_finite_step}) was finite"
        super().__init__(f"{system} rollout: NaN/Inf in the state at step {self.step}, batch member {self.member}"
                         f"{prev}. Unstable parameters (step size, rates > 1, coupling eps) or a non-finite x0?")


def _check_state_fits(ctx, system, x0, batch):
    """Refuse, before any allocation or recording, a state the step kernels cannot bind whole."""
    limit = ctx.max_storage_buffer_range
    if x0.nbytes > limit:
        per_member = max(1, x0.nbytes // max(batch, 1))
        raise LimitError(f"{system}: x0 of shape {x0.shape} float32 is {_human(x0.nbytes)} ({x0.nbytes} bytes), over "
                         f"this device's maxStorageBufferRange of {_human(limit)} ({limit} bytes): run at most "
                         f"{limit // per_member} batch members per rollout")


# ----------------------------------------------------------------------------- Simulation
class Simulation(Owner):
    """An evolving batch of fields on the device (see the module docstring).

    Attributes: ``ctx``, ``system`` (the :mod:`vkbands.systems` object), ``name``, ``state``
    (DeviceArray ``system.state_shape``), ``step``, ``batched``, ``shape`` (of x0), ``arity``,
    ``levels``, ``dims``, ``batch``, ``params``.
    """

    def __init__(self, ctx, system, x0=None, dims=None, **params):
        self.ctx = ctx or default_context()
        if isinstance(system, Setup):
            system, x0, dims, params = _from_setup(system, x0, dims, params)
        elif x0 is None:
            raise TypeError("Simulation needs x0 (or a vkbands.Setup instead of a system name)")
        spec = systems.get(system)
        x0 = as_host_array(x0, np.float32, "x0")
        self.name, self.shape = spec.name, x0.shape
        _check_state_fits(self.ctx, spec.name, x0, spec.resolve_shape(x0.shape, dims)[1])
        self.system = self._own(make_system(self.ctx, spec, x0.shape, dims=dims, **params))
        self.batched = x0.ndim == len(self.system.state_shape)
        self._x0 = x0.copy()
        self.state = self._own(self.ctx.array(x0.reshape(self.system.state_shape)))
        self.step = 0
        self._obs1 = None

    # properties -------------------------------------------------------------
    arity = property(lambda self: self.system.arity)
    levels = property(lambda self: self.system.levels)
    dims = property(lambda self: self.system.dims)
    batch = property(lambda self: self.system.batch)
    params = property(lambda self: self.system.params)

    # stepping ---------------------------------------------------------------
    def record_steps(self, rec, n, every=0, snap_every=0, observe_first=False, snap_first=False, obs=None,
                     snap=None):
        """Record ``n`` steps of ``state`` (in place) into ``rec``; optional observables/snapshots as
        :meth:`vkbands.systems` ``record``. Does not change ``step``."""
        self.system.record(rec, self.state, int(n), every=every, snap_every=snap_every,
                           observe_first=observe_first, snap_first=snap_first, obs=obs, snap=snap)

    def advance(self, n=1):
        """Run ``n`` steps now (one submission); returns self."""
        with self.ctx.recorder() as rec:
            self.record_steps(rec, n)
        self.step += int(n)
        return self

    def observe(self) -> dict:
        """Observables of the current state: ``energies (B, L+1)``, ``mass``, ``min``, ``max`` (B,)
        float64, ``nonfinite`` (B,) bool."""
        if self._obs1 is None:
            self._obs1 = self._own(self.system.new_obs(1))
        with self.ctx.recorder() as rec:
            self.system.record(rec, self.state, 0, observe_first=True, obs=self._obs1)
        return {k: v[0] for k, v in self._obs1.read(1).items()}

    def read(self) -> np.ndarray:
        """The current state as NumPy, shape of x0."""
        return self.state.numpy().reshape(self.shape)

    def set_params(self, **params):
        self.system.set_params(**params)
        return self

    def reset(self, x0=None):
        """Back to ``x0`` (the initial state, or a new one of the same shape) at step 0."""
        if x0 is not None:
            x0 = as_host_array(x0, np.float32, "x0")
            if x0.shape != self.shape:
                raise ValueError(f"x0 has shape {x0.shape}; this simulation holds {self.shape}")
            self._x0 = x0.copy()
        self.state.upload(self._x0.reshape(self.system.state_shape))
        self.system.invalidate()
        with self.ctx.recorder() as rec:      # tree: refresh the band state now (recordings replay it)
            self.system.record(rec, self.state, 0)
        self.step = 0
        return self



# ----------------------------------------------------------------------------- results
@dataclass
class Rollout:
    """Result of :func:`rollout`. Arrays: ``steps (T,)``, ``energies (T, B, L+1)``, ``mass``,
    ``min``, ``max`` (T, B) float64, ``nonfinite (T, B)``, ``snapshot_steps (S,)``,
    ``snapshots (S,) + x0.shape`` float32 (None without snapshots), ``final`` (shape of x0).
    ``timings``: seconds for setup (compile/record), run, and steps/s."""
    system: str
    params: dict
    arity: int
    levels: int
    dims: int
    batch: int
    n_steps: int
    steps: np.ndarray
    energies: np.ndarray
    mass: np.ndarray
    min: np.ndarray
    max: np.ndarray
    nonfinite: np.ndarray
    snapshot_steps: np.ndarray
    snapshots: np.ndarray | None
    final: np.ndarray
    timings: dict = field(default_factory=dict)

    def deepest_surviving_band(self, tau=1e-3):
        """``D_t = max{l : E_l(t) > tau E_l(0)}`` per observed step and member, int64 (T, B)."""
        return R.deepest_surviving_band(self.energies, tau)

    def kill_steps(self, tau=1e-3):
        """First observed step with ``E_l(t) < tau E_l(0)`` per member and band (-1: never), (B, L+1)."""
        return R.kill_steps(self.energies, self.steps, tau)

    def contraction_rates(self):
        """Slope of ``log E_l(t)`` vs t per member and band, (B, L+1) (tree: 2 log lambda_l)."""
        return R.contraction_rates(self.energies, self.steps)

    @property
    def spec(self):
        """The system's :class:`vkbands.systems.SystemSpec`."""
        return systems.get(self.system)

    def leakage(self, state=None):
        """Normalised Gram matrix of the bands of ``state`` (default: ``final``; its observed field),
        (L+1, L+1)."""
        x = self.final if state is None else state
        x = self.spec.observed_field(x, self.dims)
        return R.leakage(x, self.arity, dims=self.dims)

    def closed_form(self):
        """The system's closed form of the energies, (T, B, L+1) (tree diffusion: ``E_l(0) *
        rates[l]**(2 t)``, E_c constant), or None where it has none."""
        f = self.spec.closed_form
        return None if f is None else f(self)

    def summary(self, tau=1e-3) -> dict:
        """JSON-friendly derived quantities (per member lists)."""
        out = dict(system=self.system, steps=self.n_steps, batch=self.batch, arity=self.arity, levels=self.levels)
        if len(self.steps):
            out["deepest_surviving_band_final"] = self.deepest_surviving_band(tau)[-1].tolist()
            out["kill_steps"] = self.kill_steps(tau).tolist()
            rates = self.contraction_rates()
            out["contraction_rates"] = [[None if not np.isfinite(v) else float(v) for v in row] for row in rates]
            out["mass_initial"] = self.mass[0].tolist()
            out["mass_final"] = self.mass[-1].tolist()
        return out


# ----------------------------------------------------------------------------- rollout
def _observation_steps(steps, every):
    return np.arange(0, steps + 1, every, dtype=np.int64) if every else np.zeros(0, np.int64)


def _from_setup(setup, x0, dims, params):
    """(system, x0, dims, params) of a Setup (x0 given: used instead of ``setup.x0()``)."""
    if params or dims is not None:
        raise TypeError(f"with a Setup, dims and parameters come from it; got {sorted(params) or ['dims']}: use "
                        "setup.replace(...)")
    return setup.system, (setup.x0() if x0 is None else x0), setup.dims, dict(setup.params)


def rollout(system, x0=None, steps=None, every=1, snapshot_every=None, *, dims=None, ctx=None, progress=None,
            chunk=None, **params) -> Rollout:
    """Evolve ``x0`` for ``steps`` steps of ``system`` (a registered name, ``vkbands.systems.names()``,
    or a :class:`vkbands.Setup`: then ``rollout(setup, steps=...)``, x0 defaulting to ``setup.x0()``)
    on the device; see the module docstring. ``every=None``: no observables; ``snapshot_every=None``:
    no snapshots. ``progress``: True/False (default: a bar when the run lasts more than 1 s).
    ``chunk``: steps per replayed recording (default: chosen from memory and system).
    Raises :class:`NonFiniteError` when a NaN/Inf appears; a ValueError for an argument or parameter
    that is not allowed (naming it, the value and what is allowed), before anything runs."""
    if isinstance(system, Setup):
        if steps is None and x0 is not None and np.ndim(x0) == 0:
            x0, steps = None, x0             # rollout(setup, 200)
        system, x0, dims, params = _from_setup(system, x0, dims, params)
    elif x0 is None:
        raise TypeError("rollout() needs x0 (or a vkbands.Setup instead of a system name)")
    if steps is None:
        raise TypeError("rollout() needs steps")
    steps = _STEPS.convert(steps)
    every = _EVERY.convert(every) or 0
    snap_every = _SNAPSHOT_EVERY.convert(snapshot_every) or 0
    t_setup = time.perf_counter()
    sim = Simulation(ctx, system, x0, dims=dims, **params)
    try:
        return _run(sim, steps, every, snap_every, progress, chunk, t_setup)
    finally:
        sim.close()


def _chunk_steps(sim, steps, every, snap_every, chunk):
    """Steps per replayed recording: a multiple of every and snapshot_every, bounded by memory."""
    unit = math.lcm(every or 1, snap_every or 1)
    sys = sim.system
    if chunk is not None:
        cap = int(chunk)
    else:
        per_step = 0.0
        if every:
            per_step += 4 * sys.batch * (sys.levels + 5) * sys.spec.fields_per_member / every
        if snap_every:
            per_step += 4 * int(np.prod(sys.state_shape)) / snap_every
        cap = _FUSED_CHUNK_STEPS if sys.fused else _GRID_CHUNK_STEPS
        if per_step:
            cap = min(cap, max(1, int(_CHUNK_BYTES // per_step)))
    k = max(unit, (cap // unit) * unit)
    if not sys.fused and k % 2:
        k *= 2                      # ping-pong: an even chunk ends in the state buffer (no copy)
    return min(k, max(unit, (steps // unit) * unit))


def _run(sim, steps, every, snap_every, progress, chunk, t_setup):
    """Run ``steps`` steps of ``sim`` in replayed chunks and gather a :class:`Rollout`."""
    with _Run(sim, steps, every, snap_every, chunk) as run:
        run.observe_start()
        t_run = time.perf_counter()
        run.advance(progress)
        run_s = time.perf_counter() - t_run
        final = sim.read()
        if not every and not np.all(np.isfinite(final)):
            run.raise_nonfinite_from_snapshots(final)
        return run.result(final, setup_s=t_run - t_setup, run_s=run_s)


class _Run(Owner):
    """The buffers and host columns of one rollout: chunk size ``K``, one observation buffer of a
    chunk's rows and one snapshot buffer (read back once per chunk), the rows gathered so far."""

    def __init__(self, sim, steps, every, snap_every, chunk):
        self.sim, self.steps, self.every, self.snap_every = sim, steps, every, snap_every
        system = sim.system
        self.K = _chunk_steps(sim, steps, every, snap_every, chunk)
        self.obs_rows = self.K // every if every else 0
        self.snap_rows = self.K // snap_every if snap_every else 0
        self.obs = self._own(system.new_obs(max(self.obs_rows, 1))) if every else None
        self.snap = (self._own(sim.ctx.zeros((max(self.snap_rows, 1),) + system.state_shape))
                     if snap_every else None)
        self.cols = {k: [] for k in ("energies", "mass", "min", "max", "nonfinite")}
        self.snaps = []
        self.last_finite = None

    def _record(self, rec, n, first=False):
        self.sim.system.record(rec, self.sim.state, n, every=0 if first else self.every,
                               snap_every=0 if first else self.snap_every,
                               observe_first=first and bool(self.every), snap_first=first and bool(self.snap_every),
                               obs=self.obs, snap=self.snap)

    def observe_start(self):
        """Step 0: observables / snapshot of x0 (tree: also the band state the replays start from)."""
        with self.sim.ctx.recorder() as rec:
            self._record(rec, 0, first=True)
        self.collect(1 if self.every else 0, 1 if self.snap_every else 0, -1)

    def advance(self, progress):
        """All steps: full chunks replayed from one recording, then the remainder."""
        full, rem = divmod(self.steps, self.K)
        bar = _progress_bar(progress, self.steps, self.sim.name)
        done = 0
        try:
            if full:
                chunk_rec = self._own(self.sim.ctx.recorder())
                self._record(chunk_rec, self.K)
                for _ in range(full):
                    chunk_rec.submit()
                    self.collect(self.obs_rows, self.snap_rows, done)
                    done += self.K
                    if bar is not None:
                        bar.update(self.K)
            if rem:
                with self.sim.ctx.recorder() as rec:
                    self._record(rec, rem)
                self.collect(rem // self.every if self.every else 0,
                             rem // self.snap_every if self.snap_every else 0, done)
                if bar is not None:
                    bar.update(rem)
        finally:
            if bar is not None:
                bar.close()

    def collect(self, n_obs, n_snap, t0):
        """Read a chunk's rows (its local steps start after global step ``t0``; -1: step 0) and stop
        with :class:`NonFiniteError` at the first NaN/Inf."""
        if n_obs:
            o = self.obs.read(n_obs)
            for k in self.cols:
                self.cols[k].append(o[k])
            bad = np.argwhere(o["nonfinite"])
            if len(bad):
                r, member = bad[0]
                if t0 < 0:
                    t, prev = 0, None
                else:
                    t = t0 + (r + 1) * self.every
                    prev = t0 + r * self.every if r > 0 else self.last_finite
                raise NonFiniteError(self.sim.name, t, member, prev)
            self.last_finite = t0 + n_obs * self.every if t0 >= 0 else 0
        if n_snap:
            self.snaps.append(self.snap.numpy()[:n_snap].copy())

    def raise_nonfinite_from_snapshots(self, final):
        """No observables: locate the first non-finite snapshot, else report the last step."""
        batch = self.sim.system.batch
        member = int(np.argmax(~np.isfinite(final.reshape((batch, -1))).all(axis=1)))
        step_bad, prev = self.steps, None
        snap_steps = _observation_steps(self.steps, self.snap_every)
        for t, s in zip(snap_steps, (np.concatenate(self.snaps) if self.snaps else [])):
            sm = s.reshape((batch, -1))
            if not np.all(np.isfinite(sm)):
                step_bad, member = int(t), int(np.argmax(~np.isfinite(sm).all(axis=1)))
                break
            prev = int(t)
        raise NonFiniteError(self.sim.name, step_bad, member, prev, how="snapshot")

    def result(self, final, setup_s, run_s) -> "Rollout":
        sim, system, steps = self.sim, self.sim.system, self.steps
        L, B = system.levels, system.batch
        T = len(_observation_steps(steps, self.every))
        cat = {k: (np.concatenate(v) if v else np.zeros((0, B) + ((L + 1,) if k == "energies" else ())))
               for k, v in self.cols.items()}
        snapshots = np.concatenate(self.snaps).reshape((-1,) + sim.shape) if self.snaps else None
        return Rollout(system=sim.name, params=dict(system.params), arity=system.arity, levels=L, dims=system.dims,
                       batch=B, n_steps=steps, steps=_observation_steps(steps, self.every)[:T],
                       energies=cat["energies"], mass=cat["mass"], min=cat["min"], max=cat["max"],
                       nonfinite=cat["nonfinite"].astype(bool),
                       snapshot_steps=_observation_steps(steps, self.snap_every), snapshots=snapshots, final=final,
                       timings=dict(setup_s=setup_s, run_s=run_s, chunk_steps=self.K,
                                    steps_per_s=(steps / run_s if run_s > 0 else float("inf"))))


def _progress_bar(progress, total, name):
    """A tqdm bar (``progress`` True), none (False), or one that shows after 1 s (None)."""
    if not (progress or progress is None):
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="step", desc=f"{name} rollout", delay=0 if progress else 1.0,
                leave=False, dynamic_ncols=True)
