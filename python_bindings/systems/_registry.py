"""The registry of systems and initial-state kinds: ``register(spec)``, ``get(name)``, ``names()``.

A system module registers its :class:`~vkbands.systems.SystemSpec` when it is imported (the four
built-in ones from ``vkbands.systems``); a new system -- even one defined in a test file -- registers
its own and is then reachable from ``rollout``, ``Setup``, ``vkbands rollout`` / ``view`` and the
viewer's panel.
"""
from __future__ import annotations

from ._spec import RESERVED, InitSpec, SystemSpec

__all__ = ["register", "unregister", "get", "names", "register_init", "get_init", "init_names", "all_params"]

_SYSTEMS: dict[str, SystemSpec] = {}
_INITS: dict[str, InitSpec] = {}


def register_init(init: InitSpec, *, replace: bool = False) -> InitSpec:
    """Add an initial-state kind (its name and aliases must be new unless ``replace``)."""
    for key in (init.name, *init.aliases):
        if key in _INITS and not replace and _INITS[key] is not init:
            raise ValueError(f"initial state {key!r} is already registered")
    for opt in init.options:
        if opt.name in RESERVED:
            raise ValueError(f"initial state {init.name!r}: option name {opt.name!r} is reserved")
    for key in (init.name, *init.aliases):
        _INITS[key] = init
    return init


def get_init(name: str) -> InitSpec:
    if name not in _INITS:
        raise ValueError(f"init={name!r}: choose one of {', '.join(init_names())}")
    return _INITS[name]


def init_names() -> tuple:
    """Registered initial-state kinds (without aliases), in registration order."""
    seen = []
    for init in _INITS.values():
        if init.name not in seen:
            seen.append(init.name)
    return tuple(seen)


def _init_option_names() -> set:
    return {o.name for init in _INITS.values() for o in init.options}


def register(spec: SystemSpec, *, replace: bool = False) -> SystemSpec:
    """Add ``spec`` to the registry (and its own initial states); sets ``spec.cls.spec``. Refuses a
    name already taken (unless ``replace``), parameter names reserved for the set-up or used by an
    initial state, and unknown initial-state kinds or fields."""
    if spec.name in _SYSTEMS and not replace:
        raise ValueError(f"system {spec.name!r} is already registered")
    names_ = [p.name for p in spec.params]
    dup = {n for n in names_ if names_.count(n) > 1}
    bad = set(names_) & (RESERVED | _init_option_names())
    if dup or bad:
        raise ValueError(f"system {spec.name!r}: parameter name(s) {sorted(dup | bad)} repeated or reserved")
    if spec.observed not in spec.fields:
        raise ValueError(f"system {spec.name!r}: observed field {spec.observed!r} is not one of {spec.fields}")
    for init in spec.own_inits:
        register_init(init, replace=True)
    unknown = [i for i in spec.inits if i not in _INITS]
    if unknown or not spec.inits:
        raise ValueError(f"system {spec.name!r}: initial state(s) {unknown} are not registered")
    spec.cls.spec = spec
    _SYSTEMS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a system (tests that register a toy system)."""
    _SYSTEMS.pop(name, None)


def get(name) -> SystemSpec:
    """The spec of system ``name``; a ValueError naming the registered ones otherwise."""
    if isinstance(name, SystemSpec):
        return name
    if name not in _SYSTEMS:
        raise ValueError(f"system={name!r}: choose one of {', '.join(_SYSTEMS)}")
    return _SYSTEMS[name]


def names() -> tuple:
    """Registered system names, in registration order."""
    return tuple(_SYSTEMS)


def all_params() -> dict:
    """``{parameter name: [(system spec, ParamSpec), ...]}`` over the registered systems."""
    out: dict = {}
    for spec in _SYSTEMS.values():
        for p in spec.params:
            out.setdefault(p.name, []).append((spec, p))
    return out
