"""Shared by every system: observation buffers (:class:`ObsBuffers`) and the base of the stepping
classes (:class:`SystemBase`)."""
from __future__ import annotations

import numpy as np

from .._owner import Owner
from ._spec import ParamSpec

__all__ = ["ObsBuffers", "SystemBase", "ARITY", "check_buffers"]

# The arity p (SPEC section 1): every system takes it (grid systems for their band energies).
ARITY = ParamSpec("arity", 3, "int", lo=2, help="p, the branching factor of the bands (tree systems: of the tree)")


# ----------------------------------------------------------------------------- observation buffers
class ObsBuffers(Owner):
    """Device buffers for ``rows`` observation rows of ``B`` fields.

    Fused systems write one array ``(rows, B, L + 5)``: ``[E_0..E_{L-1}, E_c, mass, min, max,
    nonfinite]``; grid systems write ``energies (rows, F, L + 1)`` and ``stats (rows, F, 4)``
    ``[mass, min, max, nonfinite]`` for F observed fields, both from ``BandPlan.record_observables``
    (one read of the fields per observation; min / max over the finite values, mass = N * coarse mean).
    F = B, or F = kB with ``pick`` the reported field of each member's k (the others count for the flag
    only). ``flags=True`` (Gray-Scott: F = B, the v fields) adds ``flags (rows, B)``: the NaN/Inf flags of
    the fields not observed (u), copied from the step kernel's flags, OR-ed into ``nonfinite``.
    ``read(n)`` returns the first n rows as a dict of NumPy arrays: ``energies (n, B, L+1)``,
    ``mass``, ``min``, ``max`` (n, B) float64 and ``nonfinite`` (n, B) bool.
    """

    def __init__(self, ctx, rows, B, L, fields=None, pick=None, minmax=True, flags=False):
        self.rows, self.B, self.L = int(rows), int(B), int(L)
        self.minmax = bool(minmax)           # False: ``read`` reports min / max as NaN (not asked for)
        self.pick = pick                     # for F = 2B: which of (u, v) to report
        if fields is None:
            self.fused = self._own(ctx.zeros((self.rows, B, L + 5)))
            self.energies = self.stats = None
        else:
            self.fused = None
            self.fields = fields
            self.energies = self._own(ctx.zeros((self.rows, fields, L + 1)))
            self.stats = self._own(ctx.zeros((self.rows, fields, 4)))
        self.flags = self._own(ctx.zeros((self.rows, B))) if flags else None

    @property
    def arrays(self) -> dict:
        """The device arrays holding the rows, by name (``fused``, or ``energies`` and ``stats``)."""
        names = ("fused",) if self.fused is not None else ("energies", "stats")
        names += ("flags",) if self.flags is not None else ()
        return {name: getattr(self, name) for name in names}

    def energy_location(self, member: int, row: int = 0):
        """``(name, element offset)``: where the ``L + 1`` contiguous float32 energies
        ``[E_0..E_{L-1}, E_c]`` of batch member ``member``'s observed field in row ``row`` begin."""
        if self.fused is not None:
            return "fused", (row * self.B + member) * (self.L + 5)
        k = self.fields // self.B
        field = member * k + (self.pick or 0)
        return "energies", (row * self.fields + field) * (self.L + 1)

    def read(self, n=None, *, source=None):
        """The first ``n`` rows (default all) as NumPy: ``energies (n, B, L+1)``, ``mass``, ``min``,
        ``max`` (n, B) float64, ``nonfinite`` (n, B) bool. ``source``: decode these arrays instead of
        the device rows (a dict with the names and shapes of :attr:`arrays`: NumPy arrays, or
        host-visible DeviceArrays whose GPU work has finished, e.g. a viewer's per-frame mirrors)."""
        n = self.rows if n is None else int(n)
        raw = {name: self._host_rows(name, arr, source, n) for name, arr in self.arrays.items()}
        if self.fused is not None:
            a, L = raw["fused"], self.L
            return dict(energies=a[..., :L + 1], mass=a[..., L + 1], min=a[..., L + 2], max=a[..., L + 3],
                        nonfinite=a[..., L + 4] > 0)
        E, S = raw["energies"], raw["stats"]
        flag = S[..., 3] > 0
        if self.pick is not None:
            k = self.fields // self.B
            E = E.reshape(n, self.B, k, -1)[:, :, self.pick]
            flag = flag.reshape(n, self.B, k).any(axis=2)
            S = S.reshape(n, self.B, k, 4)[:, :, self.pick]
        if self.flags is not None:
            flag = flag | (raw["flags"] > 0)
        mn, mx = (S[..., 1], S[..., 2]) if self.minmax else (np.full(flag.shape, np.nan),) * 2
        return dict(energies=E, mass=S[..., 0], min=mn, max=mx, nonfinite=flag)

    @staticmethod
    def _host_rows(name, device, source, n):
        if source is None:
            return device.rows(0, n).numpy().astype(np.float64)
        got = source[name]
        if hasattr(got, "host_view"):          # a host-visible DeviceArray: invalidate, then view
            got.invalidate()
            got = got.host_view
        got = np.asarray(got)
        if got.shape != device.shape:
            raise ValueError(f"source[{name!r}] has shape {got.shape}; the rows are {device.shape}")
        return got[:n].astype(np.float64)


