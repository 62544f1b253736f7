"""``vkbands view``: the live viewer from the command line.

    vkbands view                                   # Gray-Scott 243 x 243, p = 3
    vkbands view --system tree --size 729 --tau 2  # tree diffusion of a 1-D field, strips
    vkbands view --frames 60 --screenshot out.png  # render 60 frames, save the last one, exit
    vkbands view --offscreen --frames 300 --video run.mp4   # a GPU server: no window, an MP4

``--offscreen`` draws the same frames (sheet grid and panel) into offscreen images: no window, no X
server, no surface. Without a display (DISPLAY and WAYLAND_DISPLAY unset) the viewer runs offscreen by
itself (one line on stderr says so); there it needs ``--frames N`` (with nothing to close, it would
never end), and ``--screenshot`` / ``--video`` / ``--record`` say what to keep.

Recording (``--record``, the panel's Record button, the ``v`` key, ``--video PATH``): an MP4 (H.264)
of the window, one frame every ``--record-every`` simulation steps (default: ``--steps-per-frame``,
i.e. every frame while playing), played at ``--record-fps`` (default 30); nothing is dropped or
repeated (a slow encoder slows the simulation). Names are ``vkbands-rec-<time>.mp4`` in
``--out-dir`` (or PATH), never overwritten, and printed. ``--record-format gif`` records the sheet
grid as a GIF instead (frames taken at most ``--record-fps`` times a second, default 15).
The set-up options are those of ``vkbands rollout`` (generated from the system specs) and are parsed
into one :class:`vkbands.Setup`; one that is not allowed exits with 2 and one error line.

Exit status: 0; 2 for bad input (one ``vkbands view: error: ...`` line): a set-up option, a window
larger than the device draws into, a ``--screenshot`` or ``--video`` path that exists or whose folder
does not, offscreen without ``--frames``, and,
with ``--frames`` (a script), a ``--load``/``--watch`` file that cannot be used at start (interactive,
the error is shown in the panel and the viewer runs on); 3 when the run fails (a file that cannot be
written); 130 when interrupted (SIGINT/SIGTERM: the recording in progress is saved and one line says
what was written). Screenshots and recordings are new files, written complete or not at all.
"""
from __future__ import annotations

import sys

from vkbands import systems
from vkbands.setup import HelpFormatter, Setup, add_arguments


def add_parser(sub):
    p = sub.add_parser("view", help="live viewer: a rollout's band sheets in a window (GLFW + Vulkan + ImGui)",
                       description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    # The set-up options are those of `vkbands rollout` (same names, meaning and defaults), except
    # the default system (systems.DEFAULT_VIEW).
    add_arguments(p, system=systems.DEFAULT_VIEW, params_note="defaults: SPEC; live ones can be changed in the panel")
    p.add_argument_group("drawn field").add_argument("--member", type=int, default=0, help="batch member drawn")
    d = p.add_argument_group("picture")
    d.add_argument("--cmap", default=None, choices=["grey", "diverging", "ternary", "log"],
                   help="colour map (default: the system's, docs/SYSTEMS.md)")
    d.add_argument("--range", default=None, choices=["fixed", "symmetric", "per_band"],
                   help="fixed: vmin/vmax (default +-max|x0|), no per-frame rescale (default: the system's, fixed)")
    d.add_argument("--vmin", type=float, default=None)
    d.add_argument("--vmax", type=float, default=None)
    d.add_argument("--fade", type=float, default=0.0, help="temporal fade alpha in [0, 1)")
    r = p.add_argument_group("running")
    r.add_argument("--steps-per-frame", type=int, default=1)
    r.add_argument("--paused", action="store_true", help="start paused")
    r.add_argument("--no-vsync", dest="vsync", action="store_false", help="present as fast as possible")
    r.add_argument("--width", type=int, default=1280)
    r.add_argument("--height", type=int, default=800)
    r.add_argument("--no-ui", dest="show_ui", action="store_false", help="hide the ImGui panel")
    r.add_argument("--frames", type=int, default=None,
                   help="render N frames, then exit (a script: unusable --load/--watch input is an error)")
    r.add_argument("--screenshot", default=None,
                   help="with --frames: save the last frame (PNG) as this new file (never overwritten)")
    r.add_argument("--out-dir", default=".", help="folder for screenshots and recordings (default .)")
    r.add_argument("--offscreen", action="store_true",
                   help="no window: draw into offscreen images (automatic without a display; needs --frames)")
    r.add_argument("--record", action="store_true", help="record from the start (MP4; see --record-format)")
    r.add_argument("--video", default=None, metavar="PATH",
                   help="record an MP4 from the start into this new file (saved at the end)")
    r.add_argument("--record-format", default="mp4", choices=["mp4", "gif"],
                   help="mp4: the window, H.264 (default); gif: the sheet grid")
    r.add_argument("--record-every", type=int, default=None, metavar="N",
                   help="MP4: simulation steps per recorded frame (default: --steps-per-frame)")
    r.add_argument("--record-fps", type=float, default=None,
                   help="frame rate of recordings (default 30 for MP4, 15 for GIF)")
    r.add_argument("--load", default=None, help="start from a saved field (.npy, the rollout's state shape)")
    r.add_argument("--watch", default=None, help="re-read this .npy whenever it changes")
    p.set_defaults(func=cmd_view)


def cmd_view(args) -> int:
    """Run the viewer; the exit status: 0, 2 (bad input), 3 (the run failed), 130 (interrupted; the
    viewer saved what it had and said so). User errors are raised (ValueError, LimitError, OSError on a
    path) and the router (``vkbands.cli.main``) turns them into one ``vkbands view: error: ...`` line
    and the status, like every command's."""
    from vkbands.engine import NoDeviceError

    from .window import NoDisplayError, display_available

    setup = Setup.from_args(args)
    offscreen = args.offscreen
    if not offscreen and not display_available():
        offscreen = True
        print("vkbands view: no display (DISPLAY/WAYLAND_DISPLAY unset): drawing offscreen", file=sys.stderr)
    if args.screenshot and args.frames is None:
        raise ValueError("--screenshot needs --frames N")
    if offscreen and args.frames is None:
        raise ValueError("offscreen (--offscreen, or no display) needs --frames N: there is no window to close")
    from . import run
    try:
        return run(setup, member=args.member, cmap=args.cmap, range=args.range,
                   vmin=args.vmin, vmax=args.vmax, fade=args.fade, steps_per_frame=args.steps_per_frame,
                   paused=args.paused, vsync=args.vsync, width=args.width, height=args.height,
                   show_ui=args.show_ui, frames=args.frames, screenshot=args.screenshot, out_dir=args.out_dir,
                   record=args.record, record_fps=args.record_fps, load=args.load, watch=args.watch,
                   offscreen=offscreen, video=args.video, record_format=args.record_format,
                   record_every=args.record_every)
    except NoDisplayError as e:
        print(f"vkbands view: no usable display ({e}); use --offscreen (or `vkbands rollout`)", file=sys.stderr)
        return 2
    except NoDeviceError as e:    # e.g. no device can present to this display (a headless GPU node)
        print(f"vkbands view: {e}; use --offscreen (or `vkbands rollout`)", file=sys.stderr)
        return 2
