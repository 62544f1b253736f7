"""``vkbands view``: the live viewer from the command line.

    vkbands view                                   # Gray-Scott 243 x 243, p = 3
    vkbands view --system tree --size 729 --tau 2  # tree diffusion of a 1-D field, strips
    vkbands view --frames 60 --screenshot out.png  # render 60 frames, save the last one, exit

Without a display it prints one line saying so (and suggests ``vkbands rollout``) and exits with 2.
"""
from __future__ import annotations

import sys

SYSTEM_PARAMS = [  # (flag, dest, type, help)
    ("--preset", "preset", str, "Gray-Scott preset (spots, stripes, coral, mitosis, waves, ...)"),
    ("--F", "F", float, "Gray-Scott feed rate"),
    ("--k", "k", float, "Gray-Scott kill rate"),
    ("--Du", "Du", float, "Gray-Scott diffusion of u"),
    ("--Dv", "Dv", float, "Gray-Scott diffusion of v"),
    ("--dt", "dt", float, "Gray-Scott time step"),
    ("--alpha", "alpha", float, "heat: diffusion number (<= 0.25); tree: profile exponent"),
    ("--tau", "tau", float, "tree/coupled: heat-semigroup time per step"),
    ("--rates", "rates", str, "tree/coupled: explicit per-level factors, comma separated"),
    ("--eps", "eps", float, "coupled: coupling strength"),
    ("--phi", "phi", str, "coupled: tanh | sign | square"),
    ("--coupling-seed", "coupling_seed", int, "coupled: seed of the +-1 coupling matrix"),
]


def add_parser(sub):
    p = sub.add_parser("view", help="live viewer: a rollout's band sheets in a window (GLFW + Vulkan + ImGui)",
                       description=__doc__.splitlines()[0])
    g = p.add_argument_group("system")
    g.add_argument("--system", default="grayscott", choices=["tree", "coupled", "heat", "grayscott"])
    g.add_argument("--size", type=int, default=None, help="leaves per axis (default 243; 729 for tree/coupled)")
    g.add_argument("--arity", "-p", type=int, default=None, help="tree arity p (default 3 for powers of 3)")
    g.add_argument("--batch", type=int, default=1, help="independent fields evolved together")
    g.add_argument("--member", type=int, default=0, help="batch member drawn")
    g.add_argument("--dims", type=int, choices=[1, 2], default=None, help="tree/coupled: 1-D (default) or 2-D")
    g.add_argument("--init", default="default", choices=["default", "random", "smooth", "impulse", "band_pure"])
    g.add_argument("--seed", type=int, default=0)
    for flag, dest, typ, hlp in SYSTEM_PARAMS:
        g.add_argument(flag, dest=dest, type=typ, default=None, help=hlp)
    d = p.add_argument_group("picture")
    d.add_argument("--cmap", default="diverging", choices=["grey", "diverging", "ternary", "log"])
    d.add_argument("--range", default="fixed", choices=["fixed", "symmetric", "per_band"])
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
    r.add_argument("--frames", type=int, default=None, help="render N frames, then exit")
    r.add_argument("--screenshot", default=None, help="with --frames: save the last frame (PNG) here")
    r.add_argument("--out-dir", default=".", help="folder for screenshots and recordings (default .)")
    r.add_argument("--record", action="store_true", help="record a GIF from the start")
    r.add_argument("--record-fps", type=float, default=15.0, help="frame rate of recordings (default 15)")
    r.add_argument("--load", default=None, help="start from a saved field (.npy)")
    r.add_argument("--watch", default=None, help="re-read this .npy whenever it changes")
    p.set_defaults(func=cmd_view)


def system_params(args) -> dict:
    params = {}
    for _flag, dest, _typ, _hlp in SYSTEM_PARAMS:
        v = getattr(args, dest, None)
        if v is not None:
            params[dest] = [float(x) for x in v.split(",")] if dest == "rates" else v
    return params


def cmd_view(args) -> int:
    from .window import NoDisplayError, display_available

    if not display_available():
        print("vkbands view: no display (DISPLAY/WAYLAND_DISPLAY unset); for headless runs use "
              "`vkbands rollout`", file=sys.stderr)
        return 2
    if args.screenshot and args.frames is None:
        print("vkbands view: --screenshot needs --frames N", file=sys.stderr)
        return 2
    from . import run
    try:
        return run(system=args.system, size=args.size, arity=args.arity, batch=args.batch, member=args.member,
                   dims=args.dims, init=args.init, seed=args.seed, cmap=args.cmap, range=args.range,
                   vmin=args.vmin, vmax=args.vmax, fade=args.fade, steps_per_frame=args.steps_per_frame,
                   paused=args.paused, vsync=args.vsync, width=args.width, height=args.height,
                   show_ui=args.show_ui, frames=args.frames, screenshot=args.screenshot, out_dir=args.out_dir,
                   record=args.record, record_fps=args.record_fps, load=args.load, watch=args.watch,
                   **system_params(args))
    except NoDisplayError as e:
        print(f"vkbands view: no usable display ({e}); for headless runs use `vkbands rollout`", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as e:
        print(f"vkbands view: {e}", file=sys.stderr)
        return 2
