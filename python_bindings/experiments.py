"""The experiments of the research (issue 12), each one call, each one batched run on the device.

- :func:`kill_rates`: per member and band, the contraction rate (least-squares slope of ``log E_l(t)``
  against the step t) with its standard error, the kill step (first observed step with
  ``E_l(t) < threshold E_l(0)``), the tree step's closed-form rate ``2 log lambda_l`` beside it, and the
  number of detail bands killed by each step. One :func:`vkbands.rollout` (or an existing
  :class:`vkbands.Rollout`).
- :func:`influence_matrix`: the cross-band influence matrix by ablation. One rollout of ``L + 1``
  members: member 0 the initial state, member ``b + 1`` the same state with its detail band b removed;
  ``M[t][b, l] = (E_l^{-b}(t) - E_l(t)) / E_l(t)``.
- :func:`eps_sweep`: the deepest surviving band at the end of a rollout of the coupled operator, per
  coupling strength eps and seed (>= 2 seeds), and the eps where it changes. One :func:`vkbands.sweep`.

Every result is a small dataclass of NumPy arrays with ``plot(path)`` (a PNG, matplotlib Agg) and
``save(folder)`` (a new folder, claimed atomically: CSV + JSON + pictures, each file written under a
temporary name and renamed). The maths and the pictures: docs/EXPERIMENTS.md. ``vkbands experiment
kill-rates | influence | eps-sweep`` runs them from the command line (:mod:`vkbands.experiments_cli`).

Naming: ``threshold`` (default 1e-3) is the kill threshold of SPEC 5 (band l is killed once
``E_l(t) < threshold E_l(0)``; ``Rollout.kill_steps`` calls it ``tau``); ``tau`` among the system
parameters (``**params``, ``**setup``, a :class:`vkbands.Setup`) is always the system's own (the tree /
coupled time scale), as in :func:`influence_matrix` and :func:`vkbands.sweep`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._outputs import jsonable
from . import reference as R
from . import systems
from .setup import Setup

__all__ = ["kill_rates", "KillRates", "influence_matrix", "Influence", "ablated_states", "eps_sweep", "EpsSweep",
           "killed_bands"]


# ----------------------------------------------------------------------------- shared helpers
def _plt():
    from ._plotting import plt     # bare Figures: never switches the process's matplotlib backend
    return plt()


def _short(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        if len(v) > 4 or any(isinstance(x, (list, tuple)) for x in v):
            return None
        return "[" + ",".join(_short(x) or "..." for x in v) + "]"
    return str(v)


def param_text(params, skip=("arity", "C", "rates")) -> str:
    """A short ``k=v`` text of a system's parameters for picture titles (long lists left out)."""
    parts = []
    for k, v in params.items():
        if k in skip:
            continue
        s = _short(v)
        if s is not None:
            parts.append(f"{k}={s}")
    if "rates" in skip and "rates" in params and "tau" not in params:
        s = _short(params["rates"])
        parts.append(f"rates={s}" if s else "rates=(per member)")
    return " ".join(parts)


def _output(folder):
    """An :class:`vkbands._outputs.OutputDir`: the one given, or a new folder claimed at ``folder``
    (refused when it exists: nothing is ever overwritten)."""
    from ._outputs import OutputDir, claim
    return folder if isinstance(folder, OutputDir) else claim(Path(folder), option="folder")


def _write_csv(out, name, header, rows, fmt):
    def put(p):
        with open(p, "w") as f:
            f.write(",".join(header) + "\n")
            if len(rows):
                np.savetxt(f, np.asarray(rows, dtype=np.float64), fmt=fmt, delimiter=",")
    out.write(name, put)


def _write_json(out, name, data):
    out.write_text(name, json.dumps(jsonable(data), indent=1) + "\n")


def _resolve(system, x0, params):
    """``(name, x0 or None, params)`` from a system name or a :class:`Setup` (then ``params`` must be
    empty: they come from the set-up; x0 defaults to ``setup.x0()``)."""
    if isinstance(system, Setup):
        if params:
            raise TypeError(f"with a Setup the parameters come from it; got {sorted(params)}: use setup.replace(...)")
        return system.system, (system.x0() if x0 is None else x0), dict(system.params, dims=system.dims)
    if not isinstance(system, str):
        raise TypeError(f"system: a registered system name or a vkbands.Setup, got {type(system).__name__}")
    systems.get(system)                              # a ValueError naming the allowed systems
    if x0 is None:
        raise TypeError(f"{system}: x0 is needed with a system name (or pass a vkbands.Setup)")
    return system, x0, dict(params)


def _int(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name}={value!r}: allowed: an integer >= {lo}")
    return int(value)


def _threshold(threshold):
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        t = math.nan
    if isinstance(threshold, bool) or not (0.0 < t < 1.0):
        raise ValueError(f"threshold={threshold!r}: the kill threshold E_l(t) < threshold E_l(0); allowed: "
                         "0 < threshold < 1")
    return t


