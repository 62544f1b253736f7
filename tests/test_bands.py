"""vkbands.bands (GPU tree-Haar decomposition) against vkbands.reference and closed forms.

Tolerances ("relative 1e-5 in float32"): arrays are compared with rtol=1e-5 and an absolute floor of
1e-5 times the field's RMS (a coarse value or a detail near zero cannot be relatively exact in
float32); energies with rtol=1e-5 and a floor of 1e-7 of the field's total energy.
"""
import numpy as np
import pytest

import vkbands
import vkbands.bands as VB
import vkbands.init as I
import vkbands.reference as R
from vkbands.engine import DeviceArray
from tests._deps import need

# (spatial shape, arity): 1-D and 2-D for p in 2..5, kept small (validation on)
CASES = [((256,), 2), ((243,), 3), ((256,), 4), ((125,), 5),
         ((32, 32), 2), ((27, 27), 3), ((16, 16), 4), ((25, 25), 5),
         ((8, 32), 2), ((27, 9), 3),  # rectangular: L = min(Ly, Lx)
         # any size (issue 11): L = largest with p**L dividing every axis, a coarse grid
         ((96, 96), 2), ((54, 81), 3), ((100, 60), 2), ((96,), 2), ((3 ** 4,), 3),
         ((7, 5), 2), ((101,), 3)]    # L = 0: the coarse grid is the field


def _field(spatial, batch, seed=0):
    shape = ((batch,) if batch else ()) + spatial
    return I.random(shape, seed=seed)


def _close(got, ref, x):
    scale = float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))
    np.testing.assert_allclose(np.asarray(got, np.float64), ref, rtol=1e-5, atol=1e-5 * scale)


def _close_energies(E, Er, x, dims):
    total = np.sum(np.asarray(x, np.float64) ** 2, axis=tuple(range(-dims, 0)))
    np.testing.assert_allclose(E, Er, rtol=1e-5, atol=1e-7 * float(np.max(total)))


@pytest.mark.parametrize("batch", [0, 3])
@pytest.mark.parametrize("spatial,p", CASES)
def test_decompose_matches_reference(spatial, p, batch):
    x = _field(spatial, batch)
    dims = len(spatial)
    b = VB.decompose(x, p, dims=dims)
    L = R.levels(x.shape, p, dims)
    assert (b.arity, b.levels, b.dims) == (p, L, dims)
    details_ref, coarse_ref = R.decompose(x, p, dims)
    for l in range(L):
        d = b.detail(l)
        assert d.shape == details_ref[l].shape and d.dtype == np.float32
        _close(d, details_ref[l], x)
        _close(b.detail(l, leaf=True), R.detail(x, p, l, dims, leaf=True), x)
    for l in range(L + 1):
        s = b.cumulative(l)
        assert s.shape == x.shape
        _close(s, R.cumulative(x, p, l, dims), x)
    assert np.shape(b.coarse) == np.shape(coarse_ref)
    _close(b.coarse, coarse_ref, x)
    E, Er = b.energies(), R.energies(x, p, dims)
    assert E.shape == Er.shape == x.shape[:x.ndim - dims] + (L + 1,)
    _close_energies(E, Er, x, dims)
    _close_energies(VB.energies(x, p, dims), Er, x, dims)
    # exact reconstruction and Parseval
    np.testing.assert_allclose(VB.reconstruct(b), x, rtol=1e-5, atol=1e-5 * float(np.abs(x).max()))
    total = np.sum(x.astype(np.float64) ** 2, axis=tuple(range(-dims, 0)))
    np.testing.assert_allclose(E.astype(np.float64).sum(-1), total, rtol=1e-5)
    # orthogonality of what the GPU produced
    G = VB.leakage(b)
    assert G.shape == (L + 1, L + 1)
    assert np.max(np.abs(G - np.eye(L + 1))) < 1e-5
    details, c = b.numpy()
    assert len(details) == L and np.shape(c) == np.shape(coarse_ref)
    assert not np.any(b.nonfinite)


