"""The drawn member's observables a frame late: host-visible mirrors of a system's observation rows.

Each frame's recording copies the one observation row (an ObsBuffers of ``rows=1``) into its frame
slot's host-visible mirror; the viewer decodes the mirror after that slot's fence (no submission, no
stall) with ``ObsBuffers.read(source=...)``. The band x time history copies the drawn member's
energies straight from the device row (``ObsBuffers.energy_location``). Only the public interface of
:class:`vkbands.systems.ObsBuffers` is used: the row layout is its business.
"""
from __future__ import annotations

import numpy as np


class ObsMirrors:
    """One observation row ``obs`` (owned and closed here) and one host-visible mirror of it per frame
    slot; decodes batch member ``member``."""

    def __init__(self, ctx, obs, slots: int, member: int):
        self.obs, self.member = obs, int(member)
        self._mirrors = [{name: ctx.empty(a.shape, a.dtype, host=True) for name, a in obs.arrays.items()}
                         for _ in range(slots)]

    def record_copy(self, rec, slot: int):
        """Record copying the row into slot ``slot``'s mirror (read by :meth:`read` after its fence)."""
        arrays = self.obs.arrays
        for name, dst in self._mirrors[slot].items():
            rec.copy(arrays[name], dst)

    def energy_location(self):
        """``(device array, element offset)`` of the drawn member's ``L + 1`` energies in the row."""
        name, offset = self.obs.energy_location(self.member)
        return self.obs.arrays[name], offset

    def read(self, slot: int):
        """``(energies [E_0..E_{L-1}, E_c] float64, nonfinite bool)`` of the drawn member from slot
        ``slot``'s mirror (after that slot's fence)."""
        row = self.obs.read(1, source=self._mirrors[slot])
        return np.asarray(row["energies"][0, self.member], np.float64), bool(row["nonfinite"][0, self.member])

    def close(self):
        for mirror in self._mirrors:
            for m in mirror.values():
                m.close()
        self._mirrors = []
        self.obs.close()
