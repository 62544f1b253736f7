"""The live viewer in a real window (Xvfb + lavapipe, validation on): screenshots equal the headless
picture, the panel is drawn, resize/minimise, pause/step/reset, --load/--watch robustness, closing
frees everything, and the no-display path of the CLI."""
import os
import subprocess
import sys
from pathlib import Path

import glfw
import numpy as np
import pytest
from PIL import Image

from vkbands import init as vkinit
from vkbands import reference as R
from vkbands.bands import BandPlan
from vkbands.image import render_image
from vkbands.labels import render_labelled
from vkbands.viewer.files import FileWatch
from vkbands.viewer.preview import place
from vkbands.setup import Setup

needs_display = pytest.mark.skipif(not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")),
                                   reason="needs a display (run under xvfb-run, as `make test` does)")
SIZE = 81               # p = 3, L = 4: the sheet grid fits the preview at scale 1 (exact pixels)


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        pytest.skip("needs a display")
    from vkbands.viewer import open_viewer
    v = open_viewer("grayscott", size=SIZE, width=1200, height=720, range="per_band", vsync=False,
                    out_dir=tmp_path_factory.mktemp("shots"))
    yield v
    v.close()


def _headless_sheets(ctx, field, src):
    """The (2L+1, H, W) sheet stack of ``field``, computed without the viewer."""
    x = ctx.array(field[None])
    out = ctx.empty((2 * src.L + 1,) + field.shape)
    plan = BandPlan(ctx, field.shape, src.arity, batch=1)
    try:
        with ctx.recorder() as rec:
            plan.record_sheets(rec, x, out, member=0)
        return out.numpy()
    finally:
        plan.close()
        x.close()
        out.close()


def _headless_picture(ctx, field, src, panels=None):
    """The sheet grid of ``field`` drawn by write_image.comp without the viewer (same arguments): with
    labels (the default) the labelled picture of vkbands.labels, as the files get it, with the
    pipeline's caption, titles and step. ``panels``: the (resampled) panels instead of the sheets."""
    sheets = _headless_sheets(ctx, field, src)
    w = src.writer
    if panels is None:
        panels = sheets[src.picture.ids]
        if src.small is not None:        # resampled to the size shown (nearest, as resample.comp)
            (H, W), (h, wd) = panels.shape[-2:], src.small.shape[-2:]
            iy, ix = ((2 * np.arange(h) + 1) * H) // (2 * h), ((2 * np.arange(wd) + 1) * W) // (2 * wd)
            panels = panels[:, iy][:, :, ix]
    style = dict(cmap=src.cmap, range=src.range, vmin=src.vmin, vmax=src.vmax, scale=(w.sy, w.sx), cols=w.cols,
                 gap=w.gap, ctx=ctx)
    lw = src.picture.labelled
    if lw is None:
        return render_image(panels, **style), sheets
    pic = render_labelled(panels, caption=src.caption(), titles=src.titles(), step=src.step, k=lw.k,
                          header_lines=lw.header_lines, title_lines=lw.title_lines, min_chars=lw.min_chars, **style)
    return pic, sheets


def test_place_is_pixel_exact_when_it_fits():
    (x0, y0, w, h), s = place((380, 0, 820, 720), (300, 100))
    assert s == 2 and (w, h) == (600, 200) and (x0, y0) == (490, 260)
    (x0, y0, w, h), s = place((0, 0, 100, 100), (400, 200))       # too big: fractional, aspect kept
    assert s == 0.25 and (w, h) == (100, 50)
    (_, _, w, _), s = place((0, 0, 100, 100), (10, 10), zoom=3.0)
    assert s == 30 and w == 300


def test_output_names_never_overwrite(tmp_path):
    from vkbands.viewer.files import unique_path
    paths = []
    for _ in range(3):                                      # same second: -1, -2 suffixes
        p = unique_path(tmp_path, "vkbands-sheets", ".png")
        assert not p.exists()
        p.write_bytes(b"x")
        paths.append(p)
    assert len(set(paths)) == 3
    assert all(p.name.startswith("vkbands-sheets-2") and p.suffix == ".png" for p in paths)


@needs_display
def test_screenshot_equals_headless_picture_and_panel_present(viewer, ctx, tmp_path):
    viewer.playing = True
    viewer.steps_per_frame = 3
    shot = tmp_path / "last.png"
    start = viewer.frame_count
    viewer.run(frames=start + 30, screenshot=shot)
    assert viewer.frame_count == start + 30
    win = np.asarray(Image.open(shot).convert("RGBA"))
    fw, fh = viewer.swapchain.extent
    assert win.shape == (fh, fw, 4)
    src = viewer.sheets
    field = src.read_field()                 # the state the last frame showed (no steps since)
    expect, sheets = _headless_picture(ctx, field, src)
    # the sheets are the decomposition of SPEC section 2 (within float32 round-off)
    assert np.allclose(sheets[0], field) and np.allclose(sheets[src.L], field.mean(), atol=1e-5)
    x0, y0, w, h = viewer.preview.rect
    s = w // expect.shape[1]
    assert s >= 1 and (w, h) == (expect.shape[1] * s, expect.shape[0] * s)
    region = win[y0:y0 + h:s, x0:x0 + w:s, :3].astype(int)
    diff = np.abs(region - expect[..., :3].astype(int))
    assert diff.max() <= 1, f"{(diff > 1).sum()} pixels differ by more than 1 LSB"
    # a non-trivial picture (not one flat colour)
    assert len(np.unique(expect.reshape(-1, 4), axis=0)) > 10
    # the ImGui panel: the same frame without the panel differs inside the panel's rectangle
    viewer.show_ui = False
    bare = tmp_path / "bare.png"
    viewer.playing = False
    viewer.run(frames=viewer.frame_count + 3, screenshot=bare)
    viewer.show_ui = True
    no_panel = np.asarray(Image.open(bare).convert("RGBA"))
    from vkbands.viewer.app import PANEL_WIDTH
    a, b = win[:, :PANEL_WIDTH, :3], no_panel[:, :PANEL_WIDTH, :3]
    assert (a != b).any(-1).mean() > 0.5
    # the panel-less frame shows the clear colour there except where the centred picture reaches
    assert (b == b[0, 0]).all(-1).mean() > 0.3


