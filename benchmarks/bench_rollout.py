"""Rollout benchmark (issue 4): ms/step of heat and Gray-Scott on 1024 x 1024 and of tree diffusion
on a batch of 4096 x 729 (p = 3, L = 6), vkbands vs NumPy; then steps/s of 1,000-step rollouts with
observables every step vs none (heat and Gray-Scott: best of 3 runs).

vkbands timings are of replayed recordings (state resident on the device, nothing read back), the
best of a few repeats; NumPy runs float32 with the same maths. Run: ``python benchmarks/bench_rollout.py``
(``--quick`` for fewer steps).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from vkbands import reference as R
from vkbands.engine import default_context
from vkbands.rollout import Simulation, rollout


def best(fn, repeat=3):
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return min(t)


# ----------------------------------------------------------------------------- NumPy baselines (float32)
def np_heat(u, alpha, n):
    for _ in range(n):
        u = u + alpha * (np.roll(u, 1, 0) + np.roll(u, -1, 0) + np.roll(u, 1, 1) + np.roll(u, -1, 1) - 4 * u)
    return u


def np_grayscott(u, v, n, Du=0.16, Dv=0.08, F=0.035, k=0.065, dt=1.0):
    def lap(a):
        return np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 1) + np.roll(a, -1, 1) - 4 * a
    for _ in range(n):
        uvv = u * v * v
        u, v = (u + dt * (Du * lap(u) - uvv + F * (1 - u)),
                v + dt * (Dv * lap(v) + uvv - (F + k) * v))
    return u, v


def np_tree(x, rates, p, n):
    """x_{t+1} = lambda_0 x + sum_{l=1..L} (lambda_l - lambda_{l-1}) U^l A^l (lambda_L = 1), float32."""
    B, N = x.shape
    L = len(rates)
    lam = np.append(rates, 1.0).astype(np.float32)
    for _ in range(n):
        out = lam[0] * x
        a = x
        for l in range(1, L + 1):
            a = a.reshape(B, -1, p).mean(axis=2)
            out += (lam[l] - lam[l - 1]) * np.repeat(a, p ** l, axis=1)
        x = out
    return x


# ----------------------------------------------------------------------------- vkbands
def vk_ms_per_step(ctx, system, x0, steps, **params):
    with Simulation(ctx, system, x0, **params) as sim:
        rec = ctx.recorder()
        try:
            sim.record_steps(rec, steps)
            rec.submit()                       # warm-up (and pipeline creation)
            t = best(rec.submit)
        finally:
            rec.close()
    return 1e3 * t / steps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    ctx = default_context()
    rng = np.random.default_rng(0)
    rows = []
    n_np = 3 if args.quick else 10
    n_vk = 50 if args.quick else 200

    # heat 1024^2 (+ wgpu-py on the same driver, when installed: benchmarks/peers.py)
    u = rng.random((1024, 1024), dtype=np.float32)
    t_np = 1e3 * best(lambda: np_heat(u, 0.2, n_np), 2) / n_np
    t_vk = vk_ms_per_step(ctx, "heat", u, n_vk, alpha=0.2)
    t_peer = None
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from peers import wgpu_heat_ms_per_step
        t_peer = wgpu_heat_ms_per_step(u, 0.2, steps=n_vk // 2)
    except Exception as e:  # a peer is optional
        print(f"(wgpu peer unavailable: {type(e).__name__}: {e})")
    rows.append(("heat 1024x1024", t_np, t_vk))

    # Gray-Scott 1024^2
    uv = R.grayscott_init((1024, 1024), seed=0)
    t_np = 1e3 * best(lambda: np_grayscott(uv[0], uv[1], n_np), 2) / n_np
    t_vk = vk_ms_per_step(ctx, "grayscott", uv, n_vk)
    rows.append(("grayscott 1024x1024", t_np, t_vk))

    # tree 4096 x 729
    x = rng.standard_normal((4096, 729), dtype=np.float32)
    rates = R.tree_rates(3, 6)
    t_np = 1e3 * best(lambda: np_tree(x, rates, 3, max(1, n_np // 2)), 2) / max(1, n_np // 2)
    t_vk = vk_ms_per_step(ctx, "tree", x, 1000 if not args.quick else 200, dims=1)
    rows.append(("tree 4096 x 729 (p=3, L=6)", t_np, t_vk))

    print(f"device: {ctx.info['name']} ({ctx.info['type']})")
    print(f"{'ms/step':<30} {'NumPy':>10} {'vkbands':>10} {'speed-up':>9}")
    for name, a, b in rows:
        print(f"{name:<30} {a:10.3f} {b:10.3f} {a / b:8.1f}x")
    if t_peer is not None:
        print(f"{'heat 1024x1024, wgpu-py peer':<30} {'':>10} {t_peer:10.3f}   (same driver, {t_peer / rows[0][2]:.2f}x "
              "the vkbands time)")

    # 1,000-step rollouts: observables every step vs none
    n = 200 if args.quick else 1000
    print(f"\n{n}-step rollouts (steps/s, best of 3 runs, tree: 1; 'every 1' = band energies, mass, min, max, "
          "NaN flag every step)")
    print(f"{'system':<30} {'no obs':>10} {'every 1':>10} {'obs cost':>9}")
    cases = [("tree 4096 x 729", "tree", x, dict(dims=1)),
             ("heat 1024x1024", "heat", u, dict(alpha=0.2)),
             ("grayscott 256x256", "grayscott", R.grayscott_init((256, 256), seed=0), {})]
    for name, system, x0, params in cases:
        nn = n if system != "heat" else max(50, n // 5)
        reps = 1 if system == "tree" else 3     # best of 3 for the short runs (single runs vary ~15% here)

        def rate(every):
            return max(rollout(system, x0, nn, every=every, progress=False, ctx=ctx, **params).timings["steps_per_s"]
                       for _ in range(reps))
        s0, s1 = rate(None), rate(1)
        label = name + ("" if nn == n else f" ({nn} steps)")
        print(f"{label:<30} {s0:10.1f} {s1:10.1f} {100 * (s0 / s1 - 1):8.0f}%")


if __name__ == "__main__":
    main()
