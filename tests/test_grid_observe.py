"""Observations of the grid systems (issue 12, cheap observation): Gray-Scott observes v only and takes
u's NaN/Inf flag from its step kernel; what a rollout reports is unchanged.

The reference results here are computed, not hard-coded: the observables of v from
``BandPlan.record_observables`` over every field of the state (u and v: what an observation ran before),
and the first non-finite step from a NumPy run of ``reference.grayscott_step``.
"""
import numpy as np
import pytest

from vkbands import init
from vkbands import reference as R
from vkbands.bands import BandPlan
from vkbands.rollout import NonFiniteError, Simulation, rollout


def _all_fields_observed(ctx, sim):
    """Observables of every field of the state (u and v per member) by one BandPlan.record_observables
    over all 2B fields: (energies (2B, L+1), stats (2B, 4)) as float32."""
    sysobj = sim.system
    fields = sysobj.batch * 2
    with BandPlan(ctx, sysobj.spatial, sysobj.arity, batch=fields) as plan:
        e = ctx.zeros((1, fields, sysobj.levels + 1))
        s = ctx.zeros((1, fields, 4))
        with ctx.recorder() as rec:
            plan.record_observables(rec, sim.state.reshape((fields,) + sysobj.spatial), e, s)
        out = e.numpy()[0], s.numpy()[0]
        e.close(), s.close()
    return out


@pytest.mark.parametrize("shape", [(27, 27), (32, 32), (24, 36), (15, 14)])
def test_v_observables_are_bit_identical_to_observing_every_field(ctx, shape):
    """Energies, mass, min, max of v are those of the pyramid over every field (bit for bit), nonfinite
    is u's flag or v's: p = 3, p = 2 (vec2 loads), a coarse grid (rowsum), L = 0 (the flat plan)."""
    x0 = init.grayscott((3,) + shape, seed=4)
    with Simulation(ctx, "grayscott", x0, preset="spots", dt=[1.0, 0.9, 1.1]) as sim:
        for n in (0, 3, 5):
            sim.advance(n)
            got = sim.observe()
            E, S = _all_fields_observed(ctx, sim)
            np.testing.assert_array_equal(got["energies"], E[1::2].astype(np.float64))
            np.testing.assert_array_equal(got["mass"], S[1::2, 0].astype(np.float64))
            np.testing.assert_array_equal(got["min"], S[1::2, 1].astype(np.float64))
            np.testing.assert_array_equal(got["max"], S[1::2, 2].astype(np.float64))
            np.testing.assert_array_equal(got["nonfinite"], (S[0::2, 3] > 0) | (S[1::2, 3] > 0))
        fused = sim.system._fuse      # observed steps form levels 1-2 in the step kernel (below)
        r = rollout("grayscott", x0, 8, every=2, ctx=ctx, progress=False, preset="spots", dt=[1.0, 0.9, 1.1])
        if not fused:
            np.testing.assert_array_equal(r.energies[-1], got["energies"])
            np.testing.assert_array_equal(r.mass[-1], got["mass"])
        else:
            np.testing.assert_allclose(r.energies[-1], got["energies"], rtol=2e-6, atol=1e-7 * got["energies"].sum())


def _u_blowup_x0(shape=(27, 27)):
    """Member 0: v = 0 everywhere (it stays 0 while u is finite) and u unstable under dt = 5, so u
    overflows while v is still finite; member 1: the usual patch (stable at dt = 1)."""
    x0 = init.grayscott((2,) + shape, seed=3)
    x0[0, 1] = 0.0
    x0[0, 0] = 1.0 + 0.1 * np.random.default_rng(5).standard_normal(shape)
    return x0


def _first_nonfinite_numpy(x0, dts, steps):
    """(step, member, u_only) of the first NaN/Inf of a NumPy run of reference.grayscott_step, the state
    rounded to float32 after every step; u_only: v of that member still finite at that step."""
    x = x0.astype(np.float32)
    for t in range(1, steps + 1):
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.stack([R.grayscott_step(x[b], dt=dts[b]) for b in range(len(dts))]).astype(np.float32)
        bad = ~np.isfinite(x).reshape(len(dts), 2, -1).all(axis=2)
        if bad.any():
            member = int(np.argmax(bad.any(axis=1)))
            return t, member, not bad[member, 1]
    return None