# ----------------------------------------------------------------------------- 1. kill rates
def killed_bands(kill_step, steps) -> np.ndarray:
    """Number of detail bands killed by each observed step: ``killed[t, b] = #{l < L : 0 <=
    kill_step[b, l] <= steps[t]}`` (a band once below ``threshold E_l(0)`` counts as killed from its kill
    step on, as SPEC 5 defines the kill step). ``kill_step``: int (B, L+1) (the last column, E_c, is
    ignored); returns int64 (T, B)."""
    ks = np.asarray(kill_step)[:, :-1]
    steps = np.asarray(steps)
    dead = (ks[None, :, :] >= 0) & (ks[None, :, :] <= steps[:, None, None])
    return dead.sum(axis=-1).astype(np.int64)


@dataclass
class KillRates:
    """Result of :func:`kill_rates`. ``B`` members, ``L`` detail bands, ``T`` observed steps.

    - ``steps`` int64 (T,): the observed steps; ``energies`` float64 (T, B, L+1): ``[E_0..E_{L-1}, E_c]``
      (squared field units);
    - ``rate`` float64 (B, L+1): slope of ``log E_l(t)`` vs t, per step (natural log; negative: decay;
      NaN where fewer than 2 positive finite values), ``rate_stderr`` (B, L+1): its standard error
      (NaN with fewer than 3 values);
    - ``threshold``: the kill threshold;
    - ``kill_step`` int64 (B, L+1): first observed step with ``E_l(t) < threshold E_l(0)``, -1 if never;
    - ``tree_rate`` float64 (B, L) or None: ``2 log lambda_l`` of the tree step (tree: the exact rate,
      SPEC 3.1; coupled: the rate of its eps = 0 part); None for the grid systems;
    - ``killed`` int64 (T, B): detail bands killed by each observed step (:func:`killed_bands`).
    """
    system: str
    params: dict
    arity: int
    levels: int
    dims: int
    batch: int
    n_steps: int
    threshold: float
    steps: np.ndarray
    energies: np.ndarray
    rate: np.ndarray
    rate_stderr: np.ndarray
    kill_step: np.ndarray
    tree_rate: np.ndarray | None
    killed: np.ndarray

    @classmethod
    def from_rollout(cls, r, threshold=1e-3) -> "KillRates":
        """The kill rates of an existing :class:`vkbands.Rollout` (no device work)."""
        threshold = _threshold(threshold)
        if len(r.steps) < 2:
            raise ValueError(f"kill rates need at least 2 observed steps; the rollout has {len(r.steps)} "
                             "(more steps or a smaller every)")
        E = np.asarray(r.energies, dtype=np.float64)
        rate, se = R.contraction_rates(E, r.steps, stderr=True)
        ks = R.kill_steps(E, r.steps, threshold)
        tree_rate = None
        if "rates" in r.params:
            lam = np.asarray(r.params["rates"], dtype=np.float64)
            lam = np.broadcast_to(lam, (r.batch, lam.shape[-1]))
            with np.errstate(divide="ignore"):
                tree_rate = 2.0 * np.log(lam)
        return cls(system=r.system, params=dict(r.params), arity=r.arity, levels=r.levels, dims=r.dims,
                   batch=r.batch, n_steps=r.n_steps, threshold=threshold, steps=np.asarray(r.steps, np.int64),
                   energies=E,
                   rate=rate, rate_stderr=se, kill_step=ks, tree_rate=tree_rate,
                   killed=killed_bands(ks, r.steps))

    # ------------------------------------------------------------------ output
    def title(self) -> str:
        return (f"{self.system}  p={self.arity} L={self.levels} B={self.batch}  steps={self.n_steps}  "
                f"{param_text(self.params)}  kill threshold {self.threshold:g}")

    def table(self) -> list:
        """One row per member and band: ``(member, band, rate, rate_stderr, kill_step, tree_rate)``
        (band L is E_c; tree_rate NaN where there is none)."""
        rows = []
        for b in range(self.batch):
            for l in range(self.levels + 1):
                tr = self.tree_rate[b, l] if (self.tree_rate is not None and l < self.levels) else np.nan
                rows.append((b, l, self.rate[b, l], self.rate_stderr[b, l], self.kill_step[b, l], tr))
        return rows

    def to_dict(self) -> dict:
        return dict(experiment="kill-rates", system=self.system, params=self.params, arity=self.arity,
                    levels=self.levels, dims=self.dims, batch=self.batch, steps=self.n_steps, threshold=self.threshold,
                    observed_steps=self.steps, rate=self.rate, rate_stderr=self.rate_stderr,
                    kill_step=self.kill_step, tree_rate=self.tree_rate, killed=self.killed,
                    units=dict(rate="d log E / d step (natural log, per step)", kill_step="step"))

    def plot(self, path, max_lines=6):
        """Two panels: (left) detail bands killed vs step, a step line per member (more than
        ``max_lines`` members: the mean with the min-max range shaded); (right) the measured rate per
        detail band with +-2 standard errors, and ``2 log lambda_l`` where the system has it."""
        plt = _plt()
        L, B = self.levels, self.batch
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.3), dpi=110)
        colors = plt.cm.tab10(np.arange(min(B, max_lines)) % 10)
        if B <= max_lines:
            for b in range(B):
                a1.step(self.steps, self.killed[:, b], where="post", color=colors[b], lw=1.6,
                        label=f"member {b}", alpha=0.85)
        else:
            k = self.killed.astype(np.float64)
            a1.step(self.steps, k.mean(1), where="post", color="C0", lw=1.8, label=f"mean over {B} members")
            a1.fill_between(self.steps, k.min(1), k.max(1), step="post", color="C0", alpha=0.25,
                            label="min-max over members")
        a1.set_xlabel("step t")
        a1.set_ylabel(f"detail bands killed (E_l(t) < {self.threshold:g} E_l(0))")
        a1.set_ylim(-0.2, L + 0.2)
        a1.set_yticks(range(L + 1))
        a1.set_title("bands killed by step t")
        a1.grid(True, alpha=0.3)
        a1.legend(fontsize=7, loc="upper left")
        bands = np.arange(L)
        if B <= max_lines:
            for b in range(B):
                off = (b - (B - 1) / 2) * 0.08
                a2.errorbar(bands + off, self.rate[b, :L], yerr=2 * np.nan_to_num(self.rate_stderr[b, :L]),
                            fmt="o", ms=4, color=colors[b], capsize=3, label=f"measured, member {b}")
        else:
            m = np.nanmean(self.rate[:, :L], axis=0)
            lo, hi = np.nanmin(self.rate[:, :L], axis=0), np.nanmax(self.rate[:, :L], axis=0)
            a2.errorbar(bands, m, yerr=[m - lo, hi - m], fmt="o", ms=4, color="C0", capsize=3,
                        label=f"measured: mean, min-max over {B} members")
        if self.tree_rate is not None:
            tr = self.tree_rate[:, :L]
            same = np.allclose(tr, tr[:1], equal_nan=True)
            lab = "2 log λ_l (tree step" + (", eps = 0 part)" if self.system == "coupled" else ")")
            for b in range(1 if same else B):
                a2.plot(bands, tr[b], "x", color="k", ms=9, mew=1.5, label=lab if b == 0 else None)
        a2.axhline(0, color="0.5", lw=0.8)
        a2.set_xticks(bands)
        a2.set_xticklabels([f"E_{l}" for l in bands])
        a2.set_xlabel("detail band l")
        a2.set_ylabel("rate: slope of log E_l(t) per step")
        a2.set_title("contraction rate per band\n" + ("(±2 standard errors)" if B <= max_lines else
                                                       "(mean, min-max over the members)"), fontsize=10)
        a2.grid(True, alpha=0.3)
        a2.legend(fontsize=7, loc="best")
        fig.suptitle(self.title(), fontsize=9)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return Path(path)

    def save(self, folder, pictures=True) -> list:
        """``kill_rates.csv`` (:meth:`table`), ``killed.csv`` (step, member, killed), ``kill_rates.json``
        (:meth:`to_dict`), ``kill_rates.png`` (:meth:`plot`) into a new folder (or an OutputDir).
        Returns the paths written."""
        out = _output(folder)
        _write_csv(out, "kill_rates.csv", ["member", "band", "rate", "rate_stderr", "kill_step", "tree_rate"],
                   self.table(), ["%d", "%d", "%.9g", "%.6g", "%d", "%.9g"])
        T, B = self.killed.shape
        rows = np.column_stack([np.repeat(self.steps, B), np.tile(np.arange(B), T), self.killed.reshape(-1)])
        _write_csv(out, "killed.csv", ["step", "member", "killed"], rows, ["%d", "%d", "%d"])
        _write_json(out, "kill_rates.json", self.to_dict())
        names = ["kill_rates.csv", "killed.csv", "kill_rates.json"]
        if pictures:
            out.write("kill_rates.png", self.plot)
            names.append("kill_rates.png")
        return [out.path / n for n in names]


