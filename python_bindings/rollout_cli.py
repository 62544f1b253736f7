"""``vkbands rollout``: a headless batch rollout with its files and pictures.

Writes into DIR (``--out``, which must not exist yet; default a new ``out/rollout-<system>-<timestamp>``).
The folder is claimed with one atomic ``mkdir`` (two runs can never share one; nothing is ever
overwritten) and each file is written under a temporary name and renamed when complete:

- ``energies.csv``: ``step,batch,E_0..E_{L-1},E_c,mass,min,max`` per observed step and member;
- ``snapshots.npz``: ``steps``, ``snapshots`` (S, ...) , ``final``, ``x0``, ``observed_steps``,
  ``energies``;
- ``summary.json``: ``status`` (``completed``, ``interrupted``, ``nonfinite``, ``failed``),
  ``last_step``, ``steps_requested``, ``error`` (when not completed), config, seed, device, timings,
  deepest surviving band, kill steps, rates, ``files``;
- ``energies.png``: log E_l(t) per band (member 0; the system's closed form dashed, where it has one);
- ``sheets_tNNNNN.png``: the sheet grid (SPEC section 6) of member 0 at each snapshot (1-D: strips;
  plus ``band_time.png``, the band x time energy image); ``rollout.gif``: those frames animated.
  With ``--video [PATH]``: those frames as an MP4 (H.264, yuv420p; :mod:`vkbands.video`), one video
  frame per snapshot, so a frame is ``--snapshot-every`` simulation steps (the snapshot cadence is the
  video's: every snapshot is a frame, none dropped or repeated), played at ``--video-fps`` (default
  10). Without PATH the file is ``DIR/rollout-<timestamp>.mp4``; a PATH is a new file (checked before
  the run: never overwritten). The path is printed and in ``summary.json`` (``video``). Written with
  the pictures (also with ``--no-pictures``, which then skips only PNG/GIF).
  Labelled pictures (system, step, parameters; panel titles; colour bar with its range), each panel
  scaled by its own max|x| (``per_band``: a decaying rollout stays visible), in the system's colour map
  (``SystemSpec.picture``: log for the diffusions, whose decades stay visible; diverging for Gray-Scott);
  a system with several fields per member is pictured and observed through its observed field
  (Gray-Scott: v).

Every ending leaves what was computed on disk, with ``summary.json`` saying how the run ended:
Ctrl-C / SIGTERM finishes the chunk in flight (about a second at most), writes the observations up
to the last completed step (plus one of the state it stopped at), the snapshots taken and the summary
(no pictures), prints one line and exits 130; a NaN/Inf keeps everything before the exact first bad
step (pictures too) and exits 3; another failure after the first step, or a file that cannot be
written (a full disk: no truncated file is left), exits 3. A run that fails before its first step
removes the folder it made.

The options are generated from the system specs (``vkbands rollout --help``; docs/SYSTEMS.md) and
parsed into one :class:`vkbands.Setup`; an option that is not allowed, or that would be ignored for
the chosen system, ends the command with ``vkbands rollout: error: ...`` (one line) and status 2, as
does a run whose memory estimate is over the device's or this machine's limits.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ._outputs import jsonable
from .setup import HelpFormatter, Setup, add_arguments
from .systems import ParamSpec

__all__ = ["add_parser", "main", "run", "build_parser", "run_options", "write_csv", "write_pictures"]

PROG = "vkbands rollout"
# The rollout's own options (the set-up's come from vkbands.setup.add_arguments, generated from the specs).
RUN_OPTIONS = (
    ParamSpec("steps", 200, "int", lo=0, help="steps to run"),
    ParamSpec("every", 1, "int", lo=0, help="observables every k steps (0: none)"),
    ParamSpec("snapshot_every", None, "int", lo=0, help="snapshots every k steps (default steps/10; 0: none)"),
)


def add_parser(sub):
    p = sub.add_parser("rollout", help="headless batch rollout: energies, snapshots, sheet pictures, GIF",
                       description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    _add_arguments(p)
    p.set_defaults(func=run)
    return p


def _add_arguments(p):
    add_arguments(p)
    g = p.add_argument_group("rollout")
    for o in RUN_OPTIONS:
        g.add_argument("--" + o.name.replace("_", "-"), dest=o.name, default=o.default, metavar=o.metavar(),
                       help=f"{o.help}; {o.allowed()}")
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, default=None, help="output directory (new; never overwritten)")
    g.add_argument("--no-pictures", action="store_true", help="skip PNG/GIF files")
    g.add_argument("--video", nargs="?", const=True, default=None, metavar="PATH",
                   help="also write an MP4 (H.264) of the sheet pictures, one frame per snapshot (every "
                        "--snapshot-every steps); PATH: a new file (default DIR/rollout-<timestamp>.mp4)")
    g.add_argument("--video-fps", type=float, default=10.0, help="frame rate of the --video file (default 10)")
    g.add_argument("--quiet", "-q", action="store_true", help="only print the output directory")


def build_parser():
    from .cli import OneLineParser
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    _add_arguments(parser)
    return parser


def main(argv=None) -> int:
    """``vkbands rollout ARGV`` in-process, through the router (:func:`vkbands.cli.main`): the exit
    status, and one ``vkbands rollout: error: ...`` line on stderr for an error."""
    from .cli import main as vkbands_main
    return vkbands_main(["rollout", *(sys.argv[1:] if argv is None else argv)])


# ----------------------------------------------------------------------------- set-up
def run_options(args):
    """(steps, every or None, snapshot_every or None) of the command line, checked like the set-up."""
    steps, every, snap = (o.convert(getattr(args, o.name), cli=True) for o in RUN_OPTIONS)
    snap = snap if snap is not None else max(1, steps // 10)
    return steps, (every or None), (snap or None)


# ----------------------------------------------------------------------------- files
def write_csv(path, r):
    """``step,batch,E_0..E_{L-1},E_c,mass,min,max``, one row per observed step and member."""
    T, B, L1 = r.energies.shape
    step = np.repeat(r.steps, B)
    member = np.tile(np.arange(B), T)
    cols = [step, member] + [r.energies[..., l].reshape(-1) for l in range(L1)] + \
           [r.mass.reshape(-1), r.min.reshape(-1), r.max.reshape(-1)]
    header = ["step", "batch"] + [f"E_{l}" for l in range(L1 - 1)] + ["E_c", "mass", "min", "max"]
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        if T:
            data = np.column_stack(cols)
            fmt = ["%d", "%d"] + ["%.9g"] * (len(header) - 2)
            np.savetxt(f, data, fmt=fmt, delimiter=",")


def _member_field(r, x):
    """The field pictured for one member of a state/snapshot (its observed field)."""
    return r.spec.observed_field(x, r.dims)


def sheet_frames(r, ctx=None) -> list:
    """``[(step, (H, W, 4) uint8 picture)]``: the labelled sheet grid of member 0 at each snapshot,
    each panel in its own range (per_band) and the system's colour map."""
    from .render import SheetRenderer, robust_vmax, sheet_caption
    if r.snapshots is None or not len(r.snapshots):
        return []
    fields = [_member_field(r, s[0]) for s in r.snapshots]      # the CLI's x0 is always (B, ...)
    vmax = robust_vmax(fields[0])                                 # fixed over the rollout: decay shows
    # the system's colour map (diffusions decay over decades: log; O(1) patterns: diverging)
    with SheetRenderer(fields[0].shape, r.arity, ctx=ctx, cmap=r.spec.picture.cmap, caption=sheet_caption(r)) as sr:
        return [(int(t), sr.render(f, vmax, step=int(t))) for t, f in zip(r.snapshot_steps, fields)]


