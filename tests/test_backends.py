"""Execution backends (python_bindings/_backends.py) and device choice by UUID (engine/context.py).

The Ray checks start Ray ONLY inside a network namespace of their own (shared SECURITY.md, "Clusters"):
one subprocess, ``unshare -n`` with only loopback up, runs every Ray check on one local cluster of 2
workers (tests/_backend_tasks.py: main) and prints its results as JSON; the tests assert on them. The
subprocess inherits this environment, so its workers run with the same validation settings, and a
validation error in a worker is a ValidationError in its task, which fails the run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vkbands
from tests import _backend_tasks as T
from vkbands._backends import (BackendWarning, LocalBackend, RayBackend, assigned_gpu_uuid, choose_worker_device,
                               make_backend, parse_gpu_table, worker_context)
from vkbands.engine import Context, NoDeviceError, choose_device, default_context
from tests._deps import need
from tests._netns import ray_in_namespace

ROOT = Path(__file__).resolve().parents[1]

# Recorded `nvidia-smi --query-gpu=index,uuid --format=csv,noheader` of a 4-GPU node (UUIDs made up in
# NVIDIA's format), with a MIG row and a blank line as nvidia-smi can print them.
NVIDIA_SMI = """\
0, GPU-6b1c0f4e-1d2a-8e3f-7a55-0123456789ab
1, GPU-d0a3b2c1-4f5e-6a7b-8c9d-0e1f2a3b4c5d
2, GPU-F00DCAFE-0000-1111-2222-333344445555
  MIG 1g.10gb     Device  0: (UUID: MIG-0b3d1f00-aaaa-bbbb-cccc-ddddeeeeffff)

