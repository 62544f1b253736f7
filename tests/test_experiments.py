"""vkbands.experiments and `vkbands experiment` (issue 12): kill rates, the influence matrix by ablation,
the eps sweep; checked against closed forms and NumPy runs of the reference (small sizes: p = 3,
L = 3-4, 20-40 steps)."""
import csv
import json

import numpy as np
import pytest

from tests._deps import need

need("xarray")      # eps_sweep runs a vkbands.sweep (xarray, zarr)
need("zarr")

import vkbands  # noqa: E402
from vkbands import experiments as X  # noqa: E402
from vkbands import reference as R

U = 2.0 ** -24                    # float32 unit round-off


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- kill rates
def test_tree_kill_rates_are_the_closed_form():
    """Tree diffusion: E_l(t) = lambda_l**(2t) E_l(0), so the slope of log E_l is 2 log lambda_l. The
    device keeps float32 band coefficients and multiplies them by float32(lambda_l) each step: the
    rounding of lambda (relative 2**-24 -> 2 * 2**-24 on the rate) and of each product (at most 2**-24
    per step, averaged over the leaves) move the slope by at most ~2.4e-7; 1e-6 is that bound with a
    4x margin. The fit's residuals are round-off too: standard errors below 1e-6."""
    k = X.kill_rates(vkbands.Setup("tree", depth=4, arity=3, dims=1, batch=3, seed=1, tau=0.5), steps=40, threshold=1e-3)
    L = 4
    lam = R.tree_rates(3, L, tau=0.5)
    assert k.rate.shape == (3, L + 1) and k.rate_stderr.shape == (3, L + 1) and k.kill_step.shape == (3, L + 1)
    np.testing.assert_allclose(k.tree_rate, np.broadcast_to(2 * np.log(lam), (3, L)), rtol=0, atol=1e-15)
    np.testing.assert_allclose(k.rate[:, :L], k.tree_rate, rtol=0, atol=1e-6)
    assert np.all(k.rate_stderr[:, :L] < 1e-6)
    assert np.all(np.abs(k.rate[:, L]) < 1e-6)                      # E_c: mass conserved
    # kill steps: first t with lambda**(2t) < 1e-3 (no t sits within 1e-3 of the threshold here)
    t_kill = np.log(1e-3) / (2 * np.log(lam))
    assert np.all(np.abs(t_kill - np.round(t_kill)) > 1e-3)
    expect = np.where(np.floor(t_kill) + 1 <= 40, np.floor(t_kill) + 1, -1).astype(int)
    np.testing.assert_array_equal(k.kill_step[:, :L], np.broadcast_to(expect, (3, L)))
    assert np.all(k.kill_step[:, L] == -1)
    for t_index, t in enumerate(k.steps):
        np.testing.assert_array_equal(k.killed[t_index], ((expect >= 0) & (expect <= t)).sum())


def test_kill_rates_of_a_rollout_and_killed_bands():
    """An existing Rollout is analysed as it is; killed_bands counts detail bands from their kill step on."""
    x0 = np.random.default_rng(2).standard_normal(27).astype(np.float32)
    r = vkbands.rollout("coupled", x0, 30, arity=3, eps=0.05, tau=0.3)
    k = X.kill_rates(r, threshold=1e-2)
    rate, se = R.contraction_rates(r.energies, r.steps, stderr=True)
    np.testing.assert_array_equal(k.rate, rate)
    np.testing.assert_array_equal(k.rate_stderr, se)
    np.testing.assert_array_equal(k.kill_step, R.kill_steps(r.energies, r.steps, 1e-2))
    ks = np.array([[3, -1, 0, -1], [-1, -1, -1, -1]])                 # (B=2, L+1=4)
    np.testing.assert_array_equal(X.killed_bands(ks, [0, 1, 2, 3, 4]), [[1, 0], [1, 0], [1, 0], [2, 0], [2, 0]])
    with pytest.raises(TypeError, match="analysed as it is"):
        X.kill_rates(r, steps=10)
    with pytest.raises(ValueError, match="threshold=2: the kill threshold"):
        X.kill_rates(r, threshold=2)
    with pytest.raises(TypeError, match="analysed as it is"):       # tau is a system parameter now
        X.kill_rates(r, tau=0.5)


