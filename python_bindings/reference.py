"""Pure-NumPy reference of the vkbands maths (SPEC.md sections 1-3 and 5).

Written for clarity, not speed: every GPU shader is tested against these functions, and CPU-only
users can run whole experiments with them.

Conventions (SPEC section 1)
----------------------------
* ``p`` (``arity``) is an integer >= 2. Level 0 is the finest scale (the leaves), level ``L`` the root.
* A field is 1-D ``(..., N)`` or 2-D ``(..., H, W)`` of any sizes. Its number of levels ``L`` is by
  default the largest integer with ``p**L`` dividing every spatial axis (0 when none does); a smaller
  ``levels=`` may be asked for, a larger one is an error naming the maximum. Leading axes are batch
  axes and are always kept. (:func:`tree_levels` is the stricter rule of the tree systems: every
  spatial size a power of p.)
* ``dims`` (1 or 2) says how many trailing axes are spatial. ``dims=None`` infers it: a 1-D array is
  a 1-D field, anything with 2 or more axes is ``(..., H, W)``. Pass ``dims=1`` for a batch ``(B, N)``.
* Inputs may be any real array (float32, float64, ints); every computed result is float64.
* ``A^(l)`` = block mean over ``p**l`` leaves (``p**l x p**l`` in 2-D); ``U`` repeats each value onto
  its ``p`` (``p x p``) children. Detail band ``d^(l) = A^(l) - U A^(l+1)`` at its own resolution,
  ``D^(l) = U^l d^(l)`` at leaf resolution, coarse ``c = A^(L)``.
* The coarse part ``c = A^(L)`` is a grid of shape ``(N / p**L)`` or ``(H / p**L, W / p**L)``;
  :func:`coarse` drops its spatial axes when that grid is one value per field (a size ``p**L``,
  the classic case), and ``E_c = p**(L*dims) * sum(c**2)`` either way, so Parseval holds.
"""

from __future__ import annotations

import numpy as np

from . import _checks

__all__ = [
    "infer_dims", "split_shape", "levels", "tree_levels", "block_mean", "expand", "pyramid", "detail",
    "cumulative", "coarse", "decompose", "reconstruct", "energies", "leakage",
    "tree_rates", "tree_step", "coupling_matrix", "coupled_step", "PHI",
    "laplacian", "heat_step", "heat_mode_factor", "grayscott_step",
    "GRAYSCOTT_PRESETS", "observables", "deepest_surviving_band", "kill_steps",
    "contraction_rates",
]


# ----------------------------------------------------------------------------- shapes (SPEC 1)
# The argument checks live in vkbands._checks; these functions are the SPEC's conventions.

def infer_dims(shape, dims=None) -> int:
    """Number of trailing spatial axes of an array of ``shape``.

    ``dims=None``: 1 for a 1-D shape ``(N,)``, else 2 (``(H, W)``, ``(B, H, W)``, ...).
    An explicit ``dims`` must be 1 or 2 and no more than ``len(shape)``.
    """
    shape = tuple(shape)
    if dims is None:
        dims = 1 if len(shape) == 1 else 2
    return _checks.dims(dims, shape)


def split_shape(shape, dims=None):
    """``(batch_shape, spatial_shape)`` of an array shape; see :func:`infer_dims` for ``dims``."""
    shape = tuple(int(n) for n in shape)
    spatial_axes = infer_dims(shape, dims)
    return shape[:-spatial_axes], shape[-spatial_axes:]


def levels(shape, arity, dims=None, levels=None) -> int:
    """Number of levels ``L`` of a field of array shape ``shape`` (batch axes allowed), SPEC section 1.

    ``levels=None``: the largest ``L`` such that ``p**L`` divides every spatial axis (0 when none
    does): 96 x 96 with p = 2 has L = 5 (coarse grid 3 x 3). An explicit ``levels`` must be in
    ``0..max``; above the maximum the ValueError names it.
    """
    return _levels(shape, arity, dims, levels)


def _levels(shape, arity, dims, requested):
    p = _checks.arity(arity)
    _, spatial = split_shape(shape, dims)
    return _checks.levels(requested, spatial, p)


def tree_levels(shape, arity, dims=None) -> int:
    """Depth ``L`` of the tree systems: every spatial size a power ``p**k`` (k >= 1) of ``arity``
    (1-D ``N = p**L``; 2-D ``(p**Ly, p**Lx)`` gives ``L = min(Ly, Lx)``), else a ValueError that
    names the nearest valid sizes."""
    p = _checks.arity(arity)
    _, spatial = split_shape(shape, dims)
    return min(_checks.power_of_arity(n, p) for n in spatial)


