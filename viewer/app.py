"""The live viewer's app: the frame loop, input and keys, and the wiring of its parts.

The parts, one job each, talking through method calls and callbacks:

- the sheet pipeline (:class:`~vkbands.viewer.sheets.SheetPipeline`): simulation, sheets and picture
  on the device, observables a frame late; tells the app of a new storage image (``on_picture``) and
  hands replaced objects to the frame retire list (``retire``);
- the panel (:class:`~vkbands.viewer.panel.Panel`): the ImGui widgets; acts by calling the app's
  controls and the pipeline's setters;
- the frame graphics (:class:`~vkbands.viewer.frame.FrameGraphics`): the graphics command buffer
  (barriers, preview quad, ImGui draw, captures) and its submission; finished captures go to callbacks;
- the preview quad (placement, zoom, pan), the ImGui renderer, the swapchain and frame slots
  (:class:`~vkbands.viewer.swapchain.FrameSync`), the window, and the files (screenshots, GIF, --watch).

Each frame (:meth:`Viewer.frame`): take the input; wait for this frame slot's fence (finishing its
captures, taking its observables: a frame late, never a stall); build the ImGui panel; acquire a
swapchain image; submit the sheet pipeline's compute (steps, sheets, picture); record and submit the
graphics command buffer; present.

Frames in flight: nothing a submitted frame may use is destroyed or rewritten before that frame is
known to have finished. A picture rebuilt on zoom, resize or a display toggle retires its old image,
buffers and recordings to :class:`FrameSync` (freed once the frames that could use them finished),
and each frame slot has its own preview descriptor set, rewritten only by that slot's next frame.
An exception between acquire and submit still consumes the acquire semaphore (an empty batch that
waits on it) and recreates the swapchain to get the unpresented image back.

Endings: closing the window (or ``frames`` frames) finishes the frames in flight and saves a
recording in progress. SIGINT/SIGTERM (``vkbands._interrupt.deferred``, as for rollouts) end the loop the same way at the next
frame and :meth:`Viewer.run` returns 130 after one line saying what was written; a second signal
stops at once, without saving. Files are written complete or not at all, never over an existing one
(:func:`vkbands.viewer.files.write_new`). A window larger than the device can draw into is refused
with a :class:`vkbands.LimitError` before the swapchain is made.

Offscreen (``offscreen=True``: ``vkbands view --offscreen``, and without a display): the same frames,
panel included, are drawn into offscreen images (:mod:`vkbands.viewer.offscreen`) by a context without
a surface; there is no window, no input and nothing is presented, and the run ends after ``frames``
frames (or :meth:`HeadlessWindow.request_close`). Screenshots and recordings work as in a window.

Recording (the panel's Record button, ``v``, ``--record``, ``--video PATH``): by default an MP4 of the
window (sheet grid and panel, exactly the frames drawn; :class:`vkbands.viewer.files.VideoRecording`)
with one frame every ``record_every`` simulation steps (default: the steps per frame when the
recording starts), played at ``record_fps`` (default 30). Frames are sampled by steps, not by the
clock: while recording, a frame advances at most up to the next sampled step, so every sampled step
is drawn and recorded once; paused frames are not recorded (nothing repeated). Each captured frame
goes to a :class:`vkbands.video.VideoWriter`, whose encoder thread takes it from a bounded queue; a
full queue blocks the frame loop (the simulation slows; no frame is lost). ``record_format="gif"``
keeps the GIF recording of the sheet grid, taken at most ``record_fps`` times a second (wall clock).

Keys: space play/pause, ``.`` single step, ``r`` reset, ``s`` screenshot of the sheet grid,
``v`` start/stop recording, ``[``/``]`` steps per frame, ``0`` reset zoom/pan, ``q``/Esc quit. Mouse: wheel zooms at the cursor,
left drag pans (over the preview, when ImGui does not want the mouse).
"""
from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path

import glfw
import imgui

from vkbands import _interrupt
from vkbands._checks import option_int
from vkbands.engine import Context, LimitError

