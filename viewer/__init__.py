"""vkbands.viewer: the live viewer (GLFW window, Vulkan swapchain, preview quad, ImGui panel).

``run(...)`` opens a window on a running rollout and shows its sheet grid; ``vkbands view`` is its
command line. Only this package imports ``glfw`` and ``imgui``; modules are imported lazily so that
``import vkbands.viewer`` works without a display.

- :class:`vkbands.viewer.app.Viewer` — the app: frame loop, input and keys, wiring of the parts.
- :class:`vkbands.viewer.sheets.SheetPipeline` — Simulation + BandPlan sheets + ImageWriter picture
  -> storage image, recordings, band x time history, observables a frame late (no ImGui).
- :class:`vkbands.viewer.panel.Panel` — every ImGui widget; system widgets generated from the specs.
- :class:`vkbands.viewer.frame.FrameGraphics` — a frame's graphics command buffer and captures;
  :mod:`vkbands.viewer.barriers` — its barriers, from :mod:`vkbands.engine.hazards`.
- :mod:`vkbands.viewer.imgui_vk` — the ImGui renderer; :mod:`vkbands.viewer.preview` — the quad;
  :mod:`vkbands.viewer.swapchain`, :mod:`vkbands.viewer.window`, :mod:`vkbands.viewer.files`.
"""
from __future__ import annotations

__all__ = ["run", "open_viewer"]


def open_viewer(system=None, *, width=1280, height=800, vsync=True, steps_per_frame=1, paused=False,
                show_ui=True, out_dir=".", record_fps=15.0, watch=None, x0=None, profile=False,
                **sheets_kwargs):
    """Create (and return) a :class:`~vkbands.viewer.app.Viewer` on a :class:`SheetPipeline` of
    ``system`` (a :class:`vkbands.Setup`, or a system name, default ``systems.DEFAULT_VIEW``);
    ``sheets_kwargs`` go to SheetPipeline (member, dims, cmap, range, vmin, vmax, fade and, with a
    name, the Setup keywords: size, arity, batch, init, seed, system parameters...). The caller closes it."""
    from .app import Viewer
    from .sheets import SheetPipeline

    def factory(ctx, **wiring):
        return SheetPipeline(ctx, system, x0, **wiring, **sheets_kwargs)

    return Viewer(factory, width=width, height=height, vsync=vsync, steps_per_frame=steps_per_frame,
                  paused=paused, show_ui=show_ui, out_dir=out_dir, record_fps=record_fps, watch=watch,
                  profile=profile)


def run(system=None, *, frames=None, screenshot=None, load=None, record=False, **kwargs) -> int:
    """Open the viewer and loop until the window closes (or ``frames`` frames were shown; then
    ``screenshot`` saves the last one). ``load``: a .npy field to start from (a bad file is reported
    and the viewer keeps running). Other arguments as :func:`open_viewer`. Returns an exit code."""
    viewer = open_viewer(system, **kwargs)
    try:
        if load:
            viewer.load(load)
        if record:
            viewer.start_recording()
        return viewer.run(frames=frames, screenshot=screenshot)
    finally:
        viewer.close()
