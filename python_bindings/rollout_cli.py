"""``vkbands rollout``: a headless batch rollout with its files and pictures.

Writes into DIR (``--out``; default a new ``out/rollout-<system>-<timestamp>``; an existing non-empty
directory is never overwritten):

- ``energies.csv``: ``step,batch,E_0..E_{L-1},E_c,mass,min,max`` per observed step and member;
- ``snapshots.npz``: ``steps``, ``snapshots`` (S, ...) , ``final``, ``x0``, ``observed_steps``,
  ``energies``;
- ``summary.json``: config, seed, device, timings, deepest surviving band, kill steps, rates;
- ``energies.png``: log E_l(t) per band (member 0; tree: closed form dashed);
- ``sheets_tNNNNN.png``: the sheet grid (SPEC section 6) of member 0 at each snapshot (1-D: strips;
  plus ``band_time.png``, the band x time energy image); ``rollout.gif``: those frames animated.
  One fixed colour range per rollout (from the first snapshot); diffusions use the log colour map
  (decades stay visible), Gray-Scott the diverging one; Gray-Scott pictures and observables are of v.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["add_parser", "add_setup_arguments", "SETUP_ARGS", "field_shape", "system_params", "main", "run", "make_x0", "build_parser"]

_INITS = ("random", "impulse", "smooth", "band-pure")


def add_parser(sub):
    p = sub.add_parser("rollout", help="headless batch rollout: energies, snapshots, sheet pictures, GIF",
                       description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_arguments(p)
    p.set_defaults(func=run)
    return p


SETUP_ARGS = ("arity", "depth", "size", "dims", "batch", "init", "band", "style", "sparse_m", "mix_band",
              "mix_eps", "seed", "rates", "tau", "alpha", "eps", "phi", "Du", "Dv", "F", "k", "dt", "preset")


def add_setup_arguments(p, system="tree", params_note="defaults: SPEC"):
    """The set-up options shared by ``vkbands rollout`` and ``vkbands view`` (names in SETUP_ARGS,
    plus ``--system``): system, field shape, initial state, system parameters, seed."""
    g = p.add_argument_group("system and field")
    g.add_argument("--system", choices=("tree", "coupled", "heat", "grayscott"), default=system)
    g.add_argument("--arity", "-p", type=int, default=3, help="p (branching factor; grid systems: band arity)")
    g.add_argument("--depth", "-L", type=int, default=None,
                   help="levels L: N = p**L leaves (1-D) or p**L x p**L (2-D); default 6 (1-D tree/coupled), "
                        "5 (grids, 2-D tree), 4 (2-D coupled)")
    g.add_argument("--size", type=int, default=None, help="leaves per axis instead of --depth (a power of p)")
    g.add_argument("--dims", type=int, choices=(1, 2), default=None, help="1-D or 2-D fields (grids: always 2)")
    g.add_argument("--batch", "-B", type=int, default=1)
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("initial state (tree/coupled/heat; Gray-Scott starts from its seeded patch)")
    g.add_argument("--init", choices=_INITS, default="random")
    g.add_argument("--band", type=int, default=0, help="band-pure: the band")
    g.add_argument("--style", choices=("haar", "randphase", "sparse", "mix"), default="haar")
    g.add_argument("--sparse-m", type=int, default=1)
    g.add_argument("--mix-band", type=int, default=None)
    g.add_argument("--mix-eps", type=float, default=0.1)
    g = p.add_argument_group(f"system parameters ({params_note})")
    g.add_argument("--rates", type=str, default=None, help="tree: per-level factors 'l0,l1,...' (or one value)")
    g.add_argument("--tau", type=float, default=None, help="tree: p-adic heat time scale")
    g.add_argument("--alpha", type=float, default=None, help="tree: profile exponent; heat: diffusion coefficient")
    g.add_argument("--eps", type=float, default=None, help="coupled: coupling strength")
    g.add_argument("--phi", choices=("tanh", "sign", "square"), default=None)
    for name in ("Du", "Dv", "F", "k", "dt"):
        g.add_argument(f"--{name}", type=float, default=None, help="Gray-Scott" if name == "Du" else None)
    g.add_argument("--preset", default=None, help="Gray-Scott preset (reference.GRAYSCOTT_PRESETS)")


def _add_arguments(p):
    add_setup_arguments(p)
    g = p.add_argument_group("rollout")
    g.add_argument("--steps", type=int, default=200)
    g.add_argument("--every", type=int, default=1, help="observables every k steps (0: none)")
    g.add_argument("--snapshot-every", type=int, default=None, help="snapshots every k steps (default steps/10; 0: none)")
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, default=None, help="output directory (new; never overwritten)")
    g.add_argument("--no-pictures", action="store_true", help="skip PNG/GIF files")
    g.add_argument("--quiet", "-q", action="store_true", help="only print the output directory")


def build_parser():
    parser = argparse.ArgumentParser(prog="vkbands rollout")
    _add_arguments(parser)
    return parser


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


# ----------------------------------------------------------------------------- set-up
def field_shape(args):
    from . import reference as R
    p = args.arity
    dims = 2 if args.system in ("heat", "grayscott") else (args.dims or 1)
    if args.system in ("heat", "grayscott") and args.dims == 1:
        raise SystemExit(f"vkbands rollout: --system {args.system} evolves 2-D fields; drop --dims 1")
    if args.size is not None:
        side = int(args.size)
        R.levels((side,), p, 1)          # ValueError naming the nearest valid sizes
    else:
        default = {"tree": 6 if dims == 1 else 5, "coupled": 6 if dims == 1 else 4}.get(args.system, 5)
        depth = args.depth if args.depth is not None else default
        if depth < 1:
            raise SystemExit(f"vkbands rollout: --depth must be >= 1, got {depth}")
        side = p ** depth
    return dims, (side,) * dims


def make_x0(args, spatial, dims):
    """The initial state of the CLI's arguments: (B, ...) float32 (Gray-Scott (B, 2, H, W))."""
    from . import init, reference as R
    B = args.batch
    shape = (B,) + spatial
    if args.system == "grayscott":
        return R.grayscott_init(shape, seed=args.seed)
    if args.init == "random":
        return init.random(shape, seed=args.seed)
    if args.init == "impulse":
        return init.impulse(shape, seed=args.seed, dims=dims)
    if args.init == "smooth":
        L = R.levels(spatial, args.arity, dims)
        return init.smooth(shape, arity=args.arity, cutoff_level=min(2, L - 1), seed=args.seed, dims=dims)
    return init.band_pure(shape, args.arity, args.band, style=args.style, seed=args.seed, sparse_m=args.sparse_m,
                          mix_band=args.mix_band, mix_eps=args.mix_eps, dims=dims)