def test_tau_is_the_systems_and_threshold_the_kill_threshold():
    """``tau`` among the parameters is the tree's time scale everywhere (kill_rates' **params, sweep's
    **setup); the kill threshold is ``threshold``. A tree sweep over alpha with tau=0.5 fixed follows
    E_l(t) = E_l(0) lambda_l(tau=0.5, alpha)**(2t)."""
    p, L, steps = 3, 3, 12
    ds = vkbands.sweep("tree", {"alpha": [0.5, 1.0, 2.0]}, tau=0.5, steps=steps, every=2, seeds=(0, 1),
                       arity=p, depth=L, dims=1, batch=2, progress=False)
    assert json.loads(ds.attrs["fixed"])["tau"] == 0.5 and ds.attrs["threshold"] == 1e-3
    t = ds.t.values
    for run in range(ds.sizes["run"]):
        a = float(ds.alpha[run])
        E = ds.energies.values[run]                                       # (member, t, band)
        want = E[:, :1, :L] * R.tree_rates(p, L, tau=0.5, alpha=a)[None, None, :] ** (2 * t[None, :, None])
        np.testing.assert_allclose(E[:, :, :L], want, rtol=2e-4, atol=1e-30)
    x0 = vkbands.Setup("tree", arity=p, depth=L, dims=1, batch=2).x0()
    k = X.kill_rates("tree", x0, steps=steps, arity=p, dims=1, tau=0.5, alpha=2.0, threshold=0.05)
    assert k.threshold == 0.05 and k.params["tau"] == 0.5
    np.testing.assert_allclose(k.tree_rate[0], 2 * np.log(R.tree_rates(p, L, tau=0.5, alpha=2.0)), atol=1e-15)
    np.testing.assert_array_equal(k.kill_step, R.kill_steps(k.energies, k.steps, 0.05))


def test_heat_kill_rates_match_numpy():
    """Heat on a 27 x 27 grid: detail-band rates finite and negative, E_c's ~0 (mass conserved), and equal
    to the rates of a float64 NumPy run of the same steps (the fit of float32 energies: 1e-5 relative)."""
    s = vkbands.Setup("heat", size=27, batch=2, alpha=0.2)
    k = X.kill_rates(s, steps=30)
    L = k.levels
    assert L == 3 and k.tree_rate is None
    assert np.all(np.isfinite(k.rate[:, :L])) and np.all(k.rate[:, :L] < 0)
    assert np.all(np.abs(k.rate[:, L]) < 1e-6)
    u = s.x0().astype(np.float64)
    E = [R.energies(u, 3)]
    for _ in range(30):
        u = R.heat_step(u, 0.2)
        E.append(R.energies(u, 3))
    ref, ref_se = R.contraction_rates(np.array(E), np.arange(31), stderr=True)
    np.testing.assert_allclose(k.rate[:, :L], ref[:, :L], rtol=1e-5)
    np.testing.assert_allclose(k.rate_stderr[:, :L], ref_se[:, :L], rtol=1e-3)


# ----------------------------------------------------------------------------- influence
def _numpy_energies(xs, rates, C, eps, steps, phi="tanh", p=3):
    y = xs.astype(np.float64)
    E = [R.energies(y, p, dims=1)]
    for _ in range(steps):
        y = R.coupled_step(y, rates, C, eps, phi, p, dims=1)
        E.append(R.energies(y, p, dims=1))
    return np.array(E)


def _roundoff(E_full, L):
    """The scale of float32 round-off in a relative band-energy change: a state error of a few
    2**-24 ||x|| changes E_l by about 2 ||delta|| / ||D_l||, i.e. 2**-24 * sqrt(E_total / E_l) (K, 1, L)."""
    return U * np.sqrt(E_full.sum(-1, keepdims=True) / E_full[..., :L])


