"""What a system is, as data: its parameters (:class:`ParamSpec`), initial-state kinds
(:class:`InitSpec`), picture defaults (:class:`PictureSpec`) and layout (:class:`SystemSpec`).

Everything that is generated from a system -- command-line options, validation, the viewer's widgets,
the docs' parameter tables -- reads these records; nothing outside :mod:`vkbands.systems` names a
particular system.

Errors: a value that is not allowed raises ``ValueError`` worded
``"<label>: <problem>; allowed: <allowed>"``, where ``<label>`` is ``name=value`` (Python) or
``--name value`` (the command line: ``cli=True``).

Per-member values (SPEC 3.2b, Python only): a numeric parameter (kind "float", and "floats" as a 2-D
array) may be given as one value per batch member; :meth:`ParamSpec.convert` with ``batch=B`` checks
the length and every entry (an error names the parameter, the member index and what is allowed, e.g.
``"tau: 3 values for a batch of B = 4 members; allowed: one number or 4 numbers (one per member), each a
finite number > 0"``) and returns a list of floats (rates: a list of B rows).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["ParamSpec", "InitSpec", "PictureSpec", "SystemSpec", "label", "RESERVED"]

KINDS = ("float", "int", "choice", "floats", "matrix", "shape")

# Option names a system parameter may not take: the set-up's own options and the run's.
RESERVED = frozenset({"system", "arity", "depth", "size", "shape", "dims", "batch", "seed", "init", "steps", "every",
                      "snapshot_every", "x0", "ctx", "progress", "chunk", "reduce", "member", "out",
                      "minmax"})


def label(name: str, value, cli: bool = False) -> str:
    """How an error names an argument: ``tau=-1.0`` (Python) or ``--tau -1`` (command line)."""
    if cli:
        return f"--{name.replace('_', '-')} {value}"
    return f"{name}={value!r}"


def _short(name, value, cli):
    """``label``, with a long array (a per-member value may be) shown by its shape."""
    if _is_seq(value) and int(np.prod(_shape_of(value))) > 8:
        return f"{name}=<{'x'.join(map(str, _shape_of(value)))} values>"
    return label(name, value, cli)


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _is_seq(v) -> bool:
    """A list, tuple or array of one or more axes (what per-member values are given as)."""
    return isinstance(v, (list, tuple)) or (isinstance(v, np.ndarray) and v.ndim >= 1)


def _shape_of(v) -> tuple:
    try:
        return np.asarray(v, dtype=object).shape
    except Exception:  # noqa: BLE001 -- ragged
        return (len(v),)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter (or set-up option).

    Attributes:
        name: the keyword (and ``--name`` on the command line, ``_`` written ``-``).
        default: the value used when it is not given (None: not set, e.g. explicit rates).
        kind: "float", "int", "choice" (one of ``choices``), "floats" (one number or a list, e.g.
            per-band rates; ``"a,b,c"`` on the command line) or "matrix" (Python only).
        lo, hi, lo_open, hi_open: the allowed range (None: unbounded; floats must be finite).
        hi_levels: the upper bound is L - 1 (a band index), known once the field is.
        per_level: "floats": one value or L values; "matrix": L x L.
        live: can change while a simulation runs (the viewer's sliders).
        help: one line for ``--help``, the panel and docs/SYSTEMS.md.
        slider: (lo, hi) of the viewer's slider (default: the allowed range where finite).
        fmt: printf format of the slider.
        excludes: parameters that cannot be given together with this one (the later replaces the
            earlier in ``set_params``).
        cli: a command-line option (False: Python only).
        seed_default: when not given, the set-up's ``seed`` (e.g. the coupling matrix's seed).
        when: ``(option, values)``: applies only when that other option has one of those values.
        per_member: may be given one value per batch member (SPEC 3.2b; Python only). Default: the
            numeric kinds ("float": B numbers; "floats": a (B, L) or (B, 1) array); never for
            choices, ints, matrices and shapes.
    """
    name: str
    default: Any = None
    kind: str = "float"
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()
    hi_levels: bool = False
    per_level: bool = False
    live: bool = False
    help: str = ""
    slider: tuple | None = None
    fmt: str = "%.3f"
    excludes: tuple = ()
    cli: bool = True
    seed_default: bool = False
    when: tuple | None = None
    per_member: bool | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"ParamSpec {self.name!r}: kind={self.kind!r}; allowed: {', '.join(KINDS)}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"ParamSpec {self.name!r}: a choice needs choices")

    # -------------------------------------------------------------- text
    def _hi(self, levels):
        if self.hi_levels and levels is not None:
            return levels - 1
        return self.hi

    def range_text(self, levels=None) -> str:
        lo, hi = self.lo, self._hi(levels)
        if self.kind == "int":
            if lo is not None and hi is not None:
                return f"an integer in [{lo}, {hi}]"
            if lo is not None:
                return f"an integer >= {lo}" + (" (at most L - 1)" if self.hi_levels else "")
            if hi is not None:
                return f"an integer <= {hi}"
            return "an integer"
        if lo is None and hi is None:
            return "a finite number"
        if lo is not None and hi is not None:
            return f"a number in {'(' if self.lo_open else '['}{_num(lo)}, {_num(hi)}{')' if self.hi_open else ']'}"
        if lo is not None:
            return f"a finite number {'>' if self.lo_open else '>='} {_num(lo)}"
        return f"a finite number {'<' if self.hi_open else '<='} {_num(hi)}"

    def allowed(self, levels=None) -> str:
        """What is allowed, in words."""
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind == "floats":
            n = "L" if levels is None else str(levels)
            return f"one number or {n} comma-separated numbers, each {self.range_text(levels)}"
        if self.kind == "shape":
            return f"H x W (e.g. 96x160), each an integer >= {self.lo}"
        if self.kind == "matrix":
            n = "L" if levels is None else str(levels)
            return f"an {n} x {n} matrix" + (f" with entries in {{{', '.join(map(str, self.choices))}}}"
                                               if self.choices else "")
        return self.range_text(levels)

    @property
    def member_values(self) -> bool:
        """Whether one value per batch member is allowed (see ``per_member``)."""
        if self.per_member is not None:
            return bool(self.per_member)
        return self.kind in ("float", "floats")

    def allowed_per_member(self, levels=None, batch=None) -> str:
        """What is allowed, in words, where per-member values are."""
        B = "B" if batch is None else str(batch)
        if self.kind == "floats":
            n = "L" if levels is None else str(levels)
            return (f"one number, {n} numbers (one per band) or a ({B}, {n}) or ({B}, 1) array (one row per "
                    f"member), each {self.range_text(levels)}")
        return f"one number or {B} numbers (one per member), each {self.range_text(levels)}"

    def metavar(self) -> str:
        return {"float": "X", "int": "N", "floats": "X[,X...]", "matrix": "M", "shape": "HxW"}.get(
            self.kind, "{" + ",".join(map(str, self.choices)) + "}")

    def slider_range(self) -> tuple[float, float]:
        """(lo, hi) of the viewer's slider for a live parameter."""
        if self.slider is not None:
            return tuple(float(v) for v in self.slider)
        lo = self.lo if self.lo is not None else -max(1.0, 4 * abs(float(self.default or 0)))
        hi = self.hi if self.hi is not None else max(1.0, 4 * abs(float(self.default or 0)))
        return float(lo), float(hi)

    # -------------------------------------------------------------- checks
    def _fail(self, value, problem, cli, levels=None):
        raise ValueError(f"{label(self.name, value, cli)}: {problem}; allowed: {self.allowed(levels)}")

    def _number(self, value, shown, cli, levels, integer):
        """One number (``shown``: the whole value, for the message) checked against the range."""
        if isinstance(value, str):
            text = value.strip()
            try:
                value = int(text) if integer else float(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    self._fail(shown, "not a number", cli, levels)
        if not _is_real(value):
            self._fail(shown, f"not a number ({type(value).__name__})", cli, levels)
        if integer:
            if not _is_int(value):
                if not math.isfinite(float(value)) or float(value) != int(value):
                    self._fail(shown, "not an integer", cli, levels)
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                self._fail(shown, "not finite", cli, levels)
        lo, hi = self.lo, self._hi(levels)
        if lo is not None and (value < lo or (self.lo_open and value == lo)):
            self._fail(shown, "out of range", cli, levels)
        if hi is not None and (value > hi or (self.hi_open and value == hi)):
            self._fail(shown, "out of range", cli, levels)
        return value

    def _member_fail(self, problem, levels, batch):
        raise ValueError(f"{self.name}: {problem}; allowed: {self.allowed_per_member(levels, batch)}")

    def _member_number(self, v, where, levels, batch):
        """One entry of a per-member value, checked against the range (``where``: "member 2")."""
        if isinstance(v, np.ndarray) and v.ndim == 0:
            v = v.item()
        if not _is_real(v):
            self._member_fail(f"{where}: {v!r} is not a number", levels, batch)
        f = float(v)
        if not math.isfinite(f):
            self._member_fail(f"{where}: {f} is not finite", levels, batch)
        lo, hi = self.lo, self._hi(levels)
        if (lo is not None and (f < lo or (self.lo_open and f == lo))) or \
                (hi is not None and (f > hi or (self.hi_open and f == hi))):
            self._member_fail(f"{where}: {f:g} is out of range", levels, batch)
        return f

    def _per_member(self, value, levels, batch):
        """A per-member value checked: "float" -> list of B floats; "floats" -> list of B rows."""
        shape = _shape_of(value)
        if not self.member_values:
            what = f"{shape[0]} values" if len(shape) == 1 else f"an array of shape {shape}"
            raise ValueError(f"{self.name}: {what} given; allowed: {self.allowed(levels)}, one value shared by "
                             f"the whole batch (no per-member values)")
        if self.kind == "floats":
            if len(shape) != 2:
                self._member_fail(f"an array of shape {shape}", levels, batch)
            rows, cols = shape
            if batch is not None and rows != batch:
                self._member_fail(f"{rows} rows for a batch of B = {batch} members", levels, batch)
            if cols != 1 and levels is not None and cols != levels:
                self._member_fail(f"{cols} values per member for L = {levels} bands", levels, batch)
            return [[self._member_number(v, f"member {i}, band {j}", levels, batch) for j, v in enumerate(row)]
                    for i, row in enumerate(np.asarray(value, dtype=object))]
        if len(shape) != 1:
            self._member_fail(f"an array of shape {shape}", levels, batch)
        if batch is not None and shape[0] != batch:
            self._member_fail(f"{shape[0]} values for a batch of B = {batch} members", levels, batch)
        return [self._member_number(v, f"member {i}", levels, batch) for i, v in enumerate(value)]

    def convert(self, value, *, cli: bool = False, levels: int | None = None, batch: int | None = None):
        """``value`` checked and converted (str values as typed on a command line are parsed);
        None passes as None (not set). Per-member values (Python only; ``batch``: B, checked when
        known): a list of B floats ("float") or of B rows ("floats" given a 2-D array)."""
        if value is None:
            return None
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        if not cli and _is_seq(value) and (self.kind in ("float", "int", "choice")
                                           or (self.kind == "floats" and len(_shape_of(value)) >= 2)
                                           or (self.kind == "matrix" and len(_shape_of(value)) >= 3)):
            return self._per_member(value, levels, batch)
        if self.kind in ("float", "int"):
            return self._number(value, value, cli, levels, self.kind == "int")
        if self.kind == "choice":
            if value not in self.choices:
                for c in self.choices:        # "2" from a command line for a choice of ints
                    if str(c) == str(value):
                        return c
                self._fail(value, "not one of the choices", cli)
            return value
        if self.kind == "floats":
            items = value
            if isinstance(value, str):
                items = [v for v in value.split(",") if v.strip()]
                if not items:
                    self._fail(value, "no numbers", cli, levels)
            elif _is_real(value):
                items = [value]
            try:
                items = list(np.asarray(items, dtype=object).reshape(-1))
            except Exception:  # noqa: BLE001 -- anything that is not a sequence of numbers
                self._fail(value, "not a list of numbers", cli, levels)
            out = [self._number(v, value, cli, levels, False) for v in items]
            if self.per_level and levels is not None and len(out) not in (1, levels):
                self._fail(value, f"{len(out)} values for L = {levels} bands", cli, levels)
            return out
        if self.kind == "shape":
            items = value.lower().replace(" ", "").split("x") if isinstance(value, str) else value
            try:
                items = list(items)
            except TypeError:
                self._fail(value, "not H x W", cli, levels)
            if len(items) != 2:
                self._fail(value, "not H x W", cli, levels)
            return tuple(self._number(v, value, cli, levels, True) for v in items)
        # matrix (Python only)
        try:
            m = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            self._fail(value, "not a matrix of numbers", cli, levels)
        if self.per_level and levels is not None and m.shape != (levels, levels):
            self._fail(f"<array of shape {m.shape}>", f"shape {m.shape}", cli, levels)
        if self.choices and not np.isin(m, self.choices).all():
            self._fail(f"<array of shape {m.shape}>", "an entry is not allowed", cli, levels)
        return np.asarray(value)

    def default_text(self) -> str:
        if self.seed_default:
            return f"the set-up's seed ({_num(self.default)} without a set-up)"
        if self.default is None:
            return "not set"
        return _num(self.default) if not isinstance(self.default, str) else self.default


@dataclass(frozen=True)
class InitSpec:
    """An initial-state kind: ``make(shape, *, arity, dims, seed, **options)`` returns the float32
    state of a batch, ``shape = (B,) + spatial`` (the system's per-member field axes are added by
    ``make`` when it has several fields, e.g. Gray-Scott's u, v). ``options``: its own
    :class:`ParamSpec` s (``when`` may tie one to another option's values)."""
    name: str
    make: Callable
    options: tuple = ()
    help: str = ""
    aliases: tuple = ()

    def option(self, name):
        for o in self.options:
            if o.name == name:
                return o
        return None


@dataclass(frozen=True)
class PictureSpec:
    """Picture defaults: ``cmap`` of the files ``vkbands rollout`` writes (fixed range over the
    rollout), ``view_cmap`` / ``range`` of the viewer (SPEC section 6)."""
    cmap: str = "log"
    view_cmap: str = "diverging"
    range: str = "fixed"


def _frozen(d):
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class SystemSpec:
    """One system: everything the set-up, the command line, the viewer and the docs know about it.

    Attributes:
        name: the registry key (``--system name``).
        title: one line (``--help``, docs).
        cls: the stepping class, ``cls(ctx, B, spatial, dims, arity=None, **params)`` (see
            :mod:`vkbands.systems`).
        params: its :class:`ParamSpec` s, in display order.
        dims: spatial dimensions it runs on; the first is the default.
        fields: names of the fields of one member, in state order (Gray-Scott: ("u", "v")).
        observed: the field bands, pictures and observables observe.
        square: 2-D fields must be square.
        default_depth: ``{dims: L}``: the field size ``arity**L`` a set-up uses by default.
        inits: initial-state kinds that apply (names in the registry); the first is the default.
        own_inits: :class:`InitSpec` s of this system only (registered with it).
        picture: :class:`PictureSpec`.
        presets: ``{name: {param: value}}`` (the ``preset`` parameter's choices), or empty.
        closed_form: ``f(rollout) -> (T, B, L+1)`` expected energies, or None.
        reference: where the maths is defined (e.g. "SPEC 3.1").
    """
    name: str
    title: str
    cls: type
    params: tuple = ()
    dims: tuple = (1, 2)
    fields: tuple = ("x",)
    observed: str = "x"
    square: bool = True
    default_depth: Mapping = field(default_factory=lambda: _frozen({1: 6, 2: 5}))
    inits: tuple = ("random", "impulse", "smooth", "band-pure")
    own_inits: tuple = ()
    picture: PictureSpec = PictureSpec()
    presets: Mapping = field(default_factory=lambda: _frozen({}))
    closed_form: Callable | None = None
    reference: str = ""

    def __post_init__(self):
        object.__setattr__(self, "default_depth", _frozen(self.default_depth))
        object.__setattr__(self, "presets", _frozen(self.presets))
        object.__setattr__(self, "params", tuple(self.params))

    # -------------------------------------------------------------- layout
    @property
    def fields_per_member(self) -> int:
        return len(self.fields)

    @property
    def observed_index(self) -> int:
        return self.fields.index(self.observed)

    def observed_field(self, x, dims):
        """The observed field of a state or snapshot ``x`` (any leading axes; ``dims`` spatial)."""
        x = np.asarray(x)
        if self.fields_per_member == 1:
            return x
        return np.take(x, self.observed_index, axis=x.ndim - dims - 1)

    def resolve_shape(self, shape, dims=None):
        """``(batched, B, spatial, dims)`` of a state of array ``shape``: ``member`` or ``(B,) + member``
        with ``member = (fields,) + spatial`` for several fields, else ``spatial``."""
        shape = tuple(int(n) for n in shape)
        k = self.fields_per_member
        if dims is not None and dims not in self.dims:
            raise ValueError(f"{self.name}: dims={dims!r} does not apply; allowed: "
                             + " or ".join(map(str, self.dims)))
        if dims is None:
            if len(self.dims) == 1:
                dims = self.dims[0]
            elif len(shape) == 1:
                dims = 1
            elif len(shape) == 2 and 1 in self.dims and self.square and shape[0] != shape[1]:
                dims = 1    # (B, N) that cannot be a square 2-D field: a batch of 1-D fields
            else:
                dims = 2    # the documented default for square (H, W) and (B, H, W)
        member = len(shape) - (k > 1) - dims
        if member not in (0, 1) or (k > 1 and shape[-dims - 1] != k) or min(shape, default=0) < 1:
            sp = "N" if dims == 1 else "H, W"
            lead = f"{k}, " if k > 1 else ""
            how = f"stack {' then '.join(self.fields)}: " if k > 1 else ""
            extra = " (pass dims=1 for a batch of 1-D fields)" if 1 in self.dims and dims == 2 else ""
            raise ValueError(f"{self.name}: state must {how or 'be '}({lead}{sp}) or (B, {lead}{sp}), got shape "
                             f"{shape}{extra}")
        spatial = shape[-dims:]
        if self.square and dims == 2 and spatial[0] != spatial[1]:
            raise ValueError(f"{self.name}: 2-D fields must be square (p**L x p**L), got {spatial}")
        return member == 1, (shape[0] if member else 1), spatial, dims

    # -------------------------------------------------------------- parameters
    def param(self, name) -> ParamSpec | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    @property
    def param_names(self) -> tuple:
        return tuple(p.name for p in self.params)

    @property
    def live_params(self) -> tuple:
        return tuple(p for p in self.params if p.live)

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def check_params(self, params: Mapping, *, levels: int | None = None, batch: int | None = None,
                     cli: bool = False) -> dict:
        """``params`` checked against the specs and converted (None values pass: not set); ``batch``:
        the number of members per-member values must have (None: not known yet, not checked).

        Unknown names: ``TypeError``; a value not allowed, or two parameters that exclude each other
        given together: ``ValueError`` naming them, the value and what is allowed."""
        unknown = sorted(set(params) - set(self.param_names))
        if unknown:
            raise TypeError(f"{self.name}: unknown parameter(s) {unknown}; allowed: "
                            f"{', '.join(self.param_names + ('arity',))}")
        out = {name: self.param(name).convert(v, cli=cli, levels=levels, batch=batch) for name, v in params.items()}
        given = [n for n, v in out.items() if v is not None]
        for n in given:
            clash = [m for m in self.param(n).excludes if m in given]
            if clash:
                other = clash[0]
                raise ValueError(f"{_short(n, params[n], cli)} and {_short(other, params[other], cli)}: give one of "
                                 f"them ({n} replaces {', '.join(self.param(n).excludes)})")
        return out

    def merge(self, current: Mapping, given: Mapping) -> dict:
        """``current`` parameters updated by ``given`` ones; a given (non-None) parameter drops those
        it excludes (e.g. explicit rates drop the tau/alpha profile)."""
        merged = {**current, **given}
        for n, v in given.items():
            if v is not None:
                for m in self.param(n).excludes:
                    if m not in given:
                        merged.pop(m, None)
        return merged
