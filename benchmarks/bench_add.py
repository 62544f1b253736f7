"""add on 2**24 float32: NumPy vs vkbands (device-resident replay, the convenience call on device
arrays, and with upload + readback) vs a raw-Vulkan harness of the same kernel on the same device
(``raw_vulkan.py``: the driver's floor), and the per-dispatch cost of 1,000 tiny dependent dispatches
replayed from one recording, vkbands vs raw.

Run: ``.venv/bin/python benchmarks/bench_add.py [--quick] [--out DIR]`` (prints a Markdown table;
``--quick``: fewer repeats, same sizes; ``--out DIR``: also writes it to ``DIR/bench_add.md``)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vkbands  # noqa: E402
from vkbands.engine import default_context  # noqa: E402
from _timing import Report, bench_args, interleaved_ms, median_ms, table  # noqa: E402
from peers import wgpu_add_runner  # noqa: E402
from raw_vulkan import Raw, RawAdd  # noqa: E402

N = 2**24
TARGET = 1.05       # vkbands within 1.05x of the raw-Vulkan time


def run(quick=False):
    ctx = default_context()
    gpu = ctx.info["type"] != "cpu"
    rep = (20 if quick else 50) if gpu else (7 if quick else 15)   # a GPU add takes ~0.1 ms: more repeats
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(N).astype(np.float32), rng.standard_normal(N).astype(np.float32)
    c = np.empty_like(a)
    ab = a + b
    gb = 3 * N * 4 / 1e9  # bytes moved by one add (2 reads + 1 write)

    A, B, C = ctx.array(a), ctx.array(b), ctx.empty(N)
    k = ctx.kernel("add.comp", spec={"VEC_PER_INVOCATION": 4})
    rec = ctx.recorder()
    rec.dispatch(k, k.grid(-(-N // (k.local_size[0] * 16))), A, B, C, push={"n": N})
    raw = Raw(ctx)
    try:
        radd = RawAdd(raw, vec_per_invocation=4, local_x=k.local_size[0])
        assert radd.groups(N) == k.grid(-(-N // (k.local_size[0] * 16)))
        RA, RB, RC = raw.buffer(4 * N), raw.buffer(4 * N), raw.buffer(4 * N)
        raw.upload(RA, a)
        raw.upload(RB, b)
        prog = radd.program(RA, RB, RC, N)

        def convenience():
            vkbands.add(A, B).close()          # as a user calls it: the output allocated (and freed) per call

        def raw_call():
            raw.free(radd.call(RA, RB, N))     # the same at the floor: allocate, record, submit, wait, free

        cases = {"np": lambda: np.add(a, b, out=c), "dev": rec.submit, "raw": prog.submit, "conv": convenience, "raw_call": raw_call}
        wgpu_note = "not installed (optional peer)"
        try:
            wgpu_run = wgpu_add_runner(a, b)     # optional peer (None when wgpu-py is not installed)
        except Exception as e:                   # e.g. no adapter: a peer never fails the bench
            wgpu_run, wgpu_note = None, f"unavailable ({type(e).__name__})"
        if wgpu_run is not None:
            cases["wgpu"] = wgpu_run
        t, tcpu = interleaved_ms(cases, repeat=rep, cpu=True)
        t_np, t_dev, t_raw, t_conv, t_rcall, t_wgpu = t["np"], t["dev"], t["raw"], t["conv"], t["raw_call"], t.get("wgpu")
        assert np.array_equal(C.numpy(), ab), "vkbands add gave a wrong result"
        assert np.array_equal(raw.download(RC), ab), "raw-Vulkan add gave a wrong result"
        out = vkbands.add(A, B)
        assert np.array_equal(out.numpy(), ab), "vkbands.add(A, B) gave a wrong result"
        out.close()
        out = radd.call(RA, RB, N)
        assert np.array_equal(raw.download(out), ab), "raw-Vulkan one-shot add gave a wrong result"
        raw.free(out)
        t_full = median_ms(lambda: vkbands.add(a, b), repeat=3 if quick else 7, warmup=1)

        # 1,000 tiny dependent dispatches (ping-pong), one recording, replayed: the per-dispatch floor.
        x, y, one = ctx.array(np.zeros(4, np.float32)), ctx.empty(4), ctx.array(np.ones(4, np.float32))
        chain = ctx.recorder()
        for i in range(1000):
            src, dst = (x, y) if i % 2 == 0 else (y, x)
            chain.dispatch(k, 1, src, one, dst, push={"n": 4})
        rx, ry, rone = raw.buffer(16), raw.buffer(16), raw.buffer(16)
        raw.upload(rx, np.zeros(4, np.float32))
        raw.upload(rone, np.ones(4, np.float32))
        rchain = radd.chain(rx, ry, rone, 4, 1000)
        reps = (5 if quick else 9) if not gpu else (10 if quick else 20)
        tc = interleaved_ms({"dev": chain.submit, "raw": rchain.submit}, repeat=reps)
        t_chain, t_rchain = tc["dev"], tc["raw"]
        runs = reps + 2                      # with the warm-up replays
        assert chain.barrier_count == 999 and np.array_equal(x.numpy(), np.full(4, 1000 * runs, np.float32))
        assert rchain.barriers == 999 and np.array_equal(raw.download(rx), np.full(4, 1000 * runs, np.float32))
        ctx.check()
    finally:
        raw.close()

    def row(name, ms, vs_raw=True):
        return [name, f"{ms:.2f}", f"{gb / ms * 1e3:.1f}", f"{t_np / ms:.2f}", f"{ms / t_raw:.2f}" if vs_raw else ""]
    rows = [
        row("NumPy np.add(a, b, out=c)", t_np),
        row("raw Vulkan (prerecorded, vk.lib), device-resident", t_raw),
        row("vkbands add, device-resident (replayed recorder)", t_dev),
        row("vkbands.add(A, B) on device arrays (output allocated per call)", t_conv),
        row("raw Vulkan, one-shot call (output allocated per call, recorded, submitted)", t_rcall),
        ["wgpu-py (same driver), device-resident", *([f"{t_wgpu:.2f}", f"{gb / t_wgpu * 1e3:.1f}", f"{t_np / t_wgpu:.2f}",
                                                     f"{t_wgpu / t_raw:.2f}"] if t_wgpu else
                                                    [wgpu_note, "", "", ""])],
        row("vkbands.add(numpy, numpy) incl. upload + readback", t_full),
    ]
    print(f"## add, N = 2**24 float32 — device: {ctx.info['name']} ({ctx.info['type']})\n")
    print(table(rows, ["case", "ms", "GB/s (3 x 4 B x N)", "speed vs NumPy", "time / raw Vulkan"]))
    r_dev, r_conv = t_dev / t_raw, t_conv / t_raw
    verdict = lambda r: "met" if r <= TARGET else "not met"
    print(f"\nvkbands / raw Vulkan (time ratio; target <= {TARGET:.2f}): replayed recorder {r_dev:.3f} "
          f"({verdict(r_dev)}); vkbands.add(A, B) on device arrays {r_conv:.3f} ({verdict(r_conv)})"
          f" — median of {rep} interleaved runs each; vkbands.add(A, B) / raw one-shot call with the same "
          f"allocation: {t_conv / t_rcall:.3f}")
    print(f"the same ratios in process CPU time (less sensitive to other load on a CPU device): replayed recorder "
          f"{tcpu['dev'] / tcpu['raw']:.3f}; vkbands.add(A, B) {tcpu['conv'] / tcpu['raw']:.3f}; "
          f"vkbands.add(A, B) / raw one-shot call {tcpu['conv'] / tcpu['raw_call']:.3f}")
    print(f"per dispatch, 1,000 dependent tiny dispatches (with barriers) replayed from one recording: "
          f"vkbands {t_chain:.2f} us, raw Vulkan {t_rchain:.2f} us ({t_chain / t_rchain:.2f}x; "
          f"{t_chain:.1f} / {t_rchain:.1f} ms per replay; no Python work per dispatch)")
    for obj in (rec, chain, A, B, C, x, y, one):
        obj.close()


def main(argv=None):
    args = bench_args(__doc__, argv)
    with Report(args.out, "bench_add"):
        run(args.quick)


if __name__ == "__main__":
    main()
