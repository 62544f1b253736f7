"""Rollout benchmark (issue 4): ms/step of heat and Gray-Scott on 1024 x 1024 and of tree diffusion
on a batch of 4096 x 729 (p = 3, L = 6), vkbands vs NumPy; then steps/s of 1,000-step rollouts with
observables every step vs none (heat and Gray-Scott: best of 3 runs).

vkbands timings are of replayed recordings (state resident on the device, nothing read back), the
best of a few repeats; NumPy runs float32 with the same maths. Run: ``python benchmarks/bench_rollout.py``
(``--quick`` for fewer steps; ``--out DIR`` also writes the output to ``DIR/bench_rollout.md``).

First section: the heat step through a raw-Vulkan harness of the same SPIR-V on the same device
(``raw_vulkan.py``: one prerecorded command buffer, ping-pong, a compute barrier between steps) vs
vkbands' ``Simulation`` replaying the same steps (unobserved), with GB/s (2 x 4 B x H x W per step)
and the bandwidth of a plain ``vkCmdCopyBuffer`` of a 256 MiB buffer measured in the same run. On GPUs
the heat field is 8192 x 8192 (target >= 70% of the copy bandwidth), on CPU devices 1024 x 1024.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from vkbands import init, reference as R
from vkbands.engine import default_context
from vkbands.rollout import Simulation, rollout

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import Report, bench_args, interleaved_ms, table  # noqa: E402
from raw_vulkan import Raw, RawHeat, copy_program  # noqa: E402

COPY_BYTES = 256 << 20     # the copy-bandwidth yardstick: vkCmdCopyBuffer of a 256 MiB buffer


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


def heat_vs_raw(ctx, quick):
    """Heat step: raw Vulkan vs vkbands Simulation (same SPIR-V, launch shape, steps, run), and the
    copy bandwidth. Prints its table; returns (u, ms/step of vkbands)."""
    gpu = ctx.info["type"] != "cpu"
    H = W = 8192 if gpu else 1024
    steps = (100 if quick else 400) if gpu else (50 if quick else 200)      # even: ping-pong ends in the state
    rounds = 3 if quick else 5
    u = np.random.default_rng(1).random((H, W), dtype=np.float32)
    alpha = 0.2
    raw = Raw(ctx)
    try:
        heat = RawHeat(raw, H, W, alpha)
        # correctness: 2 steps against NumPy (float32, same maths) and bit-for-bit against vkbands
        heat.set(u)
        heat.program(2).submit()
        r2 = heat.get()
        ref = np_heat(u, alpha, 2)
        assert np.allclose(r2, ref, rtol=1e-5, atol=1e-6), f"raw heat differs from NumPy by {np.abs(r2 - ref).max()}"
        with Simulation(ctx, "heat", u, alpha=alpha) as sim:
            sim.advance(2)
            assert np.array_equal(sim.read(), r2), "raw heat and vkbands heat differ (same SPIR-V and launch)"
            sim.reset()
            heat.set(u)
            prog = heat.program(steps)
            rec = ctx.recorder()
            try:
                sim.record_steps(rec, steps)
                src, dst = raw.buffer(max(COPY_BYTES, heat.nbytes)), raw.buffer(max(COPY_BYTES, heat.nbytes))
                copies = 20 if gpu else 4
                cprog = copy_program(raw, src, dst, copies)
                t, tcpu = interleaved_ms({"vk": rec.submit, "raw": prog.submit, "copy": cprog.submit},
                                         repeat=rounds, warmup=1, stat="min", cpu=True)
                # both evolved the same steps from u: (rounds + warm-up) x steps, still bit-for-bit equal
                assert np.array_equal(sim.state.numpy().reshape(H, W), heat.get()), "raw / vkbands heat diverged"
            finally:
                rec.close()
        ctx.check()
    finally:
        raw.close()
    ms_vk, ms_raw = t["vk"] / steps, t["raw"] / steps
    ms_copy = t["copy"] / copies
    cbytes = max(COPY_BYTES, 4 * H * W)
    gbs = lambda ms: 2 * 4 * H * W / ms / 1e6
    copy_gbs = 2 * cbytes / ms_copy / 1e6
    rows = [["raw Vulkan (prerecorded, vk.lib)", f"{ms_raw:.3f}", f"{gbs(ms_raw):.1f}", f"{100 * gbs(ms_raw) / copy_gbs:.0f}%"],
            ["vkbands Simulation (replayed recorder)", f"{ms_vk:.3f}", f"{gbs(ms_vk):.1f}", f"{100 * gbs(ms_vk) / copy_gbs:.0f}%"],
            [f"vkCmdCopyBuffer {cbytes >> 20} MiB, device to device (ms/copy)", f"{ms_copy:.3f}", f"{copy_gbs:.1f}", "100%"]]
    print(f"## heat {H}x{W}: raw Vulkan vs vkbands — device: {ctx.info['name']} ({ctx.info['type']})\n")
    print(f"{steps} steps per submission (ping-pong, a barrier between steps), unobserved; best of {rounds} "
          f"interleaved runs; GB/s = 2 x 4 B x H x W per step (copy: 2 x its bytes)\n")
    print(table(rows, ["case", "ms/step", "GB/s", "% of copy bandwidth"]))
    ratio = ms_vk / ms_raw
    pct = 100 * gbs(ms_vk) / copy_gbs
    print(f"\nvkbands / raw Vulkan: {ratio:.3f} (target <= 1.00: {'met' if ratio <= 1.0 else 'not met'}); "
          f"vkbands heat at {pct:.0f}% of the copy bandwidth (target >= 70% on GPUs: "
          + (("met" if pct >= 70 else "not met") if gpu else "not applicable, CPU device") + ")")
    if not gpu:
        print(f"the same ratio in process CPU time (less sensitive to other load here): {tcpu['vk'] / tcpu['raw']:.3f}")
    print()
    return u, ms_vk


def run(quick=False):
    ctx = default_context()
    rng = np.random.default_rng(0)
    rows = []
    n_np = 3 if quick else 10
    n_vk = 50 if quick else 200

    u, t_vk = heat_vs_raw(ctx, quick)
    H, W = u.shape
    # heat (1024^2 on CPUs, 8192^2 on GPUs; vkbands timed above) + wgpu-py on the same driver when installed
    t_np = 1e3 * best(lambda: np_heat(u, 0.2, n_np), 2) / n_np
    t_peer = None
    try:
        from peers import wgpu_heat_ms_per_step
        t_peer = wgpu_heat_ms_per_step(u, 0.2, steps=n_vk // 2)
        if t_peer is None:
            print("(wgpu peer not installed: optional, skipped)")
    except Exception as e:  # a peer is optional
        print(f"(wgpu peer unavailable: {type(e).__name__}: {e})")
    rows.append((f"heat {H}x{W}", t_np, t_vk))
    u = rng.random((1024, 1024), dtype=np.float32)          # the rollout rows below stay at 1024^2

    # Gray-Scott 1024^2
    uv = init.grayscott((1024, 1024), seed=0)
    t_np = 1e3 * best(lambda: np_grayscott(uv[0], uv[1], n_np), 2) / n_np
    t_vk = vk_ms_per_step(ctx, "grayscott", uv, n_vk)
    rows.append(("grayscott 1024x1024", t_np, t_vk))

    # tree 4096 x 729
    x = rng.standard_normal((4096, 729), dtype=np.float32)
    rates = R.tree_rates(3, 6)
    t_np = 1e3 * best(lambda: np_tree(x, rates, 3, max(1, n_np // 2)), 2) / max(1, n_np // 2)
    t_vk = vk_ms_per_step(ctx, "tree", x, 1000 if not quick else 200, dims=1)
    rows.append(("tree 4096 x 729 (p=3, L=6)", t_np, t_vk))

    print(f"device: {ctx.info['name']} ({ctx.info['type']})")
    print(f"{'ms/step':<30} {'NumPy':>10} {'vkbands':>10} {'speed-up':>9}")
    for name, a, b in rows:
        print(f"{name:<30} {a:10.3f} {b:10.3f} {a / b:8.1f}x")
    if t_peer is not None:
        print(f"{f'heat {H}x{W}, wgpu-py peer':<30} {'':>10} {t_peer:10.3f}   (same driver, {t_peer / rows[0][2]:.2f}x "
              "the vkbands time)")

    # 1,000-step rollouts: observables every step vs none
    n = 100 if quick else 1000
    print(f"\n{n}-step rollouts (steps/s, best of {2 if quick else 3} runs, tree: 1; 'every 1' = band energies, mass, min, max, "
          "NaN flag every step)")
    print(f"{'system':<30} {'no obs':>10} {'every 1':>10} {'obs cost':>9}")
    cases = [("tree 4096 x 729", "tree", x, dict(dims=1)),
             ("heat 1024x1024", "heat", u, dict(alpha=0.2)),
             ("grayscott 256x256", "grayscott", init.grayscott((256, 256), seed=0), {})]
    for name, system, x0, params in cases:
        nn = n if system != "heat" else max(20 if quick else 50, n // 5)
        reps = 1 if system == "tree" else (2 if quick else 3)  # best of 3 for the short runs (single runs vary ~15% here)

        def rate(every):
            return max(rollout(system, x0, nn, every=every, progress=False, ctx=ctx, **params).timings["steps_per_s"]
                       for _ in range(reps))
        s0, s1 = rate(None), rate(1)
        label = name + ("" if nn == n else f" ({nn} steps)")
        print(f"{label:<30} {s0:10.1f} {s1:10.1f} {100 * (s0 / s1 - 1):8.0f}%")


def main(argv=None):
    args = bench_args(__doc__, argv)
    with Report(args.out, "bench_rollout"):
        run(args.quick)


if __name__ == "__main__":
    main()
