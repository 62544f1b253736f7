"""vkbands.viewer: the live viewer (GLFW window, Vulkan swapchain, preview quad, ImGui panel).

``run(...)`` opens a window on a running rollout and shows its sheet grid; ``vkbands view`` is its
command line. Only this package imports ``glfw`` and ``imgui``; modules are imported lazily so that
``import vkbands.viewer`` works without a display.

- :class:`vkbands.viewer.app.Viewer` — the frame loop (keys, controls, screenshots, recording).
- :class:`vkbands.viewer.source.SheetSource` — Simulation + BandPlan + ImageWriter -> storage image.
- :mod:`vkbands.viewer.panel` — the panel's system widgets, generated from the system specs.
- :mod:`vkbands.viewer.imgui_vk` — the ImGui renderer; :mod:`vkbands.viewer.preview` — the quad;
  :mod:`vkbands.viewer.swapchain`, :mod:`vkbands.viewer.window`.
"""
from __future__ import annotations

__all__ = ["run", "open_viewer"]


def open_viewer(system=None, *, width=1280, height=800, vsync=True, steps_per_frame=1, paused=False,
                show_ui=True, out_dir=".", record_fps=15.0, watch=None, x0=None, profile=False,
                **source_kwargs):
    """Create (and return) a :class:`~vkbands.viewer.app.Viewer` on a :class:`SheetSource` of
    ``system`` (a :class:`vkbands.Setup`, or a system name, default ``systems.DEFAULT_VIEW``);
    ``source_kwargs`` go to SheetSource (member, dims, cmap, range, vmin, vmax, fade and, with a name,
    the Setup keywords: size, arity, batch, init, seed, system parameters...). The caller closes it."""
    from .app import Viewer
    from .source import SheetSource

    def factory(ctx):
        return SheetSource(ctx, system, x0, **source_kwargs)

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
