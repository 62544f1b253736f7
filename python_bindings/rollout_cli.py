"""``vkbands rollout``: a headless batch rollout with its files and pictures.

Writes into DIR (``--out``; default a new ``out/rollout-<system>-<timestamp>``; an existing non-empty
directory is never overwritten):

- ``energies.csv``: ``step,batch,E_0..E_{L-1},E_c,mass,min,max`` per observed step and member;
- ``snapshots.npz``: ``steps``, ``snapshots`` (S, ...) , ``final``, ``x0``, ``observed_steps``,
  ``energies``;
- ``summary.json``: config, seed, device, timings, deepest surviving band, kill steps, rates;
- ``energies.png``: log E_l(t) per band (member 0; the system's closed form dashed, where it has one);
- ``sheets_tNNNNN.png``: the sheet grid (SPEC section 6) of member 0 at each snapshot (1-D: strips;
  plus ``band_time.png``, the band x time energy image); ``rollout.gif``: those frames animated.
  One fixed colour range per rollout (from the first snapshot), in the system's colour map
  (``SystemSpec.picture``: log for the diffusions, whose decades stay visible; diverging for Gray-Scott);
  a system with several fields per member is pictured and observed through its observed field
  (Gray-Scott: v).

The options are generated from the system specs (``vkbands rollout --help``; docs/SYSTEMS.md) and
parsed into one :class:`vkbands.Setup`; an option that is not allowed, or that would be ignored for
the chosen system, ends the command with ``vkbands rollout: error: ...`` (one line) and status 2.
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

from .setup import HelpFormatter, Setup, add_arguments
from .systems import ParamSpec

__all__ = ["add_parser", "main", "run", "build_parser", "run_options", "write_csv", "write_pictures"]

PROG = "vkbands rollout"
# The rollout's own options (the set-up's come from vkbands.setup.add_arguments, generated from the specs).
RUN_OPTIONS = (
    ParamSpec("steps", 200, "int", lo=0, help="steps to run"),
    ParamSpec("every", 1, "int", lo=0, help="observables every k steps (0: none)"),
    ParamSpec("snapshot_every", None, "int", lo=0, help="snapshots every k steps (default steps/10; 0: none)"),
)


def add_parser(sub):
    p = sub.add_parser("rollout", help="headless batch rollout: energies, snapshots, sheet pictures, GIF",
                       description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    _add_arguments(p)
    p.set_defaults(func=run)
    return p


def _add_arguments(p):
    add_arguments(p)
    g = p.add_argument_group("rollout")
    for o in RUN_OPTIONS:
        g.add_argument("--" + o.name.replace("_", "-"), dest=o.name, default=o.default, metavar=o.metavar(),
                       help=f"{o.help}; {o.allowed()}")
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, default=None, help="output directory (new; never overwritten)")
    g.add_argument("--no-pictures", action="store_true", help="skip PNG/GIF files")
    g.add_argument("--quiet", "-q", action="store_true", help="only print the output directory")


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    _add_arguments(parser)
    return parser


def main(argv=None) -> int:
    """``vkbands rollout`` in-process: the exit status (2 with one ``vkbands rollout: error: ...`` line
    on stderr for an option that is not allowed)."""
    return run(build_parser().parse_args(argv))


# ----------------------------------------------------------------------------- set-up
def run_options(args):
    """(steps, every or None, snapshot_every or None) of the command line, checked like the set-up."""
    steps, every, snap = (o.convert(getattr(args, o.name), cli=True) for o in RUN_OPTIONS)
    snap = snap if snap is not None else max(1, steps // 10)
    return steps, (every or None), (snap or None)


def _output_dir(args, system) -> Path:
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"--out {out}: exists and is not empty; allowed: a new or empty directory (nothing "
                             "is ever overwritten)")
        out.mkdir(parents=True, exist_ok=True)
        return out
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("out") / f"rollout-{system}-{stamp}"
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
    """The field pictured for one member of a state/snapshot (its observed field)."""
    return r.spec.observed_field(x, r.dims)


def write_pictures(out, r, ctx=None):
    """sheets_tNNNNN.png per snapshot, rollout.gif, energies.png, band_time.png (1-D). Returns names."""
    from .render import SheetRenderer, band_time_image, robust_vmax, save_energies_plot, save_gif, save_png
    written = []
    spec = r.spec
    title = f"{r.system}  p={r.arity} L={r.levels} B={r.batch}  member 0" + \
        (f"  (bands of {spec.observed})" if spec.fields_per_member > 1 else "")
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
        # the system's colour map (diffusions decay over decades: log; O(1) patterns: diverging)
        cmap = spec.picture.cmap
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
def _error(message) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    """Run a parsed command line: its Setup, the rollout, the files. 0, 2 (an option not allowed:
    one error line) or 3 (NaN/Inf: error.txt in the output directory)."""
    from vkbands.engine import default_context
    from .rollout import NonFiniteError, rollout

    try:
        setup = Setup.from_args(args)
        steps, every, snap = run_options(args)
        x0 = setup.x0()
        out = _output_dir(args, setup.system)
    except (ValueError, TypeError) as e:
        return _error(e)
    ctx = default_context()
    t0 = time.perf_counter()
    try:
        r = rollout(setup, x0, steps, every=every, snapshot_every=snap, ctx=ctx)
    except NonFiniteError as e:
        (out / "error.txt").write_text(str(e) + "\n")
        print(f"{PROG}: {e}\n(output directory: {out})", file=sys.stderr)
        return 3
    except ValueError as e:      # e.g. a state over a device limit (LimitError)
        return _error(e)
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
        command=PROG, config=dict(_cli_config(args), **setup.config(), steps=steps, every=every,
                                  snapshot_every=snap),
        system=r.system, params=r.params, seed=setup.seed, shape=list(x0.shape), arity=r.arity, levels=r.levels,
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


def _cli_config(args) -> dict:
    """The command line's own options (output), JSON-friendly."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if k in ("out", "no_pictures", "quiet")}


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