from .files import (FileWatch, GifRecording, MAX_RECORD_FRAMES, VideoRecording, read_input, read_npy, save_png,
                    unique_path)
from .frame import FrameGraphics
from .imgui_vk import ImGuiRenderer
from .panel import BAND_TIME_TEXTURE_ID, PANEL_WIDTH, Panel
from .preview import Preview
from .offscreen import HeadlessWindow, OffscreenTarget
from .swapchain import FrameSync, OutOfDate, Swapchain, WindowTooLarge
from .window import Window, init_glfw, release_glfw, required_instance_extensions

__all__ = ["Viewer", "FRAMES_IN_FLIGHT", "PANEL_WIDTH", "KEY_HELP", "INTERRUPTED", "unique_path",
           "read_npy"]

SAMPLE_EVERY = 120       # frames between two timed (waiting) frames that measure ms/step
FRAMES_IN_FLIGHT = 2
MAX_STEPS_PER_FRAME = 1 << 16
RECORD_FORMATS = ("mp4", "gif")
DEFAULT_RECORD_FPS = {"mp4": 30.0, "gif": 15.0}
INTERRUPTED = 130        # exit status of a run ended by SIGINT/SIGTERM (128 + SIGINT, as shells report Ctrl-C)
KEY_HELP = [("space", "play / pause"), (".", "single step"), ("r", "reset"), ("s", "screenshot (sheet grid)"),
            ("v", "record / stop (MP4)"),
            ("[ / ]", "steps per frame - / +"), ("0", "reset zoom and pan"), ("wheel / drag", "zoom / pan"),
            ("q / Esc", "quit")]
_IMGUI_KEYS = ((imgui.KEY_TAB, glfw.KEY_TAB), (imgui.KEY_LEFT_ARROW, glfw.KEY_LEFT),
               (imgui.KEY_RIGHT_ARROW, glfw.KEY_RIGHT), (imgui.KEY_UP_ARROW, glfw.KEY_UP),
               (imgui.KEY_DOWN_ARROW, glfw.KEY_DOWN), (imgui.KEY_PAGE_UP, glfw.KEY_PAGE_UP),
               (imgui.KEY_PAGE_DOWN, glfw.KEY_PAGE_DOWN), (imgui.KEY_HOME, glfw.KEY_HOME),
               (imgui.KEY_END, glfw.KEY_END), (imgui.KEY_DELETE, glfw.KEY_DELETE),
               (imgui.KEY_BACKSPACE, glfw.KEY_BACKSPACE), (imgui.KEY_SPACE, glfw.KEY_SPACE),
               (imgui.KEY_ENTER, glfw.KEY_ENTER), (imgui.KEY_ESCAPE, glfw.KEY_ESCAPE),
               (imgui.KEY_A, glfw.KEY_A), (imgui.KEY_C, glfw.KEY_C), (imgui.KEY_V, glfw.KEY_V),
               (imgui.KEY_X, glfw.KEY_X), (imgui.KEY_Y, glfw.KEY_Y), (imgui.KEY_Z, glfw.KEY_Z))


def _frames(n: int) -> str:
    return f"{n} frame{'' if n == 1 else 's'}"