def _as_f64(x):
    return np.asarray(x, dtype=np.float64)


def _spatial_axes(dims):
    return tuple(range(-dims, 0))


# ----------------------------------------------------------------------------- block helpers
# The single reshaping helper: a spatial axis of length n*b becomes the pair (n, b), so a block of
# b (b x b in 2-D) leaves sits on the odd-numbered axes. block_mean and expand both go through it.

def _blocked(lead, spatial, b, inner):
    """Shape ``lead + (n0, inner, n1, inner, ...)`` where n_i = spatial_i // b."""
    out = tuple(lead)
    for n in spatial:
        out += (n // b, inner)
    return out


def _block_axes(dims):
    return (-1,) if dims == 1 else (-3, -1)


def _mean_blocks(x, b, dims):
    """Mean over blocks of b leaves per spatial axis (no shape validation)."""
    lead, spatial = x.shape[:-dims], x.shape[-dims:]
    return x.reshape(_blocked(lead, spatial, b, b)).mean(axis=_block_axes(dims))


def _expand(a, b, dims):
    """Repeat every value onto b leaves per spatial axis (nearest / np.repeat)."""
    lead, spatial = a.shape[:-dims], a.shape[-dims:]
    big = tuple(n * b for n in spatial)
    blocks = np.broadcast_to(a.reshape(_blocked(lead, big, b, 1)), _blocked(lead, big, b, b))
    return blocks.reshape(lead + big)


def block_mean(x, arity, level, dims=None):
    """``A^(level)``: block mean over ``p**level`` leaves per spatial axis.

    x: ``batch + spatial`` -> ``batch + spatial // p**level``, float64. ``level`` in 0..L.
    """
    x = _as_f64(x)
    dims = infer_dims(x.shape, dims)
    L = levels(x.shape, arity, dims)
    level = _checks.integer("level", level, 0, L)
    return _mean_blocks(x, arity ** level, dims)


def expand(a, arity, times, dims=None):
    """``U^times a``: repeat each value ``p**times`` times along every spatial axis. float64."""
    a = _as_f64(a)
    dims = infer_dims(a.shape, dims)
    p = _checks.arity(arity)
    times = _checks.integer("times", times, 0)
    return _expand(a, p ** times, dims)


def pyramid(x, arity, dims=None, levels=None):
    """``[A^(0), ..., A^(L)]``: A^(l) has shape ``batch + spatial // p**l``, float64."""
    x = _as_f64(x)
    dims = infer_dims(x.shape, dims)
    L = _levels(x.shape, arity, dims, levels)
    out = [x]
    for _ in range(L):
        out.append(_mean_blocks(out[-1], arity, dims))
    return out


def _decompose(x, arity, dims, levels=None):
    """(L, dims, details at own resolution, unsqueezed A^(L)) - the work shared by the public API."""
    x = _as_f64(x)
    dims = infer_dims(x.shape, dims)
    pyr = pyramid(x, arity, dims, levels)
    L = len(pyr) - 1
    details = [pyr[l] - _expand(pyr[l + 1], arity, dims) for l in range(L)]
    return L, dims, details, pyr[L]


def _squeeze_coarse(top, dims):
    """One value per field drops the spatial axes; a coarse grid A^(L) is returned as is."""
    return top.reshape(top.shape[:-dims]) if all(n == 1 for n in top.shape[-dims:]) else top


def detail(x, arity, level, dims=None, leaf=False):
    """Detail band ``d^(level) = A^(l) - U A^(l+1)``, ``level`` in 0..L-1.

    Own resolution ``batch + spatial // p**level``; with ``leaf=True`` the leaf-resolution
    ``D^(level) = U^level d^(level)`` (shape of x). float64.
    """
    x = _as_f64(x)
    dims = infer_dims(x.shape, dims)
    L = levels(x.shape, arity, dims)
    level = _checks.integer("level", level, 0, L - 1)
    a = _mean_blocks(x, arity ** level, dims)
    d = a - _expand(_mean_blocks(a, arity, dims), arity, dims)
    return _expand(d, arity ** level, dims) if leaf else d


def cumulative(x, arity, level, dims=None):
    """Cumulative sheet ``s^(level) = U^level A^(level)`` (shape of x, float64), level in 0..L."""
    x = _as_f64(x)
    dims = infer_dims(x.shape, dims)
    b = arity ** _checks.integer("level", level, 0, levels(x.shape, arity, dims))
    return _expand(_mean_blocks(x, b, dims), b, dims)


def coarse(x, arity, dims=None, levels=None):
    """Coarse ``c = A^(L)``, float64, of shape ``batch + spatial // p**L``; when that grid is one
    value per field (size ``p**L``) the spatial axes are dropped: shape ``batch_shape`` (the global
    mean of each field)."""
    _, dims, _, top = _decompose(x, arity, dims, levels)
    return _squeeze_coarse(top, dims)


def decompose(x, arity, dims=None, levels=None):
    """``(details, c)``: ``details[l] = d^(l)`` at own resolution (l = 0..L-1), ``c`` as :func:`coarse`.

    ``levels``: ``L`` (default: the maximum, see :func:`levels`)."""
    _, dims, details, top = _decompose(x, arity, dims, levels)
    return details, _squeeze_coarse(top, dims)


def reconstruct(details, coarse, arity, dims=None):
    """Exact inverse of :func:`decompose`: ``x = U^L c + sum_l U^l d^(l)`` (float64); ``L = len(details)``.

    ``dims`` is inferred from ``details[0]`` (leaf resolution) when None; with no details
    (``levels=0``) the result is the coarse grid itself, and ``dims`` from its shape.
    """
    p = _checks.arity(arity)
    details = [_as_f64(d) for d in details]
    if not details:
        c = _as_f64(coarse)
        infer_dims(c.shape, dims)
        return c.copy()
    dims = infer_dims(details[0].shape, dims)
    last = details[-1]
    top_shape = last.shape[:-dims] + tuple(n // p for n in last.shape[-dims:])
    L = len(details)
    x = _expand(_as_f64(coarse).reshape(top_shape), p ** L, dims)
    for l, d in enumerate(details):
        x = x + _expand(d, p ** l, dims)
    return x


# ----------------------------------------------------------------------------- energies & leakage

def energies(x, arity, dims=None, levels=None):
    """Band energies ``[E_0, ..., E_{L-1}, E_c]``, shape ``batch_shape + (L+1,)``, float64.

    ``E_l = sum(D^(l)**2) = p**(l*dims) * sum(d^(l)**2)``; ``E_c = p**(L*dims) * sum(c**2)``
    (``c`` the coarse grid). Parseval: ``energies(x).sum(-1) == sum(x**2)`` per field.
    """
    L, dims, details, top = _decompose(x, arity, dims, levels)
    ax = _spatial_axes(dims)
    parts = [arity ** (l * dims) * np.sum(d * d, axis=ax) for l, d in enumerate(details)]
    parts.append(arity ** (L * dims) * np.sum(top * top, axis=ax))
    return np.stack(parts, axis=-1)


def _leaf_bands(x, arity, dims, levels=None):
    """(L, dims, [D^(0..L-1)] at leaf resolution, U^L A^(L))."""
    L, dims, details, top = _decompose(x, arity, dims, levels)
    bands = [_expand(d, arity ** l, dims) for l, d in enumerate(details)]
    return L, dims, bands, _expand(top, arity ** L, dims)


def leakage(x, arity, dims=None, levels=None):
    """Normalised Gram matrix of ``[D^(0), ..., D^(L-1), U^L c]``, shape ``(L+1, L+1)``, float64.

    ``G[k, l] = <D_k, D_l> / (||D_k|| ||D_l||)`` with inner products summed over space and the
    whole batch. For this decomposition it is the identity up to round-off. Convention for a band
    of zero norm (``||D_k|| <= 1e-12 * ||x||``, i.e. zero up to float64 round-off): its row and
    column are 0 except the diagonal entry, which is 1 (no NaN; a zero band leaks nothing, so an
    orthogonal decomposition always gives the identity).
    """
    L, dims, bands, c = _leaf_bands(x, arity, dims, levels)
    bands.append(c)
    G = np.array([[np.sum(a * b) for b in bands] for a in bands])
    norm = np.sqrt(np.diag(G))
    nz = norm > 1e-12 * np.sqrt(norm @ norm)
    out = np.zeros_like(G)
    out[np.ix_(nz, nz)] = G[np.ix_(nz, nz)] / np.outer(norm[nz], norm[nz])
    np.fill_diagonal(out, 1.0)
    return out


# ----------------------------------------------------------------------------- tree diffusion

def tree_rates(arity, L, tau=1.0, alpha=1.0):
    """p-adic heat profile ``lambda_l = exp(-tau * p**(-alpha*l))``, l = 0..L-1; float64 ``(L,)``."""
    p = _checks.arity(arity)
    L = _checks.integer("L", L, 1)
    return np.exp(-float(tau) * float(p) ** (-float(alpha) * np.arange(L)))


def tree_step(x, rates, arity, dims=None):
    """One tree-diffusion step (SPEC 3.1): ``U^L c + sum_l rates[l] * D^(l)(x)``; shape of x, float64.

    ``rates``: ``(L,)`` factors (e.g. :func:`tree_rates`); the coarse part (mass) is conserved.
    """
    L, dims, bands, c = _leaf_bands(x, arity, dims)
    rates = _checks.rates(rates, L)
    return c + sum(lam * D for lam, D in zip(rates, bands))


def coupling_matrix(L, seed=0):
    """Random ±1 coupling matrix with zero diagonal: int64 ``(L, L)`` from ``default_rng(seed)``."""
    L = _checks.integer("L", L, 1)
    C = 2 * np.random.default_rng(seed).integers(0, 2, size=(L, L)) - 1
    np.fill_diagonal(C, 0)
    return C.astype(np.int64)


PHI = {"tanh": np.tanh, "sign": np.sign, "square": np.square}


def coupled_step(x, rates, C, eps, phi, arity, dims=None):
    """One band-coupled step (SPEC 3.2); shape of x, float64.

    With leaf-resolution bands ``x_b = D^(b)`` and ``y_b = rates[b] * x_b``:
    ``x_b' = y_b + eps * sum_{b' != b} C[b, b'] * phi(x_b') * |y_b'|`` and the result is
    ``U^L c + sum_b x_b'``. ``C``: ``(L, L)`` with entries in {-1, 0, 1} (diagonal ignored);
    ``phi`` in ``PHI`` ("tanh", "sign", "square": x**2). ``eps = 0`` is exactly :func:`tree_step`.
    """
    _checks.choice("phi", phi, sorted(PHI))
    L, dims, X, c = _leaf_bands(x, arity, dims)
    rates = _checks.rates(rates, L)
    C = _checks.sign_matrix(C, L)
    Y = [lam * xb for lam, xb in zip(rates, X)]
    drive = [PHI[phi](xb) * np.abs(yb) for xb, yb in zip(X, Y)]
    new = [Y[b] + eps * sum(C[b, k] * drive[k] for k in range(L) if k != b) for b in range(L)]
    return c + sum(new)


# ----------------------------------------------------------------------------- grid diffusion

def laplacian(u):
    """Periodic 5-point Laplacian over the last two axes; shape of u, float64."""
    u = _as_f64(u)
    _checks.array_shape("u", u.shape, u.ndim >= 2, "(..., H, W) (at least 2 axes)")
    return (np.roll(u, 1, -2) + np.roll(u, -1, -2) + np.roll(u, 1, -1) + np.roll(u, -1, -1)
            - 4.0 * u)


def heat_step(u, alpha):
    """Explicit heat step ``u + alpha * lap(u)``; ``alpha`` in [0, 0.25] (the stable range)."""
    _checks.real_in("alpha", alpha, 0, 0.25, "explicit-Euler stability")
    u = _as_f64(u)
    return u + alpha * laplacian(u)


def heat_mode_factor(kx, ky, H, W, alpha):
    """Per-step factor of Fourier mode (kx, ky): ``1 - 4 alpha (sin^2(pi kx/W) + sin^2(pi ky/H))``."""
    return 1.0 - 4.0 * alpha * (np.sin(np.pi * np.asarray(kx) / W) ** 2
                                + np.sin(np.pi * np.asarray(ky) / H) ** 2)


# Feed/kill pairs in the Du = 0.16, Dv = 0.08 (5-point Laplacian, dt = 1) convention. Named regions of
# the (F, k) plane follow Pearson, "Complex patterns in a simple system", Science 261 (1993) and
# R. Munafo's xmorphia pages (mrob.com/pub/comp/xmorphia); the concrete pairs are the widely used
# ones from the aliensaint.com RD applet list (as in N. Rougier, "From Python to Numpy") and
# K. Sims' reaction-diffusion tutorial. Boundaries between pattern types shift a little with Du/Dv.
# They are SPEC 3.3 data (values of grayscott_step's parameters, named by the SPEC), not initial states,
# so they stay here next to the step; vkbands.init holds the Gray-Scott start (init.grayscott).
GRAYSCOTT_PRESETS = {
    "default": dict(F=0.035, k=0.065),   # SPEC default ("bacteria": spots that split and fill)
    "spots":   dict(F=0.030, k=0.062),   # stable solitons (spots)
    "stripes": dict(F=0.054, k=0.063),   # worms / stripes
    "coral":   dict(F=0.060, k=0.062),   # branching coral / labyrinth
    "mitosis": dict(F=0.0367, k=0.0649), # self-replicating spots (Pearson lambda region)
    "waves":   dict(F=0.014, k=0.045),   # travelling waves (Pearson beta/alpha region)
    "zebrafish": dict(F=0.035, k=0.060),
}


def grayscott_step(uv, Du=0.16, Dv=0.08, F=0.035, k=0.065, dt=1.0):
    """One explicit-Euler Gray-Scott step (SPEC 3.3). uv: ``(..., 2, H, W)`` (u then v); float64."""
    uv = _as_f64(uv)
    _checks.array_shape("uv", uv.shape, uv.ndim >= 3 and uv.shape[-3] == 2, "(..., 2, H, W) (u then v)")
    u, v = uv[..., 0, :, :], uv[..., 1, :, :]
    uvv = u * v * v
    return np.stack([u + dt * (Du * laplacian(u) - uvv + F * (1.0 - u)),
                     v + dt * (Dv * laplacian(v) + uvv - (F + k) * v)], axis=-3)


# ----------------------------------------------------------------------------- observables (SPEC 5)

def observables(x, arity, dims=None):
    """Per-field observables of one state, each of shape ``batch_shape``.

    Keys: ``energies`` (``batch + (L+1,)``), ``total`` (``sum x**2``), ``mass`` (``sum x``),
    ``min``, ``max`` (float64) and ``nonfinite`` (bool: any NaN/Inf in the field).
    """
    x = _as_f64(x)
    dims = infer_dims(x.shape, dims)
    ax = _spatial_axes(dims)
    return dict(energies=energies(x, arity, dims), total=np.sum(x * x, axis=ax),
                mass=np.sum(x, axis=ax), min=np.min(x, axis=ax), max=np.max(x, axis=ax),
                nonfinite=~np.all(np.isfinite(x), axis=ax))


def _series(E):
    E = _as_f64(E)
    _checks.array_shape("E", E.shape, E.ndim in (2, 3) and E.shape[-1] >= 1,
                        "(T, L+1) or (T, B, L+1) with L >= 0")
    return E


def deepest_surviving_band(E, tau=1e-3):
    """``D_t = max{l < L : E_l(t) > tau * E_l(0)}`` (-1 if none); detail bands only.

    E: energies time series ``(T, L+1)`` or ``(T, B, L+1)`` (last column E_c is ignored).
    Returns int64 ``(T,)`` or ``(T, B)``.
    """
    E = _series(E)[..., :-1]
    if E.shape[-1] == 0:                     # L = 0: no detail band
        return np.full(E.shape[:-1], -1, dtype=np.int64)
    alive = E > tau * E[0]
    idx = np.arange(E.shape[-1])
    return np.max(np.where(alive, idx, -1), axis=-1)


def kill_steps(E, steps, tau=1e-3):
    """First ``steps[t]`` with ``E_l(t) < tau * E_l(0)`` per column of E (-1 if never).

    E: ``(T, L+1)`` or ``(T, B, L+1)``; steps: ``(T,)``. Returns int64 ``E.shape[1:]``
    (the last column is the coarse energy, normally -1).
    """
    E = _series(E)
    steps = np.asarray(steps)
    _checks.array_shape("steps", steps.shape, steps.shape == E.shape[:1], f"({E.shape[0]},)")
    dead = E < tau * E[0]
    first = np.argmax(dead, axis=0)
    return np.where(dead.any(axis=0), steps[first], -1).astype(np.int64)


def contraction_rates(E, steps, stderr=False):
    """Least-squares slope of ``log E_l(t)`` vs ``steps`` per column of E, float64 ``E.shape[1:]``;
    with ``stderr=True`` the pair ``(slope, standard error of the slope)``.

    Only finite, positive entries are used (a band that underflows to 0 is fitted over the steps
    before); the slope is NaN where fewer than 2 remain, its standard error NaN where fewer than 3
    remain (with 2 points the line fits exactly: no residual to estimate it from). For tree diffusion
    the slope of band l is ``2 log lambda_l`` and its standard error is at round-off level.
    Standard error: ``sqrt(sum(r**2) / (n - 2) / sum((t - mean t)**2))``, r the fit's residuals.
    """
    E = _series(E)
    t = _as_f64(steps)
    _checks.array_shape("steps", t.shape, t.shape == E.shape[:1], f"({E.shape[0]},)")
    cols = E.reshape(E.shape[0], -1)
    ok = np.isfinite(cols) & (cols > 0)
    n = ok.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(ok, np.log(np.where(ok, cols, 1.0)), 0.0)
        tt = np.where(ok, t[:, None], 0.0)
        tm = tt.sum(axis=0) / n
        ym = y.sum(axis=0) / n
        dt = np.where(ok, t[:, None] - tm, 0.0)
        sxx = (dt ** 2).sum(axis=0)
        slope = (dt * (y - ym)).sum(axis=0) / sxx
        slope = np.where((n >= 2) & (sxx > 0), slope, np.nan)
        resid = np.where(ok, y - ym - slope * dt, 0.0)
        se = np.sqrt((resid ** 2).sum(axis=0) / (n - 2) / sxx)
        se = np.where((n >= 3) & np.isfinite(slope), se, np.nan)
    slope = slope.reshape(E.shape[1:])
    return (slope, se.reshape(E.shape[1:])) if stderr else slope


# ----------------------------------------------------------------------------- pictures (SPEC 6)
# The definition that shaders/write_image.comp (vkbands.image) must match within 1 LSB per channel.
# Everything is float32, in the order the shader evaluates it:
#
#   values   panels (P, H, W); a 1-D field is (1, 1, N) and a band x time image (1, T, L): they are
#            panels like any other, drawn with a vertical expansion sy > 1.
#   fade     acc = v if reset or fade == 0, else fade * acc + (1 - fade) * v          (fade_step)
#   range    s0 = (acc - centre) * inv_half                                          (picture_range)
#            fixed:     centre = (vmin + vmax) / 2, inv_half = 2 / (vmax - vmin)  (float64, then float32)
#            symmetric: centre = 0, inv_half = 1 / m, m = max|v| over the finite values of all panels
#            per_band:  the same with m per panel; m == 0 -> inv_half = 0 (all at the middle colour).
#            m is taken over the current frame's values, not the faded ones.
#   cmap     grey:      t = clip(0.5 + 0.5 * s0, 0, 1), rgb = (t, t, t)
#            diverging: a = clip(s0, -1, 1); rgb = WHITE*(1+a) + BLUE*(-a) for a < 0, else WHITE*(1-a) + RED*a
#            ternary:   BLUE if s0 < -tau, RED if s0 > tau, else WHITE
#            log:       s = sign(s0) * (log1p(|s0| * inv_eps) * log_norm), inv_eps = 1 / eps,
#                       log_norm = 1 / log1p(1 / eps) (float64, then float32); then diverging
#            energy-height: h = clip(1 + log(|s0|) * e_norm, 0, 1), 0 where s0 == 0, e_norm = 1 / log(1 / eps)
#                       (float64, then float32): |s0| from eps to 1 (x^2 over 2 log10(1/eps) decades) is
#                       the height; rgb = the piecewise-linear ramp through PICTURE_HEIGHT at h
#                       (x = 4h, i = min(int(x), 3), mix(HEIGHT[i], HEIGHT[i+1], x - i))
#            NaN / +-Inf (after fading) -> NONFINITE in every map.
#   rgba8    round(rgb * 255), alpha 255.
#   layout   panel p at grid cell (p // cols, p % cols); each value a sy x sx block; cells `gap` apart;
#            image (rows*(H*sy + gap) - gap, cols*(W*sx + gap) - gap), rows = ceil(P / cols); pixels
#            outside every panel are BACKGROUND.
#   labelled (vkbands.labels, picture_frame): the grid at (oy, ox) of a larger image, each panel row
#            with pad_top pixels of title space above it (row pitch H*sy + gap + pad_top); the colour
#            bar rectangle (y, x, h, w): column c has u = (c + 0.5) / w (float32) and colour
#            colorbar(cmap, w) (grey/diverging: s = 2u - 1 through the map; log: diverging(2u - 1),
#            the bar's axis being the log axis; ternary: s0 = 2u - 1 with tau = 1/3; energy-height:
#            the ramp at h = u). Text is drawn over the BACKGROUND of the margins afterwards.

PICTURE_BACKGROUND = (32, 32, 32, 255)
PICTURE_NONFINITE = (255, 0, 255, 255)
PICTURE_BLUE = np.array([33, 102, 172], np.float32) / np.float32(255)
PICTURE_WHITE = np.ones(3, np.float32)
PICTURE_RED = np.array([178, 24, 43], np.float32) / np.float32(255)
PICTURE_HEIGHT = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]],
                          np.float32) / np.float32(255)     # energy-height ramp (dark = low energy)
