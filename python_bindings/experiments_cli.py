"""``vkbands experiment``: the experiments of the research (issue 12), each one batched run.

::

    vkbands experiment kill-rates --system tree --depth 4 --batch 4 --tau 0.5 --steps 60 --out DIR
    vkbands experiment influence  --system coupled --depth 3 --eps 0.3 --steps 40 --times 10,20,40 --out DIR
    vkbands experiment eps-sweep  --system coupled --depth 3 --eps 0:2:9 --seeds 0,1 --steps 60 --out DIR

Options: the set-up options of ``vkbands rollout`` (system, field, initial state, system parameters;
``vkbands experiment NAME --help``), ``--steps`` (default 100), ``--every`` (observations every k
steps; default 1), ``--threshold`` (the kill threshold of SPEC 5: a band is killed once
``E_l(t) < threshold E_l(0)``; default 1e-3), ``--out DIR`` and ``--no-pictures``; ``--tau`` is always
the system's own time scale (tree, coupled), in every subcommand (eps-sweep included); and per
experiment:

- ``kill-rates`` (:func:`vkbands.experiments.kill_rates`): writes ``kill_rates.csv`` (member, band, rate,
  rate_stderr, kill_step, tree_rate), ``killed.csv`` (step, member, detail bands killed),
  ``kill_rates.json``, ``kill_rates.png``;
- ``influence`` (:func:`vkbands.experiments.influence_matrix`; one field: ``--batch 1``): ``--times``
  (the steps reported, comma-separated; default steps/4, steps/2, steps); writes ``influence.csv`` (t,
  removed_band, observed_band, relative, absolute), ``influence_energies.csv``, ``influence.json``,
  ``influence.png`` and ``influence_tNNNNN.png`` per time;
- ``eps-sweep`` (:func:`vkbands.experiments.eps_sweep`, one :func:`vkbands.sweep`): ``--eps`` takes the
  swept values (``lo:hi:n``, ``v1,v2,...``: the syntax of ``vkbands sweep --param``), ``--seeds`` at
  least 2 (``0,1`` or ``START:STOP``; ``--seed`` is not used); writes ``eps_sweep.csv``,
  ``eps_sweep.json``, ``eps_sweep.png``.

Every subcommand also writes ``config.json`` (the command's options resolved) and prints the paths it
wrote, one per line. DIR (``--out``; default a new ``out/experiment-<name>-<system>-<timestamp>``) is
claimed with one atomic ``mkdir`` and must not exist (nothing is ever overwritten); files are written
under a temporary name and renamed when complete; a run that fails before writing removes the folder.
A value that is not allowed ends the command with one line ``vkbands experiment: error: ...`` and
status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .setup import HelpFormatter, Setup, add_arguments
from .systems import ParamSpec

__all__ = ["add_parser", "main", "run"]

PROG = "vkbands experiment"
EXPERIMENTS = {"kill-rates": "per-band contraction rates with standard errors, kill steps, bands killed per step",
               "influence": "cross-band influence matrix by ablation (one batch of L + 1 members)",
               "eps-sweep": "deepest surviving band vs coupling eps over >= 2 seeds (one sweep)"}
DEFAULT_SYSTEM = {"kill-rates": "tree", "influence": "coupled", "eps-sweep": "coupled"}
OPTIONS = (
    ParamSpec("steps", 100, "int", lo=1, help="steps to run"),
    ParamSpec("every", 1, "int", lo=1, help="observables every k steps"),
    ParamSpec("threshold", 1e-3, "float", lo=0.0, hi=1.0, lo_open=True, hi_open=True,
              help="kill threshold: band l is killed once E_l(t) < threshold E_l(0) (SPEC 5)"),
)


def add_parser(sub):
    p = sub.add_parser("experiment", help="the research's experiments: kill-rates, influence, eps-sweep",
                       description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.set_defaults(func=run)
    inner = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    for name, help_ in EXPERIMENTS.items():
        q = inner.add_parser(name, help=help_, description=f"{PROG} {name}: {help_}", formatter_class=HelpFormatter)
        _add_arguments(q, name)
    return p


def _add_arguments(p, name):
    add_arguments(p, system=DEFAULT_SYSTEM[name])
    g = p.add_argument_group("experiment")
    for o in OPTIONS:
        g.add_argument("--" + o.name, dest=o.name, default=o.default, metavar=o.metavar(), help=f"{o.help}; {o.allowed()}")
    if name == "influence":
        g.add_argument("--times", default=None, metavar="T1,T2,...",
                       help="the steps reported (observed steps in 0..steps; default steps/4, steps/2, steps)")
    if name == "eps-sweep":
        for action in p._actions:
            if action.dest == "seed":            # the sweep's seeds are --seeds
                action.default, action.help = None, argparse.SUPPRESS
            if action.dest == "eps":
                action.metavar = "EPS"
                action.help = "the swept coupling strengths: lo:hi:n (numpy.linspace) or v1,v2,... (at least 2)"
        g.add_argument("--seeds", default="0,1", metavar="SEEDS",
                       help="at least 2 seeds of the initial states: 0,1,5 or START:STOP (range)")
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, default=None, help="output directory (new; never overwritten)")
    g.add_argument("--no-pictures", action="store_true", help="skip the PNG files")


def main(argv=None) -> int:
    """``vkbands experiment ARGV`` in-process, through the router (:func:`vkbands.cli.main`)."""
    from .cli import main as vkbands_main
    return vkbands_main(["experiment", *(sys.argv[1:] if argv is None else argv)])


# ----------------------------------------------------------------------------- options
def _options(args):
    """``(steps, every, threshold)`` checked, errors naming the option."""
    out = []
    for o in OPTIONS:
        out.append(o.convert(getattr(args, o.name), cli=True))
    return tuple(out)


def _times(text):
    try:
        items = [v.strip() for v in str(text).split(",")]
        if any(not v for v in items):
            raise ValueError
        return [int(v) for v in items]
    except ValueError:
        raise ValueError(f"--times {text}: allowed: comma-separated integer steps, e.g. 10,20,40") from None


def _prepare(args):
    """``(setup, config, kwargs)`` of a parsed command line (ValueError / TypeError for a bad value)."""
    name = args.experiment
    steps, every, threshold = _options(args)
    config = dict(experiment=name, steps=steps, every=every, threshold=threshold)
    kwargs = dict(steps=steps, every=every)
    if name == "eps-sweep":
        from .sweep_cli import parse_param, parse_seeds
        from . import systems
        system = args.system
        spec = systems.get(system) if system in systems.names() else None
        if spec is None:
            Setup.from_args(args)                          # the set-up's own error for the system
        if spec.param("eps") is None:
            raise ValueError(f"--system {system}: has no parameter eps; allowed: "
                             f"{', '.join(n for n in systems.names() if systems.get(n).param('eps') is not None)}")
        if args.eps is None:
            raise ValueError("--eps: the swept values are needed (lo:hi:n or v1,v2,...)")
        try:
            _, eps = parse_param(f"eps={args.eps}", spec)
        except ValueError as e:                            # worded with this command's option
            raise ValueError(str(e).replace(f"--param eps={args.eps}", f"--eps {args.eps}", 1)) from None
        seeds = parse_seeds(args.seeds)
        args.eps = None                                    # the set-up is made without eps and seed
        args.seed = None
        setup = Setup.from_args(args)
        kwargs.update(eps=eps, seeds=seeds, threshold=threshold)
        config.update(eps=eps, seeds=seeds)
    else:
        setup = Setup.from_args(args)
        if name == "influence":
            if setup.batch != 1:
                raise ValueError(f"--batch {setup.batch}: the influence matrix ablates the bands of one field; "
                                 "allowed: 1")
            if args.times is not None:
                kwargs["times"] = _times(args.times)
                config["times"] = kwargs["times"]
        else:
            kwargs["threshold"] = threshold
    config["setup"] = setup.config()
    return setup, config, kwargs


def _compute(name, setup, kwargs, ctx):
    from . import experiments as X
    if name == "kill-rates":
        return X.kill_rates(setup, ctx=ctx, progress=None, **kwargs)
    if name == "influence":
        return X.influence_matrix(setup, ctx=ctx, progress=None, **kwargs)
    return X.eps_sweep(setup, ctx=ctx, progress=None, **kwargs)


def run(args) -> int:
    """Run a parsed ``vkbands experiment NAME`` command line; prints the paths written. Raises
    :class:`vkbands.cli.CommandError` (status 2) for an option that is not allowed or an output folder
    that exists; other errors go to the router (a limit: 2; a failed run: 3)."""
    from vkbands.engine import default_context
    from ._outputs import OutputError, claim, timestamp
    from .cli import CommandError
    from ._outputs import jsonable
    name = args.experiment
    try:
        setup, config, kwargs = _prepare(args)
    except (ValueError, TypeError) as e:
        raise CommandError(e) from None
    ctx = default_context()
    try:
        out = claim(args.out, default=Path("out") / f"experiment-{name}-{setup.system}-{timestamp()}")
    except OutputError as e:
        raise CommandError(e) from None
    try:
        result = _compute(name, setup, kwargs, ctx)
    except BaseException:
        out.discard()
        raise
    paths = result.save(out, pictures=not args.no_pictures)
    config["device"] = ctx.info.get("name")
    out.write_text("config.json", json.dumps(jsonable(config), indent=1) + "\n")
    for p in list(paths) + [out.path / "config.json"]:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