def system_params(args):
    s = args.system
    out = {}
    if s in ("tree", "coupled"):
        out["arity"] = args.arity
        if args.rates is not None:
            out["rates"] = [float(v) for v in args.rates.split(",") if v.strip()]
        if args.tau is not None:
            out["tau"] = args.tau
        if args.alpha is not None:
            out["alpha"] = args.alpha
        if s == "coupled":
            if args.eps is not None:
                out["eps"] = args.eps
            if args.phi is not None:
                out["phi"] = args.phi
            out["coupling_seed"] = args.seed
    else:
        out["arity"] = args.arity
        if s == "heat" and args.alpha is not None:
            out["alpha"] = args.alpha
        if s == "grayscott":
            for key in ("Du", "Dv", "F", "k", "dt", "preset"):
                v = getattr(args, key)
                if v is not None:
                    out[key] = v
    given = {k: getattr(args, k) for k in ("rates", "tau", "eps", "phi", "Du", "Dv", "F", "k", "dt", "preset")
             if getattr(args, k) is not None}
    allowed = {"tree": {"rates", "tau"}, "coupled": {"rates", "tau", "eps", "phi"}, "heat": set(),
               "grayscott": {"Du", "Dv", "F", "k", "dt", "preset"}}[s]
    stray = sorted(set(given) - allowed)
    if stray:
        raise SystemExit(f"vkbands rollout: --{', --'.join(stray)} do(es) not apply to --system {s}")
    return out