def kill_rates(system, x0=None, *, steps=None, every=1, threshold=1e-3, ctx=None, progress=None,
               **params) -> KillRates:
    """Per member and band: contraction rate (slope of ``log E_l(t)`` vs t) with its standard error,
    kill step, the tree's ``2 log lambda_l``, and the bands killed per step; see :class:`KillRates`.

    ``system``: a :class:`vkbands.Rollout` (analysed as it is: no device work; ``x0``/``steps`` not
    allowed), a :class:`vkbands.Setup` (x0 defaults to ``setup.x0()``), or a system name with ``x0``
    (float32 ``(N,)`` / ``(B, N)`` with ``dims=1`` / ``(H, W)`` / ``(B, H, W)``) and its parameters in
    ``params`` (``tau``: the tree / coupled time scale). One batched :func:`vkbands.rollout` of ``steps``
    steps observed ``every`` steps; ``threshold``: the kill threshold (0 < threshold < 1). The rates are
    per step (natural log of an energy)."""
    from .rollout import Rollout, rollout
    if isinstance(system, Rollout):
        if x0 is not None or steps is not None or params:
            raise TypeError("kill_rates(rollout): the rollout is analysed as it is; x0, steps and parameters "
                            "are not allowed")
        return KillRates.from_rollout(system, threshold)
    threshold = _threshold(threshold)
    if steps is None:
        raise TypeError("kill_rates() needs steps")
    steps, every = _int("steps", steps, 2), _int("every", every, 1)
    if steps // every < 2:
        raise ValueError(f"steps={steps}, every={every}: kill rates need at least 2 observations after step 0; "
                         f"allowed: every <= steps / 2")
    name, x0, params = _resolve(system, x0, params)
    r = rollout(name, x0, steps, every=every, ctx=ctx, progress=progress, **params)
    return KillRates.from_rollout(r, threshold)


