"""NumPy conventions of device arrays and out= (issue 11, first part): np.asarray is an explicit copy,
leading-axis indexing is a view, out= writes into the caller's array, float64 input is computed and
returned in float32."""
import numpy as np
import pytest

import vkbands


def test_asarray_reads_back_a_copy(ctx):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    a = ctx.array(x)
    got = np.asarray(a)
    np.testing.assert_array_equal(got, x)
    got[0, 0] = 99                                    # a copy: the device array is unchanged
    np.testing.assert_array_equal(a.numpy(), x)
    assert np.asarray(a, dtype=np.float64).dtype == np.float64
    assert (len(a), a.shape, a.ndim, a.size, a.nbytes, a.dtype) == (3, (3, 4), 2, 12, 48, np.float32)


def test_leading_axis_indexing_is_a_view(ctx):
    x = np.arange(64 * 4, dtype=np.float32).reshape(64, 4)
    a = ctx.array(x)
    np.testing.assert_array_equal(a[5].numpy(), x[5])
    np.testing.assert_array_equal(a[-1].numpy(), x[-1])
    np.testing.assert_array_equal(a[16:48].numpy(), x[16:48])
    np.testing.assert_array_equal(a[60:].numpy(), x[60:])
    view = a[16:32]
    view.fill(0.0)                                    # writes through: the same buffer
    expected = x.copy()
    expected[16:32] = 0
    np.testing.assert_array_equal(a.numpy(), expected)
    with pytest.raises(IndexError, match="out of range"):
        a[64]
    with pytest.raises(TypeError, match="step 1"):
        a[::2]


def test_add_out_writes_into_the_given_array(ctx):
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    a, out = ctx.array(x), ctx.empty(1000)
    assert vkbands.add(a, a, out=out) is out
    np.testing.assert_array_equal(out.numpy(), 2 * x)
    assert vkbands.add(x, x, out=out) is out          # NumPy inputs, device output: no readback
    vkbands.add(a, a, out=a)                          # in place
    np.testing.assert_array_equal(a.numpy(), 2 * x)
    with pytest.raises(ValueError, match=r"out: needs shape \(1000,\) float32"):
        vkbands.add(x, x, out=ctx.empty(999))
    with pytest.raises(TypeError, match="out: must be a vkbands DeviceArray"):
        vkbands.add(x, x, out=np.empty(1000, np.float32))


def test_energies_out(ctx):
    x = np.random.default_rng(1).standard_normal((5, 81)).astype(np.float32)
    out = ctx.empty((5, 5))
    assert vkbands.energies(x, arity=3, dims=1, out=out) is out
    np.testing.assert_allclose(out.numpy(), vkbands.reference.energies(x, 3, dims=1), rtol=2e-5, atol=1e-6)


def test_float64_is_computed_and_returned_in_float32(ctx):
    x = np.random.default_rng(2).standard_normal(256)
    got = vkbands.add(x, x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, (x.astype(np.float32) * 2))
    E = vkbands.energies(x.reshape(1, 256), arity=2, dims=1)
    assert E.dtype == np.float32


def test_decompose_out_writes_into_the_given_bands(ctx):
    rng = np.random.default_rng(4)
    x, y = (rng.standard_normal((3, 81)).astype(np.float32) for _ in range(2))
    bands = vkbands.decompose(ctx.array(x), arity=3, dims=1)
    assert vkbands.decompose(ctx.array(y), arity=3, dims=1, out=bands) is bands
    np.testing.assert_allclose(vkbands.reconstruct(bands).numpy(), y, atol=1e-5)
    np.testing.assert_allclose(np.asarray(bands.energies()), vkbands.reference.energies(y, 3, dims=1),
                               rtol=2e-5, atol=1e-6)
    with pytest.raises(ValueError, match="out: needs open device-backed Bands"):
        vkbands.decompose(x[:2], arity=3, dims=1, out=bands)
    bands.close()