def write_pictures(out, r, ctx=None, frames=None):
    """sheets_tNNNNN.png per snapshot, rollout.gif, energies.png, band_time.png (1-D), into ``out`` (a
    folder, or an :class:`vkbands._outputs.OutputDir`: each file written atomically). ``frames``: the
    :func:`sheet_frames` when already drawn. Returns names."""
    from ._outputs import OutputDir
    from .render import band_time_image, save_energies_plot, save_gif, save_png
    out = out if isinstance(out, OutputDir) else OutputDir(Path(out))
    written = []
    spec = r.spec
    title = f"{r.system}  p={r.arity} L={r.levels} B={r.batch}  member 0" + \
        (f"  (bands of {spec.observed})" if spec.fields_per_member > 1 else "")

    def put(name, write_to):
        out.write(name, write_to)
        written.append(name)
    if len(r.steps):
        put("energies.png", lambda p: save_energies_plot(p, r.steps, r.energies, closed_form=r.closed_form(),
                                                          title=title))
        if r.dims == 1:
            put("band_time.png", lambda p: save_png(p, band_time_image(r.energies[:, 0], ctx=ctx, steps=r.steps)))
    frames = sheet_frames(r, ctx) if frames is None else frames
    if frames:
        for t, img in frames:
            put(f"sheets_t{t:05d}.png", lambda p, img=img: save_png(p, img))
        put("rollout.gif", lambda p: save_gif(p, [img for _, img in frames]))
    return written