# ----------------------------------------------------------------------------- 2. influence matrix
def ablated_states(x, arity, dims=None):
    """The L + 1 initial states of the ablation, float32 ``(L+1,) + x.shape``: row 0 the field itself,
    row ``b + 1`` the field without its detail band b. Exact band algebra in float64 on the host
    (:func:`vkbands.reference.decompose`; the detail coefficients ``d^(b)`` set to 0;
    :func:`vkbands.reference.reconstruct`), then one rounding to float32. Row 0 goes through the same
    decompose/reconstruct/round, so every member carries the same round-off path.

    ``x``: one field, ``(N,)`` or ``(H, W)``; ``L`` its number of levels (SPEC 1, the maximum)."""
    x = np.asarray(x, dtype=np.float64)
    dims = R.infer_dims(x.shape, dims)
    if x.ndim != dims:
        raise ValueError(f"ablated_states: one field of {dims} axis/axes, got shape {x.shape}")
    details, c = R.decompose(x, arity, dims)
    L = len(details)
    if L == 0:
        raise ValueError(f"a field of shape {x.shape} has no detail band for arity {arity} (L = 0): nothing to "
                         "remove")
    out = [R.reconstruct(details, c, arity, dims)]
    for b in range(L):
        d = list(details)
        d[b] = np.zeros_like(d[b])
        out.append(R.reconstruct(d, c, arity, dims))
    return np.stack(out).astype(np.float32)