class Viewer:
    """A window that runs a :class:`~vkbands.viewer.sheets.SheetPipeline` and shows its sheet grid.

    Args:
        sheets_factory: ``f(ctx, *, slots, retire, on_picture) -> SheetPipeline`` (the pipeline needs
            the viewer's context, which has the surface and swapchain extensions, and its wiring).
        width, height: window size (at most what the device can draw into, else LimitError).
        vsync: FIFO presentation (off: IMMEDIATE/MAILBOX to measure).
        steps_per_frame: steps advanced per frame while playing.  paused: start paused.
        show_ui: draw the ImGui panel.  out_dir: where screenshots and recordings go.
        record_fps: frame rate of recordings (MP4: the playback rate; GIF: frames are taken at most this
            often, wall clock); default 30 (MP4), 15 (GIF).
        record_format: "mp4" (the window, H.264) or "gif" (the sheet grid).
        record_every: MP4: simulation steps per recorded frame (default: the steps per frame when a
            recording starts).
        watch: a .npy file re-read whenever another process rewrites it.
        offscreen: draw into offscreen images: no window, no display, no surface (see the module docstring).
    """

    def __init__(self, sheets_factory, width=1280, height=800, vsync=True, steps_per_frame=1, paused=False,
                 show_ui=True, out_dir=".", record_fps=None, watch=None, title="vkbands view", device=None,
                 validation=None, profile=False, offscreen=False, record_format="mp4", record_every=None):
        self._closed = True
        width, height = option_int("--width", width, 1), option_int("--height", height, 1)
        if record_format not in RECORD_FORMATS:
            raise ValueError(f"--record-format {record_format}: allowed: {', '.join(RECORD_FORMATS)}")
        if record_every is not None:
            record_every = option_int("--record-every", record_every, 1)
        if record_fps is not None and not (float(record_fps) > 0 and float(record_fps) < float("inf")):
            raise ValueError(f"--record-fps {record_fps}: allowed: a frame rate > 0")
        self.offscreen = bool(offscreen)
        if self.offscreen:
            self.window = HeadlessWindow(width, height)
        else:
            init_glfw()
            try:
                self.window = Window(width, height, title)
            except BaseException:
                release_glfw()
                raise
        self.ctx = self.swapchain = self.sync = self.preview = self.gui = self.sheets = None
        self.graphics = self.panel = self._imgui_ctx = None
        try:
            self._open_parts(device, validation, vsync, (width, height))
            self._adopt(self._wired(sheets_factory))
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
        self.record_format = record_format
        self.record_fps = float(record_fps if record_fps is not None else DEFAULT_RECORD_FPS[record_format])
        self.record_every = record_every
        self.record_error = None      # the error that ended a recording (a script's run raises it)
        self.frame_count = 0          # frames presented
        self.messages: deque = deque(maxlen=6)   # (text, is_error) shown in the panel
        self.last_error = None
        self.needs_recreate = False
        self._too_large = None        # the last "window too large" said (said once)
        self._pending_step = 0        # single steps requested while paused
        self._frame_times: deque = deque(maxlen=60)
        self._last_frame_t = None
        self._drag = None
        self.recording = None         # a VideoRecording or GifRecording while recording
        self.last_recording = None
        self.last_recording_frames = 0
        self.timings = {"simulate": 0.0, "draw": 0.0, "present": 0.0, "frame": 0.0}
        self.watch = FileWatch(watch) if watch else None
        self._imgui_keys_down = set()
        self.device_name = self.ctx.info["name"]

    def _open_parts(self, device, validation, vsync, size):
        """Context (with the window's surface), swapchain, frame slots, preview, ImGui, frame graphics."""
        if self.offscreen:
            # No surface, no swapchain: a compute + graphics context and offscreen images, one per slot.
            self.ctx = Context(device=device, validation=validation)
            self._check_window_size(size)
            self.swapchain = OffscreenTarget(self.ctx, self.window.framebuffer_size, FRAMES_IN_FLIGHT)
        else:
            # The context creates the window's surface right after its instance, picks a device and
            # queue family that can present to it, and owns it (destroyed before the instance).
            self.ctx = Context(device=device, validation=validation,
                               instance_extensions=required_instance_extensions(),
                               device_extensions=["VK_KHR_swapchain"], surface=self.window.make_surface)
            self._check_window_size(size)
            self.swapchain = Swapchain(self.ctx, self.ctx.surface, self.window.framebuffer_size, vsync)
        self.sync = FrameSync(self.ctx, FRAMES_IN_FLIGHT)
        self.preview = Preview(self.ctx, self.swapchain.render_pass, FRAMES_IN_FLIGHT)
        self._imgui_ctx = imgui.create_context()
        imgui.set_current_context(self._imgui_ctx)   # each viewer its own ImGui state and font atlas
        io = imgui.get_io()
        io.ini_file_name = None  # no imgui.ini next to the user's files
        for ik, gk in _IMGUI_KEYS:
            io.key_map[ik] = gk
        self.gui = ImGuiRenderer(self.ctx, self.swapchain.render_pass, FRAMES_IN_FLIGHT)
        self.graphics = FrameGraphics(self.ctx, self.swapchain, self.sync, self.preview, self.gui,
                                      on_error=self.error)
        self.panel = Panel(self, KEY_HELP)

    def max_window_pixels(self) -> tuple[int, int]:
        """The largest framebuffer (width, height) this device draws into: swapchain images and
        framebuffers are bound by maxImageDimension2D and maxFramebufferWidth/Height."""
        lim = self.ctx.limits
        side = int(lim.maxImageDimension2D)
        return min(side, int(lim.maxFramebufferWidth)), min(side, int(lim.maxFramebufferHeight))

    def _check_window_size(self, size):
        """LimitError when the window asked for (``size``) or made (its framebuffer: larger on a
        scaled display) is larger than this device can draw into; else the window manager is told to
        keep it within that size."""
        mw, mh = self.max_window_pixels()
        fw, fh = self.window.framebuffer_size
        w, h = size
        if w > mw or h > mh or fw > mw or fh > mh:
            scaled = f" ({fw}x{fh} pixels on this display)" if (fw, fh) != (w, h) else ""
            raise LimitError(f"window {w}x{h}{scaled}: larger than {self.ctx.info['name']} can draw into, at most "
                             f"{mw}x{mh} pixels (maxImageDimension2D, maxFramebufferWidth/Height); give "
                             f"--width/--height within that")
        ww, wh = self.window.size
        self.window.set_size_limits(max(1, mw * ww // max(fw, 1)), max(1, mh * wh // max(fh, 1)))

    def _wired(self, factory):
        """A sheet pipeline from ``factory``, wired to this viewer: one observables mirror per frame
        slot, replaced objects to the frame retire list (freed when no frame in flight can use them,
        never closed under a running frame), each new storage image to the preview."""
        return factory(self.ctx, slots=self.sync.n, retire=self.sync.retire, on_picture=self.preview.set_image)

    def _adopt(self, sheets):
        """Show ``sheets``: the preview samples its image, the panel its band x time image."""
        self.sheets = sheets
        self.preview.set_image(sheets.image)
        if sheets.band_time is not None:
            self.gui.add_texture(BAND_TIME_TEXTURE_ID, sheets.band_time.view, self.preview.sampler.handle)

    # ------------------------------------------------------------------ input
    def _take_input(self):
        """Window events -> ImGui's input, the keys and the mouse (zoom, pan), --watch."""
        imgui.set_current_context(self._imgui_ctx)
        self.window.poll()
        events = self.window.take_events()
        self._feed_imgui(events)
        self._handle_input(events)
        self._poll_watch()

    def _feed_imgui(self, events):
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
        io.mouse_wheel = events.scroll
        down = win.keys_down
        for key in self._imgui_keys_down ^ down:
            if 0 <= key < 512:
                io.keys_down[key] = key in down
        self._imgui_keys_down = set(down)
        for ch in events.chars:
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

    def _handle_input(self, events):
        win = self.window
        io = imgui.get_io()
        if not io.want_capture_keyboard:
            for key, _mods in events.keys:
                self.key(key)
        scale = win.framebuffer_size[0] / max(win.size[0], 1)
        cx, cy = win.cursor()
        if events.scroll and self._over_preview() and not io.want_capture_mouse:
            self.preview.zoom_at(events.scroll, (cx * scale, cy * scale), self.preview_area())
        if win.mouse_button(0) and not io.want_capture_mouse and (self._drag or self._over_preview()):
            if self._drag:
                self.preview.pan_by((cx - self._drag[0]) * scale, (cy - self._drag[1]) * scale)
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
        elif key == glfw.KEY_V:
            self.stop_recording() if self.recording else self.start_recording()
        elif key == glfw.KEY_LEFT_BRACKET:
            self.set_steps_per_frame(self.steps_per_frame // 2)
        elif key == glfw.KEY_RIGHT_BRACKET:
            self.set_steps_per_frame(self.steps_per_frame * 2)
        elif key == glfw.KEY_0:
            self.preview.reset_view()
        elif key in (glfw.KEY_Q, glfw.KEY_ESCAPE):
            self.window.request_close()

    def _poll_watch(self):
        if self.watch is None:
            return
        try:
            x = self.watch.poll()
            if x is not None:
                self.sheets.load(x)
        except Exception as e:  # noqa: BLE001 — a partial or corrupt write is skipped, retried on change
            self.messages.append((f"--watch {self.watch.path}: skipped an unusable write ({e})", True))

    # ------------------------------------------------------------------ controls (keys, panel, scripts)
    def toggle_play(self):
        self.playing = not self.playing

    def single_step(self):
        """Pause and advance exactly one step on the next frame."""
        self.playing = False
        self._pending_step += 1

    def set_steps_per_frame(self, n: int):
        self.steps_per_frame = min(max(1, int(n)), MAX_STEPS_PER_FRAME)

    @property
    def fps(self) -> float:
        """Frames per second over the last frames presented."""
        return (len(self._frame_times) / sum(self._frame_times)) if self._frame_times else 0.0

    def reset(self):
        self.sheets.reset()
        self.info("reset to the initial state")

    def restart(self, system, **setup):
        """Replace the sheet pipeline by a new one of ``system`` (a :class:`vkbands.Setup`, or a system
        name with the Setup keywords ``setup``; display settings kept). On a bad combination the error
        is shown and the old pipeline keeps running. Returns True on success."""
        from .sheets import SheetPipeline
        old = self.sheets
        try:
            self.ctx.wait_idle()
            new = self._wired(lambda ctx, **wiring: SheetPipeline(
                ctx, system, member=0, cmap=old.cmap, range=old.range, fade=old.fade, **wiring, **setup))
        except Exception as e:  # noqa: BLE001 — show it, keep the old pipeline
            self.preview.set_image(old.image)
            self.error(f"restart: {e}")
            return False
        old.close()
        self._adopt(new)
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
        viewer keeps running with its current state. Returns True on success. (A script's start,
        which must fail instead, reads with files.read_input and calls :meth:`load_field`.)"""
        try:
            self.load_field(read_input("--load", path), "--load", path)
        except Exception as e:  # noqa: BLE001 — any bad file must leave the viewer running
            self.error(str(e))
            return False
        self.info(f"loaded {path}")
        return True

    def load_field(self, x, option="--load", path=""):
        """Start from the field ``x`` (read from ``path``, given as ``option``); ValueError
        ``"<option> <path>: why"`` when the sheet pipeline cannot take it (shape, dtype, NaN)."""
        try:
            self.sheets.load(x)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{option} {path}: {e}") from e

    # ------------------------------------------------------------------ screenshots / recording
    # Every file is new (files.write_new: complete or absent, never over an existing one). Without a
    # path, the name is generated in out_dir (vkbands-window-<time>.png ...), and a name taken
    # meanwhile gives way to the next free one. A write that fails is reported (panel and stderr)
    # and the viewer keeps running; ``failed(error)``, when given, gets the error instead.
    def screenshot_window(self, path=None, callback=None, failed=None):
        """Save the next presented frame (sheet grid and panel, exactly the swapchain image) as PNG;
        ``callback(capture)`` first gets the capture (its ``pixels``)."""
        self._screenshot(self.graphics.capture_window, "vkbands-window", path, callback, failed)

    def screenshot_sheets(self, path=None, callback=None, failed=None):
        """Save the sheet grid of the next frame (the storage image the screen samples) as PNG."""
        self._screenshot(self.graphics.capture_sheets, "vkbands-sheets", path, callback, failed)

    def _screenshot(self, capture, stem, path, callback, failed):
        another = None
        if not path:
            try:
                path = unique_path(self.out_dir, stem, ".png")
            except OSError as e:
                return self._write_failed(f"screenshot: --out-dir {self.out_dir}: {e.strerror or e}", e, failed)
            another = lambda: unique_path(self.out_dir, stem, ".png")   # noqa: E731
        capture(lambda cap: self._screenshot_taken(cap, Path(path), callback, another, failed))

    def _screenshot_taken(self, cap, path, callback, another, failed):
        if callback is not None:
            callback(cap)
        try:
            path = save_png(path, cap.pixels, another=another)
        except OSError as e:
            return self._write_failed(f"screenshot {path} not saved: {e.strerror or e}", e, failed)
        self.info(f"saved screenshot {path}")

    def _write_failed(self, text, e, failed):
        if failed is not None:
            failed(e)
        else:
            self.error(text)

    def start_recording(self, path=None, fmt=None):
        """Start a recording (see the module docstring): ``fmt`` (default ``record_format``) "mp4", the
        window every ``record_every`` steps, or "gif", the sheet grid at ``record_fps``; saved when it
        stops, as ``path`` (a new file) or a new name in ``out_dir``."""
        fmt = fmt or self.record_format
        suffix = "." + fmt
        another = (lambda: unique_path(self.out_dir, "vkbands-rec", suffix)) if path is None else None
        try:
            target = Path(path) if path is not None else another()
        except OSError as e:
            self.error(f"recording: --out-dir {self.out_dir}: {e.strerror or e}")
            return
        if fmt == "gif":
            self.recording = GifRecording(target, another=another)
            self.info(f"recording at {self.record_fps:g} fps -> {self.recording.path}")
            return
        every = self.record_every or self.steps_per_frame
        self.recording = VideoRecording(target, self.record_fps, every, another=another)
        self.record_error = None
        self.info(f"recording MP4, one frame every {every} step{'' if every == 1 else 's'}, "
                  f"{self.record_fps:g} fps -> {self.recording.path}")

    def stop_recording(self, announce=True, strict=False):
        """Save the recording (its path; None when there was nothing to save). A save that fails is
        reported and, for a GIF, the recording goes on (stop again to retry; an MP4 is lost), or,
        ``strict``, raises. ``announce``: print the "saved recording" line. Frames captured by frames
        still in flight are waited for and kept first (none of a recording's frames is lost)."""
        if self.recording is not None and self.graphics is not None and self.graphics.pending_captures:
            self.flush()
        rec, self.recording = self.recording, None
        try:
            path = rec.save(self.record_fps) if rec is not None else None
        except OSError as e:
            if strict:
                raise
            if isinstance(rec, GifRecording):
                self.recording = rec
                self.error(f"recording {rec.path} not saved ({e.strerror or e}); still recording, stop again to retry")
            else:
                self.record_error = e
                self.error(f"recording {rec.path} not saved ({e.strerror or e})")
            return None
        if path is None:
            return None
        if announce:
            self.info(f"saved recording ({_frames(rec.n_frames)}) {path}")
        self.last_recording = path
        self.last_recording_frames = rec.n_frames
        return path

    def abort_recording(self):
        """Drop the recording in progress; nothing is written (an MP4's temporary file is removed)."""
        rec, self.recording = self.recording, None
        if rec is not None:
            rec.abort()

    def _request_recording_frame(self, steps):
        rec = self.recording
        if isinstance(rec, VideoRecording):
            if rec.advanced(steps):
                self.graphics.capture_window(self._video_frame)
        elif rec is not None and rec.due(self.record_fps):
            self.graphics.capture_sheets(self._recording_frame)

    def _video_frame(self, cap):
        rec = self.recording
        if not isinstance(rec, VideoRecording):
            return
        try:
            rec.add(cap.pixels)          # blocks while the encoder's queue is full: never dropped
        except Exception as e:  # noqa: BLE001 — the encoder failed: say so, drop the recording, run on
            self.record_error = e
            self.abort_recording()
            self.error(f"recording {rec.path} failed and was dropped: {e}")

    def _recording_frame(self, cap):
        if self.recording is not None and self.recording.add(cap.pixels):
            self.info(f"recording stopped at {MAX_RECORD_FRAMES} frames")
            self.stop_recording()

    # ------------------------------------------------------------------ the frame
    def frame(self) -> bool:
        """Run one frame; False when nothing was presented (minimised, or swapchain recreated)."""
        t0 = time.perf_counter()
        self._take_input()
        if self.window.minimised:
            # Keep ImGui's frame pairing and the simulation clock still; wait for events.
            self.window.poll(0.05)
            return False
        if not self._swapchain_ready():
            return False
        slot = self.sync.slot
        self._finish_slot(slot)
        draw_data = self._build_ui()
        ta = time.perf_counter()
        acquired = self._acquire(slot)
        if acquired is None:
            return False
        index, suboptimal = acquired
        # From here to the submit, sync.acquired[slot] is (or will be) signalled by the presentation
        # engine and only the submit waits on it: whatever goes wrong in between must still consume
        # it (an acquire with a signalled semaphore is invalid) and give the image back.
        t1 = time.perf_counter()
        try:
            steps = self._submit_compute(slot)
            t2 = time.perf_counter()
            self._request_recording_frame(steps)
            self.graphics.submit(slot, index, draw_data, self.preview_area())
        except BaseException:
            self.needs_recreate = True      # first: giving the frame back may fail too (a lost device)
            self.graphics.abandon(slot)
            raise
        if self.profile:
            self.sync.wait(slot)
        t3 = time.perf_counter()
        self._present(index, suboptimal)
        t4 = time.perf_counter()
        self._count_frame(t4)
        self.timings = {"submit": t2 - t1, "draw": t3 - t2, "present": t4 - t3 + (t1 - ta), "frame": t4 - t0}
        if self.profile:
            self.timings.update(self.sheets.last_times)
        return True

    def _swapchain_ready(self) -> bool:
        """Recreate the swapchain when the window was resized or it went out of date; False when it
        cannot be now (minimised)."""
        if self.window.take_resized():
            self.needs_recreate = True
        if not self.needs_recreate and self.swapchain.extent == self.window.framebuffer_size:
            return True
        size = self.window.framebuffer_size
        if size[0] == 0 or size[1] == 0:
            return False
        try:
            self.swapchain.recreate(size)
        except WindowTooLarge as e:     # resized past the device's limit: say so once, wait for a smaller one
            if str(e) != self._too_large:
                self._too_large = str(e)
                self.error(str(e))
            self.window.poll(0.05)
            return False
        except OutOfDate:
            return False
        self._too_large = None
        for i in range(self.sync.n):  # no acquire semaphore may be left signalled and unwaited
            self.sync.renew_semaphore(i)
        self.needs_recreate = False
        return True

    def _finish_slot(self, slot):
        """Wait for slot ``slot``'s last frame (also frees what retired objects no frame uses any
        more), finish its captures, take its observables (a frame late: no stall)."""
        self.sync.wait(slot)
        self.graphics.finish(slot)
        self.sheets.observables(slot)

    def _build_ui(self):
        imgui.new_frame()
        if self.show_ui:
            self.panel.draw(self.sheets, self.window.size[1])
        imgui.render()
        return imgui.get_draw_data()

    def _acquire(self, slot):
        """``(image index, suboptimal)``, or None when the swapchain is out of date (recreated next).
        Offscreen: the slot's own image."""
        if self.offscreen:
            return self.swapchain.acquire_slot(slot)
        try:
            return self.swapchain.acquire(self.sync.acquired[slot])
        except OutOfDate:
            self.needs_recreate = True
            return None

    def _steps_this_frame(self) -> int:
        """Steps of this frame: the steps per frame while playing (a single step asked for while paused),
        at most up to the next step an MP4 recording samples."""
        limit = self.recording.limit if isinstance(self.recording, VideoRecording) else (lambda n: n)
        if self.playing:
            return limit(self.steps_per_frame)
        steps = limit(min(self._pending_step, 1))
        self._pending_step -= steps
        return steps

    def _submit_compute(self, slot):
        """The sheet pipeline's compute for this frame: the picture resampled to the size it is shown
        at (fewer pixels for write_image), the steps, the sheets."""
        self.preview.logical_size = self.sheets.logical_size
        (_, _, rw, rh), _ = self.preview.placement(self.preview_area())
        self.sheets.set_view(rw, rh)
        steps = self._steps_this_frame()
        # ms/step: every SAMPLE_EVERY frames while playing, one frame times its steps apart (it waits)
        sample = self.profile or (steps > 0 and self.frame_count % SAMPLE_EVERY == 0)
        self.sheets.submit(steps, slot, profile=sample)
        return steps

    def _present(self, index, suboptimal):
        ok = self.swapchain.present(index)
        if not ok or suboptimal:
            self.needs_recreate = True
        self.ctx.check()
        self.sync.advance()

    def _count_frame(self, t):
        self.frame_count += 1
        if self._last_frame_t is not None:
            self._frame_times.append(t - self._last_frame_t)
        self._last_frame_t = t

    def flush(self):
        """Wait for all frames in flight and finish their captures (screenshots get written)."""
        self.ctx.wait_idle()
        self.sync.collect(idle=True)
        for slot in range(self.sync.n):
            self.graphics.finish(slot)

    def run(self, frames: int | None = None, screenshot=None) -> int:
        """Loop until the window closes (or ``frames`` frames were presented); with ``screenshot``,
        save the last presented frame there (a new file: FileExistsError/OSError when it cannot be
        written). A recording in progress is saved at the end (OSError when it cannot be).

        SIGINT/SIGTERM (from the main thread) end the loop at the next frame: the frames in flight
        finish, the recording is saved, one line on stderr says what was written, and the result is
        :data:`INTERRUPTED` (130); a second signal stops at once without saving. Else returns 0."""
        shot_error = []
        received = None
        with _interrupt.deferred():      # the same deferral as rollouts: the first signal is remembered
            try:
                while not self.window.should_close and _interrupt.requested() is None:
                    if frames is not None and self.frame_count >= frames:
                        break
                    if screenshot is not None and frames is not None and self.frame_count == frames - 1:
                        self.screenshot_window(screenshot, failed=shot_error.append)
                    self.frame()
                received = _interrupt.requested()
                self.flush()
                saved = self.stop_recording(announce=received is None, strict=True) if self.recording else None
            except KeyboardInterrupt:    # a second signal: stop at once
                self.abort_recording()
                print(f"vkbands view: interrupted after {_frames(self.frame_count)}; stopped at once, nothing "
                      "more saved", file=sys.stderr, flush=True)
                return INTERRUPTED
        if received is not None:
            what = (f"saved recording ({_frames(self.last_recording_frames)}) {saved}" if saved is not None
                    else "nothing to save")
            print(f"vkbands view: interrupted ({received}) after {_frames(self.frame_count)} "
                  f"(step {self.sheets.step}); {what}", file=sys.stderr, flush=True)
            return INTERRUPTED
        if shot_error:
            raise shot_error[0]
        if frames is not None and self.record_error is not None:   # a script's recording failed
            raise self.record_error
        return 0

    # ------------------------------------------------------------------ lifetime
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self):
        """Free everything: sheet pipeline, renderers, swapchain, then the context (with the window's
        surface), then the window (idempotent)."""
        if self._closed:
            return
        self._closed = True
        rec, self.recording = getattr(self, "recording", None), None
        if rec is not None:             # not stopped by run(): nothing half-written is left
            rec.abort()
        if self.ctx is not None and not self.ctx.closed:
            self.ctx.wait_idle()
            if self.sync is not None:
                self.sync.collect(idle=True)
        for obj in (self.graphics, self.sheets, self.gui, self.preview, self.sync, self.swapchain):
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
        if not self.offscreen:
            release_glfw()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
