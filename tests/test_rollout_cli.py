"""`vkbands rollout` and `vkbands demo`: every listed file is written and parses."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from vkbands.cli import main as vkbands_main
from vkbands.rollout_cli import main as rollout_main


def _check_common(out, L, T, B, S):
    with open(out / "energies.csv") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    assert header == ["step", "batch"] + [f"E_{l}" for l in range(L)] + ["E_c", "mass", "min", "max"]
    assert len(rows) == 1 + T * B
    data = np.array(rows[1:], dtype=np.float64)
    assert np.all(np.isfinite(data))
    npz = np.load(out / "snapshots.npz")
    assert {"steps", "snapshots", "final", "x0", "observed_steps", "energies"} <= set(npz.files)
    assert npz["snapshots"].shape[0] == S and len(npz["steps"]) == S
    summary = json.loads((out / "summary.json").read_text())
    for key in ("config", "seed", "device", "timings", "kill_steps", "contraction_rates",
                "deepest_surviving_band_final", "params", "files"):
        assert key in summary, key
    for name in summary["files"]:
        assert (out / name).is_file(), name
    sheets = sorted(out.glob("sheets_t*.png"))
    assert len(sheets) == S
    for p in sheets + [out / "energies.png"]:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 10 and im.size[1] > 10
    with Image.open(out / "rollout.gif") as im:
        assert im.format == "GIF" and im.n_frames == S
    return data, npz, summary


def test_cli_tree_1d_writes_every_file(tmp_path, capsys, ctx):
    out = tmp_path / "tree"
    rc = vkbands_main(["rollout", "--system", "tree", "--depth", "4", "--batch", "3", "--steps", "20",
                       "--every", "2", "--snapshot-every", "10", "--init", "band-pure", "--band", "1",
                       "--style", "randphase", "--seed", "5", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "E_c" in printed and "deepest surviving band" in printed
    data, npz, summary = _check_common(out, L=4, T=11, B=3, S=3)
    assert npz["snapshots"].shape == (3, 3, 81) and npz["final"].shape == (3, 81)
    assert list(data[:3, 0]) == [0, 0, 0] and list(data[:3, 1]) == [0, 1, 2]
    assert (out / "band_time.png").is_file()
    assert summary["system"] == "tree" and summary["seed"] == 5 and summary["config"]["band"] == 1
    # band-pure in band 1: E_1 carries the energy
    E = npz["energies"][0, 0]
    assert E[1] > 1e6 * max(E[0], E[2], E[3])


@pytest.mark.parametrize("argv,L,S", [
    (["--system", "grayscott", "--depth", "3", "--steps", "40", "--every", "10", "--snapshot-every", "20",
      "--preset", "coral"], 3, 3),
    (["--system", "heat", "--size", "27", "--batch", "2", "--steps", "30", "--every", "5", "--alpha", "0.1",
      "--init", "smooth"], 3, 11),
    (["--system", "coupled", "--depth", "3", "--dims", "2", "--steps", "12", "--eps", "0.1", "--phi", "sign"], 3, 13),
])
def test_cli_2d_systems(tmp_path, capsys, ctx, argv, L, S):
    out = tmp_path / "o"
    assert rollout_main(argv + ["--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    steps = int(argv[argv.index("--steps") + 1])
    every = int(argv[argv.index("--every") + 1]) if "--every" in argv else 1
    B = int(argv[argv.index("--batch") + 1]) if "--batch" in argv else 1
    _check_common(out, L=L, T=steps // every + 1, B=B, S=S)


def test_cli_never_overwrites_and_validates(tmp_path, capsys, ctx):
    # errors: status 2 and one line "vkbands rollout: error: ..." (issue 9; was a SystemExit message)
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert rollout_main(["--steps", "2", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert rollout_main(["--size", "100", "--out", str(tmp_path / "x")]) == 2
    assert "power" in capsys.readouterr().err
    assert rollout_main(["--system", "heat", "--preset", "spots", "--out", str(tmp_path / "y")]) == 2
    assert "does not apply" in capsys.readouterr().err


def test_cli_nonfinite_reports_and_exits_3(tmp_path, capsys, ctx):
    out = tmp_path / "nan"
    rc = rollout_main(["--system", "grayscott", "--depth", "3", "--steps", "50", "--dt", "50",
                       "--out", str(out)])
    assert rc == 3
    err = capsys.readouterr().err
    assert "NaN/Inf" in err and "batch member 0" in err
    assert "step" in (out / "error.txt").read_text()


def test_default_output_dir_is_new_and_timestamped(tmp_path, monkeypatch, ctx):
    monkeypatch.chdir(tmp_path)
    assert rollout_main(["--depth", "2", "--steps", "3", "--quiet", "--no-pictures"]) == 0
    assert rollout_main(["--depth", "2", "--steps", "3", "--quiet", "--no-pictures"]) == 0
    dirs = sorted((tmp_path / "out").iterdir())
    assert len(dirs) == 2 and all(d.name.startswith("rollout-tree-") for d in dirs)


def test_demo_quick(tmp_path, capsys, ctx):
    assert vkbands_main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    for sub in ("grayscott", "tree"):
        d = tmp_path / "demo" / sub
        assert str(d) in printed
        assert (d / "rollout.gif").is_file() and (d / "energies.csv").is_file()
