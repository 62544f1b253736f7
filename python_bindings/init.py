"""Seeded initial states (SPEC section 4, and the Gray-Scott start of section 3.3).

Every function takes the full array ``shape`` (batch axes first, then 1 or 2 spatial axes; ``dims``
as in :func:`vkbands.reference.infer_dims`: None means a 1-D shape is one 1-D field and anything
longer is ``(..., H, W)``), draws from ``numpy.random.default_rng(seed)`` and returns float32.
:func:`grayscott` is the one exception to the shape rule: it returns the two fields u, v
(``(..., 2, H, W)``) of a ``(..., H, W)`` shape.
"""

from __future__ import annotations

import numpy as np

from . import _checks
from . import reference as R

__all__ = ["random", "impulse", "smooth", "band_pure", "grayscott", "STYLES"]

STYLES = ("haar", "randphase", "sparse", "mix")


def _unit_std(x, dims, scale):
    """Scale every field (over its spatial axes) to standard deviation ``scale``."""
    ax = tuple(range(-dims, 0))
    return x * (scale / x.std(axis=ax, keepdims=True))


def random(shape, seed=0, scale=1.0):
    """I.i.d. normal noise of standard deviation ``scale``; float32 ``shape``."""
    return (scale * np.random.default_rng(seed).standard_normal(_checks.shape(shape))).astype(np.float32)


def impulse(shape, count=1, seed=0, amplitude=1.0, dims=None):
    """``count`` distinct random leaves set to ``amplitude`` in every field, zeros elsewhere."""
    shape = _checks.shape(shape)
    batch, spatial = R.split_shape(shape, dims)
    n = int(np.prod(spatial))
    count = _checks.integer("count", count, 1, n, "leaves per field")
    rng = np.random.default_rng(seed)
    flat = np.zeros((int(np.prod(batch)), n))
    for row in flat:
        row[rng.choice(n, size=count, replace=False)] = amplitude
    return flat.reshape(shape).astype(np.float32)


def _detail_levels(shape, p, dims):
    """L of SPEC section 1 (any size: the largest L with p**L dividing every spatial axis), at least 1:
    a state made of detail bands needs one."""
    L = R.levels(shape, p, dims)
    if L == 0:
        raise ValueError(f"shape {tuple(shape)}: no detail band with arity {p} (L = 0: {p} does not divide "
                         f"every spatial size {tuple(shape[-dims:])}); allowed: sizes divisible by {p}")
    return L


def smooth(shape, arity=3, cutoff_level=2, seed=0, dims=None):
    """Low-pass noise: white noise with every Fourier mode above ``0.5 / p**cutoff_level`` cycles
    per leaf removed (radial cut, periodic), then scaled to unit std per field.

    Features are about ``p**cutoff_level`` leaves wide, so the energy sits mostly in bands
    ``>= cutoff_level``. ``cutoff_level`` in 0..L-1 (0 keeps everything: white noise).
    """
    shape = _checks.shape(shape)
    dims = R.infer_dims(shape, dims)
    L = _detail_levels(shape, _checks.arity(arity), dims)
    cut = _checks.integer("cutoff_level", cutoff_level, 0, L - 1)
    ax = tuple(range(-dims, 0))
    spatial = shape[-dims:]
    spec = np.fft.rfftn(np.random.default_rng(seed).standard_normal(shape), axes=ax)
    freqs = [np.fft.fftfreq(n) for n in spatial[:-1]] + [np.fft.rfftfreq(spatial[-1])]
    radius = np.sqrt(sum(f ** 2 for f in np.meshgrid(*freqs, indexing="ij")))
    spec = spec * (radius <= 0.5 / arity ** cut)
    x = np.fft.irfftn(spec, s=spatial, axes=ax)
    return _unit_std(x, dims, 1.0).astype(np.float32)