def _relative(Eab, E):
    """``(Eab - E) / E`` with NaN where E = 0 (a relative change of nothing is undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(E > 0, (Eab - E) / np.where(E > 0, E, 1.0), np.nan)


@dataclass
class Influence:
    """Result of :func:`influence_matrix`: the cross-band influence by ablation (docs/EXPERIMENTS.md).

    - ``steps`` int64 (T,), ``energies`` float64 (T, L+1, L+1) ``[t, member, band]``: member 0 the full
      initial state, member ``b + 1`` without detail band b; bands ``[E_0..E_{L-1}, E_c]``;
    - ``times`` int64 (K,): the chosen steps; ``relative`` float64 (K, L, L):
      ``M[k][b, l] = (E_l^{-b}(t_k) - E_l(t_k)) / E_l(t_k)`` (dimensionless; -1: band l is gone,
      0: no change, > 0: band l has more energy without band b; NaN where ``E_l(t_k) = 0``);
      ``absolute`` (K, L, L): ``E_l^{-b}(t_k) - E_l(t_k)`` (squared field units). Rows: the band
      removed; columns: the band observed. The diagonal is kept (the self-removal: -1 at t = 0, and
      for eps > 0 how much of band b the coupling regrows); the pictures mask it;
    - ``x0`` float32 (L+1,) + field shape: the members' initial states (:func:`ablated_states`).
    """
    system: str
    params: dict
    arity: int
    levels: int
    dims: int
    n_steps: int
    steps: np.ndarray
    energies: np.ndarray
    times: np.ndarray
    relative: np.ndarray
    absolute: np.ndarray
    x0: np.ndarray = field(repr=False, default=None)

    def at(self, t, relative=True) -> np.ndarray:
        """The (L, L) matrix at any observed step ``t``."""
        hit = np.flatnonzero(self.steps == int(t))
        if not len(hit):
            raise ValueError(f"t={t}: not an observed step; allowed: {self.steps[0]}..{self.steps[-1]} step "
                             f"{self.steps[1] - self.steps[0] if len(self.steps) > 1 else 1}")
        E = self.energies[hit[0]]
        L = self.levels
        Eab, E0 = E[1:, :L], E[:1, :L]
        return _relative(Eab, E0) if relative else Eab - E0

    def off_diagonal(self) -> np.ndarray:
        """``relative`` with the diagonal set to NaN, (K, L, L)."""
        M = self.relative.copy()
        i = np.arange(self.levels)
        M[:, i, i] = np.nan
        return M

    def title(self) -> str:
        return (f"{self.system}  p={self.arity} L={self.levels}  steps={self.n_steps}  "
                f"{param_text(self.params)}")

    def to_dict(self) -> dict:
        return dict(experiment="influence", system=self.system, params=self.params, arity=self.arity,
                    levels=self.levels, dims=self.dims, steps=self.n_steps, times=self.times,
                    definition="M[t][b, l] = (E_l^{-b}(t) - E_l(t)) / E_l(t): rows b = band removed from the "
                               "initial state, columns l = band observed; diagonal = self-removal",
                    relative=self.relative, absolute=self.absolute,
                    max_abs_off_diagonal=[None if np.all(np.isnan(m)) else float(np.nanmax(np.abs(m)))
                                          for m in self.off_diagonal()])

    def _vmax(self, idx):
        off = np.abs(self.off_diagonal()[idx])
        m = float(np.nanmax(off)) if np.isfinite(off).any() else 0.0
        return max(m, 1e-6)

    def plot(self, path, t=None):
        """Heat map(s) of ``relative``: rows = band removed b, columns = band observed l, a diverging
        colour map symmetric around 0 on a symmetric log scale (linear within +-1e-6; range: the largest
        off-diagonal |M|, at least 1e-6, shared by the panels), a colour bar, the diagonal masked grey with its value written in. ``t``: one chosen
        time (default: all of them, one panel each)."""
        plt = _plt()
        idx = list(range(len(self.times))) if t is None else [int(np.flatnonzero(self.times == int(t))[0])]
        L = self.levels
        v = self._vmax(idx)
        n = len(idx)
        fig, axes = plt.subplots(1, n, figsize=(1.6 + 3.4 * n, 4.2), dpi=110, squeeze=False,
                                 constrained_layout=True)
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.8")
        # relative changes span decades (a band near its kill step changes by 1e+11, another by 1e-4):
        # a symmetric log scale, linear within +-1e-6 (the ablation's float32 rounding), keeps both readable
        from matplotlib.colors import SymLogNorm
        norm = SymLogNorm(linthresh=1e-6, vmin=-v, vmax=v, base=10) if v > 1e-5 else None
        im = None
        for j, (ax, k) in enumerate(zip(axes[0], idx)):
            M = self.off_diagonal()[k]
            im = ax.imshow(M, cmap=cmap, norm=norm, vmin=None if norm else -v, vmax=None if norm else v,
                           origin="upper")
            ax.set_xticks(range(L))
            ax.set_xticklabels([f"$E_{{{l}}}$" for l in range(L)])
            ax.set_yticks(range(L))
            ax.set_yticklabels([f"b={b}" for b in range(L)] if j == 0 else [])
            ax.set_xlabel("band observed l")
            if j == 0:
                ax.set_ylabel("band removed from x0: b")
            ax.set_title(f"t = {int(self.times[k])}", fontsize=9)
            if L <= 8:
                for b in range(L):
                    for l in range(L):
                        val = self.relative[k, b, l]
                        txt = "nan" if not np.isfinite(val) else f"{val:.2g}"
                        strong = np.isfinite(M[b, l]) and (norm(abs(M[b, l])) > 0.8 if norm else abs(M[b, l]) > 0.6 * v)
                        ax.text(l, b, txt, ha="center", va="center", fontsize=7,
                                color="white" if strong else "black", style="italic" if b == l else "normal")
        cb = fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85)
        if norm is not None:        # at most ~5 decades a side: 0, +-1e-6, ..., +-vmax
            top = int(np.floor(np.log10(v)))
            stride = max(1, -(-(top + 6) // 4))
            ks = list(range(-6, top + 1, stride))
            cb.set_ticks([-(10.0 ** k) for k in reversed(ks)] + [0.0] + [10.0 ** k for k in ks])
        cb.set_label(r"$(E_l^{-b}(t) - E_l(t))\,/\,E_l(t)$")
        fig.suptitle(f"cross-band influence by ablation (diagonal: self-removal, grey, value written)\n"
                     f"{self.title()}", fontsize=9)
        fig.savefig(path)
        plt.close(fig)
        return Path(path)

    def save(self, folder, pictures=True) -> list:
        """``influence.csv`` (time, removed band b, observed band l, relative, absolute),
        ``influence_energies.csv`` (step, member, removed band or -1, E_0..E_c), ``influence.json``,
        ``influence.png`` (all chosen times) and ``influence_tNNNNN.png`` (one per time) into a new
        folder (or an OutputDir). Returns the paths written."""
        out = _output(folder)
        L = self.levels
        rows = [(int(t), b, l, self.relative[k, b, l], self.absolute[k, b, l])
                for k, t in enumerate(self.times) for b in range(L) for l in range(L)]
        _write_csv(out, "influence.csv", ["t", "removed_band", "observed_band", "relative", "absolute"], rows,
                   ["%d", "%d", "%d", "%.9g", "%.9g"])
        T, M1, L1 = self.energies.shape
        e_rows = np.column_stack([np.repeat(self.steps, M1), np.tile(np.arange(M1), T),
                                  np.tile(np.arange(M1) - 1, T), self.energies.reshape(-1, L1)])
        _write_csv(out, "influence_energies.csv",
                   ["step", "member", "removed_band"] + [f"E_{l}" for l in range(L)] + ["E_c"], e_rows,
                   ["%d", "%d", "%d"] + ["%.9g"] * L1)
        _write_json(out, "influence.json", self.to_dict())
        names = ["influence.csv", "influence_energies.csv", "influence.json"]
        if pictures:
            out.write("influence.png", self.plot)
            names.append("influence.png")
            for t in self.times:
                name = f"influence_t{int(t):05d}.png"
                out.write(name, lambda p, t=t: self.plot(p, t=t))
                names.append(name)
        return [out.path / n for n in names]


def _field_arity(name, field, params):
    spec = systems.get(name)
    if params.get("arity") is not None:
        return systems.ARITY.convert(params["arity"])
    if issubclass(spec.cls, systems.GridSystem):
        return systems.default_arity(field.shape[-2:])
    return systems.ARITY.default


def influence_matrix(system, x0=None, *, steps=None, times=None, every=1, ctx=None, progress=None,
                     **params) -> Influence:
    """The cross-band influence matrix by ablation (see :class:`Influence` and docs/EXPERIMENTS.md),
    from ONE batched rollout of ``L + 1`` members (:func:`ablated_states` of ``x0``).

    ``system``: a :class:`vkbands.Setup` (``x0`` default: member 0 of ``setup.x0()``) or a system
    name with one field ``x0`` (``(N,)`` / ``(H, W)``) and the system's parameters (``eps``, ``C``,
    ``phi``, ``tau``/``alpha``/``rates``, ``arity``, ...). Made for the coupled operator (SPEC 3.2);
    any system with one field per member runs (tree: a diagonal matrix; heat: the grid's bands).
    ``steps``: rollout length; ``every``: observation cadence; ``times``: the steps reported
    (observed steps in 0..steps; default ``(steps // 4, steps // 2, steps)``)."""
    from .rollout import rollout
    if steps is None:
        raise TypeError("influence_matrix() needs steps")
    steps, every = _int("steps", steps, 1), _int("every", every, 1)
    setup = system if isinstance(system, Setup) else None
    if setup is not None and x0 is None:
        x0 = setup.x0()[0]
    name, x0, params = _resolve(system, x0, params)
    spec = systems.get(name)
    if spec.fields_per_member != 1:
        raise ValueError(f"system={name}: {spec.fields_per_member} fields per member; the ablation removes a band "
                         "of one field: allowed: tree, coupled, heat (one field per member)")
    field_ = np.asarray(x0, dtype=np.float32)
    dims = params.pop("dims", None)
    dims = int(dims) if dims is not None else (1 if field_.ndim == 1 else 2)
    if field_.ndim != dims:
        raise ValueError(f"x0 of shape {field_.shape}: one field is needed ((N,) or (H, W)); a batch is not "
                         "ablated (take one member)")
    arity = _field_arity(name, field_, params)
    params["arity"] = arity
    if times is None:
        times = sorted({max(1, steps // 4), max(1, steps // 2), steps})
    times = np.asarray(sorted({int(t) for t in np.atleast_1d(times)}), dtype=np.int64)
    bad = [int(t) for t in times if t < 0 or t > steps or t % every]
    if bad or not len(times):
        raise ValueError(f"times={bad or list(times)}: allowed: observed steps, multiples of every={every} in "
                         f"0..steps={steps}")
    xs = ablated_states(field_, arity, dims)
    L = xs.shape[0] - 1
    r = rollout(name, xs, steps, every=every, dims=dims, ctx=ctx, progress=progress, **params)
    if r.levels != L or r.batch != L + 1:
        raise RuntimeError(f"{name}: the rollout has L={r.levels}, B={r.batch}; the ablation made L={L}")
    E = np.asarray(r.energies, dtype=np.float64)
    pos = np.searchsorted(r.steps, times)
    Et = E[pos]                                             # (K, L+1 members, L+1 bands)
    Eab, E0 = Et[:, 1:, :L], Et[:, :1, :L]
    return Influence(system=name, params=dict(r.params), arity=r.arity, levels=L, dims=r.dims,
                     n_steps=r.n_steps, steps=np.asarray(r.steps, np.int64), energies=E, times=times,
                     relative=_relative(Eab, E0), absolute=Eab - E0, x0=xs)


# ----------------------------------------------------------------------------- 3. eps sweep
def _transitions(eps, D):
    """``[(eps_before, eps_after, D_before, D_after), ...]`` where the sequence D (over sorted eps) changes."""
    return [(float(eps[i - 1]), float(eps[i]), int(D[i - 1]), int(D[i])) for i in range(1, len(eps))
            if D[i] != D[i - 1]]


@dataclass
class EpsSweep:
    """Result of :func:`eps_sweep` (or :meth:`from_dataset` of a :func:`vkbands.sweep` Dataset).

    - ``eps`` float64 (E,) ascending, ``seeds`` int64 (S,), ``threshold`` the kill threshold;
    - ``deepest_members`` int64 (E, S, B): the deepest surviving band ``max{l : E_l(T) > threshold E_l(0)}``
      at the last observed step T, per eps, seed and batch member (-1: every detail band killed);
    - ``deepest`` int64 (E, S): the deepest over the members (the set-up's batch is usually 1);
    - ``transitions``: ``{seed: [(eps_before, eps_after, D_before, D_after), ...]}``, where D changes
      between two neighbouring eps of the sweep (the change lies in ``(eps_before, eps_after]``);
    - ``agree`` bool: every seed has the same D at every eps; ``agree_at`` bool (E,) per eps.
    """
    system: str
    eps: np.ndarray
    seeds: np.ndarray
    threshold: float
    n_steps: int
    levels: int
    deepest_members: np.ndarray
    params: dict = field(default_factory=dict)
    dataset: object = field(default=None, repr=False)

    @property
    def deepest(self) -> np.ndarray:
        return self.deepest_members.max(axis=-1)

    @property
    def transitions(self) -> dict:
        return {int(s): _transitions(self.eps, self.deepest[:, j]) for j, s in enumerate(self.seeds)}

    @property
    def agree_at(self) -> np.ndarray:
        D = self.deepest
        return np.all(D == D[:, :1], axis=1)

    @property
    def agree(self) -> bool:
        return bool(self.agree_at.all())

    @classmethod
    def from_dataset(cls, ds, threshold=None) -> "EpsSweep":
        """The analysis of a :func:`vkbands.sweep` Dataset over ``eps`` (coords ``eps`` and ``seed`` along
        ``run``): the deepest surviving band at the last observed step per (eps, seed, member), from
        ``energies (run, member, t, band)`` with ``threshold`` (default: the Dataset's ``threshold``
        attribute, else 1e-3). Runs repeated for one (eps, seed) must agree."""
        for name in ("eps", "seed"):
            if name not in ds.coords:
                raise ValueError(f"the sweep Dataset has no coordinate {name!r} (coords: {sorted(ds.coords)}); "
                                 "an eps sweep needs eps and seed along run")
        threshold = _threshold(threshold if threshold is not None else ds.attrs.get("threshold", 1e-3))
        E = np.asarray(ds["energies"].transpose("run", "t", "member", "band").values, dtype=np.float64)
        if E.shape[1] < 1:
            raise ValueError("the sweep Dataset has no observed step")
        D = np.stack([R.deepest_surviving_band(e, threshold)[-1] for e in E]) if E.shape[1] else None  # (run, member)
        eps_run = np.asarray(ds["eps"].values, dtype=np.float64)
        seed_run = np.asarray(ds["seed"].values).astype(np.int64)
        eps, seeds = np.unique(eps_run), np.unique(seed_run)
        out = np.full((len(eps), len(seeds), D.shape[1]), -2, dtype=np.int64)
        for r, (e, s) in enumerate(zip(eps_run, seed_run)):
            i, j = np.searchsorted(eps, e), np.searchsorted(seeds, s)
            if out[i, j, 0] != -2 and not np.array_equal(out[i, j], D[r]):
                raise ValueError(f"eps={e}, seed={s}: two runs of the sweep disagree ({out[i, j]} vs {D[r]})")
            out[i, j] = D[r]
        missing = np.argwhere(out[:, :, 0] == -2)
        if len(missing):
            i, j = missing[0]
            raise ValueError(f"the sweep Dataset has no run for eps={eps[i]}, seed={seeds[j]} (a grid sweep over "
                             "eps x seeds is needed)")
        steps = int(ds.attrs.get("steps", int(np.asarray(ds["t"].values)[-1])))
        levels = int(ds.attrs.get("levels", E.shape[-1] - 1))
        params = {}
        for key in ("setup", "fixed"):          # the sweep's JSON attributes: set-up options, fixed parameters
            try:
                params.update(json.loads(ds.attrs.get(key, "{}")))
            except (TypeError, ValueError):
                pass
        return cls(system=str(ds.attrs.get("system", "coupled")), eps=eps, seeds=seeds, threshold=threshold,
                   n_steps=steps,
                   levels=levels, deepest_members=out, params=params, dataset=ds)

    def title(self) -> str:
        return (f"{self.system}  L={self.levels}  steps={self.n_steps}  kill threshold {self.threshold:g}  "
                f"seeds={','.join(map(str, self.seeds))}\n{param_text(self.params, skip=('C',))}")

    def to_dict(self) -> dict:
        return dict(experiment="eps-sweep", system=self.system, params=self.params, levels=self.levels,
                    steps=self.n_steps, threshold=self.threshold,
                    eps=self.eps, seeds=self.seeds, deepest=self.deepest, deepest_members=self.deepest_members,
                    transitions={str(k): [dict(eps_before=a, eps_after=b, deepest_before=c, deepest_after=d)
                                          for a, b, c, d in v] for k, v in self.transitions.items()},
                    seeds_agree=self.agree, seeds_agree_at=self.agree_at,
                    definition="deepest surviving band at the last observed step T: max{l < L : E_l(T) > threshold "
                               "E_l(0)} "
                               "(-1: none), the deepest over the batch members; a transition (a, b] lies between "
                               "neighbouring eps of the sweep")

    def plot(self, path):
        """Deepest surviving band at the end vs eps, one step line (with markers) per seed; the
        transitions marked by vertical dotted lines at the midpoint of their eps interval."""
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7.5, 4.3), dpi=110)
        S = len(self.seeds)
        for j, s in enumerate(self.seeds):
            off = (j - (S - 1) / 2) * 0.06
            ax.plot(self.eps, self.deepest[:, j] + off, "o--", color=f"C{j % 10}", ms=5, lw=1, alpha=0.9,
                    label=f"seed {s}")
            for a, b, _, _ in self.transitions[int(s)]:
                ax.axvline((a + b) / 2, color=f"C{j % 10}", ls=":", lw=1)
        ax.set_xlabel("coupling strength eps")
        ax.set_ylabel(f"deepest surviving band at t={self.n_steps}")
        ax.set_yticks(range(-1, self.levels))
        ax.set_yticklabels(["none"] + [str(l) for l in range(self.levels)])
        ax.set_ylim(-1.4, self.levels - 0.6)
        agree = "seeds agree" if self.agree else "seeds disagree at eps=" + ",".join(
            f"{e:.3g}" for e in self.eps[~self.agree_at])
        ax.set_title(f"deepest surviving band vs eps ({agree}; dotted: transitions, midway between the eps "
                     f"sampled)\n{self.title()}", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return Path(path)

    def save(self, folder, pictures=True) -> list:
        """``eps_sweep.csv`` (eps, seed, member, deepest), ``eps_sweep.json`` (:meth:`to_dict`),
        ``eps_sweep.png`` into a new folder (or an OutputDir). Returns the paths written."""
        out = _output(folder)
        E, S, B = self.deepest_members.shape
        rows = [(self.eps[i], self.seeds[j], b, self.deepest_members[i, j, b])
                for i in range(E) for j in range(S) for b in range(B)]
        _write_csv(out, "eps_sweep.csv", ["eps", "seed", "member", "deepest_surviving_band"], rows,
                   ["%.9g", "%d", "%d", "%d"])
        _write_json(out, "eps_sweep.json", self.to_dict())
        names = ["eps_sweep.csv", "eps_sweep.json"]
        if pictures:
            out.write("eps_sweep.png", self.plot)
            names.append("eps_sweep.png")
        return [out.path / n for n in names]


def _eps_values(eps):
    e = np.asarray(eps, dtype=np.float64).reshape(-1)
    if e.size < 2 or not np.all(np.isfinite(e)) or np.any(e < 0):
        raise ValueError(f"eps={list(np.atleast_1d(eps))}: allowed: at least 2 finite values >= 0")
    if len(np.unique(e)) != e.size:
        raise ValueError(f"eps={e.tolist()}: repeated values; allowed: distinct values")
    return np.sort(e)


def _seeds(seeds):
    s = [int(v) for v in np.atleast_1d(seeds)]
    if len(set(s)) < 2:
        raise ValueError(f"seeds={s}: an eps sweep needs at least 2 distinct seeds (whether the transitions depend "
                         "on the seed is part of the answer)")
    if min(s) < 0:
        raise ValueError(f"seeds={s}: allowed: integers >= 0")
    return tuple(s)


def eps_sweep(system="coupled", eps=(0.0, 0.1, 0.2, 0.4), seeds=(0, 1), *, steps=None, every=1, threshold=1e-3,
              store=None, ctx=None, progress=None, **setup) -> EpsSweep:
    """The deepest surviving band at the end of the coupled operator's rollout per ``eps`` and seed,
    and the eps where it changes (see :class:`EpsSweep`): ONE :func:`vkbands.sweep` over
    ``{"eps": eps}`` x ``seeds`` (a grid), its analysis by :meth:`EpsSweep.from_dataset`.

    ``system``: "coupled" (or another system with an ``eps`` parameter) and the set-up options in
    ``setup`` (``depth``, ``arity``, ``init``, ``phi``, ``tau``, ``rates``...; ``tau`` is the system's
    time scale), or a :class:`vkbands.Setup` (its options, without its seed). ``threshold``: the kill
    threshold (0 < threshold < 1). ``seeds``: at least 2 distinct (a
    ValueError otherwise); each seed makes the runs' initial states; the coupling matrix is the same for
    the whole sweep (``C`` or ``coupling_seed`` when given, else that of the first seed: the rule of
    :func:`vkbands.sweep`). ``eps``: at least 2 distinct values >= 0 (sorted here). ``store``: a Zarr
    path, passed to :func:`vkbands.sweep` (resumable)."""
    from . import sweep as sweep_module
    seeds = _seeds(seeds)
    eps = _eps_values(eps)
    threshold = _threshold(threshold)
    if steps is None:
        raise TypeError("eps_sweep() needs steps")
    steps, every = _int("steps", steps, 1), _int("every", every, 1)
    if isinstance(system, Setup):
        if setup:
            raise TypeError(f"with a Setup the options come from it; got {sorted(setup)}: use setup.replace(...)")
        opts = {k: v for k, v in system.options.items() if k not in ("seed", "eps")}
        system = system.system
    else:
        opts = dict(setup)
        if "eps" in opts or "seed" in opts:
            raise TypeError("eps_sweep(): give eps and seeds as eps=[...], seeds=(...), not as set-up options")
    spec = systems.get(system)
    if spec.param("eps") is None:
        raise ValueError(f"system={system}: has no parameter eps; allowed: "
                         f"{', '.join(n for n in systems.names() if systems.get(n).param('eps') is not None)}")
    run = getattr(sweep_module, "sweep", None) or sweep_module
    ds = run(system, {"eps": eps.tolist()}, steps=steps, every=every, seeds=seeds, grid=True, threshold=threshold,
             store=store, ctx=ctx, progress=progress, **opts)
    return EpsSweep.from_dataset(ds, threshold=threshold)
