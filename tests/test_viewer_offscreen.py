"""Headless rendering (vkbands.viewer.offscreen) and the viewer's MP4 recording: the offscreen viewer
runs with DISPLAY unset and writes its screenshot; windowed and offscreen screenshots of the same
state are equal within 1 LSB (under Xvfb); a recording has one frame per sampled step, equal to the
window within the codec's tolerance (tests/test_video.py states it); closing frees everything."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests._deps import need
from vkbands.video import read_video

needs_display = pytest.mark.skipif(not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")),
                                   reason="needs a display (run under xvfb-run, as `make test` does)")
LUMA = np.array([0.2126, 0.7152, 0.0722])


def _env_without_display(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(extra)
    return env


def test_cli_without_display_draws_offscreen(tmp_path):
    need("av")
    shot, video = tmp_path / "shot.png", tmp_path / "run.mp4"
    res = subprocess.run([sys.executable, "-m", "vkbands.cli", "view", "--system", "heat", "--size", "27",
                          "--frames", "4", "--screenshot", str(shot), "--video", str(video),
                          "--width", "640", "--height", "400"],
                         env=_env_without_display(VKBANDS_VALIDATION="1"), capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "vulkan:" not in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == ["vkbands view: no display (DISPLAY/WAYLAND_DISPLAY unset): "
                                               "drawing offscreen"]
    assert f"saved screenshot {shot}" in res.stdout and f"saved recording (4 frames) {video}" in res.stdout
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape == (400, 640, 3)
    from vkbands.viewer.app import PANEL_WIDTH
    panel, rest = img[:, :PANEL_WIDTH], img[:, PANEL_WIDTH:]
    assert len(np.unique(panel.reshape(-1, 3), axis=0)) > 20        # the ImGui panel: text, widgets
    assert len(np.unique(rest.reshape(-1, 3), axis=0)) > 5          # the sheet grid
    frames, rate = read_video(video)
    assert len(frames) == 4 and rate == 30.0 and frames[0].shape == (400, 640, 3)
    # the last recorded frame is the frame the screenshot saved (within the codec's tolerance)
    dl = np.abs(frames[-1].astype(float) @ LUMA - img.astype(float) @ LUMA)
    # (99th percentile: the labelled picture's 1-pixel glyph edges are H.264's worst case, ~8.5 here)
    assert dl.mean() < 1.5 and np.percentile(dl, 99) < 12, (dl.mean(), np.percentile(dl, 99))
    # without --frames there is nothing to end the run: refused before any work
    res = subprocess.run([sys.executable, "-m", "vkbands.cli", "view", "--offscreen"], env=_env_without_display(),
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 2 and "needs --frames N" in res.stderr.strip().splitlines()[-1]


def _still_frame(v, tmp_path, name):
    """Screenshot of the viewer's window after a fixed sequence of frames and single steps; the
    measured frame rate shown in the panel is fixed at 0 (it is timing, not state)."""
    v.run(frames=2)
    for _ in range(3):
        v.single_step()
        v.run(frames=v.frame_count + 1)
    path = tmp_path / name
    v.run(frames=v.frame_count + 2, screenshot=path)
    return np.asarray(Image.open(path).convert("RGBA")).astype(int)


@needs_display
def test_windowed_and_offscreen_screenshots_are_equal(tmp_path, monkeypatch):
    from vkbands.viewer import open_viewer
    from vkbands.viewer.app import Viewer
    monkeypatch.setattr(Viewer, "fps", property(lambda self: 0.0))
    shots, steps = {}, {}
    for offscreen in (False, True):
        v = open_viewer("grayscott", size=81, width=1000, height=640, range="per_band", vsync=False, paused=True,
                        offscreen=offscreen, out_dir=tmp_path)
        try:
            assert v.offscreen == offscreen and (v.ctx.surface is None) == offscreen
            if not offscreen:   # the same input as offscreen: no mouse over the window
                v.window.cursor = lambda: (-1.0, -1.0)
                v.window.mouse_button = lambda i: False
            shots[offscreen] = _still_frame(v, tmp_path, f"offscreen-{offscreen}.png")
            steps[offscreen] = v.sheets.step
        finally:
            v.close()
    a, b = shots[False], shots[True]
    assert steps[False] == steps[True] == 3
    assert a.shape == b.shape == (640, 1000, 4)
    diff = np.abs(a - b)
    assert diff.max() <= 1, f"{(diff > 1).any(-1).sum()} pixels differ by more than 1 LSB"
    assert len(np.unique(a.reshape(-1, 4), axis=0)) > 20                # not a blank frame


def test_offscreen_recording_samples_every_n_steps(tmp_path):
    need("av")
    """Steps per frame 2, one recorded frame every 3 steps: frames advance 2, 1, 2, 1... so each
    sampled step (2, 5, 8, ...) is drawn and recorded exactly once; a paused frame is not recorded."""
    from vkbands.viewer import open_viewer
    v = open_viewer("heat", size=27, width=480, height=320, steps_per_frame=2, record_every=3, offscreen=True,
                    out_dir=tmp_path)
    try:
        ctx = v.ctx
        v.start_recording()
        shot = tmp_path / "last.png"
        v.run(frames=11, screenshot=shot)
        assert v.sheets.step == 17 and v.recording is None
        path = v.last_recording
        assert path.parent == tmp_path and path.name.startswith("vkbands-rec-") and path.suffix == ".mp4"
        assert v.last_recording_frames == 6
        frames, _ = read_video(path)
        assert len(frames) == 6 and frames[0].shape == (320, 480, 3)
        img = np.asarray(Image.open(shot).convert("RGB")).astype(float)
        dl = np.abs(frames[-1].astype(float) @ LUMA - img @ LUMA)
        assert dl.mean() < 1.5 and np.percentile(dl, 99) < 8
        # the 'v' key starts and stops a recording; paused frames add nothing, a single step adds one
        import glfw
        v.playing = False
        v.key(glfw.KEY_V)
        for _ in range(3):
            v.frame()                                     # the first frame is taken, then nothing changes
        v.single_step()
        for _ in range(4):
            v.frame()                                     # 1 step: fewer than 3, not sampled
        for _ in range(2):
            v.single_step()
            v.frame()                                     # the third step since the first frame: sampled
        v.key(glfw.KEY_V)                                 # stops; the frame still in flight is kept
        assert v.recording is None and v.last_recording_frames == 2
        assert len(read_video(v.last_recording)[0]) == 2
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    finally:
        v.close()
    assert ctx.closed and v.window.closed
    assert set(v.open_at_close) <= {"Kernel"}, v.open_at_close


def test_closing_during_a_recording_leaves_no_file(tmp_path):
    need("av")
    from vkbands.viewer import open_viewer
    v = open_viewer("heat", size=27, width=320, height=240, offscreen=True, out_dir=tmp_path)
    try:
        v.start_recording()
        for _ in range(4):
            v.frame()
        assert v.recording.n_frames >= 1
    finally:
        v.close()
    assert list(tmp_path.iterdir()) == []
