"""The initial-state kinds shared by the one-field systems (SPEC section 4): random, impulse, smooth,
band-pure. A system lists the kinds that apply to it (``SystemSpec.inits``); one with a start of its
own (Gray-Scott's patch) registers it with its spec."""
from __future__ import annotations

from .. import init as I
from .. import reference as R
from ._registry import register_init
from ._spec import InitSpec, ParamSpec

__all__ = ["RANDOM", "IMPULSE", "SMOOTH", "BAND_PURE"]


def _random(shape, *, arity, dims, seed):
    return I.random(shape, seed=seed)


def _impulse(shape, *, arity, dims, seed):
    return I.impulse(shape, seed=seed, dims=dims)


def _smooth(shape, *, arity, dims, seed):
    L = R.levels(shape[-dims:], arity, dims)
    return I.smooth(shape, arity=arity, cutoff_level=min(2, L - 1), seed=seed, dims=dims)


def _band_pure(shape, *, arity, dims, seed, band=0, style="haar", sparse_m=1, mix_band=None, mix_eps=0.1):
    return I.band_pure(shape, arity, band, style=style, seed=seed, sparse_m=sparse_m, mix_band=mix_band,
                       mix_eps=mix_eps, dims=dims)


RANDOM = register_init(InitSpec("random", _random, help="seeded normal noise"))
IMPULSE = register_init(InitSpec("impulse", _impulse, help="one impulse at a random leaf per field"))
SMOOTH = register_init(InitSpec("smooth", _smooth, help="low-pass noise (features ~p**2 leaves wide)"))
BAND_PURE = register_init(InitSpec(
    "band-pure", _band_pure, aliases=("band_pure",),
    help="energy in one detail band only (SPEC 4)",
    options=(
        ParamSpec("band", 0, "int", lo=0, hi_levels=True, help="band-pure: the band"),
        ParamSpec("style", "haar", "choice", choices=tuple(I.STYLES), help="band-pure: the pattern"),
        ParamSpec("sparse_m", 1, "int", lo=1, when=("style", ("sparse",)),
                  help="band-pure, style sparse: active parent blocks per field"),
        ParamSpec("mix_band", None, "int", lo=0, hi_levels=True, when=("style", ("mix",)),
                  help="band-pure, style mix: the second band (default: band + 1, or band - 1 for the coarsest)"),
        ParamSpec("mix_eps", 0.1, "float", when=("style", ("mix",)),
                  help="band-pure, style mix: amplitude of the second band"),
    )))