PICTURE_CMAPS = ("grey", "diverging", "ternary", "log", "energy-height")
PICTURE_RANGES = ("fixed", "symmetric", "per_band")
PICTURE_DEFAULT_LIMITS = {"grey": (0.0, 1.0), "diverging": (-1.0, 1.0), "ternary": (-1.0, 1.0),
                          "log": (-1.0, 1.0), "energy-height": (-1.0, 1.0)}

_f32 = np.float32


def picture_layout(P, H, W, cols, sx=1, sy=1, gap=0):
    """``(height, width)`` of the picture of P panels of H x W values (see the section comment)."""
    rows = -(-P // cols)
    return rows * (H * sy + gap) - gap, cols * (W * sx + gap) - gap


def fade_step(acc, current, fade, reset=False):
    """One temporal-fade step on values (float32): ``fade * acc + (1 - fade) * current``."""
    cur = np.asarray(current, _f32)
    if reset or fade == 0 or acc is None:
        return cur.copy()
    f = _f32(fade)
    return f * np.asarray(acc, _f32) + (_f32(1) - f) * cur


def finite_maxabs(values, axis=None):
    """max|v| over the finite entries (0 where there are none), float32."""
    v = np.abs(np.asarray(values, _f32))
    return np.max(np.where(np.isfinite(v), v, _f32(0)), axis=axis, initial=_f32(0)).astype(_f32)


def picture_range(current, mode="fixed", vmin=-1.0, vmax=1.0):
    """``(centre, inv_half)`` float32 arrays of shape (P,) for panels ``current`` (P, H, W)."""
    _checks.option_choice("mode", mode, PICTURE_RANGES)
    P = np.shape(current)[0]
    if mode == "fixed":
        c, k = _f32((vmin + vmax) / 2.0), _f32(2.0 / (vmax - vmin))
        return np.full(P, c, _f32), np.full(P, k, _f32)
    if mode == "symmetric":
        m = np.full(P, finite_maxabs(current), _f32)
    else:  # per_band
        m = finite_maxabs(np.reshape(current, (P, -1)), axis=1)
    with np.errstate(divide="ignore"):
        k = np.where(m > 0, _f32(1) / np.where(m > 0, m, _f32(1)), _f32(0)).astype(_f32)
    return np.zeros(P, _f32), k


def _diverging(s):
    a = np.clip(s, _f32(-1), _f32(1))[..., None]
    neg = PICTURE_WHITE * (_f32(1) + a) + PICTURE_BLUE * (-a)
    pos = PICTURE_WHITE * (_f32(1) - a) + PICTURE_RED * a
    return np.where(a < 0, neg, pos).astype(_f32)


def _height(h):
    x = np.clip(np.asarray(h, _f32), _f32(0), _f32(1)) * _f32(4)
    i = np.minimum(x.astype(np.int32), 3)
    f = (x - i.astype(_f32))[..., None]
    return (PICTURE_HEIGHT[i] * (_f32(1) - f) + PICTURE_HEIGHT[i + 1] * f).astype(_f32)


def energy_height(s0, eps=1e-3):
    """The energy-height colour of normalised values ``s0`` (float32 RGB)."""
    a = np.abs(np.asarray(s0, _f32))
    e_norm = _f32(1.0 / np.log(1.0 / eps))
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(a > 0, _f32(1) + np.log(np.where(a > 0, a, _f32(1))).astype(_f32) * e_norm, _f32(0))
    return _height(h.astype(_f32))


def colorbar(cmap, width):
    """The colour bar's columns (float32 RGB, (width, 3)): see the section comment."""
    _checks.option_choice("cmap", cmap, PICTURE_CMAPS)
    u = ((np.arange(width, dtype=_f32) + _f32(0.5)) / _f32(width)).astype(_f32)
    s = (_f32(2) * u - _f32(1)).astype(_f32)
    if cmap == "grey":
        return np.repeat(np.clip(_f32(0.5) + _f32(0.5) * s, _f32(0), _f32(1))[:, None], 3, axis=1)
    if cmap == "ternary":
        third = _f32(1.0 / 3.0)
        return np.where((s < -third)[:, None], PICTURE_BLUE,
                        np.where((s > third)[:, None], PICTURE_RED, PICTURE_WHITE)).astype(_f32)
    if cmap == "energy-height":
        return _height(u)
    return _diverging(s)


def picture_s0(values, centre, inv_half):
    """The normalised signed value ``(v - centre) * inv_half`` (float32; centre/inv_half broadcast)."""
    return ((np.asarray(values, _f32) - _f32(centre)) * _f32(inv_half)).astype(_f32)


def colorize(values, cmap="diverging", centre=0.0, inv_half=1.0, tau=1e-3, eps=1e-3):
    """Colour of each value as float32 RGB in [0, 1], shape ``values.shape + (3,)``.

    ``centre``/``inv_half`` broadcast against ``values`` (per-panel arrays need a trailing (P,1,1))."""
    _checks.option_choice("cmap", cmap, PICTURE_CMAPS)
    v = np.asarray(values, _f32)
    with np.errstate(invalid="ignore", over="ignore"):
        s0 = picture_s0(v, centre, inv_half)
        if cmap == "grey":
            t = np.clip(_f32(0.5) + _f32(0.5) * s0, _f32(0), _f32(1))
            rgb = np.repeat(t[..., None], 3, axis=-1)
        elif cmap == "diverging":
            rgb = _diverging(s0)
        elif cmap == "energy-height":
            rgb = energy_height(s0, eps)
        elif cmap == "ternary":
            rgb = np.where((s0 < -_f32(tau))[..., None], PICTURE_BLUE,
                           np.where((s0 > _f32(tau))[..., None], PICTURE_RED, PICTURE_WHITE))
        else:  # log
            inv_eps, log_norm = _f32(1.0 / eps), _f32(1.0 / np.log1p(1.0 / eps))
            rgb = _diverging(np.sign(s0) * (np.log1p(np.abs(s0) * inv_eps) * log_norm))
    rgb = np.where(np.isfinite(v)[..., None], rgb, np.array(PICTURE_NONFINITE[:3], _f32) / _f32(255))
    return rgb.astype(_f32)


def to_rgba8(rgb):
    """float RGB in [0, 1] -> uint8 RGBA (round to nearest, alpha 255)."""
    rgb = np.asarray(rgb, np.float64)
    out = np.full(rgb.shape[:-1] + (4,), 255, np.uint8)
    out[..., :3] = np.clip(np.floor(rgb * 255.0 + 0.5), 0, 255)
    return out


def render_panels(panels, cmap="diverging", range="fixed", vmin=None, vmax=None, tau=1e-3, eps=1e-3,
                  cols=1, sx=1, sy=1, gap=0, acc=None, fade=0.0, reset=False, frame=None):
    """The reference picture of panels ``(P, H, W)`` (a 2-D field is P = 1): ``(rgba8 image, acc)``.

    ``acc`` is the faded state (P, H, W) float32 to pass back in on the next frame (``None`` on the
    first frame, which then behaves like ``reset``). ``vmin``/``vmax`` default to
    ``PICTURE_DEFAULT_LIMITS[cmap]`` and are used by ``range="fixed"`` only. ``frame``: a labelled
    layout (``height, width, oy, ox, pad_top, bar``: :class:`vkbands.labels.Frame`), whose text is
    not part of this reference (it is drawn over the background afterwards)."""
    cur = np.asarray(panels, _f32)
    if cur.ndim == 2:
        cur = cur[None]
    P, H, W = cur.shape
    lo, hi = PICTURE_DEFAULT_LIMITS[cmap]
    vmin = lo if vmin is None else vmin
    vmax = hi if vmax is None else vmax
    centre, inv_half = picture_range(cur, range, vmin, vmax)
    state = fade_step(acc, cur, fade, reset)
    rgb = colorize(state, cmap, centre[:, None, None], inv_half[:, None, None], tau, eps)
    tiles = to_rgba8(rgb)
    tiles = np.repeat(np.repeat(tiles, sy, axis=1), sx, axis=2)
    height, width = picture_layout(P, H, W, cols, sx, sy, gap)
    oy = ox = pad = 0
    if frame is not None:
        height, width, oy, ox, pad = frame.height, frame.width, frame.oy, frame.ox, frame.pad_top
    img = np.empty((height, width, 4), np.uint8)
    img[:] = PICTURE_BACKGROUND
    for p in np.arange(P):
        y0, x0 = oy + pad + (p // cols) * (H * sy + gap + pad), ox + (p % cols) * (W * sx + gap)
        img[y0:y0 + H * sy, x0:x0 + W * sx] = tiles[p]
    if frame is not None and frame.bar[3] > 0:
        by, bx, bh, bw = frame.bar
        img[by:by + bh, bx:bx + bw] = to_rgba8(colorbar(cmap, bw))[None]
    return img, state


__all__ += ["PICTURE_BACKGROUND", "PICTURE_NONFINITE", "PICTURE_BLUE", "PICTURE_WHITE", "PICTURE_RED",
            "PICTURE_CMAPS", "PICTURE_RANGES", "PICTURE_DEFAULT_LIMITS", "PICTURE_HEIGHT", "energy_height",
            "colorbar", "picture_layout", "fade_step",
            "finite_maxabs", "picture_range", "picture_s0", "colorize", "to_rgba8", "render_panels"]
