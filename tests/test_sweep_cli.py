"""`vkbands sweep` (issue 12): --param / --seeds parsing (values exact), bad inputs (one line, exit 2,
nothing created), summary.csv and the pictures of a Dataset (synthetic, with the schema of
vkbands.sweep), and a real small Gray-Scott sweep end to end: store, summary equal to the dataset,
pictures not blank, resume computing nothing new, files never overwritten."""
import csv
import itertools
import json

import numpy as np
import pytest
from tests._deps import need
from tests._netns import ray_in_namespace

xr = need("xarray")
need("zarr")

from vkbands import systems
from vkbands import sweep_pictures as P
from vkbands.cli import main as vkbands_main
from vkbands.sweep_cli import parse_param, parse_seeds

GS = systems.get("grayscott")


# ----------------------------------------------------------------------------- a synthetic sweep Dataset
def synthetic(params=None, seeds=(0, 1), members=1, L=3, T=4, shape=(12, 16), final=True, grid=True,
              system="grayscott", steps=30, every=10, seed=0):
    """A Dataset with exactly the schema of vkbands.sweep (runs: product of the params, seeds innermost)."""
    params = params or {"F": [0.02, 0.04, 0.06], "k": [0.05, 0.06]}
    names = list(params)
    combos = list(itertools.product(*params.values())) if grid else list(zip(*params.values()))
    runs = [(c, s) for c in combos for s in seeds]
    R = len(runs)
    rng = np.random.default_rng(seed)
    coords = {"run": np.arange(R), "t": np.arange(T) * every, "band": np.arange(L + 1),
              "seed": ("run", np.array([s for _, s in runs], np.int64))}
    for j, n in enumerate(names):
        coords[n] = ("run", np.array([c[j] for c, _ in runs], np.float64))
    data = {"energies": (("run", "member", "t", "band"), rng.random((R, members, T, L + 1)) + 0.01),
            "mass": (("run", "member", "t"), rng.random((R, members, T))),
            "nonfinite": (("run", "member", "t"), np.zeros((R, members, T), bool)),
            "kill_step": (("run", "member", "band"), rng.integers(-1, steps, (R, members, L + 1))),
            "rate": (("run", "member", "band"), -rng.random((R, members, L + 1))),
            "rate_stderr": (("run", "member", "band"), rng.random((R, members, L + 1)) * 1e-3),
            "deepest_surviving_band": (("run", "member"), rng.integers(-1, L, (R, members)))}
    if final:
        data["final"] = (("run", "member", "y", "x"), rng.random((R, members) + shape).astype(np.float32))
    attrs = dict(system=system, steps=steps, every=every, vkbands_version="0.1.0", device="synthetic",
                 backend="local", arity=2, levels=L, dims=2, grid=grid, threshold=1e-3, swept=json.dumps(params),
                 fixed="{}", setup="{}", seeds=json.dumps(list(seeds)))
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _png(path):
    from PIL import Image
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    assert img.shape[0] >= 300 and img.shape[1] >= 300, img.shape
    assert img.var() > 0
    return img


# ----------------------------------------------------------------------------- parsing
def test_param_specs_give_exact_values():
    assert parse_param("F=0.01:0.07:16", GS) == ("F", list(np.linspace(0.01, 0.07, 16)))
    name, vals = parse_param("k=0.045:0.07:4", GS)
    assert name == "k" and vals == [0.045, float(np.linspace(0.045, 0.07, 4)[1]),
                                    float(np.linspace(0.045, 0.07, 4)[2]), 0.07]
    assert parse_param("dt=log:0.1:1:3", GS) == ("dt", list(np.geomspace(0.1, 1, 3)))
    assert parse_param("F=log:0.001:0.1:3", GS)[1] == pytest.approx([0.001, 0.01, 0.1], rel=1e-12)
    assert parse_param("F=0.03,0.01, 0.05", GS) == ("F", [0.03, 0.01, 0.05])      # order kept
    assert parse_param(" Du = 0.2 ", GS) == ("Du", [0.2])
    assert all(type(v) is float for v in parse_param("F=0:0.1:3", GS)[1])
    assert parse_seeds("0,1") == [0, 1] and parse_seeds("0:8") == list(range(8)) and parse_seeds("7") == [7]
    assert parse_seeds("5,2") == [5, 2]


