"""Band-coupled (nonlinear) tree operator, SPEC 3.2: the tree step plus ``eps`` times a coupling of
each band to the others through ``C`` and ``phi``; ``eps = 0`` is exactly the tree step (bit-exact).

Parameters: those of :mod:`vkbands.systems.tree` plus ``eps`` (0.0), ``phi`` ("tanh" | "sign" |
"square"), ``C`` (L x L in {-1, 0, 1}) or ``coupling_seed`` (0; a set-up uses its seed) for
``reference.coupling_matrix``. ``eps`` (and the tree parameters) may be one value per batch member
(SPEC 3.2b); ``phi``, ``C`` and ``coupling_seed`` are shared. Runs fused (``step_coupled.comp``, the tree kernel's layouts).
"""
from __future__ import annotations

import numpy as np

from .. import reference as R
from ._registry import register
from ._spec import ParamSpec, PictureSpec, SystemSpec
from .tree import ALPHA, RATES, TAU, TreeSystem

__all__ = ["CoupledSystem", "SPEC", "PHIS"]

PHIS = ("tanh", "sign", "square")        # the kernel's PHI constant is the index

EPS = ParamSpec("eps", 0.0, "float", live=True, slider=(0.0, 1.0), fmt="%.4f",
                help="coupling strength (0: exactly the tree step)")
PHI = ParamSpec("phi", "tanh", "choice", choices=PHIS, help="the coupling's nonlinearity")
C = ParamSpec("C", None, "matrix", per_level=True, choices=(-1, 0, 1), cli=False, excludes=("coupling_seed",),
              help="the L x L coupling matrix, entries in {-1, 0, 1}, diagonal ignored (Python only)")
COUPLING_SEED = ParamSpec("coupling_seed", 0, "int", lo=0, seed_default=True, excludes=("C",),
                          help="seed of the random +-1 coupling matrix with zero diagonal (used without C)")


class CoupledSystem(TreeSystem):
    """Band-coupled tree operator (SPEC 3.2), fused multi-step kernel ``step_coupled.comp`` (the tree
    kernel's state layout; eps = 0 runs the tree step itself, bit-exact)."""
    shader = "step_coupled.comp"
    _may_couple = True

    def _resolve(self, merged):
        out = super()._resolve(merged)
        L = self.levels
        value = lambda spec: merged[spec.name] if merged.get(spec.name) is not None else spec.default  # noqa: E731
        phi, eps = value(PHI), value(EPS)
        if merged.get("C") is not None:
            C = np.asarray(merged["C"]).astype(np.int64)       # shape and entries checked by the spec
            seed = None
        else:
            seed = int(value(COUPLING_SEED))
            C = R.coupling_matrix(L, seed)
        self.C, self.eps, self.phi = C, self._per_member(eps), phi       # eps: float64 (B,)
        out.update(eps=self._reported(eps), phi=phi, C=C.tolist())
        if seed is not None:
            out["coupling_seed"] = seed
        return out

    def _param_values(self):
        """(B, 2L + 1) per member: rates, w (w_b = sum_{b' != b} C[b', b], shared), eps."""
        C = self.C.astype(np.float64).copy()
        np.fill_diagonal(C, 0.0)
        w = np.broadcast_to(C.sum(axis=0), (self.batch, self.levels))
        return np.concatenate([self.rates, w, self.eps[:, None]], axis=1).astype(np.float32)

    def _kernel_spec(self):
        return dict(self._spec, PHI=PHIS.index(self.phi))

    def _coupled_steps(self):
        # the kernel decides per field (eps of its member); the cost model plans for the dearest one
        return bool(np.any(self.eps != 0.0))


SPEC = register(SystemSpec(
    name="coupled", title="band-coupled nonlinear tree operator (eps = 0: the tree step)",
    cls=CoupledSystem, params=(RATES, TAU, ALPHA, EPS, PHI, C, COUPLING_SEED), dims=(1, 2), square=True,
    default_depth={1: 6, 2: 4}, picture=PictureSpec(cmap="log"), reference="SPEC 3.2"))
