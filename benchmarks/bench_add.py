"""add on 2**24 float32: NumPy vs vkbands (device-resident, and with upload + readback), and the
per-dispatch cost of 1,000 tiny dependent dispatches replayed from one recording.

Run: ``.venv/bin/python benchmarks/bench_add.py`` (prints a Markdown table)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vkbands  # noqa: E402
from vkbands.engine import default_context  # noqa: E402
from _timing import median_ms, table  # noqa: E402
from peers import wgpu_add_ms  # noqa: E402

N = 2**24


def main():
    ctx = default_context()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(N).astype(np.float32), rng.standard_normal(N).astype(np.float32)
    c = np.empty_like(a)
    gb = 3 * N * 4 / 1e9  # bytes moved by one add (2 reads + 1 write)

    t_np = median_ms(lambda: np.add(a, b, out=c))
    A, B, C = ctx.array(a), ctx.array(b), ctx.empty(N)
    k = ctx.kernel("add.comp", spec={"VEC_PER_INVOCATION": 4})
    rec = ctx.recorder()
    rec.dispatch(k, k.grid(-(-N // (k.local_size[0] * 16))), A, B, C, push={"n": N})
    t_dev = median_ms(rec.submit)
    assert np.array_equal(C.numpy(), a + b)
    t_full = median_ms(lambda: vkbands.add(a, b), repeat=7)

    # 1,000 tiny dependent dispatches (ping-pong), one recording, replayed: the per-dispatch floor.
    x, y, one = ctx.array(np.zeros(4, np.float32)), ctx.empty(4), ctx.array(np.ones(4, np.float32))
    chain = ctx.recorder()
    for i in range(1000):
        src, dst = (x, y) if i % 2 == 0 else (y, x)
        chain.dispatch(k, 1, src, one, dst, push={"n": 4})
    t_chain = median_ms(chain.submit, repeat=9)
    assert chain.barrier_count == 999 and np.array_equal(x.numpy(), np.full(4, 11 * 1000, np.float32))  # 11 replays

    t_wgpu = wgpu_add_ms(a, b)
    rows = [
        ["NumPy np.add(a, b, out=c)", f"{t_np:.2f}", f"{gb / t_np * 1e3:.1f}", "1.00"],
        ["vkbands add, device-resident", f"{t_dev:.2f}", f"{gb / t_dev * 1e3:.1f}", f"{t_np / t_dev:.2f}"],
        ["vkbands.add(numpy, numpy) incl. upload + readback", f"{t_full:.2f}", f"{gb / t_full * 1e3:.1f}",
         f"{t_np / t_full:.2f}"],
    ]
    rows.insert(2, ["wgpu-py (same driver), device-resident", *(
        [f"{t_wgpu:.2f}", f"{gb / t_wgpu * 1e3:.1f}", f"{t_np / t_wgpu:.2f}"] if t_wgpu else ["not installed", "", ""])])
    print(f"## add, N = 2**24 float32 — device: {ctx.info['name']} ({ctx.info['type']})\n")
    print(table(rows, ["case", "ms", "GB/s (3 x 4 B x N)", "speed vs NumPy"]))
    print(f"\nper dispatch, 1,000 dependent tiny dispatches (with barriers) replayed from one recording: "
          f"{t_chain / 1000 * 1e3:.1f} us ({t_chain:.1f} ms per replay; no Python work per dispatch)")
    for obj in (rec, chain, A, B, C, x, y, one):
        obj.close()


if __name__ == "__main__":
    main()