BAD = {
    # name: (extra arguments, fragments of the one error line)
    "empty": (["--param", "F="], ["--param F=", "no values", "lo:hi:n"]),
    "zero": (["--param", "F=0.01:0.07:0"], ["--param F=0.01:0.07:0", "n=0", "allowed"]),
    "one": (["--param", "F=0.01:0.07:1"], ["n=1", "at least 2"]),
    "unknown": (["--param", "Q=1"], ["--param Q=1", "not a numeric parameter of grayscott", "F, k, Du, Dv, dt"]),
    "choice": (["--param", "preset=1"], ["--param preset=1", "allowed NAME"]),
    "no_eq": (["--param", "F0.1"], ["--param F0.1", "NAME=SPEC"]),
    "malformed": (["--param", "F=a:0.1:3"], ["'a' is not a number"]),
    "two_colons": (["--param", "F=0.1:0.2"], ["three numbers"]),
    "many_colons": (["--param", "F=0.1:0.2:3:4"], ["three numbers"]),
    "nan": (["--param", "F=nan"], ["not finite"]),
    "range": (["--param", "F=-0.1,0.2"], ["--param F=-0.1,0.2", "out of range", ">= 0"]),
    "dt_zero": (["--param", "dt=0:1:3"], ["dt=0.0", "out of range"]),
    "log_zero": (["--param", "F=log:0:0.1:3"], ["lo, hi > 0"]),
    "repeat": (["--param", "F=0.1,0.1"], ["a value repeats"]),
    "empty_item": (["--param", "F=0.1,,0.2"], ["empty value"]),
    "twice": (["--param", "F=0.1", "--param", "F=0.2"], ["F is swept twice"]),
    "fixed_too": (["--param", "F=0.1,0.2", "--F", "0.03"], ["also given as --F 0.03"]),
    "none": ([], ["--param: none given"]),
    "other_system": (["--system", "heat", "--param", "F=0.1"], ["not a numeric parameter of heat", "alpha"]),
    "zip": (["--param", "F=0.1,0.2", "--param", "k=0.05", "--zip"], ["--zip", "F: 2, k: 1"]),
    "seeds": (["--param", "F=0.1", "--seeds", "3:1"], ["--seeds 3:1", "empty"]),
    "seeds_neg": (["--param", "F=0.1", "--seeds=-1,2"], ["--seeds -1,2", "negative"]),
    "seeds_text": (["--param", "F=0.1", "--seeds", "a"], ["--seeds a", "not an integer"]),
    "seed": (["--param", "F=0.1", "--seed", "3"], ["--seed 3", "--seeds"]),
    "every": (["--param", "F=0.1", "--every", "0"], ["--every 0", "out of range"]),
    "every_big": (["--param", "F=0.1", "--steps", "10", "--every", "20"], ["--every 20", "[1, 10]"]),
    "steps": (["--param", "F=0.1", "--steps", "x"], ["--steps x", "not a number"]),
    "observable": (["--param", "F=0.1", "--observable", "E_9"], ["--observable E_9", "E_<l>"]),
    "num_gpus": (["--param", "F=0.1", "--num-gpus", "1"], ["--num-gpus 1", "--ray only"]),
    "setup": (["--param", "F=0.1", "--size", "2"], ["--size 2"]),
    "workers": (["--param", "F=0.1", "--num-workers", "2"], ["--num-workers 2", "--ray without ADDRESS"]),
    "tree_tau_twice": (["--system", "tree", "--param", "tau=1,2", "--tau", "0.5"], ["also given as --tau 0.5"]),
    "threshold_zero": (["--param", "F=0.1", "--threshold", "0"], ["--threshold 0", "(0, 1)"]),
    "threshold_one": (["--param", "F=0.1", "--threshold", "1"], ["--threshold 1", "(0, 1)"]),
    "threshold_text": (["--param", "F=0.1", "--threshold", "x"], ["--threshold x", "not a number"]),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_inputs_are_one_line_and_status_2(name, tmp_path, capsys):
    args, fragments = BAD[name]
    out = tmp_path / "out"
    rc = vkbands_main(["sweep", *args, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, (name, err)
    assert len(err) == 1 and err[0].startswith("vkbands sweep: error: "), err
    for f in fragments:
        assert f in err[0], (name, f, err[0])
    assert not out.exists()


def test_fixed_tau_reaches_the_tree_system(tmp_path, capsys):
    """`--tau 0.5` with a swept alpha is the tree's own time scale, fixed for every run (the kill threshold
    is --threshold): the energies follow E_l(0) lambda_l(tau=0.5, alpha)**(2t) exactly (SPEC 3.1)."""
    from vkbands import reference as R
    out = tmp_path / "tree"
    args = ["sweep", "--system", "tree", "--param", "alpha=1,2", "--tau", "0.5", "--depth", "3", "--arity", "3",
            "--dims", "1", "--steps", "6", "--every", "2", "--threshold", "0.01", "--no-pictures", "--quiet",
            "--out", str(out)]
    assert vkbands_main(args) == 0, capsys.readouterr().err
    ds = _open(out)
    assert json.loads(ds.attrs["fixed"])["tau"] == 0.5 and ds.attrs["threshold"] == 0.01
    assert "tau" not in ds.coords and list(ds["alpha"].values) == [1.0, 2.0]
    t = ds["t"].values
    for run, alpha in enumerate([1.0, 2.0]):
        E = ds["energies"].values[run, 0]                                      # (t, band)
        lam = R.tree_rates(3, 3, tau=0.5, alpha=alpha)
        np.testing.assert_allclose(E[:, :3], E[0, :3] * lam[None, :] ** (2 * t[:, None]), rtol=1e-4)
        np.testing.assert_allclose(E[:, 3], E[0, 3], rtol=1e-5)                # the coarse energy is kept
        kill = [next((int(s) for s in t if lam[l] ** (2 * s) < 0.01), -1) for l in range(3)]
        assert list(ds["kill_step"].values[run, 0, :3]) == kill
    _check_summary(ds, out / "summary.csv")
    # the resume command keeps the system's tau and the threshold
    from vkbands.sweep_cli import build_parser, resume_command
    cmd = resume_command(build_parser().parse_args(args[1:]), out)
    assert "--tau 0.5" in cmd and "--threshold 0.01" in cmd


def test_existing_folder_without_a_store_is_refused(tmp_path, capsys):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("x")
    rc = vkbands_main(["sweep", "--param", "F=0.02,0.03", "--out", str(tmp_path / "old")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "already exists and holds no sweep.zarr" in err[0], err
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["keep.txt"]


# ----------------------------------------------------------------------------- summary and pictures (synthetic)
def _read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _check_summary(ds, path):
    """summary.csv equals the Dataset: one row per run x member, every value exact."""
    header, rows = _read_csv(path)
    names = list(json.loads(ds.attrs["swept"]))
    L = ds.sizes["band"] - 1
    bands = [str(l) for l in range(L)] + ["c"]
    assert header == (["run", "member", *names, "seed"] + [f"E_{b}" for b in bands] + [f"kill_{b}" for b in bands]
                      + [f"rate_{b}" for b in bands] + [f"rate_stderr_{b}" for b in bands]
                      + ["deepest_surviving_band"])
    M = ds.sizes["member"]
    assert len(rows) == ds.sizes["run"] * M
    col = {h: i for i, h in enumerate(header)}
    for row in rows:
        r, m = int(row[0]), int(row[1])
        for n in names:
            assert float(row[col[n]]) == float(ds[n].values[r])
        assert int(row[col["seed"]]) == int(ds["seed"].values[r])
        for l, b in enumerate(bands):
            np.testing.assert_equal(float(row[col[f"E_{b}"]]), ds["energies"].values[r, m, -1, l])
            assert int(row[col[f"kill_{b}"]]) == ds["kill_step"].values[r, m, l]
            np.testing.assert_equal(float(row[col[f"rate_{b}"]]), ds["rate"].values[r, m, l])
            np.testing.assert_equal(float(row[col[f"rate_stderr_{b}"]]), ds["rate_stderr"].values[r, m, l])
        assert int(row[col["deepest_surviving_band"]]) == ds["deepest_surviving_band"].values[r, m]
    return header, rows


def test_summary_csv_of_a_synthetic_sweep(tmp_path):
    ds = synthetic(members=2)
    ds["rate"].values[3, 1, 0] = np.nan                    # a rate that could not be fitted
    assert P.write_summary_csv(ds, tmp_path / "s.csv") == tmp_path / "s.csv"
    header, rows = _check_summary(ds, tmp_path / "s.csv")
    assert [(int(r[0]), int(r[1])) for r in rows] == [(r, m) for r in range(12) for m in range(2)]
    assert rows[7][header.index("rate_0")] == "nan"


def test_observable_grid_follows_the_coordinates():
    ds = synthetic(params={"F": [0.02, 0.04, 0.06], "k": [0.05, 0.06]}, seeds=(0, 1), members=2)
    grid, count, fixed = P.observable_grid(ds, "E_1")
    assert grid.shape == (2, 3) and (count == 2).all() and fixed == []
    E = ds["energies"].values[:, :, -1, 1]
    for i, F in enumerate([0.02, 0.04, 0.06]):
        for j, k in enumerate([0.05, 0.06]):
            sel = (ds["F"].values == F) & (ds["k"].values == k)
            assert grid[j, i] == pytest.approx(E[sel].mean(), rel=1e-14)
    # the same runs in another order (zarr stores, resumed chunks...) give the same grid
    shuffled = ds.isel(run=np.random.default_rng(1).permutation(ds.sizes["run"]))
    np.testing.assert_allclose(P.observable_grid(shuffled, "E_1")[0], grid, rtol=1e-14)
    dsb, _, _ = P.observable_grid(ds, "deepest_surviving_band")
    sel = (ds["F"].values == 0.04) & (ds["k"].values == 0.06)
    assert dsb[1, 1] == ds["deepest_surviving_band"].values[sel].mean()
    kill, _, _ = P.observable_grid(ds, "kill_c")
    assert kill[0, 2] == ds["kill_step"].values[(ds["F"].values == 0.06) & (ds["k"].values == 0.05), :, 3].mean()
    # three parameters: the third at its first value
    ds3 = synthetic(params={"F": [0.02, 0.04], "k": [0.05, 0.06], "Du": [0.1, 0.2]}, seeds=(0,))
    g3, c3, fixed3 = P.observable_grid(ds3, "mass")
    assert fixed3 == ["Du=0.1"] and (c3 == 1).all()
    sel = (ds3["F"].values == 0.04) & (ds3["k"].values == 0.05) & (ds3["Du"].values == 0.1)
    assert g3[0, 1] == ds3["mass"].values[sel, 0, -1][0]


def test_observable_names_are_checked():
    assert P.check_observable("E_c", 3) == "E_c" and P.check_observable("rate_2", 3) == "rate_2"
    for bad in ("E_3", "rate", "kill_x", "energy", "E_-1"):
        with pytest.raises(ValueError, match="--observable"):
            P.check_observable(bad, 3)


def test_pictures_of_a_synthetic_sweep(tmp_path):
    ds = synthetic()
    paths = P.write_pictures(ds, tmp_path / "two", "E_0")
    assert [p.name for p in paths] == ["final_states.png", "heatmap_E_0.png"]
    for p in paths:
        _png(p)
    assert P.final_state_map(ds, tmp_path / "m1.png", seed=1) == tmp_path / "m1.png"
    a, b = _png(tmp_path / "two" / "final_states.png"), _png(tmp_path / "m1.png")
    assert a.shape == b.shape and not np.array_equal(a, b)            # another seed, other cells
    assert P.observable_heatmap(ds, tmp_path / "dsb.png") == tmp_path / "dsb.png"
    _png(tmp_path / "dsb.png")
    one = synthetic(params={"F": [0.01, 0.02, 0.05]}, members=2)
    assert [p.name for p in P.write_pictures(one, tmp_path / "one")] == ["energies_vs_F.png"]
    _png(tmp_path / "one" / "energies_vs_F.png")
    zipped = synthetic(params={"F": [0.01, 0.02], "k": [0.05, 0.06]}, grid=False)
    assert [p.name for p in P.write_pictures(zipped, tmp_path / "zip")] == ["energies_vs_F.png"]
    three = synthetic(params={"F": [0.02, 0.04], "k": [0.05, 0.06], "Du": [0.1, 0.2]})
    assert len(P.write_pictures(three, tmp_path / "three")) == 2
    nofinal = synthetic(final=False)
    assert [p.name for p in P.write_pictures(nofinal, tmp_path / "nf")] == ["heatmap_deepest_surviving_band.png"]
    with pytest.raises(ValueError, match="final=True"):
        P.final_state_map(nofinal, tmp_path / "x.png")
    with pytest.raises(ValueError, match="two or more parameters"):
        P.observable_heatmap(one, tmp_path / "x.png")
    with pytest.raises(ValueError, match="seed=5"):
        P.final_state_map(ds, tmp_path / "x.png", seed=5)
    assert not (tmp_path / "x.png").exists()


# ----------------------------------------------------------------------------- a real sweep, end to end
ARGS = ["--system", "grayscott", "--size", "27", "--param", "F=0.03,0.05", "--param", "k=0.055:0.065:2",
        "--steps", "20", "--every", "10", "--seeds", "0,1"]


def _open(folder):
    from vkbands._sweep_store import open_dataset
    return open_dataset(folder / "sweep.zarr").load()


def test_end_to_end_grayscott_sweep_then_resume(tmp_path, capsys):
    import vkbands
    out = tmp_path / "gs"
    assert vkbands_main(["sweep", *ARGS, "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    names = ["final_states.png", "heatmap_deepest_surviving_band.png", "summary.csv", "sweep.zarr"]
    assert sorted(p.name for p in out.iterdir()) == names            # no temporary left
    ds = _open(out)
    assert ds.sizes["run"] == 8 and ds.sizes["member"] == 1 and ds.sizes["band"] == 4     # 27 = 3**3: L = 3
    assert list(ds["F"].values) == [0.03] * 4 + [0.05] * 4 and list(ds["k"].values) == [0.055, 0.055, 0.065, 0.065] * 2
    assert list(ds["seed"].values) == [0, 1] * 4 and list(ds["t"].values) == [0, 10, 20]
    assert ds["final"].shape == (8, 1, 27, 27)
    _check_summary(ds, out / "summary.csv")
    # the set-up options reached the runs: run 7 is a rollout with F = 0.05, k = 0.065, seed 1
    r = vkbands.rollout(vkbands.Setup("grayscott", size=27, F=0.05, k=0.065, seed=1), steps=20, every=10)
    np.testing.assert_allclose(ds["energies"].values[7, 0], r.energies[:, 0], rtol=1e-5)
    maps = {n: _png(out / n) for n in names[:2]}
    assert maps["final_states.png"].std() > 10
    stamps = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if p.is_file()}
    chunk_files = sorted((p, p.stat().st_mtime_ns) for p in (out / "sweep.zarr").rglob("*") if p.is_file())

    # the same command again: nothing computed, nothing overwritten; another observable adds its heat map
    assert vkbands_main(["sweep", *ARGS, "--out", str(out), "--observable", "E_c"]) == 0
    cap = capsys.readouterr()
    assert "resuming: 1 of 1 chunks" in cap.err and "nothing to run" in cap.err, cap.err
    assert "summary.csv  (kept: it exists already)" in cap.out and "final_states.png  (kept" in cap.out, cap.out
    assert str(out / "heatmap_E_c.png") in cap.out
    _png(out / "heatmap_E_c.png")
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()
            if p.is_file() and p.name != "heatmap_E_c.png"} == stamps
    assert sorted((p, p.stat().st_mtime_ns) for p in (out / "sweep.zarr").rglob("*") if p.is_file()) == chunk_files

    # another sweep on that folder: refused, one line, naming the difference
    other = [a if a != "F=0.03,0.05" else "F=0.03,0.06" for a in ARGS]
    assert vkbands_main(["sweep", *other, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different sweep" in err[0] and "0.06" in err[0], err


def test_interrupted_sweep_keeps_its_chunks_and_resumes(tmp_path, capsys, monkeypatch):
    """Ctrl-C after the first of four chunks: exit 130, that chunk kept, the printed command resumes it."""
    import shlex
    import sys

    from vkbands import _interrupt
    module = sys.modules["vkbands.sweep"]
    real = module._run_chunk
    calls = []

    def chunk_then_ctrl_c(payload, ctx=None):
        calls.append(1)
        result = real(payload, ctx)
        if len(calls) == 1:
            _interrupt._state["requested"] = "SIGINT"          # as the deferred SIGINT handler does
        return result

    monkeypatch.setattr(module, "_run_chunk", chunk_then_ctrl_c)
    out = tmp_path / "gs"
    args = ["sweep", *ARGS, "--seeds", "0", "--chunk-runs", "1", "--out", str(out)]
    assert vkbands_main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted by SIGINT" in err and "Resume with:" in err, err
    assert not (out / "summary.csv").exists() and not list(out.glob("*.png"))
    command = shlex.split(err.split("Resume with:")[1].strip().splitlines()[0])
    assert command[:2] == ["vkbands", "sweep"] and "--chunk-runs" in command and str(out) in command
    assert vkbands_main(command[1:]) == 0
    cap = capsys.readouterr()
    assert "resuming: 1 of 4 chunks" in cap.err, cap.err
    assert len(calls) == 4                                      # the kept chunk was not run again
    ds = _open(out)
    assert list(ds["seed"].values) == [0] * 4 and np.isfinite(ds["energies"].values).all()
    _check_summary(ds, out / "summary.csv")



def test_ray_sweep_in_a_private_namespace_equals_the_local_one(tmp_path, capsys):
    """`--ray` (a local Ray of 2 workers, started inside `unshare -n`: loopback only, SECURITY.md) writes the
    same summary.csv as the local backend; one parameter: energies_vs_<param>.png."""
    import subprocess
    import sys
    ray_in_namespace()
    args = ["--system", "heat", "--size", "27", "--param", "alpha=0.1,0.2", "--steps", "20", "--every", "10",
            "--seeds", "0,1", "--chunk-runs", "1", "--quiet"]
    local = tmp_path / "local"
    assert vkbands_main(["sweep", *args, "--out", str(local)]) == 0
    capsys.readouterr()
    out = tmp_path / "ray"
    proc = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" -m vkbands.cli sweep "$@"',
                           sys.executable, *args, "--out", str(out), "--ray", "--num-workers", "2"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip() == str(out)
    assert "starting a local Ray" in proc.stderr and "private network" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["energies_vs_alpha.png", "summary.csv", "sweep.zarr"]
    ds = _open(out)
    assert ds.attrs["backend"] == "ray"
    _check_summary(ds, out / "summary.csv")
    assert (out / "summary.csv").read_text() == (local / "summary.csv").read_text()
    _png(out / "energies_vs_alpha.png")
