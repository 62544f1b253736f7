"""Argument checks of the vkbands modules (private; PyWavelets style: one small function per check).

Every function returns the checked (normalised) value or raises an error that names the argument,
the value given and what is allowed. Two families, kept apart because their callers' documented
behaviour differs:

* ``integer``, ``arity``, ``dims``, ``power_of_arity``, ``max_levels``, ``levels``, ``choice``, ``shape``, ``array_shape``,
  ``rates``, ``sign_matrix``, ``real_in`` -- the maths and array functions (``vkbands.reference``,
  ``vkbands.init``, ``vkbands.bands``): always ``ValueError``, worded
  ``"<name> must be <allowed>, got <value>"``.
* ``option_int``, ``option_real``, ``option_choice`` -- picture options (``vkbands.image``): a value of
  the wrong type is a ``TypeError``, one out of range a ``ValueError``, worded
  ``"<name>=<value>: must be <allowed>"``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np


def is_int(value) -> bool:
    """True for Python and NumPy integers; False for bools (``True`` is not an arity)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# ----------------------------------------------------------------------------- maths and arrays

def integer(name, value, lo, hi=None, note="") -> int:
    """``value`` as an int in ``lo..hi`` (``hi=None``: no upper bound); ``note`` says what the bound is."""
    if not is_int(value) or value < lo or (hi is not None and value > hi):
        allowed = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be an integer {allowed}{f' ({note})' if note else ''}, got {value!r}")
    return int(value)


def arity(value) -> int:
    """The arity ``p`` of SPEC section 1: an integer >= 2."""
    return integer("arity", value, 2)


def dims(value, shape) -> int:
    """Spatial axes of an array of ``shape``: 1 or 2, and no more than the array has."""
    if not is_int(value) or value not in (1, 2):
        raise ValueError(f"dims must be 1 or 2 (or None to infer), got {value!r}")
    if len(shape) < value:
        raise ValueError(f"shape {tuple(shape)} has fewer than dims={value} axes")
    return int(value)


def power_of_arity(size: int, p: int) -> int:
    """``k >= 1`` with ``p**k == size`` (SPEC section 1); else the error names the nearest valid sizes."""
    if size < p:
        raise ValueError(f"size {size} is too small for arity {p}; the smallest valid size is {p}")
    k, power = 1, p
    while power < size:
        k, power = k + 1, power * p
    if power != size:
        near = [m for m in (power // p, power) if m >= p]
        raise ValueError(f"size {size} is not a power of arity {p}; nearest valid sizes: "
                         + ", ".join(map(str, near)))
    return k


def max_levels(spatial, p: int) -> int:
    """Largest ``L`` with ``p**L`` dividing every size of ``spatial`` (SPEC section 1; 0 when none does)."""
    L = 0
    while all(n % p ** (L + 1) == 0 for n in spatial):
        L += 1
    return L


def levels(value, spatial, p: int) -> int:
    """The number of levels of a field of spatial shape ``spatial``: ``value`` (0..max) or, for
    ``None``, the maximum of :func:`max_levels`; above the maximum the error names it."""
    top = max_levels(spatial, p)
    if value is None:
        return top
    return integer("levels", value, 0, top,
                   f"{top} is the maximum for spatial shape {tuple(spatial)} with arity {p}")


def choice(name, value, allowed):
    """``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def shape(value, name="shape") -> tuple:
    """A full array shape: a non-empty tuple of positive sizes."""
    value = tuple(int(n) for n in value)
    if not value or min(value) < 1:
        raise ValueError(f"{name} must be a non-empty tuple of positive sizes, got {value}")
    return value


def non_empty(name, values, what):
    """``values`` (a list) unless it is empty; ``what`` says what it must hold."""
    if not values:
        raise ValueError(f"{name} must hold {what}, got an empty list")
    return values


def array_shape(name, got, ok: bool, expected: str):
    """Raise unless ``ok``: ``name`` must have shape ``expected`` (a description), got shape ``got``."""
    if not ok:
        raise ValueError(f"{name} must have shape {expected}, got shape {tuple(got)}")


def rates(values, L):
    """Per-band factors of SPEC 3.1: float64 of shape ``(L,)``."""
    r = np.asarray(values, dtype=np.float64)
    array_shape("rates", r.shape, r.shape == (L,), f"({L},) (one factor per detail band)")
    return r


def sign_matrix(C, L):
    """The coupling matrix of SPEC 3.2: ``(L, L)`` with entries in {-1, 0, 1}."""
    C = np.asarray(C)
    if C.shape != (L, L) or not np.isin(C, (-1, 0, 1)).all():
        raise ValueError(f"C must be an ({L}, {L}) matrix with entries in {{-1, 0, 1}}, "
                         f"got shape {C.shape}")
    return C


def real_in(name, value, lo, hi, note=""):
    """A finite real number in ``[lo, hi]``."""
    if not np.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}]{f' ({note})' if note else ''}, got {value!r}")
    return value


# ----------------------------------------------------------------------------- picture options

def option_int(name, value, lo) -> int:
    """An integer option >= ``lo`` (TypeError for a non-integer, ValueError below ``lo``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r}: must be an integer >= {lo}")
    if int(value) < lo:
        raise ValueError(f"{name}={value!r}: must be an integer >= {lo}")
    return int(value)


def option_real(name, value, lo=-math.inf, hi=math.inf, lo_open=False, hi_open=False, allowed="") -> float:
    """A finite real option in ``[lo, hi]`` (ends open on request); ``allowed`` describes the range
    for the message (" >= 0", " in [0, 1)")."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r}: must be a real number{allowed}")
    v = float(value)
    if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
        raise ValueError(f"{name}={value!r}: must be a finite number{allowed}")
    return v


def option_choice(name, value, allowed):
    """A string option, one of ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}={value!r}: allowed values are {', '.join(map(repr, allowed))}")
    return value
