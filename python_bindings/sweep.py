"""Parameter sweeps: many rollouts of one system, packed into batches, into one ``xarray.Dataset``.

::

    ds = vkbands.sweep("tree", {"tau": [0.5, 1.0, 2.0]}, steps=200, seeds=range(4),
                       arity=3, depth=5, dims=1, batch=8, init="random", store="tau.zarr")
    ds.energies.sel(run=ds.tau == 1.0)        # (run, member, t, band)
    ds.rate.mean("member")                    # slope of log E_l vs t per run and band

Runs: ``params`` maps parameter names to value lists; with ``grid=True`` the runs are the Cartesian
product (``itertools.product`` in the order given), with ``grid=False`` the lists are zipped; each
combination runs once per seed (seeds innermost). A run is ``batch`` fields (``member``), made by the
set-up keywords (those of :class:`vkbands.Setup`: ``arity, depth, size, shape, dims, batch, init``
and its options) from the run's seed, or one ``x0`` shared by every run. Other keywords are fixed
system parameters (``eps=0.1``, ``phi="tanh"``, ``preset="spots"``). A seed-derived parameter that is
not given (coupled: ``coupling_seed``) is fixed for the whole sweep at the first seed (it is recorded
in the ``fixed`` attribute): only the initial states follow each run's seed. ``threshold`` (default
1e-3) is the kill threshold of SPEC 5 (band l is killed once ``E_l(t) < threshold E_l(0)``); ``tau``,
like any other keyword, is a system parameter (the tree / coupled time scale: ``tau=2.0``).

Packing: ``chunk_runs`` runs are one rollout of ``chunk_runs * batch`` members with one parameter value
per member (SPEC 3.2b: each member evolves exactly as a separate rollout with its values). Default:
at most ``_MAX_CHUNK_RUNS`` (64) runs, at most ``_CHUNK_WORK`` element-steps (about a second of
device work on a GPU; chunks stay short so that resuming and the progress bar are useful), at most
``_CHUNK_BYTES`` of state and observations per chunk, and, with the local backend, what
:func:`vkbands.rollout.check_memory` accepts on this device. The rule depends on sizes only, so the
local and the Ray backends pack the same chunks.

Store (``store=PATH``, Zarr v3; see :mod:`vkbands._sweep_store`): results are written one chunk at a
time as they arrive, each chunk's data first and then its ``chunk_done`` marker; host memory stays
bounded by a chunk; the returned Dataset is opened lazily from the store. The same call with the same
store resumes: finished chunks are skipped (the count is printed), the others run. A store of another
sweep is refused, naming what differs; a path that is not a sweep store is refused, never written.

Interruption: Ctrl-C (SIGINT/SIGTERM) is deferred while a sweep runs: the chunk in flight (local)
stops at its next safe point and is discarded, finished chunks stay in the store, and
:class:`SweepInterrupted` (a KeyboardInterrupt) says how many runs are done and how to resume.

Non-finite runs: a member whose state turns NaN/Inf keeps its rows up to the last finite step; from
the first non-finite step on its rows are NaN with ``nonfinite`` True (its ``final`` is NaN); the
other members of its chunk are re-run without it, so they are complete.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import sys
from collections.abc import Mapping

import numpy as np

from ._outputs import jsonable
from . import _interrupt
from . import _sweep_store as S
from . import reference as R
from . import systems
from vkbands.engine.errors import LimitError

from .rollout import NonFiniteError, RolloutInterrupted, check_memory, rollout
from .setup import Setup
from .systems._spec import _is_real

__all__ = ["sweep", "SweepInterrupted"]

_MAX_CHUNK_RUNS = 64
_CHUNK_WORK = 1 << 28            # element-steps (members x values per member x steps) per chunk
_CHUNK_BYTES = 256 << 20         # state + observations of one chunk
_FIELD_AXES = {1: ("x",), 2: ("y", "x")}


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by Ctrl-C (SIGINT/SIGTERM) between chunks. ``runs_done``, ``runs_total``,
    ``chunks_done``, ``chunks_total``, ``store`` (None without one), ``signal``."""

    def __init__(self, runs_done, runs_total, chunks_done, chunks_total, store, signal=None):
        self.runs_done, self.runs_total, self.chunks_done, self.chunks_total = runs_done, runs_total, \
            chunks_done, chunks_total
        self.store, self.signal = store, signal
        by = f" by {signal}" if signal else ""
        if store is not None:
            how = (f"{runs_done} of {runs_total} runs ({chunks_done} of {chunks_total} chunks) are in {os.fspath(store)!r}; "
                   "run the same call with the same store to compute only the rest")
        else:
            how = (f"{runs_done} of {runs_total} runs were done and are lost (no store=); give store=PATH to keep "
                   "finished chunks and resume")
        super().__init__(f"sweep interrupted{by}: {how}")