def write_video(path, frames, fps, another=None):
    """The pictures ``frames`` (``[(step, picture)]``, all of one size) as an MP4 at ``path`` (a new
    file; ``another``: the next generated name when it was taken meanwhile), one video frame each.
    Returns the path written (None when there is no frame)."""
    from .video import VideoWriter
    if not frames:
        return None
    h, w = frames[0][1].shape[:2]
    with VideoWriter(path, fps, (w, h), another=another) as vw:
        for _, img in frames:
            vw.write(img)
    return vw.close()


def _video_target(args, out):
    """(path, another) of the ``--video`` file: the PATH given, or a new timestamped name in ``out``."""
    from vkbands.viewer.files import unique_path
    if args.video is True:
        another = lambda: unique_path(out.path, "rollout", ".mp4")   # noqa: E731
        return another(), another
    return Path(args.video), None


# ----------------------------------------------------------------------------- run
ENDINGS = {"completed": 0, "interrupted": 130, "nonfinite": 3, "failed": 3}
_PROGRESS_DELAY_S = 0.5        # the progress bar of a run that lasts longer (chunks are ~0.5 s)


def run(args) -> int:
    """Run a parsed command line: its Setup, the rollout, the files. Returns 0, or 130 when interrupted
    (one line; what was computed is on disk); raises :class:`vkbands.cli.CommandError` (status 2: an
    option not allowed, an output folder that exists; 3: NaN/Inf or another failure after work
    started, with the results so far on disk) or lets an error before any work through to the router
    (a memory or device limit, no device: status 2)."""
    from vkbands.engine import default_context
    from . import _interrupt
    from ._outputs import OutputError, claim, timestamp
    from .cli import CommandError
    from .rollout import check_memory

    try:
        setup = Setup.from_args(args)
        steps, every, snap = run_options(args)
        _check_video_options(args)
    except (ValueError, TypeError) as e:
        raise CommandError(e) from None
    ctx = default_context()
    check_memory(ctx, setup.spec, setup.shape, steps, every, snap, dims=setup.dims, arity=setup.arity,
                 make_x0=True, what=setup.size_text())
    try:
        out = claim(args.out, default=Path("out") / f"rollout-{setup.system}-{timestamp()}")
    except OutputError as e:
        raise CommandError(e) from None
    with _interrupt.deferred():
        t0 = time.perf_counter()
        r, error, x0 = _roll(setup, steps, every, snap, ctx, out)
        return _finish(args, setup, x0, r, error, out, ctx, time.perf_counter() - t0)


def _check_video_options(args):
    """``--video PATH``: a new file in an existing, writable folder; ``--video-fps`` > 0 (ValueError)."""
    if getattr(args, "video", None) is None:
        return
    if not (args.video_fps > 0 and np.isfinite(args.video_fps)):
        raise ValueError(f"--video-fps {args.video_fps}: allowed: a frame rate > 0")
    if args.video is not True:
        from vkbands.viewer.files import check_new_file
        check_new_file("--video", args.video)


