"""vkbands.viewer: the live viewer (GLFW window, Vulkan swapchain, preview quad, ImGui panel).

``run(...)`` opens a window on a running rollout and shows its sheet grid (or, ``offscreen=True``,
draws the same frames into offscreen images with no window or display); ``vkbands view`` is its
command line. Only this package imports ``glfw`` and ``imgui``; modules are imported lazily so that
``import vkbands.viewer`` works without a display.

- :class:`vkbands.viewer.app.Viewer` — the app: frame loop, input and keys, wiring of the parts.
- :class:`vkbands.viewer.sheets.SheetPipeline` — Simulation + BandPlan sheets + ImageWriter picture
  -> storage image, recordings, band x time history, observables a frame late (no ImGui).
- :class:`vkbands.viewer.panel.Panel` — every ImGui widget; system widgets generated from the specs.
- :class:`vkbands.viewer.frame.FrameGraphics` — a frame's graphics command buffer and captures;
  :mod:`vkbands.viewer.barriers` — its barriers, from :mod:`vkbands.engine.hazards`.
- :mod:`vkbands.viewer.imgui_vk` — the ImGui renderer; :mod:`vkbands.viewer.preview` — the quad;
  :mod:`vkbands.viewer.swapchain`, :mod:`vkbands.viewer.window`, :mod:`vkbands.viewer.files`;
  :mod:`vkbands.viewer.offscreen` — the headless stand-ins for the window and the swapchain.
"""
from __future__ import annotations

__all__ = ["run", "open_viewer"]


def open_viewer(system=None, *, width=1280, height=800, vsync=True, steps_per_frame=1, paused=False,
                show_ui=True, out_dir=".", record_fps=None, watch=None, x0=None, profile=False,
                offscreen=False, record_format="mp4", record_every=None, **sheets_kwargs):
    """Create (and return) a :class:`~vkbands.viewer.app.Viewer` on a :class:`SheetPipeline` of
    ``system`` (a :class:`vkbands.Setup`, or a system name, default ``systems.DEFAULT_VIEW``);
    ``sheets_kwargs`` go to SheetPipeline (member, dims, cmap, range, vmin, vmax, fade and, with a
    name, the Setup keywords: size, arity, batch, init, seed, system parameters...). ``offscreen``: no
    window (offscreen images, no display needed). The caller closes it."""
    from .app import Viewer
    from .sheets import SheetPipeline

    def factory(ctx, **wiring):
        return SheetPipeline(ctx, system, x0, **wiring, **sheets_kwargs)

    return Viewer(factory, width=width, height=height, vsync=vsync, steps_per_frame=steps_per_frame,
                  paused=paused, show_ui=show_ui, out_dir=out_dir, record_fps=record_fps, watch=watch,
                  profile=profile, offscreen=offscreen, record_format=record_format, record_every=record_every)


def run(system=None, *, frames=None, screenshot=None, load=None, watch=None, record=False, out_dir=".",
        video=None, **kwargs) -> int:
    """Open the viewer and loop until the window closes (or ``frames`` frames were shown; then
    ``screenshot``, a new file, saves the last one). ``load``: a .npy field to start from; ``watch``:
    a .npy file re-read whenever it changes; ``record``: record from the start (a new name in
    ``out_dir``); ``video``: record an MP4 from the start into this new file. Other arguments as
    :func:`open_viewer` (``offscreen=True``: no window).

    Interactive (``frames=None``), a bad ``load``/``watch`` file is shown and the viewer keeps running.
    With ``frames`` (a script), what cannot work is refused before the window opens: a ``screenshot``
    or ``video`` path that exists or whose folder does not, an ``out_dir`` that cannot be made, a ``load``/``watch``
    file that cannot be read (or, once the pipeline exists, does not fit it) raise ValueError
    ``"<option> <path>: why"``. Returns 0, or 130 when interrupted (SIGINT/SIGTERM: the recording in
    progress is saved first; :meth:`Viewer.run`)."""
    from .files import FileWatch, check_new_file, check_out_dir, read_input

    strict = frames is not None
    if screenshot is not None:
        screenshot = check_new_file("--screenshot", screenshot)
    if video is not None:
        video = check_new_file("--video", video)
    if record:
        check_out_dir("--out-dir", out_dir)
    fields, watcher = {}, None
    if strict:                                   # read before any window or device work
        if load:
            fields["--load"] = (load, read_input("--load", load))
        if watch:
            watcher = FileWatch(watch)
            fields["--watch"] = (watch, watcher.read("--watch"))
    from vkbands import _interrupt
    with _interrupt.terminate_raises():          # SIGTERM while starting: KeyboardInterrupt, like SIGINT
        viewer = open_viewer(system, watch=watch, out_dir=out_dir, **kwargs)
        try:
            if strict:
                if watcher is not None:
                    viewer.watch = watcher       # already read: not read again until it changes
                for option, (path, x) in fields.items():
                    viewer.load_field(x, option, path)
            elif load:
                viewer.load(load)
            if video is not None:
                viewer.start_recording(video, "mp4")
            elif record:
                viewer.start_recording()
            return viewer.run(frames=frames, screenshot=screenshot)
        finally:
            viewer.close()
