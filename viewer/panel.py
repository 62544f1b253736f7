"""The viewer panel's system widgets, generated from the system specs.

Pure functions map specs to widget descriptions (:class:`Widget`), so that what the panel offers can
be tested without a window; :func:`draw` is the only function that calls ImGui.

- :func:`live_widgets` -- one slider per live parameter (``ParamSpec.live``) of the running system;
- :func:`restart_widgets` -- the set-up options of a new simulation (system, arity, depth, batch, seed,
  the system's initial states and their options, its parameters that are not live), edited in a
  dict of :class:`vkbands.Setup` keywords and applied with :func:`apply`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vkbands import systems
from vkbands.setup import COMMON, options_for

__all__ = ["Widget", "live_widgets", "restart_widgets", "widget_for", "apply", "draw"]

NOT_SET = "(not set)"
_RESTART_INTS = {"arity": (2, 9), "depth": (1, 8), "batch": (1, 1024), "seed": (0, 1 << 30)}


@dataclass
class Widget:
    """One panel control: ``kind`` "slider" (float), "int", "float", "combo" or "text"; ``key`` the
    parameter / option it sets; ``value`` its current value (combo: one of ``choices``; int: -1 for
    "not set" where ``optional``); ``lo``/``hi`` the slider or input bounds; ``fmt`` the slider format."""
    kind: str
    key: str
    label: str
    value: Any
    lo: float | None = None
    hi: float | None = None
    fmt: str = "%.3f"
    choices: tuple = field(default_factory=tuple)
    optional: bool = False
    help: str = ""


def live_widgets(spec, params: dict) -> list[Widget]:
    """One slider per live parameter of ``spec`` whose current value (``params``, a system's resolved
    parameters) is a number (e.g. tau and alpha are not in use while explicit rates are)."""
    out = []
    for p in systems.get(spec).live_params:
        cur = params.get(p.name)
        if isinstance(cur, bool) or not isinstance(cur, (int, float)):
            continue
        lo, hi = p.slider_range()
        out.append(Widget("slider", p.name, p.name, float(cur), lo, hi, p.fmt, help=p.help))
    return out


def widget_for(p, value) -> Widget | None:
    """The restart widget of one parameter / option spec (None for a matrix: Python only)."""
    name = p.name.replace("_", " ")
    if p.kind == "choice":
        choices = tuple(map(str, p.choices))
        if p.default is None:
            choices = (NOT_SET,) + choices
        cur = NOT_SET if value is None and p.default is None else str(p.default if value is None else value)
        return Widget("combo", p.name, name, cur, choices=choices, help=p.help)
    if p.kind == "int":
        lo = p.lo if p.lo is not None else -(1 << 30)
        hi = p.hi if p.hi is not None else 1 << 30
        optional = p.default is None
        cur = value if value is not None else p.default
        return Widget("int", p.name, name, -1 if cur is None else int(cur), lo, hi, optional=optional, help=p.help)
    if p.kind == "float":
        cur = value if value is not None else p.default
        return Widget("float", p.name, name, float(cur if cur is not None else 0.0), p.lo, p.hi, help=p.help)
    if p.kind == "floats":
        if isinstance(value, (list, tuple)):
            value = ",".join(f"{float(v):g}" for v in value)
        return Widget("text", p.name, name, "" if value is None else str(value), help=p.help)
    return None


def restart_widgets(edit: dict, current: dict | None = None) -> list[Widget]:
    """The restart section's widgets for the options being edited (``edit``: ``system`` plus Setup
    keywords); ``current``: values shown where ``edit`` has none (e.g. the running depth)."""
    current = current or {}
    spec = systems.get(edit["system"])
    out = [Widget("combo", "system", "system", spec.name, choices=systems.names())]
    common = {p.name: p for p in COMMON}
    for key, (lo, hi) in _RESTART_INTS.items():
        cur = edit.get(key, current.get(key, common[key].default))
        out.append(Widget("int", key, key, int(cur), lo, hi, help=common[key].help))
    kind = systems.get_init(edit.get("init", spec.inits[0]))
    out.append(Widget("combo", "init", "init", kind.name, choices=spec.inits, help=kind.help))
    values = {o.name: edit.get(o.name, o.default) for o in kind.options}
    for o in kind.options:
        if o.when is None or values.get(o.when[0]) in o.when[1]:
            w = widget_for(o, edit.get(o.name))
            if w is not None:
                out.append(w)
    for p in spec.params:
        if not p.live and p.cli:
            w = widget_for(p, edit.get(p.name))
            if w is not None:
                out.append(w)
    return out


def apply(edit: dict, widget: Widget, value) -> dict:
    """``edit`` after ``widget`` was changed to ``value`` (a new dict). A new system keeps only the
    options that apply to it (:func:`vkbands.setup.options_for`); a new depth drops a size; a parameter
    drops those it excludes."""
    if widget.key == "system":
        return dict(system=value, **options_for(value, edit, previous=edit["system"]))
    out = dict(edit)
    if widget.kind == "int":
        if widget.optional and value < 0:
            out.pop(widget.key, None)
            return out
        value = int(min(max(value, widget.lo), widget.hi))
        if widget.key == "depth":
            out.pop("size", None)
    elif widget.kind == "combo" and value == NOT_SET:
        out.pop(widget.key, None)
        return out
    elif widget.kind == "text":
        value = value.strip()
        if not value:
            out.pop(widget.key, None)
            return out
    out[widget.key] = value
    param = systems.get(edit["system"]).param(widget.key)
    for other in (param.excludes if param is not None else ()):
        out.pop(other, None)             # e.g. rates replace the tau/alpha profile, as in set_params
    return out


def draw(imgui, widgets) -> list[tuple[Widget, Any]]:
    """Draw ``widgets`` with ImGui; returns ``[(widget, new value)]`` of those changed this frame."""
    changed = []
    for w in widgets:
        if w.kind == "slider":
            c, v = imgui.slider_float(w.label, float(w.value), w.lo, w.hi, w.fmt)
        elif w.kind == "int":
            c, v = imgui.input_int(w.label, int(w.value))
        elif w.kind == "float":
            c, v = imgui.input_float(w.label, float(w.value))
        elif w.kind == "combo":
            choices = list(w.choices)
            c, i = imgui.combo(w.label, choices.index(w.value) if w.value in choices else 0, choices)
            v = choices[i]
        elif w.kind == "text":
            c, v = imgui.input_text(w.label, str(w.value), 256)
        else:
            raise ValueError(f"widget kind {w.kind!r}")
        if c:
            changed.append((w, v))
    return changed