@needs_display
def test_resampled_picture_equals_headless(ctx, tmp_path):
    """A grid larger than the preview is resampled (nearest, on the device) to the size shown and
    drawn 1:1: the storage image equals write_image of the NumPy-resampled sheets, and the window
    shows exactly that image."""
    from vkbands.viewer import open_viewer
    v = open_viewer("grayscott", size=243, width=900, height=600, range="symmetric", vsync=False,
                    out_dir=tmp_path)
    try:
        v.run(frames=4)
        v.playing = False
        shot = tmp_path / "resampled.png"
        v.run(frames=v.frame_count + 1, screenshot=shot)
        src = v.sheets
        assert src.small is not None                          # 1468 px of grid into a 520 px area
        h, w = src.small.shape[-2:]
        assert w < 243 and h < 243
        sheets = _headless_sheets(ctx, src.read_field(), src)
        iy = ((2 * np.arange(h) + 1) * 243) // (2 * h)
        ix = ((2 * np.arange(w) + 1) * 243) // (2 * w)
        small = sheets[:, iy][:, :, ix]
        expect, _ = _headless_picture(ctx, src.read_field(), src, panels=small)
        got = src.image.numpy()
        assert got.shape == expect.shape
        assert np.abs(got.astype(int) - expect).max() <= 1
        x0, y0, rw, rh = v.preview.rect
        assert (rw, rh) == (got.shape[1], got.shape[0])         # drawn 1:1
        win = np.asarray(Image.open(shot).convert("RGBA"))
        assert np.array_equal(win[y0:y0 + rh, x0:x0 + rw, :3], got[..., :3])
    finally:
        v.close()


@needs_display
def test_discrete_gpu_memory_path(ctx, tmp_path, monkeypatch):
    """With device-local (not host-mapped) arrays, as on a discrete GPU, the viewer still shows the
    exact picture: observables come back through its host mirrors, ImGui buffers are host memory."""
    from vkbands.engine import Context
    from vkbands.viewer import app, open_viewer

    class DiscreteLike(Context):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.unified_memory = False
    monkeypatch.setattr(app, "Context", DiscreteLike)
    v = open_viewer("grayscott", size=27, width=1000, height=480, range="per_band", vsync=False,
                    out_dir=tmp_path)
    try:
        assert not v.sheets.sim.state.mappable
        shot = tmp_path / "discrete.png"
        v.run(frames=6, screenshot=shot)
        assert len(v.sheets.energy_history) >= 3
        src = v.sheets
        expect, _ = _headless_picture(ctx, src.read_field(), src)
        win = np.asarray(Image.open(shot).convert("RGBA"))
        x0, y0, w, h = v.preview.rect
        assert src.small is None and w % expect.shape[1] == 0   # full resolution, integer scale
        s = w // expect.shape[1]
        assert np.abs(win[y0:y0 + h:s, x0:x0 + w:s, :3].astype(int) - expect[..., :3]).max() <= 1
    finally:
        v.close()


@needs_display
def test_grid_wider_than_the_device_allows(tmp_path):
    """1-D fields of 3**9 leaves: the full-resolution strips are wider than maxImageDimension2D on
    lavapipe; the picture is resampled to what the device holds from the start, never refused."""
    from vkbands.viewer import open_viewer
    v = open_viewer("tree", depth=9, width=800, height=500, out_dir=tmp_path)
    try:
        limit = int(v.ctx.limits.maxImageDimension2D)
        lw, lh = v.sheets.logical_size
        img = v.sheets.image
        if max(lw, lh) > limit:
            assert v.sheets.small is not None and max(img.width, img.height) <= limit
        v.run(frames=3)
        assert max(v.sheets.image.width, v.sheets.image.height) <= limit
        v.preview.zoom = 64.0                                   # zoomed far in: still within the limit
        v.run(frames=v.frame_count + 2)
        assert max(v.sheets.image.width, v.sheets.image.height) <= limit
    finally:
        v.close()


@needs_display
def test_sheet_screenshot_is_the_storage_image(viewer, tmp_path):
    got = {}
    viewer.screenshot_sheets(tmp_path / "sheets.png", callback=lambda cap: got.setdefault("px", cap.pixels))
    viewer.frame()
    viewer.flush()
    png = np.asarray(Image.open(tmp_path / "sheets.png"))
    assert png.shape == (viewer.sheets.image.height, viewer.sheets.image.width, 4)
    assert np.array_equal(png, got["px"])
    assert np.array_equal(png, viewer.sheets.image.numpy())


@needs_display
def test_pause_step_reset_counters(viewer):
    viewer.playing = False
    viewer.steps_per_frame = 4
    s0 = viewer.sheets.step
    for _ in range(3):
        viewer.frame()
    assert viewer.sheets.step == s0                        # paused: no steps
    viewer.key(glfw.KEY_PERIOD)                             # '.' single step
    viewer.frame()
    viewer.frame()
    assert viewer.sheets.step == s0 + 1 and not viewer.playing
    viewer.key(glfw.KEY_SPACE)                              # play: steps_per_frame per frame
    assert viewer.playing
    for _ in range(2):
        viewer.frame()
    assert viewer.sheets.step == s0 + 1 + 2 * 4
    live = viewer.ctx.live_objects()
    for n in range(1, 12):                                  # many steps/frame values: the cache stays small
        viewer.steps_per_frame = n
        viewer.frame()
    assert viewer.sheets.recording_count <= 8 and viewer.ctx.live_objects() <= live + 8
    viewer.steps_per_frame = 4
    viewer.key(glfw.KEY_RIGHT_BRACKET)
    assert viewer.steps_per_frame == 8
    viewer.key(glfw.KEY_LEFT_BRACKET)
    assert viewer.steps_per_frame == 4
    viewer.key(glfw.KEY_SPACE)
    viewer.key(glfw.KEY_R)                                  # reset: step 0, the initial field
    assert viewer.sheets.step == 0
    viewer.frame()
    x0 = vkinit.grayscott((SIZE, SIZE), seed=0)[1]        # what `vkbands rollout` starts from
    assert np.array_equal(viewer.sheets.read_field(), x0)


