"""Benchmark: tree-Haar band decomposition (issue 3). One run prints one table.

    .venv/bin/python benchmarks/bench_bands.py
    [--quick] [--out DIR]    (--quick: each timing runs >= 0.15 s / 3 times instead of 0.6 s / 7;
                              --out DIR: also write the output to DIR/bench_bands.md)

Rows: full decomposition (all detail bands at own resolution + energies) of a 729 x 729 field (p = 3)
and a 1024 x 1024 field (p = 2); energies only of the same fields and of a batch of 4096 1-D fields
of 729 leaves (p = 3). Columns (milliseconds, median of repeated runs):
  vkbands   device-resident: a recorded Recorder replayed (rec.submit() in a loop); no uploads
  vk cpu    the same, process CPU time (lavapipe's worker threads): on a CPU device shared with other
            work the wall time swings between ~cpu/2 (both cores free) and ~cpu; NumPy is single-threaded
  np.mean   NumPy reshape + mean per level (the reference style), float32
  np.fast   the fastest NumPy written here: strided slice adds, details as broadcast differences,
            energies with float32 dot products
  pywt      PyWavelets wavedec2 / wavedec 'haar', mode='periodization' (+ sums of squares), p = 2 only
The vkbands result is checked against vkbands.reference before timing.

A second table (issue 11): ``vkbands.wavedec2(x, 'haar', 'periodization')`` (level max) on 1024^2 and
4096^2 float32 vs ``pywt.wavedec2`` in the same run: vkbands device-resident (the recorded levels
replayed), vkbands NumPy in -> NumPy out (upload, all levels, readback of every coefficient), pywt;
ratios pywt / vkbands; the coefficients are checked against PyWavelets before timing.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import vkbands.bands as VB
import vkbands.reference as R
from vkbands.engine import default_context

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import Report, bench_args  # noqa: E402

REPEATS_MIN_S = 0.6     # each timing runs at least this long (and at least MIN_RUNS times)
MIN_RUNS = 7


def _median_ms(fn, min_runs=None, min_s=None, cpu=False):
    """Median wall time of fn() in ms; with cpu=True also the median process CPU time (all threads,
    lavapipe's workers included)."""
    min_runs = MIN_RUNS if min_runs is None else min_runs
    min_s = REPEATS_MIN_S if min_s is None else min_s
    fn()  # warm-up
    times, cpus, t_end = [], [], time.perf_counter() + min_s
    while len(times) < min_runs or time.perf_counter() < t_end:
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        if len(times) > 2000:
            break
    wall = 1e3 * float(np.median(times))
    return (wall, 1e3 * float(np.median(cpus))) if cpu else wall


# ---------------------------------------------------------------------------- NumPy baselines
def _split(x, dims):
    """(batch, h, w) view of a batch of fields (1-D: h = 1)."""
    if dims == 1:
        return x.reshape(-1, 1, x.shape[-1])
    return x.reshape(-1, x.shape[-2], x.shape[-1])


def np_mean_decompose(x, p, dims):
    """Reference style: reshape + mean per level, details = A_l - repeat(A_{l+1}), energies."""
    a = _split(x, dims)
    L = R.levels(x.shape, p, dims)
    details, E = [], []
    for l in range(L):
        B, h, w = a.shape
        hp = h // p if dims == 2 else 1
        nxt = a.reshape(B, hp, h // hp, w // p, p).mean(axis=(2, 4))
        up = np.repeat(np.repeat(nxt, h // hp, axis=1), p, axis=2)
        d = a - up
        details.append(d)
        E.append(p ** (l * dims) * np.sum(d * d, axis=(1, 2)))
        a = nxt
    E.append(p ** (L * dims) * np.sum(a * a, axis=(1, 2)))
    return details, a, np.stack(E, -1)


def np_fast_decompose(x, p, dims, keep=True):
    """Strided slice adds for the block sums; details as broadcast differences (own resolution,
    viewed (B, h', p, w', p)); energies with float32 dot products."""
    a = _split(x, dims)
    L = R.levels(x.shape, p, dims)
    inv = np.float32(1.0 / p ** dims)
    details, E = [], np.empty((a.shape[0], L + 1), np.float32)
    for l in range(L):
        B, h, w = a.shape
        s = a[:, :, 0::p].copy()
        for q in range(1, p):
            s += a[:, :, q::p]
        if dims == 2:
            t = s[:, 0::p].copy()
            for q in range(1, p):
                t += s[:, q::p]
        else:
            t = s
        nxt = t * inv
        if dims == 2:
            d = a.reshape(B, h // p, p, w // p, p) - nxt[:, :, None, :, None]
        else:
            d = a.reshape(B, 1, w // p, p) - nxt[:, :, :, None]
        dd = d.reshape(B, -1)
        E[:, l] = np.einsum("ij,ij->i", dd, dd) * np.float32(p ** (l * dims))
        if keep:
            details.append(d)
        a = nxt
    E[:, L] = np.einsum("ij,ij->i", a.reshape(a.shape[0], -1), a.reshape(a.shape[0], -1)) * np.float32(p ** (L * dims))
    return details, a, E


def pywt_decompose(x, dims):
    import pywt
    if dims == 2:
        coeffs = pywt.wavedec2(x, "haar", mode="periodization")
        return [np.sum(c[0] ** 2) + np.sum(c[1] ** 2) + np.sum(c[2] ** 2) for c in coeffs[1:]] + [np.sum(coeffs[0] ** 2)]
    coeffs = pywt.wavedec(x, "haar", mode="periodization", axis=-1)
    return [np.sum(c ** 2, axis=-1) for c in coeffs]


# ---------------------------------------------------------------------------- vkbands
def vk_recording(ctx, x, p, dims, full):
    """(recorder, check) for the device-resident decomposition (full) or energies of x."""
    batch_shape, spatial = R.split_shape(x.shape, dims)
    B = int(np.prod(batch_shape)) if batch_shape else 1
    plan = VB.BandPlan(ctx, spatial, p, batch=B)
    L = plan.levels
    X = ctx.array(x)
    E = ctx.empty((B, L + 1))
    keep = [plan, X, E]
    rec = ctx.recorder()
    if full:
        off = VB._Geometry(x.shape, p, dims).level_offsets(B)
        bands = ctx.empty((off[-1],))
        keep.append(bands)
        plan.record_decompose(rec, X, bands, E)
    else:
        plan.record_energies(rec, X, E)
    rec.submit()
    Er = R.energies(x, p, dims).reshape(B, L + 1)
    err = float(np.max(np.abs(E.numpy() - Er) / np.maximum(Er.sum(-1, keepdims=True), 1e-30)))
    return rec, keep, err


def run():
    ctx = default_context()
    try:
        import pywt  # noqa: F401
        have_pywt = True
    except ImportError:
        have_pywt = False
    rng = np.random.default_rng(0)
    rows = [
        ("decompose 729x729 p=3", (729, 729), 3, 2, True),
        ("decompose 1024x1024 p=2", (1024, 1024), 2, 2, True),
        ("energies 729x729 p=3", (729, 729), 3, 2, False),
        ("energies 1024x1024 p=2", (1024, 1024), 2, 2, False),
        ("energies 4096 x 729 1-D p=3", (4096, 729), 3, 1, False),
    ]
    empty = ctx.recorder()
    floor = _median_ms(empty.submit)
    empty.close()
    print(f"device: {ctx.info['name']} ({ctx.info['type']}); empty submit+wait: {floor:.3f} ms")
    # yardstick: the cheapest pass over the data (add.comp: 2 reads + 1 write per element)
    marks = []
    for n in (729 * 729, 1024 * 1024):
        a, c = ctx.array(np.ones(n, np.float32)), ctx.empty((n,))
        k = ctx.kernel("add.comp", spec={"VEC_PER_INVOCATION": 4})
        rec = ctx.recorder()
        rec.dispatch(k, k.grid(-(-n // (k.local_size[0] * 16))), a, a, c, push={"n": n})
        w, cp = _median_ms(rec.submit, cpu=True)
        marks.append(f"{n} floats {w:.2f} ms wall / {cp:.2f} ms cpu")
        rec.close(), a.close(), c.close()
    print("yardstick add.comp (c = a + b):", "; ".join(marks))
    hdr = (f"{'operation':30s} {'vkbands':>9s} {'vk cpu':>9s} {'np.mean':>9s} {'np.fast':>9s} {'pywt':>9s} "
           f"{'fast/vk':>8s} {'pywt/vk':>8s} {'max rel err':>12s}")
    print(hdr)
    print("-" * len(hdr))
    for name, shape, p, dims, full in rows:
        x = rng.standard_normal(shape).astype(np.float32)
        rec, keep, err = vk_recording(ctx, x, p, dims, full)
        t_vk, c_vk = _median_ms(rec.submit, cpu=True)
        rec.close()
        for k in keep:
            k.close()
        t_mean = _median_ms(lambda: np_mean_decompose(x, p, dims))
        t_fast = _median_ms(lambda: np_fast_decompose(x, p, dims, keep=full))
        t_pywt = _median_ms(lambda: pywt_decompose(x, dims)) if (have_pywt and p == 2) else float("nan")
        pw = f"{t_pywt:9.2f}" if t_pywt == t_pywt else f"{'-':>9s}"
        ratio = f"{t_pywt / t_vk:7.1f}x" if t_pywt == t_pywt else f"{'-':>8s}"
        print(f"{name:30s} {t_vk:9.2f} {c_vk:9.2f} {t_mean:9.2f} {t_fast:9.2f} {pw} {t_fast / t_vk:7.2f}x {ratio} "
              f"{err:12.1e}")
        sys.stdout.flush()
    print("times in ms (median); vkbands = replay of a recorded Recorder, data device-resident; fast/vk and "
          "pywt/vk = speed-up of vkbands (wall); max rel err = max |E - E_ref| / sum(E_ref) per field vs "
          "vkbands.reference (float64)")
    if have_pywt:
        run_wavedec2(ctx, rng)
    else:
        print("wavedec2 vs PyWavelets: skipped (pywt not installed)")


def run_wavedec2(ctx, rng, sizes=(1024, 4096)):
    """wavedec2 (haar, periodization, level max) vs PyWavelets on n x n float32 fields."""
    import pywt

    import vkbands
    hdr = (f"{'wavedec2 haar (level max)':30s} {'vk dev':>9s} {'vk cpu':>9s} {'vk numpy':>9s} {'pywt':>9s} "
           f"{'pywt/dev':>9s} {'pywt/np':>8s} {'max rel err':>12s}")
    print()
    print(hdr)
    print("-" * len(hdr))
    for n in sizes:
        x = rng.standard_normal((n, n)).astype(np.float32)
        want = pywt.wavedec2(x, "haar", mode="periodization")
        got = vkbands.wavedec2(x, "haar", "periodization")
        flat = lambda c: [c[0]] + [a for d in c[1:] for a in d]  # noqa: E731
        scale = max(float(np.abs(w).max()) for w in flat(want))
        err = max(float(np.max(np.abs(g - w))) for g, w in zip(flat(got), flat(want))) / scale
        X = ctx.array(x)
        rec = ctx.recorder()
        rec.activate()
        try:
            coeffs = vkbands.wavedec2(X, "haar", "periodization")
        finally:
            rec.deactivate()
        t_dev, c_dev = _median_ms(rec.submit, cpu=True)
        rec.close()
        for c in [coeffs[0]] + [a for d in coeffs[1:] for a in d]:
            c.close()
        X.close()
        t_np = _median_ms(lambda: vkbands.wavedec2(x, "haar", "periodization"))
        t_pywt = _median_ms(lambda: pywt.wavedec2(x, "haar", mode="periodization"))
        print(f"{f'{n}x{n} L={len(want) - 1}':30s} {t_dev:9.2f} {c_dev:9.2f} {t_np:9.2f} {t_pywt:9.2f} "
              f"{t_pywt / t_dev:8.1f}x {t_pywt / t_np:7.1f}x {err:12.1e}")
        sys.stdout.flush()
    print("times in ms (median); vk dev = replay of the recorded levels, data device-resident; vk numpy = "
          "vkbands.wavedec2 NumPy in -> NumPy out (upload + readback); pywt/dev and pywt/np = speed-up over "
          "PyWavelets (wall); max rel err = max |c - c_pywt| / max |c_pywt| over all coefficients")


def main(argv=None):
    global REPEATS_MIN_S, MIN_RUNS
    args = bench_args(__doc__, argv, quick_help="shorter timings (>= 0.15 s / 3 runs each), same sizes")
    if args.quick:
        REPEATS_MIN_S, MIN_RUNS = 0.15, 3
    with Report(args.out, "bench_bands"):
        run()


if __name__ == "__main__":
    main()
