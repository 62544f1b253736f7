"""``vkbands.Setup``: one validated set-up of a rollout -- the system, the field shape, the initial state
and its seed, the system's parameters -- the one path from options to a running system.

(This is the module ``vkbands.setup``, ``python_bindings/setup.py``; the repository's top-level
``setup.py`` is the build script.)

::

    s = vkbands.Setup("tree", depth=4, batch=8, init="band-pure", band=1, tau=0.5)
    s.x0()                    # (8, 81) float32, the initial state
    r = vkbands.rollout(s, steps=100)
    s.with_system("heat")     # the options that apply to heat (tau, band-pure... dropped)

Options (every one optional; None means not given):

- ``system``: a registered system (``vkbands.systems.names()``; default ``systems.DEFAULT_ROLLOUT``);
- ``arity`` (3; for a grid system given ``size`` or ``shape``: ``systems.default_arity`` of the grid),
  ``depth`` (L; default the system's) or ``size`` (leaves per axis: a power of p for the tree systems,
  any size >= 3 for the grid systems) or ``shape`` (``H x W``, grid systems only: ``"96x160"``),
  ``dims`` (default the system's first), ``batch`` (1), ``seed`` (0);
- ``init``: an initial-state kind of the system (default its first), and that kind's options
  (band-pure: ``band``, ``style``, ``sparse_m``, ``mix_band``, ``mix_eps``);
- the system's parameters (see docs/SYSTEMS.md), e.g. ``tau``, ``F``, ``preset``.

Everything is checked once, when the Setup is made, against the specs of :mod:`vkbands.systems`: an
unknown keyword is a ``TypeError``; a value out of range, an option that does not apply to the system
(or to the chosen initial state) and two options that exclude each other (``size`` and ``depth``,
``rates`` and ``tau``) are ``ValueError`` s naming the option, the value and what is allowed.
:func:`Setup.from_args` reads the options :func:`add_arguments` put on a command line (``vkbands
rollout``, ``vkbands view``) and words its errors with ``--option value``.
"""
from __future__ import annotations

import argparse

import numpy as np

from . import reference as R
from . import systems
from .systems import ParamSpec
from .systems._spec import label

__all__ = ["Setup", "options_for", "add_arguments", "option_names", "HelpFormatter", "COMMON"]

COMMON = (
    systems.ARITY,
    ParamSpec("depth", None, "int", lo=1, help="levels L: fields of p**L leaves per axis (default: the system's)"),
    ParamSpec("size", None, "int", lo=1, help="leaves per axis instead of --depth (tree systems: a power of p; "
                                            "grid systems: any size >= 3)"),
    ParamSpec("shape", None, "shape", lo=3, help="H x W of a grid system's fields instead of --size / --depth "
                                               "(any sizes >= 3)"),
    ParamSpec("dims", None, "int", lo=1, hi=2, help="1-D or 2-D fields (default: the system's first)"),
    ParamSpec("batch", 1, "int", lo=1, help="B, independent fields run together"),
    ParamSpec("seed", 0, "int", lo=0, help="seed of the initial state (and of other seeded parameters)"),
)
_COMMON = {p.name: p for p in COMMON}
_SHORT = {"arity": "-p", "depth": "-L", "batch": "-B"}


def _init_options() -> dict:
    """``{option name: ParamSpec}`` over the registered initial states."""
    out = {}
    for name in systems.init_names():
        for o in systems.get_init(name).options:
            out.setdefault(o.name, o)
    return out


def option_names() -> tuple:
    """Every keyword a Setup takes (besides ``system``), as they are registered now."""
    return tuple(_COMMON) + ("init",) + tuple(_init_options()) + tuple(systems.all_params())


def _init_kind(name):
    """The registered initial-state kind of ``name`` (aliases allowed), or None."""
    try:
        return systems.get_init(name)
    except (ValueError, TypeError):
        return None


def options_for(system, options: dict, previous=None) -> dict:
    """The ``options`` (a dict of Setup keywords) that apply to ``system``: parameters it has (with the
    same meaning as in the ``previous`` system, where given), ``dims`` it runs on, an initial state it
    has and that state's options. The viewer's panel uses it when the system is switched."""
    spec = systems.get(system)
    prev = systems.get(previous) if previous is not None else None
    init_opts = _init_options()
    out = {}
    for key, value in options.items():
        if key == "system" or value is None:
            continue
        if key == "dims":
            if str(value) in map(str, spec.dims):
                out[key] = value
        elif key == "init":
            kind = _init_kind(value)
            if kind is not None and kind.name in spec.inits:
                out[key] = value
        elif key in _COMMON:
            out[key] = value
        elif key in init_opts:
            continue                     # decided below, once the initial state is known
        elif spec.param(key) is not None and (prev is None or prev.param(key) == spec.param(key)):
            out[key] = value
    kind = _init_kind(out.get("init", spec.inits[0]))
    for key, value in options.items():
        if key in init_opts and value is not None and kind is not None and kind.option(key) is not None:
            out[key] = value
    return out