def _output_dir(args) -> Path:
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise SystemExit(f"vkbands rollout: {out} exists and is not empty; choose a new --out (nothing is "
                             "ever overwritten)")
        out.mkdir(parents=True, exist_ok=True)
        return out
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("out") / f"rollout-{args.system}-{stamp}"
    out, n = base, 1
    while True:
        try:
            out.mkdir(parents=True, exist_ok=False)
            return out
        except FileExistsError:
            n += 1
            out = base.with_name(f"{base.name}-{n}")


# ----------------------------------------------------------------------------- files
def write_csv(path, r):
    T, B, L1 = r.energies.shape
    step = np.repeat(r.steps, B)
    member = np.tile(np.arange(B), T)
    cols = [step, member] + [r.energies[..., l].reshape(-1) for l in range(L1)] + \
           [r.mass.reshape(-1), r.min.reshape(-1), r.max.reshape(-1)]
    header = ["step", "batch"] + [f"E_{l}" for l in range(L1 - 1)] + ["E_c", "mass", "min", "max"]
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        if T:
            data = np.column_stack(cols)
            fmt = ["%d", "%d"] + ["%.9g"] * (len(header) - 2)
            np.savetxt(f, data, fmt=fmt, delimiter=",")


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, Path):
        return str(v)
    return v


def _member_field(r, x):
    """The field pictured for one member of a state/snapshot (Gray-Scott: v)."""
    return x[1] if r.system == "grayscott" else x


def write_pictures(out, r, ctx=None):
    """sheets_tNNNNN.png per snapshot, rollout.gif, energies.png, band_time.png (1-D). Returns names."""
    from .render import SheetRenderer, band_time_image, robust_vmax, save_energies_plot, save_gif, save_png
    written = []
    title = f"{r.system}  p={r.arity} L={r.levels} B={r.batch}  member 0" + ("  (bands of v)" if r.system == "grayscott" else "")
    if len(r.steps):
        save_energies_plot(out / "energies.png", r.steps, r.energies, closed_form=r.closed_form(), title=title)
        written.append("energies.png")
        if r.dims == 1:
            save_png(out / "band_time.png", band_time_image(r.energies[:, 0], ctx=ctx))
            written.append("band_time.png")
    if r.snapshots is not None and len(r.snapshots):
        fields = [_member_field(r, s[0]) for s in r.snapshots]      # the CLI's x0 is always (B, ...)
        vmax = robust_vmax(fields[0])                                 # fixed over the rollout: decay shows
        frames = []
        # diffusions decay over decades: log colours; Gray-Scott patterns are O(1): diverging
        cmap = "diverging" if r.system == "grayscott" else "log"
        with SheetRenderer(fields[0].shape, r.arity, ctx=ctx, cmap=cmap) as sr:
            for t, f in zip(r.snapshot_steps, fields):
                img = sr.render(f, vmax)
                name = f"sheets_t{int(t):05d}.png"
                save_png(out / name, img)
                written.append(name)
                frames.append(img)
        save_gif(out / "rollout.gif", frames)
        written.append("rollout.gif")
    return written


