"""Pictures and ``summary.csv`` of a parameter sweep (the :class:`xarray.Dataset` of :func:`vkbands.sweep`).

Usable from Python as well as by ``vkbands sweep``; every function takes the Dataset and a path and
returns the path written (matplotlib with the Agg backend, Pillow-free; parent folders are created):

- :func:`write_summary_csv`: one row per run x member (see :func:`summary_header` for the columns);
- :func:`final_state_map`: two swept parameters: the final observed field of every run laid out on the
  parameter grid (columns = the first parameter, rows = the second, increasing upwards; Gray-Scott's
  final ``v`` over (F, k) is the classic pattern map). Needs ``final=True``. One seed (the first, or
  ``seed=``) and one member (``member=``, default 0) per cell; one colour range for all cells;
- :func:`observable_heatmap`: two swept parameters: an observable (:data:`OBSERVABLES`) over the grid,
  the mean over seeds and members of each cell, with a colour bar;
- :func:`energies_vs_param`: one swept parameter (or a zipped sweep): the final band energies vs the
  (first) parameter, log y, one curve per band, mean over seeds and members (band: min..max shaded);
- :func:`write_pictures`: the pictures that apply to the sweep's shape.

With more than two swept parameters (a grid), the map and the heat map show the first two with the
others at their first value (the title says so).

The grid position of each run is found from its parameter coordinates (``ds[name]``) in the
``swept`` attribute's value lists, so grid (``itertools.product``) and zipped sweeps are both read
from the data, never from an assumed run order.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np

__all__ = ["OBSERVABLES", "DEFAULT_OBSERVABLE", "swept", "seeds_of", "observable", "check_observable",
           "summary_header", "summary_rows", "write_summary_csv", "final_state_map", "observable_grid",
           "observable_heatmap",
           "energies_vs_param", "pictures_for", "write_pictures"]

DEFAULT_OBSERVABLE = "deepest_surviving_band"
# name -> (description); ``E_<l>``, ``kill_<l>``, ``rate_<l>`` take a band index 0..L-1 or ``c``
OBSERVABLES = {
    "deepest_surviving_band": "deepest detail band l with E_l(T) > threshold E_l(0) at the last observation "
                              "(the sweep's threshold attribute; -1: none survives; SPEC 5)",
    "E_<l>": "final energy of band l (l = 0..L-1, or c for the coarse energy E_c)",
    "kill_<l>": "kill step of band l (first observed t with E_l(t) < threshold E_l(0); -1: never)",
    "rate_<l>": "contraction rate of band l (slope of log E_l(t) vs t)",
    "mass": "final mass (sum of the observed field)",
}
_BAND_OBS = re.compile(r"^(E|kill|rate)_(\d+|c)$")
_BACKGROUND = np.array([0.125, 0.125, 0.125, 1.0])   # gaps between cells (the sheet pictures' dark grey)
_NONFINITE = np.array([1.0, 0.0, 1.0, 1.0])           # NaN / Inf (magenta, as in every vkbands picture)


# ----------------------------------------------------------------------------- reading the Dataset
def swept(ds) -> dict:
    """``{name: [values]}`` of the swept parameters, in the sweep's order (``ds.attrs["swept"]``)."""
    out = json.loads(ds.attrs["swept"])
    if not isinstance(out, dict):
        raise ValueError(f"the dataset's 'swept' attribute is {type(out).__name__}; expected a JSON object")
    return {str(k): [float(v) for v in vals] for k, vals in out.items()}


def seeds_of(ds) -> list:
    """The seeds of the sweep, in order."""
    if "seeds" in ds.attrs:
        return [int(s) for s in json.loads(ds.attrs["seeds"])]
    return sorted({int(s) for s in np.asarray(ds["seed"].values)})


def _levels(ds) -> int:
    return int(ds.sizes["band"]) - 1


def _band_index(ds, text) -> int:
    L = _levels(ds)
    return L if text == "c" else int(text)


def check_observable(name, levels) -> str:
    """``name`` if it is an observable of a sweep with ``levels`` detail bands; a ValueError saying what
    is allowed otherwise."""
    allowed = (f"deepest_surviving_band, mass, E_<l>, kill_<l> or rate_<l> with l in 0..{levels - 1} or c "
               f"(the coarse band)" if levels > 0 else
               "deepest_surviving_band, mass, E_c, kill_c or rate_c (this field has no detail band)")
    name = str(name)
    if name in ("deepest_surviving_band", "mass"):
        return name
    m = _BAND_OBS.match(name)
    if m and (m.group(2) == "c" or int(m.group(2)) < levels):
        return name
    raise ValueError(f"--observable {name}: not an observable of this sweep; allowed: {allowed}")