@pytest.mark.parametrize("node_max,micro_max,threads,min_passes", [
    (3, 4, (2, 4), 2),                # tiny tiles: every size takes several passes (the partials path)
    (9, {1: 243, 2: 81}, (1, 8), 1),  # big micro-tiles: several levels in registers, also in 2-D
    (1024, {1: 3, 2: 4}, (64, 4), 1), # many invocations per tile and several tiles per workgroup (GPU-like)
])
def test_other_tilings(monkeypatch, node_max, micro_max, threads, min_passes):
    """The same results for other tilings and thread layouts than this device's default."""
    monkeypatch.setattr(VB, "_NODE_MAX", node_max)
    monkeypatch.setattr(VB, "_MICRO_MAX", micro_max)
    monkeypatch.setattr(VB, "_CPU_THREADS", threads)
    monkeypatch.setattr(vkbands.default_context(), "_probes", {})   # plans cached on the context: made anew
    for spatial, p, batch in [((81, 81), 3, 2), ((64,), 2, 3), ((8, 64), 2, 2), ((625,), 5, 1), ((27,), 3, 5),
                              ((96, 96), 2, 2), ((54, 81), 3, 2), ((96,), 2, 3)]:     # coarse grids
        x = _field(spatial, batch, seed=1)
        dims = len(spatial)
        plan = VB._plan(vkbands.default_context(), spatial, p, batch)
        assert len(plan._energy_sched) >= min_passes
        if node_max == 9:
            assert max(ps.kernel.spec["M"] for ps in plan._energy_sched) >= 2
        _close_energies(VB.energies(x, p, dims), R.energies(x, p, dims), x, dims)
        ctx = vkbands.default_context()
        xs = (x if batch else x[None]).copy()
        xs[-1].flat[len(xs[-1].flat) // 2] = np.nan
        X, E, S = ctx.array(xs), ctx.empty((batch, plan.levels + 1)), ctx.empty((batch, 4))
        with ctx.recorder() as rec:
            plan.record_observables(rec, X, E, S)
        _check_observables(xs, E.numpy(), S.numpy(), p, dims)
        X.close(), E.close(), S.close()
        b = VB.decompose(x, p, dims)
        for l in range(b.levels):
            _close(b.detail(l), R.detail(x, p, l, dims), x)
        _close(b.coarse, R.coarse(x, p, dims), x)
        ctx = vkbands.default_context()
        X, out = ctx.array(x), ctx.empty((2 * b.levels + 1,) + spatial)
        with ctx.recorder() as rec:
            plan.record_sheets(rec, X, out, member=batch - 1)
        sheets = out.numpy()
        for l in range(b.levels + 1):
            _close(sheets[l], R.cumulative(x[batch - 1], p, l, dims), x)
        X.close(), out.close()


def test_larger_fields_two_passes():
    """Sizes above one tile with the default tiling (128^2, p=2 and 243^2, p=3)."""
    for spatial, p in [((128, 128), 2), ((243, 243), 3), ((4096,), 2)]:
        x = _field(spatial, 2, seed=2)
        dims = len(spatial)
        _close_energies(VB.energies(x, p, dims), R.energies(x, p, dims), x, dims)


@pytest.mark.parametrize("spatial,p", [((81,), 3), ((27, 27), 3), ((16, 16), 2), ((125,), 5),
                                        ((54, 81), 3), ((96,), 2)])
@pytest.mark.parametrize("style", ["haar", "randphase", "sparse"])
def test_band_pure_energy_only_in_its_band(spatial, p, style):
    dims = len(spatial)
    L = R.levels(spatial, p, dims)
    for band in range(L):
        x = I.band_pure((2,) + spatial, p, band, style=style, seed=band, dims=dims)
        E = VB.energies(x, p, dims).astype(np.float64)
        total = E.sum(-1, keepdims=True)
        others = np.delete(E, band, axis=-1)
        assert np.all(others <= 1e-10 * total), (band, E)
        np.testing.assert_allclose(E[:, band], np.sum(x.astype(np.float64) ** 2, axis=tuple(range(1, dims + 1))),
                                   rtol=1e-5)


def test_band_pure_mix_energy_ratio():
    x = I.band_pure((27, 27), 3, 1, style="mix", mix_band=2, mix_eps=0.1, seed=3)
    E = VB.energies(x, 3)
    assert E[1] / E[2] == pytest.approx(100.0, rel=1e-4)
    assert E[0] < 1e-10 * E.sum() and E[-1] < 1e-10 * E.sum()


@pytest.mark.parametrize("spatial,p", [((243,), 3), ((32, 32), 2), ((25, 25), 5), ((8, 32), 2)])
def test_block_constant_fields_have_no_fine_energy(spatial, p):
    dims = len(spatial)
    L = R.levels(spatial, p, dims)
    for k in range(1, L):
        coarse_grid = np.random.default_rng(k).standard_normal(tuple(n // p ** k for n in spatial))
        x = R.expand(coarse_grid, p, k, dims).astype(np.float32)
        E = VB.energies(x, p, dims).astype(np.float64)
        assert np.all(E[:k] <= 1e-10 * E.sum()), (k, E)
        b = VB.decompose(x, p, dims)
        for l in range(k):
            assert np.max(np.abs(b.detail(l))) <= 1e-6 * np.abs(x).max()


def test_haar_energies_match_pywavelets():
    pywt = need("pywt")
    x = _field((64, 64), 0, seed=4)
    E = VB.energies(x, 2)
    coeffs = pywt.wavedec2(x.astype(np.float64), "haar", mode="periodization")
    # coeffs = [cA_L, (H, V, D)_L, ..., (H, V, D)_1]; band l <-> scale l+1
    ref = [sum(np.sum(a ** 2) for a in coeffs[-1 - l]) for l in range(6)] + [np.sum(coeffs[0] ** 2)]
    np.testing.assert_allclose(E, ref, rtol=1e-5, atol=1e-7 * np.sum(x.astype(np.float64) ** 2))


# ---------------------------------------------------------------------------- BandPlan
@pytest.mark.parametrize("spatial,p,batch", [((27, 27), 3, 3), ((64,), 2, 5), ((9, 27), 3, 2)])
def test_plan_record_energies_rows(ctx, spatial, p, batch):
    dims = len(spatial)
    x0, x1 = _field(spatial, batch, seed=5), _field(spatial, batch, seed=6)
    with VB.BandPlan(ctx, spatial, p, batch=batch) as plan:
        L = plan.levels
        assert L == R.levels(spatial, p, dims)
        X0, X1 = ctx.array(x0), ctx.array(x1)
        out = ctx.empty((3, batch, L + 1)).fill(-7.0)
        rec = ctx.recorder()
        plan.record_energies(rec, X0, out, row=0)
        plan.record_energies(rec, X1, out, row=2)
        rec.submit()
        rec.submit()  # replay: same result
        got = out.numpy()
        rec.close()
        _close_energies(got[0], R.energies(x0, p, dims), x0, dims)
        _close_energies(got[2], R.energies(x1, p, dims), x1, dims)
        assert np.all(got[1] == -7.0)
        with pytest.raises(ValueError, match="row"):
            plan.record_energies(ctx.recorder(), X0, out, row=3)
        with pytest.raises(ValueError, match="elements"):
            plan.record_energies(ctx.recorder(), ctx.empty((batch + 1,) + spatial), out)
        X0.close(), X1.close(), out.close()


def _check_observables(x, E, S, p, dims):
    """E (batch, L+1), S (batch, 4) = [mass, min, max, nonfinite] from record_observables vs the
    reference: energies / mass of the finite fields, min / max over finite values, the flag of all."""
    o = R.observables(np.where(np.isfinite(x), x, 0.0), p, dims)
    bad = ~np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)
    np.testing.assert_array_equal(S[:, 3], np.where(bad, 1.0, 0.0))
    ax = tuple(range(1, 1 + dims))
    finite = np.where(np.isfinite(x), x, np.nan)
    # exact on any device: min / max round nothing
    np.testing.assert_array_equal(S[:, 1], np.nanmin(finite, axis=ax).astype(np.float32))
    np.testing.assert_array_equal(S[:, 2], np.nanmax(finite, axis=ax).astype(np.float32))
    ok = ~bad
    if ok.any():
        _close_energies(E[ok], o["energies"][ok], x[ok], dims)
        np.testing.assert_allclose(S[ok, 0], o["mass"][ok], rtol=1e-5,
                                   atol=1e-6 * float(np.abs(x[ok]).sum(axis=ax).max()))
    assert not np.isfinite(S[bad, 0]).any()          # mass = N * c carries the NaN / Inf


@pytest.mark.parametrize("spatial,p,batch", [((27, 27), 3, 4), ((32, 32), 2, 4), ((243,), 3, 4), ((64,), 2, 4),
                                             ((9, 27), 3, 4), ((8, 32), 2, 4), ((128, 128), 2, 4), ((81, 81), 3, 4),
                                             ((96, 96), 2, 4), ((54, 81), 3, 4), ((100, 60), 2, 4), ((96,), 2, 4),
                                             ((21, 10), 2, 4), ((101,), 3, 4)])   # L = 0
def test_plan_record_observables(ctx, spatial, p, batch):
    """record_observables: energies, mass, min, max and the NaN/Inf flag of every field in one read,
    into the requested row; NaN, +Inf and -Inf injected into members 0..2 (member 3 stays finite)."""
    dims = len(spatial)
    x0 = _field(spatial, batch, seed=7) + 3.0     # mass well away from 0: relative 1e-5 means something
    x1 = _field(spatial, batch, seed=8) * 2.0 - 1.0
    n = int(np.prod(spatial))
    for m, (where, value) in enumerate([(n // 3, np.nan), (n - 1, np.inf), (0, -np.inf)]):
        x1[m].flat[where] = value
    with VB.BandPlan(ctx, spatial, p, batch=batch) as plan:
        L = plan.levels
        X0, X1 = ctx.array(x0), ctx.array(x1)
        E = ctx.empty((3, batch, L + 1)).fill(-7.0)
        S = ctx.empty((3, batch, 4)).fill(-7.0)
        rec = ctx.recorder()
        plan.record_observables(rec, X0, E, S, row=0)
        plan.record_observables(rec, X1, E, S, row=2)
        rec.submit()
        rec.submit()  # replay: same result
        e, st = E.numpy(), S.numpy()
        rec.close()
        _check_observables(x0, e[0], st[0], p, dims)
        _check_observables(x1, e[2], st[2], p, dims)
        assert np.all(e[1] == -7.0) and np.all(st[1] == -7.0)
        # the energies are those of record_energies, bit for bit: the STATS and plain variants are
        # different pipelines (a GPU compiler may contract them differently), but bands_pyramid.comp
        # computes means, details and energy sums `precise` (no FMA contraction, no reassociation)
        E2 = ctx.empty((1, batch, L + 1))
        with ctx.recorder() as r2:
            plan.record_energies(r2, X0, E2)
        np.testing.assert_array_equal(E2.numpy()[0], e[0])
        with pytest.raises(ValueError, match="row"):
            plan.record_observables(ctx.recorder(), X0, E, S, row=3)
        with pytest.raises(ValueError, match="elements"):
            plan.record_observables(ctx.recorder(), X0, E, ctx.empty((batch, 3)))
        X0.close(), X1.close(), E.close(), S.close(), E2.close()


@pytest.mark.parametrize("spatial,p,batch", [((27, 27), 3, 3), ((64,), 2, 2), ((9, 27), 3, 2), ((25, 25), 5, 1),
                                             ((54, 81), 3, 2), ((100, 60), 2, 1), ((96,), 2, 2), ((7, 5), 2, 2)])
def test_plan_record_sheets(ctx, spatial, p, batch):
    dims = len(spatial)
    x = _field(spatial, batch, seed=7)
    member = batch - 1
    xm = x[member]
    with VB.BandPlan(ctx, spatial, p, batch=batch) as plan:
        L = plan.levels
        X = ctx.array(x)
        out = ctx.empty((2 * L + 1,) + spatial)
        with ctx.recorder() as rec:
            plan.record_sheets(rec, X, out, member=member)
        got = out.numpy()
        for l in range(L + 1):
            _close(got[l], R.cumulative(xm, p, l, dims), xm)
        for l in range(L):
            _close(got[L + 1 + l], R.detail(xm, p, l, dims, leaf=True), xm)
        with pytest.raises(ValueError, match="member"):
            plan.record_sheets(ctx.recorder(), X, out, member=batch)
        X.close(), out.close()


# ---------------------------------------------------------------------------- errors, NaN
@pytest.mark.parametrize("shape,p,dims", [((96, 96), 2, None), ((3, 54, 81), 3, 2), ((5, 3 ** 4), 3, 1),
                                          ((2, 96), 2, 1)])
def test_explicit_levels_below_the_maximum(shape, p, dims):
    """levels=k < max: the coarse part is the (H/p**k, W/p**k) grid, as vkbands.reference."""
    x = I.random(shape, seed=3)
    top = R.levels(shape, p, dims)
    d = R.infer_dims(shape, dims)
    for k in range(1, top + 1):
        b = VB.decompose(x, p, dims=dims, levels=k)
        details_ref, coarse_ref = R.decompose(x, p, dims, levels=k)
        assert b.levels == k and np.shape(b.coarse) == np.shape(coarse_ref)
        _close(b.coarse, coarse_ref, x)
        for l in range(k):
            _close(b.detail(l), details_ref[l], x)
        _close_energies(b.energies(), R.energies(x, p, dims, levels=k), x, d)
        _close_energies(VB.energies(x, p, dims, levels=k), R.energies(x, p, dims, levels=k), x, d)
        np.testing.assert_allclose(VB.reconstruct(b), x, rtol=1e-5, atol=1e-5 * float(np.abs(x).max()))
        assert np.max(np.abs(VB.leakage(x, p, dims, levels=k) - np.eye(k + 1))) < 1e-5
    for fn in (VB.decompose, VB.energies, VB.leakage):
        with pytest.raises(ValueError, match=rf"levels must be .*0\.\.{top} \({top} is the maximum.*got {top + 1}"):
            fn(x, p, dims, levels=top + 1)


def test_invalid_sizes_and_arity():
    with pytest.raises(ValueError, match=r"levels must be .*0\.\.0 \(0 is the maximum.*got 1"):
        VB.energies(np.zeros(100, np.float32), 3, levels=1)
    with pytest.raises(ValueError, match=r"\(81, 100\)"):
        VB.decompose(np.zeros((81, 100), np.float32), 3, levels=2)
    with pytest.raises(ValueError, match="arity"):
        VB.energies(np.zeros(16, np.float32), 1)
    with pytest.raises(ValueError, match="arity"):
        VB.decompose(np.zeros(16, np.float32), 2.0)
    with pytest.raises(ValueError, match="dims"):
        VB.energies(np.zeros(16, np.float32), 2, dims=3)
    with pytest.raises(ValueError, match="one value"):
        VB.BandPlan(vkbands.default_context(), (1,), 3)
    with pytest.raises(ValueError, match="arity"):
        VB.BandPlan(vkbands.default_context(), (16,), 1)
    b = VB.decompose(np.ones(27, np.float32), 3)
    with pytest.raises(ValueError, match="l must be"):
        b.detail(3)
    with pytest.raises(ValueError, match="l must be"):
        b.cumulative(4)


def test_nan_propagates_and_is_flagged():
    x = _field((27, 27), 3, seed=8)
    x[1, 4, 5] = np.nan
    x[2, 0, 0] = np.inf
    E = VB.energies(x, 3)
    assert np.all(np.isfinite(E[0])) and not np.all(np.isfinite(E[1])) and not np.all(np.isfinite(E[2]))
    _close_energies(E[0], R.energies(x[0], 3), x[0], 2)
    b = VB.decompose(x, 3)
    assert list(b.nonfinite) == [False, True, True]
    assert np.isnan(b.detail(0)[1, 4, 4]) and np.all(np.isfinite(b.detail(0)[0]))
    assert np.isfinite(b.detail(0)[1, 0, 0])   # a band block without the NaN stays finite


# ---------------------------------------------------------------------------- device in / out
def test_device_in_device_out(ctx):
    x = _field((27, 27), 2, seed=9)
    X = vkbands.asarray(x)
    E = VB.energies(X, 3)
    assert isinstance(E, DeviceArray) and E.shape == (2, 4)
    _close_energies(E.numpy(), R.energies(x, 3), x, 2)
    with VB.decompose(X, 3) as b:
        assert b.device
        for arr in (b.detail(1), b.detail(1, leaf=True), b.cumulative(2), b.coarse, b.energies(), VB.reconstruct(b)):
            assert isinstance(arr, DeviceArray)
        _close(b.detail(1).numpy(), R.detail(x, 3, 1), x)
        _close(b.coarse.numpy(), R.coarse(x, 3), x)
        _close(VB.reconstruct(b).numpy(), x.astype(np.float64), x)
        assert G_ok(VB.leakage(b))
    # inside a recording: the functions record and return device arrays
    with ctx.recorder():
        E2 = VB.energies(X, 3)
        b2 = VB.decompose(X, 3)
        s = b2.cumulative(1)
    _close_energies(E2.numpy(), R.energies(x, 3), x, 2)
    _close(s.numpy(), R.cumulative(x, 3, 1), x)
    with pytest.raises(TypeError):
        with ctx.recorder():
            VB.energies(x, 3)
    for a in (E, E2, s, X):
        a.close()
    b2.close()


def G_ok(G):
    return np.max(np.abs(G - np.eye(len(G)))) < 1e-5


def test_leakage_from_array_matches_reference():
    x = _field((3, 81), 0, seed=10)
    G = VB.leakage(x, 3, dims=1)
    np.testing.assert_allclose(G, R.leakage(x, 3, dims=1), atol=1e-5)
