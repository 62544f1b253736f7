"""The live viewer's frame rate, vsync off: frames per second (pipelined, as the viewer runs) and
ms per frame split into simulate / decompose (sheets + write_image) / draw (preview + ImGui) /
present (acquire + present), each timed apart in a profiling pass that waits after each part.

Cases: Gray-Scott 243 x 243 and 729 x 729 (p = 3) and a tree batch of 64 x 729 (1-D), with 1 and 10
steps per frame. Needs a display: run it as
``xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python benchmarks/bench_viewer.py [--quick] [--out DIR]``
(``--out DIR``: also write the output to ``DIR/bench_viewer.md``).
Targets: lavapipe >= 30 fps at 243 x 243 with one step per frame; a real GPU >= 120 fps at 729 x 729
with 10 steps per frame.

Recording and offscreen (issue 13; :func:`recording_rows`): the same 1280x800 viewer windowed, windowed
while recording an MP4 of the window (30 fps file, one frame per frame drawn: the heaviest cadence),
and offscreen (no window, no presentation), each frames per second; the recording's cost is
``1 - fps(recording) / fps(windowed)`` (target < 15%).

Labels (issue 13; :func:`label_rows`): the same windowed viewer with the labelled picture (header,
titles, colour bar: write_image over the larger image + labels.comp) and with ``labels=False`` (the
bare grid); the labels' cost is ``1 - fps(labels) / fps(bare)`` (target < 5%).
"""
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import Report, bench_args, table  # noqa: E402

CASES = [  # (label, system, size, batch, steps per frame)
    ("Gray-Scott 243x243", "grayscott", 243, 1, 1),
    ("Gray-Scott 243x243", "grayscott", 243, 1, 10),
    ("Gray-Scott 729x729", "grayscott", 729, 1, 1),
    ("Gray-Scott 729x729", "grayscott", 729, 1, 10),
    ("tree 64 x 729 (1-D)", "tree", 729, 64, 1),
    ("tree 64 x 729 (1-D)", "tree", 729, 64, 10),
]


def measure(system, size, batch, spf, frames, profile_frames):
    from vkbands.viewer import open_viewer

    v = open_viewer(system, size=size, batch=batch, steps_per_frame=spf, vsync=False, width=1280, height=800,
                    range="per_band")
    try:
        for _ in range(5):                      # warm up: recordings, pipelines, first ImGui frames
            v.frame()
        v.ctx.wait_idle()
        t0 = time.perf_counter()
        n0 = v.frame_count
        while v.frame_count - n0 < frames:
            v.frame()
        v.ctx.wait_idle()
        dt = time.perf_counter() - t0
        fps = (v.frame_count - n0) / dt
        v.profile = True
        parts = {k: [] for k in ("simulate", "decompose", "draw", "present")}
        for _ in range(profile_frames):
            if v.frame():
                for k in parts:
                    parts[k].append(v.timings[k] * 1e3)
        ms = {k: statistics.median(x) for k, x in parts.items()}
        return fps, 1e3 / fps, ms, v.device_name
    finally:
        v.close()


RECORDING_CASES = [("Gray-Scott 243x243", "grayscott", 243, 1, 1)]


def measure_fps(system, size, batch, spf, frames, offscreen=False, record_dir=None, labels=True):
    """Frames per second of a 1280x800 viewer (vsync off): windowed, or ``offscreen``; with
    ``record_dir``, recording an MP4 of every frame at 30 fps (closing the file included)."""
    from vkbands.viewer import open_viewer

    v = open_viewer(system, size=size, batch=batch, steps_per_frame=spf, vsync=False, width=1280, height=800,
                    range="per_band", offscreen=offscreen, record_fps=30.0, out_dir=record_dir or ".", labels=labels)
    try:
        for _ in range(5):
            v.frame()
        if record_dir is not None:
            v.start_recording()
        v.ctx.wait_idle()
        t0 = time.perf_counter()
        n0 = v.frame_count
        while v.frame_count - n0 < frames:
            v.frame()
        if record_dir is not None:
            v.stop_recording(announce=False, strict=True)       # waits for the encoder: its cost counts
        v.ctx.wait_idle()
        return (v.frame_count - n0) / (time.perf_counter() - t0)
    finally:
        v.close()


