"""The `vkbands` router (issue 10): every user error is one line `vkbands <command>: error: ...` and
exit status 2; a failed run 3; a traceback only with --debug or VKBANDS_DEBUG=1; `vkbands --version`.
Driven through the real command line in subprocesses (started together: each pays Python + Vulkan
start-up once)."""
import os
import subprocess
import sys

import pytest

import vkbands
from vkbands.cli import main as vkbands_main


def _start(args, cwd, **env):
    full = dict(os.environ, **env)
    return subprocess.Popen([sys.executable, "-m", "vkbands.cli", *args], cwd=cwd, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p):
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err


def _one_error_line(err, command):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"vkbands {command}: error: "), err
    assert "Traceback" not in err and "vulkan:" not in err
    return lines[0]


def test_user_errors_are_one_line_and_status_2(tmp_path):
    (tmp_path / "a_file").write_text("x")
    cases = {
        # VKBANDS_DEVICE naming nothing: refused even by `devices` (which still lists the devices)
        "devices": (["devices"], dict(VKBANDS_DEVICE="nonexistent"), "devices", ["VKBANDS_DEVICE", "nonexistent"]),
        "device": (["rollout", "--steps", "2", "--out", "dev"], dict(VKBANDS_DEVICE="nonexistent"), "rollout",
                   ["VKBANDS_DEVICE", "nonexistent"]),
        "proc": (["rollout", "--steps", "2", "--out", "/proc/vkbands-x"], {}, "rollout", ["--out /proc/vkbands-x"]),
        "file": (["rollout", "--steps", "2", "--out", "a_file/sub"], {}, "rollout", ["--out a_file/sub"]),
        # memory needs estimated before anything is allocated, host and device: the estimate and the limit
        "batch": (["rollout", "--batch", "100000000", "--out", "big"], {}, "rollout", ["GiB", "batch"]),
        "depth": (["rollout", "--depth", "30", "--out", "deep"], {}, "rollout", ["TiB", "depth"]),
        "option": (["rollout", "--no-such-option"], {}, "rollout", ["--no-such-option"]),
        "missing": ([], {}, None, ["command"]),
    }
    procs = {name: _start(args, tmp_path, **env) for name, (args, env, _, _) in cases.items()}
    for name, (args, env, command, fragments) in cases.items():
        rc, out, err = _finish(procs[name])
        assert rc == 2, (name, rc, err)
        line = err.strip() if command is None else _one_error_line(err, command)
        if command is None:
            assert len(line.splitlines()) == 1 and line.startswith("vkbands: error: "), err
        for f in fragments:
            assert f in line, (name, f, line)
        if name == "devices":
            assert "[0]" in out         # the list is still shown, so the right name can be picked
    for created in ("dev", "big", "deep"):
        assert not (tmp_path / created).exists(), created
    assert (tmp_path / "a_file").read_text() == "x"


def test_version_and_debug(tmp_path):
    version = _start(["--version"], tmp_path)
    debug = _start(["--debug", "rollout", "--depth", "30", "--out", "d"], tmp_path)
    env_debug = _start(["rollout", "--depth", "30", "--out", "d"], tmp_path, VKBANDS_DEBUG="1")
    rc, out, err = _finish(version)
    assert rc == 0 and out.strip() == f"vkbands {vkbands.__version__}", (out, err)
    for p in (debug, env_debug):
        rc, out, err = _finish(p)
        assert rc == 2 and "Traceback" in err and "LimitError" in err
        assert err.strip().splitlines()[-1].startswith("vkbands rollout: error: "), err


def test_router_maps_exceptions_in_one_place(capsys, monkeypatch):
    """Any exception out of a subcommand becomes one line: bad input 2, a failed run 3."""
    from vkbands import cli
    from vkbands.engine import DeviceLostError

    def raising(exc):
        def func(args):
            raise exc
        return func

    cases = [(ValueError("--x 1: out of range; allowed: 2"), 2), (DeviceLostError("running it", "VK_ERROR_DEVICE_LOST"), 3),
             (RuntimeError("a bug\nsecond line"), 3), (FileNotFoundError(2, "No such file or directory", "p"), 2),
             (OSError(28, "No space left on device"), 3)]
    for exc, status in cases:
        monkeypatch.setattr(cli, "cmd_devices", raising(exc))
        assert vkbands_main(["devices"]) == status, exc
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("vkbands devices: error: "), err
    monkeypatch.setattr(cli, "cmd_devices", raising(KeyboardInterrupt()))
    assert vkbands_main(["devices"]) == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["rollout", "--help"]])
def test_help_still_exits_0(argv, capsys):
    assert vkbands_main(argv) == 0
    assert "usage" in capsys.readouterr().out
