"""Tree (ultrametric / p-adic) diffusion, SPEC 3.1: each detail band times its own factor per step.

Parameters: explicit per-band ``rates`` or the p-adic heat profile ``lambda_l = exp(-tau p**(-alpha l))``
(``tau`` 1.0, ``alpha`` 1.0). Each may be one value per batch member (SPEC 3.2b: ``tau``/``alpha`` B
numbers, ``rates`` a (B, L) or (B, 1) array); the kernel reads a (B, L) table of rates, so member b of
a batch is bit for bit a separate run with its own values. Fields 1-D ``(N,)`` / ``(B, N)`` (pass ``dims=1`` for a batch) or square
2-D ``(p**L, p**L)``. Runs fused (``step_tree.comp``, see :mod:`vkbands.systems._fused`).
"""
from __future__ import annotations

import numpy as np

from .. import _checks, reference as R
from ._fused import FusedTreeSystem
from ._registry import register
from ._spec import ParamSpec, PictureSpec, SystemSpec

__all__ = ["TreeSystem", "SPEC", "RATES", "TAU", "ALPHA"]

# Shared with the coupled system (same meaning, same ranges).
RATES = ParamSpec("rates", None, "floats", per_level=True, excludes=("tau", "alpha"),
                  help="explicit per-band factors lambda_0..lambda_{L-1} (one value: every band); replaces the "
                       "tau/alpha profile")
TAU = ParamSpec("tau", 1.0, "float", lo=0.0, lo_open=True, live=True, slider=(0.001, 10.0), excludes=("rates",),
                help="time scale of the p-adic heat profile lambda_l = exp(-tau p**(-alpha l))")
ALPHA = ParamSpec("alpha", 1.0, "float", live=True, slider=(0.0, 4.0), excludes=("rates",),
                  help="exponent of the profile (larger: coarse bands persist longer)")


class TreeSystem(FusedTreeSystem):
    """Tree diffusion (SPEC 3.1), fused multi-step kernel ``step_tree.comp``."""
    shader = "step_tree.comp"

    def _rates(self, params):
        """The rates of every member, float64 (B, L); ``self._rates_per_member``: they differ by member."""
        L, B = self.levels, self.batch
        if params.get("rates") is not None:
            given = params["rates"]
            if np.ndim(given) == 2:                    # one row per member (checked by the spec)
                rows = np.asarray(given, dtype=np.float64)
                self._rates_per_member = True
                return np.ascontiguousarray(np.broadcast_to(rows, (B, L)))
            rates = np.asarray(given, dtype=np.float64).reshape(-1)
            if rates.size == 1:
                rates = np.repeat(rates, L)
            rates = _checks.rates(rates, L)
            if not np.all(np.isfinite(rates)):
                raise ValueError(f"rates must be finite, got {rates}")
            self._rates_per_member = False
            return np.ascontiguousarray(np.broadcast_to(rates, (B, L)))
        value = lambda spec: params.get(spec.name) if params.get(spec.name) is not None else spec.default  # noqa: E731
        tau, alpha = value(TAU), value(ALPHA)
        self._rates_per_member = isinstance(tau, list) or isinstance(alpha, list)
        if not self._rates_per_member:
            return np.ascontiguousarray(np.broadcast_to(R.tree_rates(self.arity, L, tau=tau, alpha=alpha), (B, L)))
        # each member's profile exactly as a separate run computes its own (the same call, the same float64)
        cache, out = {}, np.empty((B, L))
        for b, key in enumerate(zip(self._per_member(tau), self._per_member(alpha))):
            if key not in cache:
                cache[key] = R.tree_rates(self.arity, L, tau=key[0], alpha=key[1])
            out[b] = cache[key]
        return out

    def set_params(self, **params):
        """Takes effect at the next ``record``. Rates given replace the tau/alpha profile and vice versa;
        checked against the spec (TypeError for unknown names, ValueError for values). Any numeric
        value may be one per batch member (see the module docstring)."""
        given = self._check_params(params)
        merged = self.spec.merge(self._raw, given)
        self.rates = self._rates(merged)
        self.params = self._resolve(merged)
        self._raw = merged
        self._upload_params()

    def _resolve(self, merged):
        rates = self.rates.tolist() if self._rates_per_member else [float(r) for r in self.rates[0]]
        out = dict(arity=self.arity, rates=rates)
        if merged.get("rates") is None:
            out.update(tau=self._reported(merged.get("tau") if merged.get("tau") is not None else TAU.default),
                       alpha=self._reported(merged.get("alpha") if merged.get("alpha") is not None
                                            else ALPHA.default))
        return out

    def _param_values(self):
        return self.rates.astype(np.float32)        # (B, L)


def closed_form(r):
    """SPEC 3.1: ``E_l(t) = rates[l]**(2t) E_l(0)``, ``E_c`` constant; (T, B, L+1) of a Rollout ``r``
    (per-member rates, a (B, L) list: each member's own)."""
    rates = np.asarray(r.params["rates"], dtype=np.float64)
    rates = np.broadcast_to(rates, (r.batch, rates.shape[-1]))
    lam = np.concatenate([rates, np.ones((r.batch, 1))], axis=1)          # (B, L+1)
    return r.energies[:1] * lam[None, :, :] ** (2.0 * r.steps[:, None, None])


SPEC = register(SystemSpec(
    name="tree", title="tree (p-adic) diffusion: every detail band decays by its own factor per step",
    cls=TreeSystem, params=(RATES, TAU, ALPHA), dims=(1, 2), square=True, default_depth={1: 6, 2: 5},
    picture=PictureSpec(cmap="log"), closed_form=closed_form, reference="SPEC 3.1"))
