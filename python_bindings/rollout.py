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

How it runs: the steps are recorded into a command buffer per chunk (tree/coupled: a few fused
dispatches run the whole chunk in shared memory; heat/Gray-Scott: ping-pong step dispatches plus
observation dispatches) and replayed; each chunk's observables and snapshots are read back once.
Chunks are sized by time, not by ``every``/``snapshot_every``: the first one is small and timed, the
next ones cover about ``_TARGET_S`` (0.5 s) of device work, within a bounded number of commands
(``_MAX_STEPS``) and of row memory (``_CHUNK_BYTES``); a chunk may end between observations (it is
recorded with its phase, so rows land at their exact steps). A progress bar (tqdm, steps/s) appears
on rollouts that last more than a second.

Every way a rollout ends keeps what it computed:

- **NaN/Inf**: each chunk ends with an observation of the state (also with ``every=None``) and starts
  by saving the state on the device; the chunk where a NaN/Inf first shows is re-run from that saved
  state by bisection, so :class:`NonFiniteError` names the exact first non-finite step and member, and
  its ``rollout`` is the partial :class:`Rollout` up to the last finite step (``status="nonfinite"``:
  its observations and snapshots, ``final`` = the last finite state);
- **interruption**: SIGINT (and SIGTERM where it raises KeyboardInterrupt, as in the ``vkbands``
  command) while ``rollout`` runs in the main thread with Python's default handler lets the chunk in
  flight finish (about a second at most), then :class:`RolloutInterrupted` (a KeyboardInterrupt) is
  raised; its ``rollout`` has ``status="interrupted"``, every observation so far plus one of the state
  it stopped at, the snapshots taken, and ``final`` at ``n_steps``. Any other KeyboardInterrupt
  raised while it runs is turned into the same;
- **any other error after the first step** (a lost device...): raised as it is, with the partial
  Rollout as its ``rollout`` attribute (``status="failed"``; ``final`` None when unreadable).

Memory needs (host: x0, snapshots, observations; device: state, saved state, step buffers, chunk rows)
are estimated before anything is allocated; a run over this machine's limits is refused with a
:class:`vkbands.LimitError` giving the estimate and the limit (:func:`check_memory`).

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
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from vkbands.engine import as_host_array, default_context
from vkbands.engine.errors import LimitError, _human

from . import _interrupt
from . import reference as R
from ._owner import Owner
from . import systems
from .setup import Setup
from .systems import ParamSpec, make_system

__all__ = ["rollout", "Rollout", "Simulation", "NonFiniteError", "RolloutInterrupted", "check_memory"]

_CHUNK_BYTES = 64 << 20          # device buffers for one chunk's observables + snapshots
_TARGET_S = 0.5                  # device time one chunk aims at (the first chunk is timed, then adapted)
_MAX_CHUNK_S = 1.0               # a chunk that took longer makes the next ones smaller at once
_FIRST_STEPS = 16                # the first, timed chunk
_MAX_STEPS = {True: 1 << 16,     # steps per recording, tree/coupled (the dispatch plan is made per step)
              False: 2048}       # grid systems: one dispatch per step (commands per command buffer)
_RECORDINGS_KEPT = 4             # chunk recordings kept for replay (keyed by length and phase)
_PHASE_LIMIT = 1 << 30           # lcm(every, snapshot_every) must stay below (32-bit step counters)
_STEPS = ParamSpec("steps", 0, "int", lo=0)
_CHUNK = ParamSpec("chunk", None, "int", lo=1)
_EVERY = ParamSpec("every", 1, "int", lo=1)
_SNAPSHOT_EVERY = ParamSpec("snapshot_every", None, "int", lo=1)


class NonFiniteError(FloatingPointError):
    """A NaN or Inf appeared in the state. Attributes: ``step`` (the first step where it was seen:
    exact, found by re-running the chunk from its saved state, unless ``how`` says otherwise),
    ``member`` (batch index), ``system``, ``last_finite_step``, ``how`` (``"exact"``, ``"observed"``),
    ``rollout`` (the partial :class:`Rollout` up to the last finite step, or None)."""

    def __init__(self, system, step, member, last_finite_step=None, how="observed", rollout=None):
        self.system, self.step, self.member, self.last_finite_step = system, int(step), int(member), last_finite_step
        self.how, self.rollout = how, rollout
        if last_finite_step is None:
            prev = ""
        elif how == "exact":
            prev = f"; the state at step {last_finite_step} was finite"
        else:
            prev = f"; the previous {how} state (step {last_finite_step}) was finite"
        super().__init__(f"{system} rollout: NaN/Inf in the state at step {self.step}, batch member {self.member}"
                         f"{prev}. Unstable parameters (step size, rates > 1, coupling eps) or a non-finite x0?")