@needs_display
def test_energy_history_arrives_a_frame_late(viewer):
    from vkbands.viewer.app import FRAMES_IN_FLIGHT
    viewer.playing = True
    for _ in range(FRAMES_IN_FLIGHT):                       # every slot has a frame in flight
        viewer.frame()
    viewer.sheets.energy_history.clear()
    for _ in range(5):
        viewer.frame()
    # each frame takes the observables of the frame that last used its slot: no stall, none lost
    assert len(viewer.sheets.energy_history) == 5
    live = viewer.ctx.live_objects()
    for _ in range(20):
        viewer.frame()
    assert viewer.ctx.live_objects() == live                # nothing allocated per frame
    viewer.playing = False
    for _ in range(FRAMES_IN_FLIGHT + 1):                   # paused frames observe the shown state
        viewer.frame()
    E = R.energies(viewer.sheets.read_field().astype(np.float64), viewer.sheets.arity)
    assert np.allclose(viewer.sheets.energy_history[-1], E, rtol=1e-4, atol=1e-7)


@needs_display
def test_load_bad_files_keep_running(viewer, tmp_path):
    viewer.playing = False
    wrong_shape = tmp_path / "shape.npy"
    np.save(wrong_shape, np.zeros((5, 5), np.float32))
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not a numpy file at all")
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    before = viewer.sheets.read_field()
    for bad, what in ((wrong_shape, "shape"), (garbage, ""), (pickled, "pickle"), (tmp_path / "missing.npy", "")):
        assert viewer.load(bad) is False
        assert str(bad) in viewer.last_error and what in viewer.last_error.lower()
        viewer.frame()
        assert np.array_equal(viewer.sheets.read_field(), before)
    good = tmp_path / "good.npy"
    uv = vkinit.grayscott((SIZE, SIZE), seed=5)
    np.save(good, uv)
    assert viewer.load(good)
    viewer.frame()
    assert viewer.sheets.step == 0 and np.array_equal(viewer.sheets.read_field(), uv[1])


