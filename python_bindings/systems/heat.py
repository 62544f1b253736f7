"""Explicit heat equation on a periodic 2-D grid, SPEC 3.3: ``u += alpha * lap(u)`` (``step_heat.comp``).

Parameter ``alpha`` (0.2; explicit Euler is stable up to 0.25), one value or one per batch member
(SPEC 3.2b; read from the kernel's (B, 1) parameter buffer). Fields ``(H, W)`` / ``(B, H, W)``;
``arity`` (for the band energies) defaults to 3 when H and W are powers of 3, else 2.
"""
from __future__ import annotations

from ._grid import GridSystem
from ._registry import register
from ._spec import ParamSpec, PictureSpec, SystemSpec

__all__ = ["HeatSystem", "SPEC"]

ALPHA = ParamSpec("alpha", 0.2, "float", lo=0.0, hi=0.25, live=True, fmt="%.4f",
                  help="diffusion coefficient per step (explicit Euler: stable up to 0.25)")


class HeatSystem(GridSystem):
    """Explicit heat equation (SPEC 3.3), ``step_heat.comp``, ping-pong."""
    shader = "step_heat.comp"
    member_params = ("alpha",)
    fused_levels = True       # observed steps write the observation's levels 1-2 (step_heat.comp OBS)
    obs_binding = True

    def _push(self):
        H, W = self.spatial
        return dict(H=H, W=W, batch=self.batch)


SPEC = register(SystemSpec(
    name="heat", title="heat equation, periodic 5-point Laplacian (explicit Euler)",
    cls=HeatSystem, params=(ALPHA,), dims=(2,), square=False, default_depth={2: 5},
    picture=PictureSpec(cmap="log"), reference="SPEC 3.3"))