@pytest.fixture(scope="module")
def blowup():
    x0 = _u_blowup_x0()
    found = _first_nonfinite_numpy(x0, [5.0, 1.0], 400)
    assert found is not None
    step, member, u_only = found
    assert member == 0 and u_only and step > 10      # the test forces a step where only u is non-finite
    return x0, step


@pytest.mark.parametrize("every,chunk", [(1, None), (None, None), (7, None), (3, 5), (None, 16)])
def test_u_only_blowup_is_found_at_its_exact_step(ctx, blowup, every, chunk):
    """u overflows at step g while v is still finite: NonFiniteError names step g and member 0, as the
    NumPy run (the bisection of the chunk re-runs from the saved state: the flag restarts with it)."""
    x0, g = blowup
    with pytest.raises(NonFiniteError, match=f"at step {g}, batch member 0") as e:
        rollout("grayscott", x0, 400, every=every, chunk=chunk, dt=[5.0, 1.0], ctx=ctx, progress=False)
    r = e.value.rollout
    assert e.value.last_finite_step == g - 1 and r.n_steps == g - 1
    assert not r.nonfinite.any() and np.all(np.isfinite(r.final))
    if every:
        assert list(r.steps) == list(range(0, g, every))


def test_u_flag_persists_and_restarts_with_the_state(ctx, blowup):
    """Simulation.observe: the flag of a u-only NaN/Inf at step g (v's energies still finite), kept by
    later steps and replayed recordings, cleared by reset(), set again by reset(x0) with u = Inf."""
    x0, g = blowup
    with Simulation(ctx, "grayscott", x0, dt=[5.0, 1.0]) as sim:
        sim.advance(g - 1)
        assert not sim.observe()["nonfinite"].any()
        sim.advance(1)
        o = sim.observe()
        assert list(o["nonfinite"]) == [True, False]
        assert np.all(np.isfinite(o["energies"])) and np.all(np.isfinite(sim.read()[0, 1]))   # v is finite
        assert not np.all(np.isfinite(sim.read()[0, 0]))
        sim.advance(3)
        assert list(sim.observe()["nonfinite"]) == [True, False]
        # a recording replayed: the flag survives every replay, and reset() restarts it from x0
        sim.reset()
        assert not sim.observe()["nonfinite"].any()
        rec = ctx.recorder()
        sim.record_steps(rec, 1)
        for _ in range(g - 1):
            rec.submit()
        assert not sim.observe()["nonfinite"].any()
        rec.submit()
        assert list(sim.observe()["nonfinite"]) == [True, False]
        rec.submit()
        assert list(sim.observe()["nonfinite"]) == [True, False]
        sim.reset()
        for _ in range(g - 1):
            rec.submit()
        assert not sim.observe()["nonfinite"].any()
        rec.close()
        # an x0 with u = Inf in one cell of member 1 (v finite everywhere)
        bad = x0.copy()
        bad[1, 0, 4, 9] = np.inf
        sim.reset(bad)
        o = sim.observe()
        assert list(o["nonfinite"]) == [False, True] and np.all(np.isfinite(o["energies"]))
        sim.reset(x0)
        assert not sim.observe()["nonfinite"].any()
    with pytest.raises(NonFiniteError, match="at step 0, batch member 1"):
        rollout("grayscott", bad, 10, every=None, dt=[5.0, 1.0], ctx=ctx, progress=False)
    with pytest.raises(NonFiniteError, match="at step 0, batch member 1"):
        rollout("grayscott", bad, 10, every=2, dt=[5.0, 1.0], ctx=ctx, progress=False)


def test_written_state_with_invalidate(ctx, blowup):
    """The documented contract for a state written from outside: invalidate() before recording."""
    x0, g = blowup
    with Simulation(ctx, "grayscott", x0, dt=[5.0, 1.0]) as sim:
        sim.advance(g + 2)
        assert sim.observe()["nonfinite"][0]
        sim.state.upload(x0)
        sim.system.invalidate()
        assert not sim.observe()["nonfinite"].any()
        bad = x0.copy()
        bad[0, 0, 0, 0] = np.nan
        sim.state.upload(bad)
        sim.system.invalidate()
        assert list(sim.observe()["nonfinite"]) == [True, False]