def test_ablated_states_remove_exactly_one_band():
    x = np.random.default_rng(0).standard_normal(81)
    xs = X.ablated_states(x, 3)
    assert xs.shape == (5, 81) and xs.dtype == np.float32
    E = R.energies(xs.astype(np.float64), 3, dims=1)
    E0 = R.energies(x, 3, dims=1)
    np.testing.assert_allclose(E[0], E0, rtol=1e-6)
    for b in range(4):
        keep = np.arange(5) != b
        assert E[b + 1, b] < 1e-12 * E0.sum()                         # float32 round-off of the other bands
        np.testing.assert_allclose(E[b + 1, keep], E0[keep], rtol=1e-6)


def test_influence_eps0_is_zero_off_the_diagonal():
    """eps = 0: the bands evolve independently, removing band b changes no other band. What is left is the
    ablation's float32 rounding (the reconstructed field rounded once, |delta| <= 2**-24 |x| per leaf:
    a relative change of E_l of at most ~2 * 2**-24 * sqrt(E_total / E_l) ~ 3e-7 for these fields) plus the
    float32 energy sums (~1e-6 for 27 leaves): 1e-5 bounds it. The diagonal is -1 (the band is gone, to
    the same round-off)."""
    x = np.random.default_rng(5).standard_normal(27).astype(np.float32)
    m = X.influence_matrix("coupled", x, steps=20, times=(0, 5, 20), arity=3, eps=0.0, tau=0.3)
    L = 3
    assert m.levels == L and m.relative.shape == (3, L, L) and m.energies.shape == (21, L + 1, L + 1)
    off = m.off_diagonal()
    assert np.nanmax(np.abs(off)) < 1e-5
    diag = m.relative[:, np.arange(L), np.arange(L)]
    np.testing.assert_allclose(diag, -1.0, rtol=0, atol=1e-6)
    # the same matrix from a Setup (x0: member 0 of its initial state)
    s = vkbands.Setup("coupled", depth=3, arity=3, dims=1, eps=0.0, tau=0.3, seed=4)
    m2 = X.influence_matrix(s, steps=10)
    assert list(m2.times) == [2, 5, 10]
    np.testing.assert_array_equal(m2.x0[0], X.ablated_states(s.x0()[0], 3)[0])
    assert np.nanmax(np.abs(m2.off_diagonal())) < 1e-5


def test_influence_eps_positive_zero_where_the_maths_says():
    """SPEC 3.2 sums every band's coupling into one field, so band k drives with weight w_k = sum_b C[b, k]
    (a column sum), through f(D^(k)) = phi(D^(k)) |lambda_k D^(k)|, a pointwise function of a field
    constant on blocks of p**k leaves: it feeds bands >= k and the coarse part only. Hence, exactly:
    (1) w_k = 0 (column 1 below: +1, -1, 0, its entries not all zero) -> removing band k changes no other
    band; (2) removing band b never changes a finer band l < b. The whole matrix equals a float64 NumPy run
    of reference.coupled_step from the same float32 ablated states, within 64 * 2**-24 * sqrt(E_total / E_l)
    (the float32 state's round-off relative to band l; measured <= 16x that scale)."""
    C = np.array([[0, 1, 1, -1], [1, 0, 1, 1], [1, -1, 0, 1], [-1, 0, 1, 0]])
    x = np.random.default_rng(3).standard_normal(81)
    times = (5, 10, 20)
    m = X.influence_matrix("coupled", x.astype(np.float32), steps=20, times=times, arity=3, eps=0.1, C=C, tau=0.2)
    L = 4
    E = _numpy_energies(X.ablated_states(x, 3), R.tree_rates(3, L, tau=0.2), C, 0.1, 20)
    Et = E[list(times)]
    ref = (Et[:, 1:, :L] - Et[:, :1, :L]) / Et[:, :1, :L]
    tol = 64 * _roundoff(Et[:, :1, :], L)                            # (K, 1, L): per observed band
    assert np.all(np.abs(m.relative - ref) <= tol)
    i = np.arange(L)
    zero = (i[:, None] > i[None, :]) | ((i[:, None] == 1) & (i[None, :] != 1))   # [b, l]: l < b, or row b = 1
    assert np.all(np.abs(m.relative[:, zero]) <= np.broadcast_to(tol, m.relative.shape)[:, zero])
    assert np.all(np.abs(ref[:, zero]) <= np.broadcast_to(tol, ref.shape)[:, zero])
    # and the coupling does act elsewhere (the test can fail): removing band 0 changes bands 2 and 3
    assert np.all(np.abs(m.relative[:, 0, 2:]) > 50 * np.broadcast_to(tol, m.relative.shape)[:, 0, 2:])
    assert np.all(np.abs(m.relative[:, 2, 3]) > 0.1)


