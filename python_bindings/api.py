"""Elementary NumPy-facing functions: device arrays and ``add``."""
from __future__ import annotations

import numpy as np

from vkbands.engine import DeviceArray, as_host_array, default_context

from vkbands.engine.limits import row_ranges

from ._call import Call

_ADD_VEC4_PER_INVOCATION = 4


def asarray(x, dtype=None, ctx=None) -> DeviceArray:
    """A device copy of ``x`` (NumPy array or anything array-like); a DeviceArray is returned as is.

    Non-contiguous input is copied; float64 is cast to float32 and int64 to int32 (see
    ``vkbands.engine.as_host_array`` for what is refused)."""
    if isinstance(x, DeviceArray):
        if dtype is not None and np.dtype(dtype) != x.dtype:
            raise TypeError(f"x is a device array of dtype {x.dtype}; dtype={np.dtype(dtype)} would need a cast")
        return x
    return (ctx or default_context()).array(as_host_array(x, dtype, "x"))


def add(a, b, out=None):
    """``a + b`` for float32 arrays of equal shape (``add.comp``). NumPy in, NumPy out; device in, device
    out; ``out``: a float32 DeviceArray of that shape to write into (returned; may be ``a`` or ``b``)."""
    shape_a, shape_b = np.shape(a) if not isinstance(a, DeviceArray) else a.shape, \
        np.shape(b) if not isinstance(b, DeviceArray) else b.shape
    if tuple(shape_a) != tuple(shape_b):
        raise ValueError(f"a and b must have the same shape; got a.shape={tuple(shape_a)}, b.shape={tuple(shape_b)}")
    call = Call(a=a, b=b)
    A, B = call.arrays["a"], call.arrays["b"]
    for name, arr in (("a", A), ("b", B)):
        if arr.dtype != np.float32:
            call.close()
            raise TypeError(f"{name}: dtype {arr.dtype} not supported by add; allowed: float32")
    out = call.output(out, A.shape, np.float32)
    kernel = call.ctx.kernel("add.comp", spec={"VEC_PER_INVOCATION": _ADD_VEC4_PER_INVOCATION})
    per_group = kernel.local_size[0] * _ADD_VEC4_PER_INVOCATION * 4
    flat = [arr.reshape(-1) for arr in (A, B, out)]
    # arrays over maxStorageBufferRange are added in aligned ranges of whole vec4s (no copy)
    for start, stop in _vec4_ranges(call.ctx, A.size):
        a, b, c = (f.rows(start, stop) for f in flat)
        n = stop - start
        call.rec.dispatch(kernel, kernel.grid(max(1, -(-n // per_group))), a, b, c, push={"n": n})
    return call.result(out)


def _vec4_ranges(ctx, n):
    """Element ranges of ``add`` within the binding limits; all but the last hold whole vec4s."""
    ranges = row_ranges(ctx, -(-n // 4), 16, what="add")
    return [(4 * s, min(4 * e, n)) for s, e in ranges]