# ----------------------------------------------------------------------------- step 2: levels 1-2 in the step
# Observed steps of p = 2 grids with W % 4 == 0, H % 8 == 0, L >= 3 run the step kernel's OBS variant, which
# writes the level-2 means and the partials of levels 0-1; the other band passes run on the 16x smaller grid.
# The energy sums then add in another order: tolerance rtol 2e-6 per band (+ 1e-7 of the total energy) against
# BandPlan.energies of the same float32 state, rtol 1e-5 against reference.energies in float64.
FUSED_SHAPES = [(32, 32), (24, 40), (64, 48)]      # L = 5, a coarse 3 x 5 grid (L = 3), L = 4


def _check_energies(E, fields, arity=2):
    from vkbands.bands import energies
    shape = fields.shape[-2:]
    want = energies(np.ascontiguousarray(fields.reshape((-1,) + shape), np.float32), arity).reshape(E.shape)
    total = want.sum(-1, keepdims=True)
    assert_close(E, want, 2e-6 * np.abs(want) + 1e-7 * total)
    ref = np.stack([R.energies(f.astype(np.float64), arity) for f in fields])
    assert_close(E, ref.reshape(E.shape), 1e-5 * np.abs(ref.reshape(E.shape)) + 1e-7 * total)


def assert_close(a, b, tol):
    bad = np.abs(a - b) > tol
    assert not bad.any(), f"{bad.sum()} values off; worst {np.max(np.abs(a - b) - tol)}"


@pytest.mark.parametrize("system", ["heat", "grayscott"])
@pytest.mark.parametrize("shape", FUSED_SHAPES)
def test_fused_observation_levels(ctx, system, shape):
    """Energies within float32 round-off of BandPlan.energies (and of the float64 reference), min / max
    exact, mass to round-off, the state bit-identical to an unobserved run, a batch member bit-identical
    to its own run (same pipelines)."""
    x0 = init.random((3,) + shape, seed=7) if system == "heat" else init.grayscott((3,) + shape, seed=7)
    params = dict(alpha=[0.2, 0.1, 0.25]) if system == "heat" else dict(preset="spots", dt=[1.0, 0.8, 1.2])
    sim_sys = Simulation(ctx, system, x0, **params)
    if system == "grayscott":         # the OBS variant exists but is off by default (slower on lavapipe)
        assert not sim_sys.system._fuse
        from vkbands.systems import grayscott
        monkey = pytest.MonkeyPatch()
        monkey.setattr(grayscott.GrayScottSystem, "fused_levels", True)
    sim_sys.close()
    r = rollout(system, x0, 6, every=1, snapshot_every=1, ctx=ctx, progress=False, minmax=True, **params)
    fields = r.snapshots if system == "heat" else r.snapshots[:, :, 1]
    _check_energies(r.energies, fields)
    f64 = fields.astype(np.float64)
    np.testing.assert_array_equal(r.min, f64.min(axis=(-1, -2)))
    np.testing.assert_array_equal(r.max, f64.max(axis=(-1, -2)))
    np.testing.assert_allclose(r.mass, f64.sum(axis=(-1, -2)), rtol=1e-5, atol=1e-4)
    u = rollout(system, x0, 6, every=None, ctx=ctx, progress=False, **params)
    np.testing.assert_array_equal(r.final, u.final)
    one = {k: v[1] if isinstance(v, list) else v for k, v in params.items()}
    r1 = rollout(system, x0[1], 6, every=1, ctx=ctx, progress=False, minmax=True, **one)
    for key in ("energies", "mass", "min", "max"):
        np.testing.assert_array_equal(getattr(r1, key)[:, 0], getattr(r, key)[:, 1])
    with Simulation(ctx, system, x0, **params) as sim:
        assert sim.system._fuse
    if system == "grayscott":
        monkey.undo()


def test_fused_observation_flags_a_blowup_at_its_step(ctx):
    """Heat: a finite x0 whose first step overflows (a +-3e38 checkerboard in member 1) is reported at
    step 1 by the fused observation and by the bisection (every=None)."""
    x0 = init.random((2, 32, 32), seed=1)
    x0[1] = 3e38 * np.where((np.arange(32)[:, None] + np.arange(32)[None, :]) % 2, 1.0, -1.0)
    for every in (1, None):
        with pytest.raises(NonFiniteError, match="at step 1, batch member 1"):
            rollout("heat", x0, 10, every=every, ctx=ctx, progress=False)
