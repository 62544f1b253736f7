"""PyWavelets-compatible multilevel Haar transforms: ``wavedec``, ``waverec``, ``wavedec2``, ``waverec2``.

Drop-in replacements for ``pywt.wavedec`` & co. for ``wavelet="haar"`` with ``mode="periodization"``
(the orthonormal Haar transform; other wavelets and modes raise ``NotImplementedError``): same
signatures, same coefficient order and layout (``[cA_n, cD_n, ..., cD_1]``; 2-D details as
``(cH, cV, cD)`` tuples), any ``axis`` / ``axes``, batched over the other axes, odd lengths extended
by one sample as PyWavelets does. One level is one dispatch (``haar_dwt.comp`` / ``haar_idwt.comp``
along an axis; ``haar2_dwt.comp`` / ``haar2_idwt.comp`` for a level of 2 x 2 blocks: rows then
columns), and all levels are recorded in one submission. Computed in float32 (float64 input is cast;
results are float32). NumPy in, NumPy out; DeviceArrays in, DeviceArrays out.

Differences from PyWavelets: ``level`` above ``pywt.dwt_max_level`` is a ValueError naming the
maximum (PyWavelets only warns).
"""
from __future__ import annotations

import math

import numpy as np

from vkbands.engine import DeviceArray, LimitError

from ._call import Call

try:
    from numpy.exceptions import AxisError
except ImportError:                      # NumPy < 1.25
    from numpy import AxisError

SUPPORTED = "wavelet='haar' with mode='periodization'"

__all__ = ["wavedec", "waverec", "wavedec2", "waverec2", "dwt_max_level"]


def _check(wavelet, mode, fn):
    name = getattr(wavelet, "name", wavelet)
    if name != "haar":
        raise NotImplementedError(f"{fn}: wavelet={name!r} is not supported; vkbands supports {SUPPORTED} only")
    mode_name = _mode_name(mode)
    if mode_name != "periodization":
        raise NotImplementedError(f"{fn}: mode={mode_name!r} is not supported; vkbands supports {SUPPORTED} only")


def _mode_name(mode):
    """A mode's name; PyWavelets' integer constants (``pywt.Modes.periodization``) by their name."""
    if isinstance(mode, (int, np.integer)) and not isinstance(mode, bool):
        try:
            import pywt
            return next((m for m in pywt.Modes.modes if getattr(pywt.Modes, m) == int(mode)), mode)
        except ImportError:
            return mode
    return getattr(mode, "name", mode)


def dwt_max_level(n: int) -> int:
    """``pywt.dwt_max_level(n, "haar")``: floor(log2(n)) (0 for n = 1)."""
    n = int(n)
    return n.bit_length() - 1 if n >= 1 else 0


def _level(sizes, level, fn):
    if any(int(s) < 1 for s in sizes):
        raise ValueError(f"{fn}: the transformed axes have length(s) {tuple(int(s) for s in sizes)}; each needs "
                         "at least 1 sample")
    max_level = min(dwt_max_level(s) for s in sizes)
    if level is None:
        return max_level
    level = int(level)
    if level < 0:
        raise ValueError(f"{fn}: level={level} is too low; levels run from 0 to {max_level} (the maximum for "
                         f"length(s) {tuple(int(s) for s in sizes)})")
    if level > max_level:
        raise ValueError(f"{fn}: level={level} is too high; the maximum for length(s) "
                         f"{tuple(int(s) for s in sizes)} is {max_level} (pywt.dwt_max_level)")
    return level


def _shape_of(x):
    return tuple(x.shape) if isinstance(x, DeviceArray) else np.shape(x)


