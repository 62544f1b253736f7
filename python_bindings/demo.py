"""``vkbands demo`` (what ``make demo`` runs): two headless rollouts with all their files and pictures.

1. Gray-Scott reaction-diffusion on a 243 x 243 grid (p = 3, SPEC default parameters, 10,000 steps:
   the seeded patch grows into a field of spots), sheet grid of v;
2. tree (p-adic) diffusion of a batch of 256 random 1-D fields, p = 3, depth 6 (729 leaves).

Both write into a new ``out/demo-<timestamp>/`` (subfolders ``grayscott`` and ``tree``; see
``vkbands rollout --help`` for the files) and the paths are printed at the end.
"""
from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path

__all__ = ["add_parser", "run"]

GS_ARGS = ["--system", "grayscott", "--arity", "3", "--depth", "5", "--steps", "10000", "--every", "50",
           "--snapshot-every", "500", "--seed", "0"]
TREE_ARGS = ["--system", "tree", "--arity", "3", "--depth", "6", "--batch", "256", "--steps", "200",
             "--every", "1", "--snapshot-every", "10", "--init", "random", "--seed", "0"]


def add_parser(sub):
    p = sub.add_parser("demo", help="Gray-Scott 243x243 + tree diffusion 256 x 729 rollouts with pictures -> out/")
    p.add_argument("--out", type=Path, default=None, help="parent directory (default out/demo-<timestamp>)")
    p.add_argument("--quick", action="store_true", help="fewer steps (a smoke test)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from .rollout_cli import build_parser, run as run_rollout
    base = args.out or Path("out") / f"demo-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    n = 1
    root = base
    while root.exists():
        n += 1
        root = base.with_name(f"{base.name}-{n}")
    gs, tree = list(GS_ARGS), list(TREE_ARGS)
    if getattr(args, "quick", False):
        gs[gs.index("--steps") + 1] = "400"
        gs[gs.index("--snapshot-every") + 1] = "100"
        tree[tree.index("--batch") + 1] = "16"
    t0 = time.perf_counter()
    dirs = []
    for name, argv in (("grayscott", gs), ("tree", tree)):
        out = root / name
        print(f"\n== vkbands demo: {name}: vkbands rollout {' '.join(argv)} --out {out}")
        rc = run_rollout(build_parser().parse_args(argv + ["--out", str(out)]))
        if rc:
            return rc
        dirs.append(out)
    print(f"\nvkbands demo done in {time.perf_counter() - t0:.1f} s; files in:")
    for d in dirs:
        print(f"  {d}/  (open rollout.gif, energies.png, sheets_t*.png)")
    return 0