# ----------------------------------------------------------------------------- checks and plan
def _sweepable(spec):
    return [p.name for p in spec.params if p.kind == "float" and p.member_values]


def _check_params(spec, params, grid):
    """``{name: [float, ...]}`` of ``params``, checked (names, lists, values, zipped lengths)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping {{name: [values]}}, got {type(params).__name__}")
    ok = _sweepable(spec)
    out = {}
    for name, values in params.items():
        p = spec.param(name) if isinstance(name, str) else None
        if p is None:
            raise ValueError(f"params: {name!r} is not a parameter of {spec.name}; allowed (its numeric "
                             f"parameters): {', '.join(ok) or 'none'}")
        if name not in ok:
            raise ValueError(f"params: {name!r} cannot be swept: a {p.kind} parameter ({p.allowed()}); a sweep "
                             f"gives each batch member its own value, which numeric parameters allow: "
                             f"{', '.join(ok)}. Give {name}=... as a fixed keyword, one sweep per value")
        if isinstance(values, (str, bytes)) or np.ndim(values) != 1:
            raise ValueError(f"params[{name!r}]: {values!r} is not a list of values; allowed: a list of numbers, "
                             f"e.g. {{{name!r}: [{p.default}]}}")
        values = list(values)
        if not values:
            raise ValueError(f"params[{name!r}]: an empty list of values; allowed: one or more numbers")
        conv = []
        for i, v in enumerate(values):
            if not _is_real(v):
                raise ValueError(f"params[{name!r}][{i}] = {v!r}: not a number; allowed: {p.allowed()}")
            try:
                conv.append(float(p.convert(v)))
            except ValueError as e:
                raise ValueError(f"params[{name!r}][{i}]: {e}") from None
        out[name] = conv
    if not grid and len({len(v) for v in out.values()}) > 1:
        lens = ", ".join(f"{k}: {len(v)}" for k, v in out.items())
        raise ValueError(f"grid=False zips the value lists, which must have one length; got {lens}")
    return out


def _check_seeds(seeds):
    if isinstance(seeds, (int, np.integer)):
        seeds = [seeds]
    try:
        seeds = list(seeds)
    except TypeError:
        raise ValueError(f"seeds={seeds!r}: not a list of integers") from None
    if not seeds:
        raise ValueError("seeds=(): no seeds; allowed: one or more integers >= 0 (e.g. seeds=(0,))")
    for s in seeds:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"seeds: {s!r} is not allowed; allowed: integers >= 0")
    return [int(s) for s in seeds]


class _Plan:
    """Everything a sweep is, checked: the set-up, the runs, the chunks, the fingerprint and attrs."""

    def __init__(self, system, params, steps, every, seeds, x0, grid, chunk_runs, final, minmax, threshold, setup):
        spec = systems.get(system) if system in systems.names() else None
        if spec is None:
            raise ValueError(f"system={system!r}: not a registered system; allowed: {', '.join(systems.names())}")
        self.spec, self.system = spec, spec.name
        self.swept = _check_params(spec, params, grid)
        self.seeds = _check_seeds(seeds)
        self.steps = int(_int("steps", steps, 1))
        self.every = int(_int("every", every, 1))
        self.threshold = _threshold(threshold)
        self.grid, self.final, self.minmax = bool(grid), bool(final), bool(minmax)
        for k in setup:
            if k == "seed":
                raise ValueError("seed=: a sweep seeds its runs with seeds=(...); allowed: seeds, not seed")
            if k in self.swept:
                raise ValueError(f"{k}={setup[k]!r} and params[{k!r}]: give one of them (a swept parameter is not "
                                 f"also fixed)")
        self.x0 = None
        rep = {k: v[0] for k, v in self.swept.items()}
        if x0 is not None:
            self.x0, setup = self._shared_x0(x0, setup)
        self.setup = Setup(self.system, seed=self.seeds[0], **setup, **rep)
        s = self.setup
        self.arity, self.dims, self.levels, self.spatial, self.members = s.arity, s.dims, s.levels, s.spatial, s.batch
        self.fixed_names = [k for k in s.params if k not in self.swept and k != "arity"]
        self.fixed = {k: jsonable(s.params[k]) for k in self.fixed_names}
        self.setup_options = {k: jsonable(v) for k, v in s.options.items() if k not in self.swept and
                              k != "seed" and spec.param(k) is None}
        self._runs()
        self.t = np.arange(0, self.steps + 1, self.every, dtype=np.int64)
        self.chunk_runs_given = None if chunk_runs is None else int(_int("chunk_runs", chunk_runs, 1))

    def _shared_x0(self, x0, setup):
        """The shared x0 as a batched float32 array and the set-up keywords that describe its shape."""
        x = np.asarray(x0)
        if x.dtype == object or not np.issubdtype(x.dtype, np.number):
            raise ValueError(f"x0: an array of numbers; got dtype {x.dtype}")
        x = x.astype(np.float32)
        shaping = sorted(k for k in setup if k in ("size", "depth", "shape", "batch", "init") or
                         k in _init_option_names())
        if shaping:
            raise ValueError(f"x0 given: its shape and values set the field; {', '.join(shaping)} do(es) not apply "
                             f"(allowed with x0: arity, dims and system parameters)")
        batched, B, spatial, dims = self.spec.resolve_shape(x.shape, setup.get("dims"))
        if not batched:
            x = x[None]
        opts = dict(setup, dims=dims, batch=B)
        grid = issubclass(self.spec.cls, systems.GridSystem)
        if grid:
            opts["shape"] = "x".join(map(str, spatial)) if dims == 2 else None
            if dims == 1:
                opts["size"] = spatial[0]
        else:
            opts["size"] = spatial[0]
        return x, {k: v for k, v in opts.items() if v is not None}

    def _runs(self):
        names = list(self.swept)
        lists = [self.swept[n] for n in names]
        combos = list(itertools.product(*lists)) if self.grid else list(zip(*lists))
        if not names:
            combos = [()]
        rows = [(c, s) for c in combos for s in self.seeds]
        self.R = len(rows)
        self.values = {n: np.array([c[i] for c, _ in rows], dtype=np.float64) for i, n in enumerate(names)}
        self.run_seeds = np.array([s for _, s in rows], dtype=np.int64)

    # ---------------------------------------------------------------- chunks
    def default_chunk_runs(self, ctx=None):
        """The packing rule of the module docstring (sizes only; ``ctx``: also this device's limits)."""
        spec = self.spec
        per_member = spec.fields_per_member * math.prod(self.spatial)
        T = len(self.t)
        per_run_bytes = 4 * per_member * self.members * 3 + 8 * T * self.members * (self.levels + 6) * 3
        n = min(_MAX_CHUNK_RUNS, self.R,
                max(1, _CHUNK_WORK // max(1, per_member * self.members * self.steps)),
                max(1, _CHUNK_BYTES // per_run_bytes))
        if ctx is not None:
            while True:
                try:
                    check_memory(ctx, spec, self.state_shape(n), self.steps, self.every, dims=self.dims,
                                 arity=self.arity, what=f"a sweep chunk of {n} run(s) x {self.members} member(s)")
                    break
                except LimitError:
                    if n == 1:
                        raise
                    n = max(1, n // 2)
        return int(n)

    def state_shape(self, runs):
        k = self.spec.fields_per_member
        return (runs * self.members,) + ((k,) if k > 1 else ()) + tuple(self.spatial)

    def set_chunks(self, chunk_runs):
        self.chunk_runs = int(min(chunk_runs, self.R))
        self.n_chunks = -(-self.R // self.chunk_runs)

    def chunk_range(self, i):
        a = i * self.chunk_runs
        return a, min(self.R, a + self.chunk_runs)

    def payload(self, i):
        a, b = self.chunk_range(i)
        return dict(index=i, system=self.system, steps=self.steps, every=self.every, dims=self.dims,
                    members=self.members, setup=dict(self.setup.options), seeds=self.run_seeds[a:b].tolist(),
                    swept={n: v[a:b].tolist() for n, v in self.values.items()}, x0=self.x0,
                    final=self.final, minmax=self.minmax, threshold=self.threshold, t=self.t)

    # ---------------------------------------------------------------- identity
    def fingerprint(self):
        """What makes two sweeps the same sweep (what a resumed store must match)."""
        x0 = None if self.x0 is None else hashlib.sha256(np.ascontiguousarray(self.x0).tobytes()).hexdigest()
        return dict(system=self.system, swept=self.swept, grid=self.grid, seeds=self.seeds, steps=self.steps,
                    every=self.every, setup=self.setup_options, fixed=self.fixed, x0_sha256=x0,
                    x0_shape=None if self.x0 is None else list(self.x0.shape), minmax=self.minmax,
                    final=self.final, threshold=self.threshold)

    def attrs(self, backend, device):
        from . import __version__
        return dict(system=self.system, steps=self.steps, every=self.every, vkbands_version=__version__,
                    device=device, backend=backend, arity=self.arity, levels=self.levels, dims=self.dims,
                    grid=int(self.grid), threshold=self.threshold, swept=json.dumps(self.swept),
                    fixed=json.dumps(self.fixed),
                    setup=json.dumps(self.setup_options), seeds=json.dumps(self.seeds))

    # ---------------------------------------------------------------- schema
    def variables(self):
        """``{name: (dims, shape, dtype, fill, chunks, attrs)}`` of every array of the store / Dataset."""
        R, M, T, nb, c = self.R, self.members, len(self.t), self.levels + 1, self.chunk_runs
        coords = " ".join(list(self.swept) + ["seed"])
        fa = _FIELD_AXES[self.dims]
        v = {"run": (("run",), (R,), "int64", 0, (R,), {}),
             "t": (("t",), (T,), "int64", 0, (T,), {"description": "observed step"}),
             "band": (("band",), (nb,), "int64", 0, (nb,),
                      {"description": f"bands 0..{self.levels - 1} are detail bands (0 finest); band "
                                      f"{self.levels} is the coarse energy E_c"})}
        for n in self.swept:
            v[n] = (("run",), (R,), "float64", 0.0, (R,), {"description": f"swept parameter {n}"})
        v["seed"] = (("run",), (R,), "int64", 0, (R,), {"description": "seed of the run's initial state"})

        def var(name, dims, shape, dtype, fill, desc):
            v[name] = (("run",) + dims, (R,) + shape, dtype, fill, (c,) + shape,
                       {"description": desc, "coordinates": coords})
        var("energies", ("member", "t", "band"), (M, T, nb), "float64", np.nan, "band energies [E_0..E_{L-1}, E_c]")
        var("mass", ("member", "t"), (M, T), "float64", np.nan, "sum of the observed field")
        var("nonfinite", ("member", "t"), (M, T), "bool", False, "NaN/Inf in the state")
        if self.minmax:
            var("min", ("member", "t"), (M, T), "float64", np.nan, "minimum of the observed field")
            var("max", ("member", "t"), (M, T), "float64", np.nan, "maximum of the observed field")
        if self.final:
            var("final", ("member",) + fa, (M,) + tuple(self.spatial), "float32", np.nan,
                f"observed field ({self.spec.observed}) after the last step")
        var("kill_step", ("member", "band"), (M, nb), "int64", -1,
            f"first observed step with E_l < threshold E_l(0), threshold = {self.threshold:g} (-1: never)")
        var("rate", ("member", "band"), (M, nb), "float64", np.nan, "slope of log E_l vs t")
        var("rate_stderr", ("member", "band"), (M, nb), "float64", np.nan, "standard error of rate")
        var("deepest_surviving_band", ("member",), (M,), "int64", -1,
            f"max l with E_l > threshold E_l(0), threshold = {self.threshold:g}, at the last observed step "
            "(-1: none)")
        return v

    def store_variables(self):
        """:meth:`variables` and the store's ``chunk_done`` markers."""
        return dict(self.variables(), **{S.DONE: (("chunk",), (self.n_chunks,), "bool", False, (1,), {})})

    def coords(self):
        out = {"run": np.arange(self.R, dtype=np.int64), "t": self.t,
               "band": np.arange(self.levels + 1, dtype=np.int64), "seed": self.run_seeds}
        out.update(self.values)
        return out


def _init_option_names():
    from .setup import _init_options
    return set(_init_options())


def _threshold(v):
    """The kill threshold, checked: a number with 0 < v < 1 (SPEC 5)."""
    if not _is_real(v) or not (0.0 < float(v) < 1.0):
        raise ValueError(f"threshold={v!r}: the kill threshold (band l is killed once E_l(t) < threshold E_l(0)); "
                         "allowed: a number with 0 < threshold < 1")
    return float(v)


def _int(name, v, lo):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name}={v!r}: allowed: an integer >= {lo}")
    return v


# ----------------------------------------------------------------------------- one chunk (any process)
def _run_chunk(payload, ctx=None):
    """One chunk of runs as ONE batched rollout (module-level: Ray pickles it by name). ``payload``: the
    dict of :meth:`_Plan.payload`; returns ``{name: NumPy array over the chunk's runs}`` plus ``device``.
    ``ctx``: the caller's Context (local backend with ``ctx=``), else this process's worker context."""
    if ctx is None:
        from ._backends import worker_context
        ctx = worker_context()
    system, M, seeds = payload["system"], int(payload["members"]), list(payload["seeds"])
    n = len(seeds)
    base = Setup(system, **payload["setup"])
    if payload["x0"] is not None:
        x0 = np.concatenate([np.asarray(payload["x0"], dtype=np.float32)] * n)
    else:
        made = {}
        for s in seeds:
            if s not in made:
                made[s] = base.replace(seed=s).x0()
        x0 = np.concatenate([made[s] for s in seeds])
    per_member = {k: np.repeat(np.asarray(v, dtype=np.float64), M) for k, v in payload["swept"].items()}
    rows = _rollout_members(ctx, system, x0, dict(base.params), per_member, payload)
    t = np.asarray(payload["t"], dtype=np.int64)
    E = rows["energies"]                                   # (B, T, L+1)
    series = np.transpose(E, (1, 0, 2))                    # (T, B, L+1): the reference's layout
    rate, stderr = R.contraction_rates(series, t, stderr=True)
    out = dict(energies=E, mass=rows["mass"], nonfinite=rows["nonfinite"],
               kill_step=R.kill_steps(series, t, payload["threshold"]), rate=rate, rate_stderr=stderr,
               deepest_surviving_band=R.deepest_surviving_band(series, payload["threshold"])[-1])
    if payload["minmax"]:
        out["min"], out["max"] = rows["min"], rows["max"]
    if payload["final"]:
        out["final"] = rows["final"]
    out = {k: np.ascontiguousarray(v).reshape((n, M) + v.shape[1:]) for k, v in out.items()}
    out["device"] = ctx.info["name"]
    return out


def _rollout_members(ctx, system, x0, params, per_member, payload):
    """Rows ``(B, T, ...)`` of every member of ``x0`` (B members), each with its own swept values.
    A member that turns non-finite keeps its rows before that step (NaN and ``nonfinite`` after); the
    batch is re-run without it (members are independent: the others' rows do not change)."""
    spec = systems.get(system)
    steps, every, dims, t = payload["steps"], payload["every"], payload["dims"], np.asarray(payload["t"])
    B, T = x0.shape[0], len(t)
    out = dict(energies=np.full((B, T, 0), np.nan), mass=np.full((B, T), np.nan),
               nonfinite=np.ones((B, T), bool), min=np.full((B, T), np.nan), max=np.full((B, T), np.nan),
               final=None)
    alive = np.arange(B)
    while len(alive):
        p = dict(params)
        for k, v in per_member.items():
            vals = v[alive]
            p[k] = float(vals[0]) if np.all(vals == vals[0]) else vals.tolist()
        try:
            r = rollout(system, x0[alive], steps, every, dims=dims, ctx=ctx, progress=False, **p)
        except NonFiniteError as e:
            if e.rollout is None:
                raise
            bad = alive[e.member]
            _put(out, [bad], e.rollout, [e.member], t, spec, dims, final=False)
            alive = np.delete(alive, e.member)
            continue
        if not np.array_equal(r.steps, t):
            raise RuntimeError(f"sweep: rollout observed steps {r.steps[:5]}...; expected {t[:5]}...")
        _put(out, alive, r, np.arange(len(alive)), t, spec, dims, final=payload["final"])
        break
    if out["final"] is None and payload["final"]:
        out["final"] = np.full((B,) + x0.shape[-dims:], np.nan, np.float32)
    return out


def _put(out, members, r, cols, t, spec, dims, final):
    """Copy rollout ``r``'s rows of batch columns ``cols`` into ``out`` rows ``members`` (steps it did
    not reach stay NaN / nonfinite)."""
    members, cols = np.asarray(members), np.asarray(cols)
    nb = r.energies.shape[-1]
    if out["energies"].shape[-1] != nb:
        out["energies"] = np.full(out["energies"].shape[:2] + (nb,), np.nan)
    k = len(r.steps)                                # the observed steps reached: t[:k]
    out["energies"][members, :k] = np.transpose(r.energies[:, cols], (1, 0, 2))
    for name in ("mass", "min", "max"):
        out[name][members, :k] = getattr(r, name)[:, cols].T
    out["nonfinite"][members, :k] = r.nonfinite[:, cols].T
    if final:
        f = np.asarray(spec.observed_field(r.final, dims), dtype=np.float32)
        if out["final"] is None:
            out["final"] = np.full((out["mass"].shape[0],) + f.shape[1:], np.nan, np.float32)
        out["final"][members] = f[cols]


# ----------------------------------------------------------------------------- backends
def _backend(name, address, num_gpus, num_workers, ctx):
    """``(backend, chunk function)``: with the caller's ``ctx``, the local backend running the chunks
    on that Context; else :func:`vkbands._backends.make_backend` (each process its worker context)."""
    from ._backends import LocalBackend, make_backend
    if ctx is not None:
        return LocalBackend(), functools.partial(_run_chunk, ctx=ctx)
    return make_backend(name, address=address, num_gpus=num_gpus, num_workers=num_workers), _run_chunk


# ----------------------------------------------------------------------------- the sweep
def sweep(system, params, *, steps, every=1, seeds=(0,), x0=None, grid=True, store=None, backend="local",
          address=None, num_gpus=None, num_workers=None, chunk_runs=None, final=False, minmax=False, threshold=1e-3,
          progress=None, ctx=None, **setup):
    """Run ``system`` for every combination of ``params`` (see the module docstring) and return an
    ``xarray.Dataset``: dims ``run``, ``member``, ``t``, ``band`` (+ ``y``, ``x`` / ``x`` with
    ``final=True``); coordinates ``run``, each swept parameter and ``seed`` along run, ``t`` (observed
    steps), ``band``; variables ``energies``, ``mass``, ``nonfinite`` (``min``/``max`` with
    ``minmax=True``; ``final``: the observed field after the last step, with ``final=True``),
    ``kill_step`` (first observed step with ``E_l < threshold E_l(0)``), ``rate`` and ``rate_stderr``
    (:func:`vkbands.reference.contraction_rates`),
    ``deepest_surviving_band`` (last observed step); attrs ``system, steps, every, vkbands_version,
    device, backend, arity, levels, dims, grid`` (1: product, 0: zipped), ``threshold`` and the JSON strings
    ``swept, fixed, setup, seeds``.

    ``steps``, ``every``: as :func:`vkbands.rollout`. ``seeds``: each combination runs once per seed.
    ``x0``: one initial state (one member, or a batch) shared by every run, instead of the set-up's.
    ``store``: a path for the Zarr store (resumable; the result is opened lazily from it); None: in
    memory. ``backend``: ``"local"`` or ``"ray"`` (``address``: an existing Ray cluster; ``num_gpus``
    per task; ``num_workers``: of a local Ray started for the sweep). ``chunk_runs``: runs per batched
    rollout (default: the packing rule). ``threshold``: the kill threshold of ``kill_step`` and
    ``deepest_surviving_band`` (SPEC 5; 0 < threshold < 1, default 1e-3). ``progress``: a bar over runs
    (None: when the sweep lasts over a second). ``ctx``: a Context (local backend only).
    ``**setup``: :class:`vkbands.Setup` keywords and fixed system parameters (``tau=`` is the system's).

    Errors before anything runs: ValueError / TypeError naming the argument, the value and what is
    allowed; a ValueError for a store of another sweep (naming what differs) or a path that is not a
    sweep store. :class:`SweepInterrupted` on Ctrl-C (finished chunks stay in the store)."""
    plan = _Plan(system, params, steps, every, seeds, x0, grid, chunk_runs, final, minmax, threshold, setup)
    if backend not in ("local", "ray"):
        raise ValueError(f"backend={backend!r}: allowed: 'local', 'ray'")
    if ctx is not None and backend != "local":
        raise ValueError(f"ctx= runs chunks in this process: it applies to backend='local' only, not {backend!r}")
    if address is not None and backend != "ray":
        raise ValueError(f"address={address!r}: a Ray cluster's address; it applies to backend='ray' only")
    for name, value in (("num_gpus", num_gpus), ("num_workers", num_workers)):
        if value is not None and backend != "ray":
            raise ValueError(f"{name}={value!r}: applies to backend='ray' only (the local backend runs chunks in "
                             "this process, on its device)")
    fingerprint = json.loads(json.dumps(plan.fingerprint()))        # as it reads back from JSON
    existed = store is not None and os.path.lexists(store)
    if existed:
        record = S.read_record(store)
        diff = S.differences(fingerprint, record.get("fingerprint", {}))
        if plan.chunk_runs_given is not None and plan.chunk_runs_given != record.get("chunk_runs"):
            diff.append(f"chunk_runs {plan.chunk_runs_given} != {record.get('chunk_runs')}")
        if diff:
            raise ValueError(f"store {os.fspath(store)!r} belongs to a different sweep: {'; '.join(diff)} (this "
                             "call's value first); give another store, or the same arguments to resume it")
        plan.set_chunks(int(record["chunk_runs"]))
        S.check_arrays(store, plan.store_variables())
        done = S.done_chunks(store)
    else:
        local = ctx
        if local is None and backend == "local":
            from vkbands.engine import default_context
            local = default_context()
        plan.set_chunks(plan.chunk_runs_given or plan.default_chunk_runs(local))
        done = np.zeros(plan.n_chunks, bool)
    todo = [i for i in range(plan.n_chunks) if not done[i]]
    runs_done = sum(plan.chunk_range(i)[1] - plan.chunk_range(i)[0] for i in range(plan.n_chunks) if done[i])
    if existed and progress is not False:
        print(f"resuming: {plan.n_chunks - len(todo)} of {plan.n_chunks} chunks already in {os.fspath(store)}"
              + ("" if todo else " (nothing to run)"), file=sys.stderr)
    variables = plan.variables()
    data_names = [n for n, v in variables.items() if v[0][0] == "run" and n not in plan.coords()]
    memory = None if store is not None else {n: np.full(variables[n][1], variables[n][3], variables[n][2])
                                             for n in data_names}
    device = [None]
    if store is not None and not existed:
        S.create(store, plan.store_variables(), plan.coords(), plan.attrs(backend, ctx.info["name"] if ctx is not None else ""),
                 dict(format=S.FORMAT, fingerprint=fingerprint, chunk_runs=plan.chunk_runs, n_chunks=plan.n_chunks))
    if todo:
        runs_done = _drive(plan, todo, runs_done, store, memory, data_names, (backend, address, num_gpus, num_workers,
                                                                              ctx), progress, device)
    if store is not None:
        return S.open_dataset(store)
    return _memory_dataset(plan, memory, plan.attrs(backend, device[0] or ""))


def _drive(plan, todo, runs_done, store, memory, data_names, how, progress, device):
    """Run the chunks ``todo`` on the backend and write each as it arrives (signals deferred)."""
    from .rollout import _progress_bar
    chunks_done = plan.n_chunks - len(todo)
    with _interrupt.deferred():
        runner = bar = None
        try:
            runner, run_chunk = _backend(*how)
            bar = _progress_bar(progress, plan.R, plan.system, unit="run",
                                desc=f"{plan.system} sweep [{runner.where}]")
            if bar is not None:
                bar.update(runs_done)
            payloads = [plan.payload(i) for i in todo]
            left = len(todo)
            for j, result in runner.run(run_chunk, payloads, retries=3):
                i = todo[j]
                a, b = plan.chunk_range(i)
                arrays = {n: result[n] for n in data_names}
                if store is not None:
                    S.write_chunk(store, i, a, arrays)
                    if device[0] is None:                 # where this call's chunks run (attrs)
                        S.set_attrs(store, device=result.get("device", ""), backend=how[0])
                else:
                    for n, v in arrays.items():
                        memory[n][a:b] = v
                device[0] = device[0] or result.get("device", "")
                runs_done += b - a
                chunks_done += 1
                left -= 1
                if bar is not None:
                    bar.update(b - a)
                if left and _interrupt.requested():
                    raise KeyboardInterrupt(_interrupt.requested())
        except KeyboardInterrupt as e:
            sig = e.signal if isinstance(e, RolloutInterrupted) else (e.args[0] if e.args else None)
            raise SweepInterrupted(runs_done, plan.R, chunks_done, plan.n_chunks, store,
                                   sig or _interrupt.requested()) from None
        finally:
            if bar is not None:
                bar.close()
            if runner is not None:
                runner.close()
    return runs_done


def _memory_dataset(plan, memory, attrs):
    import xarray as xr
    variables, coords = plan.variables(), plan.coords()
    cvars = {n: (variables[n][0], np.asarray(v, dtype=variables[n][2]), variables[n][5]) for n, v in coords.items()}
    dvars = {n: (variables[n][0], a, {k: v for k, v in variables[n][5].items() if k != "coordinates"})
             for n, a in memory.items()}
    return xr.Dataset(dvars, coords=cvars, attrs=attrs)