def _roll(setup, steps, every, snap, ctx, out):
    """``(rollout, error or None, x0)``: the Rollout (partial when ``error``); an error before the first
    step removes the folder and is raised."""
    from .rollout import rollout
    try:
        x0 = setup.x0()
        r = rollout(setup, x0, steps, every=every, snapshot_every=snap, ctx=ctx, progress=_PROGRESS_DELAY_S)
        return r, None, x0
    except BaseException as e:
        partial = getattr(e, "rollout", None)
        if partial is None or (partial.n_steps == 0 and partial.status != "nonfinite"):
            out.discard()                 # nothing computed: leave nothing behind
            if isinstance(e, KeyboardInterrupt):
                how = getattr(e, "signal", None) or (str(e.args[0]) if e.args else "")
                raise KeyboardInterrupt(f"{how if how.startswith('SIG') else 'SIGINT'} before the first step; "
                                        "nothing was written") from None
            raise
        return partial, e, x0


def _status(r, error) -> str:
    return "completed" if error is None else r.status


def _finish(args, setup, x0, r, error, out, ctx, wall) -> int:
    """Write what the run gave (data first, then summary.json, then the pictures and summary.json
    again), each file atomically; then one line (or the summary table) and the exit status."""
    from . import _interrupt
    from .cli import CommandError
    status = _status(r, error)
    summary = _summary(args, setup, r, status, error, wall, ctx)
    try:
        out.write("energies.csv", lambda p: write_csv(p, r))
        out.write("snapshots.npz", lambda p: _write_npz(p, r, x0))
        _write_summary(out, summary)
        skipped = status in ("interrupted", "failed") or _interrupt.requested()
        video = getattr(args, "video", None)
        if not skipped and (video is not None or not args.no_pictures):
            t_pic = time.perf_counter()
            frames = sheet_frames(r, ctx)
            if not args.no_pictures:
                write_pictures(out, r, ctx=ctx, frames=frames)
            if video is not None:
                _write_video(args, out, frames, summary)
            summary["timings"]["pictures_s"] = time.perf_counter() - t_pic
            _write_summary(out, summary)
    except OSError as e:
        summary.update(status="failed", error=f"writing {_failed_file(out, e)} in {out.path}: {_os_error(e)}")
        try:
            _write_summary(out, summary)
        except OSError:
            pass
        raise CommandError(summary["error"] + ' (summary.json: status "failed")', 3) from None
    signal_name = _interrupt.requested()
    if status == "interrupted" or (signal_name and status == "completed"):
        name = getattr(error, "signal", None) or signal_name
        by = f" by {name}" if name else ""
        print(f"{PROG}: interrupted{by} at step {r.n_steps} of {r.steps_requested}; results so far in {out.path} "
              f"(summary.json: status \"{summary['status']}\")", file=sys.stderr)
        return ENDINGS["interrupted"]
    if error is not None:
        raise CommandError(f"{' '.join(str(error).split())} Results up to step {r.n_steps} in {out.path} "
                           f"(summary.json: status \"{status}\")", ENDINGS[status]) from None
    if args.quiet:
        print(out.path)
    else:
        print(format_summary(r, out.path, ctx.info, x0.shape))
        if summary.get("video"):
            print(f"  video: {summary['video']} ({summary['video_frames']} frames at {args.video_fps:g} fps, "
                  f"one per {summary['snapshot_every']} steps)")
        elif "video" in summary:
            print("  video: none (no snapshot was taken)")
    return 0


def _write_video(args, out, frames, summary):
    """The ``--video`` MP4 (one frame per snapshot); its path goes into the summary (and, inside the
    output folder, its ``files``)."""
    path, another = _video_target(args, out)
    try:
        written = write_video(path, frames, args.video_fps, another=another)
    except OSError as e:
        if not getattr(e, "output_file", None):
            e.output_file = str(path)
        raise
    if written is None:
        summary["video"] = None
        return
    summary["video"] = str(written)
    summary["video_frames"] = len(frames)
    if written.parent.resolve() == out.path.resolve() and written.name not in out.files:
        out.files.append(written.name)


