"""Command line: ``vkbands devices | demo | rollout | view``.

Each subcommand lives with the code it drives; this module only routes. A subcommand module exposes
``add_parser(subparsers)`` which registers its parser with ``set_defaults(func=...)``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module providing add_parser(subparsers)
SUBCOMMANDS = {
    "devices": "vkbands.cli",
    "demo": "vkbands.demo",
    "rollout": "vkbands.rollout_cli",
    "view": "vkbands.viewer.cli",
}


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def cmd_devices(args) -> int:
    from vkbands.engine import choose_device, describe_devices
    import os
    devices = describe_devices()
    chosen = choose_device(devices, os.environ.get("VKBANDS_DEVICE"))
    for d in devices:
        mark = "*" if d["index"] == chosen else " "
        heaps = ", ".join(f"{_fmt_bytes(size)}{' device-local' if local else ''}" for size, local in d["heaps"])
        print(f"{mark} [{d['index']}] {d['name']}\n"
              f"      type: {d['type']}   driver: {d['driver_name']} {d['driver']}   Vulkan: {d['api']}   "
              f"unified memory: {'yes' if d['unified'] else 'no'}\n      heaps: {heaps}\n"
              f"      subgroup size: {d['subgroup_size']}   maxStorageBufferRange: "
              f"{_fmt_bytes(d['max_storage_buffer_range'])}   UUID: {d['uuid']}")
    print(f"\n* = the device vkbands uses (override with VKBANDS_DEVICE=<index or name substring>)")
    return 0


def add_parser(sub):
    p = sub.add_parser("devices", help="list Vulkan devices and the one vkbands would use")
    p.set_defaults(func=cmd_devices)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vkbands", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in SUBCOMMANDS.items():
        try:
            mod = sys.modules[__name__] if module == __name__ else importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue  # subcommand not installed in this build
        mod.add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
