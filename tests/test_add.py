"""add.comp and vkbands.add: bit-exact against NumPy float32 addition."""
import numpy as np
import pytest

import vkbands
from vkbands.engine import DeviceArray


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 2**20 + 3])
def test_add_bit_exact(n):
    rng = np.random.default_rng(n)
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    c = vkbands.add(a, b)
    assert isinstance(c, np.ndarray) and c.dtype == np.float32 and c.shape == (n,)
    np.testing.assert_array_equal(c, a + b)


def test_add_keeps_shape_and_device_in_device_out(ctx):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    A = vkbands.asarray(a)
    C = vkbands.add(A, A)
    try:
        assert isinstance(C, DeviceArray) and C.shape == (3, 4)
        np.testing.assert_array_equal(C.numpy(), a + a)
    finally:
        A.close(), C.close()


def test_add_records_into_active_recorder(ctx):
    a = ctx.array(np.ones(1000, np.float32))
    with ctx.recorder() as rec:
        c = vkbands.add(a, a)
        d = vkbands.add(c, a)          # depends on c: the recorder must insert a barrier
        assert rec.submitted == 0      # only recorded so far
    assert rec.barrier_count == 1
    np.testing.assert_array_equal(d.numpy(), np.full(1000, 3, np.float32))
    for x in (a, c, d):
        x.close()


def test_add_bad_inputs():
    with pytest.raises(ValueError, match=r"same shape.*\(3,\).*\(4,\)"):
        vkbands.add(np.ones(3), np.ones(4))
    A = vkbands.asarray(np.ones(3, np.int32))
    with pytest.raises(TypeError, match="a: dtype int32.*float32"):
        vkbands.add(A, A)
    A.close()
    with pytest.raises(TypeError, match="complex"):
        vkbands.add(np.ones(3, np.complex64), np.ones(3))


def test_numpy_inputs_refused_inside_recording(ctx):
    with ctx.recorder():
        with pytest.raises(TypeError, match="inside a recording"):
            vkbands.add(np.ones(3), np.ones(3))
