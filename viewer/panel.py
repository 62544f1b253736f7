"""The viewer's panel: every ImGui widget of the simulation and display controls.

Pure functions map the system specs to widget descriptions (:class:`Widget`), so that what the panel
offers can be tested without a window; :func:`draw` draws a list of them:

- :func:`live_widgets` -- one slider per live parameter (``ParamSpec.live``) of the running system;
- :func:`restart_widgets` -- the set-up options of a new simulation (system, arity, depth, batch, seed,
  the system's initial states and their options, its parameters that are not live), edited in a
  dict of :class:`vkbands.Setup` keywords and applied with :func:`apply`.

:class:`Panel` is the ImGui window itself (status, run controls, those widgets, the picture controls,
the energy plot, the band x time image, messages, keys). It acts through method calls -- on the app
(``controls``: play, step, reset, screenshot, record, steps per frame, restart, error) and on the
sheet pipeline (``set_params``, ``set_display``) -- never through flags for the app to poll. ImGui is
the module given to it (or imported when it is built), so this module imports without a display.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any

import numpy as np

from vkbands import systems
from vkbands.image import CMAPS, RANGES
from vkbands.setup import COMMON, options_for

__all__ = ["Widget", "live_widgets", "restart_widgets", "widget_for", "apply", "draw", "Panel"]

PANEL_WIDTH = 380            # ImGui units (window coordinates)
BAND_TIME_TEXTURE_ID = 2     # the ImGui texture id of the band x time image (registered by the app)
ENERGY_COLOURS = [(0.35, 0.6, 1.0), (1.0, 0.5, 0.2), (0.4, 0.9, 0.4), (1.0, 0.3, 0.4), (0.8, 0.5, 1.0),
                  (0.9, 0.9, 0.3), (0.3, 0.9, 0.9), (1.0, 0.6, 0.8), (0.7, 0.7, 0.7)]

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


# ----------------------------------------------------------------------------- the ImGui window
class Panel:
    """The panel window (see the module docstring), drawn by :meth:`draw` once per frame.

    ``controls`` (the app) provides ``playing``, ``recording``, ``steps_per_frame``, ``fps``,
    ``device_name``, ``messages`` (``(text, is_error)`` pairs) and the methods ``toggle_play()``,
    ``single_step()``, ``reset()``, ``screenshot_sheets()``, ``start_recording()``,
    ``stop_recording()``, ``set_steps_per_frame(n)``, ``restart(system, **setup)`` and ``error(text)``.
    ``key_help``: ``(keys, what)`` rows of the "Keys" section.
    """

    def __init__(self, controls, key_help=(), width: int = PANEL_WIDTH, imgui=None):
        if imgui is None:
            import imgui
        self.imgui, self.controls, self.key_help, self.width = imgui, controls, list(key_help), width
        self.expand_all = False      # open every section (tests exercise all widgets)
        self._edit = None            # the restart options being edited ...
        self._edit_for = None        # ... for this pipeline (a new one starts from its own)

    def draw(self, sheets, height: float):
        """The panel window, ``height`` high, for the sheet pipeline ``sheets``. A restart asked for
        is applied after the window is finished (the old pipeline is no longer drawn from)."""
        im = self.imgui
        im.set_next_window_position(0, 0)
        im.set_next_window_size(self.width, height)
        im.begin("vkbands", flags=(im.WINDOW_NO_MOVE | im.WINDOW_NO_RESIZE | im.WINDOW_NO_COLLAPSE
                                   | im.WINDOW_NO_TITLE_BAR))
        self._status(sheets)
        self._run_controls()
        im.separator()
        restart = self._system(sheets)
        im.separator()
        self._cursor(sheets)
        self._energy_plot(sheets.energy_history)
        self._band_time(sheets.band_time)
        im.separator()
        self._messages()
        im.end()
        if restart is not None:
            self.controls.restart(**restart)

    # ------------------------------------------------------------------ app controls
    def _status(self, sheets):
        im, c = self.imgui, self.controls
        im.text(f"vkbands view  -  {c.device_name}")
        fps, ms_step = c.fps, sheets.ms_per_step
        im.text(f"{fps:6.1f} fps   {1000 / fps if fps else 0:6.2f} ms/frame")
        im.text(f"step {sheets.step}   {ms_step:.3f} ms/step (sampled)" if ms_step else f"step {sheets.step}")

    def _run_controls(self):
        im, c = self.imgui, self.controls
        im.separator()
        if im.button("Pause" if c.playing else "Play"):
            c.toggle_play()
        im.same_line()
        if im.button("Step"):
            c.single_step()
        im.same_line()
        if im.button("Reset"):
            c.reset()
        im.same_line()
        if im.button("Screenshot"):
            c.screenshot_sheets()
        im.same_line()
        if im.button("Stop rec" if c.recording else "Record"):
            c.stop_recording() if c.recording else c.start_recording()
        changed, v = im.slider_int("steps/frame", c.steps_per_frame, 1, 256)
        if changed:
            c.set_steps_per_frame(v)

    # ------------------------------------------------------------------ the system
    def _system(self, sheets):
        """The system's sections; returns the restart options asked for (or None)."""
        im = self.imgui
        im.text(f"{sheets.system_name}  {' x '.join(map(str, sheets.spatial))}  p={sheets.arity} L={sheets.L}"
                f"  batch={sheets.batch} (showing {sheets.member})")
        if im.tree_node("parameters", im.TREE_NODE_DEFAULT_OPEN):
            self._parameters(sheets)
            im.tree_pop()
        restart = None
        if self.expand_all:
            im.set_next_item_open(True)
        if im.tree_node("restart (system, size, initial state)"):
            restart = self._restart(sheets)
            im.tree_pop()
        if im.tree_node("picture", im.TREE_NODE_DEFAULT_OPEN):
            self._picture(sheets)
            im.tree_pop()
        return restart

    def _parameters(self, sheets):
        """One slider per live parameter; the fixed ones listed."""
        params = sheets.sim.params
        live = live_widgets(sheets.spec, params)
        for w, v in draw(self.imgui, live):
            try:
                sheets.set_params(**{w.key: v})
            except Exception as e:  # noqa: BLE001 — show it, keep running
                self.controls.error(str(e))
        shown = {w.key for w in live} | {p.name for p in sheets.spec.live_params}
        others = {k: v for k, v in params.items() if k not in shown}
        if others:
            self.imgui.text_wrapped("fixed (restart to change): " + ", ".join(
                f"{k}={v}" for k, v in others.items() if not isinstance(v, (list, tuple))))

    def _restart(self, sheets):
        """Options that need a new simulation (widgets from the specs), edited here; returns them when
        "Restart with these" was pressed."""
        im = self.imgui
        if self._edit is None or self._edit_for is not sheets:
            self._edit, self._edit_for = sheets.restart_options(), sheets
        current = dict(depth=sheets.L, arity=sheets.arity, batch=sheets.batch)
        for w, v in draw(im, restart_widgets(self._edit, current)):
            self._edit = apply(self._edit, w, v)
        im.text_wrapped("as `vkbands rollout` (int options -1: not set; rates: l0,l1,...)")
        if im.button("Restart with these"):
            options, self._edit = dict(self._edit), None
            return options
        return None

    def _picture(self, sheets):
        """Colour map, range, vmin/vmax, fade and which rows and levels are shown."""
        im = self.imgui
        changed, i = im.combo("colour map", CMAPS.index(sheets.cmap), list(CMAPS))
        if changed:
            sheets.set_display(cmap=CMAPS[i])
        changed, i = im.combo("range", RANGES.index(sheets.range), list(RANGES))
        if changed:
            sheets.set_display(range=RANGES[i])
        if sheets.range == "fixed":
            changed, (a, b) = im.drag_float2("vmin/vmax", sheets.vmin, sheets.vmax,
                                             change_speed=max(abs(sheets.vmax - sheets.vmin), 1e-6) / 200)
            if changed and b > a:
                sheets.set_display(vmin=a, vmax=b)
        changed, f = im.slider_float("fade", sheets.fade, 0.0, 0.99, "%.2f")
        if changed:
            sheets.set_display(fade=f)
        c1, v1 = im.checkbox("cumulative row", sheets.show_cumulative)
        im.same_line()
        c2, v2 = im.checkbox("detail row", sheets.show_detail)
        if c1 or c2:
            sheets.set_display(show_cumulative=v1, show_detail=v2)
        vis = list(sheets.visible_levels)
        changed_any = False
        im.text("levels shown (s^(l) and D^(l)):")
        for l in range(sheets.L + 1):
            if l % 4:
                im.same_line()                  # four boxes a line: they fit the panel
            name = "coarse" if l == sheets.L else f"l={l}"
            c, vis[l] = im.checkbox(f"{name}##lvl{l}", vis[l])
            changed_any |= c
        if changed_any and any(vis):
            sheets.set_display(visible_levels=vis)

    # ------------------------------------------------------------------ plots, messages
    def _energy_plot(self, hist):
        im = self.imgui
        im.text("log10 E_l(t)" + (f"  (last {len(hist)} samples)" if hist else ""))
        w, h = self.width - 20, 120
        x0, y0 = im.get_cursor_screen_pos()
        dl = im.get_window_draw_list()
        dl.add_rect_filled(x0, y0, x0 + w, y0 + h, im.get_color_u32_rgba(0.1, 0.1, 0.12, 1.0))
        if len(hist) < 2:
            im.dummy(w, h)
            return
        E = np.log10(np.maximum(np.asarray(hist, np.float64), 1e-30))
        finite = E[np.isfinite(E)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        lo = max(lo, hi - 12.0)            # 12 decades: dead bands (E ~ 0) do not flatten the rest
        if hi - lo < 1e-9:
            lo, hi = lo - 1, hi + 1
        n = E.shape[0]
        idx = np.arange(0, n, max(1, n // w))
        xs = x0 + idx / max(n - 1, 1) * (w - 1)
        for b in range(E.shape[1]):
            ys = y0 + h - 2 - (np.clip(E[idx, b], lo, hi) - lo) / (hi - lo) * (h - 4)
            col = ENERGY_COLOURS[b % len(ENERGY_COLOURS)] if b < E.shape[1] - 1 else (1.0, 1.0, 1.0)
            pts = [(float(a), float(c)) for a, c in zip(xs, ys) if math.isfinite(c)]
            if len(pts) >= 2:
                dl.add_polyline(pts, im.get_color_u32_rgba(*col, 1.0), flags=0, thickness=1.0)
        im.dummy(w, h)
        im.text(f"range 1e{lo:.1f} .. 1e{hi:.1f}")
        for b in range(E.shape[1]):         # the legend: one coloured name per curve
            col = ENERGY_COLOURS[b % len(ENERGY_COLOURS)] if b < E.shape[1] - 1 else (1.0, 1.0, 1.0)
            if b:
                im.same_line()
            im.text_colored(f"E_{b}" if b < E.shape[1] - 1 else "E_c", *col)

    def _cursor(self, sheets):
        """The value under the mouse (band, position in leaves, value), read on the device a frame late."""
        im, c = self.imgui, self.controls
        pick = None
        try:
            win, prev = c.window, c.preview
            if prev.rect is not None and prev.image is not None and not win.closed:
                cx, cy = win.cursor()
                s = win.framebuffer_size[0] / max(win.size[0], 1)
                x0, y0, w, h = prev.rect
                u = (cx * s - x0) * prev.image.width / max(w, 1)
                v = (cy * s - y0) * prev.image.height / max(h, 1)
                pick = sheets.pick(u, v)
        except Exception:  # noqa: BLE001 — no window (offscreen, tests): no read-out
            pick = None
        sheets.set_cursor(pick)
        cur = sheets.cursor
        if cur is not None and pick is not None:
            pos = ", ".join(map(str, cur["position"]))
            im.text(f"cursor: {cur['band']}  at ({pos})  value {cur['value']:.4g}")
        else:
            im.text("cursor: (over a panel: band, position, value)")

    def _band_time(self, image):
        if image is None:
            return
        im = self.imgui
        im.text("band x time: log E_l, rows = bands (coarse last),")
        im.text("one column per frame, newest right")
        w = self.width - 20
        im.image(BAND_TIME_TEXTURE_ID, w, w * image.height / image.width)

    def _messages(self):
        im = self.imgui
        for text, is_err in self.controls.messages:
            if is_err:
                im.text_colored(text, 1.0, 0.4, 0.4)
            else:
                im.text_wrapped(text)
        if im.collapsing_header("Keys", flags=im.TREE_NODE_DEFAULT_OPEN)[0]:
            for k, what in self.key_help:
                im.text(f"{k:>12}  {what}")
