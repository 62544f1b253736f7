"""`vkbands view` as scripts see it (issue 10): interruption saves the recording and exits 130; input
that is unusable at start, a screenshot path that cannot be written and a window too large for the
device are one error line and exit 2; everything the viewer writes appears complete under a name
that did not exist. Driven through the real command line in subprocesses under Xvfb."""
import errno
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from vkbands.viewer import files
from tests._deps import need

needs_display = pytest.mark.skipif(not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")),
                                   reason="needs a display (run under xvfb-run, as `make test` does)")
SMALL = ["--system", "heat", "--size", "27", "--width", "320", "--height", "200", "--no-vsync"]


def _view(args, cwd, **env):
    return subprocess.Popen([sys.executable, "-m", "vkbands.cli", "view", *args], cwd=cwd,
                            env={**os.environ, "VKBANDS_VALIDATION": "1", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p, timeout=120):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("vkbands view: error: "), err
    assert "Traceback" not in err and "vulkan:" not in err
    return lines[0]


def _lines(stream, into):
    for line in iter(stream.readline, ""):
        into.put(line)
    into.put(None)


def _wait_for(lines, text, timeout=60):
    """Read ``lines`` (a queue fed by a reader thread) until one contains ``text``; all read so far."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"no line with {text!r} within {timeout} s; got {seen}")


def _no_temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".part")]


# ----------------------------------------------------------------------------- interruption
@needs_display
@pytest.mark.parametrize("sig, frames, fmt", [(signal.SIGINT, None, "mp4"), (signal.SIGTERM, 10**6, "gif")])
def test_signal_saves_the_recording_and_exits_130(tmp_path, sig, frames, fmt):
    if fmt == "mp4":
        need("av")
    """Interactive (no --frames) with Ctrl-C, and a script's --frames run with SIGTERM: the loop stops
    at the next frame, the recording (MP4, or GIF) of the frames captured so far is written (complete,
    under a new name) and one line names it; exit 130 within seconds. A bad --load at start
    (interactive) is shown and the viewer keeps running."""
    rec = tmp_path / "rec"
    bad = tmp_path / "missing.npy"
    args = SMALL + ["--record", "--record-fps", "30", "--record-format", fmt, "--out-dir", str(rec)]
    if frames is None:
        args += ["--load", str(bad)]
    else:
        args += ["--frames", str(frames)]
    p = _view(args, tmp_path)
    out_lines, err_lines = queue.Queue(), queue.Queue()
    readers = [threading.Thread(target=_lines, args=(p.stdout, out_lines), daemon=True),
               threading.Thread(target=_lines, args=(p.stderr, err_lines), daemon=True)]
    for t in readers:
        t.start()
    try:
        started = _wait_for(out_lines, "recording")
        time.sleep(2.0)                                         # some frames drawn and captured
        assert p.poll() is None, "the viewer ended before the signal"
        p.send_signal(sig)
        t0 = time.monotonic()
        rc = p.wait(timeout=20)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
    for t in readers:
        t.join(timeout=5)
    out = "".join(started) + "".join(iter(out_lines.get_nowait, None))
    err = "".join(iter(err_lines.get_nowait, None))
    assert rc == 130, (rc, out, err)
    assert took < 10, took
    assert "Traceback" not in err and "vulkan:" not in err, err
    gifs = sorted(rec.glob("*." + fmt))
    assert len(gifs) == 1, (list(rec.iterdir()), out, err)
    assert _no_temp_files(rec) == []
    if fmt == "mp4":
        from vkbands.video import read_video
        assert len(read_video(gifs[0])[0]) >= 1                 # every frame decodes
    else:
        with Image.open(gifs[0]) as im:
            assert im.n_frames >= 1
            im.seek(im.n_frames - 1)                            # every frame decodes
            im.load()
    err_rows = err.strip().splitlines()
    said = [line for line in err_rows if "interrupted" in line]
    assert len(said) == 1 and str(gifs[0]) in said[0] and "saved recording" in said[0], err
    assert "saved recording" not in out                        # one line says what was written
    if frames is None:                                          # interactive: the bad --load was shown
        assert any(str(bad) in line and "no such file" in line.lower() for line in err_rows), err
        assert len(err_rows) == 2, err
    else:
        assert len(err_rows) == 1, err


# ----------------------------------------------------------------------------- bad input: exit 2
@needs_display
def test_unusable_input_at_start_exits_2_with_frames(tmp_path):
    """With --frames (a script), a --load/--watch file that cannot be used at start is one line naming
    the file and why, exit 2, and nothing is rendered or written (no screenshot of the default field)."""
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not a numpy file at all")
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    shape = tmp_path / "shape.npy"
    np.save(shape, np.zeros((5, 5), np.float32))
    missing = tmp_path / "missing.npy"
    cases = {
        "load-missing": ("--load", missing, "no such file"),
        "load-garbage": ("--load", garbage, "not a .npy"),
        "load-pickled": ("--load", pickled, "pickle"),
        "load-shape": ("--load", shape, "shape"),
        "watch-missing": ("--watch", missing, "no such file"),
        "watch-pickled": ("--watch", pickled, "pickle"),
    }
    procs = {name: _view(SMALL + [option, str(path), "--frames", "3", "--screenshot", str(tmp_path / f"{name}.png")],
                         tmp_path) for name, (option, path, _) in cases.items()}
    for name, (option, path, why) in cases.items():
        rc, out, err = _finish(procs[name])
        assert rc == 2, (name, rc, out, err)
        line = _one_error_line(err)
        assert f"{option} {path}" in line and why in line.lower(), (name, line)
        assert not (tmp_path / f"{name}.png").exists(), name


# ----------------------------------------------------------------------------- screenshot paths
@needs_display
def test_screenshot_path_is_checked_before_any_work(tmp_path):
    """A screenshot path in a missing folder, an existing file or a folder: one line, exit 2, before the
    viewer starts (nothing recorded, nothing written); an existing file is never overwritten."""
    existing = tmp_path / "keep.png"
    existing.write_bytes(b"mine")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    cases = {
        "missing-folder": (tmp_path / "nope" / "shot.png", ["does not exist", str(tmp_path / "nope")]),
        "existing": (existing, ["already exists"]),
        "folder": (folder, ["folder"]),
    }
    procs = {name: _view(SMALL + ["--frames", "3", "--screenshot", str(path), "--record",
                                  "--out-dir", str(tmp_path / f"rec-{name}")], tmp_path)
             for name, (path, _) in cases.items()}
    for name, (path, fragments) in cases.items():
        rc, out, err = _finish(procs[name])
        assert rc == 2, (name, rc, out, err)
        line = _one_error_line(err)
        assert f"--screenshot {path}" in line, line
        for f in fragments:
            assert f in line, (name, f, line)
        assert out == "", (name, out)                       # not started: no "recording at" line
        assert not (tmp_path / f"rec-{name}").exists()
    assert existing.read_bytes() == b"mine"
    assert not (tmp_path / "nope").exists()
    assert list(folder.iterdir()) == []


def test_video_path_is_checked_before_any_work_and_written_offscreen(tmp_path):
    need("av")
    """--video PATH (offscreen here: no display needed): an existing file is refused with one line and
    exit 2 before the viewer starts; a new one gets exactly --frames frames when --record-every is the
    steps per frame; options out of range are one line, exit 2."""
    existing = tmp_path / "keep.mp4"
    existing.write_bytes(b"mine")
    rc, out, err = _finish(_view(SMALL + ["--offscreen", "--frames", "3", "--video", str(existing)], tmp_path))
    assert rc == 2 and f"--video {existing}" in _one_error_line(err) and "already exists" in err and out == ""
    assert existing.read_bytes() == b"mine"
    for bad, what in ((["--record-every", "0"], "--record-every"), (["--record-fps", "0"], "--record-fps")):
        rc, out, err = _finish(_view(SMALL + ["--offscreen", "--frames", "3", "--record"] + bad, tmp_path))
        assert rc == 2 and what in _one_error_line(err), (rc, err)
    video = tmp_path / "new.mp4"
    rc, out, err = _finish(_view(SMALL + ["--offscreen", "--frames", "5", "--steps-per-frame", "2", "--video",
                                          str(video)], tmp_path))
    assert rc == 0, err
    assert f"saved recording (5 frames) {video}" in out and "one frame every 2 steps" in out
    from vkbands.video import read_video
    frames, rate = read_video(video)
    assert len(frames) == 5 and rate == 30.0 and frames[0].shape == (200, 320, 3)
    assert _no_temp_files(tmp_path) == []


@needs_display
def test_screenshot_written_complete_under_a_new_name(tmp_path):
    shot = tmp_path / "cli.png"
    rc, out, err = _finish(_view(SMALL + ["--frames", "3", "--screenshot", str(shot)], tmp_path))
    assert rc == 0, err
    assert Image.open(shot).size == (320, 200)
    assert _no_temp_files(tmp_path) == []
    assert f"saved screenshot {shot}" in out


# ----------------------------------------------------------------------------- window size
@needs_display
def test_window_too_large_for_the_device_is_one_line(tmp_path, ctx):
    wide = str(min(int(ctx.limits.maxImageDimension2D), int(ctx.limits.maxFramebufferWidth)) + 1)
    procs = {size: _view(["--system", "heat", "--size", "27", "--width", size[0], "--height", size[1], "--frames", "1"],
                         tmp_path) for size in (("100000", "100000"), (wide, "300"))}
    procs["zero"] = _view(["--system", "heat", "--size", "27", "--width", "0", "--frames", "1"], tmp_path)
    for key, p in procs.items():
        rc, out, err = _finish(p)
        assert rc == 2, (key, rc, err)
        line = _one_error_line(err)
        if key == "zero":
            assert "--width" in line and "0" in line, line
        else:
            assert f"{key[0]}x{key[1]}" in line and "at most" in line, line


# ----------------------------------------------------------------------------- files.py: atomic, no overwrite
def test_write_new_is_atomic_and_never_overwrites(tmp_path):
    target = tmp_path / "a.png"

    def write(f):
        f.write(b"complete")
    assert files.write_new(target, write) == target
    assert target.read_bytes() == b"complete"
    assert _no_temp_files(tmp_path) == []
    with pytest.raises(FileExistsError, match="already exists"):   # an explicit name: refused
        files.write_new(target, lambda f: f.write(b"other"))
    assert target.read_bytes() == b"complete" and _no_temp_files(tmp_path) == []
    # a generated name taken meanwhile (another viewer, the same second): the next free one
    taken = files.unique_path(tmp_path, "vkbands-rec", ".gif")
    taken.write_bytes(b"theirs")
    got = files.write_new(taken, write, another=lambda: files.unique_path(tmp_path, "vkbands-rec", ".gif"))
    assert got != taken and got.read_bytes() == b"complete" and taken.read_bytes() == b"theirs"

    def full_disk(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match="No space"):
        files.write_new(tmp_path / "b.png", full_disk)
    assert not (tmp_path / "b.png").exists() and _no_temp_files(tmp_path) == []


def test_written_with_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        p = files.write_new(tmp_path / "u.png", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o640


def test_png_and_gif_written_atomically(tmp_path, monkeypatch):
    px = np.zeros((4, 6, 4), np.uint8)
    px[..., 0], px[..., 3] = 200, 255
    p = files.save_png(tmp_path / "s.png", px)
    assert np.array_equal(np.asarray(Image.open(p)), px)
    rec = files.GifRecording(tmp_path / "r.gif")
    for k in range(3):                                      # distinct frames (Pillow merges equal ones)
        rec.add(np.where(np.arange(6)[None, :, None] == k, 255, px).astype(np.uint8))
    assert rec.save(15.0) == tmp_path / "r.gif"
    assert Image.open(tmp_path / "r.gif").n_frames == 3
    with pytest.raises(FileExistsError):
        files.save_png(tmp_path / "s.png", px)
    # a write that fails half-way leaves nothing under the final name
    from PIL import Image as PILImage
    real_save = PILImage.Image.save

    def failing(self, fp, *a, **k):
        real_save(self, fp, *a, **k)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(PILImage.Image, "save", failing)
    with pytest.raises(OSError):
        files.save_png(tmp_path / "t.png", px)
    rec2 = files.GifRecording(tmp_path / "r2.gif")
    rec2.add(px)
    with pytest.raises(OSError):
        rec2.save(15.0)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["r.gif", "s.png"]


def test_write_new_by_path_and_jsonable(tmp_path):
    """The one never-overwriting writer (vkbands._outputs.write_new) also serves writers that open a
    path themselves (matplotlib, csv: the sweep's summary and pictures); jsonable turns NumPy values
    (including np.bool_, which json cannot write) into plain JSON."""
    import json

    from vkbands._outputs import jsonable, write_new
    target = tmp_path / "s.csv"
    assert write_new(target, lambda p: p.write_text("a,b\n"), by_path=True) == target
    assert target.read_text() == "a,b\n"
    with pytest.raises(FileExistsError):
        write_new(target, lambda p: p.write_text("other\n"), by_path=True)
    assert target.read_text() == "a,b\n" and [p.name for p in tmp_path.iterdir()] == ["s.csv"]
    value = {"flag": np.bool_(True), "n": np.int64(3), "x": np.float32(0.5), "bad": float("nan"),
             "a": np.arange(2), "t": (1, 2), "p": tmp_path}
    assert json.loads(json.dumps(jsonable(value))) == {"flag": True, "n": 3, "x": 0.5, "bad": None, "a": [0, 1],
                                                       "t": [1, 2], "p": str(tmp_path)}
