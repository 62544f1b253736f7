"""Command line: ``vkbands devices | demo | rollout | view | sweep | experiment``.

Each subcommand lives with the code it drives; this module routes, and is the one place where an
exception becomes a message and an exit status (:func:`main`):

- 0: done; 2: bad input (an option or value that is not allowed, an output folder that exists or
  cannot be made, ``VKBANDS_DEVICE`` naming no device, a run over a memory or device limit);
- 3: a run that failed (NaN/Inf, a lost device, a full disk...; what it computed is on disk);
- 130: interrupted (SIGINT or SIGTERM; a rollout keeps what it computed).

Every error is one line on stderr, ``vkbands <command>: error: ...``; the traceback is printed only
with ``--debug`` (before or after the subcommand) or ``VKBANDS_DEBUG=1``. A subcommand module exposes
``add_parser(subparsers)`` which registers its parser with ``set_defaults(func=...)``; it returns an
exit status or raises (:class:`CommandError` for a message of its own with a chosen status).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from vkbands import __version__

__all__ = ["main", "build_parser", "CommandError", "OneLineParser", "exit_status"]

# subcommand -> module providing add_parser(subparsers)
SUBCOMMANDS = {
    "devices": "vkbands.cli",
    "demo": "vkbands.demo",
    "rollout": "vkbands.rollout_cli",
    "view": "vkbands.viewer.cli",
    "experiment": "vkbands.experiments_cli",
    "sweep": "vkbands.sweep_cli",
}

BAD_INPUT, FAILED, INTERRUPTED = 2, 3, 130


class CommandError(Exception):
    """Ends a command with ``message`` (one line, printed as ``vkbands <command>: error: message``)
    and exit ``status`` (2: bad input, 3: the run failed)."""

    def __init__(self, message, status=BAD_INPUT):
        super().__init__(str(message))
        self.status = int(status)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``prog: error: ... (see prog --help)``) and status 2."""

    def error(self, message):
        self.exit(BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def cmd_devices(args) -> int:
    """List the devices; the one vkbands would use is marked. ``VKBANDS_DEVICE`` naming none: the list
    without a mark, then status 2 with the reason."""
    from vkbands.engine import NoDeviceError, choose_device, describe_devices
    devices = describe_devices()
    try:
        chosen, problem = choose_device(devices, os.environ.get("VKBANDS_DEVICE")), None
    except NoDeviceError as e:
        chosen, problem = None, e
    for d in devices:
        mark = "*" if d["index"] == chosen else " "
        heaps = ", ".join(f"{_fmt_bytes(size)}{' device-local' if local else ''}" for size, local in d["heaps"])
        print(f"{mark} [{d['index']}] {d['name']}\n"
              f"      type: {d['type']}   driver: {d['driver_name']} {d['driver']}   Vulkan: {d['api']}   "
              f"unified memory: {'yes' if d['unified'] else 'no'}\n      heaps: {heaps}\n"
              f"      subgroup size: {d['subgroup_size']}   maxStorageBufferRange: "
              f"{_fmt_bytes(d['max_storage_buffer_range'])}   UUID: {d['uuid']}")
    if problem is not None:
        sys.stdout.flush()
        raise problem
    print("\n* = the device vkbands uses (override with VKBANDS_DEVICE=<index or name substring>)")
    return 0


def add_parser(sub):
    p = sub.add_parser("devices", help="list Vulkan devices and the one vkbands would use")
    p.set_defaults(func=cmd_devices)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vkbands", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vkbands {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error (or VKBANDS_DEBUG=1)")
    sub = parser.subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module in SUBCOMMANDS.items():
        try:
            mod = sys.modules[__name__] if module == __name__ else importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue  # subcommand not installed in this build
        mod.add_parser(sub)
        sub.choices[name].add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                       help="print the traceback of an error (or VKBANDS_DEBUG=1)")
    return parser


def exit_status(error: BaseException) -> int:
    """The exit status of a command that ended with ``error`` (see the module docstring)."""
    from vkbands.engine import NoDeviceError, VkbandsError
    from vkbands.engine.errors import LimitError
    if isinstance(error, CommandError):
        return error.status
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(error, (ValueError, TypeError, LimitError, NoDeviceError, MemoryError)):
        return BAD_INPUT         # an argument, a value, a limit (memory estimates, device limits)
    if isinstance(error, (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                          PermissionError)):
        return BAD_INPUT         # a path given
    if isinstance(error, (VkbandsError, OSError, FloatingPointError)):
        return FAILED
    return FAILED


def _message(error: BaseException) -> str:
    """One line: the error's own words (an unexpected one also names its type)."""
    from vkbands.engine import VkbandsError
    text = " ".join(str(error).split()) if str(error).strip() else ""
    known = (CommandError, ValueError, TypeError, MemoryError, OSError, VkbandsError, FloatingPointError)
    if isinstance(error, OSError) and not isinstance(error, VkbandsError) and error.filename and \
            str(error.filename) not in text:
        text = f"{error.filename}: {error.strerror or text}"
    if not isinstance(error, known) or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
        if not isinstance(error, known):
            text += " (an unexpected error; run with --debug for the traceback)"
    return text


def _debugging(argv) -> bool:
    flag = os.environ.get("VKBANDS_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    return flag or "--debug" in argv


def main(argv=None) -> int:
    """Run ``vkbands ARGV``; returns the exit status (see the module docstring)."""
    from . import _interrupt
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debugging(argv)
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:                                 # named by the subcommand's parser, as its own errors
            parser.subparsers.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:                       # --help, --version, a usage error (one line)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else BAD_INPUT)
    prog = f"vkbands {args.command}"
    try:
        with _interrupt.terminate_raises():
            return int(args.func(args) or 0)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else BAD_INPUT)
    except BaseException as e:                    # noqa: the one place errors become a line and a status
        status = exit_status(e)
        if debug:
            traceback.print_exc()
        if status == INTERRUPTED:
            how = getattr(e, "signal", None) or (str(e.args[0]) if e.args else "")
            print(f"{prog}: interrupted{' by ' + how if how.startswith('SIG') else ''}", file=sys.stderr)
        else:
            print(f"{prog}: error: {_message(e)}", file=sys.stderr)
        return status


if __name__ == "__main__":          # `python -m vkbands.cli`: run the imported module (one CommandError class)
    from vkbands.cli import main as _main
    sys.exit(_main())
