"""vkbands.wavedec / waverec / wavedec2 / waverec2 against PyWavelets (haar, periodization)."""
import numpy as np
import pytest

import vkbands
from vkbands.engine import DeviceArray
from tests._deps import need

pywt = need("pywt")

W, M = "haar", "periodization"


def _data(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _close(got, want, scale):
    """Equal to PyWavelets within 1e-6 relative; atol a few float32 ulps of the data scale (details near 0)."""
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=2e-6 * scale)


def _same_coeffs(got, want, scale, two_d):
    assert isinstance(got, list) and len(got) == len(want)
    _close(got[0], want[0], scale)
    for g, w in zip(got[1:], want[1:]):
        if two_d:
            assert isinstance(g, tuple) and len(g) == 3
            for gi, wi in zip(g, w):
                _close(gi, wi, scale)
        else:
            _close(g, w, scale)


def _scale(x):
    return float(np.abs(x).max()) * 4          # coarse coefficients grow up to 2**(L/2) x the data


@pytest.mark.parametrize("shape,axis,level", [
    ((8,), -1, None), ((8,), -1, 1), ((64,), -1, None), ((1024,), -1, None), ((1024,), -1, 3),
    ((5, 64), -1, None), ((2, 3, 32), -1, 2), ((64, 5), 0, None), ((3, 16, 4), 1, None), ((3, 16, 4), -2, 2),
    ((1,), -1, None), ((5,), -1, None), ((37,), -1, None), ((4, 100), -1, None), ((6, 7, 2), 1, None)])
def test_wavedec_equals_pywt(shape, axis, level):
    x = _data(shape)
    want = pywt.wavedec(x.astype(np.float64), W, mode=M, level=level, axis=axis)
    got = vkbands.wavedec(x, W, mode=M, level=level, axis=axis)
    _same_coeffs(got, want, _scale(x), False)
    rec = vkbands.waverec(got, W, mode=M, axis=axis)
    _close(rec, pywt.waverec(want, W, mode=M, axis=axis), _scale(x))
    ax = axis % len(shape)
    np.testing.assert_allclose(np.take(rec, range(shape[ax]), axis=ax), x, rtol=1e-5, atol=1e-5 * _scale(x))


@pytest.mark.parametrize("shape,axes,level", [
    ((32, 32), (-2, -1), None), ((32, 32), (-2, -1), 1), ((64, 128), (-2, -1), None), ((48, 48), (-2, -1), 4),
    ((48, 48), (-2, -1), None), ((2, 3, 32, 32), (-2, -1), None), ((2, 3, 32, 32), (-2, -1), 2),
    ((16, 3, 8), (0, 2), None), ((8, 16, 5), (1, 0), None), ((32, 32), (-1, -2), 3), ((4, 6, 10, 3), (2, 1), None),
    ((1, 1), (0, 1), None), ((27, 50), (-2, -1), None)])
def test_wavedec2_equals_pywt(shape, axes, level):
    x = _data(shape, 1)
    want = pywt.wavedec2(x.astype(np.float64), W, mode=M, level=level, axes=axes)
    got = vkbands.wavedec2(x, W, mode=M, level=level, axes=axes)
    _same_coeffs(got, want, _scale(x), True)
    rec = vkbands.waverec2(got, W, mode=M, axes=axes)
    _close(rec, pywt.waverec2(want, W, mode=M, axes=axes), _scale(x))
    idx = tuple(slice(0, n) for n in shape)
    np.testing.assert_allclose(rec[idx], x, rtol=1e-5, atol=1e-5 * _scale(x))


def test_round_trips_to_float32_tolerance():
    x = _data((3, 1024), 2)
    np.testing.assert_allclose(vkbands.waverec(vkbands.wavedec(x)), x, rtol=1e-5, atol=1e-5)
    y = _data((2, 64, 128), 3)
    np.testing.assert_allclose(vkbands.waverec2(vkbands.wavedec2(y)), y, rtol=1e-5, atol=1e-5)


def test_pywt_wavelet_and_mode_objects():
    x = _data((4, 16))
    got = vkbands.wavedec(x, pywt.Wavelet("haar"), mode=pywt.Modes.periodization)
    _same_coeffs(got, pywt.wavedec(x.astype(np.float64), W, mode=M), _scale(x), False)
    with pytest.raises(NotImplementedError, match="mode='symmetric'"):
        vkbands.wavedec(x, W, mode=pywt.Modes.symmetric)


def test_defaults_and_float64_input():
    x = np.random.default_rng(4).standard_normal((16, 16))          # float64: computed and returned in float32
    got = vkbands.wavedec2(x)
    want = pywt.wavedec2(x, W, mode=M)
    assert len(got) == len(want) == 5 and got[0].dtype == np.float32
    _same_coeffs(got, want, 4 * 16, True)


