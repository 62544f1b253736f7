"""Sweep benchmark (issue 12): runs/s of a Gray-Scott (F, k) sweep, one fused ``vkbands.sweep`` vs
separate ``vkbands.rollout()`` calls vs a NumPy loop, and local vs Ray with 2 workers.

Full size: 256 runs (F = 0.01..0.07 x k = 0.045..0.07, 16 x 16, one seed) on 64 x 64 for 2,000 steps,
band energies observed every 50 steps in every case. ``--quick``: 64 runs (8 x 8) on 32 x 32 for 500
steps (about a minute on lavapipe). ``--out DIR`` also writes the output to ``DIR/bench_sweep.md``.

- fused sweep: ``vkbands.sweep(..., store=None)``, its default packing (up to 64 runs per batched
  rollout, one parameter value per member), after a warm-up sweep (pipelines built);
- separate calls: one ``vkbands.rollout(Setup(..., F=f, k=k))`` per run, the same steps and observations,
  timed over a subset of the runs spread over the grid (every n-th run; the table says how many),
  runs/s = subset / time; their final band energies are checked against the fused sweep's;
- NumPy loop: ``vkbands.reference.grayscott_step`` (float64) per run and step, ``reference.energies``
  every 50 steps, on a smaller subset;
- local vs Ray: the same sweep cut into 4 chunks (``chunk_runs`` = runs / 4, so that 2 workers have work
  in parallel), in this process and as Ray tasks on a local Ray of 2 workers (``ray.init`` timed
  apart). Ray runs in a child process inside a network namespace of its own (``unshare -n``, loopback
  only: SECURITY.md "Clusters"); its local figure is measured in that child too, so the ratio compares
  runs of one process. Where ``unshare -n`` is not allowed the Ray rows are skipped with the reason.

Timings are single runs (minutes each at full size) on whatever device vkbands picks; on a CPU device
(lavapipe) the fused sweep and the Ray workers share the machine's cores with everything else, so the
table also gives process CPU seconds (this process's threads, the CPU driver's included: less
sensitive to other load than wall time) for the cases run in this process.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import Report, table  # noqa: E402

EVERY = 50
TARGET = 10.0          # fused sweep / separate calls, runs/s (issue 12)


def config(quick):
    n, size, steps = (8, 32, 500) if quick else (16, 64, 2000)
    params = {"F": [float(v) for v in np.linspace(0.01, 0.07, n)],
              "k": [float(v) for v in np.linspace(0.045, 0.07, n)]}
    return dict(params=params, size=size, steps=steps, every=EVERY, runs=n * n,
                separate=8 if quick else 32, numpy=4 if quick else 16)


def _combos(params):
    import itertools
    return list(itertools.product(*params.values()))


def _subset(R, m):
    """m run indices spread over 0..R-1 (every R/m-th, so the subset crosses the whole grid)."""
    return sorted({int(i) for i in np.linspace(0, R - 1, m).round()})


# ----------------------------------------------------------------------------- cases
def fused(cfg, chunk_runs=None, backend="local", num_workers=None):
    import vkbands
    t0 = time.perf_counter()
    ds = vkbands.sweep("grayscott", cfg["params"], steps=cfg["steps"], every=cfg["every"], size=cfg["size"],
                       chunk_runs=chunk_runs, backend=backend, num_workers=num_workers, progress=False)
    ds = ds.load()
    return time.perf_counter() - t0, ds


def warm_up(cfg, backend="local", num_workers=None, chunk_runs=1):
    """A tiny sweep of the same field: pipelines (and Ray workers' contexts) built before timing."""
    import vkbands
    small = {k: v[:2] for k, v in cfg["params"].items()}
    vkbands.sweep("grayscott", small, steps=2 * cfg["every"], every=cfg["every"], size=cfg["size"],
                  chunk_runs=chunk_runs, backend=backend, num_workers=num_workers, progress=False)


def separate(cfg, runs):
    import vkbands
    combos = _combos(cfg["params"])
    finals = {}
    t0 = time.perf_counter()
    for r in runs:
        F, k = combos[r]
        s = vkbands.Setup("grayscott", size=cfg["size"], F=F, k=k, seed=0)
        ro = vkbands.rollout(s, steps=cfg["steps"], every=cfg["every"], progress=False)
        finals[r] = ro.energies[-1, 0]
    return time.perf_counter() - t0, finals


def numpy_loop(cfg, runs):
    import vkbands
    from vkbands import reference as R
    combos = _combos(cfg["params"])
    s0 = vkbands.Setup("grayscott", size=cfg["size"], seed=0)
    t0 = time.perf_counter()
    for r in runs:
        F, k = combos[r]
        x = s0.x0()[0].astype(np.float64)            # (2, H, W): u then v
        for step in range(1, cfg["steps"] + 1):
            x = R.grayscott_step(x, F=F, k=k)
            if step % cfg["every"] == 0:
                R.energies(x[1], s0.arity, 2)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- Ray, in a network namespace
def ray_child(cfg_json):
    """In the namespace: local and Ray (2 workers) sweeps of the same chunks; prints one JSON line."""
    import logging

    import ray
    cfg = json.loads(cfg_json)
    chunk = max(1, cfg["runs"] // 4)
    warm_up(cfg)
    t_local, ds_local = fused(cfg, chunk_runs=chunk)
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, num_cpus=2, logging_level=logging.WARNING)
    t_init = time.perf_counter() - t0
    try:
        warm_up(cfg, backend="ray", num_workers=2, chunk_runs=1)
        t_ray, ds_ray = fused(cfg, chunk_runs=chunk, backend="ray", num_workers=2)
    finally:
        ray.shutdown()
    same = bool(np.allclose(ds_ray["energies"].values, ds_local["energies"].values, rtol=1e-5, equal_nan=True))
    print("RAY-RESULT " + json.dumps(dict(local_s=t_local, ray_s=t_ray, init_s=t_init, chunk_runs=chunk,
                                          same=same, device=ds_ray.attrs.get("device", ""))))


def ray_part(cfg):
    """(local_s, ray_s, init_s, chunk_runs, same) from the child in its own network namespace, or the
    reason it could not run."""
    here = Path(__file__).resolve()
    inner = (f"ip link set lo up && exec {shlex.quote(sys.executable)} {shlex.quote(str(here))} "
             f"--ray-child {shlex.quote(json.dumps(cfg))}")
    try:
        p = subprocess.run(["unshare", "-n", "sh", "-c", inner], capture_output=True, text=True, timeout=3600,
                           env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"unshare -n could not run the Ray part: {e}"
    for line in p.stdout.splitlines():
        if line.startswith("RAY-RESULT "):
            return json.loads(line[len("RAY-RESULT "):]), None
    tail = " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:])
    return None, f"the Ray part failed (exit {p.returncode}): {tail}"


# ----------------------------------------------------------------------------- the table
def run(quick=False):
    import importlib.util
    missing = [m for m in ("xarray", "zarr") if importlib.util.find_spec(m) is None]
    if missing:         # the GPU kit carries vkbands' core dependencies only
        print(f"bench_sweep: skipped: {', '.join(missing)} not installed (vkbands.sweep needs them; "
              "`pip install xarray zarr`)")
        return
    import vkbands
    cfg = config(quick)
    R, steps, size = cfg["runs"], cfg["steps"], cfg["size"]
    ctx = vkbands.default_context()
    print(f"## Gray-Scott (F, k) sweep: {R} runs of {size}x{size} for {steps} steps, energies every {EVERY} "
          f"— device: {ctx.info['name']} ({ctx.info['type']})\n")
    warm_up(cfg)
    cpu = {}
    c0 = time.process_time()
    t_fused, ds = fused(cfg)
    cpu["fused"] = time.process_time() - c0
    sep_runs = _subset(R, cfg["separate"])
    vkbands.rollout(vkbands.Setup("grayscott", size=size, seed=0), steps=2, every=1, progress=False)   # warm
    c0 = time.process_time()
    t_sep, finals = separate(cfg, sep_runs)
    cpu["sep"] = time.process_time() - c0
    for r, E in finals.items():              # the fused runs are the separate runs (SPEC 3.2b)
        np.testing.assert_allclose(ds["energies"].values[r, 0, -1], E, rtol=2e-4, atol=1e-12,
                                   err_msg=f"run {r}: fused sweep and separate rollout differ")
    np_runs = _subset(R, cfg["numpy"])
    c0 = time.process_time()
    t_np = numpy_loop(cfg, np_runs)
    cpu["np"] = time.process_time() - c0
    ray, why = ray_part(cfg)

    n = {"fused": R, "sep": len(sep_runs), "np": len(np_runs)}
    rps = {"fused": R / t_fused, "sep": n["sep"] / t_sep, "np": n["np"] / t_np}
    cps = {k: n[k] / cpu[k] for k in n}              # runs per process-CPU second
    rows = [["fused vkbands.sweep (local, default packing)", f"{R}", f"{t_fused:.2f}", f"{rps['fused']:.2f}",
             "1.00", f"{cpu['fused']:.2f}", "1.00"],
            ["separate vkbands.rollout() calls", f"{n['sep']} of {R}", f"{t_sep:.2f}", f"{rps['sep']:.2f}",
             f"{rps['sep'] / rps['fused']:.3f}", f"{cpu['sep']:.2f}", f"{cps['sep'] / cps['fused']:.3f}"],
            ["NumPy loop (reference.grayscott_step, float64)", f"{n['np']} of {R}", f"{t_np:.2f}",
             f"{rps['np']:.2f}", f"{rps['np'] / rps['fused']:.3f}", f"{cpu['np']:.2f}",
             f"{cps['np'] / cps['fused']:.3f}"]]
    if ray is not None:
        c = ray["chunk_runs"]
        rows += [[f"sweep in the Ray child, local ({R // c} chunks of {c})", f"{R}", f"{ray['local_s']:.2f}",
                  f"{R / ray['local_s']:.2f}", f"{t_fused / ray['local_s']:.3f}", "", ""],
                 [f"sweep in the Ray child, Ray 2 workers ({R // c} chunks of {c})", f"{R}", f"{ray['ray_s']:.2f}",
                  f"{R / ray['ray_s']:.2f}", f"{t_fused / ray['ray_s']:.3f}", "", ""]]
    print(table(rows, ["case", "runs timed", "wall s", "runs/s", "runs/s vs fused", "CPU s", "runs/CPU-s vs fused"]))
    ratio = rps["fused"] / rps["sep"]
    print(f"\nfused sweep / separate rollout() calls: {ratio:.1f}x in wall time, {cps['fused'] / cps['sep']:.1f}x in "
          f"process CPU time (target >= {TARGET:.0f}x: {'met' if ratio >= TARGET else 'not met'}); fused sweep / "
          f"NumPy loop: {rps['fused'] / rps['np']:.1f}x wall, {cps['fused'] / cps['np']:.1f}x CPU")
    print(f"final band energies of the {len(sep_runs)} separate rollouts equal the fused sweep's (rtol 2e-4): yes")
    if ray is not None:
        print(f"Ray with 2 workers / local, same chunks, one process: {ray['local_s'] / ray['ray_s']:.2f}x "
              f"(ray.init {ray['init_s']:.1f} s, not included); Ray results equal the local ones: "
              f"{'yes' if ray['same'] else 'NO'}; Ray ran inside unshare -n (loopback only)")
    else:
        print(f"Ray rows skipped: {why}")
    if ctx.info["type"] == "cpu":
        print(f"CPU device ({os.cpu_count()} cores shared with other work, load average "
              f"{os.getloadavg()[0]:.1f}): every case computes on the same cores, so the fused sweep's gain is "
              "what batching saves in per-step overhead, not GPU parallelism")
    print()


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64 runs of 32x32 for 500 steps (about a minute)")
    ap.add_argument("--out", metavar="DIR", help="also write the printed output to DIR/bench_sweep.md")
    ap.add_argument("--ray-child", metavar="JSON", help=argparse.SUPPRESS)   # internal: the namespaced Ray part
    args = ap.parse_args(argv)
    if args.ray_child:
        ray_child(args.ray_child)
        return
    with Report(args.out, "bench_sweep"):
        run(quick=args.quick)


if __name__ == "__main__":
    main()
