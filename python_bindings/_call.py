"""The NumPy-in/NumPy-out convention of every vkbands function, in one place.

A function takes NumPy arrays or DeviceArrays. With NumPy inputs it uploads them, runs, reads the
outputs back and frees its temporaries; with device inputs it returns device outputs (no readback).
It returns when the GPU work is done, unless a Recorder is active (``with ctx.recorder():``), in
which case it only records and returns device arrays (NumPy inputs are then an error: an upload
inside a recording would be invisible in the recording).
"""
from __future__ import annotations

import numpy as np

from vkbands.engine import DeviceArray, as_host_array, current, default_context


class Call:
    """One invocation of a device function.

    ``Call(x=x, y=y)`` -> ``.ctx``, ``.host`` (any NumPy input), ``.arrays`` (name -> DeviceArray),
    ``.rec`` (the Recorder to record into), ``.empty(shape, dtype)`` for outputs, and
    ``.result(out...)`` which submits (unless recording) and returns outputs of the input kind.
    """

    def __init__(self, ctx=None, dtype=np.float32, **inputs):
        outer = current()
        devs = [v for v in inputs.values() if isinstance(v, DeviceArray)]
        self.ctx = ctx or (devs[0].ctx if devs else outer.ctx if outer else default_context())
        self.host = any(not isinstance(v, DeviceArray) for v in inputs.values() if v is not None)
        if outer is not None and self.host:
            names = [k for k, v in inputs.items() if v is not None and not isinstance(v, DeviceArray)]
            raise TypeError(f"{', '.join(names)}: inside a recording, pass device arrays (vkbands.asarray)")
        self._temps = []
        self._given = set()
        self.arrays = {}
        for name, v in inputs.items():
            if v is None:
                self.arrays[name] = None
            elif isinstance(v, DeviceArray):
                if v.ctx is not self.ctx:
                    raise ValueError(f"{name}: device array belongs to another Context")
                self.arrays[name] = v
            else:
                arr = self.ctx.array(as_host_array(v, dtype, name))
                self._temps.append(arr)
                self.arrays[name] = arr
        self._own_rec = outer is None
        self.rec = outer if outer is not None else self.ctx.recorder()

    def empty(self, shape, dtype=np.float32) -> DeviceArray:
        out = self.ctx.empty(shape, dtype)
        if self.host:
            self._temps.append(out)
        return out

    def output(self, out, shape, dtype=np.float32, name="out") -> DeviceArray:
        """The array a function writes its result into: the caller's ``out`` (a DeviceArray of this
        context with exactly ``shape`` and ``dtype``; returned as is by :meth:`result`) or a new one."""
        if out is None:
            return self.empty(shape, dtype)
        if not isinstance(out, DeviceArray):
            self.close()
            raise TypeError(f"{name}: must be a vkbands DeviceArray (vkbands.asarray / ctx.empty), got "
                            f"{type(out).__name__}")
        if out.ctx is not self.ctx or tuple(out.shape) != tuple(shape) or out.dtype != np.dtype(dtype):
            self.close()
            raise ValueError(f"{name}: needs shape {tuple(shape)} {np.dtype(dtype)} on this context; got shape "
                             f"{tuple(out.shape)} {out.dtype}{'' if out.ctx is self.ctx else ' on another Context'}")
        self._given.add(id(out))
        return out

    def result(self, *outs):
        """Submit (if this call owns its recorder), then return ``outs`` as NumPy (host call) or as
        device arrays; an ``out=`` array the caller gave is returned as is. One output is returned
        bare, several as a tuple."""
        try:
            if self._own_rec:
                self.rec.submit()
            vals = tuple(o.numpy() if self.host and isinstance(o, DeviceArray) and id(o) not in self._given else o
                         for o in outs)
        finally:
            self.close()
        return vals[0] if len(vals) == 1 else vals

    def close(self):
        if self._own_rec:
            self.rec.close()
        for t in self._temps:
            t.close()
        self._temps = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
