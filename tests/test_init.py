"""Checks of vkbands.init: seeding, dtypes, the band purity of SPEC section 4 and the Gray-Scott start (3.3)."""

import numpy as np
import pytest

from vkbands import init as I
from vkbands import reference as R

# (shape, arity, dims): 1-D, batched 1-D, 2-D, batched 2-D, rectangular 2-D.
SHAPES = [((64,), 2, None), ((3, 81), 3, 1), ((16, 16), 4, None), ((2, 25, 25), 5, None),
          ((2, 9, 27), 3, 2)]


def _std(x, dims):
    return np.asarray(x, np.float64).std(axis=tuple(range(-R.infer_dims(x.shape, dims), 0)))


@pytest.mark.parametrize("shape, p, dims", SHAPES)
@pytest.mark.parametrize("style", I.STYLES)
def test_band_pure_energy_only_in_its_band(shape, p, dims, style):
    L = R.levels(shape, p, dims)
    for band in range(L):
        x = I.band_pure(shape, p, band, style=style, seed=band, scale=2.5, sparse_m=1, dims=dims)
        assert x.shape == shape and x.dtype == np.float32
        assert np.allclose(_std(x, dims), 2.5, rtol=1e-5)
        E = R.energies(x, p, dims)
        total = E.sum(-1, keepdims=True)
        own = np.zeros(L + 1, bool)
        own[band] = True
        if style == "mix":
            mb = band + 1 if band + 1 < L else band - 1
            own[mb] = True
            assert np.allclose(E[..., mb] / E[..., band], 0.1 ** 2, rtol=1e-5)
        assert np.all(E[..., ~own] < 1e-10 * total)


def test_band_pure_styles_structure():
    x = I.band_pure((27,), 3, 0, style="haar", scale=1.0)
    blocks = x.reshape(9, 3)
    assert np.allclose(blocks, blocks[0]) and blocks[0, 0] == -blocks[0, 1] and blocks[0, 2] == 0
    x = I.band_pure((2, 81), 3, 1, style="sparse", sparse_m=2, dims=1)
    parents = np.abs(x.reshape(2, 9, 9)).sum(-1)              # level-2 parent blocks of 9 leaves
    assert np.all((parents > 0).sum(-1) == 2)
    r = I.band_pure((81, 81), 3, 0, style="randphase", seed=1)
    assert not np.array_equal(r, I.band_pure((81, 81), 3, 0, style="haar"))
    assert np.array_equal(r, I.band_pure((81, 81), 3, 0, style="randphase", seed=1))
    m = I.band_pure((243,), 3, 2, style="mix", mix_band=4, mix_eps=0.5)
    E = R.energies(m, 3)
    assert np.isclose(E[4] / E[2], 0.25)


@pytest.mark.parametrize("kwargs, match", [
    (dict(band=4), r"band .*0\.\.3.*got 4"),
    (dict(band=-1), r"band .*got -1"),
    (dict(band=0, style="wavy"), r"style .*'haar'.*'mix'.*got 'wavy'"),
    (dict(band=0, style="sparse", sparse_m=100), r"sparse_m .*1\.\.27.*got 100"),
    (dict(band=1, style="mix", mix_band=1), r"mix_band .*differ.*1"),
    (dict(band=1, style="mix", mix_band=7), r"mix_band .*0\.\.3.*got 7"),
])
def test_band_pure_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        I.band_pure((81,), 3, **kwargs)
    with pytest.raises(ValueError, match=r"shape \(80,\): no detail band with arity 3 \(L = 0"):
        I.band_pure((80,), 3, 0)


@pytest.mark.parametrize("shape, p, dims", [((54, 81), 3, None), ((2, 96, 96), 2, None), ((5, 3 ** 4), 3, 1),
                                            ((3, 96), 2, 1)])
def test_band_pure_any_size(shape, p, dims):
    """Band-pure states of any size (issue 11): all energy in the chosen band, none in the coarse grid."""
    L = R.levels(shape, p, dims)
    for band in range(L):
        for style in ("haar", "randphase", "sparse"):
            x = I.band_pure(shape, p, band, style=style, seed=band, dims=dims)
            assert x.shape == shape
            E = R.energies(x, p, dims)
            assert np.all(E[..., band] > 0.999 * E.sum(-1))
            assert np.allclose(np.delete(E, band, axis=-1), 0.0, atol=1e-9 * E.sum())
    if L >= 2:
        m = I.band_pure(shape, p, 0, style="mix", mix_band=1, mix_eps=0.5, dims=dims)
        E = R.energies(m, p, dims)
        assert np.allclose(E[..., 1] / E[..., 0], 0.25, rtol=1e-6)
    s = I.smooth(shape, arity=p, cutoff_level=min(1, L - 1), seed=1, dims=dims)
    assert s.shape == shape and np.all(np.isfinite(s))


def test_random_impulse_smooth():
    r = I.random((4, 27, 27), seed=5, scale=3.0)
    assert r.dtype == np.float32 and np.isclose(r.std(), 3.0, rtol=0.05)
    assert np.array_equal(r, I.random((4, 27, 27), seed=5, scale=3.0))
    assert not np.array_equal(r, I.random((4, 27, 27), seed=6, scale=3.0))

    imp = I.impulse((3, 81), count=4, seed=1, amplitude=2.0, dims=1)
    assert imp.dtype == np.float32 and np.all((imp == 2.0).sum(-1) == 4)
    assert np.all((imp != 0).sum(-1) == 4)
    with pytest.raises(ValueError, match=r"count .*1\.\.81.*got 82"):
        I.impulse((81,), count=82)

    # Low-pass: bands finer than the cutoff carry little energy, unlike white noise.
    for shape in [(729,), (2, 81, 81)]:
        s = I.smooth(shape, arity=3, cutoff_level=2, seed=2)
        assert s.dtype == np.float32 and np.allclose(_std(s, None), 1.0, rtol=1e-5)
        frac = R.energies(s, 3) / R.energies(s, 3).sum(-1, keepdims=True)
        white = R.energies(I.random(shape, seed=2), 3)
        white = white / white.sum(-1, keepdims=True)
        assert np.all(frac[..., 0] < 0.1) and np.all(white[..., 0] > 0.5)
        assert np.all(frac[..., :2].sum(-1) < 0.6 * white[..., :2].sum(-1))
    with pytest.raises(ValueError, match=r"cutoff_level .*0\.\.5.*got 6"):
        I.smooth((729,), 3, cutoff_level=6)


def test_grayscott_start():
    uv = I.grayscott((2, 20, 25), seed=3)
    assert uv.shape == (2, 2, 20, 25) and uv.dtype == np.float32
    assert I.grayscott((20, 25)).shape == (2, 20, 25)
    assert np.array_equal(uv, I.grayscott((2, 20, 25), seed=3))
    u, v = uv[:, 0].astype(np.float64), uv[:, 1].astype(np.float64)
    assert np.all(np.abs(u - np.where(v > 0, 0.5, 1.0)) <= 0.0100001 * np.where(v > 0, 0.5, 1.0))
    assert (v > 0).sum() == 2 * 4 * 4                          # side min(H, W) // 5 = 4
    with pytest.raises(ValueError, match=r"patch .*got 50"):
        I.grayscott((16, 16), patch=50)