def _band_pattern(rng, batch, spatial, p, level, dims, style, m):
    """Level-``level`` detail pattern d at its own resolution (spatial // p**level).

    Each parent block (p children in 1-D, p x p children in 2-D, flattened row-major) carries
    ``w = [1, -1, 0, ..., 0] / sqrt(2)``; ``randphase`` permutes w per block, ``sparse`` keeps w in
    only ``m`` random blocks per field.
    """
    parents = tuple(n // p ** (level + 1) for n in spatial)
    k = p ** dims
    w = np.zeros(k)
    w[:2] = np.array([1.0, -1.0]) / np.sqrt(2.0)
    W = np.array(np.broadcast_to(w, batch + parents + (k,)))
    if style == "randphase":
        W = rng.permuted(W, axis=-1)
    elif style == "sparse":
        nblocks = int(np.prod(parents))
        m = _checks.integer("sparse_m", m, 1, nblocks, f"parent blocks at level {level + 1}")
        active = np.zeros((int(np.prod(batch)), nblocks), dtype=bool)
        for row in active:
            row[rng.choice(nblocks, size=m, replace=False)] = True
        W = W * active.reshape(batch + parents + (1,))
    W = W.reshape(batch + parents + (p,) * dims)
    if dims == 2:  # (..., h, w, a, b) -> (..., h, a, w, b): children next to their parent axis
        W = np.moveaxis(W, -2, -3)
    return W.reshape(batch + tuple(n // p ** level for n in spatial))


def band_pure(shape, arity, band, style="haar", seed=0, scale=1.0, sparse_m=1, mix_band=None,
              mix_eps=0.1, dims=None):
    """A field whose energy lies in detail band ``band`` only (SPEC section 4); float32 ``shape``, any size
    with ``L >= 1`` levels (SPEC section 1: a 54 x 81 field with p = 3 has bands 0..2 and a 2 x 3 coarse grid).

    The field is ``U^band d`` with d a zero-sum pattern in every parent block at level band+1:
    ``haar`` (w = [1, -1, 0, ...]/sqrt(2) everywhere; 2-D: on the row-major flattened p x p
    children), ``randphase`` (w permuted per block), ``sparse`` (haar w in ``sparse_m`` random
    blocks per field, zero elsewhere), ``mix`` (randphase in ``band`` plus ``mix_eps`` times
    randphase in ``mix_band``; default band+1, or band-1 for the coarsest band; the two energies
    are in ratio 1 : mix_eps**2). Each field is scaled to standard deviation ``scale``.
    """
    shape = _checks.shape(shape)
    p = _checks.arity(arity)
    dims = R.infer_dims(shape, dims)
    L = _detail_levels(shape, p, dims)
    band = _checks.integer("band", band, 0, L - 1)
    _checks.choice("style", style, STYLES)
    batch, spatial = shape[:-dims], shape[-dims:]
    rng = np.random.default_rng(seed)

    def leaf_pattern(level, st):
        return R.expand(_band_pattern(rng, batch, spatial, p, level, dims, st, sparse_m),
                        p, level, dims)

    if style == "mix":
        if L < 2:
            raise ValueError(f"style 'mix' needs at least 2 bands, shape {shape} has L={L}")
        if mix_band is None:
            mix_band = band + 1 if band + 1 < L else band - 1
        mix_band = _checks.integer("mix_band", mix_band, 0, L - 1)
        if mix_band == band:
            raise ValueError(f"mix_band must differ from band={band}, got {mix_band}")
        x = leaf_pattern(band, "randphase") + mix_eps * leaf_pattern(mix_band, "randphase")
    else:
        x = leaf_pattern(band, style)
    return _unit_std(x, dims, scale).astype(np.float32)


def grayscott(shape, seed=0, patch=None):
    """Pearson's Gray-Scott start (SPEC 3.3): u = 1, v = 0 with a centred square (u, v) = (0.5, 0.25)
    of side ``patch``.

    ``shape``: ``(H, W)`` or ``(B, H, W)`` -> ``(2, H, W)`` or ``(B, 2, H, W)`` float32 (u then v).
    ``patch`` defaults to ``max(1, min(H, W) // 5)``. Then ±1% relative uniform noise from
    ``default_rng(seed)`` multiplies u and v (so v stays 0 outside the patch).
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) or (B, H, W), got {shape}")
    H, W = shape[-2:]
    side = max(1, min(H, W) // 5) if patch is None else patch
    side = _checks.integer("patch", side, 1, min(H, W))
    uv = np.zeros(shape[:-2] + (2, H, W))
    uv[..., 0, :, :] = 1.0
    top, left = (H - side) // 2, (W - side) // 2
    uv[..., 0, top:top + side, left:left + side] = 0.5
    uv[..., 1, top:top + side, left:left + side] = 0.25
    uv *= 1.0 + 0.01 * np.random.default_rng(seed).uniform(-1.0, 1.0, uv.shape)
    return uv.astype(np.float32)