def _failed_file(out, e):
    if getattr(e, "output_file", None):
        return e.output_file
    name = Path(getattr(e, "filename", "") or "").name
    return name[len(".tmp-"):] if name.startswith(".tmp-") else (name or "a file")


def _os_error(e):
    return e.strerror or str(e)


def _write_npz(path, r, x0):
    snaps = r.snapshots if r.snapshots is not None else np.zeros((0,) + x0.shape, np.float32)
    arrays = dict(steps=r.snapshot_steps, snapshots=snaps, x0=x0, observed_steps=r.steps, energies=r.energies)
    if r.final is not None:           # (None: a failed run whose state could not be read)
        arrays["final"] = r.final
    np.savez_compressed(path, **arrays)


def _write_summary(out, summary):
    summary["files"] = [f for f in out.files if f != "summary.json"] + ["summary.json"]
    out.write_text("summary.json", json.dumps(jsonable(summary), indent=1) + "\n")


def _summary(args, setup, r, status, error, wall, ctx) -> dict:
    info = ctx.info
    steps, every, snap = run_options(args)
    summary = dict(
        command=PROG, status=status, last_step=r.n_steps, steps_requested=r.steps_requested,
        config=dict(_cli_config(args), **setup.config(), steps=steps, every=every, snapshot_every=snap),
        system=r.system, params=r.params, seed=setup.seed, shape=list(setup.shape), arity=r.arity, levels=r.levels,
        dims=r.dims, batch=r.batch, steps=r.n_steps, every=every, snapshot_every=snap,
        device=dict(name=info.get("name"), type=info.get("type"), driver=info.get("driver"), api=info.get("api")),
        timings=dict(r.timings, wall_s=wall))
    if error is not None:
        summary["error"] = " ".join(str(error).split())
        if status == "nonfinite":
            summary.update(first_nonfinite_step=error.step, nonfinite_member=error.member,
                           last_finite_step=error.last_finite_step, step_is_exact=error.how == "exact")
        if status == "interrupted":
            summary["signal"] = getattr(error, "signal", None)
    derived = r.summary()
    for key in ("system", "steps", "batch", "arity", "levels"):
        derived.pop(key, None)
    summary.update(derived)
    return summary


def _cli_config(args) -> dict:
    """The command line's own options (output), JSON-friendly."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if k in ("out", "no_pictures", "quiet", "video", "video_fps")}


def format_summary(r, out, info, shape) -> str:
    lines = [f"vkbands rollout: {r.system}  shape={tuple(shape)}  p={r.arity} L={r.levels}  steps={r.n_steps}  "
             f"on {info.get('name')}",
             f"  run {r.timings['run_s']:.3f} s ({r.timings['steps_per_s']:.1f} steps/s), setup "
             f"{r.timings['setup_s']:.3f} s"]
    if len(r.steps):
        E0, ET = r.energies[0].mean(0), r.energies[-1].mean(0)
        rates = r.contraction_rates()[0] if r.steps.size > 1 else np.full(E0.shape, np.nan)
        kill = r.kill_steps()[0]
        lines.append(f"  {'band':>5} {'E(0) mean':>12} {'E(T) mean':>12} {'rate(m0)':>11} {'kill(m0)':>9}")
        for l in range(len(E0)):
            name = f"E_{l}" if l < len(E0) - 1 else "E_c"
            lines.append(f"  {name:>5} {E0[l]:12.4e} {ET[l]:12.4e} {rates[l]:11.4e} {int(kill[l]):9d}")
        D = r.deepest_surviving_band()[-1]
        m0, m1 = r.mass[0].sum(), r.mass[-1].sum()
        drift = abs(m1 - m0) / max(abs(m0), 1e-30)
        lines.append(f"  deepest surviving band at t={int(r.steps[-1])}: member 0 -> {int(D[0])}"
                     + (f", over the batch min {int(D.min())} max {int(D.max())}" if len(D) > 1 else ""))
        lines.append(f"  mass {m0:.6g} -> {m1:.6g} (relative drift {drift:.2e})")
    lines.append(f"  output: {out}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