def _title_name(name) -> str:
    m = _BAND_OBS.match(name)
    if not m:
        return name.replace("_", " ")
    what = {"E": "final energy", "kill": "kill step", "rate": "contraction rate"}[m.group(1)]
    return f"{what} of band {'E_c' if m.group(2) == 'c' else m.group(2)}"


def observable(ds, name=DEFAULT_OBSERVABLE) -> np.ndarray:
    """The observable ``name`` per run and member, float64 ``(run, member)`` (NaN where undefined)."""
    check_observable(name, _levels(ds))
    if name == "deepest_surviving_band":
        return np.asarray(ds["deepest_surviving_band"].values, dtype=np.float64)
    if name == "mass":
        return np.asarray(ds["mass"].values[:, :, -1], dtype=np.float64)
    kind, band = _BAND_OBS.match(name).groups()
    b = _band_index(ds, band)
    if kind == "E":
        return np.asarray(ds["energies"].values[:, :, -1, b], dtype=np.float64)
    if kind == "kill":
        return np.asarray(ds["kill_step"].values[:, :, b], dtype=np.float64)
    return np.asarray(ds["rate"].values[:, :, b], dtype=np.float64)


def _positions(ds, names) -> np.ndarray:
    """``(R, len(names))`` index of each run's value of each parameter in the swept value lists."""
    values = swept(ds)
    pos = np.empty((ds.sizes["run"], len(names)), dtype=np.int64)
    for j, name in enumerate(names):
        grid = np.asarray(values[name], dtype=np.float64)
        coord = np.asarray(ds[name].values, dtype=np.float64)
        idx = np.abs(coord[:, None] - grid[None, :]).argmin(axis=1)
        if not np.all(coord == grid[idx]):
            bad = coord[coord != grid[idx]][0]
            raise ValueError(f"run coordinate {name}={bad!r} is not one of the swept values {values[name]}")
        pos[:, j] = idx
    return pos


def _others_fixed(ds, names):
    """A boolean mask over runs: parameters after the first two at their first value; and the words."""
    values = swept(ds)
    mask = np.ones(ds.sizes["run"], dtype=bool)
    fixed = []
    for name in names[2:]:
        mask &= np.asarray(ds[name].values, dtype=np.float64) == values[name][0]
        fixed.append(f"{name}={values[name][0]:.6g}")
    return mask, fixed


def _title(ds, what, extra=()) -> str:
    steps = ds.attrs.get("steps")
    shape = "x".join(str(ds.sizes[d]) for d in ("y", "x") if d in ds.sizes)
    head = f"{ds.attrs.get('system', '?')}{' ' + shape if shape else ''}, {steps} steps: {what}"
    return head + ("\n" + "; ".join(extra) if extra else "")


def _fmt(v) -> str:
    return f"{v:.4g}"


# ----------------------------------------------------------------------------- summary.csv
def summary_header(ds) -> list:
    """The columns of summary.csv: ``run, member, <swept parameters in order>, seed, E_0..E_{L-1}, E_c,
    kill_0..kill_{L-1}, kill_c, rate_0..rate_c, rate_stderr_0..rate_stderr_c, deepest_surviving_band``.
    Energies are those of the last observation; a kill step of -1 means never."""
    L = _levels(ds)
    bands = [str(l) for l in range(L)] + ["c"]
    return (["run", "member", *swept(ds), "seed"] + [f"E_{b}" for b in bands] + [f"kill_{b}" for b in bands]
            + [f"rate_{b}" for b in bands] + [f"rate_stderr_{b}" for b in bands] + ["deepest_surviving_band"])


def summary_rows(ds):
    """The rows of summary.csv (Python numbers: ints, floats exactly as in the Dataset), run-major."""
    names = list(swept(ds))
    runs = np.asarray(ds["run"].values)
    params = {n: np.asarray(ds[n].values, dtype=np.float64) for n in names}
    seed = np.asarray(ds["seed"].values)
    E = np.asarray(ds["energies"].values[:, :, -1, :], dtype=np.float64)
    kill = np.asarray(ds["kill_step"].values)
    rate = np.asarray(ds["rate"].values, dtype=np.float64)
    err = np.asarray(ds["rate_stderr"].values, dtype=np.float64)
    dsb = np.asarray(ds["deepest_surviving_band"].values)
    for r in range(len(runs)):
        for m in range(ds.sizes["member"]):
            yield ([int(runs[r]), m] + [float(params[n][r]) for n in names] + [int(seed[r])]
                   + [float(v) for v in E[r, m]] + [int(v) for v in kill[r, m]]
                   + [float(v) for v in rate[r, m]] + [float(v) for v in err[r, m]] + [int(dsb[r, m])])