class Setup:
    """A validated set-up (see the module docstring).

    Attributes: ``system`` (name), ``spec`` (its SystemSpec), ``arity``, ``dims``, ``spatial`` (one
    field), ``levels`` (L), ``batch``, ``seed``, ``shape`` (of :meth:`x0`: ``(B,) + fields + spatial``),
    ``init`` (the initial-state kind), ``init_options`` (its options, defaults filled in),
    ``params`` (what the system is made with: ``arity`` and the given parameters, converted),
    ``options`` (the keywords given, converted: what :meth:`replace` / :meth:`with_system` start from).
    """

    def __init__(self, system=None, **options):
        self._build(system, options, cli=False)

    @classmethod
    def from_args(cls, args) -> "Setup":
        """The Setup of a parsed command line (options made by :func:`add_arguments`: strings, None when
        not given); errors name ``--option value``."""
        opts = {k: getattr(args, k) for k in option_names() if getattr(args, k, None) is not None}
        self = cls.__new__(cls)
        self._build(getattr(args, "system", None), opts, cli=True)
        return self

    # ------------------------------------------------------------------ building
    def _build(self, system, options, cli):
        """Validate everything once, in this order: system, which options apply, the field, the initial
        state, the parameters; then store the resolved values."""
        self._cli = cli
        spec = self._system_spec(system)
        opts = {k: v for k, v in options.items() if v is not None}
        self._refuse_foreign_options(spec, opts)
        conv = {k: _COMMON[k].convert(v, cli=cli) for k, v in opts.items() if k in _COMMON}
        arity, dims, spatial = self._field(spec, opts, conv)
        levels = R.levels(spatial, arity, dims)     # any size: the largest L with p**L dividing every axis
        kind, init_values, given_init = self._initial_state(spec, opts, levels)
        seed = conv.get("seed", _COMMON["seed"].default)
        params = self._parameters(spec, opts, levels, seed, conv.get("batch", _COMMON["batch"].default))
        self.spec, self.system = spec, spec.name
        self.arity, self.dims, self.spatial, self.levels = arity, dims, spatial, levels
        self.batch, self.seed = conv.get("batch", _COMMON["batch"].default), seed
        k = spec.fields_per_member
        self.shape = (self.batch,) + ((k,) if k > 1 else ()) + spatial
        self.init, self.init_options = kind.name, init_values
        self.params = dict(arity=arity, **params)
        self._remember_options(spec, opts, conv, init_values, given_init, params, kind)

    def _lab(self, name, value):
        return label(name, value, self._cli)

    def _system_spec(self, system):
        if system is None:
            system = systems.DEFAULT_ROLLOUT
        if system not in systems.names():
            raise ValueError(f"{self._lab('system', system)}: not a registered system; allowed: "
                             f"{', '.join(systems.names())}")
        return systems.get(system)

    def _refuse_foreign_options(self, spec, opts):
        """Unknown options (TypeError) and parameters of other systems (ValueError)."""
        init_opts, all_params = _init_options(), systems.all_params()
        unknown = sorted(set(opts) - set(_COMMON) - {"init"} - set(init_opts) - set(all_params))
        if unknown:
            raise TypeError(f"Setup: unknown option(s) {unknown}; allowed: system, {', '.join(option_names())}")
        for key in opts:
            if key in all_params and spec.param(key) is None:
                owners = ", ".join(s.name for s, _ in all_params[key])
                raise ValueError(f"{self._lab(key, opts[key])}: does not apply to {self._lab('system', spec.name)} "
                                 f"(a parameter of {owners}); allowed: {', '.join(spec.param_names) or 'no parameters'}")

    def _field(self, spec, opts, conv):
        """``(arity, dims, spatial)`` from arity, dims and one of size / depth."""
        arity = conv.get("arity", systems.ARITY.default)
        dims = conv.get("dims", spec.dims[0])
        if dims not in spec.dims:
            raise ValueError(f"{self._lab('dims', opts['dims'])}: does not apply to {self._lab('system', spec.name)}; "
                             f"allowed: {' or '.join(map(str, spec.dims))}")
        given = [k for k in ("size", "depth", "shape") if k in conv]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(self._lab(k, opts[k]) for k in given)}: give one "
                             f"of them (depth L means size p**L)")
        grid = issubclass(spec.cls, systems.GridSystem)
        if "shape" in conv and not grid:
            raise ValueError(f"{self._lab('shape', opts['shape'])}: does not apply to {self._lab('system', spec.name)} "
                             f"(a tree of p**L leaves per axis); allowed: {self._lab('size', 'N')} or "
                             f"{self._lab('depth', 'L')}")
        if grid and ("size" in conv or "shape" in conv):
            spatial = conv["shape"] if "shape" in conv else (conv["size"],) * dims
            if min(spatial) < 3:
                key = "shape" if "shape" in conv else "size"
                raise ValueError(f"{self._lab(key, opts[key])}: a grid needs H, W >= 3")
            if "arity" not in conv:
                arity = systems.default_arity(spatial)
            return arity, dims, tuple(spatial)
        if "size" in conv:
            side = conv["size"]
            try:
                R.tree_levels((side,), arity, 1)
            except ValueError as e:
                raise ValueError(f"{self._lab('size', opts['size'])}: {e}") from None
        else:
            depth = conv.get("depth", spec.default_depth.get(dims, max(spec.default_depth.values())))
            side = arity ** depth
        return arity, dims, (side,) * dims

    def _initial_state(self, spec, opts, levels):
        """``(kind, values, given)``: the initial-state kind, its options' values, the ones given."""
        sys_label = self._lab("system", spec.name)
        init_raw = opts.get("init", spec.inits[0])
        kind = _init_kind(init_raw)
        if kind is None or kind.name not in spec.inits:
            why = "not an initial state" if kind is None else f"does not apply to {sys_label}"
            raise ValueError(f"{self._lab('init', init_raw)}: {why}; allowed: {', '.join(spec.inits)}")
        init_opts = _init_options()
        given = {k: v for k, v in opts.items() if k in init_opts}
        for key, value in given.items():
            if kind.option(key) is None:
                owners = [n for n in systems.init_names() if systems.get_init(n).option(key) is not None]
                raise ValueError(f"{self._lab(key, value)}: applies to "
                                 f"{' or '.join(self._lab('init', o) for o in owners)} only "
                                 f"(the initial state is {kind.name})")
        values = {o.name: (o.convert(given[o.name], cli=self._cli, levels=levels) if o.name in given else o.default)
                  for o in kind.options}
        for o in kind.options:
            if o.when is not None and values[o.when[0]] not in o.when[1]:
                if o.name in given:
                    raise ValueError(f"{self._lab(o.name, given[o.name])}: applies with "
                                     f"{' or '.join(self._lab(o.when[0], v) for v in o.when[1])} only")
                del values[o.name]
        return kind, values, given

    def _parameters(self, spec, opts, levels, seed, batch):
        """The system's parameters, checked against its specs (per-member values: ``batch`` of them);
        seed-derived ones follow the seed."""
        given = {k: v for k, v in opts.items() if spec.param(k) is not None}
        params = spec.check_params(given, levels=levels, batch=batch, cli=self._cli)
        for p in spec.params:
            if p.seed_default and p.name not in params and not any(m in params for m in p.excludes):
                params[p.name] = seed
        return params

    def _remember_options(self, spec, opts, conv, init_values, given_init, params, kind):
        """``options``: what was given, converted (seed-derived values stay implicit)."""
        converted = dict(conv, **{k: init_values[k] for k in given_init}, **params)
        self.options = {k: converted.get(k, v) for k, v in opts.items()}
        if "init" in opts:
            self.options["init"] = kind.name
        for p in spec.params:
            if p.seed_default and p.name not in opts:
                self.options.pop(p.name, None)

    # ------------------------------------------------------------------ use
    def x0(self) -> np.ndarray:
        """The initial state, float32 ``shape`` (a new array each call; seeded: the same values)."""
        kind = systems.get_init(self.init)
        x = np.asarray(kind.make((self.batch,) + self.spatial, arity=self.arity, dims=self.dims, seed=self.seed,
                                 **self.init_options), dtype=np.float32)
        if x.shape != self.shape:
            raise ValueError(f"initial state {self.init!r} made shape {x.shape}; {self.system} needs {self.shape}")
        return x

    def replace(self, **changes) -> "Setup":
        """A new Setup with ``changes`` (``system=`` too; None removes an option)."""
        system = changes.pop("system", self.system)
        opts = {k: v for k, v in {**self.options, **changes}.items() if v is not None}
        return Setup(system, **opts)

    def with_system(self, name) -> "Setup":
        """The same set-up for system ``name``, without the options that do not apply to it (see
        :func:`options_for`)."""
        return Setup(name, **options_for(name, self.options, previous=self.system))

    def config(self) -> dict:
        """Everything resolved, JSON-friendly (``vkbands rollout`` writes it into summary.json)."""
        out = dict(system=self.system, arity=self.arity, dims=self.dims, size=self.spatial[0], depth=self.levels,
                   batch=self.batch, seed=self.seed, init=self.init, **self.init_options)
        if len(set(self.spatial)) > 1:
            out["shape"] = "x".join(map(str, self.spatial))
        for k, v in self.params.items():
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        return out

    def size_text(self) -> str:
        """The state's size in the words of the options that set it (memory and limit errors), e.g.
        ``--batch 100 fields of 729 leaves (--depth 6, --arity 3)`` on the command line."""
        leaves = " x ".join(map(str, self.spatial))
        k = self.spec.fields_per_member
        per = f"{k} x " if k > 1 else ""
        return (f"the state of {self._lab('batch', self.batch)} member(s) of {per}{leaves} leaves "
                f"({self._lab('depth', self.levels)}, {self._lab('arity', self.arity)})")

    def describe(self) -> str:
        return (f"{self.system}  {' x '.join(map(str, self.spatial))}  p={self.arity} L={self.levels}  "
                f"batch={self.batch}  init={self.init}  seed={self.seed}")

    def __eq__(self, other):
        if not isinstance(other, Setup):
            return NotImplemented
        return self.system == other.system and self.config() == other.config()

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"Setup({self.system!r}{', ' if opts else ''}{opts})"


