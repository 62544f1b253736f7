"""Checks of vkbands.reference against closed forms and outside implementations (no stored outputs)."""

import numpy as np
import pytest

from vkbands import init as I
from vkbands import reference as R
from tests._deps import need

# (arity, 1-D length, 2-D side): small enough for a fast suite, deep enough for L >= 2.
CASES = [(2, 64, 16), (3, 81, 27), (4, 64, 16), (5, 125, 25)]


def _fields(p, n, side, seed=0):
    """(x, dims) pairs: 1-D, 1-D batched, 2-D square, 2-D batched, 2-D rectangular."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n), None), (rng.standard_normal((3, n)), 1),
            (rng.standard_normal((side, side)), None), (rng.standard_normal((2, side, side)), 2),
            (rng.standard_normal((2, side, side * p)).astype(np.float32), 2)]


def _brute_detail_leaf(x, p, l):
    """D^(l) of a 1-D field by explicit loops over the tree (independent of the block helpers)."""
    out = np.empty(len(x))
    for v in range(len(x)):
        fine, coarse_ = v // p ** l, v // p ** (l + 1)
        out[v] = (np.mean(x[fine * p ** l:(fine + 1) * p ** l])
                  - np.mean(x[coarse_ * p ** (l + 1):(coarse_ + 1) * p ** (l + 1)]))
    return out


# ----------------------------------------------------------------------------- shapes & errors

def test_levels_and_shapes():
    assert R.levels((729,), 3) == 6
    assert R.levels((729, 729), 3) == 6
    assert R.levels((4, 27, 243), 3) == 3
    assert R.levels((5, 32), 2, dims=1) == 5
    assert R.infer_dims((8,), None) == 1 and R.infer_dims((8, 8), None) == 2
    assert R.infer_dims((2, 8, 8), None) == 2
    assert R.split_shape((4, 81), 1) == ((4,), (81,))
    assert R.split_shape((2, 9, 27), None) == ((2,), (9, 27))


@pytest.mark.parametrize("shape, arity, dims, match", [
    ((730,), 3, None, r"size 730 is not a power of arity 3; nearest valid sizes: 729, 2187"),
    ((27, 28), 3, None, r"size 28 .* arity 3.*27, 81"),
    ((2,), 3, None, r"size 2 .*smallest valid size is 3"),
    ((27,), 1, None, r"arity.*1"),
    ((27,), 2.0, None, r"arity.*2\.0"),
    ((27,), 3, 3, r"dims.*3"),
])
def test_tree_levels_errors(shape, arity, dims, match):
    with pytest.raises(ValueError, match=match):
        R.tree_levels(shape, arity, dims)


# ----------------------------------------------------------------------------- levels of any size (issue 11)

# (shape, arity, dims, L, coarse grid): SPEC section 1, L = largest with p**L dividing every axis.
ANY_SIZE = [((96, 96), 2, None, 5, (3, 3)), ((54, 81), 3, None, 3, (2, 3)),
            ((5, 3 ** 4), 3, 1, 4, ()), ((2, 96, 96), 2, 2, 5, (3, 3)), ((3, 54, 81), 3, 2, 3, (2, 3)),
            ((4, 96), 2, 1, 5, (3,)), ((100, 60), 2, None, 2, (25, 15)), ((7, 5), 2, None, 0, (7, 5))]


def test_levels_any_size():
    for shape, p, dims, L, grid in ANY_SIZE:
        assert R.levels(shape, p, dims) == L
    assert R.levels((96, 96), 2, levels=3) == 3
    assert R.levels((729,), 3) == 6 and R.levels((9, 27), 3) == 2


@pytest.mark.parametrize("shape, p, dims, L, grid", ANY_SIZE)
def test_any_size_reconstruction_parseval_orthogonality(shape, p, dims, L, grid):
    x = np.random.default_rng(11).standard_normal(shape)
    d = R.infer_dims(shape, dims)
    batch = shape[:-d]
    details, c = R.decompose(x, p, dims)
    assert len(details) == L and c.shape == batch + grid
    for l, band in enumerate(details):
        assert band.shape == batch + tuple(n // p ** l for n in shape[-d:])
    assert np.allclose(c, x.reshape(batch + sum(((n // p ** L, p ** L) for n in shape[-d:]), ()))
                       .mean(axis=(-1,) if d == 1 else (-3, -1)).reshape(c.shape))
    assert np.allclose(R.reconstruct(details, c, p, dims), x, atol=1e-12)
    E = R.energies(x, p, dims)
    assert E.shape == batch + (L + 1,)
    assert np.allclose(E.sum(-1), np.sum(x * x, axis=tuple(range(-d, 0))))
    assert np.allclose(E[..., -1], p ** (L * d) * np.sum(np.reshape(c, batch + (-1,)) ** 2, -1))
    assert np.allclose(R.leakage(x, p, dims), np.eye(L + 1), atol=1e-10)


@pytest.mark.parametrize("shape, p, dims, L, grid", ANY_SIZE[:3])
def test_any_size_explicit_levels_below_and_above_the_maximum(shape, p, dims, L, grid):
    x = np.random.default_rng(12).standard_normal(shape)
    d = R.infer_dims(shape, dims)
    for k in range(L + 1):
        details, c = R.decompose(x, p, dims, levels=k)
        assert len(details) == k
        grid_k = tuple(n // p ** k for n in shape[-d:])
        assert np.shape(c) == shape[:-d] + (grid_k if np.prod(grid_k) > 1 else ())
        assert np.allclose(R.reconstruct(details, c, p, dims), x, atol=1e-12)
        E = R.energies(x, p, dims, levels=k)
        assert np.allclose(E.sum(-1), np.sum(x * x, axis=tuple(range(-d, 0))))
        assert np.allclose(E[..., :k], R.energies(x, p, dims)[..., :k])      # same detail bands
        assert np.allclose(R.leakage(x, p, dims, levels=k), np.eye(k + 1), atol=1e-10)
    for fn in (R.decompose, R.energies, R.leakage, R.coarse):
        with pytest.raises(ValueError, match=rf"levels must be an integer in 0\.\.{L} \({L} is the maximum"
                                             rf".*got {L + 1}"):
            fn(x, p, dims, levels=L + 1)
    with pytest.raises(ValueError, match=rf"{L} is the maximum"):
        R.levels(shape, p, dims, levels=L + 1)


def test_argument_errors():
    x = np.zeros(27)
    with pytest.raises(ValueError, match=r"level .*0\.\.3.*got 4"):
        R.block_mean(x, 3, 4)
    with pytest.raises(ValueError, match=r"level .*0\.\.2.*got 3"):
        R.detail(x, 3, 3)
    with pytest.raises(ValueError, match=r"phi .*'sign'.*got 'relu'"):
        R.coupled_step(x, R.tree_rates(3, 3), R.coupling_matrix(3), 0.1, "relu", 3)
    with pytest.raises(ValueError, match=r"rates .*\(3,\).*\(2,\)"):
        R.tree_step(x, [0.5, 0.5], 3)
    with pytest.raises(ValueError, match=r"C must be .*\(3, 3\)"):
        R.coupled_step(x, R.tree_rates(3, 3), np.ones((2, 2)), 0.1, "tanh", 3)
    with pytest.raises(ValueError, match=r"alpha .*0\.3"):
        R.heat_step(np.zeros((4, 4)), 0.3)
    with pytest.raises(ValueError, match=r"uv .*\(3, 4, 4\)"):
        R.grayscott_step(np.zeros((3, 4, 4)))


# ----------------------------------------------------------------------------- decomposition

@pytest.mark.parametrize("p, n, side", CASES)
def test_reconstruction_parseval_orthogonality(p, n, side):
    for x, dims in _fields(p, n, side):
        x64 = np.asarray(x, np.float64)
        details, c = R.decompose(x, p, dims)
        assert np.allclose(R.reconstruct(details, c, p, dims), x64, atol=1e-12)
        E = R.energies(x, p, dims)
        ax = (-1,) if R.infer_dims(x.shape, dims) == 1 else (-2, -1)
        assert np.allclose(E.sum(-1), np.sum(x64 ** 2, axis=ax), rtol=1e-12)
        # Leaf-resolution definition of E_l and the telescoping identity D^(l) = s^(l) - s^(l+1).
        L = len(details)
        for l in range(L):
            D = R.detail(x, p, l, dims, leaf=True)
            assert np.allclose(D, R.cumulative(x, p, l, dims) - R.cumulative(x, p, l + 1, dims))
            assert np.allclose(np.sum(D ** 2, axis=ax), E[..., l])
        assert np.allclose(R.leakage(x, p, dims), np.eye(L + 1), atol=1e-10)


def test_detail_matches_explicit_tree_loops():
    x = np.random.default_rng(1).standard_normal(81)
    for l in range(4):
        assert np.allclose(R.detail(x, 3, l, leaf=True), _brute_detail_leaf(x, 3, l))


def test_block_mean_expand_pyramid_coarse():
    x = np.random.default_rng(2).standard_normal((2, 9, 27))
    pyr = R.pyramid(x, 3)
    assert [a.shape for a in pyr] == [(2, 9, 27), (2, 3, 9), (2, 1, 3)]
    assert np.allclose(pyr[1][0, 1, 2], x[0, 3:6, 6:9].mean())
    assert np.allclose(R.block_mean(x, 3, 2), pyr[2])
    assert np.allclose(R.coarse(x, 3), pyr[2])                 # rectangular: A^(L) kept 2-D
    assert R.coarse(x[:, :, :9], 3).shape == (2,)              # square: one value per field
    assert np.allclose(R.coarse(x[:, :, :9], 3), x[:, :, :9].mean(axis=(1, 2)))
    assert np.array_equal(R.expand(pyr[1], 3, 1), np.repeat(np.repeat(pyr[1], 3, -1), 3, -2))
    E = R.energies(x, 3)
    assert np.allclose(E[..., -1], np.sum(R.expand(pyr[2], 3, 2) ** 2, axis=(-2, -1)))


@pytest.mark.parametrize("p, n, side", CASES)
def test_block_constant_fields_have_no_fine_energy(p, n, side):
    rng = np.random.default_rng(3)
    for k in (1, 2):
        x1 = R.expand(rng.standard_normal(n // p ** k), p, k)
        x2 = R.expand(rng.standard_normal((2, side // p ** k, side // p ** k)), p, k)
        for x, dims in ((x1, None), (x2, 2)):
            E = R.energies(x, p, dims)
            assert np.all(E[..., :k] < 1e-20 * E.sum(-1, keepdims=True))
            assert np.all(E[..., k] > 0)


def test_haar_energies_match_pywavelets():
    pywt = need("pywt")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 128))
    cD = pywt.wavedec(x, "haar", mode="periodization", axis=-1)   # [cA_L, cD_L, ..., cD_1]
    E = R.energies(x, 2, dims=1)
    L = E.shape[-1] - 1
    assert np.allclose(E[:, -1], np.sum(cD[0] ** 2, -1))
    for l in range(L):
        assert np.allclose(E[:, l], np.sum(cD[L - l] ** 2, -1))
    img = rng.standard_normal((2, 32, 32))
    c2 = pywt.wavedec2(img, "haar", mode="periodization", axes=(-2, -1))
    E2 = R.energies(img, 2)
    L2 = E2.shape[-1] - 1
    assert np.allclose(E2[:, -1], np.sum(c2[0] ** 2, (-2, -1)))
    for l in range(L2):
        assert np.allclose(E2[:, l], sum(np.sum(a ** 2, (-2, -1)) for a in c2[L2 - l]))


def test_leakage_detects_non_orthogonal_bands_and_zero_band_convention():
    x = np.ones(27)                                          # every detail band is zero
    assert np.array_equal(R.leakage(x, 3), np.eye(4))
    x = R.expand(np.random.default_rng(5).standard_normal(9), 3, 1)
    G = R.leakage(x, 3)
    assert G[0, 0] == 1 and np.all(G[0, 1:] == 0) and np.all(np.isfinite(G))


# ----------------------------------------------------------------------------- tree diffusion

@pytest.mark.parametrize("p, n, side", CASES)
def test_tree_step_closed_form(p, n, side):
    for x, dims in _fields(p, n, side)[:4]:
        L = R.levels(x.shape, p, dims)
        lam = R.tree_rates(p, L, tau=0.7, alpha=0.8)
        assert np.allclose(lam, np.exp(-0.7 * p ** (-0.8 * np.arange(L))))
        E0, mass0 = R.energies(x, p, dims), R.observables(x, p, dims)["mass"]
        y = x
        for _ in range(5):
            y = R.tree_step(y, lam, p, dims)
        E5 = R.energies(y, p, dims)
        assert np.allclose(E5[..., :-1], lam ** 10 * E0[..., :-1])
        assert np.allclose(E5[..., -1], E0[..., -1])
        assert np.allclose(R.observables(y, p, dims)["mass"], mass0)


def test_coupled_step():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 27, 27))
    L = 3
    lam, C = R.tree_rates(3, L), R.coupling_matrix(L, seed=1)
    assert C.shape == (L, L) and np.all(np.diag(C) == 0)
    assert set(C[~np.eye(L, dtype=bool)].tolist()) <= {-1, 1}
    assert np.array_equal(C, R.coupling_matrix(L, seed=1))
    for phi in R.PHI:
        assert np.allclose(R.coupled_step(x, lam, C, 0.0, phi, 3), R.tree_step(x, lam, 3),
                           atol=1e-12)
    # eps != 0 against an explicit per-band evaluation of SPEC 3.2 with phi = square.
    X = [R.detail(x, 3, b, leaf=True) for b in range(L)]
    want = R.cumulative(x, 3, L) + sum(
        lam[b] * X[b] + 0.3 * sum(C[b, k] * X[k] ** 2 * np.abs(lam[k] * X[k])
                                  for k in range(L) if k != b) for b in range(L))
    assert np.allclose(R.coupled_step(x, lam, C, 0.3, "square", 3), want)


# ----------------------------------------------------------------------------- grid diffusion

def test_heat_fourier_mode_and_mass():
    H, W, alpha = 16, 24, 0.2
    i, j = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    for kx, ky in [(1, 0), (3, 5), (12, 8)]:
        u = np.cos(2 * np.pi * (kx * j / W + ky * i / H))
        assert np.allclose(R.heat_step(u, alpha), R.heat_mode_factor(kx, ky, H, W, alpha) * u)
    u = np.random.default_rng(7).standard_normal((2, H, W))
    assert np.allclose(R.heat_step(u, alpha).sum((-2, -1)), u.sum((-2, -1)))
    assert np.allclose(R.laplacian(u).sum((-2, -1)), 0)


def test_grayscott():
    uv = I.grayscott((2, 20, 25), seed=3)                      # its own checks: test_init.py
    u, v = uv[:, 0].astype(np.float64), uv[:, 1].astype(np.float64)
    # F = k = 0 and v = 0: u diffuses like heat with alpha = dt * Du, v stays 0.
    uv0 = np.stack([u, np.zeros_like(v)], axis=1)
    out = R.grayscott_step(uv0, F=0.0, k=0.0, dt=0.5)
    assert np.allclose(out[:, 0], R.heat_step(u, 0.5 * 0.16)) and np.all(out[:, 1] == 0)
    # The homogeneous state u = 1, v = 0 is a fixed point for any F, k.
    fixed = np.stack([np.ones((8, 8)), np.zeros((8, 8))])
    for pr in R.GRAYSCOTT_PRESETS.values():
        assert np.allclose(R.grayscott_step(fixed, **pr), fixed)
    assert {"default", "spots", "stripes", "coral", "mitosis", "waves"} <= set(R.GRAYSCOTT_PRESETS)
    assert R.GRAYSCOTT_PRESETS["default"] == dict(F=0.035, k=0.065)


# ----------------------------------------------------------------------------- observables

def test_observables():
    x = np.random.default_rng(8).standard_normal((3, 27, 27))
    x[1, 4, 4] = np.nan
    ob = R.observables(x, 3)
    assert ob["energies"].shape == (3, 4)
    assert list(ob["nonfinite"]) == [False, True, False]
    assert np.allclose(ob["energies"].sum(-1)[[0, 2]], ob["total"][[0, 2]])
    assert np.allclose(ob["mass"][[0, 2]], x[[0, 2]].sum((1, 2)))
    assert ob["min"][0] == x[0].min() and ob["max"][2] == x[2].max()


def test_time_series_observables_closed_form():
    p, L, tau = 3, 4, 0.1
    lam = R.tree_rates(p, L)
    x = np.random.default_rng(9).standard_normal((2, 81))
    steps = np.arange(0, 20)              # short enough that E_0 stays far above round-off
    E, y = [], x
    for _ in steps:
        E.append(R.energies(y, p, 1))
        y = R.tree_step(y, lam, p, 1)
    E = np.array(E)                                               # (T, B, L+1)
    rates = R.contraction_rates(E, steps)
    assert rates.shape == (2, L + 1)
    assert np.allclose(rates[:, :L], 2 * np.log(lam)) and np.allclose(rates[:, L], 0, atol=1e-12)
    # First t with lambda**(2t) < tau (bands whose kill step lies beyond the series give -1).
    t_kill = np.floor(np.log(tau) / (2 * np.log(lam))).astype(int) + 1
    want = np.where(t_kill < len(steps), t_kill, -1)
    assert np.array_equal(R.kill_steps(E, steps, tau)[0], np.append(want, -1))
    D = R.deepest_surviving_band(E, tau)
    assert D.shape == (20, 2)
    alive = lam[None, :] ** (2 * steps[:, None]) > tau
    assert np.array_equal(D[:, 0], np.max(np.where(alive, np.arange(L), -1), axis=1))
    assert np.array_equal(R.deepest_surviving_band(E[:, 0], tau), D[:, 0])
    zero = np.zeros((5, L + 1))
    assert np.all(R.deepest_surviving_band(zero) == -1)
    assert np.all(np.isnan(R.contraction_rates(zero, np.arange(5))))


def test_series_with_no_detail_band():
    """L = 0 (a grid no p divides, SPEC 1): the energies are [E_c] alone; the summaries still work."""
    E = np.array([[4.0], [3.0], [2.0]])
    assert R.deepest_surviving_band(E).tolist() == [-1, -1, -1]
    assert R.kill_steps(E, np.arange(3)).tolist() == [-1]
    assert R.contraction_rates(E, np.arange(3)).shape == (1,)
    assert R.energies(np.ones((7, 5)), 2).tolist() == [35.0]


def test_contraction_rates_stderr_matches_polyfit_covariance():
    """The slope and its standard error equal np.polyfit's (cov='unscaled' times the residual variance),
    per column; bands that underflow to 0 are fitted over their positive steps."""
    rng = np.random.default_rng(3)
    t = np.arange(0, 60, 4.0)
    E = np.exp(-0.05 * t)[:, None, None] * np.exp(rng.normal(0, 0.02, (len(t), 2, 4)))
    E[9:, 1, 0] = 0.0                       # underflowed: fitted over the first 9 steps
    E[2:, 0, 3] = 0.0                       # 2 points: slope, no standard error
    slope, se = R.contraction_rates(E, t, stderr=True)
    assert np.array_equal(slope, R.contraction_rates(E, t))
    for b in range(2):
        for l in range(4):
            ok = E[:, b, l] > 0
            if ok.sum() < 3:
                assert np.isfinite(slope[b, l]) and np.isnan(se[b, l])
                continue
            p, cov = np.polyfit(t[ok], np.log(E[ok, b, l]), 1, cov="unscaled")
            res = np.log(E[ok, b, l]) - np.polyval(p, t[ok])
            assert slope[b, l] == pytest.approx(p[0], rel=1e-10)
            assert se[b, l] == pytest.approx(np.sqrt(res @ res / (ok.sum() - 2) * cov[0, 0]), rel=1e-8)
