"""vkbands.rollout: batching, observables vs snapshots, chunking, NaN/Inf stop, Simulation, derived quantities."""
import numpy as np
import pytest

from vkbands import init
from vkbands import reference as R
from vkbands.rollout import NonFiniteError, Rollout, Simulation, rollout


def _x0(system, B=None, seed=0):
    batch = () if B is None else (B,)
    if system in ("tree", "coupled"):
        return init.random(batch + (243,), seed=seed)
    if system == "heat":
        return init.random(batch + (27, 27), seed=seed)
    return init.grayscott(batch + (27, 27), seed=seed)


PARAMS = {"tree": dict(dims=1), "coupled": dict(dims=1, eps=0.05, phi="tanh"), "heat": dict(alpha=0.2),
          "grayscott": dict(preset="spots")}


@pytest.mark.parametrize("system", ["tree", "coupled", "heat", "grayscott"])
def test_batched_equals_unbatched(ctx, system):
    xb = _x0(system, B=3, seed=1)
    rb = rollout(system, xb, 30, every=5, snapshot_every=15, ctx=ctx, progress=False, **PARAMS[system])
    for m in range(3):
        params = dict(PARAMS[system])
        params.pop("dims", None)
        r1 = rollout(system, xb[m], 30, every=5, snapshot_every=15, ctx=ctx, progress=False, **params)
        assert r1.final.shape == xb[m].shape and r1.energies.shape == (7, 1, rb.levels + 1)
        np.testing.assert_allclose(r1.final, rb.final[m], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(r1.snapshots, rb.snapshots[:, m], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(r1.energies[:, 0], rb.energies[:, m], rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(r1.mass[:, 0], rb.mass[:, m], rtol=1e-5, atol=1e-5)
    assert rb.energies.shape == (7, 3, rb.levels + 1)
    assert list(rb.steps) == [0, 5, 10, 15, 20, 25, 30]
    assert list(rb.snapshot_steps) == [0, 15, 30]


@pytest.mark.parametrize("system", ["tree", "coupled", "heat", "grayscott"])
def test_observables_equal_those_of_snapshots(ctx, system):
    x0 = _x0(system, B=2, seed=3)
    r = rollout(system, x0, 24, every=4, snapshot_every=4, chunk=8, ctx=ctx, progress=False, **PARAMS[system])
    assert list(r.steps) == list(r.snapshot_steps)
    field = r.snapshots[:, :, 1] if system == "grayscott" else r.snapshots
    dims = 1 if system in ("tree", "coupled") else 2
    o = R.observables(field, r.arity, dims=dims)
    scale = o["energies"].sum(-1, keepdims=True)
    np.testing.assert_allclose(r.energies, o["energies"], rtol=1e-3, atol=1e-6 * scale.max())
    np.testing.assert_allclose(r.mass, o["mass"], rtol=1e-4, atol=1e-4 * np.abs(field).sum((-1, -2) if dims == 2 else -1).max())
    np.testing.assert_allclose(r.min, o["min"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.max, o["max"], rtol=1e-5, atol=1e-6)
    assert not r.nonfinite.any()


def test_chunking_does_not_change_results(ctx):
    x0 = _x0("heat", B=2)
    a = rollout("heat", x0, 37, every=3, snapshot_every=6, ctx=ctx, progress=False, alpha=0.2)
    b = rollout("heat", x0, 37, every=3, snapshot_every=6, chunk=6, ctx=ctx, progress=False, alpha=0.2)
    c = rollout("heat", x0, 37, every=None, ctx=ctx, progress=False, alpha=0.2)
    assert list(a.steps) == list(range(0, 37, 3)) and list(a.snapshot_steps) == list(range(0, 37, 6))
    # exact: the states come from the same step pipeline (step_heat.comp, same defines and constants) in
    # every run; chunks and observations only change when and how often it is replayed
    np.testing.assert_array_equal(a.final, b.final)
    np.testing.assert_array_equal(a.final, c.final)
    np.testing.assert_allclose(a.energies, b.energies, rtol=1e-6)
    np.testing.assert_array_equal(a.snapshots, b.snapshots)
    assert c.snapshots is None and c.energies.shape == (0, 2, a.levels + 1)
    t = rollout("tree", _x0("tree", B=2), 50, every=7, chunk=14, dims=1, ctx=ctx, progress=False)
    u = rollout("tree", _x0("tree", B=2), 50, every=7, dims=1, ctx=ctx, progress=False)
    # a chunk boundary re-decomposes the float32 leaves: bands far below round-off of the total differ
    big = u.energies > 1e-12 * u.energies[0].sum(-1)[None, :, None]
    np.testing.assert_allclose(t.energies[big], u.energies[big], rtol=1e-4)
    np.testing.assert_allclose(t.final, u.final, atol=1e-6)


def test_nan_in_x0_stops_at_step_0_naming_the_member(ctx):
    x0 = _x0("tree", B=4)
    x0[2, 17] = np.nan
    with pytest.raises(NonFiniteError, match=r"step 0, batch member 2") as e:
        rollout("tree", x0, 20, every=1, dims=1, ctx=ctx, progress=False)
    assert e.value.step == 0 and e.value.member == 2


@pytest.mark.parametrize("every", [1, 3, None])
def test_overflow_mid_rollout_stops_at_the_exact_step_and_member(ctx, every):
    x0 = _x0("tree", B=3)
    x0[1] *= 1e30                           # rates > 1 make member 1 overflow float32 after a few steps
    rates = [10.0] * 5
    with pytest.raises(NonFiniteError) as e:
        rollout("tree", x0, 100, every=every, snapshot_every=5, dims=1, rates=rates, ctx=ctx, progress=False)
    err = e.value
    assert err.member == 1 and err.step > 0 and err.last_finite_step == err.step - 1
    assert f"step {err.step}, batch member 1" in str(err)
    # exact whatever the cadence (issue 10): finite one step earlier, not at the reported step
    with Simulation(ctx, "tree", x0, dims=1, rates=rates) as sim:
        sim.advance(err.step - 1)
        assert np.all(np.isfinite(sim.read()[1]))
        sim.advance(1)
        assert not np.all(np.isfinite(sim.read()[1]))
    # nothing computed before the blow-up is lost: the partial Rollout rides on the error
    r = err.rollout
    assert r.status == "nonfinite" and r.n_steps == err.step - 1 and r.steps_requested == 100
    assert np.all(np.isfinite(r.final)) and not r.nonfinite.any()    # (energies of a finite state may overflow)
    assert list(r.steps) == ([] if every is None else list(range(0, err.step, every)))
    assert list(r.snapshot_steps) == list(range(0, err.step, 5)) and len(r.snapshots) == len(r.snapshot_steps)


def test_nan_without_observables_is_found_at_its_step(ctx):
    # every=None: "at step 500" was said for a blow-up at 80; now the exact step (re-run from a saved state)
    x0 = np.concatenate([init.grayscott((1, 81, 81), seed=0)] * 2)
    with Simulation(ctx, "grayscott", x0[:1], dt=1.8) as sim:
        bad = next(t for t in range(1, 1000) if not np.all(np.isfinite(sim.advance(1).read())))
    with pytest.raises(NonFiniteError, match=f"at step {bad}, batch member 0") as e:
        rollout("grayscott", x0, 1000, every=None, dt=1.8, ctx=ctx, progress=False)
    assert e.value.last_finite_step == bad - 1 and e.value.rollout.n_steps == bad - 1
    assert e.value.rollout.snapshots is None and np.all(np.isfinite(e.value.rollout.final))


def test_simulation_incremental_use(ctx):
    x0 = _x0("grayscott", B=2)
    with Simulation(ctx, "grayscott", x0, preset="spots") as sim:
        assert sim.state.shape == (2, 2, 27, 27) and sim.step == 0 and sim.batch == 2
        sim.advance(5).advance(7)
        assert sim.step == 12
        x = x0.astype(np.float64)
        p = R.GRAYSCOTT_PRESETS["spots"]
        for _ in range(12):
            x = R.grayscott_step(x, F=p["F"], k=p["k"])
        np.testing.assert_allclose(sim.read(), x, atol=1e-5)
        o = sim.observe()
        np.testing.assert_allclose(o["energies"], R.energies(x[:, 1], 3), rtol=1e-3, atol=1e-6)
        assert o["energies"].shape == (2, 4) and o["mass"].shape == (2,)
        # record into our own recorder and replay it twice
        rec = ctx.recorder()
        sim.record_steps(rec, 3)
        rec.submit()
        rec.submit()
        rec.close()
        sim.step += 6
        for _ in range(6):
            x = R.grayscott_step(x, F=p["F"], k=p["k"])
        np.testing.assert_allclose(sim.read(), x, atol=1e-5)
        sim.reset()
        assert sim.step == 0
        np.testing.assert_array_equal(sim.read(), x0)
        with pytest.raises(ValueError, match="shape"):
            sim.reset(x0[0])


def test_derived_quantities_for_tree(ctx):
    x0 = init.random((2, 729), seed=4)
    r = rollout("tree", x0, 120, every=1, dims=1, ctx=ctx, progress=False)
    assert isinstance(r, Rollout)
    lam = R.tree_rates(3, 6)
    rates = r.contraction_rates()
    assert rates.shape == (2, 7)
    # slope of log E_l is 2 log lambda_l for bands that stay above float32 underflow over the run
    np.testing.assert_allclose(rates[:, 2:6], np.broadcast_to(2 * np.log(lam[2:6]), (2, 4)), rtol=1e-3)
    kill = r.kill_steps(tau=1e-3)
    expect = np.ceil(np.log(1e-3) / (2 * np.log(lam)))   # lambda^(2t) < 1e-3
    for l in range(4):
        assert abs(kill[0, l] - expect[l]) <= 1
    assert np.all(kill[:, -1] == -1)
    D = r.deepest_surviving_band()
    assert D.shape == (121, 2) and D[0, 0] == 5 and D[-1, 0] == 5
    G = r.leakage()
    np.testing.assert_allclose(G, np.eye(7), atol=1e-4)
    cf = r.closed_form()
    assert cf.shape == r.energies.shape
    s = r.summary()
    assert s["kill_steps"][0][0] == kill[0, 0]


def test_rollout_argument_errors(ctx):
    with pytest.raises(ValueError, match="steps"):
        rollout("tree", _x0("tree"), -1, ctx=ctx)
    with pytest.raises(ValueError, match="every"):
        rollout("tree", _x0("tree"), 5, every=0.5, ctx=ctx)
    with pytest.raises(ValueError, match="system"):
        rollout("diffuse", _x0("tree"), 5, ctx=ctx)
    r = rollout("tree", _x0("tree"), 0, every=1, snapshot_every=1, ctx=ctx, progress=False)
    assert list(r.steps) == [0] and r.snapshots.shape == (1, 243)
    np.testing.assert_array_equal(r.final, _x0("tree"))    # exact: no step, so the kernel never writes x


@pytest.mark.parametrize("system", ["tree", "grayscott"])
def test_observation_rows_decode_from_a_host_mirror(ctx, system):
    """ObsBuffers.read(source=...) decodes a copy of the rows (the viewer's per-frame mirrors) exactly
    as the device rows, and energy_location points at the member's energies."""
    from vkbands import Simulation, init
    x0 = init.random((3, 81), seed=2) if system == "tree" else init.grayscott((3, 27, 27), seed=2)
    with Simulation(ctx, system, x0, dims=1 if system == "tree" else None) as sim:
        obs = sim.system.new_obs(1)
        with ctx.recorder() as rec:
            sim.record_steps(rec, 4, every=4, obs=obs)
        mirror = {name: ctx.empty(a.shape, a.dtype, host=True) for name, a in obs.arrays.items()}
        with ctx.recorder() as rec:
            for name, a in obs.arrays.items():
                rec.copy(a, mirror[name])
        direct, copied = obs.read(1), obs.read(1, source=mirror)
        for k in direct:
            np.testing.assert_array_equal(copied[k], direct[k])
        name, off = obs.energy_location(member=2)
        flat = obs.arrays[name].numpy().reshape(-1)
        np.testing.assert_array_equal(flat[off:off + sim.levels + 1].astype(np.float64), direct["energies"][0, 2])
        obs.close()


# ----------------------------------------------------------------------------- issue 10: chunks and endings
def test_rows_are_exact_when_chunks_end_between_observations(ctx):
    """Recordings are sized by time, not by every/snapshot_every: chunks that end between observations
    (7 steps, every 5, snapshots every 10) give the same rows at the same steps."""
    x0 = _x0("heat", B=2)
    a = rollout("heat", x0, 100, every=5, snapshot_every=10, chunk=7, ctx=ctx, progress=False, alpha=0.2)
    b = rollout("heat", x0, 100, every=5, snapshot_every=10, chunk=10, ctx=ctx, progress=False, alpha=0.2)
    assert list(a.steps) == list(range(0, 101, 5)) and list(a.snapshot_steps) == list(range(0, 101, 10))
    np.testing.assert_array_equal(a.final, b.final)
    np.testing.assert_array_equal(a.snapshots, b.snapshots)
    np.testing.assert_array_equal(a.energies, b.energies)
    t = rollout("tree", _x0("tree", B=2), 60, every=4, snapshot_every=6, chunk=5, dims=1, ctx=ctx, progress=False)
    u = rollout("tree", _x0("tree", B=2), 60, every=4, snapshot_every=6, chunk=12, dims=1, ctx=ctx, progress=False)
    assert list(t.steps) == list(range(0, 61, 4)) and list(t.snapshot_steps) == list(range(0, 61, 6))
    big = u.energies > 1e-12 * u.energies[0].sum(-1)[None, :, None]
    np.testing.assert_allclose(t.energies[big], u.energies[big], rtol=1e-4)
    np.testing.assert_allclose(t.snapshots, u.snapshots, atol=1e-6)


def test_chunks_are_bounded_by_time_whatever_the_cadence(ctx, monkeypatch):
    """One observation per 3000 steps must not mean a 3000-step recording: the first chunk is timed and
    the next ones sized to the target (here 20 ms instead of the default ~0.5 s)."""
    import sys
    monkeypatch.setattr(sys.modules["vkbands.rollout"], "_TARGET_S", 0.02)
    x0 = _x0("heat", B=2)
    r = rollout("heat", x0, 3000, every=1000, ctx=ctx, progress=False, alpha=0.2)
    assert r.timings["chunks"] >= 4 and r.timings["chunk_steps"] < 3000
    print(r.timings)          # the chunks' seconds: printed, not asserted (speed lives in benchmarks/)
    ref = rollout("heat", x0, 3000, every=1000, chunk=1000, ctx=ctx, progress=False, alpha=0.2)
    assert list(r.steps) == [0, 1000, 2000, 3000]
    np.testing.assert_array_equal(r.energies, ref.energies)
    np.testing.assert_array_equal(r.final, ref.final)


def test_interrupt_signal_returns_what_was_computed(ctx):
    """SIGINT while rollout() runs: the chunk in flight finishes, then RolloutInterrupted (a
    KeyboardInterrupt) carries the partial Rollout: every observation so far plus the state it stopped at."""
    import os
    import signal
    import threading
    from vkbands.rollout import RolloutInterrupted
    x0 = _x0("grayscott", B=1)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(RolloutInterrupted) as e:
            rollout("grayscott", x0, 10 ** 8, every=10, snapshot_every=1000, ctx=ctx, progress=False)
    finally:
        timer.cancel()
    r = e.value.rollout
    assert isinstance(e.value, KeyboardInterrupt) and r.status == "interrupted"
    last = r.n_steps
    assert 0 < last < 10 ** 8 and r.steps[-1] == last
    assert list(r.steps[:-1]) == list(range(0, last, 10))         # every observation, then the last state
    assert r.energies.shape[0] == len(r.steps) and np.all(np.isfinite(r.energies))
    with Simulation(ctx, "grayscott", x0) as sim:
        np.testing.assert_array_equal(sim.advance(last).read(), r.final)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler     # handler given back


def test_keyboard_interrupt_between_submit_and_read_loses_nothing(ctx, monkeypatch):
    """A KeyboardInterrupt raised right after a chunk was submitted (a second Ctrl-C): the chunk is
    waited for and collected, so the partial result matches its final state."""
    import sys
    from vkbands.rollout import RolloutInterrupted
    run_class = sys.modules["vkbands.rollout"]._Run
    real, calls = run_class._submit, []

    def submit(self, *a, **k):
        out = real(self, *a, **k)
        calls.append(1)
        if len(calls) == 3:          # chunks of 10 steps: right after the third one ran
            raise KeyboardInterrupt
        return out
    monkeypatch.setattr(run_class, "_submit", submit)
    x0 = _x0("heat", B=2)
    with pytest.raises(RolloutInterrupted) as e:
        rollout("heat", x0, 1000, every=3, chunk=10, ctx=ctx, progress=False, alpha=0.2)
    monkeypatch.setattr(run_class, "_submit", real)
    r = e.value.rollout
    assert r.n_steps == 30 and list(r.steps) == list(range(0, 31, 3))
    ref = rollout("heat", x0, 30, every=3, ctx=ctx, progress=False, alpha=0.2)
    np.testing.assert_array_equal(r.final, ref.final)
    np.testing.assert_array_equal(r.energies, ref.energies)


def test_memory_needs_are_refused_before_allocating(ctx):
    from vkbands import LimitError, Setup
    with pytest.raises(LimitError, match="TiB"):
        rollout(Setup("tree", depth=30), steps=1, ctx=ctx)
    with pytest.raises(LimitError, match="GiB"):
        rollout(Setup("tree", depth=6, batch=10 ** 8), steps=1, ctx=ctx)


def test_rollout_repr_is_one_line_and_captions_read_unbatched_snapshots(ctx):
    """repr(Rollout) names what ran without printing its arrays (a notebook stores it); the sheet
    caption of an unbatched rollout reads the field's shape from its snapshots."""
    from vkbands.render import sheet_caption
    x0 = np.random.default_rng(0).standard_normal((27, 27)).astype(np.float32)
    r = rollout("heat", x0, 12, snapshot_every=4, ctx=ctx, progress=False, alpha=0.2)
    text = repr(r)
    assert "\n" not in text and len(text) < 300 and "heat completed: 12 of 12 steps" in text and "alpha=0.2" in text
    assert sheet_caption(r).spatial == (27, 27)
    rb = rollout("heat", np.stack([x0, x0]), 4, snapshot_every=4, ctx=ctx, progress=False)
    assert sheet_caption(rb, member=1).spatial == (27, 27) and "B=2" in repr(rb)