def check_buffers(every, snap_every, observe_first, snap_first, obs, snap):
    """The buffers a ``record`` call needs for the observations and snapshots it was asked for."""
    if (every or observe_first) and obs is None:
        raise ValueError("observables requested but no obs buffers given")
    if (snap_every or snap_first) and snap is None:
        raise ValueError("snapshots requested but no snapshot buffer given")


class SystemBase(Owner):
    """What every stepping class shares: ``ctx``, ``batch``, ``spatial``, ``dims``, its registered
    ``spec`` (set by :func:`vkbands.systems.register`), a small dummy buffer for unused bindings."""
    spec = None          # the SystemSpec, set by register()
    fused = False
    # Observations include min / max over the leaves (tree/coupled: a reconstruction of the leaves per
    # observation). False: min / max are NaN, the NaN/Inf flag comes from the band energies and the
    # coarse values (tree/coupled: a NaN/Inf coefficient, or a square past float32), which is the
    # cheap observation of sweeps. Grid systems compute min / max in the pass that already reads the
    # field, so False only blanks them there. Takes effect at the next ``record``.
    observe_minmax = True

    def __init__(self, ctx, B, spatial, dims, **params):
        self.ctx, self.batch, self.spatial, self.dims = ctx, int(B), tuple(spatial), int(dims)
        self._dummy = None
        self._param_buf = None

    @property
    def name(self) -> str:
        return self.spec.name

    def _check_params(self, params):
        """``params`` of a ``set_params`` call checked against the spec (L and B known), converted."""
        return self.spec.check_params(params, levels=self.levels, batch=self.batch)

    def _per_member(self, value):
        """A resolved numeric parameter (a number, or a list of B numbers: SPEC 3.2b) as float64 (B,)."""
        a = np.asarray(value, dtype=np.float64)
        return np.full(self.batch, float(a)) if a.ndim == 0 else a.reshape(self.batch)

    @staticmethod
    def _reported(value):
        """How ``params`` reports a numeric parameter: a float, or a list of B floats per member."""
        if isinstance(value, (list, tuple, np.ndarray)):
            return [float(v) for v in value]
        return float(value)

    def _member_buffer(self, values):
        """The kernel's parameter buffer, (B, S) float32 (one row per member; shared values repeated, so
        a batch and a separate run read the same numbers the same way), updated in place (recordings
        that bind it stay valid)."""
        vals = np.ascontiguousarray(values, dtype=np.float32).reshape(self.batch, -1)
        buf = getattr(self, "_param_buf", None)
        if buf is None or buf.shape != vals.shape:
            buf = self._param_buf = self._own(self.ctx.array(vals))
        else:
            buf.upload(vals)
        return buf

    def _dummy_array(self):
        if self._dummy is None:
            self._dummy = self._own(self.ctx.zeros((4,)))
        return self._dummy

    def invalidate(self):
        """The state was written from outside (nothing cached for this system)."""

    def close(self):
        super().close()
        self._dummy = self._param_buf = None

    def __repr__(self):
        return f"<vkbands {self.name} system B={self.batch} spatial={self.spatial} p={self.arity} L={self.levels}>"