def test_level_zero_and_single_coefficient():
    x = _data((3, 8))
    (c,) = vkbands.wavedec(x, level=0)
    np.testing.assert_array_equal(c, x)
    np.testing.assert_array_equal(vkbands.waverec([x]), x)
    (c2,) = vkbands.wavedec2(x, level=0)
    np.testing.assert_array_equal(c2, x)
    np.testing.assert_array_equal(vkbands.waverec2([x]), x)


def test_none_details_are_zeros():
    x = _data((32, 32))
    c = pywt.wavedec2(x, W, mode=M, level=2)
    c[1] = (None, c[1][1], None)
    _close(vkbands.waverec2(c, W, M), pywt.waverec2(c, W, M), _scale(x))
    d = pywt.wavedec(x[0], W, mode=M, level=3)
    d[2] = None
    _close(vkbands.waverec(d, W, M), pywt.waverec(d, W, M), _scale(x))


def test_device_in_device_out(ctx):
    x = _data((2, 64, 64))
    X = vkbands.asarray(x)
    coeffs = vkbands.wavedec2(X, W, M, level=3)
    try:
        assert isinstance(coeffs[0], DeviceArray) and all(isinstance(c, DeviceArray) for d in coeffs[1:] for c in d)
        want = pywt.wavedec2(x.astype(np.float64), W, mode=M, level=3)
        got = [coeffs[0].numpy()] + [tuple(c.numpy() for c in d) for d in coeffs[1:]]
        _same_coeffs(got, want, _scale(x), True)
        R = vkbands.waverec2(coeffs, W, M)
        assert isinstance(R, DeviceArray) and R.shape == x.shape
        np.testing.assert_allclose(R.numpy(), x, rtol=1e-5, atol=1e-5)
        c1 = vkbands.wavedec(X, W, M, axis=1)
        assert all(isinstance(c, DeviceArray) for c in c1)
        _same_coeffs([c.numpy() for c in c1], pywt.wavedec(x.astype(np.float64), W, mode=M, axis=1), _scale(x), False)
        R1 = vkbands.waverec(c1, W, M, axis=1)
        assert isinstance(R1, DeviceArray)
        np.testing.assert_allclose(R1.numpy(), x, rtol=1e-5, atol=1e-5)
        R.close(), R1.close()
    finally:
        X.close()
        for c in coeffs[1:]:
            for a in c:
                a.close()
        coeffs[0].close()


def test_records_into_an_active_recorder(ctx):
    x = _data((64,))
    X = vkbands.asarray(x)
    with ctx.recorder():
        coeffs = vkbands.wavedec(X)
        R = vkbands.waverec(coeffs)
    np.testing.assert_allclose(R.numpy(), x, rtol=1e-5, atol=1e-5)
    X.close(), R.close()


@pytest.mark.parametrize("fn,args", [
    (vkbands.wavedec, (np.ones(8),)), (vkbands.wavedec2, (np.ones((8, 8)),)),
    (vkbands.waverec, ([np.ones(4), np.ones(4)],)), (vkbands.waverec2, ([np.ones((4, 4)), (np.ones((4, 4)),) * 3],))])
def test_other_wavelets_and_modes_are_not_implemented(fn, args):
    with pytest.raises(NotImplementedError, match="haar.*periodization"):
        fn(*args, "db2", "periodization")
    with pytest.raises(NotImplementedError, match="mode='symmetric'.*periodization"):
        fn(*args, "haar", "symmetric")
    with pytest.raises(NotImplementedError, match="wavelet='db1'"):
        fn(*args, pywt.Wavelet("db1"), "periodization")  # a pywt.Wavelet is judged by its name


def test_bad_level_names_the_maximum():
    with pytest.raises(ValueError, match="maximum .* is 6"):
        vkbands.wavedec(np.ones(64), level=7)
    with pytest.raises(ValueError, match="maximum .* is 5"):
        vkbands.wavedec2(np.ones((48, 64)), level=6)
    with pytest.raises(ValueError, match="too low"):
        vkbands.wavedec(np.ones(64), level=-1)


def test_bad_axes_and_shapes():
    with pytest.raises(np.exceptions.AxisError if hasattr(np, "exceptions") else np.AxisError):
        vkbands.wavedec(np.ones(8), axis=1)
    with pytest.raises(ValueError, match="unique"):
        vkbands.wavedec2(np.ones((8, 8)), axes=(0, -2))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        vkbands.wavedec2(np.ones(8))
    with pytest.raises(ValueError, match="shape mismatch"):
        vkbands.waverec([np.ones(4), np.ones(6)])
    with pytest.raises(ValueError, match="shape mismatch"):
        vkbands.waverec2([np.ones((4, 4)), (np.ones((2, 2)),) * 3])


def test_more_rows_than_one_grid_dimension_holds():
    x = _data((140000, 2), 5)                      # 70000 rows of blocks: the grid spreads them over y and z
    want = pywt.wavedec2(x.astype(np.float64), W, mode=M)
    got = vkbands.wavedec2(x, W, M)
    _same_coeffs(got, want, _scale(x), True)
    np.testing.assert_allclose(vkbands.waverec2(got, W, M), x, rtol=1e-5, atol=1e-5 * _scale(x))
