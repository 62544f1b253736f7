"""Parameters per batch member (SPEC 3.2b): every numeric parameter of every system may be one value
per member; member b of such a batch is then BIT-IDENTICAL (energies, mass, min, max, NaN flag, final
state) to a separate rollout of that member alone with its own scalar values (the step kernels read a
(B, S) parameter table, one row per member, in the same pipeline either way). Plus the per-member
closed form of tree diffusion, eps = 0 members of the coupled system, switching a Simulation between
shared and per-member values, and the errors for values that are not allowed."""
import numpy as np
import pytest

from vkbands import init
from vkbands import reference as R
from vkbands.rollout import Simulation, rollout
from vkbands.setup import Setup
from vkbands.systems import make_system

OBS = ("energies", "mass", "min", "max", "nonfinite")
STEPS = 24


def _x0(system, B, seed=0):
    if system in ("tree", "coupled"):
        return init.random((B, 81), seed=seed) + 0.25        # arity 3, depth 4, dims 1
    if system == "heat":
        return init.random((B, 27, 27), seed=seed)
    return init.grayscott((B, 27, 27), seed=seed)


def _member(values, b):
    return {k: (v[b] if isinstance(v, (list, np.ndarray)) and np.ndim(v) >= 1 and k != "C" else v)
            for k, v in values.items()}


def _run(ctx, system, x0, **params):
    dims = {"dims": 1} if system in ("tree", "coupled") else {}
    return rollout(system, x0, STEPS, every=1, ctx=ctx, progress=False, **dims, **params)


def _assert_members_are_separate_runs(ctx, system, per_member, **shared):
    """A batch with ``per_member`` values == a separate rollout of each member with its own values,
    bit for bit; and the values matter (member 1 run with member 0's values ends elsewhere)."""
    B = len(next(iter(per_member.values())))
    x0 = _x0(system, B)
    r = _run(ctx, system, x0, **shared, **per_member)
    for b in range(B):
        s = _run(ctx, system, x0[b:b + 1], **shared, **_member(per_member, b))
        for k in OBS:
            np.testing.assert_array_equal(getattr(r, k)[:, b], getattr(s, k)[:, 0], err_msg=f"{k} of member {b}")
        np.testing.assert_array_equal(r.final[b], s.final[0], err_msg=f"final state of member {b}")
    other = _run(ctx, system, x0[1:2], **shared, **_member(per_member, 0))
    assert not np.array_equal(other.final[0], r.final[1]), "member 1's own values made no difference"
    assert np.all(np.isfinite(r.final))
    return r


TREE_CASES = [
    ("tree", dict(tau=[0.05, 0.3, 1.0, 2.5]), {}),
    ("tree", dict(alpha=[0.0, 0.5, 1.0, 2.0]), dict(tau=0.4)),
    ("tree", dict(tau=[0.2, 0.6, 1.0], alpha=[0.5, 1.5, 1.0]), {}),
    ("tree", dict(rates=[[0.9, 0.8, 0.7, 0.6], [0.5, 0.99, 1.0, 0.3], [1.0, 1.0, 0.2, 0.95]]), {}),
    ("tree", dict(rates=[[0.9], [0.5], [0.99]]), {}),                    # (B, 1): one factor per member
    ("coupled", dict(eps=[0.0, 0.05, 0.1, 0.2]), dict(tau=0.3, phi="tanh")),
    ("coupled", dict(tau=[0.1, 0.3, 0.8]), dict(eps=0.1, phi="sign")),
    ("coupled", dict(alpha=[0.5, 1.0, 2.0]), dict(eps=0.05, tau=0.3)),
    ("coupled", dict(rates=[[0.9, 0.8, 0.7, 0.6], [0.6, 0.7, 0.8, 0.9], [0.95, 0.5, 0.95, 0.5]],
                     eps=[0.02, 0.0, 0.01]), dict(phi="square")),
    ("heat", dict(alpha=[0.02, 0.1, 0.25]), {}),
    ("grayscott", dict(F=[0.02, 0.035, 0.06]), {}),
    ("grayscott", dict(k=[0.05, 0.065, 0.07]), {}),
    ("grayscott", dict(Du=[0.1, 0.16, 0.2]), {}),
    ("grayscott", dict(Dv=[0.04, 0.08, 0.12]), {}),
    ("grayscott", dict(dt=[0.5, 1.0, 1.2]), dict(preset="coral")),
]