def test_influence_refuses_what_it_cannot_ablate():
    x = np.zeros((2, 27), np.float32)
    with pytest.raises(ValueError, match="one field"):
        X.influence_matrix("coupled", x, steps=5, dims=1, arity=3)
    with pytest.raises(ValueError, match="fields per member"):
        X.influence_matrix(vkbands.Setup("grayscott", size=9), steps=5)
    with pytest.raises(ValueError, match="multiples of every=2"):
        X.influence_matrix("coupled", x[0], steps=6, every=2, times=(3,), arity=3)


# ----------------------------------------------------------------------------- eps sweep
def _synthetic(D_by_run, eps_run, seed_run, L=3, T=4):
    """A Dataset of vkbands.sweep's schema whose last-step energies give deepest band D per run."""
    import xarray as xr
    Rn = len(D_by_run)
    E = np.ones((Rn, 1, T, L + 1))
    for r, D in enumerate(D_by_run):
        E[r, 0, -1, :L] = np.where(np.arange(L) <= D, 0.5, 1e-6)     # alive up to D, killed above
        if D >= 0:
            E[r, 0, -1, D] = 0.5
    return xr.Dataset(dict(energies=(("run", "member", "t", "band"), E)),
                      coords=dict(run=np.arange(Rn), t=np.arange(T), band=np.arange(L + 1),
                                  eps=("run", np.asarray(eps_run, float)), seed=("run", np.asarray(seed_run))),
                      attrs=dict(system="coupled", steps=T - 1, levels=L, threshold=1e-3))


def test_eps_sweep_analysis_of_a_synthetic_dataset():
    # runs in a shuffled order: (eps, seed) -> D
    table = {(0.0, 0): 2, (0.0, 7): 2, (0.5, 0): 2, (0.5, 7): 1, (1.0, 0): 0, (1.0, 7): 0, (2.0, 0): -1, (2.0, 7): 0}
    keys = [(1.0, 7), (0.0, 0), (2.0, 0), (0.5, 7), (0.0, 7), (1.0, 0), (2.0, 7), (0.5, 0)]
    ds = _synthetic([table[k] for k in keys], [k[0] for k in keys], [k[1] for k in keys])
    e = X.EpsSweep.from_dataset(ds)
    np.testing.assert_array_equal(e.eps, [0.0, 0.5, 1.0, 2.0])
    np.testing.assert_array_equal(e.seeds, [0, 7])
    np.testing.assert_array_equal(e.deepest, [[2, 2], [2, 1], [0, 0], [-1, 0]])
    assert e.transitions == {0: [(0.5, 1.0, 2, 0), (1.0, 2.0, 0, -1)], 7: [(0.0, 0.5, 2, 1), (0.5, 1.0, 1, 0)]}
    np.testing.assert_array_equal(e.agree_at, [True, False, True, False])
    assert not e.agree and e.threshold == 1e-3
    # the Dataset's threshold attribute is the default; threshold= overrides it (1e-6 < 1e-5: all survive)
    low = X.EpsSweep.from_dataset(ds.assign_attrs(threshold=1e-7))
    assert low.threshold == 1e-7 and np.all(low.deepest == 2)
    assert np.all(X.EpsSweep.from_dataset(ds.assign_attrs(threshold=1e-7), threshold=1e-3).deepest == e.deepest)
    with pytest.raises(ValueError, match="no run for eps=2.0, seed=7"):
        X.EpsSweep.from_dataset(ds.isel(run=[k != (2.0, 7) for k in keys]))