# ----------------------------------------------------------------------------- command line
class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown where there is one; the epilog's lines kept."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _esc(text: str) -> str:
    return text.replace("%", "%%")


def _option(name) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser, system=None, params_note="defaults: SPEC") -> None:
    """The set-up options (``system`` plus :func:`option_names`), generated from the registered specs,
    on ``parser``; values stay strings (None when not given) for :meth:`Setup.from_args` to check.
    ``system``: the default system."""
    system = system or systems.DEFAULT_ROLLOUT
    specs = [systems.get(n) for n in systems.names()]
    g = parser.add_argument_group("system and field")
    g.add_argument("--system", default=system, metavar="NAME",
                   help=_esc("; ".join(f"{s.name}: {s.title}" for s in specs)))
    for p in COMMON:
        flags = [_option(p.name)] + ([_SHORT[p.name]] if p.name in _SHORT else [])
        default = p.default if p.name in ("batch", "seed") else None     # arity: Setup's default
        note = (f" (default: {p.default}; a grid system given --size / --shape: systems.default_arity of its "
                f"sizes)" if p.name == "arity" else "")
        g.add_argument(*flags, dest=p.name, default=default, metavar=p.metavar(),
                       help=_esc(f"{p.help}; {p.allowed()}{note}"))
    kinds = [systems.get_init(n) for n in systems.init_names()]
    g = parser.add_argument_group("initial state")

    def users(kind):
        names = [s.name for s in specs if kind.name in s.inits]
        return "" if len(names) == len(specs) else f" [{', '.join(names)} only]"
    g.add_argument("--init", default=None, metavar="KIND",
                   help=_esc("; ".join(f"{k.name}: {k.help}{users(k)}" for k in kinds)
                             + "; default: the system's first (" + ", ".join(f"{s.name}: {s.inits[0]}" for s in specs)
                             + ")"))
    for o in _init_options().values():
        g.add_argument(_option(o.name), dest=o.name, default=None, metavar=o.metavar(),
                       help=_esc(f"{o.help}; {o.allowed()}; default {o.default_text()}"))
    python_only = [f"{p.name} ({s.name})" for s in specs for p in s.params if not p.cli]
    g = parser.add_argument_group(
        f"system parameters ({params_note})",
        _esc("Each applies to the systems named in its help." +
             (f" Python only (vkbands.Setup / rollout): {', '.join(python_only)}." if python_only else "")))
    for name, owners in systems.all_params().items():
        if not any(p.cli for _, p in owners):
            continue
        groups = []                      # systems sharing one meaning of the parameter
        for s, p in owners:
            for entry in groups:
                if entry[1] == p:
                    entry[0].append(s.name)
                    break
            else:
                groups.append(([s.name], p))
        text = "; ".join(f"{', '.join(n)}: {p.help} ({p.allowed()}; default {p.default_text()}"
                         f"{'; live' if p.live else ''})" for n, p in groups)
        g.add_argument(_option(name), dest=name, default=None, metavar=groups[0][1].metavar(), help=_esc(text))
    lines = ["parameters by system (docs/SYSTEMS.md):"]
    lines += [f"  {s.name:<10} {', '.join(s.param_names) or '-'}" for s in specs]
    parser.epilog = "\n".join(lines)
