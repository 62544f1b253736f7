"""The live viewer: frame loop, controls, keys, screenshots and recording.

Each frame: poll input; wait for this frame slot's fence; take the observables of the last finished
frame (a frame late, never a stall); build the ImGui panel; acquire a swapchain image; submit the
compute work of the source (advance N steps, sheets, write_image into the storage image) through its
Recorder; record and submit the graphics command buffer (a barrier making the compute writes
visible to the fragment shader, the preview quad, the ImGui panel, optional captures); present.

Frames in flight: nothing a submitted frame may use is destroyed or rewritten before that frame is
known to have finished. A picture rebuilt on zoom, resize or a display toggle retires its old image,
buffers and recordings to :class:`FrameSync` (freed once the frames that could use them finished),
and each frame slot has its own preview descriptor set, rewritten only by that slot's next frame.
An exception between acquire and submit still consumes the acquire semaphore (an empty batch that
waits on it) and recreates the swapchain to get the unpresented image back.

Keys: space play/pause, ``.`` single step, ``r`` reset, ``s`` screenshot of the sheet grid,
``[``/``]`` steps per frame, ``0`` reset zoom/pan, ``q``/Esc quit. Mouse: wheel zooms at the cursor,
left drag pans (over the preview, when ImGui does not want the mouse).
"""
from __future__ import annotations

import math
import sys
import time
from collections import deque
from datetime import datetime
from pathlib import Path

import glfw
import imgui
import numpy as np
import vulkan as vk

from vkbands.engine import Context

from .imgui_vk import ImGuiRenderer
from .preview import Preview
from .swapchain import FrameSync, OutOfDate, Swapchain
from .window import Window, init_glfw, release_glfw, required_instance_extensions

PANEL_WIDTH = 380
BAND_TIME_TEXTURE_ID = 2
MAX_RECORD_FRAMES = 1800  # a minute at 30 fps; then the recording is saved and stops
SAMPLE_EVERY = 120       # frames between two timed (waiting) frames that measure ms/step
FRAMES_IN_FLIGHT = 2
KEY_HELP = [("space", "play / pause"), (".", "single step"), ("r", "reset"), ("s", "screenshot (sheet grid)"),
            ("[ / ]", "steps per frame - / +"), ("0", "reset zoom and pan"), ("wheel / drag", "zoom / pan"),
            ("q / Esc", "quit")]
ENERGY_COLOURS = [(0.35, 0.6, 1.0), (1.0, 0.5, 0.2), (0.4, 0.9, 0.4), (1.0, 0.3, 0.4), (0.8, 0.5, 1.0),
                  (0.9, 0.9, 0.3), (0.3, 0.9, 0.9), (1.0, 0.6, 0.8), (0.7, 0.7, 0.7)]


def unique_path(directory, stem: str, suffix: str) -> Path:
    """``directory/stem-YYYYmmdd-HHMMSS[-k].suffix`` that does not exist yet (never overwrites)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    base = f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"
    path, k = directory / f"{base}{suffix}", 1
    while path.exists():
        path, k = directory / f"{base}-{k}{suffix}", k + 1
    return path


def read_npy(path) -> np.ndarray:
    """A .npy file as an array (``allow_pickle=False``); ValueError with a clear message otherwise."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise ValueError("not a .npy file (no NumPy header)")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise ValueError("holds Python objects (pickled data), not a numeric field") from None
        raise


def _rgba_from_bgra(raw: np.ndarray, channels) -> np.ndarray:
    """(H, W, 4) pixels in swapchain byte order -> RGBA with opaque alpha."""
    out = np.empty_like(raw)
    out[..., 0], out[..., 1], out[..., 2] = raw[..., channels[0]], raw[..., channels[1]], raw[..., channels[2]]
    out[..., 3] = 255
    return out


class _Capture:
    """A pending copy of an image into a host buffer, recorded into one frame's command buffer."""

    def __init__(self, kind, path, buffer, shape, channels=(0, 1, 2), callback=None):
        self.kind, self.path, self.buffer, self.shape, self.channels = kind, path, buffer, shape, channels
        self.callback = callback
        self.pixels = None

    def finish(self):
        """After the frame's fence: read the copy (device writes made visible to the host first)."""
        self.buffer.invalidate()
        raw = self.buffer.host_view[: int(np.prod(self.shape))].reshape(self.shape).copy()
        self.buffer.close()
        self.pixels = _rgba_from_bgra(raw, self.channels) if self.kind == "window" else raw
        if self.callback is not None:
            self.callback(self)
        return self.pixels