def test_eps_sweep_needs_two_seeds():
    with pytest.raises(ValueError, match="at least 2 distinct seeds"):
        X.eps_sweep("coupled", eps=[0, 1], seeds=(3,), steps=5, depth=3)
    with pytest.raises(ValueError, match="at least 2 distinct seeds"):
        X.eps_sweep("coupled", eps=[0, 1], seeds=(3, 3), steps=5, depth=3)
    with pytest.raises(ValueError, match="at least 2 finite values"):
        X.eps_sweep("coupled", eps=[0.5], seeds=(0, 1), steps=5, depth=3)
    with pytest.raises(ValueError, match="has no parameter eps"):
        X.eps_sweep("tree", eps=[0, 1], seeds=(0, 1), steps=5, depth=3)


EPS = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
SWEEP_SETUP = dict(depth=3, arity=3, dims=1, rates=[0.6, 0.8, 0.9])


def test_eps_sweep_matches_separate_rollouts():
    """One batched sweep over eps x seeds gives, per (eps, seed), the deepest surviving band that a
    separate rollout of that set-up gives (the sweep fixes the coupling matrix at the first seed's), and
    the transitions are where that sequence changes."""
    e = X.eps_sweep("coupled", eps=EPS[::-1], seeds=(0, 1), steps=40, threshold=1e-3, progress=False, **SWEEP_SETUP)
    np.testing.assert_array_equal(e.eps, EPS)
    expect = np.zeros((len(EPS), 2), int)
    for i, eps in enumerate(EPS):
        for j, seed in enumerate((0, 1)):
            s = vkbands.Setup("coupled", seed=seed, eps=eps, coupling_seed=0, **SWEEP_SETUP)
            r = vkbands.rollout(s, steps=40)
            expect[i, j] = r.deepest_surviving_band(1e-3)[-1, 0]
    np.testing.assert_array_equal(e.deepest, expect)
    assert len(set(expect[:, 0])) > 1                               # the sweep crosses a transition
    for j, seed in enumerate((0, 1)):
        want = [(EPS[i - 1], EPS[i], expect[i - 1, j], expect[i, j]) for i in range(1, len(EPS))
                if expect[i, j] != expect[i - 1, j]]
        assert e.transitions[seed] == want
    assert e.agree == bool(np.all(expect[:, 0] == expect[:, 1]))
    np.testing.assert_array_equal(e.deepest_members[..., 0],
                                  e.dataset["deepest_surviving_band"].values[:, 0].reshape(len(EPS), 2))


# ----------------------------------------------------------------------------- command line
def _cli(args):
    from vkbands.cli import main
    return main(["experiment", *args])