def write_summary_csv(ds, path) -> Path:
    """summary.csv of the sweep (:func:`summary_header`; floats written with ``repr``: exact round trip,
    ``nan`` / ``inf`` where not finite). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(summary_header(ds))
        w.writerows(summary_rows(ds))
    return path


# ----------------------------------------------------------------------------- pictures
def _plt():
    from ._plotting import plt     # bare Figures: never switches the process's matplotlib backend
    return plt()


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    _plt().close(fig)
    return path


def _grid_names(ds, what):
    names = list(swept(ds))
    if len(names) < 2 or not bool(ds.attrs.get("grid", True)):
        raise ValueError(f"{what} needs a grid sweep of two or more parameters; this one sweeps "
                         f"{', '.join(names) or 'nothing'}{'' if bool(ds.attrs.get('grid', True)) else ' (zipped)'}")
    return names


def _ticks(ax, values, axis, n_max=17):
    """Label the cell centres with their parameter values (at most ~n_max labels)."""
    n = len(values)
    step = max(1, math.ceil(n / n_max))
    idx = list(range(0, n, step))
    labels = [_fmt(values[i]) for i in idx]
    if axis == "x":
        ax.set_xticks(idx)
        ax.set_xticklabels(labels, rotation=60 if n > 6 else 0, fontsize=7)
    else:
        ax.set_yticks(idx)
        ax.set_yticklabels(labels, fontsize=7)


def final_state_map(ds, path, member=0, seed=None, max_cell=96) -> Path:
    """The final observed field of every run on the grid of the first two swept parameters (columns:
    the first, rows: the second, increasing upwards), one seed (default: the first) and one member.
    Cells larger than ``max_cell`` pixels are subsampled. Returns ``path``."""
    names = _grid_names(ds, "final_state_map")
    if "final" not in ds:
        raise ValueError("final_state_map needs the final fields: run the sweep with final=True")
    seeds = seeds_of(ds)
    seed = seeds[0] if seed is None else int(seed)
    if seed not in seeds:
        raise ValueError(f"seed={seed}: not a seed of this sweep; allowed: {', '.join(map(str, seeds))}")
    if not 0 <= int(member) < ds.sizes["member"]:
        raise ValueError(f"member={member}: allowed: 0..{ds.sizes['member'] - 1}")
    values = swept(ds)
    a, b = names[0], names[1]
    na, nb = len(values[a]), len(values[b])
    mask, fixed = _others_fixed(ds, names)
    mask &= np.asarray(ds["seed"].values) == seed
    final = ds["final"].isel(member=int(member))
    fields = np.asarray(final.values, dtype=np.float64)
    if fields.ndim == 2:                                   # 1-D fields: a strip per cell
        fields = np.repeat(fields[:, None, :], max(1, fields.shape[-1] // 8), axis=1)
    H, W = fields.shape[1:]
    sub = max(1, math.ceil(max(H, W) / max_cell))
    fields = fields[:, ::sub, ::sub]
    h, w = fields.shape[1:]
    gap = max(1, min(h, w) // 24)
    pos = _positions(ds, names[:2])
    finite = fields[mask][np.isfinite(fields[mask])]
    lo, hi = (float(np.percentile(finite, 0.5)), float(np.percentile(finite, 99.5))) if finite.size else (0.0, 1.0)
    signed = lo < 0 < hi
    if signed:
        lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    plt = _plt()
    from matplotlib import colors
    cmap = plt.get_cmap("RdBu_r" if signed else "viridis")
    norm = colors.Normalize(lo, hi)
    mosaic = np.tile(_BACKGROUND, (nb * (h + gap) - gap, na * (w + gap) - gap, 1))
    for r in np.flatnonzero(mask):
        i, j = pos[r]
        row = nb - 1 - j                                   # the largest second parameter at the top
        y0, x0 = row * (h + gap), i * (w + gap)
        f = fields[r]
        rgba = cmap(norm(np.where(np.isfinite(f), f, lo)))
        rgba[~np.isfinite(f)] = _NONFINITE
        mosaic[y0:y0 + h, x0:x0 + w] = rgba
    side = min(10.0, max(4.5, 0.55 * max(na, nb) + 2.5))
    fig, ax = plt.subplots(figsize=(side + 1.2, side), dpi=110)
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([i * (w + gap) + (w - 1) / 2 for i in range(na)])
    ax.set_yticks([(nb - 1 - j) * (h + gap) + (h - 1) / 2 for j in range(nb)])
    ax.set_xticklabels([_fmt(v) for v in values[a]], rotation=60 if na > 6 else 0, fontsize=7)
    ax.set_yticklabels([_fmt(v) for v in values[b]], fontsize=7)
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    observed = ds.attrs.get("observed") or ("v" if ds.attrs.get("system") == "grayscott" else "field")
    extra = [f"seed {seed}, member {int(member)}; one colour range for all cells"] + \
            ([f"{', '.join(fixed)} (the other swept parameters at their first value)"] if fixed else [])
    ax.set_title(_title(ds, f"final {observed} over ({a}, {b})", extra), fontsize=9)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.03, label=f"final {observed}")
    fig.tight_layout()
    return _save(fig, path)


def observable_grid(ds, observable_name=DEFAULT_OBSERVABLE):
    """``(grid, count, fixed)``: ``grid[j, i]`` the mean of the observable over the seeds and members of
    the runs with the first swept parameter at its i-th value and the second at its j-th (the others at
    their first value; ``fixed`` says which, in words), NaN where no run is; ``count[j, i]``: those runs."""
    names = _grid_names(ds, "observable_grid")
    vals = observable(ds, observable_name).mean(axis=1)          # (run,) mean over members
    values = swept(ds)
    mask, fixed = _others_fixed(ds, names)
    pos = _positions(ds, names[:2])
    total = np.zeros((len(values[names[1]]), len(values[names[0]])))
    count = np.zeros_like(total, dtype=np.int64)
    for r in np.flatnonzero(mask):
        i, j = pos[r]
        total[j, i] += vals[r]
        count[j, i] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return grid, count, fixed


def observable_heatmap(ds, path, observable_name=DEFAULT_OBSERVABLE) -> Path:
    """``observable_name`` (:data:`OBSERVABLES`) over the grid of the first two swept parameters, the mean
    over seeds and members of each cell, with a colour bar (log scale for energies). Returns ``path``."""
    names = _grid_names(ds, "observable_heatmap")
    values = swept(ds)
    a, b = names[0], names[1]
    grid, count, fixed = observable_grid(ds, observable_name)
    plt = _plt()
    from matplotlib import colors
    kind = _BAND_OBS.match(observable_name)
    finite = grid[np.isfinite(grid)]
    if kind and kind.group(1) == "E" and finite.size and finite.min() > 0 and finite.max() > finite.min():
        norm = colors.LogNorm(finite.min(), finite.max())
    elif finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        norm = colors.Normalize(lo - 0.5, hi + 0.5) if hi == lo else colors.Normalize(lo, hi)
    else:
        norm = colors.Normalize(0, 1)
    if observable_name == "deepest_surviving_band":
        L = _levels(ds)
        cmap = plt.get_cmap("viridis", L + 1).with_extremes(bad=_NONFINITE)
        norm = colors.Normalize(-1.5, L - 0.5)
    else:
        cmap = plt.get_cmap("viridis").with_extremes(bad=_NONFINITE)
    na, nb = len(values[a]), len(values[b])
    side = min(10.0, max(4.5, 0.45 * max(na, nb) + 3.0))
    fig, ax = plt.subplots(figsize=(side + 1.2, side), dpi=110)
    im = ax.imshow(np.ma.masked_invalid(grid), origin="lower", cmap=cmap, norm=norm, interpolation="nearest",
                   aspect="auto")
    _ticks(ax, values[a], "x")
    _ticks(ax, values[b], "y")
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    if na * nb <= 100:                                      # small grids: the values written in the cells
        for j in range(nb):
            for i in range(na):
                if np.isfinite(grid[j, i]):
                    v = grid[j, i]
                    text = f"{v:.2g}" if kind and kind.group(1) in ("E", "rate") else f"{v:.3g}"
                    ax.text(i, j, text, ha="center", va="center", fontsize=7,
                            color="white" if norm(v) < 0.5 else "black")
    n_seeds, n_members = len(seeds_of(ds)), ds.sizes["member"]
    how = []
    if n_seeds > 1 or n_members > 1:
        how.append(f"mean over {n_seeds} seed(s) x {n_members} member(s)")
    if fixed:
        how.append(f"{', '.join(fixed)} (the other swept parameters at their first value)")
    if (count == 0).any():
        how.append("magenta: no run or not finite")
    ax.set_title(_title(ds, f"{_title_name(observable_name)} over ({a}, {b})", how), fontsize=9)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label=_title_name(observable_name))
    if observable_name == "deepest_surviving_band":
        cb.set_ticks(list(range(-1, _levels(ds))))
    fig.tight_layout()
    return _save(fig, path)


def energies_vs_param(ds, path, param=None) -> Path:
    """The final band energies vs a swept parameter (default the first), log y, one curve per band:
    the mean over seeds and members (and over the other swept parameters of a grid), min..max shaded."""
    values = swept(ds)
    names = list(values)
    param = names[0] if param is None else param
    if param not in values:
        raise ValueError(f"param={param!r}: not a swept parameter; allowed: {', '.join(names)}")
    x = np.asarray(values[param], dtype=np.float64)
    coord = np.asarray(ds[param].values, dtype=np.float64)
    E = np.asarray(ds["energies"].values[:, :, -1, :], dtype=np.float64)       # (run, member, band)
    L1 = E.shape[-1]
    mean, lo, hi = (np.full((len(x), L1), np.nan) for _ in range(3))
    for i, v in enumerate(x):
        sel = E[coord == v].reshape(-1, L1)
        with np.errstate(invalid="ignore"):
            if sel.size:
                mean[i], lo[i], hi[i] = np.nanmean(sel, 0), np.nanmin(sel, 0), np.nanmax(sel, 0)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    cols = plt.cm.viridis(np.linspace(0, 0.9, L1))
    pos = lambda a: np.where(a > 0, a, np.nan)
    for l in range(L1):
        label = f"E_{l}" if l < L1 - 1 else "E_c"
        ax.plot(x, pos(mean[:, l]), "o-", color=cols[l], label=label, lw=1.5, ms=3)
        if np.any(hi[:, l] > lo[:, l]):
            ax.fill_between(x, pos(lo[:, l]), pos(hi[:, l]), color=cols[l], alpha=0.15, lw=0)
    ax.set_yscale("log")
    if len(x) > 2 and x.min() > 0 and np.allclose(x[1:] / x[:-1], x[1] / x[0], rtol=1e-9) and x[1] / x[0] != 1:
        ax.set_xscale("log")                               # geometric values (log:lo:hi:n)
    ax.set_xlabel(param + ("" if bool(ds.attrs.get("grid", True)) or len(names) == 1 else
                           f" (zipped with {', '.join(n for n in names if n != param)})"))
    ax.set_ylabel("final band energy E_l(T)")
    n_seeds, n_members = len(seeds_of(ds)), ds.sizes["member"]
    how = [f"mean over {n_seeds} seed(s) x {n_members} member(s)"
           + (" and the other swept parameters" if len(names) > 1 and bool(ds.attrs.get("grid", True)) else "")
           + "; shaded: min..max"]
    ax.set_title(_title(ds, f"final band energies vs {param}", how), fontsize=9)
    ax.legend(fontsize=7, ncol=2 if L1 > 8 else 1, loc="best")
    ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    return _save(fig, path)


def pictures_for(ds, observable_name=DEFAULT_OBSERVABLE) -> dict:
    """``{file name: function(path)}`` of the pictures that apply to this sweep: a grid of two or more
    parameters gets ``final_states.png`` (when the dataset has ``final``) and
    ``heatmap_<observable>.png``; one parameter (or a zipped sweep) ``energies_vs_<param>.png``."""
    values = swept(ds)
    names = list(values)
    grid = bool(ds.attrs.get("grid", True))
    out = {}
    if len(names) >= 2 and grid:
        if "final" in ds:
            out["final_states.png"] = lambda p: final_state_map(ds, p)
        out[f"heatmap_{observable_name}.png"] = lambda p: observable_heatmap(ds, p, observable_name)
    elif names:
        out[f"energies_vs_{names[0]}.png"] = lambda p: energies_vs_param(ds, p, names[0])
    return out


def write_pictures(ds, folder, observable_name=DEFAULT_OBSERVABLE) -> list:
    """Write :func:`pictures_for` into ``folder``; returns the paths."""
    folder = Path(folder)
    return [fn(folder / name) for name, fn in pictures_for(ds, observable_name).items()]
