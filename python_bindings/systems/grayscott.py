"""Gray-Scott reaction-diffusion on a periodic 2-D grid, SPEC 3.3 (explicit Euler, ``step_grayscott.comp``).

Parameters ``Du`` 0.16, ``Dv`` 0.08, ``F`` 0.035, ``k`` 0.065, ``dt`` 1.0, or a ``preset`` (a name of
``reference.GRAYSCOTT_PRESETS``; explicit F/k override it). Each number may be one value per batch
member (SPEC 3.2b; read from the kernel's (B, 5) parameter buffer); the preset is shared. The state stacks u then v per member:
``(2, H, W)`` / ``(B, 2, H, W)``; observables and pictures are those of v (the pattern-forming species),
the NaN/Inf flag covers u and v (an observation reads v only; u's flag is set by the step kernel when a
new u is NaN/Inf, which then stays so: see ``GridSystem``). Its only initial state is its own seeded patch.
"""
from __future__ import annotations

from .. import init, reference as R
from ._grid import GridSystem
from ._registry import register
from ._spec import InitSpec, ParamSpec, PictureSpec, SystemSpec

__all__ = ["GrayScottSystem", "SPEC"]

PRESETS = R.GRAYSCOTT_PRESETS      # the SPEC data stays with the reference maths

PARAMS = (
    ParamSpec("F", 0.035, "float", lo=0.0, live=True, slider=(0.0, 0.1), fmt="%.4f", help="feed rate of u"),
    ParamSpec("k", 0.065, "float", lo=0.0, live=True, slider=(0.0, 0.1), fmt="%.4f", help="kill rate of v"),
    ParamSpec("Du", 0.16, "float", lo=0.0, live=True, slider=(0.0, 0.25), help="diffusion coefficient of u"),
    ParamSpec("Dv", 0.08, "float", lo=0.0, live=True, slider=(0.0, 0.25), help="diffusion coefficient of v"),
    ParamSpec("dt", 1.0, "float", lo=0.0, lo_open=True, live=True, slider=(0.01, 2.0), help="time step"),
    ParamSpec("preset", None, "choice", choices=tuple(PRESETS),
              help="named (F, k) pair (explicit F / k override it)"),
)


class GrayScottSystem(GridSystem):
    """Gray-Scott reaction-diffusion (SPEC 3.3), ``step_grayscott.comp``, ping-pong, state u then v."""
    shader = "step_grayscott.comp"
    member_params = ("Du", "Dv", "F", "k", "dt")      # the kernel's parameter row, in this order
    kernel_flags = True       # observations read v only; u's NaN/Inf flag comes from the step kernel
    # step_grayscott.comp has the OBS variant (v's levels 1-2), but on lavapipe it measured slower than
    # the general pyramid over v (256^2 x 16: +174% vs +88% per observed step), so it stays off here
    fused_levels = False
    obs_binding = True

    def _resolve(self, merged, given):
        preset = merged.get("preset")
        vals = {p.name: p.default for p in self.spec.params if p.name != "preset"}
        if preset is not None:
            vals.update(self.spec.presets[preset])
            if given.get("preset") is not None:      # a new preset replaces earlier explicit F / k
                for key in self.spec.presets[preset]:
                    if key not in given:
                        merged.pop(key, None)
        for key in vals:
            if merged.get(key) is not None:
                vals[key] = merged[key] if isinstance(merged[key], list) else float(merged[key])
        return dict(preset=preset, **vals)

    def _push(self):
        H, W = self.spatial
        return dict(H=H, W=W, batch=self.batch)


def _patch(shape, *, arity, dims, seed):
    return init.grayscott(shape, seed=seed)


PATCH = InitSpec("patch", _patch, help="u = 1, v = 0 with a centred square (u, v) = (0.5, 0.25), 1% seeded noise")

SPEC = register(SystemSpec(
    name="grayscott", title="Gray-Scott reaction-diffusion, u then v (bands and pictures of v)",
    cls=GrayScottSystem, params=PARAMS, dims=(2,), fields=("u", "v"), observed="v", square=False,
    default_depth={2: 5}, inits=("patch",), own_inits=(PATCH,),
    picture=PictureSpec(cmap="diverging", view_cmap="diverging"), presets=PRESETS, reference="SPEC 3.3"))