3, GPU-d0a3ffff-4f5e-6a7b-8c9d-0e1f2a3b4c5d
"""
UUIDS = ["6b1c0f4e1d2a8e3f7a550123456789ab", "d0a3b2c14f5e6a7b8c9d0e1f2a3b4c5d",
         "f00dcafe000011112222333344445555", "d0a3ffff4f5e6a7b8c9d0e1f2a3b4c5d"]
LAVAPIPE_UUID = "6d65736132322e332e36000000000000"


# ------------------------------------------------------------------ device choice by UUID

def _devices():
    return [dict(index=0, name="llvmpipe", type="cpu", uuid=LAVAPIPE_UUID),
            dict(index=1, name="NVIDIA H100", type="discrete", uuid=UUIDS[0]),
            dict(index=2, name="NVIDIA H100", type="discrete", uuid=UUIDS[1])]


def test_choose_device_by_uuid_matches_vulkan_and_nvidia_forms():
    devs = _devices()
    assert choose_device(devs) == 1                                           # unchanged default
    assert choose_device(devs, f"uuid:{UUIDS[1]}") == 2
    assert choose_device(devs, "uuid:GPU-D0A3B2C1-4F5E-6A7B-8C9D-0E1F2A3B4C5D") == 2   # nvidia-smi's form
    assert choose_device(devs, f"UUID:{LAVAPIPE_UUID}") == 0
    with pytest.raises(NoDeviceError) as e:
        choose_device(devs, f"uuid:{UUIDS[2]}")
    for d in devs:                                                            # lists every device's UUID
        assert d["uuid"] in str(e.value)
    assert UUIDS[2] in str(e.value)
    with pytest.raises(NoDeviceError, match="not a UUID"):
        choose_device(devs, "uuid:GPU-1234")


def test_context_selects_the_real_device_by_its_own_uuid(ctx, monkeypatch):
    with Context(device_uuid=ctx.device_uuid) as c:
        assert (c.device_uuid, c.info["name"], c.device_index) == (ctx.device_uuid, ctx.info["name"], ctx.device_index)
    monkeypatch.setenv("VKBANDS_DEVICE", f"uuid:{ctx.device_uuid.upper()}")
    with Context() as c:
        assert c.device_uuid == ctx.device_uuid
    monkeypatch.delenv("VKBANDS_DEVICE")
    with pytest.raises(NoDeviceError) as e:
        Context(device_uuid="GPU-" + UUIDS[2])
    assert ctx.device_uuid in str(e.value) and UUIDS[2] in str(e.value)
    with pytest.raises(ValueError, match="give one of them"):
        Context(device=0, device_uuid=ctx.device_uuid)


# ------------------------------------------------------------------ Ray's GPU -> Vulkan device

def test_nvidia_smi_table_and_rays_gpu_ids_map_to_uuids():
    table = parse_gpu_table(NVIDIA_SMI)
    assert table == list(enumerate(UUIDS))                # MIG row and blank line skipped, hex lower-cased
    assert parse_gpu_table("") == [] and parse_gpu_table("NVIDIA-SMI has failed\n") == []
    assert assigned_gpu_uuid(["2"], table) == UUIDS[2]    # ray.get_gpu_ids() as strings
    assert assigned_gpu_uuid([3, 0], table) == UUIDS[3]   # as ints; several GPUs: the first
    assert assigned_gpu_uuid([], table) is None
    assert assigned_gpu_uuid(["7"], table) is None        # not on this node's list
    assert assigned_gpu_uuid(["GPU-f00dcafe-0000-1111-2222-333344445555"], table) == UUIDS[2]   # UUID ids
    assert assigned_gpu_uuid(["GPU-6b1c"], table) == UUIDS[0]   # a unique prefix, as CUDA accepts
    assert assigned_gpu_uuid(["GPU-d0a3"], table) is None       # ambiguous prefix
    assert assigned_gpu_uuid(["MIG-0b3d1f00-aaaa-bbbb-cccc-ddddeeeeffff"], table) is None


def test_worker_device_is_the_assigned_gpu_else_the_cpu_device_with_a_warning():
    devs, table = _devices(), parse_gpu_table(NVIDIA_SMI)
    assert choose_worker_device(["1"], table, devs) == (f"uuid:{UUIDS[1]}", None)
    assert choose_worker_device([0], table, devs) == (f"uuid:{UUIDS[0]}", None)
    cases = {"no GPU": ([], table), "neither NVML nor nvidia-smi": (["0"], None),
             "not in nvidia-smi's list [0, 1, 2, 3]": (["9"], table),
             f"no Vulkan device has the UUID {UUIDS[2]}": (["2"], table)}
    for why, (ids, tab) in cases.items():
        selector, warning = choose_worker_device(ids, tab, devs)
        assert selector == f"uuid:{LAVAPIPE_UUID}", why
        assert why in warning and "using the CPU device 'llvmpipe'" in warning and "\n" not in warning
    selector, warning = choose_worker_device([], table, devs[1:])            # no CPU device: the default
    assert selector is None and "default device" in warning


def test_worker_context_outside_ray_is_the_default_context(ctx):
    assert worker_context() is default_context()


# ------------------------------------------------------------------ the local backend

def test_local_backend_runs_each_payload_once_in_this_process(ctx):
    payloads = T.payloads([3, 1, 4])
    with make_backend("local") as b:
        assert (b.name, b.where) == ("local", "this process")
        out = list(b.run(T.energies, payloads))
    assert [i for i, _ in out] == [0, 1, 2]
    for (i, r), p in zip(out, payloads):
        x0 = np.random.default_rng(p["seed"]).standard_normal((2, 81)).astype(np.float32)
        want = vkbands.rollout("tree", x0, steps=T.STEPS, every=1, ctx=ctx, progress=False).energies
        assert r["seed"] == p["seed"] and r["pid"] == os.getpid() and r["warnings"] == []
        np.testing.assert_array_equal(r["energies"], want)
    b.close()                                                 # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        b.run(T.energies, payloads)


def test_local_backend_propagates_fn_exceptions_and_stops():
    calls = []

    def fn(p):
        calls.append(p["seed"])
        if p.get("fail"):
            raise T.TaskFailed(f"payload {p['seed']}")
        return p["seed"] * 10

    it = make_backend().run(fn, [dict(seed=1), dict(seed=2, fail=True), dict(seed=3)])
    assert next(it) == (0, 10)
    with pytest.raises(T.TaskFailed, match="payload 2"):
        next(it)
    assert calls == [1, 2]                                    # nothing after the failure ran


def test_make_backend_refuses_bad_inputs():
    with pytest.raises(ValueError, match=r"backend='dask'.*'local', 'ray'"):
        make_backend("dask")
    with pytest.raises(ValueError, match=r"address='10.0.0.1:6379'.*only for backend='ray'"):
        make_backend("local", address="10.0.0.1:6379")
    with pytest.raises(ValueError, match=r"num_gpus=-1"):
        make_backend("ray", num_gpus=-1)
    with pytest.raises(ValueError, match=r"num_workers=0"):
        make_backend("ray", num_workers=0)
    with pytest.raises(ValueError, match=r"retries=-1"):
        make_backend("local").run(T.energies, [], retries=-1)


def test_ray_backend_without_ray_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)             # `import ray` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'vkbands\[cluster\]'"):
        make_backend("ray")


def test_ray_backend_refuses_to_start_a_ray_without_token_auth(monkeypatch):
    ray = need("ray")
    assert not ray.is_initialized()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(RuntimeError, match="RAY_AUTH_MODE='disabled'.*token"):
        make_backend("ray")
    assert not ray.is_initialized()                           # refused before anything started


class _FakeRay:
    """Just enough of Ray for RayBackend._run: tasks finish newest first, one per wait."""

    class exceptions:
        class RayTaskError(Exception):
            def __init__(self, cause):
                super().__init__(f"ray::fn() remote traceback of {cause!r}")
                self.cause = cause

    def __init__(self, fn):
        self.fn, self.submitted, self.cancelled, self.most_in_flight = fn, [], [], 0
        self.in_flight = set()

    def remote(self, payload):
        ref = len(self.submitted)
        self.submitted.append(payload)
        self.in_flight.add(ref)
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        return ref

    def wait(self, refs, num_returns):
        assert num_returns == 1 and set(refs) == self.in_flight
        return [max(refs)], [r for r in refs if r != max(refs)]

    def get(self, ref):
        self.in_flight.discard(ref)
        try:
            return self.fn(self.submitted[ref])
        except Exception as e:
            raise self.exceptions.RayTaskError(e) from None

    def cancel(self, ref):
        self.cancelled.append(ref)


def _fake_backend(fn, num_workers=None):
    fake = _FakeRay(fn)
    b = object.__new__(RayBackend)
    b.closed, b._ray, b.num_workers = False, fake, num_workers
    return b, fake


def test_ray_run_yields_in_completion_order_and_cancels_the_rest_on_an_error():
    def fn(p):
        if p == 2:
            raise T.TaskFailed("two")
        return p * p

    b, fake = _fake_backend(fn)
    it = b._run(fake, [0, 1, 2, 3, 4])
    assert [next(it), next(it)] == [(4, 16), (3, 9)]
    with pytest.raises(T.TaskFailed, match="two") as e:
        next(it)
    assert "remote traceback" in str(e.value.__cause__)      # the worker's traceback comes along
    assert sorted(fake.cancelled) == [0, 1]

    b, fake = _fake_backend(lambda p: p, num_workers=2)       # a window of 2 tasks in flight
    assert sorted(b._run(fake, list(range(7)))) == [(i, i) for i in range(7)]
    assert fake.most_in_flight == 2 and fake.cancelled == []

    b, fake = _fake_backend(lambda p: p)                      # the caller stops early: the rest is cancelled
    it = b._run(fake, [0, 1, 2])
    assert next(it) == (2, 2)
    it.close()
    assert sorted(fake.cancelled) == [0, 1]


# ------------------------------------------------------------------ Ray on a local cluster, in a namespace


@pytest.fixture(scope="module")
def ray_report(tmp_path_factory):
    ray_in_namespace()
    tmp = tmp_path_factory.mktemp("ray")
    code = f"from tests._backend_tasks import main; main({str(tmp)!r})"
    proc = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"', sys.executable,
                           code], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and len(lines) == 1, \
        f"Ray run failed (exit {proc.returncode}; a worker's ValidationError ends it too):\n{proc.stderr[-6000:]}"
    report = json.loads(lines[0][len("RESULT "):])
    report["tmp"] = tmp
    return report


def _local_energies(seeds):
    return {r["seed"]: r["energies"] for _, r in LocalBackend().run(T.energies, T.payloads(seeds))}


def test_ray_backend_equals_local_bitwise_on_the_same_driver(ray_report, ctx):
    r = ray_report
    assert r["name"] == "ray" and r["auth_mode"] == "token" and r["initialized_after_close"] is False
    assert r["where"].startswith("local Ray at 127.0.0.1:") and "2 workers" in r["where"]
    assert "dashboard off, token authentication on" in r["where"]
    assert sorted(i for i, _ in r["results"]) == [0, 1, 2, 3, 4]             # each index exactly once
    local = _local_energies(range(5))
    for i, res in r["results"]:
        assert res["seed"] == i and res["pid"] != os.getpid()
        np.testing.assert_array_equal(T.decode_energies(res["energies"]), local[i])   # bitwise
        assert (res["device_uuid"], res["driver"], res["device_type"]) == (ctx.device_uuid, ctx.driver_name, "cpu")
        assert res["validation"] == ctx.validation                           # workers validate as we do
        assert res["layer_enables"] == os.environ.get("VK_LAYER_ENABLES")
        assert res["warnings"] == [f"{BackendWarning.__name__}: vkbands worker: Ray assigned this worker no GPU (num_gpus=0); "
                                   f"using the CPU device {ctx.info['name']!r}"]


def test_ray_task_exception_propagates_with_its_type(ray_report):
    raised = ray_report["raised"]
    assert raised is not None, "a failing task did not fail the run"
    assert raised["type"] == "tests._backend_tasks.TaskFailed"
    assert raised["message"] == "payload 7 fails on purpose"
    assert "ray::energies()" in raised["cause"] and "TaskFailed" in raised["cause"]


def test_ray_worker_killed_mid_task_is_retried_once_per_payload(ray_report):
    killed = ray_report["killed"]
    assert sorted(i for i, _ in killed) == [0, 1, 2]                         # each index exactly once
    local = _local_energies(range(3))
    for i, res in killed:
        marker = ray_report["tmp"] / "killed" / f"died-{i}"
        assert int(marker.read_text()) == res["dead_pid"]                   # the first try really died
        assert res["pid"] != res["dead_pid"]                                 # and another process redid it
        np.testing.assert_array_equal(T.decode_energies(res["energies"]), local[i])
    # retries=0: the same death is not retried, so it is Ray's max_retries that recovered the runs above
    assert ray_report["no_retry"] == dict(type="WorkerCrashedError", ray_error=True)
