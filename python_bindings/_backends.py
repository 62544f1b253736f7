"""Execution backends: where the chunks of a sweep run (this process, or Ray tasks on a cluster).

``make_backend("local")`` runs each payload in this process, one after another; ``make_backend("ray",
address=..., num_gpus=..., num_workers=...)`` runs them as Ray tasks. Both have the same ``run(fn,
payloads)``: an iterator of ``(index, fn(payload))`` in completion order, one per payload, so a caller
(``vkbands.sweep``) does not change when the work moves to a cluster.

``fn`` calls :func:`worker_context` for its Vulkan context: the default context in this process; in
a Ray worker, the Vulkan device whose ``deviceUUID`` is the UUID of the GPU Ray assigned the task
(NVIDIA's Vulkan driver ignores ``CUDA_VISIBLE_DEVICES``, so the device is picked by UUID:
``nvidia-smi`` / NVML name it ``GPU-<uuid>``, Vulkan's ``VkPhysicalDeviceIDProperties.deviceUUID`` is
the same 16 bytes), or the CPU device (lavapipe) when Ray assigned none.

Security (docs/ARCHITECTURE.md "Backends", shared SECURITY.md "Clusters"): a local Ray is started with
the dashboard off and Ray's token authentication on (an environment that turns it off is refused), and
``where`` says where it listens; joining a cluster is only ever the caller's explicit ``address=``.
"""
from __future__ import annotations

import logging
import numbers
import os
import subprocess
import threading
import warnings

log = logging.getLogger("vkbands")

BACKENDS = ("local", "ray")
_INSTALL_RAY = "the Ray backend needs Ray: pip install 'vkbands[cluster]'"


class BackendWarning(UserWarning):
    """A worker could not use the GPU it was meant to (it runs on the CPU device instead)."""