class Viewer:
    """A window that runs a :class:`~vkbands.viewer.source.SheetSource` and shows its sheet grid.

    Args:
        source_factory: ``f(ctx) -> source`` (the source needs the viewer's context, which has the
            surface and swapchain extensions).
        width, height: window size.  vsync: FIFO presentation (off: IMMEDIATE/MAILBOX to measure).
        steps_per_frame: steps advanced per frame while playing.  paused: start paused.
        show_ui: draw the ImGui panel.  out_dir: where screenshots and recordings go.
        record_fps: frame rate of recordings (frames are taken at most this often, wall-clock).
        watch: a .npy file re-read whenever another process rewrites it.
    """

    def __init__(self, source_factory, width=1280, height=800, vsync=True, steps_per_frame=1, paused=False,
                 show_ui=True, out_dir=".", record_fps=15.0, watch=None, title="vkbands view", device=None,
                 validation=None, profile=False):
        self._closed = True
        init_glfw()
        try:
            self.window = Window(width, height, title)
        except BaseException:
            release_glfw()
            raise
        self.ctx = self.swapchain = self.sync = self.preview = self.gui = self.source = None
        self._imgui_ctx = None
        try:
            # The context creates the window's surface right after its instance, picks a device and
            # queue family that can present to it, and owns it (destroyed before the instance).
            self.ctx = Context(device=device, validation=validation,
                               instance_extensions=required_instance_extensions(),
                               device_extensions=["VK_KHR_swapchain"], surface=self.window.make_surface)
            self.swapchain = Swapchain(self.ctx, self.ctx.surface, self.window.framebuffer_size, vsync)
            self.sync = FrameSync(self.ctx, FRAMES_IN_FLIGHT)
            self.preview = Preview(self.ctx, self.swapchain.render_pass, FRAMES_IN_FLIGHT)
            self._imgui_ctx = imgui.create_context()
            imgui.set_current_context(self._imgui_ctx)   # each viewer its own ImGui state and font atlas
            io = imgui.get_io()
            io.ini_file_name = None  # no imgui.ini next to the user's files
            self._map_keys(io)
            self.gui = ImGuiRenderer(self.ctx, self.swapchain.render_pass, FRAMES_IN_FLIGHT)
            self.source = source_factory(self.ctx)
            self._adopt_source(self.source)
        except BaseException:
            self._closed = False
            self.close()
            raise
        self._closed = False
        self.vsync = vsync
        self.profile = bool(profile)   # time simulate / decompose / draw / present apart (waits)
        self.steps_per_frame = max(1, int(steps_per_frame))
        self.playing = not paused
        self.show_ui = show_ui
        self.out_dir = Path(out_dir)
        self.record_fps = float(record_fps)
        self.frame_count = 0          # frames presented
        self.messages: deque = deque(maxlen=6)   # (text, is_error) shown in the panel
        self.last_error = None
        self.needs_recreate = False
        self._pending_step = 0        # single steps requested while paused
        self._captures: list[list[_Capture]] = [[] for _ in range(FRAMES_IN_FLIGHT)]
        self._want_window_capture = None
        self._want_sheet_capture = None
        self._frame_times: deque = deque(maxlen=60)
        self._last_frame_t = None
        self._drag = None
        self._recording = None        # list of RGBA frames while recording
        self.last_recording = None
        self._record_path = None
        self._last_record_t = 0.0
        self.timings = {"simulate": 0.0, "draw": 0.0, "present": 0.0, "frame": 0.0}
        self.watch_path = Path(watch) if watch else None
        self._watch_sig = None
        self._watch_t = 0.0
        self._energy_hist: deque = deque(maxlen=4000)
        self._imgui_keys_down = set()
        self.preview.set_image(self.source.image)
        if getattr(self.source, "band_time", None) is not None:
            self.gui.add_texture(BAND_TIME_TEXTURE_ID, self.source.band_time.view, self.preview.sampler.handle)
        self.device_name = self.ctx.info["name"]

    def _adopt_source(self, source):
        """Replaced pictures and recordings of ``source`` go to the frame retire list (freed when no
        frame in flight can use them any more), not closed under a running frame."""
        if hasattr(source, "retire"):
            source.retire = self.sync.retire

    # ------------------------------------------------------------------ input
    @staticmethod
    def _map_keys(io):
        km = io.key_map
        for ik, gk in ((imgui.KEY_TAB, glfw.KEY_TAB), (imgui.KEY_LEFT_ARROW, glfw.KEY_LEFT),
                       (imgui.KEY_RIGHT_ARROW, glfw.KEY_RIGHT), (imgui.KEY_UP_ARROW, glfw.KEY_UP),
                       (imgui.KEY_DOWN_ARROW, glfw.KEY_DOWN), (imgui.KEY_PAGE_UP, glfw.KEY_PAGE_UP),
                       (imgui.KEY_PAGE_DOWN, glfw.KEY_PAGE_DOWN), (imgui.KEY_HOME, glfw.KEY_HOME),
                       (imgui.KEY_END, glfw.KEY_END), (imgui.KEY_DELETE, glfw.KEY_DELETE),
                       (imgui.KEY_BACKSPACE, glfw.KEY_BACKSPACE), (imgui.KEY_SPACE, glfw.KEY_SPACE),
                       (imgui.KEY_ENTER, glfw.KEY_ENTER), (imgui.KEY_ESCAPE, glfw.KEY_ESCAPE),
                       (imgui.KEY_A, glfw.KEY_A), (imgui.KEY_C, glfw.KEY_C), (imgui.KEY_V, glfw.KEY_V),
                       (imgui.KEY_X, glfw.KEY_X), (imgui.KEY_Y, glfw.KEY_Y), (imgui.KEY_Z, glfw.KEY_Z)):
            km[ik] = gk

    def _feed_imgui(self):
        io = imgui.get_io()
        win = self.window
        ww, wh = win.size
        fw, fh = win.framebuffer_size
        io.display_size = (ww, wh)
        io.display_fb_scale = (fw / ww if ww else 1.0, fh / wh if wh else 1.0)
        now = time.perf_counter()
        io.delta_time = max(now - self._last_frame_t, 1e-4) if self._last_frame_t else 1 / 60
        io.mouse_pos = win.cursor() if win.focused else (-1, -1)
        for i in range(3):
            io.mouse_down[i] = win.mouse_button(i)
        io.mouse_wheel = win.scroll
        down = win.keys_down
        for key in self._imgui_keys_down ^ down:
            if 0 <= key < 512:
                io.keys_down[key] = key in down
        self._imgui_keys_down = set(down)
        for ch in win.chars:
            if 0 < ch < 0x10000:
                io.add_input_character(ch)

    def preview_area(self):
        fw, fh = self.swapchain.extent if self.swapchain else self.window.framebuffer_size
        scale = fw / max(self.window.size[0], 1)
        x = int(PANEL_WIDTH * scale) if self.show_ui else 0
        return (x, 0, max(fw - x, 0), fh)

    def _over_preview(self):
        cx, cy = self.window.cursor()
        ax, ay, aw, ah = self.preview_area()
        scale = self.window.framebuffer_size[0] / max(self.window.size[0], 1)
        return ax <= cx * scale < ax + aw and ay <= cy * scale < ay + ah

    def _handle_input(self):
        win = self.window
        io = imgui.get_io()
        keys, win.keys_pressed = win.keys_pressed, []
        win.chars = []
        if not io.want_capture_keyboard:
            for key, mods in keys:
                self.key(key)
        scale = win.framebuffer_size[0] / max(win.size[0], 1)
        cx, cy = win.cursor()
        if win.scroll and self._over_preview() and not io.want_capture_mouse:
            self.preview.zoom_at(win.scroll, (cx * scale, cy * scale), self.preview_area())
        win.scroll = 0.0
        if win.mouse_button(0) and not io.want_capture_mouse and (self._drag or self._over_preview()):
            if self._drag:
                self.preview.pan[0] += (cx - self._drag[0]) * scale
                self.preview.pan[1] += (cy - self._drag[1]) * scale
            self._drag = (cx, cy)
        else:
            self._drag = None

    def key(self, key: int):
        """Apply one key press (also used by tests and scripts)."""
        if key == glfw.KEY_SPACE:
            self.toggle_play()
        elif key == glfw.KEY_PERIOD:
            self.single_step()
        elif key == glfw.KEY_R:
            self.reset()
        elif key == glfw.KEY_S:
            self.screenshot_sheets()
        elif key == glfw.KEY_LEFT_BRACKET:
            self.steps_per_frame = max(1, self.steps_per_frame // 2)
        elif key == glfw.KEY_RIGHT_BRACKET:
            self.steps_per_frame = min(1 << 16, self.steps_per_frame * 2)
        elif key == glfw.KEY_0:
            self.preview.reset_view()
        elif key in (glfw.KEY_Q, glfw.KEY_ESCAPE):
            self.window.request_close()

    # ------------------------------------------------------------------ controls
    def toggle_play(self):
        self.playing = not self.playing

    def single_step(self):
        """Pause and advance exactly one step on the next frame."""
        self.playing = False
        self._pending_step += 1

    def reset(self):
        self.source.reset()
        self._energy_hist.clear()
        self.info("reset to the initial state")

    def restart(self, system, **setup):
        """Replace the source by a new SheetSource of ``system`` (a :class:`vkbands.Setup`, or a system
        name with the Setup keywords ``setup``; display settings kept). On a bad combination the error
        is shown and the old source keeps running. Returns True on success."""
        from .source import SheetSource
        old = self.source
        try:
            self.ctx.wait_idle()
            new = SheetSource(self.ctx, system, member=0, cmap=old.cmap, range=old.range,
                              fade=old.fade, slots=self.sync.n, **setup)
        except Exception as e:  # noqa: BLE001 — show it, keep the old source
            self.error(f"restart: {e}")
            return False
        old.close()
        self.source = new
        self._adopt_source(new)
        self.preview.set_image(new.image)
        if getattr(new, "band_time", None) is not None:
            self.gui.add_texture(BAND_TIME_TEXTURE_ID, new.band_time.view, self.preview.sampler.handle)
        self._energy_hist.clear()
        self.info(f"restarted: {new.system_name} {' x '.join(map(str, new.spatial))}, p={new.arity}, "
                  f"batch={new.batch}")
        return True

    def info(self, text):
        self.messages.append((text, False))
        print(text, flush=True)

    def error(self, text):
        self.last_error = text
        self.messages.append((text, True))
        print(f"vkbands view: {text}", file=sys.stderr, flush=True)

    def load(self, path):
        """Start from a saved field (``.npy``, allow_pickle=False); a bad file is reported and the
        viewer keeps running with its current state. Returns True on success."""
        try:
            x = read_npy(path)
            self.source.load(x)
        except Exception as e:  # noqa: BLE001 — any bad file must leave the viewer running
            self.error(f"--load {path}: {e}")
            return False
        self._energy_hist.clear()
        self.info(f"loaded {path}")
        return True

    def _poll_watch(self):
        if self.watch_path is None:
            return
        now = time.perf_counter()
        if now - self._watch_t < 0.2:
            return
        self._watch_t = now
        try:
            st = self.watch_path.stat()
        except OSError:
            return
        sig = (st.st_mtime_ns, st.st_size)
        if sig == self._watch_sig:
            return
        try:
            x = read_npy(self.watch_path)
            self.source.load(x)
        except Exception as e:  # noqa: BLE001 — a partial or corrupt write is skipped, retried on change
            self.messages.append((f"--watch: skipped an unreadable write ({type(e).__name__})", True))
            self._watch_sig = sig
            return
        self._watch_sig = sig
        self._energy_hist.clear()

    # ------------------------------------------------------------------ screenshots / recording
    def screenshot_window(self, path=None, callback=None):
        """Save the next presented frame (sheet grid and panel, exactly the swapchain image) as PNG."""
        self._want_window_capture = (Path(path) if path else unique_path(self.out_dir, "vkbands-window", ".png"),
                                     callback)

    def screenshot_sheets(self, path=None, callback=None):
        """Save the sheet grid of the next frame (the storage image the screen samples) as PNG."""
        self._want_sheet_capture = (Path(path) if path else unique_path(self.out_dir, "vkbands-sheets", ".png"),
                                    callback)

    def start_recording(self):
        self._recording = []
        self._record_path = unique_path(self.out_dir, "vkbands-rec", ".gif")
        self._last_record_t = 0.0
        self.info(f"recording at {self.record_fps:g} fps -> {self._record_path}")

    def stop_recording(self):
        frames, self._recording = self._recording, None
        if not frames:
            return None
        imgs = frames
        imgs[0].save(self._record_path, save_all=True, append_images=imgs[1:],
                     duration=int(round(1000 / self.record_fps)), loop=0)
        self.info(f"saved recording ({len(frames)} frames) {self._record_path}")
        self.last_recording = self._record_path
        return self._record_path

    def _save_png(self, cap):
        from PIL import Image
        if cap.kind == "record":
            if self._recording is not None:
                # palette frames (1 byte per pixel) keep a long recording in memory; GIF needs them anyway
                self._recording.append(Image.fromarray(np.ascontiguousarray(cap.pixels[..., :3])).quantize(256))
                if len(self._recording) >= MAX_RECORD_FRAMES:
                    self.info(f"recording stopped at {MAX_RECORD_FRAMES} frames")
                    self.stop_recording()
            return
        Image.fromarray(cap.pixels, "RGBA").save(cap.path, format="PNG")
        self.info(f"saved screenshot {cap.path}")

    def _finish_captures(self, slot):
        caps, self._captures[slot] = self._captures[slot], []
        for cap in caps:
            cap.finish()
            self._save_png(cap)

    # ------------------------------------------------------------------ the panel
    def _build_ui(self):
        imgui.new_frame()
        if not self.show_ui:
            imgui.render()
            return imgui.get_draw_data()
        ww, wh = self.window.size
        imgui.set_next_window_position(0, 0)
        imgui.set_next_window_size(PANEL_WIDTH, wh)
        flags = (imgui.WINDOW_NO_MOVE | imgui.WINDOW_NO_RESIZE | imgui.WINDOW_NO_COLLAPSE
                 | imgui.WINDOW_NO_TITLE_BAR)
        imgui.begin("vkbands", flags=flags)
        src = self.source
        imgui.text(f"vkbands view  -  {self.device_name}")
        fps = (len(self._frame_times) / sum(self._frame_times)) if self._frame_times else 0.0
        ms_step = src.ms_per_step
        imgui.text(f"{fps:6.1f} fps   {1000 / fps if fps else 0:6.2f} ms/frame")
        imgui.text(f"step {src.step}   {ms_step:.3f} ms/step (sampled)" if ms_step
                   else f"step {src.step}")
        imgui.separator()
        if imgui.button("Pause" if self.playing else "Play"):
            self.toggle_play()
        imgui.same_line()
        if imgui.button("Step"):
            self.single_step()
        imgui.same_line()
        if imgui.button("Reset"):
            self.reset()
        imgui.same_line()
        if imgui.button("Screenshot"):
            self.screenshot_sheets()
        imgui.same_line()
        if imgui.button("Stop rec" if self._recording is not None else "Record"):
            self.stop_recording() if self._recording is not None else self.start_recording()
        changed, v = imgui.slider_int("steps/frame", self.steps_per_frame, 1, 256)
        if changed:
            self.steps_per_frame = v
        imgui.separator()
        src.build_ui(imgui)
        imgui.separator()
        self._energy_plot()
        bt = getattr(src, "band_time", None)
        if bt is not None:
            imgui.text("band x time: log E_l, rows = bands (coarse last),")
            imgui.text("one column per frame, newest right")
            w = PANEL_WIDTH - 20
            imgui.image(BAND_TIME_TEXTURE_ID, w, w * bt.height / bt.width)
        imgui.separator()
        for text, is_err in self.messages:
            if is_err:
                imgui.text_colored(text, 1.0, 0.4, 0.4)
            else:
                imgui.text_wrapped(text)
        if imgui.collapsing_header("Keys", flags=imgui.TREE_NODE_DEFAULT_OPEN)[0]:
            for k, what in KEY_HELP:
                imgui.text(f"{k:>12}  {what}")
        imgui.end()
        imgui.render()
        return imgui.get_draw_data()

    def _energy_plot(self):
        hist = self._energy_hist
        imgui.text("log10 E_l(t)" + (f"  (last {len(hist)} samples)" if hist else ""))
        w = PANEL_WIDTH - 20
        h = 120
        x0, y0 = imgui.get_cursor_screen_pos()
        dl = imgui.get_window_draw_list()
        dl.add_rect_filled(x0, y0, x0 + w, y0 + h, imgui.get_color_u32_rgba(0.1, 0.1, 0.12, 1.0))
        if len(hist) >= 2:
            E = np.log10(np.maximum(np.asarray(hist, np.float64), 1e-30))
            finite = E[np.isfinite(E)]
            lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
            lo = max(lo, hi - 12.0)            # 12 decades: dead bands (E ~ 0) do not flatten the rest
            if hi - lo < 1e-9:
                lo, hi = lo - 1, hi + 1
            n = E.shape[0]
            step = max(1, n // w)
            idx = np.arange(0, n, step)
            xs = x0 + idx / max(n - 1, 1) * (w - 1)
            for b in range(E.shape[1]):
                ys = y0 + h - 2 - (np.clip(E[idx, b], lo, hi) - lo) / (hi - lo) * (h - 4)
                col = ENERGY_COLOURS[b % len(ENERGY_COLOURS)] if b < E.shape[1] - 1 else (1.0, 1.0, 1.0)
                pts = [(float(a), float(c)) for a, c in zip(xs, ys) if math.isfinite(c)]
                if len(pts) >= 2:
                    dl.add_polyline(pts, imgui.get_color_u32_rgba(*col, 1.0), flags=0, thickness=1.0)
            imgui.dummy(w, h)
            imgui.text(f"range 1e{lo:.1f} .. 1e{hi:.1f}; last band = coarse")
        else:
            imgui.dummy(w, h)

    # ------------------------------------------------------------------ the frame
    def _recreate(self):
        size = self.window.framebuffer_size
        if size[0] == 0 or size[1] == 0:
            return False
        try:
            self.swapchain.recreate(size)
        except OutOfDate:
            return False
        for i in range(self.sync.n):  # no acquire semaphore may be left signalled and unwaited
            self.sync.renew_semaphore(i)
        self.needs_recreate = False
        self.window.resized = False
        return True

    def frame(self) -> bool:
        """Run one frame; False when nothing was presented (minimised, or swapchain recreated)."""
        t0 = time.perf_counter()
        imgui.set_current_context(self._imgui_ctx)
        self.window.poll()
        self._feed_imgui()
        self._handle_input()
        self._poll_watch()
        if self.window.minimised:
            # Keep ImGui's frame pairing and the simulation clock still; wait for events.
            self.window.poll(0.05)
            return False
        if self.window.resized or self.needs_recreate or self.swapchain.extent != self.window.framebuffer_size:
            if not self._recreate():
                return False
        sync, slot = self.sync, self.sync.slot
        sync.wait(slot)                       # also frees what retired objects no frame uses any more
        self._finish_captures(slot)
        obs = self.source.observables(slot)   # of the frame this slot ran last: a frame late, no stall
        if obs is not None:
            self._energy_hist.append(obs)
        draw_data = self._build_ui()
        if getattr(self.source, "error", None):   # e.g. a live parameter the system refused
            self.error(self.source.error)
            self.source.error = None
        req = getattr(self.source, "restart_request", None)
        if req:
            self.source.restart_request = None
            self.restart(**req)
        ta = time.perf_counter()
        try:
            index, suboptimal = self.swapchain.acquire(sync.acquired[slot])
        except OutOfDate:
            self.needs_recreate = True
            return False
        # From here to the submit, sync.acquired[slot] is (or will be) signalled by the presentation
        # engine and only the submit waits on it: whatever goes wrong in between must still consume
        # it (an acquire with a signalled semaphore is invalid) and give the image back.
        try:
            # ---- compute: steps, sheets, picture (through the source's Recorder)
            t1 = time.perf_counter()
            t_acquire = t1 - ta
            # the picture is resampled to the size it is shown at (fewer pixels for write_image)
            self.preview.logical_size = self.source.logical_size
            (_, _, rw, rh), _ = self.preview.placement(self.preview_area())
            self.source.set_view(rw, rh)
            steps = self.steps_per_frame if self.playing else min(self._pending_step, 1)
            self._pending_step -= steps if not self.playing else 0
            self._pending_step = max(self._pending_step, 0)
            # ms/step: every SAMPLE_EVERY frames while playing, one frame times its steps apart (it waits)
            sample = self.profile or (steps > 0 and self.frame_count % SAMPLE_EVERY == 0)
            if self.source.submit(steps, slot, profile=sample) and sample and steps > 0:
                self.source.ms_per_step = self.source.last_times["simulate"] * 1e3 / steps
            self.preview.set_image(self.source.image)
            t2 = time.perf_counter()
            # ---- graphics
            cb = self._record_graphics(slot, index, draw_data)
            vk.vkResetFences(self.ctx.device, 1, [sync.fences[slot]])
            waits, stages = [sync.acquired[slot]], [vk.VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT]
            signals, cbs = [self.swapchain.render_done[index]], [cb]
            info = vk.VkSubmitInfo(waitSemaphoreCount=1, pWaitSemaphores=waits, pWaitDstStageMask=stages,
                                   commandBufferCount=1, pCommandBuffers=cbs, signalSemaphoreCount=1,
                                   pSignalSemaphores=signals)
            vk.vkQueueSubmit(self.ctx.queue, 1, [info], sync.fences[slot])
            sync.frame_submitted(slot)
        except BaseException:
            self._abandon_frame(slot)
            raise
        if self.profile:
            sync.wait(slot)
        t3 = time.perf_counter()
        ok = self.swapchain.present(index)
        t4 = time.perf_counter()
        if not ok or suboptimal:
            self.needs_recreate = True
        self.ctx.check()
        sync.slot = (slot + 1) % sync.n
        self.frame_count += 1
        if self._last_frame_t is not None:
            self._frame_times.append(t4 - self._last_frame_t)
        self._last_frame_t = t4
        self.timings = {"submit": t2 - t1, "draw": t3 - t2, "present": t4 - t3 + t_acquire,
                        "frame": t4 - t0}
        if self.profile:
            self.timings.update(self.source.last_times)
        return True

    def _record_graphics(self, slot, index, draw_data):
        """Record slot ``slot``'s command buffer: the preview quad and the ImGui panel into swapchain
        image ``index``, then the captures asked for. Returns the command buffer."""
        cb = self.sync.command_buffers[slot]
        vk.vkResetCommandBuffer(cb, 0)
        begin = vk.VkCommandBufferBeginInfo(flags=vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT)
        vk.vkBeginCommandBuffer(cb, begin)
        # Compute (and transfer) writes of the source, submitted earlier on this queue, become visible
        # to the fragment shader that samples the storage image and to capture copies.
        mb = vk.VkMemoryBarrier(srcAccessMask=vk.VK_ACCESS_SHADER_WRITE_BIT | vk.VK_ACCESS_TRANSFER_WRITE_BIT,
                                dstAccessMask=vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_TRANSFER_READ_BIT)
        vk.vkCmdPipelineBarrier(cb, vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | vk.VK_PIPELINE_STAGE_TRANSFER_BIT,
                                vk.VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT | vk.VK_PIPELINE_STAGE_TRANSFER_BIT,
                                0, 1, [mb], 0, None, 0, None)
        fw, fh = self.swapchain.extent
        clear = vk.VkClearValue(color=vk.VkClearColorValue(float32=[0.06, 0.06, 0.07, 1.0]))
        clears = [clear]
        rp = vk.VkRenderPassBeginInfo(renderPass=self.swapchain.render_pass.handle,
                                      framebuffer=self.swapchain.framebuffers[index],
                                      renderArea=vk.VkRect2D(offset=vk.VkOffset2D(x=0, y=0),
                                                             extent=vk.VkExtent2D(width=fw, height=fh)),
                                      clearValueCount=1, pClearValues=clears)
        vk.vkCmdBeginRenderPass(cb, rp, vk.VK_SUBPASS_CONTENTS_INLINE)
        self.preview.record(cb, slot, (fw, fh), self.preview_area())
        self.gui.record(cb, slot, draw_data, (fw, fh))
        vk.vkCmdEndRenderPass(cb)
        self._record_captures(cb, slot, index)
        vk.vkEndCommandBuffer(cb)
        return cb

    def _abandon_frame(self, slot):
        """An exception came between acquire and submit: submit an empty batch that waits on the
        acquire semaphore (unsignalling it) and signals the slot's fence (which may have been reset),
        drop the captures recorded into the unsubmitted command buffer, and recreate the swapchain on
        the next frame (the acquired image was never presented; recreation gives it back)."""
        sync = self.sync
        caps, self._captures[slot] = self._captures[slot], []
        for cap in caps:
            cap.buffer.close()
        self.needs_recreate = True
        try:
            vk.vkResetFences(self.ctx.device, 1, [sync.fences[slot]])
            waits, stages = [sync.acquired[slot]], [vk.VK_PIPELINE_STAGE_ALL_COMMANDS_BIT]
            info = vk.VkSubmitInfo(waitSemaphoreCount=1, pWaitSemaphores=waits, pWaitDstStageMask=stages)
            vk.vkQueueSubmit(self.ctx.queue, 1, [info], sync.fences[slot])
            sync.frame_submitted(slot)
        except vk.VkError:
            pass     # e.g. a lost device: the original exception is the one to report

    def _record_captures(self, cb, slot, index):
        want_win, self._want_window_capture = self._want_window_capture, None
        want_sheet, self._want_sheet_capture = self._want_sheet_capture, None
        now = time.perf_counter()
        want_rec = (self._recording is not None and now - self._last_record_t >= 1.0 / self.record_fps)
        if want_rec:
            self._last_record_t = now
        if want_win and self.swapchain.can_capture:
            fw, fh = self.swapchain.extent
            buf = self.ctx.empty((fw * fh * 4,), np.uint8, host=True)
            img = self.swapchain.images[index]
            self._copy_swapchain(cb, img, buf, fw, fh)
            self._captures[slot].append(_Capture("window", want_win[0], buf, (fh, fw, 4),
                                                 self.swapchain.channels, want_win[1]))
        elif want_win:
            self.error("this surface does not allow copies from its images; no window screenshot")
        for want, kind in ((want_sheet, "sheets"), ((None, None) if want_rec else None, "record")):
            if not want:
                continue
            image = self.source.image
            buf = self.ctx.empty((image.nbytes,), np.uint8, host=True)
            vk.vkCmdCopyImageToBuffer(cb, image.image, vk.VK_IMAGE_LAYOUT_GENERAL, buf.buffer, 1,
                                      [image.copy_region()])
            self._captures[slot].append(_Capture(kind, want[0], buf, (image.height, image.width, 4),
                                                 callback=want[1]))
        if self._captures[slot]:
            mb = vk.VkMemoryBarrier(srcAccessMask=vk.VK_ACCESS_TRANSFER_WRITE_BIT,
                                    dstAccessMask=vk.VK_ACCESS_HOST_READ_BIT)
            vk.vkCmdPipelineBarrier(cb, vk.VK_PIPELINE_STAGE_TRANSFER_BIT, vk.VK_PIPELINE_STAGE_HOST_BIT,
                                    0, 1, [mb], 0, None, 0, None)

    def _copy_swapchain(self, cb, img, buf, fw, fh):
        rng = vk.VkImageSubresourceRange(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, baseMipLevel=0, levelCount=1,
                                         baseArrayLayer=0, layerCount=1)
        # The render pass ends with its subpass -> EXTERNAL dependency (colour writes made available
        # and visible to TRANSFER reads) during which the attachment goes to its final layout,
        # PRESENT_SRC. That transition is ordered only before the dependency's destination stages,
        # so this barrier's source stage must be TRANSFER (one of them) to chain after it; a source
        # stage of COLOR_ATTACHMENT_OUTPUT would leave the two layout transitions unordered.
        to_src = vk.VkImageMemoryBarrier(
            srcAccessMask=0, dstAccessMask=vk.VK_ACCESS_TRANSFER_READ_BIT,
            oldLayout=vk.VK_IMAGE_LAYOUT_PRESENT_SRC_KHR, newLayout=vk.VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL,
            srcQueueFamilyIndex=vk.VK_QUEUE_FAMILY_IGNORED, dstQueueFamilyIndex=vk.VK_QUEUE_FAMILY_IGNORED,
            image=img, subresourceRange=rng)
        vk.vkCmdPipelineBarrier(cb, vk.VK_PIPELINE_STAGE_TRANSFER_BIT,
                                vk.VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 0, None, 0, None, 1, [to_src])
        region = vk.VkBufferImageCopy(
            bufferOffset=0, bufferRowLength=0, bufferImageHeight=0,
            imageSubresource=vk.VkImageSubresourceLayers(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, mipLevel=0,
                                                         baseArrayLayer=0, layerCount=1),
            imageOffset=vk.VkOffset3D(x=0, y=0, z=0), imageExtent=vk.VkExtent3D(width=fw, height=fh, depth=1))
        vk.vkCmdCopyImageToBuffer(cb, img, vk.VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, buf.buffer, 1, [region])
        back = vk.VkImageMemoryBarrier(
            srcAccessMask=vk.VK_ACCESS_TRANSFER_READ_BIT, dstAccessMask=0,
            oldLayout=vk.VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, newLayout=vk.VK_IMAGE_LAYOUT_PRESENT_SRC_KHR,
            srcQueueFamilyIndex=vk.VK_QUEUE_FAMILY_IGNORED, dstQueueFamilyIndex=vk.VK_QUEUE_FAMILY_IGNORED,
            image=img, subresourceRange=rng)
        vk.vkCmdPipelineBarrier(cb, vk.VK_PIPELINE_STAGE_TRANSFER_BIT, vk.VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT,
                                0, 0, None, 0, None, 1, [back])

    def flush(self):
        """Wait for all frames in flight and finish their captures (screenshots get written)."""
        self.ctx.wait_idle()
        self.sync.collect(idle=True)
        for slot in range(self.sync.n):
            self._finish_captures(slot)

    def run(self, frames: int | None = None, screenshot=None) -> int:
        """Loop until the window closes (or ``frames`` frames were presented); with ``screenshot``,
        save the last presented frame there. Returns an exit code."""
        try:
            while not self.window.should_close:
                if frames is not None and self.frame_count >= frames:
                    break
                if screenshot is not None and frames is not None and self.frame_count == frames - 1:
                    self.screenshot_window(screenshot)
                self.frame()
            self.flush()
            if self._recording is not None:
                self.stop_recording()
        except KeyboardInterrupt:
            pass
        return 0

    # ------------------------------------------------------------------ lifetime
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self):
        """Free everything: source, renderers, swapchain, then the context (with the window's
        surface), then the window (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.ctx is not None and not self.ctx.closed:
            self.ctx.wait_idle()
            if self.sync is not None:
                self.sync.collect(idle=True)
        for obj in (self.source, self.gui, self.preview, self.sync, self.swapchain):
            if obj is not None:
                obj.close()
        if self._imgui_ctx is not None:
            imgui.destroy_context(self._imgui_ctx)
            self._imgui_ctx = None
        if self.ctx is not None and not self.ctx.closed:
            # What is still open now is only what the context caches itself (compiled kernels);
            # tests assert that (everything the viewer made was freed by its owner).
            kinds = self.ctx.live_object_kinds()
            kinds.pop("staging", None)
            self.open_at_close = sorted(k for k, n in kinds.items() for _ in range(n))
            self.ctx.close()       # destroys the surface it owns (after the swapchain, before the instance)
        self.window.close()
        release_glfw()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