@needs_display
def test_watch_skips_partial_writes(viewer, tmp_path):
    path = tmp_path / "watched.npy"
    uv = vkinit.grayscott((SIZE, SIZE), seed=7)
    np.save(path, uv)
    viewer.watch = FileWatch(path)
    viewer.playing = False
    viewer.frame()
    assert np.array_equal(viewer.sheets.read_field(), uv[1])
    full = path.read_bytes()
    path.write_bytes(full[: len(full) // 2])                # a half-written file
    viewer.watch.last_check = 0.0
    viewer.frame()
    assert np.array_equal(viewer.sheets.read_field(), uv[1])
    uv2 = vkinit.grayscott((SIZE, SIZE), seed=8)
    np.save(path, uv2)
    os.utime(path, ns=(1, 10**18))                          # a new mtime even on coarse clocks
    viewer.watch.last_check = 0.0
    viewer.frame()
    assert np.array_equal(viewer.sheets.read_field(), uv2[1])
    viewer.watch = None


@needs_display
def test_resize_three_times_and_minimise(viewer):
    viewer.playing = True
    for w, h in ((900, 600), (1100, 500), (700, 700)):
        viewer.window.set_size(w, h)
        n = viewer.frame_count
        for _ in range(30):
            viewer.frame()
            if viewer.swapchain.extent == (w, h) and viewer.frame_count >= n + 2:
                break
        assert viewer.swapchain.extent == viewer.window.framebuffer_size == (w, h)
        assert viewer.frame_count >= n + 2
    gen = viewer.swapchain.generation
    viewer.window.iconify()
    for _ in range(3):
        viewer.frame()
    viewer.window.restore()
    n = viewer.frame_count
    for _ in range(10):
        viewer.frame()
    assert viewer.frame_count >= n + 5                     # frames continue after restore
    assert viewer.swapchain.generation >= gen
    # a zero-sized framebuffer (what a real minimise gives) is skipped, not drawn
    real = type(viewer.window).framebuffer_size
    try:
        type(viewer.window).framebuffer_size = property(lambda self: (0, 0))
        n = viewer.frame_count
        assert viewer.frame() is False and viewer.frame_count == n
    finally:
        type(viewer.window).framebuffer_size = real
    for _ in range(3):
        viewer.frame()


@needs_display
def test_resized_past_the_device_limit_waits_for_a_smaller_window(viewer):
    """A window resized larger than the device can draw into (no window manager enforces the size
    limits here) is not drawn, said once, and drawing resumes when it is smaller again."""
    mw, mh = viewer.max_window_pixels()
    size = viewer.window.size
    viewer.messages.clear()
    try:
        viewer.window.set_size(mw + 16, 200)
        for _ in range(30):
            viewer.window.poll()
            if viewer.window.framebuffer_size[0] > mw:
                break
        assert viewer.window.framebuffer_size[0] > mw
        n = viewer.frame_count
        for _ in range(3):
            assert viewer.frame() is False
        assert viewer.frame_count == n
        said = [text for text, is_error in viewer.messages if is_error]
        assert len(said) == 1 and "larger than" in said[0] and f"{mw}x{mh}" in said[0]
    finally:
        viewer.window.set_size(*size)
    for _ in range(30):
        viewer.frame()
        if viewer.frame_count >= n + 2:
            break
    assert viewer.frame_count >= n + 2 and viewer.swapchain.extent == viewer.window.framebuffer_size


@needs_display
def test_a_failed_screenshot_is_reported_and_the_viewer_runs_on(viewer, tmp_path):
    """A screenshot (key `s`, the panel's button) that cannot be written is shown as an error; the
    viewer keeps running and writes the next one."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    out_dir = viewer.out_dir
    try:
        viewer.out_dir = blocker / "shots"
        viewer.screenshot_sheets()
        viewer.out_dir = tmp_path
        viewer.screenshot_sheets(tmp_path / "missing" / "s.png")
        viewer.frame()
        viewer.flush()
        errors = [text for text, is_error in viewer.messages if is_error][-2:]
        assert "--out-dir" in errors[0] and str(blocker) in errors[0]
        assert "s.png not saved" in errors[1]
        viewer.key(glfw.KEY_S)
        viewer.frame()
        viewer.flush()
        assert len(list(tmp_path.glob("vkbands-sheets-*.png"))) == 1
    finally:
        viewer.out_dir = out_dir


@needs_display
def test_display_controls_rerecord(viewer):
    src = viewer.sheets
    viewer.playing = False
    for cmap in ("grey", "ternary", "log", "diverging"):
        src.set_display(cmap=cmap)
        viewer.frame()
    src.set_display(visible_levels=[True, False, True, False, True])
    viewer.frame()
    assert src.writer.P == 3 + 2 and src.writer.cols == 3
    src.set_display(show_detail=False)
    viewer.frame()
    assert src.writer.P == 3
    src.set_display(show_detail=True, visible_levels=[True] * (src.L + 1), fade=0.5)
    for _ in range(2):
        viewer.frame()
    src.set_display(fade=0.0)
    src.set_params(F=0.03)
    viewer.frame()
    assert src.sim.params["F"] == pytest.approx(0.03)


@needs_display
def test_close_frees_everything(tmp_path):
    from vkbands.viewer import open_viewer
    v = open_viewer("tree", size=27, width=640, height=400, out_dir=tmp_path, record_format="gif")
    ctx = v.ctx
    v.start_recording()                                     # GIF (MP4, the default: test_viewer_offscreen.py)
    v.record_fps = 1000.0
    v.run(frames=4)                                         # ends the recording, saves the GIF
    path = v.last_recording
    assert path is not None and path.exists() and Image.open(path).n_frames >= 2
    # 1-D field: strips (one column of 2L+1 panels) and the band x time image, newest column right
    src = v.sheets
    assert src.writer.cols == 1 and src.writer.P == 2 * src.L + 1 and src.writer.H == 1
    bt = src.band_time.numpy()[..., :3].astype(int)
    assert bt.shape[0] == (src.L + 1) * 10
    white = (bt == 255).all(-1)
    assert white[:, 0].all()                                # no frame there yet (zero energy)
    assert not white[:, -1].all()                           # this frame's energies
    # restart with other set-up options (what the panel's "Restart" does); a bad one keeps the old
    assert v.restart("heat", depth=3, init="smooth", seed=2)
    v.run(frames=v.frame_count + 3)
    assert v.sheets.system_name == "heat" and v.sheets.spatial == (27, 27) and v.sheets.step == 3
    x0 = Setup("heat", depth=3, init="smooth", seed=2).x0()
    assert v.sheets.sim.shape == x0.shape
    old = v.sheets
    assert not v.restart("heat", size=2)                    # a grid needs H, W >= 3
    assert v.sheets is old and "size=2" in v.last_error
    assert v.restart("heat", shape="54x81")                  # any grid (issue 11): p = 3, L = 3, coarse 2 x 3
    v.run(frames=v.frame_count + 2)
    assert v.sheets.spatial == (54, 81) and v.sheets.L == 3 and v.sheets.writer.P == 7
    v.run(frames=v.frame_count + 2)
    # every panel widget is drawn (all sections open) without error, for each system
    for system in ("coupled", "grayscott", "tree"):
        assert v.restart(system, depth=3)
        v.panel.expand_all = True
        v.run(frames=v.frame_count + 3)
    # the panel's restart section: switching the system drops the old system's parameters
    ed = Setup("grayscott", F=0.03, preset="spots", depth=3, seed=4).with_system("coupled")
    assert ed == Setup("coupled", depth=3, seed=4) and ed.options == dict(depth=3, seed=4)
    assert v.restart(ed) and v.sheets.system_name == "coupled"
    v.run(frames=v.frame_count + 2)
    v.close()
    v.close()                                               # idempotent
    assert ctx.closed and v.window.closed
    assert set(v.open_at_close) <= {"Kernel"}, v.open_at_close


class ScriptedImgui:
    """Stands in for pyimgui (draws nothing): every section is open; the widgets named in ``changes``
    report a change to the given value (buttons: pressed); the others report no change."""

    def __init__(self, changes=None):
        self.changes = dict(changes or {})

    def __getattr__(self, name):
        if name.isupper():
            return 0                                        # flags
        unchanged = {"slider_int": lambda a: a[1], "slider_float": lambda a: a[1], "checkbox": lambda a: a[1],
                     "input_int": lambda a: a[1], "input_float": lambda a: a[1], "input_text": lambda a: a[1],
                     "combo": lambda a: a[1], "drag_float2": lambda a: (a[1], a[2])}

        def call(*args, **kw):
            label = args[0] if args and isinstance(args[0], str) else None
            if name == "button":
                return label in self.changes
            if name in unchanged:
                return (True, self.changes[label]) if label in self.changes else (False, unchanged[name](args))
            return {"tree_node": True, "collapsing_header": (True, None), "get_cursor_screen_pos": (0.0, 0.0),
                    "get_window_draw_list": self, "get_color_u32_rgba": 0}.get(name)
        return call


def test_panel_acts_through_method_calls(ctx):
    """The panel changes the app and the sheet pipeline by calling them (no flags left for the app
    to poll): buttons and the steps slider call the app's controls, a restart is asked for after the
    window is drawn, picture widgets call set_display, a refused live parameter is reported through
    the app's error()."""
    from vkbands.image import CMAPS
    from vkbands.viewer.panel import Panel
    from vkbands.viewer.sheets import SheetPipeline

    class Controls:
        playing, recording, steps_per_frame, fps, device_name, messages = False, None, 1, 0.0, "test", []

        def __init__(self):
            self.calls = []

        def __getattr__(self, name):
            return lambda *a, **k: self.calls.append((name, a, k))

    sheets = SheetPipeline(ctx, "heat", size=27)
    try:
        c = Controls()
        cmap = next(m for m in CMAPS if m != sheets.cmap)
        Panel(c, imgui=ScriptedImgui({"Step": True, "steps/frame": 7, "Restart with these": True,
                                      "colour map": CMAPS.index(cmap)})).draw(sheets, 600)
        assert [(n, a, k) for n, a, k in c.calls] == [("single_step", (), {}), ("set_steps_per_frame", (7,), {}),
                                                      ("restart", (), dict(system="heat", size=27))]
        assert sheets.cmap == cmap
        c.calls.clear()
        Panel(c, imgui=ScriptedImgui({"alpha": 0.5})).draw(sheets, 600)      # outside 0..0.25
        assert [n for n, a, k in c.calls] == ["error"] and "alpha" in c.calls[0][1][0]
    finally:
        sheets.close()


@needs_display
def test_frame_barriers_come_from_the_hazard_model(viewer, tmp_path):
    """The frame's command buffer gets the barriers engine.hazards decides: the sheet pipeline's
    compute/transfer writes made visible to the shaders that sample them; with a capture of the sheet
    image, to the copy, and the copy to the host."""
    from vkbands.engine.hazards import COMPUTE, GRAPHICS, HOST, TRANSFER, WRITE, access_of
    viewer.playing = False
    viewer.frame()
    sampled = (COMPUTE | TRANSFER, GRAPHICS, WRITE[COMPUTE] | WRITE[TRANSFER], access_of(GRAPHICS))
    assert [tuple(b) for b in viewer.graphics.last_barriers] == [sampled]
    viewer.screenshot_sheets(tmp_path / "b.png")
    viewer.frame()
    assert [tuple(b) for b in viewer.graphics.last_barriers] == [
        sampled, (COMPUTE | TRANSFER, TRANSFER, WRITE[COMPUTE] | WRITE[TRANSFER], access_of(TRANSFER)),
        (TRANSFER, HOST, WRITE[TRANSFER], access_of(HOST))]
    viewer.flush()
    assert (tmp_path / "b.png").exists()


def test_cli_without_display_says_so():
    """Without a display the viewer draws offscreen (issue 13) and says so; a run with nothing to end
    it (no --frames) is refused with one line (tests/test_viewer_offscreen.py runs it with --frames)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    res = subprocess.run([sys.executable, "-m", "vkbands.cli", "view"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2 and "no display" in lines[0] and "offscreen" in lines[0]
    assert "needs --frames N" in lines[1]


@needs_display
def test_cli_frames_screenshot(tmp_path):
    shot = tmp_path / "cli.png"
    res = subprocess.run([sys.executable, "-m", "vkbands.cli", "view", "--system", "heat", "--size", "27",
                          "--frames", "3", "--screenshot", str(shot), "--width", "640", "--height", "400"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "VKBANDS_VALIDATION": "1"})
    assert res.returncode == 0, res.stderr
    assert "vulkan:" not in res.stderr                      # no validation messages
    img = Image.open(shot)
    assert img.size == (640, 400)
    assert str(shot) in res.stdout


class FrameProtocol:
    """Checks the lifetime protocol directly (lavapipe runs frames serially, so neither a crash nor
    synchronization validation is a reliable witness): every descriptor set bound, image view sampled
    through it and image copied in a command buffer stays referenced until the program *knows* that
    command buffer finished (a wait on its fence returned, vkGetFenceStatus said so, or the device
    was idled). Destroying such a view/image, or rewriting/freeing such a set, before then is a
    violation, whatever the driver's timing. Installed by monkeypatching the `vulkan` module."""

    def __init__(self, monkeypatch):
        import vulkan as vk
        self.vk, self.violations = vk, []
        self.counts = {"destroy_view": 0, "update_set": 0}
        self.refs = {}          # cb -> {"sets", "views", "images", "fence", "done"}
        self.set_views = {}     # set -> {binding: view}
        real = {n: getattr(vk, n) for n in (
            "vkBeginCommandBuffer", "vkResetCommandBuffer", "vkFreeCommandBuffers", "vkCmdBindDescriptorSets",
            "vkCmdCopyImageToBuffer", "vkUpdateDescriptorSets", "vkFreeDescriptorSets", "vkQueueSubmit",
            "vkWaitForFences", "vkGetFenceStatus", "vkDeviceWaitIdle", "vkQueueWaitIdle", "vkDestroyImageView",
            "vkDestroyImage")}
        self.real = real
        h = self.h

        def begin(cb, info):
            self.refs[h(cb)] = {"sets": set(), "views": set(), "images": set(), "fence": None, "done": False}
            return real["vkBeginCommandBuffer"](cb, info)

        def reset(cb, flags):
            self.refs.pop(h(cb), None)
            return real["vkResetCommandBuffer"](cb, flags)

        def free_cbs(dev, pool, n, cbs):
            for cb in cbs:
                self.refs.pop(h(cb), None)
            return real["vkFreeCommandBuffers"](dev, pool, n, cbs)

        def bind(cb, bp, layout, first, n, sets, *rest):
            r = self.refs.get(h(cb))
            if r is not None:
                for s in sets:
                    r["sets"].add(h(s))
                    r["views"] |= set(self.set_views.get(h(s), {}).values())
            return real["vkCmdBindDescriptorSets"](cb, bp, layout, first, n, sets, *rest)

        def copy_image(cb, image, *rest):
            r = self.refs.get(h(cb))
            if r is not None:
                r["images"].add(h(image))
            return real["vkCmdCopyImageToBuffer"](cb, image, *rest)

        def update(dev, n, writes, *rest):
            for w in writes:
                s = h(w.dstSet)
                self._check("rewrite descriptor set", s, "sets", dev)
                self.counts["update_set"] += 1
                if w.pImageInfo != vk.ffi.NULL:
                    self.set_views.setdefault(s, {})[w.dstBinding] = h(w.pImageInfo[0].imageView)
            return real["vkUpdateDescriptorSets"](dev, n, writes, *rest)

        def free_sets(dev, pool, n, sets):
            for s in sets:
                self._check("free descriptor set", h(s), "sets", dev)
            return real["vkFreeDescriptorSets"](dev, pool, n, sets)

        def submit(queue, n, infos, fence):
            out = real["vkQueueSubmit"](queue, n, infos, fence)
            for info in infos:
                for i in range(info.commandBufferCount):
                    r = self.refs.get(h(info.pCommandBuffers[i]))
                    if r is not None:
                        r["fence"], r["done"] = h(fence) if fence else None, False
                        self.fences[h(fence)] = fence
            return out

        def known_done(fences):
            fs = {h(f) for f in fences}
            for r in self.refs.values():
                if r["fence"] in fs:
                    r["done"] = True

        def wait(dev, n, fences, wait_all, timeout):
            out = real["vkWaitForFences"](dev, n, fences, wait_all, timeout)   # raises unless done
            if wait_all or n == 1:
                known_done(fences)
            return out

        def status(dev, fence):
            out = real["vkGetFenceStatus"](dev, fence)                       # raises VkNotReady
            known_done([fence])
            return out

        def idled(name):
            def idle(handle):
                out = real[name](handle)
                for r in self.refs.values():
                    if r["fence"] is not None:
                        r["done"] = True
                return out
            return idle

        def destroy_view(dev, view, alloc):
            self.counts["destroy_view"] += 1
            self._check("destroy image view", h(view), "views", dev)
            return real["vkDestroyImageView"](dev, view, alloc)

        def destroy_image(dev, image, alloc):
            self._check("destroy image", h(image), "images", dev)
            return real["vkDestroyImage"](dev, image, alloc)

        self.fences = {}        # fence key -> the fence handle (to ask the driver, for the report)
        for name, fn in (("vkBeginCommandBuffer", begin), ("vkResetCommandBuffer", reset),
                         ("vkFreeCommandBuffers", free_cbs), ("vkCmdBindDescriptorSets", bind),
                         ("vkCmdCopyImageToBuffer", copy_image), ("vkUpdateDescriptorSets", update),
                         ("vkFreeDescriptorSets", free_sets), ("vkQueueSubmit", submit),
                         ("vkWaitForFences", wait), ("vkGetFenceStatus", status),
                         ("vkDeviceWaitIdle", idled("vkDeviceWaitIdle")), ("vkQueueWaitIdle", idled("vkQueueWaitIdle")), ("vkDestroyImageView", destroy_view),
                         ("vkDestroyImage", destroy_image)):
            monkeypatch.setattr(vk, name, fn)

    def h(self, handle):
        return int(self.vk.ffi.cast("uintptr_t", handle))

    def _check(self, what, handle, kind, dev):
        for r in self.refs.values():
            if not r["done"] and handle in r[kind]:
                if r["fence"] is None:
                    state = "recorded, not submitted"
                else:
                    try:
                        self.real["vkGetFenceStatus"](dev, self.fences[r["fence"]])
                        running = "it had in fact finished"
                    except self.vk.VkNotReady:
                        running = "it was in fact still running"
                    state = f"submitted, completion not known ({running})"
                self.violations.append(f"{what} {handle:#x} used by a command buffer {state}")


@needs_display
def test_rebuilds_never_touch_what_a_pending_frame_uses(tmp_path, monkeypatch):
    """Item 1 of issue 8: zoom (resampled resolution), display toggles and resizes on consecutive
    frames (graphics and compute submitted without waiting, 2 frames in flight) never destroy an
    image/view or rewrite/free a descriptor set that a frame not yet known to be finished uses; what
    was retired is freed once its frames finished (nothing accumulates)."""
    from vkbands.viewer import open_viewer
    v = open_viewer("grayscott", size=81, width=900, height=600, vsync=False, out_dir=tmp_path)
    try:
        v.run(frames=3)
        live = v.ctx.live_objects()
        proto = FrameProtocol(monkeypatch)
        src = v.sheets
        for i in range(16):
            k = i % 4
            if k == 0:
                v.preview.zoom = 0.5 if i % 8 == 0 else 0.25       # shown smaller: resampled, rebuilt
            elif k == 1:
                src.set_display(show_detail=not src.show_detail)   # between frames: rebuilt
            elif k == 2:
                vis = [True] * (src.L + 1)
                vis[i % src.L] = False
                src.set_display(visible_levels=vis)
            else:
                v.preview.zoom = 1.0
                if i == 7:
                    v.screenshot_sheets(tmp_path / "during.png")    # a capture copy in a pending frame
            v.frame()
        assert proto.counts["destroy_view"] >= 8 and proto.counts["update_set"] >= 1
        assert proto.violations == [], "\n".join(proto.violations[:10])
        # retired objects are freed as frames finish, not only when the device idles
        assert v.sync.pending_retired <= 12
        v.flush()
        assert v.sync.pending_retired == 0
        for _ in range(3):
            v.frame()
        v.flush()
        assert proto.violations == [], "\n".join(proto.violations[:10])
        # retired objects were freed once their frames finished: the count is back where it was
        assert v.ctx.live_objects() <= live + 2
    finally:
        v.close()


@needs_display
def test_exception_between_acquire_and_submit_leaves_no_signalled_semaphore(tmp_path, monkeypatch):
    """Item 2 of issue 8: an exception after vkAcquireNextImageKHR and before the frame's submit
    (in the source's compute, inside the render pass, or from the submit itself after the fence
    reset) propagates, and the next frames acquire again with zero validation errors (an acquire
    semaphore left signalled is VUID-vkAcquireNextImageKHR-semaphore-01286) and no stuck fence."""
    import vulkan as vk

    from vkbands.engine import validation_error_count
    from vkbands.viewer import open_viewer
    v = open_viewer("heat", size=27, width=640, height=400, vsync=False, out_dir=tmp_path)
    try:
        v.run(frames=3)
        real_submit = vk.vkQueueSubmit

        def failing_submit(queue, n, infos, fence):
            if any(fence == f for f in v.sync.fences):
                raise RuntimeError("injected: the frame's submit failed")
            return real_submit(queue, n, infos, fence)

        injections = [(v.sheets, "submit", None), (v.gui, "record", None), (vk, "vkQueueSubmit", failing_submit)]
        before = validation_error_count()
        for obj, name, fn in injections:
            for _ in range(v.sync.n):                       # each frame slot's semaphore in turn
                def boom(*a, **k):
                    raise RuntimeError(f"injected into {name}")
                monkeypatch.setattr(obj, name, fn or boom)
                v.screenshot_window(tmp_path / "shot.png")   # may be recorded into the lost frame
                n = v.frame_count
                with pytest.raises(RuntimeError, match="injected"):
                    v.frame()
                monkeypatch.undo()
                assert v.frame_count == n and v.graphics.pending_captures == 0   # a lost frame's captures are dropped
                for _ in range(2 * v.sync.n + 1):
                    v.frame()
                assert v.frame_count >= n + 2 * v.sync.n
                v.ctx.check()
        assert validation_error_count() == before
        v.flush()
        v.ctx.check()
    finally:
        v.close()


@needs_display
def test_presenting_context_owns_its_surface_and_compute_only_never_presents(monkeypatch):
    """Item 7 of issue 8: Context(surface=window.make_surface) picks a queue family that can present
    to the surface and destroys the surface itself; a compute-only Context enables no surface or
    swapchain extension and never asks about presentation; no presenting device -> NoDeviceError
    naming the devices."""
    import vulkan as vk

    from vkbands.engine import Context, NoDeviceError
    from vkbands.viewer.window import Window, init_glfw, release_glfw, required_instance_extensions
    init_glfw()
    try:
        win = Window(320, 240, "surface test", visible=False)
        try:
            assert not hasattr(win, "destroy_surface") and not hasattr(win, "surface")
            made = []

            def make(instance):
                made.append(win.make_surface(instance))
                return made[-1]
            c = Context(instance_extensions=required_instance_extensions(), device_extensions=["VK_KHR_swapchain"],
                        surface=make)
            try:
                assert len(made) == 1 and c.surface == made[0]
                support = vk.vkGetInstanceProcAddr(c.instance, "vkGetPhysicalDeviceSurfaceSupportKHR")
                assert support(c.physical_device, c.queue_family, c.surface)
                from vkbands.viewer.swapchain import Swapchain
                sc = Swapchain(c, c.surface, win.framebuffer_size, vsync=False)
                sc.close()
            finally:
                c.close()
            assert c.surface is None                         # destroyed by the context, before its instance
            # no device can present: a clear refusal naming the devices (and the surface is not leaked)
            monkeypatch.setattr(Context, "_present_families", lambda self, physical: [])
            with pytest.raises(NoDeviceError, match="present") as err:
                Context(instance_extensions=required_instance_extensions(), device_extensions=["VK_KHR_swapchain"],
                        surface=win.make_surface)
            from vkbands.engine.context import describe_devices
            assert all(d["name"] in str(err.value) for d in describe_devices())
        finally:
            win.close()
    finally:
        release_glfw()

    def asked(self, physical):
        raise AssertionError("a compute-only context asked about presentation")
    monkeypatch.setattr(Context, "_present_families", asked)
    with Context() as c:
        assert c.surface is None
        assert not any("surface" in e.lower() for e in c.instance_extensions)
        assert "VK_KHR_swapchain" not in c.device_extensions


@needs_display
def test_viewer_context_presents_and_owns_the_surface(viewer):
    support = __import__("vulkan").vkGetInstanceProcAddr(viewer.ctx.instance, "vkGetPhysicalDeviceSurfaceSupportKHR")
    assert viewer.ctx.surface is not None and viewer.swapchain.surface == viewer.ctx.surface
    assert support(viewer.ctx.physical_device, viewer.ctx.queue_family, viewer.ctx.surface)


def _run_frames(sheets, n, steps=1):
    for i in range(n):
        sheets.submit(steps, slot=i % sheets.slots)
        sheets.observables(i % sheets.slots)


def test_default_range_keeps_a_decaying_rollout_visible(ctx):
    """Heat from a random field, 300 steps: with the default range (per band) every panel still spans
    its colours; the old default (fixed +-max|x0|) has faded to near-white. The labels name the range."""
    from vkbands.image import DEFAULT_RANGE
    from vkbands.viewer.sheets import SheetPipeline
    assert DEFAULT_RANGE == "per_band"
    spread = {}
    for rng in (None, "fixed"):
        sheets = SheetPipeline(ctx, "heat", size=27, init="random", seed=1, range=rng, cmap="diverging", slots=1)
        try:
            assert sheets.range == (rng or "per_band")
            _run_frames(sheets, 3, steps=100)
            img = sheets.image.numpy()[..., :3].astype(int)
            wr = sheets.writer
            y0, x0, y1, x1 = wr.panel_rect(1)                      # s^(1)
            panel = img[y0:y1, x0:x1]
            spread[rng] = int((255 - panel.min(axis=(0, 1))).max())  # how far from white it gets
        finally:
            sheets.close()
    assert spread[None] > 120 and spread["fixed"] < 40, spread


def test_cursor_read_out_is_the_sheet_value(ctx):
    """pick() maps a picture pixel to (sheet, leaf position); the value read a frame late is the sheet's
    value there (device probe, no field readback in the frame)."""
    from vkbands.viewer.sheets import SheetPipeline
    sheets = SheetPipeline(ctx, "heat", size=27, init="random", seed=3, slots=2)
    try:
        _run_frames(sheets, 2, steps=2)
        wr = sheets.writer
        p = 3                                                   # s^(3) ... some panel of the grid
        y0, x0, y1, x1 = wr.panel_rect(p)
        u, v = x0 + 5 * wr.sx + 1, y0 + 11 * wr.sy + 1
        pick = sheets.pick(u, v)
        assert pick == (sheets.picture.ids[p], 11, 5)
        assert sheets.pick(x1 + 1, y0) is None or sheets.pick(x1 + 1, y0)[0] != pick[0]
        sheets.set_cursor(pick)
        sheets.submit(0, slot=0)                                # paused: the new position still redraws
        sheets.observables(0)
        field = sheets.read_field()
        expect = _headless_sheets(ctx, field, sheets)[pick[0], 11, 5]
        cur = sheets.cursor
        assert cur["band"].startswith("s^(3)") and cur["position"] == (11, 5)
        assert cur["value"] == pytest.approx(float(expect), rel=1e-5, abs=1e-7)
        sheets.set_cursor(None)
        sheets.submit(0, slot=1)
        sheets.observables(1)
        assert sheets.cursor is None
    finally:
        sheets.close()


def test_panel_legend_and_level_names(ctx):
    """The energy plot has a legend (E_0 .. E_c in the curves' colours) and the level check boxes say
    which level (l=0 .. coarse), not bare numbers."""
    from vkbands.viewer.panel import ENERGY_COLOURS, Panel
    from vkbands.viewer.sheets import SheetPipeline

    class Recording(ScriptedImgui):
        def __init__(self):
            super().__init__({})
            self.calls = []

        def __getattr__(self, name):
            f = super().__getattr__(name)
            if name.isupper():
                return f                                    # a flag

            def call(*a, **k):
                self.calls.append((name, a))
                return f(*a, **k)
            return call

    class Controls:
        playing, recording, steps_per_frame, fps, device_name, messages = False, None, 1, 0.0, "test", []

        def __getattr__(self, name):
            return lambda *a, **k: None

    sheets = SheetPipeline(ctx, "heat", size=27, slots=1)
    try:
        _run_frames(sheets, 3)
        im = Recording()
        Panel(Controls(), imgui=im).draw(sheets, 600)
        boxes = [a[0].split("##")[0] for n, a in im.calls if n == "checkbox" and "##lvl" in a[0]]
        assert boxes == ["l=0", "l=1", "l=2", "coarse"]
        legend = [(a[0], a[1:4]) for n, a in im.calls if n == "text_colored"]
        assert [t for t, _ in legend] == ["E_0", "E_1", "E_2", "E_c"]
        assert legend[0][1] == ENERGY_COLOURS[0] and legend[-1][1] == (1.0, 1.0, 1.0)
        assert any(n == "text" and a[0].startswith("cursor:") for n, a in im.calls)
    finally:
        sheets.close()


@needs_display
def test_window_shows_the_labelled_picture(viewer, tmp_path):
    """The window shows the labelled picture: its panels are exactly the unlabelled grid's (labels=False
    pipeline of the same state), the header carries the step, titles and colour bar are drawn."""
    from vkbands.labels import TEXT_COLOUR
    viewer.playing = False
    viewer.preview.reset_view()
    shot = tmp_path / "lab.png"
    viewer.run(frames=viewer.frame_count + 2, screenshot=shot)
    src = viewer.sheets
    win = np.asarray(Image.open(shot).convert("RGBA"))
    x0, y0, w, h = viewer.preview.rect
    img = src.image.numpy()
    assert (w, h) == (img.shape[1] * (w // img.shape[1]), img.shape[0] * (w // img.shape[1])), \
        (viewer.preview.rect, img.shape, viewer.swapchain.extent)
    s = w // img.shape[1]
    shown = win[y0:y0 + h:s, x0:x0 + w:s]
    assert np.abs(shown[..., :3].astype(int) - img[..., :3]).max() <= 1          # window == storage image
    text = (img[..., :3] == TEXT_COLOUR[:3]).all(-1)
    lw = src.picture.labelled
    assert text[:lw.frame.oy].sum() > 100                                        # header line(s)
    by = lw.frame.bar[0]
    assert text[by - lw.line_height:by].sum() > 50                               # the colour bar's caption
    bare, _ = _headless_picture(ctx := src.ctx, src.read_field(), type("Bare", (), dict(
        cmap=src.cmap, range=src.range, vmin=src.vmin, vmax=src.vmax, writer=src.writer, small=src.small,
        picture=type("P", (), dict(ids=src.picture.ids, labelled=None))(), L=src.L, arity=src.arity))())
    wr = src.writer
    for p in range(wr.P):                                                        # panels: exact
        py0, px0, py1, px1 = wr.panel_rect(p)
        r, c = p // wr.cols, p % wr.cols
        qy, qx = r * (wr.H * wr.sy + wr.gap), c * (wr.W * wr.sx + wr.gap)
        assert np.array_equal(img[py0:py1, px0:px1], bare[qy:qy + wr.H * wr.sy, qx:qx + wr.W * wr.sx])


def test_offscreen_picture_equals_the_file_picture(ctx, tmp_path):
    """The offscreen viewer (no display needed) draws the same labelled picture as the files' path
    (vkbands.labels.render_labelled, the composition SheetRenderer uses) for the same state and step;
    its screenshot shows it exactly where the preview placed it."""
    from vkbands.viewer import open_viewer
    v = open_viewer("heat", size=27, init="random", seed=2, width=1000, height=600, vsync=False, offscreen=True,
                    out_dir=tmp_path)
    try:
        v.playing = True
        v.steps_per_frame = 5
        v.run(frames=6)
        v.playing = False
        shot = tmp_path / "off.png"
        v.run(frames=v.frame_count + 2, screenshot=shot)
        src = v.sheets
        assert src.step == 30 and src.picture.labelled is not None
        got = src.image.numpy()
        expect, _ = _headless_picture(ctx, src.read_field(), src)
        assert got.shape == expect.shape
        assert np.abs(got.astype(int) - expect.astype(int)).max() <= 1
        win = np.asarray(Image.open(shot).convert("RGBA"))
        x0, y0, w, h = v.preview.rect
        s = w // got.shape[1]
        assert s >= 1 and np.array_equal(win[y0:y0 + h:s, x0:x0 + w:s, :3], got[..., :3])
    finally:
        v.close()