def recording_rows(frames):
    """Rows: case, windowed fps, recording fps, recording cost, offscreen fps, offscreen / windowed."""
    import importlib.util
    import tempfile
    rows = []
    if importlib.util.find_spec("av") is None:      # the GPU kit carries vkbands' core dependencies only
        print("  MP4 recording skipped: PyAV (av) is not installed", file=sys.stderr)
        return [[label, spf, "-", "PyAV missing", "-", "-", "-"] for label, system, size, batch, spf in RECORDING_CASES]
    for label, system, size, batch, spf in RECORDING_CASES:
        win = measure_fps(system, size, batch, spf, frames)
        with tempfile.TemporaryDirectory() as d:
            rec = measure_fps(system, size, batch, spf, frames, record_dir=d)
        off = measure_fps(system, size, batch, spf, frames, offscreen=True)
        print(f"  {label}: windowed {win:.1f}, recording {rec:.1f}, offscreen {off:.1f} fps",
              file=sys.stderr, flush=True)
        rows.append([label, spf, f"{win:.1f}", f"{rec:.1f}", f"{100 * (1 - rec / win):.0f}%", f"{off:.1f}",
                     f"{off / win:.2f}"])
    return rows


LABEL_CASES = [("Gray-Scott 243x243", "grayscott", 243, 1, 1), ("tree 64 x 729 (1-D)", "tree", 729, 64, 1)]


def label_rows(frames):
    """Rows: case, fps with labels, fps bare (labels=False), the labels' cost."""
    rows = []
    for label, system, size, batch, spf in LABEL_CASES:
        bare = measure_fps(system, size, batch, spf, frames, labels=False)
        lab = measure_fps(system, size, batch, spf, frames, labels=True)
        print(f"  {label}: labels {lab:.1f}, bare {bare:.1f} fps", file=sys.stderr, flush=True)
        rows.append([label, spf, f"{lab:.1f}", f"{bare:.1f}", f"{100 * (1 - lab / bare):.0f}%"])
    return rows


def main(argv=None):
    args = bench_args(__doc__, argv, quick_help="fewer frames (a smoke run)")
    with Report(args.out, "bench_viewer"):
        return run(args)


def run(args):
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        import shutil
        if shutil.which("xvfb-run"):   # `make bench` runs every bench without a display: start one
            os.execvp("xvfb-run", ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", sys.executable,
                                   str(Path(__file__).resolve()), *sys.argv[1:]])
        print("bench_viewer: no display and no xvfb-run; skipped (see the module docstring)",
              file=sys.stdout if args.out else sys.stderr)
        return 0
    frames, prof = (20, 5) if args.quick else (60, 15)
    rows, device = [], "?"
    for label, system, size, batch, spf in CASES:
        fps, ms_frame, ms, device = measure(system, size, batch, spf, frames, prof)
        print(f"  {label}, {spf} steps/frame: {fps:.1f} fps", file=sys.stderr, flush=True)
        rows.append([label, spf, f"{fps:.1f}", f"{ms_frame:.2f}", f"{ms['simulate']:.2f}",
                     f"{ms['decompose']:.2f}", f"{ms['draw']:.2f}", f"{ms['present']:.2f}"])
    print(f"viewer, vsync off, 1280x800 window, device: {device}")
    print(table(rows, ["case", "steps/frame", "fps", "ms/frame", "simulate ms", "decompose ms", "draw ms",
                       "present ms"]))
    print()
    print("MP4 recording (H.264, 30 fps file, every frame) and offscreen, 1280x800, vsync off")
    print(table(recording_rows(frames), ["case", "steps/frame", "windowed fps", "recording fps",
                                         "recording cost", "offscreen fps", "offscreen / windowed"]))
    print()
    print("labelled picture (header, titles, colour bar) vs the bare grid, 1280x800 window, vsync off")
    print(table(label_rows(frames), ["case", "steps/frame", "labels fps", "bare fps", "labels cost"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