# ----------------------------------------------------------------------------- run
def run(args) -> int:
    from vkbands.engine import default_context
    from .rollout import NonFiniteError, rollout

    try:
        dims, spatial = field_shape(args)
        params = system_params(args)
    except ValueError as e:
        raise SystemExit(f"vkbands rollout: {e}")
    if args.batch < 1 or args.steps < 0:
        raise SystemExit("vkbands rollout: --batch must be >= 1 and --steps >= 0")
    every = args.every or None
    snap = args.snapshot_every if args.snapshot_every is not None else max(1, args.steps // 10)
    snap = snap or None
    try:
        x0 = make_x0(args, spatial, dims)
    except ValueError as e:
        raise SystemExit(f"vkbands rollout: {e}")
    out = _output_dir(args)
    ctx = default_context()
    t0 = time.perf_counter()
    try:
        r = rollout(args.system, x0, args.steps, every=every, snapshot_every=snap, dims=dims, ctx=ctx, **params)
    except NonFiniteError as e:
        (out / "error.txt").write_text(str(e) + "\n")
        print(f"vkbands rollout: {e}\n(output directory: {out})", file=sys.stderr)
        return 3
    except ValueError as e:
        raise SystemExit(f"vkbands rollout: {e}")
    wall = time.perf_counter() - t0
    write_csv(out / "energies.csv", r)
    np.savez_compressed(out / "snapshots.npz", steps=r.snapshot_steps,
                        snapshots=r.snapshots if r.snapshots is not None else np.zeros((0,) + x0.shape, np.float32),
                        final=r.final, x0=x0, observed_steps=r.steps, energies=r.energies)
    t_pic = time.perf_counter()
    pictures = [] if args.no_pictures else write_pictures(out, r, ctx=ctx)
    pic_s = time.perf_counter() - t_pic
    info = ctx.info
    summary = dict(
        command="vkbands rollout", config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                           if k != "func"},
        system=r.system, params=r.params, seed=args.seed, shape=list(x0.shape), arity=r.arity, levels=r.levels,
        dims=r.dims, batch=r.batch, steps=r.n_steps, every=every, snapshot_every=snap,
        device=dict(name=info.get("name"), type=info.get("type"), driver=info.get("driver"), api=info.get("api")),
        timings=dict(r.timings, wall_s=wall, pictures_s=pic_s),
        files=["energies.csv", "snapshots.npz", "summary.json"] + pictures)
    derived = r.summary()
    for key in ("system", "steps", "batch", "arity", "levels"):
        derived.pop(key, None)
    summary.update(derived)
    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=1) + "\n")
    if args.quiet:
        print(out)
    else:
        print(format_summary(r, out, info, x0.shape))
    return 0


def format_summary(r, out, info, shape) -> str:
    lines = [f"vkbands rollout: {r.system}  shape={tuple(shape)}  p={r.arity} L={r.levels}  steps={r.n_steps}  "
             f"on {info.get('name')}",
             f"  run {r.timings['run_s']:.3f} s ({r.timings['steps_per_s']:.1f} steps/s), setup "
             f"{r.timings['setup_s']:.3f} s"]
    if len(r.steps):
        E0, ET = r.energies[0].mean(0), r.energies[-1].mean(0)
        rates = r.contraction_rates()[0] if r.steps.size > 1 else np.full(E0.shape, np.nan)
        kill = r.kill_steps()[0]
        lines.append(f"  {'band':>5} {'E(0) mean':>12} {'E(T) mean':>12} {'rate(m0)':>11} {'kill(m0)':>9}")
        for l in range(len(E0)):
            name = f"E_{l}" if l < len(E0) - 1 else "E_c"
            lines.append(f"  {name:>5} {E0[l]:12.4e} {ET[l]:12.4e} {rates[l]:11.4e} {int(kill[l]):9d}")
        D = r.deepest_surviving_band()[-1]
        m0, m1 = r.mass[0].sum(), r.mass[-1].sum()
        drift = abs(m1 - m0) / max(abs(m0), 1e-30)
        lines.append(f"  deepest surviving band at t={int(r.steps[-1])}: member 0 -> {int(D[0])}"
                     + (f", over the batch min {int(D.min())} max {int(D.max())}" if len(D) > 1 else ""))
        lines.append(f"  mass {m0:.6g} -> {m1:.6g} (relative drift {drift:.2e})")
    lines.append(f"  output: {out}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