def test_cli_kill_rates(tmp_path, capsys):
    out = tmp_path / "kr"
    opts = ["--system", "tree", "--depth", "3", "--batch", "2", "--tau", "0.5", "--seed", "3"]
    assert _cli(["kill-rates", *opts, "--steps", "30", "--threshold", "0.01", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    names = {"kill_rates.csv", "killed.csv", "kill_rates.json", "kill_rates.png", "config.json"}
    assert {p.split("/")[-1] for p in printed} == names and all((out / n).is_file() for n in names)
    k = X.kill_rates(vkbands.Setup("tree", depth=3, batch=2, tau=0.5, seed=3), steps=30, threshold=0.01)
    rows = _rows(out / "kill_rates.csv")
    assert len(rows) == 2 * 4
    got = np.array([float(r["rate"]) for r in rows]).reshape(2, 4)
    np.testing.assert_allclose(got, k.rate, rtol=1e-8)
    np.testing.assert_array_equal(np.array([int(r["kill_step"]) for r in rows]).reshape(2, 4), k.kill_step)
    data = json.loads((out / "kill_rates.json").read_text())
    np.testing.assert_array_equal(data["killed"], k.killed)
    assert json.loads((out / "config.json").read_text())["threshold"] == 0.01


def test_cli_influence(tmp_path, capsys):
    out = tmp_path / "inf"
    assert _cli(["influence", "--depth", "3", "--eps", "0.2", "--tau", "0.3", "--steps", "12", "--times", "4,12",
                 "--out", str(out)]) == 0
    names = {"influence.csv", "influence_energies.csv", "influence.json", "influence.png", "influence_t00004.png",
             "influence_t00012.png", "config.json"}
    assert {p.split("/")[-1] for p in capsys.readouterr().out.split()} == names
    m = X.influence_matrix(vkbands.Setup("coupled", depth=3, eps=0.2, tau=0.3), steps=12, times=(4, 12))
    rows = _rows(out / "influence.csv")
    got = np.array([float(r["relative"]) for r in rows]).reshape(2, 3, 3)
    np.testing.assert_allclose(got, m.relative, rtol=1e-8, atol=1e-300)
    assert [int(r["t"]) for r in rows[::9]] == [4, 12]
    # one-line errors, status 2: the folder exists; a batch is not one field
    assert _cli(["influence", "--depth", "3", "--out", str(out)]) == 2
    assert _cli(["influence", "--depth", "3", "--batch", "2", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "already exists" in err[0] and "--batch 2" in err[1]
    assert not (tmp_path / "b").exists()


def test_cli_eps_sweep(tmp_path, capsys):
    out = tmp_path / "eps"
    assert _cli(["eps-sweep", "--depth", "3", "--arity", "3", "--dims", "1", "--rates", "0.6,0.8,0.9",
                 "--eps", "0:2.5:6", "--seeds", "0,1", "--steps", "40", "--out", str(out)]) == 0
    names = {"eps_sweep.csv", "eps_sweep.json", "eps_sweep.png", "config.json"}
    assert {p.split("/")[-1] for p in capsys.readouterr().out.split()} == names
    e = X.eps_sweep("coupled", eps=EPS, seeds=(0, 1), steps=40, progress=False, **SWEEP_SETUP)
    rows = _rows(out / "eps_sweep.csv")
    np.testing.assert_allclose([float(r["eps"]) for r in rows[::2]], EPS)
    np.testing.assert_array_equal(np.array([int(r["deepest_surviving_band"]) for r in rows]).reshape(6, 2), e.deepest)
    data = json.loads((out / "eps_sweep.json").read_text())
    assert data["seeds_agree"] == e.agree and len(data["transitions"]["0"]) == len(e.transitions[0])
    assert _cli(["eps-sweep", "--depth", "3", "--eps", "0,1", "--seeds", "0", "--out", str(tmp_path / "one")]) == 2
    assert _cli(["eps-sweep", "--depth", "3", "--eps", "0,x", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "at least 2 distinct seeds" in err[0] and "--eps 0,x" in err[1]
    assert not (tmp_path / "one").exists() and not (tmp_path / "x").exists()


def test_cli_eps_sweep_passes_the_systems_tau(tmp_path, capsys):
    """`--tau` is the coupled system's time scale in eps-sweep too (the kill threshold is --threshold)."""
    out = tmp_path / "eps"
    assert _cli(["eps-sweep", "--depth", "3", "--arity", "3", "--dims", "1", "--tau", "0.3", "--eps", "0,2",
                 "--seeds", "0,1", "--steps", "20", "--threshold", "0.01", "--no-pictures", "--out", str(out)]) == 0
    capsys.readouterr()
    data = json.loads((out / "eps_sweep.json").read_text())
    assert data["params"]["tau"] == 0.3 and data["threshold"] == 0.01
    e = X.eps_sweep("coupled", eps=[0, 2], seeds=(0, 1), steps=20, threshold=0.01, progress=False, depth=3, arity=3,
                    dims=1, tau=0.3)
    assert json.loads(e.dataset.attrs["fixed"])["tau"] == 0.3
    np.testing.assert_array_equal(data["deepest"], e.deepest)
    other = X.eps_sweep("coupled", eps=[0, 2], seeds=(0, 1), steps=20, threshold=0.01, progress=False, depth=3,
                        arity=3, dims=1, tau=3.0)
    assert not np.array_equal(other.dataset["energies"].values, e.dataset["energies"].values)