@pytest.mark.parametrize("system,per_member,shared", TREE_CASES,
                         ids=[f"{s}-{'+'.join(p)}" + (f"-{len(p['rates'][0])}cols" if "rates" in p else "")
                              for s, p, _ in TREE_CASES])
def test_batch_with_per_member_values_is_separate_runs(ctx, system, per_member, shared):
    r = _assert_members_are_separate_runs(ctx, system, per_member, **shared)
    for k, v in per_member.items():      # params report a list of B floats (rates: B rows)
        if k == "rates":
            L = r.levels
            assert r.params["rates"] == [list(map(float, row)) * (L // len(row)) for row in v]
        else:
            assert r.params[k] == [float(x) for x in v]
    for k, v in shared.items():
        assert r.params[k] == v


def test_tree_closed_form_per_member_tau(ctx):
    """E_l(t) = lambda_l(tau_b)**(2t) E_l(0) for each member b (float32 tolerance as in test_systems)."""
    taus = [0.05, 0.2, 0.7, 1.5]
    x0 = init.random((4, 729), seed=3)
    r = rollout("tree", x0, 60, every=1, dims=1, tau=taus, ctx=ctx, progress=False)
    E0 = R.energies(x0, 3, dims=1)
    lam = np.stack([np.append(R.tree_rates(3, 6, tau=t), 1.0) for t in taus])        # (B, L+1)
    cf = E0[None] * lam[None] ** (2.0 * r.steps[:, None, None])
    floor = 1e-20 * E0.sum(-1)[None, :, None]
    big = cf > floor
    np.testing.assert_allclose(r.energies[big], cf[big], rtol=1e-3)
    assert np.all(r.energies[~big] <= np.broadcast_to(floor, cf.shape)[~big] * 1.0001)
    np.testing.assert_allclose(r.closed_form()[big], cf[big], rtol=1e-3)       # the spec's closed form
    assert np.shape(r.params["rates"]) == (4, 6)
    # the members decay differently: the finest band of member 0 outlives member 3's
    assert r.energies[-1, 0, 0] > 1e6 * r.energies[-1, 3, 0]


def test_coupled_eps_zero_member_is_the_tree_step(ctx):
    """A member at eps = 0 of a coupled batch runs the tree step itself: bit-exact with the tree system."""
    x0 = _x0("tree", 3, seed=5)
    rates = R.tree_rates(3, 4, tau=0.4)
    c = rollout("coupled", x0, STEPS, every=2, dims=1, eps=[0.1, 0.0, 0.2], phi="tanh", rates=rates, ctx=ctx,
                progress=False)
    t = rollout("tree", x0[1:2], STEPS, every=2, dims=1, rates=rates, ctx=ctx, progress=False)
    for k in OBS:
        np.testing.assert_array_equal(c.__dict__[k][:, 1], t.__dict__[k][:, 0])
    np.testing.assert_array_equal(c.final[1], t.final[0])
    plain = rollout("tree", x0, STEPS, every=2, dims=1, rates=rates, ctx=ctx, progress=False)
    assert not np.array_equal(c.final[0], plain.final[0]) and not np.array_equal(c.final[2], plain.final[2])


def test_simulation_switches_between_shared_and_per_member(ctx):
    """set_params: scalar -> per member -> scalar, each member == a separate Simulation given the same
    scalar values at the same steps (bit for bit); params report what is in force."""
    x0 = _x0("tree", 3, seed=2)
    schedule = [dict(tau=0.5), dict(tau=[0.1, 0.5, 2.0]), dict(tau=0.3)]
    with Simulation(ctx, "coupled", x0, dims=1, eps=0.05, **schedule[0]) as sim:
        sim.advance(4)
        sim.set_params(**schedule[1], eps=[0.0, 0.05, 0.1])
        assert sim.params["tau"] == [0.1, 0.5, 2.0] and sim.params["eps"] == [0.0, 0.05, 0.1]
        assert np.shape(sim.params["rates"]) == (3, 4)
        sim.advance(5)
        sim.set_params(**schedule[2], eps=0.05)
        assert sim.params["tau"] == 0.3 and sim.params["eps"] == 0.05
        assert sim.params["rates"] == [float(v) for v in R.tree_rates(3, 4, tau=0.3)]
        sim.advance(3)
        batch = sim.read()
        obs = sim.observe()
    for b in range(3):
        with Simulation(ctx, "coupled", x0[b:b + 1], dims=1, eps=0.05, tau=0.5) as one:
            one.advance(4)
            one.set_params(tau=[0.1, 0.5, 2.0][b], eps=[0.0, 0.05, 0.1][b])
            one.advance(5)
            one.set_params(tau=0.3, eps=0.05)
            one.advance(3)
            np.testing.assert_array_equal(one.read()[0], batch[b])
            o = one.observe()
            for k in OBS:
                np.testing.assert_array_equal(o[k][0], obs[k][b])
    # a grid system too (the parameter table is replaced in place)
    g0 = _x0("heat", 3, seed=1)
    with Simulation(ctx, "heat", g0, alpha=0.2) as sim:
        sim.advance(3)
        sim.set_params(alpha=[0.05, 0.1, 0.25])
        sim.advance(3)
        sim.set_params(alpha=0.15)
        sim.advance(2)
        assert sim.params["alpha"] == 0.15
        got = sim.read().astype(np.float64)
    for b, a in enumerate([0.05, 0.1, 0.25]):
        x = g0[b].astype(np.float64)
        for alpha in [0.2] * 3 + [a] * 3 + [0.15] * 2:
            x = x + alpha * R.laplacian(x)
        np.testing.assert_allclose(got[b], x, atol=1e-5)


def test_setup_carries_per_member_values(ctx):
    s = Setup("grayscott", batch=3, size=27, seed=1, F=[0.03, 0.04, 0.05])
    r = rollout(s, steps=10, ctx=ctx, progress=False)
    assert r.params["F"] == [0.03, 0.04, 0.05]
    one = rollout("grayscott", s.x0()[2:], 10, ctx=ctx, progress=False, F=0.05)
    np.testing.assert_array_equal(r.final[2], one.final[0])
    # the length is checked when the Setup is made (it knows the batch), not later at the rollout
    with pytest.raises(ValueError, match=r"F: 2 values for a batch of B = 3 members"):
        Setup("grayscott", batch=3, size=27, F=[0.03, 0.04])


@pytest.mark.parametrize("system,shape,params,message", [
    ("tree", (4, 81), dict(tau=[1.0, 2.0, 3.0]),
     r"tau: 3 values for a batch of B = 4 members; allowed: one number or 4 numbers \(one per member\), each a "
     r"finite number > 0"),
    ("tree", (4, 81), dict(tau=[1.0, -1.0, 1.0, 1.0]), r"tau: member 1: -1 is out of range; allowed: one number or "
     r"4 numbers"),
    ("tree", (4, 81), dict(alpha=[1.0, 1.0, float("nan"), 1.0]), r"alpha: member 2: nan is not finite"),
    ("tree", (4, 81), dict(tau=[1.0, float("inf"), 1.0, 1.0]), r"tau: member 1: inf is not finite"),
    ("tree", (4, 81), dict(tau=[[1.0, 2.0]] * 4), r"tau: an array of shape \(4, 2\)"),
    ("tree", (4, 81), dict(rates=[[0.5] * 4] * 3),
     r"rates: 3 rows for a batch of B = 4 members; allowed: one number, 4 numbers \(one per band\) or a \(4, 4\) "
     r"or \(4, 1\) array \(one row per member\)"),
    ("tree", (4, 81), dict(rates=[[0.5] * 3] * 4), r"rates: 3 values per member for L = 4 bands"),
    ("tree", (4, 81), dict(rates=[[0.5] * 4, [0.5] * 4, [0.5, 0.5, float("nan"), 0.5], [0.5] * 4]),
     r"rates: member 2, band 2: nan is not finite"),
    ("coupled", (4, 81), dict(eps=[0.1, 0.1, "x", 0.1]), r"eps: member 2: 'x' is not a number"),
    ("coupled", (4, 81), dict(phi=["tanh"] * 4),
     r"phi: 4 values given; allowed: one of tanh, sign, square, one value shared by the whole batch"),
    ("coupled", (4, 81), dict(coupling_seed=[1, 2, 3, 4]), r"coupling_seed: 4 values given; allowed: an integer "
     r">= 0, one value shared by the whole batch \(no per-member values\)"),
    ("coupled", (4, 81), dict(C=np.zeros((4, 4, 4))), r"C: an array of shape \(4, 4, 4\) given; allowed: an 4 x 4 "
     r"matrix"),
    ("heat", (3, 27, 27), dict(alpha=[0.1, 0.3, 0.1]), r"alpha: member 1: 0.3 is out of range; allowed: one number "
     r"or 3 numbers \(one per member\), each a number in \[0, 0.25\]"),
    ("grayscott", (3, 2, 27, 27), dict(dt=[1.0, 0.0, 1.0]), r"dt: member 1: 0 is out of range"),
    ("grayscott", (3, 2, 27, 27), dict(preset=["spots"] * 3), r"preset: 3 values given; allowed: one of"),
    ("grayscott", (3, 2, 27, 27), dict(F=[0.03, 0.04]), r"F: 2 values for a batch of B = 3 members"),
])
def test_bad_per_member_values(ctx, system, shape, params, message):
    with pytest.raises(ValueError, match=message):
        make_system(ctx, system, shape, dims=1 if system in ("tree", "coupled") else None, **params)


def test_set_params_refuses_bad_per_member_values_and_keeps_the_old_ones(ctx):
    x0 = _x0("tree", 4)
    with Simulation(ctx, "tree", x0, dims=1, tau=[0.1, 0.2, 0.3, 0.4]) as sim:
        with pytest.raises(ValueError, match=r"tau: 5 values for a batch of B = 4 members"):
            sim.set_params(tau=[0.1] * 5)
        with pytest.raises(ValueError, match=r"alpha: member 3: -inf is not finite"):
            sim.set_params(alpha=[1.0, 1.0, 1.0, -np.inf])
        assert sim.params["tau"] == [0.1, 0.2, 0.3, 0.4] and sim.params["alpha"] == 1.0
        # numpy arrays are accepted as well as lists
        sim.set_params(tau=np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32))
        assert sim.params["tau"] == [0.5] * 4


@pytest.mark.parametrize("system", ["tree", "coupled", "heat", "grayscott"])
def test_observation_without_minmax(ctx, system):
    """minmax=False: energies, mass and the NaN flag as with min/max (bit for bit), min/max NaN; the
    flag finds the same first non-finite step and member (tree: values past 1.8e19 already square to
    Inf; the flag is still decided on the leaves)."""
    x0 = _x0(system, 3, seed=4)
    params = dict(tau=[0.1, 0.5, 1.0], eps=0.05) if system == "coupled" else {}
    full = _run(ctx, system, x0, **params)
    cheap = _run(ctx, system, x0, minmax=False, **params)
    for k in ("energies", "mass", "nonfinite"):
        np.testing.assert_array_equal(getattr(cheap, k), getattr(full, k))
    np.testing.assert_array_equal(cheap.final, full.final)
    assert np.isnan(cheap.min).all() and np.isnan(cheap.max).all()
    assert np.isfinite(full.min).all() and (full.min < full.max).all()
    # a blow-up: the same first non-finite step and member either way
    bad = dict(tree=dict(rates=[[1.0] * 4, [1.0] * 4, [40.0] * 4]), coupled=dict(rates=[[1.0] * 4] * 2 + [[40.0] * 4]),
               heat=dict(alpha=[0.1, 0.1, 0.25]), grayscott=dict(dt=[1.0, 1.0, 1.0]))[system]
    if system in ("heat", "grayscott"):
        x0 = x0.copy()
        if system == "heat":
            x0[2, 5, 5] = 3e38          # its Laplacian overflows at the first step
        else:
            x0[2, 1, 5, 5] = 1e15       # u v^2 overflows
    errs = []
    for mm in (True, False):
        with pytest.raises(FloatingPointError) as e:
            rollout(system, x0, 60, every=None, ctx=ctx, progress=False, minmax=mm,
                    **({"dims": 1} if system in ("tree", "coupled") else {}), **bad)
        errs.append((e.value.step, e.value.member))
    assert errs[0] == errs[1] and errs[0][1] == 2
