"""``vkbands demo`` (what ``make demo`` runs): two headless rollouts with all their files and pictures.

1. Gray-Scott reaction-diffusion on a 243 x 243 grid (p = 3, SPEC default parameters, 10,000 steps:
   the seeded patch grows into a field of spots), sheet grid of v;
2. tree (p-adic) diffusion of a batch of 256 random 1-D fields, p = 3, depth 6 (729 leaves).

Both write into a new folder (``--out``, which must not exist yet, like ``vkbands rollout --out``;
default ``out/demo-<timestamp>/``), subfolders ``grayscott`` and ``tree`` (see ``vkbands rollout
--help`` for the files); the paths are printed at the end. Interrupted (Ctrl-C, SIGTERM), a rollout
keeps what it computed and the demo stops with status 130.
"""
from __future__ import annotations

import time
from pathlib import Path

__all__ = ["add_parser", "run"]

GS_ARGS = ["--system", "grayscott", "--arity", "3", "--depth", "5", "--steps", "10000", "--every", "50",
           "--snapshot-every", "500", "--seed", "0"]
TREE_ARGS = ["--system", "tree", "--arity", "3", "--depth", "6", "--batch", "256", "--steps", "200",
             "--every", "1", "--snapshot-every", "10", "--init", "random", "--seed", "0"]


def add_parser(sub):
    p = sub.add_parser("demo", help="Gray-Scott 243x243 + tree diffusion 256 x 729 rollouts with pictures -> out/")
    p.add_argument("--out", type=Path, default=None,
                   help="new parent folder (must not exist; default out/demo-<timestamp>)")
    p.add_argument("--quick", action="store_true", help="fewer steps (a smoke test)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from ._outputs import OutputError, claim, timestamp
    from .cli import CommandError
    from .rollout_cli import build_parser, run as run_rollout
    try:
        root = claim(args.out, default=Path("out") / f"demo-{timestamp()}")
    except OutputError as e:
        raise CommandError(e) from None
    gs, tree = list(GS_ARGS), list(TREE_ARGS)
    if getattr(args, "quick", False):
        gs[gs.index("--steps") + 1] = "400"
        gs[gs.index("--snapshot-every") + 1] = "100"
        tree[tree.index("--batch") + 1] = "16"
    t0 = time.perf_counter()
    dirs = []
    try:
        for name, argv in (("grayscott", gs), ("tree", tree)):
            out = root.path / name
            print(f"\n== vkbands demo: {name}: vkbands rollout {' '.join(argv)} --out {out}")
            rc = run_rollout(build_parser().parse_args(argv + ["--out", str(out)]))
            if rc:
                return rc
            dirs.append(out)
    finally:
        root.discard()                     # only when nothing was written into it
    print(f"\nvkbands demo done in {time.perf_counter() - t0:.1f} s; files in:")
    for d in dirs:
        print(f"  {d}/  (open rollout.gif, energies.png, sheets_t*.png: labelled, each band in its own range)")
    return 0
