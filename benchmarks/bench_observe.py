"""Observation cost (issue: cheap observation): steps/s of rollouts observed every step (band energies,
mass, NaN flag; min/max over the leaves on request) vs unobserved (``every=None``), per system, at sizes
where the device work dominates Python overhead. Targets: at most +20% for tree/coupled, +50% for
heat/Gray-Scott.

Each configuration runs ``rollout()`` unobserved, observed every step with min/max (``minmax=True``)
and without (``minmax=False``) in rotation (interleaved, so a machine shared with other work slows them
alike), best of several repeats; steps/s are ``Rollout.timings["steps_per_s"]`` (the run, without
set-up). Cost % = (unobserved steps/s / observed steps/s - 1) x 100. Run:
``python benchmarks/bench_observe.py`` (``--quick``: smaller sizes and fewer repeats; ``--out DIR``
also writes the output to ``DIR/bench_observe.md``).
"""
from __future__ import annotations

import inspect
import sys
from pathlib import Path

from vkbands import init
from vkbands.engine import default_context
from vkbands.rollout import rollout

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import Report, bench_args, table  # noqa: E402

TARGET = {"tree": 20, "coupled": 20, "heat": 50, "grayscott": 50}


def configs(quick, gpu):
    """(system, size text, x0, steps, params) of each row."""
    tb = 4096 if (gpu or not quick) else 512
    gb, side = (16, 256) if (gpu or not quick) else (4, 128)
    k = 1 if gpu else 0
    return [
        ("tree", "1-D p=3 L=6 (729)", init.random((tb, 729), seed=0), 400 * (1 + 4 * k), dict(dims=1)),
        ("coupled", "1-D p=3 L=6 (729), eps=0.1", init.random((tb, 729), seed=0), 40 * (1 + 4 * k),
         dict(dims=1, eps=0.1, tau=0.5)),
        ("heat", f"{side} x {side}", init.random((gb, side, side), seed=0), 100 * (1 + 4 * k), {}),
        ("grayscott", f"{side} x {side}", init.grayscott((gb, side, side), seed=0), 100 * (1 + 4 * k), {}),
    ]


def run(quick=False):
    ctx = default_context()
    gpu = ctx.info["type"] != "cpu"
    has_minmax = "minmax" in inspect.signature(rollout).parameters
    repeat = 3 if quick else 5
    print(f"device: {ctx.info['name']} ({ctx.info['type']}); steps/s, best of {repeat} interleaved repeats; "
          f"observed = band energies, mass, NaN flag every step" + (" (+ min/max: 'minmax')" if has_minmax else
                                                                    " and min/max"))
    rows = []
    for system, size, x0, steps, params in configs(quick, gpu):
        variants = {"none": dict(every=None)}
        if has_minmax:
            variants["every 1"] = dict(every=1, minmax=False)
            variants["every 1 + minmax"] = dict(every=1, minmax=True)
        else:
            variants["every 1"] = dict(every=1)
        best = {name: 0.0 for name in variants}
        for i in range(repeat + 1):                    # the first round warms up (pipelines, caches)
            for name, kw in variants.items():
                r = rollout(system, x0, steps, progress=False, ctx=ctx, **kw, **params)
                if i:
                    best[name] = max(best[name], r.timings["steps_per_s"])
        base = best["none"]
        cost = {name: 100.0 * (base / v - 1.0) for name, v in best.items() if name != "none"}
        row = [system, size, x0.shape[0], steps, f"{base:.1f}", f"{best['every 1']:.1f}", f"{cost['every 1']:+.0f}%"]
        if has_minmax:
            row += [f"{best['every 1 + minmax']:.1f}", f"{cost['every 1 + minmax']:+.0f}%"]
        row.append(f"<= {TARGET[system]}%" + (" ok" if cost["every 1"] <= TARGET[system] else " OVER"))
        rows.append(row)
        print(f"  {system}: done", file=sys.stderr)
    headers = ["system", "size", "batch", "steps", "steps/s none", "steps/s every 1", "cost"]
    if has_minmax:
        headers += ["steps/s every 1 + minmax", "cost + minmax"]
    headers.append("target")
    print(table(rows, headers))


def main(argv=None):
    args = bench_args(__doc__, argv)
    with Report(args.out, "bench_observe"):
        run(args.quick)


if __name__ == "__main__":
    main()