class RolloutInterrupted(KeyboardInterrupt):
    """:func:`rollout` was interrupted (SIGINT / SIGTERM, or a KeyboardInterrupt while it ran) after
    finishing the chunk in flight. ``rollout``: the partial :class:`Rollout` (``status="interrupted"``,
    ``n_steps`` the last completed step, its observations, snapshots and ``final`` state);
    ``signal``: the signal's name, or None."""

    def __init__(self, rollout, signal=None):
        self.rollout, self.signal = rollout, signal
        by = f" by {signal}" if signal else ""
        super().__init__(f"{rollout.system} rollout interrupted{by} at step {rollout.n_steps} of "
                         f"{rollout.steps_requested}")


def _human_limit(nbytes):
    return f"{_human(nbytes)} ({int(nbytes)} bytes)"


def _check_state_fits(ctx, system, x0, batch, what=None):
    """Refuse, before any allocation or recording, a state the step kernels cannot bind whole."""
    limit = ctx.max_storage_buffer_range
    nbytes = x0.nbytes if hasattr(x0, "nbytes") else int(x0)
    if nbytes > limit:
        per_member = max(1, nbytes // max(batch, 1))
        what = what or f"x0 of shape {x0.shape} float32"
        fix = (f"run at most {limit // per_member} batch members per rollout" if per_member <= limit else
               f"one member alone is {_human(per_member)}: use a smaller field")
        raise LimitError(f"{system}: {what} is {_human_limit(nbytes)}, over this device's maxStorageBufferRange "
                         f"of {_human_limit(limit)} (the largest array one kernel can bind): {fix}")


def _host_available():
    """Bytes of memory this machine can still give (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_needs(spec, shape, steps, every, snapshot_every, *, dims=None, arity=None, make_x0=False) -> dict:
    """Estimated bytes of a rollout of a state of array ``shape``: ``host`` (x0 and the copy
    Simulation keeps, the final state, snapshots and observation rows gathered and concatenated; plus
    making x0 in float64 when ``make_x0``) and ``device`` (state, ping-pong or band state, the state
    saved per chunk, band-plan work space, one chunk's rows), with the parts behind them."""
    shape = tuple(int(n) for n in shape)
    _batched, B, spatial, dims = spec.resolve_shape(shape, dims)
    state = 4 * math.prod(shape)
    arity = arity or 2
    levels = max(1, max(int(math.log(max(s, 1), arity) + 1e-9) for s in spatial))
    fields = spec.fields_per_member
    n_obs = steps // every + 2 if every else 0
    n_snap = steps // snapshot_every + 1 if snapshot_every else 0
    obs_host = 2 * n_obs * B * (levels + 5) * 8
    snaps = 2 * n_snap * state
    host = dict(x0=(3 if make_x0 else 1) * state, copies=2 * state, snapshots=snaps, observations=obs_host)
    row = B * fields * (levels + 5) * 4
    chunk_rows = min(_CHUNK_BYTES, (n_obs + 1) * row) + (min(_CHUNK_BYTES, n_snap * state) if n_snap else 0)
    device = dict(state=state, work=2 * state, saved=state, rows=chunk_rows)
    return dict(host=sum(host.values()), device=sum(device.values()), host_parts=host, device_parts=device,
                state=state, batch=B)


def check_memory(ctx, system, shape, steps, every=1, snapshot_every=None, *, dims=None, arity=None,
                 make_x0=False, what=None):
    """Refuse with :class:`vkbands.LimitError`, before anything is allocated, a rollout whose state
    cannot be bound by one kernel, or whose estimated memory (:func:`memory_needs`) exceeds the
    device's largest heap or the host memory available now. ``what`` names the state in the message
    (e.g. the command line's options)."""
    spec = systems.get(system) if isinstance(system, str) else system
    need = memory_needs(spec, shape, steps, every, snapshot_every, dims=dims, arity=arity, make_x0=make_x0)
    what = what or f"a state of shape {tuple(shape)} float32"
    _check_state_fits(ctx, spec.name, need["state"], need["batch"], what)
    heap = getattr(ctx, "largest_device_heap", None)
    if heap and need["device"] > heap:
        parts = ", ".join(f"{k} {_human(v)}" for k, v in need["device_parts"].items() if v)
        raise LimitError(f"{spec.name}: {what} needs about {_human(need['device'])} of device memory ({parts}); "
                         f"the device's largest memory heap holds {_human(heap)}: over by "
                         f"{_human(need['device'] - heap)}")
    avail = _host_available()
    if avail and need["host"] > avail:
        parts = ", ".join(f"{k} {_human(v)}" for k, v in need["host_parts"].items() if v)
        raise LimitError(f"{spec.name}: {what} needs about {_human(need['host'])} of host memory ({parts}); "
                         f"this machine has {_human(avail)} available: over by {_human(need['host'] - avail)} "
                         "(fewer batch members, a smaller field or fewer snapshots)")
    return need


# ----------------------------------------------------------------------------- Simulation
class Simulation(Owner):
    """An evolving batch of fields on the device (see the module docstring).

    Attributes: ``ctx``, ``system`` (the :mod:`vkbands.systems` object), ``name``, ``state``
    (DeviceArray ``system.state_shape``), ``step``, ``batched``, ``shape`` (of x0), ``arity``,
    ``levels``, ``dims``, ``batch``, ``params``.
    """

    def __init__(self, ctx, system, x0=None, dims=None, *, minmax=True, **params):
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
        self.system.observe_minmax = bool(minmax)     # False: min / max not computed (NaN), see rollout()
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
def _short_value(v):
    """A parameter for a one-line repr: numbers as %g, per-member / per-band lists shortened."""
    if isinstance(v, (list, tuple, np.ndarray)):
        flat = np.asarray(v, dtype=object).reshape(-1)
        inner = ", ".join(_short_value(x) for x in flat[:4])
        return f"[{inner}{', ...' if len(flat) > 4 else ''}]"
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(repr=False)
class Rollout:
    """Result of :func:`rollout`. Arrays: ``steps (T,)``, ``energies (T, B, L+1)``, ``mass``,
    ``min``, ``max`` (T, B) float64, ``nonfinite (T, B)``, ``snapshot_steps (S,)``,
    ``snapshots (S,) + x0.shape`` float32 (None without snapshots), ``final`` (shape of x0: the state
    at step ``n_steps``). ``timings``: seconds for setup (compile/record) and run, steps/s, the chunks
    (count, steps per chunk at the end, the longest one's seconds).
    ``status``: ``"completed"``, or how a partial result ended (``"interrupted"``, ``"nonfinite"``,
    ``"failed"``; see the module docstring): then ``n_steps`` is the last step reached and
    ``steps_requested`` what was asked."""
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
    final: np.ndarray | None
    timings: dict = field(default_factory=dict)
    status: str = "completed"
    steps_requested: int | None = None

    def __post_init__(self):
        if self.steps_requested is None:
            self.steps_requested = self.n_steps

    def __repr__(self):
        """One line: what ran and the shapes (the dataclass default printed every array)."""
        snaps = "no snapshots" if self.snapshots is None else f"snapshots {tuple(np.shape(self.snapshots))}"
        shape = "" if self.final is None else f" x0 shape {tuple(np.shape(self.final))},"
        params = ", ".join(f"{k}={_short_value(v)}" for k, v in dict(self.params).items() if k != "arity")
        return (f"<vkbands.Rollout {self.system} {self.status}: {self.n_steps} of {self.steps_requested} steps,{shape} "
                f"p={self.arity} L={self.levels} dims={self.dims} B={self.batch}; energies "
                f"{tuple(np.shape(self.energies))} at {len(self.steps)} steps; {snaps}; {params}>")

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

    def _repr_html_(self):
        """Jupyter: summary table, energy plot and sheet animation of member 0 (vkbands.notebook.rollout_html)."""
        from .notebook import rollout_html
        return rollout_html(self)

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
def _from_setup(setup, x0, dims, params):
    """(system, x0, dims, params) of a Setup (x0 given: used instead of ``setup.x0()``)."""
    if params or dims is not None:
        raise TypeError(f"with a Setup, dims and parameters come from it; got {sorted(params) or ['dims']}: use "
                        "setup.replace(...)")
    return setup.system, (setup.x0() if x0 is None else x0), setup.dims, dict(setup.params)


def rollout(system, x0=None, steps=None, every=1, snapshot_every=None, *, dims=None, ctx=None, progress=None,
            chunk=None, minmax=True, **params) -> Rollout:
    """Evolve ``x0`` for ``steps`` steps of ``system`` (a registered name, ``vkbands.systems.names()``,
    or a :class:`vkbands.Setup`: then ``rollout(setup, steps=...)``, x0 defaulting to ``setup.x0()``)
    on the device; see the module docstring. ``every=None``: no observables; ``snapshot_every=None``:
    no snapshots. ``progress``: True/False (default: a bar when the run lasts more than 1 s; a number:
    more than that many seconds).
    ``chunk``: steps per replayed recording (default: sized by time, about ``_TARGET_S`` each).
    ``minmax=False``: min / max over the leaves are not computed (``Rollout.min`` / ``max`` are NaN):
    the cheap observation (tree/coupled: no reconstruction of the leaves per observation; the NaN/Inf
    flag then comes from the band energies and the coarse value). System parameters may be one value
    per batch member (SPEC 3.2b; ``Rollout.params`` reports such a value as a list of B floats).
    Raises :class:`NonFiniteError` when a NaN/Inf appears and :class:`RolloutInterrupted` on Ctrl-C,
    both carrying the partial result (``.rollout``); a ValueError for an argument or parameter that is
    not allowed (naming it, the value and what is allowed) and a :class:`vkbands.LimitError` for a run
    over the memory limits, before anything runs."""
    setup = None
    if isinstance(system, Setup):
        setup = system
        if steps is None and x0 is not None and np.ndim(x0) == 0:
            x0, steps = None, x0             # rollout(setup, 200)
        if params or dims is not None:
            _from_setup(setup, x0, dims, params)         # raises
    elif x0 is None:
        raise TypeError("rollout() needs x0 (or a vkbands.Setup instead of a system name)")
    if steps is None:
        raise TypeError("rollout() needs steps")
    steps = _STEPS.convert(steps)
    every = _EVERY.convert(every) or 0
    snap_every = _SNAPSHOT_EVERY.convert(snapshot_every) or 0
    chunk = _CHUNK.convert(chunk)
    _check_cadence(every, snap_every)
    ctx = ctx or default_context()
    if setup is not None:
        if x0 is None:                       # refused before x0 is made (a huge batch would not fit)
            check_memory(ctx, setup.spec, setup.shape, steps, every, snap_every, dims=setup.dims,
                         arity=setup.arity, make_x0=True, what=setup.size_text())
        system, x0, dims, params = _from_setup(setup, x0, dims, params)
    t_setup = time.perf_counter()
    x0 = as_host_array(x0, np.float32, "x0")
    spec = systems.get(system)
    check_memory(ctx, spec, x0.shape, steps, every, snap_every, dims=dims, arity=params.get("arity"))
    sim = Simulation(ctx, system, x0, dims=dims, minmax=minmax, **params)
    try:
        return _run(sim, steps, every, snap_every, progress, chunk, t_setup)
    finally:
        sim.close()


def _check_cadence(every, snap_every):
    if every and snap_every and math.lcm(every, snap_every) >= _PHASE_LIMIT:
        raise ValueError(f"every={every} and snapshot_every={snap_every}: their least common multiple "
                         f"{math.lcm(every, snap_every)} is too large; allowed: cadences whose least common "
                         f"multiple is below 2**30 (e.g. one a multiple of the other)")


def _run(sim, steps, every, snap_every, progress, chunk, t_setup):
    """Run ``steps`` steps of ``sim`` in replayed chunks and gather a :class:`Rollout` (see the
    module docstring for how each ending keeps the partial result)."""
    with _interrupt.deferred(), _Run(sim, steps, every, snap_every, chunk) as run:
        run.t_setup = t_setup
        run.t_run = time.perf_counter()
        signal_name = None
        try:
            try:
                run.observe_start()
                run.advance(progress)
                signal_name = _interrupt.requested()
                interrupted = signal_name is not None
            except KeyboardInterrupt as e:
                interrupted, signal_name = True, (e.args[0] if e.args else None) or _interrupt.requested()
                run.settle()
        except _Bad as bad:
            raise run.nonfinite(bad) from None
        except KeyboardInterrupt as e:           # a second one while settling: the rows may lag the state
            sim.ctx.wait_idle()
            raise RolloutInterrupted(run.result("interrupted", final=None), e.args[0] if e.args else None) from None
        except BaseException as e:
            run.attach_partial(e)
            raise
        if interrupted:
            raise RolloutInterrupted(run.result("interrupted"), signal_name) from None
        return run.result("completed")


def _count(t0, n, every):
    """How many multiples of ``every`` lie in (t0, t0 + n]."""
    return (t0 + n) // every - t0 // every if every else 0


def _events(t0, n, every):
    """The multiples of ``every`` in (t0, t0 + n], int64."""
    if not every:
        return np.zeros(0, np.int64)
    return np.arange((t0 // every + 1) * every, t0 + n + 1, every, dtype=np.int64)


class _Bad(Exception):
    """Internal: a chunk's observation showed a NaN/Inf (``part``: the chunk's rows, ``step`` and
    ``member`` of the first bad observation)."""

    def __init__(self, part, step, member):
        self.part, self.step, self.member = part, int(step), int(member)


@dataclass
class _Part:
    """What one chunk (or the start) gave: the state is at ``end``; observation rows (``obs``: the dict
    of ``ObsBuffers.read``) at ``obs_steps``, snapshots at ``snap_steps``; ``last``: one row observing
    the state at ``end`` (the chunk's closing observation)."""
    end: int
    obs_steps: np.ndarray
    obs: dict | None
    snap_steps: np.ndarray
    snaps: np.ndarray | None
    last: dict | None


class _Run(Owner):
    """One rollout's chunks (see the module docstring): the chunk size ``K`` (timed and adapted), the
    recordings kept for replay, one observation buffer and one snapshot buffer sized for a chunk's
    rows (read back once per chunk), a one-row buffer for the closing observation of each chunk, the
    state saved at the start of each chunk (``backup``; None when it does not fit), and the rows
    gathered so far (``parts``)."""

    def __init__(self, sim, steps, every, snap_every, chunk):
        self.sim, self.steps, self.every, self.snap_every = sim, steps, every, snap_every
        system = sim.system
        self.mod = math.lcm(every or 1, snap_every or 1)
        self.cap = self._cap()
        self.fixed = chunk is not None
        self.K = min(int(chunk), self.cap) if self.fixed else self._align(_FIRST_STEPS)
        self.obs = self.snap = None
        self.obs_rows = self.snap_rows = 0
        self.recs = OrderedDict()
        self.sentinel = self._own(system.new_obs(1))
        self.backup = self._saved_state()
        self.parts = []
        self.inflight = None
        self.chunk_times = []
        self.t_setup = self.t_run = time.perf_counter()

    # sizes -------------------------------------------------------------------
    def _cap(self):
        """The most steps one recording may hold: commands (``_MAX_STEPS``) and row memory."""
        sys = self.sim.system
        cap = _MAX_STEPS[bool(sys.fused)]
        if self.every:
            row = 4 * sys.batch * (sys.levels + 5) * sys.spec.fields_per_member
            cap = min(cap, self.every * max(1, _CHUNK_BYTES // row))
        if self.snap_every:
            state = 4 * math.prod(sys.state_shape)
            cap = min(cap, self.snap_every * max(1, _CHUNK_BYTES // state))
        return max(1, cap)

    def _align(self, k):
        """A chunk size near ``k`` (at most the cap) that keeps the number of distinct recordings small:
        a multiple of lcm(every, snapshot_every) (every chunk starts at the same phase), else a
        divisor of it (the chunks without observations share one recording)."""
        k = max(1, min(int(k), self.cap))
        u = self.mod
        if u <= k:
            return k // u * u
        for d in range(k, max(1, k // 2) - 1, -1):
            if u % d == 0:
                return d
        return k

    def _saved_state(self):
        """The device buffer each chunk saves its starting state into (the bisection of a NaN/Inf
        starts from it); None where it cannot be allocated (the step is then reported as observed)."""
        from vkbands.engine import OutOfDeviceMemoryError
        try:
            return self._own(self.sim.ctx.empty(self.sim.system.state_shape))
        except (OutOfDeviceMemoryError, LimitError):
            return None

    def _ensure_rows(self, n_obs, n_snap):
        """Observation / snapshot buffers with room for a chunk's rows (recordings bound to older,
        smaller buffers are dropped)."""
        sys = self.sim.system
        grow_obs, grow_snap = n_obs > self.obs_rows, n_snap > self.snap_rows
        if not (grow_obs or grow_snap):
            return
        self._drop_recordings()
        if grow_obs:
            if self.obs is not None:
                self.obs.close()
            self.obs_rows = max(n_obs, -(-self.K // self.every))
            self.obs = sys.new_obs(self.obs_rows)
        if grow_snap:
            if self.snap is not None:
                self.snap.close()
            self.snap_rows = max(n_snap, -(-self.K // self.snap_every))
            self.snap = self.sim.ctx.zeros((self.snap_rows,) + sys.state_shape)

    def _drop_recordings(self):
        while self.recs:
            self.recs.popitem()[1].close()

    def _close_now(self):
        self._drop_recordings()
        for buf in (self.obs, self.snap):
            if buf is not None:
                buf.close()
        self.obs = self.snap = None
        super()._close_now()

    @property
    def done(self) -> int:
        """Steps completed and gathered (the state is at this step)."""
        return self.parts[-1].end if self.parts else 0

    # recording ---------------------------------------------------------------
    def _recording(self, t0, n):
        """The recording of steps t0+1 .. t0+n: save the state, the steps with the observations and
        snapshots that fall in them (recorded with their phase), a closing observation unless the last
        step is observed anyway. Kept for replay, keyed by (n, phase)."""
        sys, state = self.sim.system, self.sim.state
        n_obs, n_snap = _count(t0, n, self.every), _count(t0, n, self.snap_every)
        phase = t0 % self.mod if (n_obs or n_snap) else 0
        key = (n, phase if (n_obs or n_snap) else None)
        rec = self.recs.pop(key, None)
        if rec is None:
            self._ensure_rows(n_obs, n_snap)
            rec = self.sim.ctx.recorder()
            try:
                if self.backup is not None:
                    rec.copy(state, self.backup)
                sys.record(rec, state, n, every=self.every if n_obs else 0,
                           snap_every=self.snap_every if n_snap else 0, obs=self.obs if n_obs else None,
                           snap=self.snap if n_snap else None, phase=phase)
                if not (self.every and (t0 + n) % self.every == 0):
                    sys.record(rec, state, 0, observe_first=True, obs=self.sentinel)
            except BaseException:
                rec.close()
                raise
            while len(self.recs) >= _RECORDINGS_KEPT:
                self.recs.popitem(last=False)[1].close()
        self.recs[key] = rec
        return rec

    def observe_start(self):
        """Step 0: observables / snapshot of x0 (tree: also the band state the replays start from)."""
        sys, state = self.sim.system, self.sim.state
        self._ensure_rows(1 if self.every else 0, 1 if self.snap_every else 0)
        with self.sim.ctx.recorder() as rec:
            sys.record(rec, state, 0, observe_first=bool(self.every), snap_first=bool(self.snap_every),
                       obs=self.obs, snap=self.snap)
            if not self.every:
                sys.record(rec, state, 0, observe_first=True, obs=self.sentinel)
        self.collect(0, 0)

    # running -----------------------------------------------------------------
    def advance(self, progress):
        """All steps, chunk after chunk; stops after the chunk in flight when a signal was deferred."""
        bar = _progress_bar(progress, self.steps, self.sim.name)
        try:
            while self.done < self.steps:
                if _interrupt.requested():
                    raise KeyboardInterrupt(_interrupt.requested())
                t0 = self.done
                n = min(self.K, self.steps - t0)
                rec = self._recording(t0, n)
                dt = self._submit(rec, t0, n)
                self.collect(t0, n)
                self.inflight = None
                if bar is not None:
                    bar.update(n)
                self._adapt(n, dt)
        finally:
            if bar is not None:
                bar.close()

    def _submit(self, rec, t0, n):
        """Run one chunk's recording and wait for it; returns the seconds it took."""
        self.inflight = (t0, n, rec, rec.submitted)
        t = time.perf_counter()
        rec.submit()
        dt = time.perf_counter() - t
        self.chunk_times.append(dt)
        return dt

    def _adapt(self, n, dt):
        """Size the next chunks from this one's time: about ``_TARGET_S`` each (growing at most 4x at a
        time: a short chunk's time says little), within the cap; unchanged while a chunk takes between half the target and
        ``_MAX_CHUNK_S`` (so recordings keep being replayed)."""
        if self.fixed or n < self.K or _TARGET_S / 2 <= dt <= _MAX_CHUNK_S:
            return
        want = int(_TARGET_S * n / max(dt, 1e-6))
        self.K = self._align(max(1, min(want, 4 * self.K)))

    def settle(self):
        """After a KeyboardInterrupt: wait for a chunk that was submitted and gather it, so that the rows
        and the state agree."""
        inflight, self.inflight = self.inflight, None
        self.sim.ctx.wait_idle()
        if inflight is None:
            return
        t0, n, rec, before = inflight
        rec.wait()
        if rec.submitted > before and self.done == t0:
            self.collect(t0, n)

    def collect(self, t0, n):
        """Gather the rows of the chunk t0+1 .. t0+n (n = 0: step 0); :class:`_Bad` at a NaN/Inf."""
        if n == 0:
            obs_steps = np.zeros(1 if self.every else 0, np.int64)
            snap_steps = np.zeros(1 if self.snap_every else 0, np.int64)
        else:
            obs_steps, snap_steps = _events(t0, n, self.every), _events(t0, n, self.snap_every)
        obs = self.obs.read(len(obs_steps)) if len(obs_steps) else None
        end_observed = len(obs_steps) and obs_steps[-1] == t0 + n
        last = {k: v[-1:] for k, v in obs.items()} if end_observed else self.sentinel.read(1)
        snaps = self.snap.rows(0, len(snap_steps)).numpy() if len(snap_steps) else None
        part = _Part(t0 + n, obs_steps, obs, snap_steps, snaps, last)
        for steps_, rows in ((obs_steps, obs), (np.array([t0 + n]), last)):
            if rows is not None and rows["nonfinite"].any():
                r, member = np.argwhere(rows["nonfinite"])[0]
                raise _Bad(part, steps_[r], member)
        self.parts.append(part)

    # endings -----------------------------------------------------------------
    def nonfinite(self, bad) -> NonFiniteError:
        """The error for a chunk whose observation showed a NaN/Inf: the exact step by bisection from
        the chunk's saved state, and the partial result up to the last finite step."""
        t0 = self.done
        name = self.sim.name
        if bad.step == 0:
            return NonFiniteError(name, 0, bad.member, None, rollout=self.result("nonfinite", upto=0,
                                                                                   final=None))
        exact = self._bisect(t0, bad.step, bad.member) if self.backup is not None else None
        if exact is not None:
            last, first, member = exact
            final, how = self.backup.numpy().reshape(self.sim.shape), "exact"
        else:
            first, member, how, final = bad.step, bad.member, "observed", None
            last = max([int(s) for s in bad.part.obs_steps if s < first] + [t0])   # t0: the closing observation
        self.parts.append(bad.part)          # its rows before the bad step are kept
        r = self.result("nonfinite", upto=first, final=final, n_steps=last)
        return NonFiniteError(name, first, member, last, how=how, rollout=r)

    def _bisect(self, lo, hi, member):
        """``(lo, hi, member)`` with hi = lo + 1: the state at ``lo`` (in ``backup`` on return) is finite,
        the one at ``hi`` is not. Starts from the state saved at ``lo`` (finite) and a step ``hi`` seen
        non-finite; each probe re-runs from the saved state and observes once (at most one chunk of
        steps in all, and log2 of its length observations)."""
        ctx, sys, state, probe = self.sim.ctx, self.sim.system, self.sim.state, self.sentinel
        while hi - lo > 1:
            mid = (lo + hi) // 2
            with ctx.recorder() as rec:
                rec.copy(self.backup, state)
            sys.invalidate()
            with ctx.recorder() as rec:
                sys.record(rec, state, mid - lo)
                sys.record(rec, state, 0, observe_first=True, obs=probe)
            flags = probe.read(1)["nonfinite"][0]
            if flags.any():
                hi, member = mid, int(np.argmax(flags))
            else:
                lo = mid
                with ctx.recorder() as rec:
                    rec.copy(state, self.backup)
        return lo, hi, member

    def attach_partial(self, error):
        """Give an error raised after the first chunk the partial result (``error.rollout``)."""
        if not self.parts:
            return
        try:
            self.sim.ctx.wait_idle()
            final = self.sim.read()
        except Exception:
            final = None
        try:
            error.rollout = self.result("failed", final=final)
        except Exception:
            pass

    def result(self, status, upto=None, final=..., n_steps=None) -> "Rollout":
        """The :class:`Rollout` of the parts gathered: rows at steps below ``upto`` (all by default);
        an interrupted run also gets the closing observation of its last chunk (the state it stopped
        at) when that step is not an observation step."""
        sim, system = self.sim, self.sim.system
        L, B = system.levels, system.batch
        parts = self.parts
        obs_parts = [(p.obs_steps, p.obs) for p in parts if p.obs is not None]
        if status == "interrupted" and self.every and parts and parts[-1].end % self.every:
            obs_parts.append((np.array([parts[-1].end], np.int64), parts[-1].last))
        steps = np.concatenate([s for s, _ in obs_parts]) if obs_parts else np.zeros(0, np.int64)
        cols = {}
        for k in ("energies", "mass", "min", "max", "nonfinite"):
            shape = (0, B) + ((L + 1,) if k == "energies" else ())
            cols[k] = np.concatenate([o[k] for _, o in obs_parts]) if obs_parts else np.zeros(shape)
        snap_parts = [(p.snap_steps, p.snaps) for p in parts if p.snaps is not None]
        snap_steps = np.concatenate([s for s, _ in snap_parts]) if snap_parts else np.zeros(0, np.int64)
        snaps = np.concatenate([x for _, x in snap_parts]) if snap_parts else None
        if upto is not None:
            keep = steps < upto
            steps, cols = steps[keep], {k: v[keep] for k, v in cols.items()}
            keep = snap_steps < upto
            snap_steps = snap_steps[keep]
            snaps = snaps[keep] if snaps is not None else None
        if snaps is not None:
            snaps = snaps.reshape((-1,) + sim.shape)
        if final is ...:
            final = sim.read()
        done = self.done if n_steps is None else n_steps
        run_s = time.perf_counter() - self.t_run
        timings = dict(setup_s=self.t_run - self.t_setup, run_s=run_s, chunk_steps=self.K,
                       chunks=len(self.chunk_times), max_chunk_s=max(self.chunk_times, default=0.0),
                       first_chunk_s=self.chunk_times[0] if self.chunk_times else 0.0,
                       steps_per_s=(done / run_s if run_s > 0 else float("inf")))
        return Rollout(system=sim.name, params=dict(system.params), arity=system.arity, levels=L, dims=system.dims,
                       batch=B, n_steps=int(done), steps=steps, energies=cols["energies"], mass=cols["mass"],
                       min=cols["min"], max=cols["max"], nonfinite=cols["nonfinite"].astype(bool),
                       snapshot_steps=snap_steps, snapshots=snaps, final=final, timings=timings, status=status,
                       steps_requested=self.steps)


def _progress_bar(progress, total, name, unit="step", desc=None):
    """A tqdm bar (``progress`` True), none (False), one that shows after 1 s (None) or after
    ``progress`` seconds (a number); ``desc`` default ``"<name> rollout"``."""
    if not progress and progress is not None:          # False (or 0)
        return None
    from tqdm import tqdm
    delay = 0.0 if progress is True else 1.0 if progress is None else float(progress)
    return tqdm(total=total, unit=unit, desc=desc or f"{name} rollout", delay=delay, leave=False,
                dynamic_ncols=True)
