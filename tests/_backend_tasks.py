"""Task functions for tests/test_backends.py (module-level, so Ray pickles them by reference), and the
driver that runs them on a local Ray: ``python -c "from tests._backend_tasks import main; main(tmpdir)"``
prints one line ``RESULT <json>`` (not ``python -m``: the functions must be this module's, not
``__main__``'s, so the workers import them by name as a sweep's would be). test_backends.py runs that driver only inside a network namespace of its own
(shared SECURITY.md, "Clusters")."""
import json
import os
import signal
import warnings

import numpy as np

STEPS = 20


class TaskFailed(ValueError):
    """Raised by :func:`energies` on purpose (payload ``fail=True``)."""


_first_warnings = None       # the warnings worker_context() gave the first time in this process


def _context():
    global _first_warnings
    from vkbands._backends import worker_context
    if _first_warnings is None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ctx = worker_context()
        _first_warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
        return ctx
    return worker_context()


def energies(payload):
    """A real vkbands workload: a tree rollout of a seeded batch; its energies and where it ran."""
    import vkbands
    if payload.get("fail"):
        raise TaskFailed(f"payload {payload['seed']} fails on purpose")
    ctx = _context()
    x0 = np.random.default_rng(payload["seed"]).standard_normal((payload["batch"], 81)).astype(np.float32)
    r = vkbands.rollout("tree", x0, steps=STEPS, every=1, ctx=ctx, progress=False)
    return dict(seed=payload["seed"], energies=r.energies, pid=os.getpid(), device_uuid=ctx.device_uuid,
                device_type=ctx.info["type"], driver=ctx.driver_name, validation=ctx.validation,
                layer_enables=os.environ.get("VK_LAYER_ENABLES"), warnings=_first_warnings)


def die_once(payload):
    """Kills its own worker process (SIGKILL, mid-task) the first time it runs for a payload; a marker
    file holding the dead pid says it already did. Then does the real work."""
    marker = os.path.join(payload["dir"], f"died-{payload['seed']}")
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    out = energies(payload)
    with open(marker) as f:
        out["dead_pid"] = int(f.read())
    return out


def encode(result):
    out = dict(result)
    e = out.pop("energies")
    out["energies"] = dict(hex=e.tobytes().hex(), shape=list(e.shape), dtype=str(e.dtype))
    return out


def decode_energies(d):
    return np.frombuffer(bytes.fromhex(d["hex"]), dtype=d["dtype"]).reshape(d["shape"])


def payloads(seeds, **extra):
    return [dict(seed=s, batch=2, **extra) for s in seeds]


def main(tmpdir):
    """Every Ray check on one local cluster of 2 workers; the results as JSON for the test to assert on."""
    import ray
    from vkbands._backends import make_backend
    report = {}
    with make_backend("ray", num_workers=2) as backend:
        report["where"] = backend.where
        report["name"] = backend.name
        report["auth_mode"] = os.environ.get("RAY_AUTH_MODE")
        report["results"] = [[i, encode(r)] for i, r in backend.run(energies, payloads(range(5)))]
        try:
            list(backend.run(energies, payloads([0, 1]) + [dict(seed=7, batch=2, fail=True)]))
            report["raised"] = None
        except Exception as e:
            report["raised"] = dict(type=f"{type(e).__module__}.{type(e).__qualname__}", message=str(e),
                                    cause=str(e.__cause__))
        killed = os.path.join(tmpdir, "killed")
        os.mkdir(killed)
        report["killed"] = [[i, encode(r)] for i, r in backend.run(die_once, payloads(range(3), dir=killed), retries=2)]
        no_retry = os.path.join(tmpdir, "no_retry")
        os.mkdir(no_retry)
        try:
            list(backend.run(die_once, payloads([11], dir=no_retry), retries=0))
            report["no_retry"] = None
        except Exception as e:
            report["no_retry"] = dict(type=type(e).__name__, ray_error=isinstance(e, ray.exceptions.RayError))
    report["initialized_after_close"] = ray.is_initialized()
    print("RESULT " + json.dumps(report), flush=True)

