"""vkbands.sweep (issue 12): schema, closed form per run, grid vs zip, runs equal separate rollouts,
resume after an interruption, bad inputs, stores of other sweeps, and the Ray backend (started only
inside a network namespace of its own: shared SECURITY.md, "Clusters"). Small sizes: the CI machine
runs lavapipe on two cores."""
import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tests._deps import need
from tests._netns import ray_in_namespace

xr = need("xarray")
need("zarr")

import vkbands
from vkbands import reference as R

SW = importlib.import_module("vkbands.sweep")      # the module (vkbands.sweep is the function)
ST = importlib.import_module("vkbands._sweep_store")
ROOT = Path(__file__).resolve().parents[1]

TREE = dict(arity=3, depth=3, dims=1, batch=2, init="random")


def _counting(monkeypatch, after=None):
    """Replace the chunk function by one that records the chunk indices it ran (``after(index)`` runs
    once a chunk is computed)."""
    calls, orig = [], SW._run_chunk

    def fn(payload, ctx=None):
        out = orig(payload, ctx)
        calls.append(payload["index"])
        if after is not None:
            after(payload["index"])
        return out
    monkeypatch.setattr(SW, "_run_chunk", fn)
    return calls


# ------------------------------------------------------------------ schema and closed form
def test_tree_sweep_schema_and_closed_form_per_run(tmp_path):
    taus = [0.5, 2.0, 1.0]
    ds = vkbands.sweep("tree", {"tau": taus}, steps=24, every=2, seeds=(0, 3), chunk_runs=4, minmax=True,
                       final=True, store=tmp_path / "s.zarr", progress=False, **TREE)
    R_, M, T, nb = 6, 2, 13, 4
    assert dict(ds.sizes) == dict(run=R_, member=M, t=T, band=nb, x=27)
    assert ds.energies.dims == ("run", "member", "t", "band") and ds.energies.dtype == np.float64
    assert ds.final.dims == ("run", "member", "x") and ds.final.dtype == np.float32
    for name in ("mass", "min", "max"):
        assert ds[name].dims == ("run", "member", "t") and ds[name].dtype == np.float64
    assert ds.nonfinite.dtype == bool and not ds.nonfinite.values.any()
    assert ds.kill_step.dims == ("run", "member", "band") and ds.kill_step.dtype == np.int64
    assert ds.rate.dims == ds.rate_stderr.dims == ("run", "member", "band")
    assert ds.deepest_surviving_band.dims == ("run", "member") and ds.deepest_surviving_band.dtype == np.int64
    # coordinates: itertools.product order, seeds innermost
    np.testing.assert_array_equal(ds.run, np.arange(6))
    assert ds.tau.dims == ("run",) and ds.tau.dtype == np.float64 and ds.seed.dtype == np.int64
    np.testing.assert_array_equal(ds.tau, [0.5, 0.5, 2.0, 2.0, 1.0, 1.0])
    np.testing.assert_array_equal(ds.seed, [0, 3, 0, 3, 0, 3])
    np.testing.assert_array_equal(ds.t, np.arange(0, 25, 2))
    np.testing.assert_array_equal(ds.band, np.arange(4))
    a = ds.attrs
    assert (a["system"], a["steps"], a["every"], a["arity"], a["levels"], a["dims"], a["grid"], a["threshold"]) == \
        ("tree", 24, 2, 3, 3, 1, 1, 1e-3)
    assert a["backend"] == "local" and a["vkbands_version"] == vkbands.__version__
    assert a["device"] == vkbands.default_context().info["name"]
    assert json.loads(a["swept"]) == {"tau": taus} and json.loads(a["seeds"]) == [0, 3]
    assert json.loads(a["setup"]) == dict(arity=3, depth=3, dims=1, batch=2, init="random")
    assert json.loads(a["fixed"]) == {}
    t = ds.t.values
    for run in range(R_):
        tau, seed = float(ds.tau[run]), int(ds.seed[run])
        x0 = vkbands.Setup("tree", seed=seed, **TREE).x0()              # each run's own initial states
        E = ds.energies.values[run]                                     # (member, t, band)
        np.testing.assert_allclose(E[:, 0], R.energies(x0, 3, dims=1), rtol=1e-5, atol=1e-6)
        lam = R.tree_rates(3, 3, tau=tau)
        want = E[:, :1, :3] * lam[None, None, :] ** (2 * t[None, :, None])
        np.testing.assert_allclose(E[:, :, :3], want, rtol=2e-4, atol=1e-30)
        np.testing.assert_allclose(E[:, :, 3], E[:, :1, 3] * np.ones_like(t), rtol=1e-5, atol=1e-6)   # E_c conserved
        np.testing.assert_allclose(ds.rate.values[run, :, :3], np.broadcast_to(2 * np.log(lam), (2, 3)), rtol=1e-4)
        assert np.all(ds.rate_stderr.values[run, :, :3] < 1e-5)
        series = np.transpose(E, (1, 0, 2))
        np.testing.assert_array_equal(ds.kill_step.values[run], R.kill_steps(series, t))
        np.testing.assert_array_equal(ds.deepest_surviving_band.values[run], R.deepest_surviving_band(series)[-1])
    # tau=2: band 0 (lambda^2 = e^-4 per step) dies (< 1e-3 E_0(0)) at step 2; tau=0.5 at step 8
    assert set(ds.kill_step.values[2:4, :, 0].ravel()) == {2} and set(ds.kill_step.values[0:2, :, 0].ravel()) == {8}
    # a run equals a separate rollout with its own scalar tau and x0, bitwise (chunk 0 mixes tau 0.5 and 2.0)
    x0 = vkbands.Setup("tree", seed=3, **TREE).x0()
    r = vkbands.rollout("tree", x0, 24, every=2, dims=1, tau=2.0, progress=False)
    np.testing.assert_array_equal(ds.energies.values[3], np.transpose(r.energies, (1, 0, 2)))
    np.testing.assert_array_equal(ds["min"].values[3], r.min.T)
    np.testing.assert_array_equal(ds.final.values[3], r.final)


