"""Step kernels of the rollout systems vs closed forms and vkbands.reference (issue 4); the fused tree
kernels' layouts (issue 8: subgroup widths, forced layouts) and dispatch plans (issue 8: work budgets on
every device)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vkbands import init
from vkbands import reference as R
from vkbands.systems import _fused as S
from vkbands.rollout import NonFiniteError, Simulation, rollout
from vkbands.systems import make_system


def _closed_form_check(r, x0, rates, dims):
    """E_l(t) = rates[l]**(2t) E_l(0): relative 1e-3 while above 1e-20 of the initial total, else below it.

    Checked on the bands present in x0 (E_l(0) > 1e-9 of the total); a band that is zero in exact
    arithmetic (band-pure fields) holds float32 round-off of x0 only: it must stay at that level."""
    E0 = R.energies(x0, r.arity, dims=dims)                      # (B, L+1) float64
    lam = np.append(np.asarray(rates, np.float64), 1.0)
    cf = E0[None] * lam[None, None, :] ** (2.0 * r.steps[:, None, None])
    floor = 1e-20 * E0.sum(-1)[None, :, None]
    E = r.energies
    present = np.broadcast_to(E0[None] > 1e-9 * E0.sum(-1)[None, :, None], E.shape)
    assert np.all(E[~present] <= 1e-9 * np.broadcast_to(E0.sum(-1)[None, :, None], E.shape)[~present])
    big = (cf > floor) & present
    assert big.sum() > 0
    np.testing.assert_allclose(E[big], cf[big], rtol=1e-3)
    small = ~big & present
    assert np.all(E[small] <= np.broadcast_to(floor, E.shape)[small] * 1.0001)
    return E


@pytest.mark.parametrize("style,band", [("haar", 0), ("randphase", 2), ("sparse", 4), ("mix", 1)])
def test_tree_band_pure_closed_form_200_steps(ctx, style, band):
    x0 = init.band_pure((3, 729), 3, band, style=style, seed=band, sparse_m=3, dims=1)
    r = rollout("tree", x0, 200, every=1, dims=1, ctx=ctx, progress=False)
    E = _closed_form_check(r, x0, R.tree_rates(3, 6), 1)
    if style != "mix":      # band-pure stays band-pure: no leakage into the other bands
        others = np.delete(E, band, axis=2)[..., :-1]
        assert np.all(others <= 1e-10 * E[0, :, band][None, :, None])


def test_tree_random_closed_form_and_mass(ctx):
    x0 = init.random((4, 729), seed=7) + 0.5
    r = rollout("tree", x0, 200, every=1, dims=1, ctx=ctx, progress=False)
    _closed_form_check(r, x0, R.tree_rates(3, 6), 1)
    m0 = x0.astype(np.float64).sum(-1)
    np.testing.assert_allclose(r.mass[0], m0, rtol=1e-5)
    np.testing.assert_allclose(r.mass[-1], m0, rtol=1e-5)
    np.testing.assert_allclose(r.final.astype(np.float64).sum(-1), m0, rtol=1e-5)
    # E_c is the conserved coarse energy
    np.testing.assert_allclose(r.energies[:, :, -1], np.broadcast_to(r.energies[:1, :, -1], r.energies[:, :, -1].shape),
                               rtol=1e-5)


def test_tree_explicit_rates_and_profile(ctx):
    x0 = init.random((2, 256), seed=3)
    rates = [0.5, 0.9, 0.99, 1.0, 0.7, 0.8, 0.95, 0.3]
    r = rollout("tree", x0, 60, every=3, dims=1, arity=2, rates=rates, ctx=ctx, progress=False)
    _closed_form_check(r, x0, rates, 1)
    assert r.params["rates"] == pytest.approx(rates)
    # tau / alpha profile
    r2 = rollout("tree", x0, 30, every=1, dims=1, arity=2, tau=0.5, alpha=2.0, ctx=ctx, progress=False)
    _closed_form_check(r2, x0, R.tree_rates(2, 8, tau=0.5, alpha=2.0), 1)


@pytest.mark.parametrize("p,side", [(3, 27), (2, 16), (3, 81)])
def test_tree_2d_matches_reference(ctx, p, side):
    x0 = init.random((2, side, side), seed=side)
    L = R.levels(x0.shape, p)
    rates = R.tree_rates(p, L, tau=0.7)
    r = rollout("tree", x0, 5, every=1, snapshot_every=5, arity=p, tau=0.7, ctx=ctx, progress=False)
    x = x0.astype(np.float64)
    for _ in range(5):
        x = R.tree_step(x, rates, p)
    np.testing.assert_allclose(r.final, x, atol=2e-6 * np.abs(x).max())
    np.testing.assert_allclose(r.snapshots[-1], x, atol=2e-6 * np.abs(x).max())
    _closed_form_check(r, x0, rates, 2)


def test_tree_1d_other_arities(ctx):
    for p, N in ((2, 1024), (4, 256), (5, 125)):
        x0 = init.random((N,), seed=p)
        L = R.levels((N,), p)
        r = rollout("tree", x0, 7, every=7, arity=p, ctx=ctx, progress=False)
        x = x0.astype(np.float64)
        for _ in range(7):
            x = R.tree_step(x, R.tree_rates(p, L), p)
        np.testing.assert_allclose(r.final, x, atol=1e-6 * np.abs(x0).max())
        assert r.final.shape == x0.shape and r.energies.shape == (2, 1, L + 1)


def test_coupled_eps0_equals_tree(ctx):
    x0 = init.random((3, 729), seed=11)
    a = rollout("tree", x0, 40, every=4, dims=1, ctx=ctx, progress=False)
    b = rollout("coupled", x0, 40, every=4, dims=1, eps=0.0, phi="square", ctx=ctx, progress=False)
    # eps = 0 runs the very same float32 operations, but in another pipeline (step_coupled.comp), which a
    # GPU compiler may contract differently (FMA). Bit-exact all the same: tree_fused.glsl computes the
    # band state, leaves and accumulators with `precise` (no contraction, no reassociation).
    np.testing.assert_array_equal(b.final, a.final)
    np.testing.assert_array_equal(b.energies, a.energies)


def _same_rollouts(a, b, snapshots=False):
    for name in ("energies", "mass", "nonfinite", "final", "steps"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    if snapshots:
        np.testing.assert_array_equal(a.snapshots, b.snapshots)
    assert a.status == b.status and a.n_steps == b.n_steps


@pytest.mark.parametrize("system", ["tree", "coupled"])
def test_observation_blocks_equal_step_by_step(ctx, monkeypatch, system):
    """Issue 12: with minmax off, tree steps observe in blocks (tree_fused.glsl block_run: several rows
    from one pass over the coefficients, once an observation found the energies finite). The same
    roundings in the same order as observing step by step (minmax on): energies, mass, flags,
    snapshots and states bit-exact, at several cadences, snapshots off and on the observations, and
    with dispatches cut anywhere (tiny budgets); coupled with eps = 0 is the tree bit for bit."""
    x0 = init.random((13, 243), seed=5)
    params = dict(dims=1, tau=0.05) if system == "tree" else dict(dims=1, eps=0.0, phi="tanh", tau=0.05)
    run = lambda **kw: rollout(system, x0, 83, ctx=ctx, progress=False, **params, **kw)
    for every, snap in [(1, None), (1, 21), (3, 10), (2, 7), (4, None), (5, 40), (9, None), (13, 50)]:
        a = run(every=every, snapshot_every=snap, minmax=False)
        _same_rollouts(a, run(every=every, snapshot_every=snap, minmax=True), snapshots=snap is not None)
        assert np.isnan(a.min).all() and not a.nonfinite.any()
        if system == "coupled":
            _same_rollouts(a, rollout("tree", x0, 83, every=every, snapshot_every=snap, minmax=False, ctx=ctx,
                                      progress=False, dims=1, tau=0.05), snapshots=snap is not None)
    ref = run(every=1, minmax=False)
    monkeypatch.setattr(ctx, "loop_iteration_cap", None)
    monkeypatch.setattr(S, "_SLICE_INVOCATIONS", 1)
    with make_system(ctx, system, x0.shape, **params) as sysm:
        fpw, tpf = sysm._fpw, sysm._spec["TPF"]
    monkeypatch.setattr(S, "_WORK_BUDGET", 9000 * fpw * tpf)     # dispatches of a few steps
    _same_rollouts(run(every=1, minmax=False), ref)


def test_observation_blocks_nonfinite(ctx):
    """Blocks only where no observation can need the leaves: fields whose energies are not finite (huge
    leaves: squares past float32) or whose rates exceed 1 (per member) observe step by step, next to
    block-observing fields in the same workgroup; the flags and the first non-finite step are those of
    observing with min / max, and a batch is its members run separately."""
    L = 5
    x0 = init.random((11, 243), seed=6)
    x0[4] *= 1e25                     # energies overflow from the start, the leaves stay finite
    rates = np.tile(R.tree_rates(3, L, tau=0.05), (11, 1))
    rates[7] = 1.6                    # grows until its leaves overflow: the run stops at that step
    x0[7] *= 1e18
    rates[9, 2] = -1.0                # |rate| <= 1: blocks
    kw = dict(dims=1, rates=rates, ctx=ctx, progress=False)
    errs = []
    for minmax in (False, True):
        with pytest.raises(NonFiniteError) as e:
            rollout("tree", x0, 120, every=1, minmax=minmax, **kw)
        errs.append(e.value)
    a, b = errs[0].rollout, errs[1].rollout
    assert errs[0].step == errs[1].step and errs[0].member == errs[1].member == 7
    _same_rollouts(a, b)
    assert a.status == "nonfinite" and 50 < a.n_steps < 119
    assert np.isinf(a.energies[:, 4]).any() and not a.nonfinite[:, 4].any()
    for m in (0, 4, 9):
        one = rollout("tree", x0[m:m + 1], a.n_steps, every=1, minmax=False, dims=1, rates=rates[m:m + 1], ctx=ctx,
                      progress=False)
        np.testing.assert_array_equal(one.energies[:, 0], a.energies[:, m])
        np.testing.assert_array_equal(one.nonfinite[:, 0], a.nonfinite[:, m])


@pytest.mark.parametrize("every,minmax,scale", [(1, False, 1e25), (1, True, 1.0), (4, False, 1.0), (1, False, 1.0)])
def test_plan_errs_high_on_llvmpipe(ctx, monkeypatch, every, minmax, scale):
    """The cost model errs high where it matters (llvmpipe's loop-iteration cap): one dispatch of 4/3
    of the plan's longest, over the margin, still computes what the plan does, also on the dearest
    path (every energy overflowing: the leaves rebuilt at every observation)."""
    if ctx.loop_iteration_cap is None or "llvmpipe" not in ctx.driver_name.lower():
        pytest.skip("a driver without a loop-iteration cap")
    x0 = init.random((16, 729), seed=0) * scale
    with make_system(ctx, "tree", x0.shape, dims=1) as sysm:
        sysm.observe_minmax = minmax
        sysm._coef_valid = True
        n = -(-max(d[3] for d in sysm._dispatches(2000, every, 0, False, False)) * 4 // 3)
    run = lambda: rollout("tree", x0, n, every=every, minmax=minmax, dims=1, ctx=ctx, progress=False, chunk=n)
    ref = run()
    monkeypatch.setattr(ctx, "loop_iteration_cap", None)
    monkeypatch.setattr(S, "_SERIAL_BUDGET", 1 << 40)
    monkeypatch.setattr(S, "_WORK_BUDGET", 1 << 50)
    with make_system(ctx, "tree", x0.shape, dims=1) as sysm:
        sysm._coef_valid = True
        assert len(sysm._dispatches(n, every, 0, False, False)) == 1
    got = run()
    np.testing.assert_array_equal(got.final, ref.final)
    np.testing.assert_array_equal(got.energies, ref.energies)
    np.testing.assert_array_equal(got.nonfinite, ref.nonfinite)


def test_observation_blocks_dispatch_plan(ctx):
    """Dispatches other than the last end after whole blocks of observations when blocks can run and a
    dispatch holds more than one (a remainder of a row or two would cost a pass each), and the plan
    still covers the run."""
    x0 = init.random((64, 729), seed=1)
    for minmax, every in [(False, 1), (False, 3), (True, 1)]:
        with Simulation(ctx, "tree", x0, dims=1, minmax=minmax) as sim:
            sysm = sim.system
            sysm._coef_valid = True
            plan = sysm._dispatches(1000, every, 0, False, False)
            _plan_covers(plan, 64, 1000, every, 0, False, False)
            rows = [(k0 + steps) // every - k0 // every for _, _, k0, steps, *_ in plan[:-1]]
            assert len(plan) > 2
            if minmax:
                assert not sysm._blocks()
            else:
                assert sysm._blocks() and all(r % S._BLOCK == 0 or r < S._BLOCK for r in rows), rows
                assert every > 1 or rows[0] >= S._BLOCK


@pytest.mark.parametrize("phi", ["tanh", "sign", "square"])
def test_coupled_matches_reference_50_steps(ctx, phi):
    x0 = init.random((2, 243), seed=5)
    eps = 0.05
    C = R.coupling_matrix(5, seed=2)
    r = rollout("coupled", x0, 50, every=10, snapshot_every=25, dims=1, eps=eps, phi=phi, C=C, tau=0.5, ctx=ctx,
                progress=False)
    rates = R.tree_rates(3, 5, tau=0.5)
    x = x0.astype(np.float64)
    snaps = [x]
    for t in range(1, 51):
        x = R.coupled_step(x, rates, C, eps, phi, 3, dims=1)
        if t % 25 == 0:
            snaps.append(x)
    scale = np.abs(x).max()
    np.testing.assert_allclose(r.final, x, atol=1e-4 * scale)
    np.testing.assert_allclose(r.snapshots, np.stack(snaps), atol=1e-4 * scale)
    E = R.energies(x, 3, dims=1)
    np.testing.assert_allclose(r.energies[-1], E, rtol=1e-3, atol=1e-6 * E.sum())
    # the coupling does something: differs from plain tree diffusion
    plain = x0.astype(np.float64)
    for _ in range(50):
        plain = R.tree_step(plain, rates, 3, dims=1)
    assert np.abs(x - plain).max() > 1e-3 * scale


def test_coupled_2d(ctx):
    x0 = init.random((9, 9), seed=1)
    C = R.coupling_matrix(2, seed=0)
    r = rollout("coupled", x0, 10, every=5, eps=0.1, phi="tanh", C=C, ctx=ctx, progress=False)
    x = x0.astype(np.float64)
    for _ in range(10):
        x = R.coupled_step(x, R.tree_rates(3, 2), C, 0.1, "tanh", 3)
    np.testing.assert_allclose(r.final, x, atol=1e-5 * np.abs(x).max())


@pytest.mark.parametrize("side", [27, 32])
def test_heat_1000_steps_matches_reference(ctx, side):
    x0 = (init.smooth((2, side, side), arity=3 if side == 27 else 2, cutoff_level=1, seed=side) + 3.0)
    r = rollout("heat", x0, 1000, every=100, alpha=0.2, ctx=ctx, progress=False)
    x = x0.astype(np.float64)
    for _ in range(1000):
        x = R.heat_step(x, 0.2)
    np.testing.assert_allclose(r.final, x, rtol=1e-4)
    m0 = x0.astype(np.float64).sum((-2, -1))
    np.testing.assert_allclose(r.mass, np.broadcast_to(m0, r.mass.shape), rtol=1e-5)
    E = R.energies(x, r.arity)
    np.testing.assert_allclose(r.energies[-1], E, rtol=1e-3, atol=1e-6 * E.sum())


def test_heat_fourier_mode_decays_by_analytic_factor(ctx):
    H, W, kx, ky, alpha, n = 32, 64, 3, 2, 0.21, 150
    yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    u0 = np.cos(2 * np.pi * (kx * xx / W + ky * yy / H))
    with Simulation(ctx, "heat", u0, alpha=alpha, arity=2) as sim:
        sim.advance(n)
        u = sim.read()
    f = R.heat_mode_factor(kx, ky, H, W, alpha)
    assert 0 < f < 1
    np.testing.assert_allclose(u, f ** n * u0, atol=2e-6)
    # the measured amplitude decays by the factor per step
    amp = (u * u0).sum() / (u0 * u0).sum()
    assert amp == pytest.approx(f ** n, rel=1e-4)


def test_heat_on_any_grid_fourier_mode_and_mass(ctx):
    """heat on 100 x 60 (issue 11; W % 4 == 0, ALIGNED) and 50 x 70 (W % 4 == 2): a Fourier mode decays by the
    analytic factor per step (SPEC 3.3), mass is conserved, the observables use p = 2 with a coarse grid."""
    H, W, kx, ky, alpha, n = 100, 60, 3, 2, 0.21, 40
    yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    u0 = np.cos(2 * np.pi * (kx * xx / W + ky * yy / H))
    f = R.heat_mode_factor(kx, ky, H, W, alpha)
    with Simulation(ctx, "heat", u0, alpha=alpha) as sim:
        for k in range(1, 4):
            sim.advance(10)
            u = sim.read()
            np.testing.assert_allclose(u, f ** (10 * k) * u0, atol=2e-6)
    assert (u * u0).sum() / (u0 * u0).sum() == pytest.approx(f ** 30, rel=1e-4)
    for shape in [(2, 100, 60), (2, 50, 70)]:
        x0 = init.random(shape, seed=5) + 2.0
        r = rollout("heat", x0, n, every=10, alpha=0.2, ctx=ctx, progress=False)
        x = x0.astype(np.float64)
        for _ in range(n):
            x = R.heat_step(x, 0.2)
        np.testing.assert_allclose(r.final, x, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r.mass, np.broadcast_to(x0.astype(np.float64).sum((-2, -1)), r.mass.shape),
                                   rtol=1e-5)
        assert r.arity == 2 and r.energies.shape[-1] == R.levels(shape, 2) + 1
        E = R.energies(x, 2)
        np.testing.assert_allclose(r.energies[-1], E, rtol=1e-3, atol=1e-6 * E.sum())


@pytest.mark.parametrize("shape", [(96, 96), (50, 70)])
def test_grayscott_on_any_grid_matches_reference(ctx, shape):
    uv0 = init.grayscott((2,) + shape, seed=3)
    r = rollout("grayscott", uv0, 200, every=50, preset="mitosis", ctx=ctx, progress=False)
    x = uv0.astype(np.float64)
    p = R.GRAYSCOTT_PRESETS["mitosis"]
    for _ in range(200):
        x = R.grayscott_step(x, F=p["F"], k=p["k"])
    assert np.abs(r.final - x).max() < 1e-4
    assert r.arity == 2
    E = R.energies(x[:, 1], 2)
    np.testing.assert_allclose(r.energies[-1], E, rtol=1e-3, atol=1e-6 * E.sum())
    np.testing.assert_allclose(r.mass[-1], x[:, 1].sum((-2, -1)), rtol=1e-4)


def test_grid_without_a_common_factor_has_only_the_coarse_band(ctx):
    """101 x 100 (no p divides both: L = 0, SPEC 1): the energies are [E_c] = [sum(x**2)], mass conserved."""
    x0 = init.random((2, 101, 100), seed=9) + 1.0
    r = rollout("heat", x0, 20, every=10, alpha=0.2, ctx=ctx, progress=False)
    x = x0.astype(np.float64)
    for _ in range(20):
        x = R.heat_step(x, 0.2)
    np.testing.assert_allclose(r.final, x, rtol=1e-5, atol=1e-5)
    assert r.energies.shape[-1] == 1
    np.testing.assert_allclose(r.energies[-1][..., 0], (x * x).sum((-2, -1)), rtol=1e-5)
    np.testing.assert_allclose(r.mass[-1], x0.astype(np.float64).sum((-2, -1)), rtol=1e-5)
    sysm = make_system(ctx, "heat", (100, 60), arity=3)
    assert sysm.levels == 0
    sysm.close()


def test_setup_grid_systems_on_any_size():
    from vkbands import Setup
    s = Setup("heat", size=100)
    assert (s.arity, s.levels, s.spatial, s.shape) == (2, 2, (100, 100), (1, 100, 100))
    s = Setup("grayscott", shape="96x160", batch=2)
    assert (s.arity, s.levels, s.spatial, s.shape) == (2, 5, (96, 160), (2, 2, 96, 160))
    assert s.config()["shape"] == "96x160" and s.x0().shape == (2, 2, 96, 160)
    assert Setup("heat", shape=(54, 81)).arity == 3 and Setup("heat", shape=(54, 81)).levels == 3
    assert Setup("heat", size=100, arity=5).levels == 2
    assert Setup("heat", depth=3).spatial == (27, 27)                  # unchanged: p**L
    with pytest.raises(ValueError, match=r"size=96: size 96 is not a power of arity 3"):
        Setup("tree", size=96)                                          # trees still need p**L leaves


@pytest.mark.parametrize("side", [27, 32])
def test_grayscott_500_steps_matches_reference(ctx, side):
    uv0 = init.grayscott((2, side, side), seed=side)
    r = rollout("grayscott", uv0, 500, every=50, snapshot_every=250, preset="mitosis", ctx=ctx, progress=False)
    x = uv0.astype(np.float64)
    p = R.GRAYSCOTT_PRESETS["mitosis"]
    for _ in range(500):
        x = R.grayscott_step(x, F=p["F"], k=p["k"])
    assert np.abs(r.final - x).max() < 1e-4
    assert r.final.shape == uv0.shape and r.snapshots.shape == (3,) + uv0.shape
    # observables are of v
    E = R.energies(x[:, 1], r.arity)
    np.testing.assert_allclose(r.energies[-1], E, rtol=1e-3, atol=1e-6 * E.sum())
    np.testing.assert_allclose(r.mass[-1], x[:, 1].sum((-2, -1)), rtol=1e-4)


def test_grid_observables_one_read_with_nonfinite_values(ctx):
    """Heat / Gray-Scott observations (BandPlan.record_observables): energies and mass of the finite
    members, min / max over finite values, and the NaN/Inf flag (Gray-Scott: of u or v; the rest of v)."""
    uv = init.grayscott((3, 27, 27), seed=4)
    uv[0, 0, 3, 5] = np.nan          # u of member 0: flagged, v's statistics unaffected
    uv[1, 1, 26, 26] = np.inf        # v of member 1
    hx = init.smooth((2, 32, 32), arity=2, seed=5) + 2.0
    hx[0, 7, 9] = -np.inf
    for system, x0, v in (("grayscott", uv, uv[:, 1]), ("heat", hx, hx)):
        with Simulation(ctx, system, x0) as sim:
            o = sim.observe()
        bad = ~np.isfinite(x0.reshape(x0.shape[0], -1)).all(axis=1)
        np.testing.assert_array_equal(o["nonfinite"], bad)
        finite = np.where(np.isfinite(v), v, np.nan).astype(np.float64)
        # exact on any device: min / max round nothing
        np.testing.assert_array_equal(o["min"], np.nanmin(finite, axis=(-2, -1)))
        np.testing.assert_array_equal(o["max"], np.nanmax(finite, axis=(-2, -1)))
        ref = R.observables(v[~bad], 3 if system == "grayscott" else 2)
        np.testing.assert_allclose(o["mass"][~bad], ref["mass"], rtol=1e-5)
        np.testing.assert_allclose(o["energies"][~bad], ref["energies"], rtol=1e-5,
                                   atol=1e-7 * ref["energies"].sum(-1).max())


def test_grayscott_preset_forms_a_pattern(ctx):
    uv0 = init.grayscott((128, 128), seed=0)
    r = rollout("grayscott", uv0, 5000, every=500, snapshot_every=2500, preset="spots", ctx=ctx, progress=False)
    v = r.snapshots[:, 1]
    var = v.reshape(len(v), -1).var(axis=1)
    assert var[-1] > 2 * var[0]
    assert np.all(np.isfinite(r.final))
    # the pattern spread beyond the initial patch
    assert (r.final[1] > 0.1).mean() > 2 * (uv0[1] > 0.1).mean()


def test_system_parameter_errors(ctx):
    with pytest.raises(TypeError, match="unknown parameter"):
        make_system(ctx, "heat", (27, 27), F=0.1)
    with pytest.raises(ValueError, match="alpha"):
        make_system(ctx, "heat", (27, 27), alpha=0.3)
    with pytest.raises(ValueError, match="phi"):
        make_system(ctx, "coupled", (27,), phi="cube")
    with pytest.raises(ValueError, match="preset"):
        make_system(ctx, "grayscott", (2, 27, 27), preset="nope")
    with pytest.raises(ValueError, match="rates"):
        make_system(ctx, "tree", (27,), rates=[0.5, 0.5])
    with pytest.raises(ValueError, match="power"):
        make_system(ctx, "tree", (28,))
    with pytest.raises(ValueError, match="u then v"):
        make_system(ctx, "grayscott", (27, 27))
    with pytest.raises(ValueError, match="system"):
        make_system(ctx, "wave", (27,))


def test_set_params_applies_to_later_steps(ctx):
    x0 = init.random((81,), seed=0)
    with Simulation(ctx, "tree", x0, rates=[0.5] * 4) as sim:
        sim.advance(2)
        sim.set_params(rates=[1.0] * 4)
        sim.advance(3)
        x = x0.astype(np.float64)
        for lam in (0.5, 0.5, 1, 1, 1):
            x = R.tree_step(x, [lam] * 4, 3)
        np.testing.assert_allclose(sim.read(), x, atol=1e-6)
        assert sim.params["rates"] == [1.0] * 4
    uv0 = init.grayscott((16, 16), seed=0)
    with Simulation(ctx, "grayscott", uv0, preset="spots") as sim:
        assert sim.params["F"] == R.GRAYSCOTT_PRESETS["spots"]["F"]
        sim.set_params(F=0.05)
        assert sim.params["F"] == 0.05 and sim.params["k"] == R.GRAYSCOTT_PRESETS["spots"]["k"]
        sim.set_params(preset="coral")
        assert sim.params["F"] == R.GRAYSCOTT_PRESETS["coral"]["F"]


def test_long_runs_stay_exact(ctx):
    """Thousands of steps in one recording: split into several dispatches on every device (a driver's
    loop-iteration cap, GPU watchdogs); the band state carries over exactly."""
    x0 = init.random((2, 729), seed=9)
    with make_system(ctx, "tree", x0.shape, dims=1) as sysm:
        assert len(sysm._dispatches(1000, 7, 250, True, True)) > 1
    r = rollout("tree", x0, 1000, every=7, snapshot_every=250, dims=1, tau=0.05, ctx=ctx, progress=False)
    _closed_form_check(r, x0, R.tree_rates(3, 6, tau=0.05), 1)
    assert list(r.snapshot_steps) == [0, 250, 500, 750, 1000]
    x = x0.astype(np.float64)
    rates = R.tree_rates(3, 6, tau=0.05)
    for _ in range(250):
        x = R.tree_step(x, rates, 3, dims=1)
    np.testing.assert_allclose(r.snapshots[1], x, atol=1e-5)
    y0 = init.random((2, 81), seed=2)
    C = R.coupling_matrix(4, seed=1)
    rc = rollout("coupled", y0, 700, every=100, dims=1, eps=0.02, phi="tanh", C=C, tau=0.01, ctx=ctx, progress=False)
    y = y0.astype(np.float64)
    for _ in range(700):
        y = R.coupled_step(y, R.tree_rates(3, 4, tau=0.01), C, 0.02, "tanh", 3, dims=1)
    np.testing.assert_allclose(rc.final, y, atol=1e-4 * np.abs(y).max())


def _plan_covers(plan, B, n, every, snap_every, observe_first, snap_first):
    """A dispatch plan runs every step of every field once, in order, and its rows follow the steps."""
    slices = {}
    for b0, nb, k0, steps, row0, srow0, ofirst, sfirst in plan:
        slices.setdefault((b0, nb), []).append((k0, steps, row0, srow0, ofirst, sfirst))
    assert sorted(b0 for b0, _ in slices) == list(range(0, B, plan[0][1]))
    assert sum(nb for _, nb in slices) == B
    for ds in slices.values():
        k = 0
        for i, (k0, steps, row0, srow0, ofirst, sfirst) in enumerate(ds):
            assert k0 == k and (steps > 0 or n == 0 or (i == 0 and (observe_first or snap_first)))
            assert (ofirst, sfirst) == ((observe_first, snap_first) if i == 0 else (False, False))
            if i:
                assert row0 == int(observe_first) + (k0 // every if every else 0)
                assert srow0 == int(snap_first) + (k0 // snap_every if snap_every else 0)
            k += steps
        assert k == n
    return slices


def test_plan_splits_by_work_on_every_device(ctx, monkeypatch):
    """Long runs and big batches are split into bounded dispatches on every device (GPU watchdogs kill
    a dispatch that runs for seconds), not only under a driver's loop-iteration cap."""
    monkeypatch.setattr(ctx, "loop_iteration_cap", None)     # a device without a loop cap (a GPU)
    monkeypatch.setattr(S, "_WORK_BUDGET", 1 << 26)          # small enough that 4096 x 729 is sliced
    with make_system(ctx, "tree", (4096, 729), dims=1) as big:
        plan = big._dispatches(10000, 7, 2500, True, True)
        slices = _plan_covers(plan, 4096, 10000, 7, 2500, True, True)
        assert len(slices) > 1 and len(plan) > 2 * len(slices)
        per_inv, _ = big._budgets()
        assert per_inv == S._SERIAL_BUDGET
        top, mean = big._loop_costs(), big._loop_costs(mean=True)
        tpf = big._spec["TPF"]
        for b0, nb, k0, steps, row0, srow0, ofirst, sfirst in plan:
            if steps > 1:        # every dispatch within both budgets (a single step always runs)
                one = big._plan(steps, 7, 2500, ofirst, sfirst, [(top, 10 ** 12)])
                assert len(one) == 1
                assert big._plan(steps, 7, 2500, ofirst, sfirst, [(mean, S._WORK_BUDGET // (nb * tpf))]) == one
                assert big._plan(steps, 7, 2500, ofirst, sfirst, [(top, per_inv)]) == one
    # a small batch: no slices, and one dispatch for a short run ...
    with make_system(ctx, "tree", (2, 729), dims=1) as small:
        assert len(small._dispatches(50, 5, 0, False, False)) == 1
        # ... but a long one is split by the per-invocation budget alone
        plan = small._dispatches(100000, 0, 0, False, False)
        _plan_covers(plan, 2, 100000, 0, 0, False, False)
        assert len(plan) > 10
    # the driver's loop cap tightens the per-invocation budget where there is one
    monkeypatch.setattr(ctx, "loop_iteration_cap", 65535)
    with make_system(ctx, "tree", (2, 729), dims=1) as capped:
        assert capped._budgets()[0] == int(65535 * S._LOOP_CAP_USE)
        assert len(capped._dispatches(100000, 0, 0, False, False)) > len(plan)


@pytest.mark.parametrize("system", ["tree", "coupled"])
def test_split_recordings_are_bit_exact(ctx, monkeypatch, system):
    """Dispatches of a few steps and batch slices of one workgroup (tiny budgets, no loop cap) give the
    same bits as the device's default plan: the band state carries over exactly, in the same pipeline."""
    x0 = init.random((37, 243), seed=4)
    params = dict(dims=1, tau=0.05) if system == "tree" else dict(dims=1, eps=0.03, phi="tanh", tau=0.05)
    run = lambda: rollout(system, x0, 120, every=7, snapshot_every=40, ctx=ctx, progress=False, **params)
    ref = run()
    with make_system(ctx, system, x0.shape, **params) as sysm:
        default_plan = sysm._dispatches(120, 7, 40, True, True)
        fpw, tpf = sysm._fpw, sysm._spec["TPF"]
    monkeypatch.setattr(ctx, "loop_iteration_cap", None)
    monkeypatch.setattr(S, "_SLICE_INVOCATIONS", 1)
    monkeypatch.setattr(S, "_WORK_BUDGET", 3000 * fpw * tpf)     # a few steps per dispatch, slices of fpw fields
    with make_system(ctx, system, x0.shape, **params) as sysm:
        plan = sysm._dispatches(120, 7, 40, True, True)
        slices = _plan_covers(plan, 37, 120, 7, 40, True, True)
        assert len(plan) > 2 * len(default_plan) and len(slices) == -(-37 // fpw) > 1
    got = run()
    np.testing.assert_array_equal(got.final, ref.final)
    np.testing.assert_array_equal(got.snapshots, ref.snapshots)
    np.testing.assert_array_equal(got.energies, ref.energies)
    np.testing.assert_array_equal(got.min, ref.min)
    np.testing.assert_array_equal(got.max, ref.max)


def test_replayed_recording_follows_reset(ctx):
    """The viewer's pattern: one kept recording replayed; reset() puts the state back for it."""
    x0 = init.random((3, 243), seed=1)
    rates = R.tree_rates(3, 5)
    with Simulation(ctx, "tree", x0, dims=1) as sim:
        rec = ctx.recorder()
        sim.record_steps(rec, 4)
        rec.submit()
        rec.submit()
        x = x0.astype(np.float64)
        for _ in range(8):
            x = R.tree_step(x, rates, 3, dims=1)
        np.testing.assert_allclose(sim.read(), x, atol=1e-6)
        sim.reset()
        rec.submit()
        y = x0.astype(np.float64)
        for _ in range(4):
            y = R.tree_step(y, rates, 3, dims=1)
        np.testing.assert_allclose(sim.read(), y, atol=1e-6)
        rec.close()


@pytest.mark.parametrize("reduce", [None, 0, 1, 2])
@pytest.mark.parametrize("shape,dims", [((5, 729), 1), ((5, 243), 1), ((2, 81, 81), 2), ((3, 27, 27), 2),
                                        ((1, 243, 243), 2)])
def test_tree_every_kernel_layout_matches_reference(ctx, shape, dims, reduce):
    """step_tree.comp's three reductions (one invocation per field / subgroup shuffles / shared memory)
    give the reference result; the automatic choice (None) depends on the field size and the subgroup
    widths the device can require, and each is forced where it can run."""
    x0 = init.random(shape, seed=len(shape))
    p = 3
    L = R.levels(shape, p, dims)
    rates = R.tree_rates(p, L, tau=0.3)
    try:
        sysm = make_system(ctx, "tree", shape, dims=dims, tau=0.3, reduce=reduce)
    except ValueError as e:
        assert "cannot run" in str(e)
        pytest.skip(f"layout {reduce} cannot run this field here: {e}")
    assert sysm._mode in (0, 1, 2) and (reduce is None or sysm._mode == reduce)
    assert (sysm._sg is not None) == (sysm._mode == 1)       # shuffles only with a required width
    sysm.close()
    r = rollout("tree", x0, 30, every=3, snapshot_every=15, dims=dims, tau=0.3, reduce=reduce, ctx=ctx,
                progress=False)
    x = x0.astype(np.float64)
    for _ in range(30):
        x = R.tree_step(x, rates, p, dims=dims)
    np.testing.assert_allclose(r.final, x, atol=1e-6 * np.abs(x0).max())
    o = R.observables(r.snapshots, p, dims=dims)
    np.testing.assert_allclose(r.energies[::5], o["energies"], rtol=1e-4, atol=1e-9 * o["energies"].sum(-1).max())
    np.testing.assert_allclose(r.min[::5], o["min"], atol=1e-6)
    np.testing.assert_allclose(r.max[::5], o["max"], atol=1e-6)


def test_coupled_long_run_729(ctx):
    x0 = init.random((2, 729), seed=3)
    C = R.coupling_matrix(6, seed=4)
    r = rollout("coupled", x0, 300, every=1, dims=1, eps=0.02, phi="sign", C=C, tau=0.02, ctx=ctx, progress=False)
    x = x0.astype(np.float64)
    rates = R.tree_rates(3, 6, tau=0.02)
    for _ in range(300):
        x = R.coupled_step(x, rates, C, 0.02, "sign", 3, dims=1)
    np.testing.assert_allclose(r.final, x, atol=1e-4 * np.abs(x).max())
    E = R.energies(x, 3, dims=1)
    np.testing.assert_allclose(r.energies[-1], E, rtol=1e-3, atol=1e-6 * E.sum())


@pytest.mark.parametrize("reduce", [None, 0, 1, 2])
@pytest.mark.parametrize("shape,dims", [((2, 729), 1), ((3, 243), 1), ((1, 81, 81), 2)])
def test_coupled_every_kernel_layout_matches_reference(ctx, shape, dims, reduce):
    x0 = init.random(shape, seed=7)
    L = R.levels(shape, 3, dims)
    C = R.coupling_matrix(L, seed=5)
    rates = R.tree_rates(3, L, tau=0.2)
    try:
        make_system(ctx, "coupled", shape, dims=dims, reduce=reduce).close()
    except ValueError as e:
        assert "cannot run" in str(e)
        pytest.skip(f"layout {reduce} cannot run this field here: {e}")
    r = rollout("coupled", x0, 20, every=4, snapshot_every=10, dims=dims, eps=0.05, phi="tanh", C=C, tau=0.2,
                reduce=reduce, ctx=ctx, progress=False)
    x = x0.astype(np.float64)
    snaps = [x]
    for t in range(1, 21):
        x = R.coupled_step(x, rates, C, 0.05, "tanh", 3, dims=dims)
        if t % 10 == 0:
            snaps.append(x)
    scale = np.abs(x).max()
    np.testing.assert_allclose(r.final, x, atol=2e-5 * scale)
    np.testing.assert_allclose(r.snapshots, np.stack(snaps), atol=2e-5 * scale)
    o = R.observables(r.snapshots, 3, dims=dims)
    # observations at steps 0, 4, ..., 20: rows 0 and 5 are the snapshots at steps 0 and 20
    np.testing.assert_allclose(r.energies[[0, 5]], o["energies"][[0, 2]], rtol=1e-3,
                               atol=1e-6 * o["energies"].sum(-1).max())


def test_no_subgroup_layout_without_a_required_width(ctx, monkeypatch):
    """The shuffle layout (REDUCE 1) assumes a field's lanes are one subgroup: never without a pipeline
    that requires the width (drivers choose a width per pipeline), whatever a probe saw elsewhere."""
    shape = (4, 243)                 # REDUCE 1 where it may run (3 invocations of 81 leaves)
    monkeypatch.setattr(ctx, "subgroup_size_control", False)
    with make_system(ctx, "tree", shape, dims=1) as sysm:
        assert sysm._mode != 1 and sysm._sg is None and sysm.kernel.subgroup_size is None
    with pytest.raises(ValueError, match="cannot run"):
        make_system(ctx, "coupled", shape, dims=1, reduce=1)
    monkeypatch.undo()
    if ctx.subgroup_size_control and ctx.subgroup_shuffle:
        with make_system(ctx, "tree", shape, dims=1) as sysm:
            assert sysm._mode == 1 and sysm.kernel.subgroup_size == sysm._sg
            assert ctx.min_subgroup_size <= sysm._sg <= ctx.max_subgroup_size
            assert sysm._spec["LOCAL_X"] % sysm._sg == 0 and sysm._spec["SG"] == sysm._sg
    w = S.subgroup_size(ctx)          # the default pipeline's width, for callers that want it
    assert w == 1 or ctx.min_subgroup_size <= w <= ctx.max_subgroup_size
    with pytest.raises(ValueError, match="reduce"):
        make_system(ctx, "tree", shape, dims=1, reduce=3)


# Run in a fresh process: lavapipe reads LP_NATIVE_VECTOR_WIDTH when the driver loads (256 bits ->
# 8-wide subgroups, 128 -> 4-wide). Every layout each field can run, forced, against the NumPy reference.
_LAYOUT_SCRIPT = r"""
import json
import numpy as np
from vkbands import init, reference as R
from vkbands.engine import default_context, validation_error_count
from vkbands.rollout import rollout
from vkbands.systems import make_system, subgroup_size

ctx = default_context()
out = dict(driver=ctx.driver_name, sg=ctx.subgroup_size, probe=subgroup_size(ctx),
           ssc=bool(ctx.subgroup_size_control), lo=ctx.min_subgroup_size, hi=ctx.max_subgroup_size, cases=[])
cases = [("tree", (3, 243), 1), ("tree", (5, 81), 1), ("tree", (3, 64), 1), ("tree", (2, 729), 1),
         ("tree", (2, 16, 16), 2), ("tree", (2, 27, 27), 2), ("coupled", (3, 243), 1), ("coupled", (3, 64), 1),
         ("coupled", (2, 16, 16), 2), ("coupled", (2, 9, 9), 2)]
for system, shape, dims in cases:
    p = 2 if shape[-1] in (16, 64) else 3
    L = R.levels(shape, p, dims)
    params = dict(arity=p, tau=0.3)
    if system == "coupled":
        C = R.coupling_matrix(L, seed=3)
        params.update(eps=0.05, phi="tanh", C=C)
    x0 = init.random(shape, seed=sum(shape))
    x = x0.astype(np.float64)
    snaps = [x]
    for t in range(1, 13):
        x = (R.tree_step(x, R.tree_rates(p, L, tau=0.3), p, dims=dims) if system == "tree" else
             R.coupled_step(x, R.tree_rates(p, L, tau=0.3), C, 0.05, "tanh", p, dims=dims))
        if t % 6 == 0:
            snaps.append(x)
    for reduce in (None, 0, 1, 2):
        row = dict(system=system, shape=shape, reduce=reduce)
        try:
            s = make_system(ctx, system, shape, dims=dims, reduce=reduce, **params)
        except ValueError as e:
            row.update(mode=None, error=str(e))
            out["cases"].append(row)
            continue
        row.update(mode=s._mode, width=s._sg, kernel_width=s.kernel.subgroup_size, local=s._spec["LOCAL_X"],
                   tpf=s._spec["TPF"])
        s.close()
        r = rollout(system, x0, 12, every=6, snapshot_every=6, dims=dims, reduce=reduce, ctx=ctx, progress=False,
                    **params)
        scale = float(np.abs(x).max())
        o = R.observables(np.stack(snaps), p, dims=dims)
        row.update(err_final=float(np.abs(r.final - x).max() / scale),
                   err_snap=float(np.abs(r.snapshots - np.stack(snaps)).max() / scale),
                   err_energy=float((np.abs(r.energies - o["energies"]) / o["energies"].sum(-1, keepdims=True)).max()),
                   err_minmax=float(max(np.abs(r.min - o["min"]).max(), np.abs(r.max - o["max"]).max()) / scale))
        # observation blocks (minmax off) == step by step (minmax on), bitwise
        runs = [rollout(system, x0, 21, every=1, minmax=mm, dims=dims, reduce=reduce, ctx=ctx, progress=False,
                        **params) for mm in (False, True)]
        row.update(blocks_equal=bool(np.array_equal(runs[0].energies, runs[1].energies)
                                     and np.array_equal(runs[0].final, runs[1].final)))
        out["cases"].append(row)
out["validation_errors"] = validation_error_count()
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("width,sg", [(256, 8), (128, 4)])
def test_every_layout_at_lavapipe_subgroup_widths(ctx, width, sg):
    """Lavapipe at 8- and 4-wide subgroups (LP_NATIVE_VECTOR_WIDTH, read when the driver loads: a fresh
    process): REDUCE 0, 1 and 2 forced on tree and coupled fields (1-D, 2-D), each against the reference;
    REDUCE 1 runs only in a pipeline that requires the measured width."""
    if ctx.loop_iteration_cap is None or "llvmpipe" not in ctx.driver_name.lower():
        pytest.skip("LP_NATIVE_VECTOR_WIDTH is a lavapipe setting")
    env = dict(os.environ, LP_NATIVE_VECTOR_WIDTH=str(width))
    proc = subprocess.run([sys.executable, "-c", _LAYOUT_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["sg"] == sg and out["probe"] == sg and out["validation_errors"] == 0, out
    ran = {}
    for c in out["cases"]:
        key = (c["system"], tuple(c["shape"]))
        if c["mode"] is None:
            assert c["reduce"] is not None and "cannot run" in c["error"], c
            continue
        assert c["reduce"] is None or c["mode"] == c["reduce"], c
        if c["mode"] == 1:       # a required width, one of the device's, with full subgroups
            assert out["ssc"] and c["width"] == c["kernel_width"] and out["lo"] <= c["width"] <= out["hi"], c
            assert c["local"] % c["width"] == 0, c
        else:
            assert c["width"] is None and c["kernel_width"] is None, c
        ran.setdefault(key, set()).add(c["mode"])
        tol = 1e-6 if c["system"] == "tree" else 3e-5
        assert c["err_final"] < tol and c["err_snap"] < tol, c
        assert c["err_energy"] < 1e-5 and c["err_minmax"] < tol, c
        assert c["blocks_equal"], c
    # every layout ran; the shuffle layout on 1-D and 2-D fields, forced and chosen
    assert set().union(*ran.values()) == {0, 1, 2}, ran
    for key in [("tree", (3, 243)), ("tree", (5, 81)), ("tree", (2, 729)), ("tree", (2, 16, 16)), ("coupled", (3, 243)),
                ("coupled", (2, 16, 16))]:
        assert ran[key] == {0, 1, 2}, (key, ran[key])
    auto = {(c["system"], tuple(c["shape"])): c for c in out["cases"] if c["reduce"] is None}
    assert all(auto[k]["mode"] == 1 for k in [("tree", (3, 243)), ("tree", (2, 16, 16)), ("coupled", (3, 64))])
    # the width sets the layout: 64 leaves (p = 2) take one whole subgroup of 8 or of 4 lanes
    assert auto[("tree", (3, 64))]["tpf"] == auto[("coupled", (3, 64))]["tpf"] == sg
    # p = 3, 2-D: 9 children per node never fit 4 or 8 lanes; no shuffle layout there
    assert ran[("tree", (2, 27, 27))] == ran[("coupled", (2, 9, 9))] == {0, 2}


def test_a_2d_array_that_cannot_be_a_2d_tree_field_is_a_batch_of_1d_fields(ctx):
    """Issue 11: (B, N) with B != N needs no dims=1 for tree/coupled; a square array is one 2-D field
    by default, and the error for the other reading names dims=."""
    x = init.random((5, 81), seed=3)
    for system in ("tree", "coupled"):
        auto = rollout(system, x, 12, ctx=ctx)
        explicit = rollout(system, x, 12, dims=1, ctx=ctx)
        assert auto.dims == 1 and auto.energies.shape == (13, 5, 5)
        np.testing.assert_array_equal(auto.final, explicit.final)
    with pytest.raises(ValueError, match="pass dims=1"):
        rollout("tree", np.zeros((100, 100), np.float32), 2, ctx=ctx)
    assert rollout("tree", init.random((27, 27), seed=1), 2, ctx=ctx).dims == 2