class Backend:
    """Runs ``fn`` over payloads somewhere; see the module docstring. A context manager; ``close()`` is
    idempotent."""

    name: str = ""
    where: str = ""

    def __init__(self):
        self.closed = False

    def run(self, fn, payloads, *, retries=3):
        """Iterator of ``(index, fn(payload))`` in completion order, one per payload. A payload whose
        worker died is retried (up to ``retries`` times) and yields once; an exception raised by ``fn``
        propagates (no retry) after cancelling what is still pending."""
        raise NotImplementedError

    def close(self):
        self.closed = True

    def _require_open(self):
        if self.closed:
            raise RuntimeError(f"this {self.name} backend is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<vkbands {self.name} backend: {self.where}{' (closed)' if self.closed else ''}>"


class LocalBackend(Backend):
    """Every payload in this process, one after another, in order (no threads, no retries: nothing
    here can die without this process dying too)."""

    name = "local"
    where = "this process"

    def run(self, fn, payloads, *, retries=3):
        self._require_open()
        _check_retries(retries)
        return self._run(fn, list(payloads))

    @staticmethod
    def _run(fn, payloads):
        for i, payload in enumerate(payloads):
            yield i, fn(payload)


class RayBackend(Backend):
    """Payloads as Ray tasks (``num_gpus`` GPUs each; a worker that dies is retried by Ray).

    ``address=None`` starts a Ray on this machine (``num_workers`` CPUs, default all) and shuts it down
    on ``close()``; an address joins that cluster (``ray.init(address=...)``) and ``close()`` only
    disconnects. A Ray already initialised in this process is used as it is and left running.
    ``num_workers`` also caps the tasks in flight (on a joined cluster: at most that many at once)."""

    name = "ray"

    def __init__(self, address=None, num_gpus=None, num_workers=None):
        super().__init__()
        try:
            import ray
        except ImportError as e:
            raise ImportError(_INSTALL_RAY) from e
        self._ray = ray
        self.num_gpus = num_gpus or 0
        self.num_workers = num_workers
        self._started = False
        if ray.is_initialized():
            if address is not None:
                raise ValueError(f"address={address!r}: this process is already connected to a Ray cluster; "
                                 "leave address=None to use it")
            self.where = f"Ray cluster this process was already connected to ({_cluster_size(ray)})"
        elif address is None:
            mode = os.environ.get("RAY_AUTH_MODE")
            if mode is not None and mode.strip().lower() != "token":
                raise RuntimeError(f"RAY_AUTH_MODE={mode!r}: vkbands starts a local Ray only with token "
                                   "authentication on (a Ray without it runs code for anyone who reaches its "
                                   "ports); unset RAY_AUTH_MODE or set it to 'token'")
            n = num_workers or os.cpu_count() or 1
            info = ray.init(include_dashboard=False, num_cpus=n, logging_level=logging.WARNING)
            self._started = True
            gcs = info.address_info.get("gcs_address", "?")
            self.where = (f"local Ray at {gcs} ({n} worker{'s' if n != 1 else ''}; started by vkbands, dashboard "
                          "off, token authentication on; its ports are open on every network interface of this "
                          "machine)")
        else:
            info = ray.init(address=address, logging_level=logging.WARNING)
            self._started = True
            gcs = getattr(info, "address_info", {}).get("gcs_address") or address
            self.where = f"Ray cluster at {gcs} ({_cluster_size(ray)})"
        log.info("vkbands: Ray backend: %s", self.where)

    def run(self, fn, payloads, *, retries=3):
        self._require_open()
        _check_retries(retries)
        remote = self._ray.remote(fn).options(num_gpus=self.num_gpus, max_retries=retries, retry_exceptions=False)
        return self._run(remote, list(payloads))

    def _run(self, remote, payloads):
        ray = self._ray
        window = self.num_workers or len(payloads) or 1
        todo = iter(enumerate(payloads))
        pending: dict = {}                      # ObjectRef -> payload index

        def submit():
            for i, payload in todo:
                pending[remote.remote(payload)] = i
                if len(pending) >= window:
                    return

        try:
            submit()
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as err:
                        original, remote_tb = _unwrap(err)
                        raise original from remote_tb
                    yield i, result
                submit()
        finally:                                 # an error, or the caller stopped iterating
            for ref in pending:
                try:
                    ray.cancel(ref)
                except Exception:                # already finished or gone: nothing to cancel
                    pass

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self._started:
            self._ray.shutdown()


def _cluster_size(ray) -> str:
    res = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return f"{nodes} node{'s' if nodes != 1 else ''}, {int(res.get('CPU', 0))} CPUs, {res.get('GPU', 0):g} GPUs"


def _unwrap(err):
    """``(exception, cause)`` to raise for a task that raised: the exception ``fn`` raised in the worker
    (its own type) caused by the worker's traceback, or the RayTaskError itself when the original could
    not be rebuilt here."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, type(err)):
        return cause, _RemoteTraceback(str(err))
    return err, None


class _RemoteTraceback(Exception):
    """The worker's traceback (text), shown as the cause of a re-raised task exception."""


def _check_retries(retries):
    if isinstance(retries, bool) or not isinstance(retries, numbers.Integral) or retries < 0:
        raise ValueError(f"retries={retries!r}: must be an integer >= 0")


def make_backend(name="local", *, address=None, num_gpus=None, num_workers=None) -> Backend:
    """The backend called ``name`` ("local" or "ray"); see :class:`LocalBackend`, :class:`RayBackend`.
    ``address``, ``num_gpus`` and ``num_workers`` are the Ray backend's (ValueError with "local")."""
    if name not in BACKENDS:
        raise ValueError(f"backend={name!r}: unknown backend; allowed: {', '.join(map(repr, BACKENDS))}")
    if num_gpus is not None and (isinstance(num_gpus, bool) or not isinstance(num_gpus, numbers.Real)
                                 or not num_gpus >= 0):
        raise ValueError(f"num_gpus={num_gpus!r}: must be a number >= 0 (GPUs per task; fractions share a GPU)")
    if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, numbers.Integral)
                                    or num_workers < 1):
        raise ValueError(f"num_workers={num_workers!r}: must be an integer >= 1")
    if name == "local":
        given = [f"{k}={v!r}" for k, v in (("address", address), ("num_gpus", num_gpus),
                                           ("num_workers", num_workers)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: only for backend='ray' (the local backend runs in this process)")
        return LocalBackend()
    return RayBackend(address=address, num_gpus=num_gpus, num_workers=num_workers)


# ------------------------------------------------------------------ the worker's device

def parse_gpu_table(text: str) -> list[tuple[int, str]]:
    """``nvidia-smi --query-gpu=index,uuid --format=csv,noheader`` output -> ``[(index, uuid hex)]``,
    the UUID as 32 lower-case hex digits (Vulkan's ``deviceUUID`` form). Lines that are not
    ``<index>, GPU-<uuid>`` (MIG rows, blanks, warnings) are skipped."""
    from vkbands.engine import NoDeviceError
    from vkbands.engine.context import normalize_uuid
    out = []
    for line in (text or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2 or not parts[0].isdigit() or not parts[1].upper().startswith("GPU-"):
            continue
        try:
            out.append((int(parts[0]), normalize_uuid(parts[1])))
        except NoDeviceError:
            continue
    return out


def assigned_gpu_uuid(gpu_ids, table) -> str | None:
    """The UUID (hex) of the first GPU in ``gpu_ids``, or None when there is none or it matches no row.

    ``gpu_ids``: what ``ray.get_gpu_ids()`` returns in a worker (the same ids Ray puts in that worker's
    ``CUDA_VISIBLE_DEVICES``): node-level GPU indices, which are nvidia-smi's indices, or UUIDs
    (``GPU-...``, or a unique prefix as CUDA accepts) when the node's own ``CUDA_VISIBLE_DEVICES`` named
    GPUs by UUID. ``table``: :func:`parse_gpu_table`'s rows. A context uses one device, so a task given
    several GPUs runs on the first. MIG instances (``MIG-...``) have no Vulkan device: None."""
    ids = [str(g).strip() for g in (gpu_ids or ()) if str(g).strip()]
    if not ids:
        return None
    first = ids[0]
    if first.isdigit():
        hits = [u for i, u in table if i == int(first)]
        return hits[0] if hits else None
    low = first.lower()
    if not low.startswith("gpu-"):
        return None
    prefix = low[4:].replace("-", "")
    hits = [u for _, u in table if u.startswith(prefix)]
    return hits[0] if len(hits) == 1 and prefix else None


def query_gpu_table() -> list[tuple[int, str]] | None:
    """This node's NVIDIA GPUs as ``[(index, uuid hex)]`` from NVML (``pynvml``) if importable, else
    ``nvidia-smi``; None when neither answers (no NVIDIA driver)."""
    try:
        import pynvml
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            pynvml.nvmlInit()
            try:
                rows = []
                for i in range(pynvml.nvmlDeviceGetCount()):
                    uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
                    rows.append(f"{i}, {uuid.decode() if isinstance(uuid, bytes) else uuid}")
                return parse_gpu_table("\n".join(rows))
            finally:
                pynvml.nvmlShutdown()
        except Exception as e:                   # NVML present but unusable: try nvidia-smi
            log.debug("vkbands: NVML failed (%s); trying nvidia-smi", e)
    try:
        res = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_gpu_table(res.stdout) if res.returncode == 0 else None


def choose_worker_device(gpu_ids, table, devices) -> tuple[str | None, str | None]:
    """The device selector for a Ray worker and a one-line warning (or None).

    ``gpu_ids``: ``ray.get_gpu_ids()``; ``table``: :func:`query_gpu_table`'s rows (None: no NVIDIA
    driver); ``devices``: ``engine.describe_devices()``. Returns ``("uuid:<hex>", None)`` for the Vulkan
    device of the assigned GPU; else the CPU device's ``"uuid:<hex>"`` (a device whose type is CPU, e.g.
    lavapipe) with a warning saying why; else ``(None, warning)``: the default device."""
    cpu = [d for d in devices if d.get("type") == "cpu"]
    fallback = (f"using the CPU device {cpu[0]['name']!r}" if cpu else
                "no CPU Vulkan device either, so the default device")
    if not gpu_ids:
        why = "Ray assigned this worker no GPU (num_gpus=0)"
    else:
        uuid = assigned_gpu_uuid(gpu_ids, table or [])
        if uuid is None and table is None:
            why = f"Ray assigned GPU {gpu_ids[0]} but neither NVML nor nvidia-smi answered to name its UUID"
        elif uuid is None:
            why = f"Ray assigned GPU {gpu_ids[0]}, which is not in nvidia-smi's list {[i for i, _ in table]}"
        else:
            hits = [d for d in devices if d.get("uuid") == uuid]
            if hits:
                return f"uuid:{uuid}", None
            why = (f"no Vulkan device has the UUID {uuid} of GPU {gpu_ids[0]} Ray assigned "
                   f"(devices: {', '.join(repr(d['name']) for d in devices) or 'none'})")
    return (f"uuid:{cpu[0]['uuid']}" if cpu else None), f"vkbands worker: {why}; {fallback}"


def _in_ray_worker() -> bool:
    import sys
    ray = sys.modules.get("ray")          # a process that never imported Ray is not a Ray worker
    if ray is None or not ray.is_initialized():
        return False
    return ray.get_runtime_context().worker.mode == ray.WORKER_MODE


_worker_lock = threading.Lock()
_worker = (None, None)                   # (GPU ids, Context) of this worker's context


def worker_context():
    """The vkbands Context of this process, made once per process: :func:`vkbands.default_context`
    outside Ray; in a Ray worker, the device of the GPU Ray assigned (by UUID; see
    :func:`choose_worker_device`), else the CPU device, with a one-line :class:`BackendWarning`.

    In a Ray worker the choice is put in ``VKBANDS_DEVICE`` (``uuid:<hex>``) and the context is the
    process default, so vkbands calls in the task that take no ``ctx`` use the same device. Ray reuses
    worker processes; a task assigned other GPUs than the one before gets a new context."""
    from vkbands.engine import default_context, describe_devices
    if not _in_ray_worker():
        return default_context()
    import ray
    global _worker
    with _worker_lock:
        ids = [str(g) for g in ray.get_gpu_ids()]
        key = tuple(ids)
        if _worker[0] == key and _worker[1] is not None and not _worker[1].closed:
            return _worker[1]
        selector, warning = choose_worker_device(ids, query_gpu_table() if ids else None, describe_devices())
        if warning:
            warnings.warn(warning, BackendWarning, stacklevel=2)
        if selector is None:
            os.environ.pop("VKBANDS_DEVICE", None)
        else:
            os.environ["VKBANDS_DEVICE"] = selector
        ctx = default_context()
        if selector is not None and ctx.device_uuid != selector[5:]:
            ctx.close()                          # made earlier in this worker, on another device
            ctx = default_context()
        _worker = (key, ctx)
        return ctx