def test_grid_is_the_product_and_zip_pairs_the_lists():
    kw = dict(steps=4, arity=3, depth=2, dims=1, batch=1, progress=False)
    g = vkbands.sweep("tree", {"tau": [0.5, 1.5], "alpha": [0.5, 2.0]}, **kw)
    z = vkbands.sweep("tree", {"tau": [0.5, 1.5], "alpha": [0.5, 2.0]}, grid=False, **kw)
    np.testing.assert_array_equal(g.tau, [0.5, 0.5, 1.5, 1.5])
    np.testing.assert_array_equal(g.alpha, [0.5, 2.0, 0.5, 2.0])
    np.testing.assert_array_equal(z.tau, [0.5, 1.5])
    np.testing.assert_array_equal(z.alpha, [0.5, 2.0])
    assert z.attrs["grid"] == 0 and g.attrs["grid"] == 1
    np.testing.assert_array_equal(z.energies.values, g.energies.values[[0, 3]])     # the same runs, bitwise
    assert not np.array_equal(g.energies.values[1], g.energies.values[2])            # the values do matter


def test_grayscott_runs_equal_separate_rollouts_bitwise():
    F, k = [0.03, 0.04], [0.06, 0.065]
    ds = vkbands.sweep("grayscott", {"F": F, "k": k}, steps=20, every=5, size=16, seeds=(1,), final=True,
                       minmax=True, progress=False)
    assert ds.final.dims == ("run", "member", "y", "x") and ds.sizes["run"] == 4
    x0 = vkbands.Setup("grayscott", size=16, seed=1).x0()
    for run in range(4):
        f, kk = float(ds.F[run]), float(ds.k[run])
        assert (f, kk) == (F[run // 2], k[run % 2])
        r = vkbands.rollout("grayscott", x0, 20, every=5, F=f, k=kk, progress=False)
        np.testing.assert_array_equal(ds.energies.values[run], np.transpose(r.energies, (1, 0, 2)))
        for name in ("mass", "min", "max", "nonfinite"):
            np.testing.assert_array_equal(ds[name].values[run], getattr(r, name).T)
        np.testing.assert_array_equal(ds.final.values[run], r.final[:, 1])          # v, the observed field


def test_a_member_that_blows_up_keeps_its_finite_rows_and_the_others_complete():
    ds = vkbands.sweep("grayscott", {"dt": [1.0, 40.0]}, steps=12, size=12, progress=False, final=True)
    ok, bad = ds.isel(run=0), ds.isel(run=1)
    assert not ok.nonfinite.values.any() and np.isfinite(ok.final.values).all()
    first = int(np.argmax(bad.nonfinite.values[0]))
    assert bad.nonfinite.values[0, first:].all() and first > 0
    # before it: the rows the rollout observed (energies may overflow to inf first); from it on: NaN
    assert not np.isnan(bad.energies.values[0, :first]).any() and np.isnan(bad.energies.values[0, first:]).all()
    assert np.isnan(bad.mass.values[0, first:]).all() and np.isnan(bad.final.values).all()
    r = vkbands.rollout("grayscott", vkbands.Setup("grayscott", size=12).x0(), 12, dt=1.0, progress=False)
    np.testing.assert_array_equal(ok.energies.values[0], r.energies[:, 0])


def test_default_packing_rule_depends_on_sizes_only(ctx):
    def plan(n_values, steps, **setup):
        return SW._Plan("tree", {"tau": list(np.linspace(0.1, 2.0, n_values))}, steps, 1, (0,), None, True, None,
                        False, False, 1e-3, dict(dims=1, **setup))
    assert plan(100, 20, depth=3).default_chunk_runs() == 64 == plan(100, 20, depth=3).default_chunk_runs(ctx)
    assert plan(10, 20, depth=3).default_chunk_runs() == 10                       # never more than the runs
    mid = plan(100, 10_000, depth=5, batch=8)                # 243 x 8 x 10^4 element-steps per run
    assert SW._CHUNK_WORK // (243 * 8 * 10_000) == 13                              # the work would allow 13,
    assert mid.default_chunk_runs() == 12           # the observation rows (10001 x 8 members, float64) only 12
    assert plan(4, 10_000, depth=6, batch=64).default_chunk_runs(ctx) == 1        # one run is over the budget


# ------------------------------------------------------------------ store and resume
HEAT = dict(size=27, batch=1, init="smooth")


def test_interrupted_sweep_resumes_computing_only_the_missing_chunks(tmp_path, monkeypatch, capsys):
    store = tmp_path / "heat.zarr"
    params = {"alpha": [0.05, 0.1, 0.15, 0.2]}
    kw = dict(steps=20, every=4, seeds=(0, 1), chunk_runs=2, **HEAT)

    def interrupt(index):                      # Ctrl-C while the first chunk runs
        if index == 0:
            os.kill(os.getpid(), signal.SIGINT)
    calls = _counting(monkeypatch, after=interrupt)
    with pytest.raises(SW.SweepInterrupted) as e:
        vkbands.sweep("heat", params, store=store, progress=False, **kw)
    assert calls == [0]                                        # stopped after the chunk in flight
    assert (e.value.runs_done, e.value.runs_total, e.value.chunks_done, e.value.chunks_total) == (2, 8, 1, 4)
    assert e.value.signal == "SIGINT" and isinstance(e.value, KeyboardInterrupt)
    assert "2 of 8 runs" in str(e.value) and "same store" in str(e.value) and str(store) in str(e.value)
    np.testing.assert_array_equal(ST.done_chunks(store), [True, False, False, False])
    # a chunk written partly (its data, not its marker) is not finished: rewritten whole
    ST._group(store)["energies"][2:4] = -1.0
    monkeypatch.undo()
    calls = _counting(monkeypatch)
    ds = vkbands.sweep("heat", params, store=store, progress=None, **kw)
    assert sorted(calls) == [1, 2, 3]
    assert "resuming: 1 of 4 chunks already in" in capsys.readouterr().err
    monkeypatch.undo()
    full = vkbands.sweep("heat", params, progress=False, **kw)       # uninterrupted, in memory
    xr.testing.assert_identical(ds.load(), full)
    assert float(ds.energies.min()) >= 0
    # the same call again: nothing runs
    calls = _counting(monkeypatch)
    again = vkbands.sweep("heat", params, store=store, progress=None, **kw)
    assert calls == [] and "resuming: 4 of 4 chunks" in capsys.readouterr().err
    xr.testing.assert_identical(again.load(), full)
    # a store of another sweep is refused, naming what differs, and left as it was
    before = sorted(p.name for p in store.iterdir())
    with pytest.raises(ValueError, match=r"belongs to a different sweep: steps 10 != 20"):
        vkbands.sweep("heat", params, store=store, **dict(kw, steps=10))
    with pytest.raises(ValueError, match=r"different sweep: swept .*0\.25.* != .*0\.2"):
        vkbands.sweep("heat", {"alpha": [0.05, 0.1, 0.15, 0.25]}, store=store, **kw)
    with pytest.raises(ValueError, match=r"different sweep: chunk_runs 4 != 2"):
        vkbands.sweep("heat", params, store=store, **dict(kw, chunk_runs=4))
    with pytest.raises(ValueError, match=r"different sweep: setup .*random.* != .*smooth"):
        vkbands.sweep("heat", params, store=store, **dict(kw, init="random"))
    with pytest.raises(ValueError, match=r"different sweep: threshold 0.01 != 0.001"):
        vkbands.sweep("heat", params, store=store, **dict(kw, threshold=0.01))
    assert calls == [] and sorted(p.name for p in store.iterdir()) == before


def test_paths_that_are_not_sweep_stores_are_refused_untouched(tmp_path):
    kw = dict(steps=2, arity=3, depth=2, dims=1, progress=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    for name, why in (("empty", "an empty folder"), ("other", "no zarr.json"), ("file", "not a directory")):
        with pytest.raises(ValueError, match=f"not a vkbands sweep store \\({why}\\)"):
            vkbands.sweep("tree", {"tau": [1.0]}, store=tmp_path / name, **kw)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine" and os.listdir(tmp_path / "empty") == []
    # a store whose arrays were tampered with (a pickle codec, an object dtype) is refused before decoding
    store = tmp_path / "s.zarr"
    vkbands.sweep("tree", {"tau": [1.0]}, store=store, **kw)
    meta_path = store / "energies" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"].append({"name": "numcodecs.pickle", "configuration": {}})
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"array 'energies' uses codecs .*numcodecs.pickle"):
        vkbands.sweep("tree", {"tau": [1.0]}, store=store, **kw)
    meta["codecs"].pop()
    meta["data_type"] = "object"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"array 'energies' has data type 'object'"):
        vkbands.sweep("tree", {"tau": [1.0]}, store=store, **kw)
    (store / "zarr.json").write_text(json.dumps(dict(zarr_format=3, node_type="group", attributes={})))
    with pytest.raises(ValueError, match="without the 'vkbands_sweep' record"):
        vkbands.sweep("tree", {"tau": [1.0]}, store=store, **kw)


# ------------------------------------------------------------------ bad input (refused before anything runs)
@pytest.mark.parametrize("system, params, kw, err, match", [
    ("tree", {"taux": [1.0]}, {}, ValueError, r"'taux' is not a parameter of tree; allowed \(its numeric parameters\): "
                                              r"tau, alpha"),
    ("coupled", {"phi": ["tanh"]}, {}, ValueError, r"'phi' cannot be swept: a choice parameter.*phi=\.\.\. as a fixed"),
    ("tree", {"rates": [0.5]}, {}, ValueError, r"'rates' cannot be swept"),
    ("tree", {"tau": []}, {}, ValueError, r"params\['tau'\]: an empty list of values"),
    ("tree", {"tau": 1.0}, {}, ValueError, r"params\['tau'\]: 1.0 is not a list of values"),
    ("tree", {"tau": [1.0, -1.0]}, {}, ValueError, r"params\['tau'\]\[1\]: tau=-1.0: out of range; allowed: a finite number > 0"),
    ("heat", {"alpha": [0.1, 0.3]}, {}, ValueError, r"params\['alpha'\]\[1\]: alpha=0.3: out of range; allowed: a number in \[0, 0.25\]"),
    ("tree", {"tau": ["1"]}, {}, ValueError, r"params\['tau'\]\[0\] = '1': not a number"),
    ("tree", {"tau": [1.0, 2.0], "alpha": [1.0]}, dict(grid=False), ValueError, r"grid=False zips .* tau: 2, alpha: 1"),
    ("tree", {"tau": [1.0]}, dict(seeds=()), ValueError, r"seeds=\(\): no seeds"),
    ("tree", {"tau": [1.0]}, dict(seeds=(0, -1)), ValueError, r"seeds: -1 is not allowed; allowed: integers >= 0"),
    ("tree", {"tau": [1.0]}, dict(seed=1), ValueError, r"seeds=\(\.\.\.\); allowed: seeds, not seed"),
    ("tree", {"alpha": [1.0]}, dict(alpha=2.0), ValueError, r"alpha=2.0 and params\['alpha'\]: give one of them"),
    ("tree", {"tau": [1.0]}, dict(rates=[0.5]), ValueError, r"give one of them"),
    ("tree", {"tau": [1.0]}, dict(tau=2.0), ValueError, r"tau=2.0 and params\['tau'\]: give one of them"),
    ("tree", {"tau": [1.0]}, dict(threshold=0), ValueError, r"threshold=0: the kill threshold.*0 < threshold < 1"),
    ("tree", {"tau": [1.0]}, dict(threshold=1.5), ValueError, r"threshold=1.5: .*0 < threshold < 1"),
    ("tree", {"tau": [1.0]}, dict(threshold="0.1"), ValueError, r"threshold='0.1'"),
    ("tree", {"tau": [1.0]}, dict(depht=3), TypeError, r"unknown option\(s\) \['depht'\]"),
    ("tree", {"tau": [1.0]}, dict(F=0.1), ValueError, r"F=0.1: does not apply to system='tree'"),
    ("tree", {"tau": [1.0]}, dict(size=10), ValueError, r"size=10"),
    ("tree", {"tau": [1.0]}, dict(backend="dask"), ValueError, r"backend='dask': allowed: 'local', 'ray'"),
    ("tree", {"tau": [1.0]}, dict(num_workers=2), ValueError, r"num_workers=2: applies to backend='ray' only"),
    ("tree", {"tau": [1.0]}, dict(address="10.0.0.1:6379"), ValueError, r"applies to backend='ray' only"),
    ("tree", {"tau": [1.0]}, dict(chunk_runs=0), ValueError, r"chunk_runs=0: allowed: an integer >= 1"),
    ("tree", {"tau": [1.0]}, dict(steps=0), ValueError, r"steps=0: allowed: an integer >= 1"),
    ("tree", {"tau": [1.0]}, dict(x0=np.zeros(27, np.float32), depth=3), ValueError, r"x0 given: .*depth"),
    ("nope", {"tau": [1.0]}, {}, ValueError, r"system='nope': not a registered system"),
])
def test_bad_input_is_refused_naming_it(system, params, kw, err, match, monkeypatch):
    calls = _counting(monkeypatch)
    kw = dict(dict(steps=5), **kw)
    with pytest.raises(err, match=match):
        vkbands.sweep(system, params, **kw)
    assert calls == []


def test_threshold_sets_the_kill_steps_and_tau_is_the_systems():
    """threshold= is the kill threshold (attrs, kill_step, deepest_surviving_band, the descriptions); a
    fixed tau= reaches the tree system (recorded in ``fixed``)."""
    ds = vkbands.sweep("tree", {"alpha": [1.0, 2.0]}, steps=12, every=2, threshold=0.05, tau=0.25, progress=False,
                       **TREE)
    assert ds.attrs["threshold"] == 0.05 and "tau" not in ds.attrs and json.loads(ds.attrs["fixed"])["tau"] == 0.25
    assert "threshold = 0.05" in ds.kill_step.attrs["description"]
    assert "threshold = 0.05" in ds.deepest_surviving_band.attrs["description"]
    t = ds.t.values
    for run, alpha in enumerate([1.0, 2.0]):
        E = ds.energies.values[run]
        lam = R.tree_rates(3, 3, tau=0.25, alpha=alpha)
        np.testing.assert_allclose(E[:, :, :3], E[:, :1, :3] * lam ** (2 * t[None, :, None]), rtol=2e-4)
        series = np.transpose(E, (1, 0, 2))
        np.testing.assert_array_equal(ds.kill_step.values[run], R.kill_steps(series, t, 0.05))
        np.testing.assert_array_equal(ds.deepest_surviving_band.values[run],
                                      R.deepest_surviving_band(series, 0.05)[-1])
    assert set(ds.kill_step.values[:, :, 0].ravel()) == {6}     # exp(-0.5 t) < 0.05 first at t = 6 (not at 1e-3)


def test_shared_x0_runs_every_run_from_it():
    x0 = np.random.default_rng(5).standard_normal((2, 27)).astype(np.float32)
    ds = vkbands.sweep("tree", {"tau": [0.5, 1.0]}, x0=x0, dims=1, steps=6, seeds=(0, 1), progress=False)
    assert ds.sizes["member"] == 2 and ds.attrs["levels"] == 3
    np.testing.assert_allclose(ds.energies.values[:, :, 0], np.broadcast_to(R.energies(x0, 3, dims=1), (4, 2, 4)),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ds.energies.values[0], ds.energies.values[1])      # seeds do not change x0


# ------------------------------------------------------------------ Ray (local cluster, 2 workers, own namespace)
RAY_SCRIPT = textwrap.dedent('''
    import importlib, json, os, signal, sys
    SW = importlib.import_module("vkbands.sweep")
    OUT = sys.argv[1]
    KW = json.loads(sys.argv[2])

    def dying(payload, ctx=None):
        """Kills its own worker (SIGKILL) the first time chunk 1 runs; records every call."""
        with open(os.path.join(OUT, f"call-{payload['index']}-{os.getpid()}"), "w") as f:
            f.write("")
        marker = os.path.join(OUT, "died")
        if payload["index"] == 1 and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return importlib.import_module("vkbands.sweep")._run_chunk(payload, ctx)

    ds = SW.sweep(**KW, store=os.path.join(OUT, "ray.zarr"), backend="ray", num_workers=2, progress=False)
    SW._run_chunk = dying            # pickled by value (defined in __main__): the workers run it
    ds2 = SW.sweep(**KW, store=os.path.join(OUT, "killed.zarr"), backend="ray", num_workers=2, progress=False)
    print("RESULT " + json.dumps(dict(backend=ds.attrs["backend"], killed_backend=ds2.attrs["backend"],
                                      calls=sorted(n for n in os.listdir(OUT) if n.startswith("call-")))))
''')


def test_ray_sweep_equals_local_and_survives_a_killed_worker(tmp_path):
    ray_in_namespace()
    kw = dict(system="tree", params={"tau": [0.5, 1.0, 2.0]}, steps=12, seeds=[0, 1], chunk_runs=2, arity=3,
              depth=3, dims=1, batch=2, minmax=True, final=True)
    script = tmp_path / "ray_sweep.py"
    script.write_text(RAY_SCRIPT)
    proc = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$1" "$2" "$3"',
                           sys.executable, str(script), str(tmp_path), json.dumps(kw)], cwd=ROOT,
                          env=dict(os.environ), capture_output=True, text=True, timeout=420)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and len(lines) == 1, f"exit {proc.returncode}:\n{proc.stderr[-6000:]}"
    report = json.loads(lines[0][len("RESULT "):])
    assert report["backend"] == report["killed_backend"] == "ray"
    local = vkbands.sweep(**kw, store=tmp_path / "local.zarr", progress=False).load()
    assert local.attrs["backend"] == "local"
    for name in ("ray.zarr", "killed.zarr"):
        ds = ST.open_dataset(tmp_path / name).load()
        assert ds.attrs.pop("backend") == "ray"
        want = local.copy()
        want.attrs = {k: v for k, v in local.attrs.items() if k != "backend"}
        xr.testing.assert_identical(ds, want)                             # values, coords, attrs
        np.testing.assert_array_equal(ST.done_chunks(tmp_path / name), [True] * 3)
    died = int((tmp_path / "died").read_text())
    calls = report["calls"]
    by_chunk = {i: [c for c in calls if c.startswith(f"call-{i}-")] for i in range(3)}
    assert len(by_chunk[0]) == len(by_chunk[2]) == 1                      # the others ran once
    assert len(by_chunk[1]) == 2 and f"call-1-{died}" in by_chunk[1]      # chunk 1 died once, was redone elsewhere