def _axis(axis, ndim, fn):
    try:
        axis = int(axis)
    except TypeError:
        raise TypeError(f"{fn}: axis must be an int, got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise AxisError(f"{fn}: axis {axis} is out of bounds for an array of dimension {ndim}")
    return axis % ndim


def _axes2(axes, ndim, fn):
    axes = tuple(axes)
    if len(axes) != 2:
        raise ValueError(f"{fn}: expected 2 axes, got axes={axes}")
    if ndim < 2:
        raise ValueError(f"{fn}: expected input data to have at least 2 dimensions, got {ndim}")
    ax = tuple(_axis(a, ndim, fn) for a in axes)
    if ax[0] == ax[1]:
        raise ValueError(f"{fn}: the axes must be unique, got axes={axes}")
    return ax


def _float32(call, names):
    for name in names:
        arr = call.arrays[name]
        if arr is not None and arr.dtype != np.float32:
            call.close()
            raise TypeError(f"{name}: dtype {arr.dtype} not supported; allowed: float32 (float64 NumPy input is "
                            "cast to float32)")


def _dispatch(call, shader, total, *arrays, **push):
    kernel = call.ctx.kernel(shader)
    n_groups = max(1, -(-total // kernel.local_size[0]))
    call.rec.dispatch(kernel, kernel.grid(n_groups), *arrays, push={**push, "total": total})


def _copy(call, arr):
    out = call.empty(arr.shape, np.float32)
    if arr.nbytes:
        call.rec.copy(arr, out)
    return out


def _zeros(call, shape):
    out = call.empty(shape, np.float32)
    if out.nbytes:
        call.rec.fill(out, 0)
    return out


def _results(call, outs, nested):
    """Submit and return ``outs`` (a flat list) re-nested as [a, (h, v, d), ...] or [a, d, ...]."""
    vals = call.result(*outs)
    vals = list(vals) if isinstance(vals, tuple) else [vals]
    if not nested:
        return vals
    return [vals[0]] + [tuple(vals[i:i + 3]) for i in range(1, len(vals), 3)]


# ---------------------------------------------------------------------------------------- 1-D
def _dwt1(call, x, ax):
    s = x.shape
    n, inner = s[ax], math.prod(s[ax + 1:])
    m = (n + 1) // 2
    shape = s[:ax] + (m,) + s[ax + 1:]
    a, d = call.empty(shape), call.empty(shape)
    total = math.prod(shape)
    if total:
        _dispatch(call, "haar_dwt.comp", total, x, a, d, n=n, m=m, inner=inner)
    return a, d


def _idwt1(call, a, d, ax):
    s = d.shape
    m, inner, na = s[ax], math.prod(s[ax + 1:]), a.shape[ax]
    shape = s[:ax] + (2 * m,) + s[ax + 1:]
    x = call.empty(shape)
    total = math.prod(s)
    if total:
        _dispatch(call, "haar_idwt.comp", total, a, d, x, m=m, na=na, inner=inner)
    return x


def wavedec(data, wavelet="haar", mode="periodization", level=None, axis=-1):
    """``pywt.wavedec`` for ``wavelet="haar"``, ``mode="periodization"``: ``[cA_n, cD_n, ..., cD_1]``
    along ``axis``, batched over the other axes. ``level=None``: ``pywt.dwt_max_level`` (floor(log2 n));
    a level above it is a ValueError naming the maximum. NumPy in -> NumPy (float32) out; DeviceArray in
    -> DeviceArrays out."""
    _check(wavelet, mode, "wavedec")
    shape = _shape_of(data)
    if len(shape) < 1:
        raise ValueError("wavedec: data must have at least 1 dimension")
    ax = _axis(axis, len(shape), "wavedec")
    level = _level((shape[ax],), level, "wavedec")
    call = Call(data=data)
    _float32(call, ["data"])
    x = call.arrays["data"]
    if level == 0:
        return _results(call, [_copy(call, x)], False)
    details, a = [], x
    for _ in range(level):
        a, d = _dwt1(call, a, ax)
        details.append(d)
    return _results(call, [a] + details[::-1], False)


def waverec(coeffs, wavelet="haar", mode="periodization", axis=-1):
    """``pywt.waverec`` for ``wavelet="haar"``, ``mode="periodization"``: the inverse of :func:`wavedec`
    (an approximation one sample longer than the next detail is trimmed, as PyWavelets does; ``None``
    coefficients are zeros). NumPy in -> NumPy out; DeviceArrays in -> DeviceArray out."""
    _check(wavelet, mode, "waverec")
    if not isinstance(coeffs, (list, tuple)):
        raise ValueError("waverec: expected a sequence of coefficient arrays [cA_n, cD_n, ..., cD_1]")
    if len(coeffs) < 1:
        raise ValueError("waverec: coefficient list too short (minimum 1 array required)")
    if coeffs[0] is None and (len(coeffs) < 2 or coeffs[1] is None):
        raise ValueError("waverec: cA_n and cD_n cannot both be None")
    shapes = [None if c is None else _shape_of(c) for c in coeffs]
    ref = next(s for s in shapes if s is not None)
    if len(ref) < 1:
        raise ValueError("waverec: coefficients must have at least 1 dimension")
    ax = _axis(axis, len(ref), "waverec")
    # shapes, as pywt.waverec checks them, before anything is uploaded
    a_shape = shapes[0]
    for level, d_shape in enumerate(shapes[1:], 1):
        if a_shape is not None and d_shape is not None:
            other_a = a_shape[:ax] + a_shape[ax + 1:]
            other_d = d_shape[:ax] + d_shape[ax + 1:]
            if len(a_shape) != len(d_shape) or other_a != other_d or a_shape[ax] not in (d_shape[ax],
                                                                                        d_shape[ax] + 1):
                raise ValueError(f"waverec: coefficient shape mismatch at level {len(coeffs) - level}: cA has "
                                 f"shape {a_shape}, cD has shape {d_shape} (along axis {ax} cA may be as long "
                                 "as cD or one longer)")
        base = d_shape if d_shape is not None else a_shape
        a_shape = base[:ax] + (2 * base[ax],) + base[ax + 1:]
    call = Call(**{f"coeffs[{i}]": c for i, c in enumerate(coeffs)})
    names = list(call.arrays)
    _float32(call, names)
    arrs = [call.arrays[n] for n in names]
    if len(arrs) == 1:
        return _results(call, [_copy(call, arrs[0])], False)[0]
    a = arrs[0]
    for d in arrs[1:]:
        if d is None:
            d = _zeros(call, a.shape)
        if a is None:
            a = _zeros(call, d.shape)
        a = _idwt1(call, a, d, ax)
    return _results(call, [a], False)[0]


# ---------------------------------------------------------------------------------------- 2-D
def _dispatch_rows(call, shader, cols, rows, mid, inner, vec4, *arrays, **push):
    """A 2-D level: x over ``cols`` output columns (groups of four with ``vec4``), y and z over ``rows``
    output rows (see haar2_dwt.comp)."""
    kernel = call.ctx.kernel(shader, spec={"MID": mid, "INNER": inner}, defines={"VEC4": 1} if vec4 else None)
    cols = cols // 4 if vec4 else cols
    _, max_y, max_z = (int(v) for v in call.ctx.limits.maxComputeWorkGroupCount)
    max_x = int(call.ctx.limits.maxComputeWorkGroupCount[0])
    gx = -(-cols // kernel.local_size[0])
    gy = min(rows, max_y)
    gz = -(-rows // gy)
    if gx > max_x or gz > max_z:
        raise LimitError(f"{shader}: {cols} columns x {rows} rows of 2 x 2 blocks exceed this device's "
                         f"maxComputeWorkGroupCount; split the batch into smaller parts")
    call.rec.dispatch(kernel, (gx, gy, gz), *arrays, push={**push, "rows": rows})


def _layout2(shape, p, q):
    """(outer, mid, inner) of ``shape`` around the axes p < q."""
    return math.prod(shape[:p]), math.prod(shape[p + 1:q]), math.prod(shape[q + 1:])


def _dwt2(call, x, p, q):
    s = x.shape
    n0, n1 = s[p], s[q]
    m0, m1 = (n0 + 1) // 2, (n1 + 1) // 2
    shape = list(s)
    shape[p], shape[q] = m0, m1
    shape = tuple(shape)
    outs = [call.empty(shape) for _ in range(4)]        # aa, dp, dq, dd
    outer, mid, inner = _layout2(s, p, q)
    if math.prod(shape):
        vec4 = inner == 1 and m1 % 4 == 0 and n1 == 2 * m1
        _dispatch_rows(call, "haar2_dwt.comp", m1 * inner, outer * m0 * mid, mid, inner, vec4, x, *outs,
                       n0=n0, n1=n1, m0=m0, m1=m1)
    return outs


def _idwt2(call, a, dp, dq, dd, p, q):
    s = dp.shape
    m0, m1 = s[p], s[q]
    shape = list(s)
    shape[p], shape[q] = 2 * m0, 2 * m1
    x = call.empty(tuple(shape))
    outer, mid, inner = _layout2(s, p, q)
    if math.prod(s):
        vec4 = inner == 1 and m1 % 4 == 0 and a.shape[q] == m1
        _dispatch_rows(call, "haar2_idwt.comp", m1 * inner, outer * m0 * mid, mid, inner, vec4, a, dp, dq, dd, x,
                       m0=m0, m1=m1, na0=a.shape[p], na1=a.shape[q])
    return x


def wavedec2(data, wavelet="haar", mode="periodization", level=None, axes=(-2, -1)):
    """``pywt.wavedec2`` for ``wavelet="haar"``, ``mode="periodization"``:
    ``[cA_n, (cH_n, cV_n, cD_n), ..., (cH_1, cV_1, cD_1)]`` over ``axes``, batched over the other axes
    (cH: detail along ``axes[0]``, cV: detail along ``axes[1]``). ``level=None``: the largest level both
    axes allow (``pywt.dwt_max_level`` of the shorter); above it is a ValueError naming the maximum.
    NumPy in -> NumPy (float32) out; DeviceArray in -> DeviceArrays out."""
    _check(wavelet, mode, "wavedec2")
    shape = _shape_of(data)
    first, second = _axes2(axes, len(shape), "wavedec2")
    level = _level((shape[first], shape[second]), level, "wavedec2")
    p, q = sorted((first, second))
    call = Call(data=data)
    _float32(call, ["data"])
    x = call.arrays["data"]
    if level == 0:
        return _results(call, [_copy(call, x)], False)
    details, a = [], x
    for _ in range(level):
        a, dp, dq, dd = _dwt2(call, a, p, q)
        details.append((dp, dq, dd) if first == p else (dq, dp, dd))
    return _results(call, [a] + [c for hvd in details[::-1] for c in hvd], True)


def waverec2(coeffs, wavelet="haar", mode="periodization", axes=(-2, -1)):
    """``pywt.waverec2`` for ``wavelet="haar"``, ``mode="periodization"``: the inverse of :func:`wavedec2`
    (an approximation one sample longer than the details along an axis is trimmed, as PyWavelets does;
    ``None`` details are zeros). NumPy in -> NumPy out; DeviceArrays in -> DeviceArray out."""
    _check(wavelet, mode, "waverec2")
    if not isinstance(coeffs, (list, tuple)):
        raise ValueError("waverec2: expected a sequence [cA_n, (cH_n, cV_n, cD_n), ..., (cH_1, cV_1, cD_1)]")
    if len(coeffs) < 1:
        raise ValueError("waverec2: coefficient list too short (minimum 1 array required)")
    if coeffs[0] is None:
        raise ValueError("waverec2: cA_n must be an array, got None")
    for i, d in enumerate(coeffs[1:], 1):
        if not isinstance(d, (list, tuple)) or len(d) != 3:
            raise ValueError(f"waverec2: coeffs[{i}] must be a 3-tuple (cH, cV, cD) as returned by wavedec2, "
                             f"got {type(d).__name__}")
    a_shape = _shape_of(coeffs[0])
    first, second = _axes2(axes, len(a_shape), "waverec2")
    p, q = sorted((first, second))
    for i, d in enumerate(coeffs[1:], 1):
        d_shapes = [_shape_of(c) for c in d if c is not None]
        if not d_shapes:
            raise NotImplementedError(f"waverec2: coeffs[{i}] has no detail array (all None); give at least one")
        if any(s != d_shapes[0] for s in d_shapes):
            raise ValueError(f"waverec2: coeffs[{i}]: all detail shapes must be the same, got {d_shapes}")
        ds = d_shapes[0]
        ok = len(ds) == len(a_shape) and all(
            a_shape[k] in ((ds[k], ds[k] + 1) if k in (p, q) else (ds[k],)) for k in range(len(ds)))
        if not ok:
            raise ValueError(f"waverec2: coefficient shape mismatch at coeffs[{i}]: cA has shape {a_shape}, the "
                             f"details have shape {ds} (along axes {(first, second)} cA may be as long as the "
                             "details or one longer)")
        a_shape = tuple(2 * ds[k] if k in (p, q) else ds[k] for k in range(len(ds)))
    inputs = {"coeffs[0]": coeffs[0]}
    for i, d in enumerate(coeffs[1:], 1):
        for j, c in enumerate(d):
            inputs[f"coeffs[{i}][{j}]"] = c
    call = Call(**inputs)
    _float32(call, list(inputs))
    a = call.arrays["coeffs[0]"]
    if len(coeffs) == 1:
        return _results(call, [_copy(call, a)], False)[0]
    for i, d in enumerate(coeffs[1:], 1):
        h, v, dd = (call.arrays[f"coeffs[{i}][{j}]"] for j in range(3))
        shape = next(c.shape for c in (h, v, dd) if c is not None)
        h, v, dd = (c if c is not None else _zeros(call, shape) for c in (h, v, dd))
        dp, dq = (h, v) if first == p else (v, h)
        a = _idwt2(call, a, dp, dq, dd, p, q)
    return _results(call, [a], False)[0]
