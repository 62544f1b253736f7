"""``vkbands sweep``: a parameter sweep, many runs on the device, with a resumable store, summary and pictures.

::

    vkbands sweep --system grayscott --size 64 --param F=0.01:0.07:16 --param k=0.045:0.07:16 \\
        --steps 5000 --every 50 --seeds 0,1 --out DIR [--ray [ADDRESS]]

Options: the set-up options of ``vkbands rollout`` (system, field, initial state, fixed parameters;
generated from the system specs; default system ``grayscott``), and

- ``--param NAME=SPEC`` (repeatable; one per swept parameter, in the sweep's order): ``lo:hi:n``
  (n >= 2 values evenly spaced, both ends included: ``numpy.linspace``), ``log:lo:hi:n`` (geometric,
  lo, hi > 0: ``numpy.geomspace``), ``v1,v2,...`` (these values) or ``v`` (one value). NAME is a numeric
  parameter of the system (``vkbands sweep --system S --help`` lists them) not also given as a fixed
  ``--NAME``; each value is checked against the parameter's range; a parameter given as ``--NAME V``
  only (e.g. a tree's ``--tau 0.5``) is fixed for every run;
- ``--zip``: the parameters' i-th values together (equal lengths) instead of every combination;
- ``--seeds``: ``0,1,5`` (these seeds), ``START:STOP`` (``range(START, STOP)``: ``0:8`` is seeds 0..7)
  or one seed; every combination runs once per seed (``--seed`` is refused: use ``--seeds``);
- ``--steps`` (default 1000), ``--every`` (observations every k steps; default steps / 100);
- ``--threshold X``: the kill threshold of SPEC 5 (band l is killed once ``E_l(t) < X E_l(0)``; the
  ``kill_<l>`` and ``deepest_surviving_band`` columns), 0 < X < 1, default 1e-3;
- ``--ray [ADDRESS]``: run on Ray; without ADDRESS a local Ray started for this command, with ADDRESS
  join that cluster. A Ray cluster runs any job sent to its ports: keep it on a private network
  (SECURITY.md, "Clusters"). ``--num-gpus`` (GPUs per Ray task), ``--num-workers`` (of the local
  Ray), ``--chunk-runs`` (runs per chunk: the unit of a resume; a resume must not change it);
- ``--observable NAME`` for the heat map (default ``deepest_surviving_band``, SPEC 5's measure of which
  scales outlive the run: for Gray-Scott it separates the (F, k) that form patterns from those that decay
  to a uniform state; or ``E_<l>``, ``kill_<l>``, ``rate_<l>`` with l a band index or ``c``, or ``mass``:
  see :data:`vkbands.sweep_pictures.OBSERVABLES`);
- ``--no-pictures``, ``--quiet``.

Writes into DIR (``--out``; default a new ``out/sweep-<system>-<timestamp>``), a folder claimed with one
atomic ``mkdir``:

- ``sweep.zarr``: the Dataset of :func:`vkbands.sweep` (with ``final``, the final observed field of every
  run), streamed chunk by chunk;
- ``summary.csv``: one row per run x member (:func:`vkbands.sweep_pictures.summary_header`: ``run,
  member, <swept parameters>, seed, E_0..E_{L-1}, E_c, kill_0..kill_c, rate_0..rate_c,
  rate_stderr_0..rate_stderr_c, deepest_surviving_band``);
- pictures: two or more swept parameters (a grid): ``final_states.png`` (the final field of every run of
  the first seed, member 0, on the grid of the first two parameters: Gray-Scott's (F, k) pattern map)
  and ``heatmap_<observable>.png``; one parameter or ``--zip``: ``energies_vs_<param>.png``.

Resuming: ``--out DIR`` naming a folder that holds the ``sweep.zarr`` of the same sweep (same options)
continues it: finished chunks are not computed again. A store of another sweep is refused (exit 2,
naming the difference); a folder without a store is refused as ``vkbands rollout`` refuses it.
Nothing is ever overwritten: a file that exists already (summary.csv, a picture from an earlier
complete run of the same sweep, hence the same content) is kept and reported as kept; files are
written under a temporary name and linked to their name only when complete. A heat map of another
``--observable`` is a new file: re-run on the finished folder to add one.

Ctrl-C / SIGTERM: the sweep stops at its next safe point (the chunk in flight is dropped), the
finished chunks stay in ``sweep.zarr``, the command that resumes is printed and the status is 130. Bad values exit 2 with one line naming the option.
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from . import _outputs
from .setup import HelpFormatter, Setup, add_arguments, option_names
from .systems import ParamSpec

__all__ = ["add_parser", "main", "run", "build_parser", "parse_param", "parse_seeds", "sweep_options",
           "write_new", "DEFAULT_SYSTEM"]

PROG = "vkbands sweep"
DEFAULT_SYSTEM = "grayscott"
STORE = "sweep.zarr"
SUMMARY = "summary.csv"
PARAM_SPECS = ("NAME=lo:hi:n (n >= 2 evenly spaced values, both ends included), NAME=log:lo:hi:n (geometric, "
               "lo, hi > 0), NAME=v1,v2,... or NAME=v")
SEED_SPECS = "s1,s2,... (these seeds), START:STOP (range(START, STOP)) or one seed; integers >= 0"
RUN_OPTIONS = (
    ParamSpec("steps", 1000, "int", lo=1, help="steps of every run"),
    ParamSpec("threshold", 1e-3, "float", lo=0.0, hi=1.0, lo_open=True, hi_open=True,
              help="kill threshold: band l is killed once E_l(t) < threshold E_l(0) (SPEC 5)"),
    ParamSpec("every", None, "int", lo=1, help="observations every k steps (default: steps / 100)"),
    ParamSpec("chunk_runs", None, "int", lo=1, help="runs per chunk, the unit of a resume (default: the sweep's)"),
    ParamSpec("num_gpus", None, "float", lo=0.0, help="GPUs per Ray task (--ray only; default: the sweep's)"),
    ParamSpec("num_workers", None, "int", lo=1, help="workers of the local Ray started for the sweep (--ray "
                                                      "without ADDRESS only; default: the sweep's)"),
)
_RUN = {o.name: o for o in RUN_OPTIONS}


def add_parser(sub):
    p = sub.add_parser("sweep", help="parameter sweep: many runs fused on the device, resumable store, "
                                     "summary.csv, pattern map and heat map",
                       description=__doc__.splitlines()[0] + "\n\n" + _usage_notes(),
                       formatter_class=HelpFormatter)
    _add_arguments(p)
    p.set_defaults(func=run)
    return p


def _usage_notes():
    return ("Writes DIR/sweep.zarr (resumable: the same command on the same DIR continues it), DIR/summary.csv "
            "(one row per run x member) and pictures (two swept parameters: final_states.png, the final field "
            "on the parameter grid, and heatmap_<observable>.png; one parameter: energies_vs_<param>.png). "
            "Nothing is ever overwritten: files that exist are kept.")


def _add_arguments(p):
    add_arguments(p, system=DEFAULT_SYSTEM)
    for action in p._actions:                   # the seeds are the sweep's (--seeds); --seed is refused
        if action.dest == "seed":
            action.default, action.help = None, argparse.SUPPRESS
    g = p.add_argument_group("sweep")
    g.add_argument("--param", action="append", default=None, metavar="NAME=SPEC",
                   help=f"a swept parameter (repeat for more; the order is the sweep's): {PARAM_SPECS}")
    g.add_argument("--zip", action="store_true",
                   help="the parameters' i-th values together (equal lengths) instead of every combination")
    g.add_argument("--seeds", default="0", metavar="SEEDS",
                   help=f"seeds of the initial states, every combination once per seed: {SEED_SPECS}")
    for o in RUN_OPTIONS:
        g.add_argument("--" + o.name.replace("_", "-"), dest=o.name, default=o.default, metavar=o.metavar(),
                       help=f"{o.help}; {o.allowed()}")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the chunks on Ray: without ADDRESS a local Ray started for this command (its "
                        "dashboard off), with ADDRESS join that cluster (e.g. auto or ray://HOST:10001). A Ray "
                        "cluster runs any job sent to its ports: keep it on a private network (SECURITY.md)")
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, default=None,
                   help="output folder: a new one, or the folder of the same sweep to resume it (default: a new "
                        "out/sweep-<system>-<timestamp>); nothing is ever overwritten")
    g.add_argument("--observable", default=None, metavar="NAME",
                   help="the heat map's observable: deepest_surviving_band (default), E_<l> / kill_<l> / rate_<l> "
                        "(final energy, kill step, contraction rate of band l = 0..L-1 or c), mass")
    g.add_argument("--no-pictures", action="store_true", help="skip the PNG files")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar; only print the output folder")


def build_parser():
    from .cli import OneLineParser
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    _add_arguments(parser)
    return parser


def main(argv=None) -> int:
    """``vkbands sweep ARGV`` in-process, through the router (:func:`vkbands.cli.main`)."""
    from .cli import main as vkbands_main
    return vkbands_main(["sweep", *(sys.argv[1:] if argv is None else argv)])


# ----------------------------------------------------------------------------- parsing
def _number(text, what):
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{what}: {text!r} is not finite")
    return v


def _count(text, what):
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{what}: n={text!r} is not an integer") from None
    if n < 2:
        raise ValueError(f"{what}: n={n}, at least 2 values (one value: NAME=v)")
    return n


def sweepable(spec) -> list:
    """The parameters of a system that ``--param`` takes (its numeric ones)."""
    return [p.name for p in spec.params if p.kind in ("float", "int") and p.cli]


def parse_param(text, spec) -> tuple:
    """``(name, values)`` of one ``--param NAME=SPEC`` for system ``spec`` (see the module docstring);
    a ValueError naming ``--param TEXT``, the problem and what is allowed."""
    head = f"--param {text}"
    allowed = f"allowed: {PARAM_SPECS}"
    name, eq, values = str(text).partition("=")
    name, values = name.strip(), values.strip()
    if not eq or not name:
        raise ValueError(f"{head}: not NAME=SPEC; {allowed}")
    names = sweepable(spec)
    if name not in names:
        raise ValueError(f"{head}: {name} is not a numeric parameter of {spec.name}; allowed NAME: "
                         f"{', '.join(names) or 'none (this system has no parameters)'}")
    try:
        if not values:
            raise ValueError("no values")
        if values.startswith("log:"):
            parts = values[4:].split(":")
            if len(parts) != 3:
                raise ValueError("log:lo:hi:n needs three numbers")
            lo, hi = (_number(v, "log:lo:hi:n") for v in parts[:2])
            n = _count(parts[2], "log:lo:hi:n")
            if lo <= 0 or hi <= 0:
                raise ValueError(f"log:lo:hi:n: lo={lo:g}, hi={hi:g}; a geometric range needs lo, hi > 0")
            out = [float(v) for v in np.geomspace(lo, hi, n)]
        elif ":" in values:
            parts = values.split(":")
            if len(parts) != 3:
                raise ValueError("lo:hi:n needs three numbers")
            lo, hi = (_number(v, "lo:hi:n") for v in parts[:2])
            out = [float(v) for v in np.linspace(lo, hi, _count(parts[2], "lo:hi:n"))]
        else:
            items = [v.strip() for v in values.split(",")]
            if any(not v for v in items):
                raise ValueError("an empty value in the list")
            out = [_number(v, "value") for v in items]
        if len(set(out)) != len(out):
            raise ValueError("a value repeats")
    except ValueError as e:
        raise ValueError(f"{head}: {e}; {allowed}") from None
    p = spec.param(name)
    for v in out:                                 # the parameter's own range (and integer kind)
        try:
            p.convert(int(v) if p.kind == "int" and float(v).is_integer() else v)
        except ValueError as e:
            raise ValueError(f"{head}: {e}") from None
    return name, out


def parse_seeds(text) -> list:
    """The seeds of ``--seeds`` (see the module docstring); a ValueError naming ``--seeds TEXT``."""
    head = f"--seeds {text}"
    try:
        s = str(text).strip()
        if ":" in s:
            parts = s.split(":")
            if len(parts) != 2:
                raise ValueError("START:STOP has two integers")
            start, stop = (int(v) for v in parts)
            seeds = list(range(start, stop))
            if not seeds:
                raise ValueError(f"range({start}, {stop}) is empty (STOP is excluded)")
        else:
            items = [v.strip() for v in s.split(",")]
            if any(not v for v in items):
                raise ValueError("an empty seed in the list")
            seeds = [int(v) for v in items]
    except ValueError as e:
        msg = str(e) if "invalid literal" not in str(e) else "not an integer"
        raise ValueError(f"{head}: {msg}; allowed: {SEED_SPECS}") from None
    if min(seeds) < 0:
        raise ValueError(f"{head}: a negative seed; allowed: {SEED_SPECS}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{head}: a seed repeats; allowed: {SEED_SPECS}")
    return seeds


def sweep_options(args) -> dict:
    """Everything of the command line but the output folder, checked: ``setup`` (a :class:`Setup`),
    ``setup_options`` (the set-up keywords for :func:`vkbands.sweep`), ``params`` ({name: values}),
    ``seeds``, ``steps``, ``every``, ``threshold``, ``grid``, ``backend``, ``address``, ``num_gpus``,
    ``chunk_runs``, ``observable``. ValueError (one line, naming the option) for anything not allowed."""
    from . import systems
    from .sweep_pictures import DEFAULT_OBSERVABLE, check_observable
    if getattr(args, "seed", None) is not None:
        raise ValueError(f"--seed {args.seed}: a sweep takes its seeds from --seeds; allowed: --seeds {SEED_SPECS}")
    system = args.system
    if system not in systems.names():
        raise ValueError(f"--system {system}: not a registered system; allowed: {', '.join(systems.names())}")
    spec = systems.get(system)
    if not args.param:                            # (None: not given)
        raise ValueError(f"--param: none given; allowed: one or more --param {PARAM_SPECS}, NAME one of "
                         f"{', '.join(sweepable(spec))}")
    params = {}
    for text in args.param:
        name, values = parse_param(text, spec)
        if name in params:
            raise ValueError(f"--param {text}: {name} is swept twice; allowed: one --param per parameter")
        if getattr(args, name, None) is not None:
            raise ValueError(f"--param {text}: {name} is also given as --{name} {getattr(args, name)}; allowed: "
                             f"one of them (a swept parameter or a fixed one)")
        params[name] = values
    if args.zip and len({len(v) for v in params.values()}) > 1:
        lengths = ", ".join(f"{n}: {len(v)}" for n, v in params.items())
        raise ValueError(f"--zip: the swept parameters have different numbers of values ({lengths}); allowed: "
                         f"equal numbers of values")
    setup = Setup.from_args(args)                 # the set-up options, checked by their specs
    options = {k: v for k, v in setup.options.items() if k != "seed"}
    first = {n: v[0] for n, v in params.items()}
    Setup(system, **{**options, **first})         # the swept values with the set-up (e.g. a parameter's when=)
    steps = _RUN["steps"].convert(args.steps, cli=True)
    threshold = _RUN["threshold"].convert(args.threshold, cli=True)
    every = _RUN["every"].convert(args.every, cli=True)
    every = every if every is not None else max(1, steps // 100)
    if every > steps:
        raise ValueError(f"--every {every}: more than --steps {steps}; allowed: an integer in [1, {steps}]")
    chunk_runs = _RUN["chunk_runs"].convert(args.chunk_runs, cli=True)
    num_gpus = _RUN["num_gpus"].convert(args.num_gpus, cli=True)
    if num_gpus is not None and args.ray is None:
        raise ValueError(f"--num-gpus {args.num_gpus}: applies with --ray only")
    num_workers = _RUN["num_workers"].convert(args.num_workers, cli=True)
    if num_workers is not None and args.ray != "":
        raise ValueError(f"--num-workers {args.num_workers}: applies with --ray without ADDRESS only (a local Ray "
                         f"started for the sweep)")
    observable = check_observable(args.observable or DEFAULT_OBSERVABLE, setup.levels)
    address = args.ray.strip() if args.ray else None
    return dict(setup=setup, setup_options=options, params=params, seeds=parse_seeds(args.seeds), steps=steps,
                every=every, threshold=threshold, grid=not args.zip,
                backend="ray" if args.ray is not None else "local", address=address, num_gpus=num_gpus,
                num_workers=num_workers, chunk_runs=chunk_runs,
                observable=observable)


# ----------------------------------------------------------------------------- files
def write_new(folder, name, write_to):
    """Write ``folder/name`` unless it exists (:func:`vkbands._outputs.write_new`: complete or absent,
    never over an existing file, not even one another run made meanwhile); ``write_to(path)`` writes
    the temporary file. Returns ``(path, written)``."""
    final = Path(folder) / name
    if os.path.lexists(final):
        return final, False
    try:
        return _outputs.write_new(final, write_to, by_path=True), True
    except FileExistsError:
        return final, False
    except OSError as e:
        e.output_file = name
        raise


def resume_command(args, out) -> str:
    """The command line that continues this sweep in ``out`` (the options given, canonical order)."""
    parts = ["vkbands", "sweep", "--system", args.system]
    for name in option_names():
        value = getattr(args, name, None)
        if value is not None and name not in ("seed", "system"):
            parts += ["--" + name.replace("_", "-"), str(value)]
    for p in args.param or ():
        parts += ["--param", p]
    if args.zip:
        parts.append("--zip")
    parts += ["--seeds", str(args.seeds), "--steps", str(args.steps)]
    for name in ("every", "threshold", "chunk_runs", "num_gpus", "num_workers", "observable"):
        if getattr(args, name, None) is not None:
            parts += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    if args.no_pictures:
        parts.append("--no-pictures")
    parts += ["--out", str(out)]
    if args.ray is not None:
        parts += ["--ray"] + ([args.ray] if args.ray else [])
    return shlex.join(parts)


# ----------------------------------------------------------------------------- the command
def _folder(args, system):
    """``(folder Path, resuming, OutputDir or None)``: a new folder claimed atomically, or an existing one
    holding a sweep store (resumed)."""
    from ._outputs import OutputError, claim, timestamp
    if args.out is not None and os.path.lexists(args.out):
        out = Path(args.out)
        if out.is_dir() and (out / STORE).is_dir():
            return out, True, None
        raise ValueError(f"--out {out}: already exists and holds no {STORE}; allowed: a path that does not exist "
                         f"yet (a new folder; nothing is ever overwritten) or the folder of an earlier run of the "
                         f"same sweep (to resume it)")
    try:
        claimed = claim(args.out, default=Path("out") / f"sweep-{system}-{timestamp()}")
    except OutputError as e:
        raise ValueError(str(e)) from None
    return claimed.path, False, claimed


def run(args) -> int:
    from . import _interrupt
    from .cli import INTERRUPTED, CommandError
    try:
        opts = sweep_options(args)
    except (ValueError, TypeError) as e:
        raise CommandError(e) from None
    from .sweep import sweep
    try:
        folder, resuming, claimed = _folder(args, opts["setup"].system)
    except ValueError as e:
        raise CommandError(e) from None
    store = folder / STORE
    kwargs = dict(steps=opts["steps"], every=opts["every"], threshold=opts["threshold"], seeds=opts["seeds"],
                  grid=opts["grid"], store=str(store), backend=opts["backend"], address=opts["address"],
                  num_gpus=opts["num_gpus"],
                  num_workers=opts["num_workers"], chunk_runs=opts["chunk_runs"], final=True,
                  progress=False if args.quiet else True, **opts["setup_options"])
    if opts["backend"] == "ray":
        print(_ray_notice(opts["address"]), file=sys.stderr)
    t0 = time.perf_counter()
    with _interrupt.deferred():
        try:
            ds = sweep(opts["setup"].system, opts["params"], **kwargs)
        except KeyboardInterrupt as e:
            how = getattr(e, "signal", None)
            print(f"{PROG}: interrupted{' by ' + how if how else ''}; the finished chunks are kept in {store}. "
                  f"Resume with:\n  {resume_command(args, folder)}", file=sys.stderr)
            return INTERRUPTED
        except BaseException:
            if claimed is not None and not store.exists():
                claimed.discard()                  # nothing computed: leave nothing behind
            raise
        wall = time.perf_counter() - t0
        written = _write_files(ds, folder, opts["observable"], args.no_pictures)
        if _interrupt.requested():
            print(f"{PROG}: interrupted by {_interrupt.requested()} while writing; the sweep is complete in "
                  f"{store}. Write the missing files with:\n  {resume_command(args, folder)}", file=sys.stderr)
            return INTERRUPTED
    if args.quiet:
        print(folder)
    else:
        print(_report(ds, opts, folder, written, wall))
    return 0


def _ray_notice(address) -> str:
    if address is None:
        return (f"{PROG}: starting a local Ray for this sweep (dashboard off, token authentication on); while it "
                "runs Ray listens on this machine's network interfaces: use it on a private network (SECURITY.md)")
    return (f"{PROG}: joining the Ray cluster at {address}: keep that cluster on a private network (a Ray head runs "
            "any job sent to its ports; SECURITY.md)")


def _write_files(ds, folder, observable, no_pictures) -> list:
    """summary.csv, then the pictures (unless ``no_pictures``); ``[(path, written)]``."""
    from . import _interrupt
    from .cli import CommandError
    from .sweep_pictures import pictures_for, write_summary_csv
    jobs = [(SUMMARY, lambda p: write_summary_csv(ds, p))]
    if not no_pictures:
        jobs += list(pictures_for(ds, observable).items())
    done = []
    for name, fn in jobs:
        if _interrupt.requested():
            break
        try:
            done.append(write_new(folder, name, fn))
        except OSError as e:
            raise CommandError(f"writing {name} in {folder}: {e.strerror or e} (the sweep itself is complete in "
                               f"{folder / STORE})", 3) from None
    return done


def _report(ds, opts, folder, written, wall) -> str:
    s = opts["setup"]
    R, M = ds.sizes["run"], ds.sizes["member"]
    names = " x ".join(f"{n} ({len(v)})" for n, v in opts["params"].items())
    how = "zipped" if not opts["grid"] else "grid"
    lines = [f"{PROG}: {s.system} {' x '.join(map(str, s.spatial))} p={s.arity} L={s.levels}, {R} runs "
             f"({how}: {names}; {len(opts['seeds'])} seed(s)){f' x {M} members' if M > 1 else ''}, "
             f"{opts['steps']} steps every {opts['every']}, on {ds.attrs.get('device', '?')} "
             f"({ds.attrs.get('backend', opts['backend'])}): {wall:.1f} s"]
    bad = np.asarray(ds["nonfinite"].values).any(axis=(1, 2)) if "nonfinite" in ds else np.zeros(R, bool)
    if bad.any():
        lines.append(f"  {int(bad.sum())} run(s) reached NaN/Inf (nonfinite in {STORE}; their rows in {SUMMARY} "
                     f"hold what was observed)")
    lines.append(f"  {folder / STORE}")
    for path, new in written:
        lines.append(f"  {path}{'' if new else '  (kept: it exists already)'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
