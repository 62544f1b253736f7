"""Peer engines for the benchmarks' comparison columns (optional: a peer that is not installed is
reported as such). wgpu-py runs on the same Vulkan driver, so its ratio isolates engine overhead.

wgpu-py 0.32's ``on_submitted_work_done_sync()`` is broken against its bundled wgpu-native
(NOTES_VULKAN.md), so work is waited for by reading 4 bytes back, which costs one tiny copy."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from _timing import median_ms

WGSL = Path(__file__).resolve().parent / "wgsl"


def _device():
    try:
        import wgpu
    except ImportError:
        return None, None
    adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
    return wgpu, adapter.request_device_sync()


def wgpu_add_ms(a: np.ndarray, b: np.ndarray) -> float | None:
    """Median ms of a device-resident a + b (float32, len % 4 == 0) in wgpu, or None without wgpu."""
    run = wgpu_add_runner(a, b)
    return None if run is None else median_ms(run, repeat=9)


def wgpu_add_runner(a: np.ndarray, b: np.ndarray):
    """A callable that runs a device-resident a + b in wgpu and waits (checked once against NumPy),
    for timing interleaved with other cases; None without wgpu."""
    wgpu, dev = _device()
    if dev is None:
        return None
    U = wgpu.BufferUsage
    bufs = [dev.create_buffer_with_data(data=x, usage=U.STORAGE) for x in (a, b)]
    out = dev.create_buffer(size=a.nbytes, usage=U.STORAGE | U.COPY_SRC)
    pipe = dev.create_compute_pipeline(layout="auto", compute={
        "module": dev.create_shader_module(code=(WGSL / "add.wgsl").read_text()), "entry_point": "main"})
    bg = dev.create_bind_group(layout=pipe.get_bind_group_layout(0), entries=[
        {"binding": i, "resource": {"buffer": x, "offset": 0, "size": a.nbytes}} for i, x in enumerate(bufs + [out])])
    groups = -(-a.size // 4 // 1024)

    def run():
        enc = dev.create_command_encoder()
        cp = enc.begin_compute_pass()
        cp.set_pipeline(pipe)
        cp.set_bind_group(0, bg)
        cp.dispatch_workgroups(groups, 1, 1)
        cp.end()
        dev.queue.submit([enc.finish()])
        dev.queue.read_buffer(out, 0, 4)

    run()
    got = np.frombuffer(dev.queue.read_buffer(out), np.float32)
    assert np.array_equal(got, a + b), "wgpu add gave a wrong result"
    return run


def wgpu_heat_ms_per_step(u0: np.ndarray, alpha: float, steps: int = 100) -> float | None:
    """ms per heat step in wgpu with `steps` dispatches in one submission (ping-pong), or None."""
    wgpu, dev = _device()
    if dev is None:
        return None
    U = wgpu.BufferUsage
    h, w = u0.shape
    bufs = [dev.create_buffer_with_data(data=u0.astype(np.float32), usage=U.STORAGE | U.COPY_SRC),
            dev.create_buffer(size=u0.nbytes, usage=U.STORAGE | U.COPY_SRC)]
    params = dev.create_buffer_with_data(data=_params(h, w, alpha), usage=U.UNIFORM)
    pipe = dev.create_compute_pipeline(layout="auto", compute={
        "module": dev.create_shader_module(code=(WGSL / "heat.wgsl").read_text()), "entry_point": "main"})
    bgs = [dev.create_bind_group(layout=pipe.get_bind_group_layout(0), entries=[
        {"binding": 0, "resource": {"buffer": bufs[i], "offset": 0, "size": u0.nbytes}},
        {"binding": 1, "resource": {"buffer": bufs[1 - i], "offset": 0, "size": u0.nbytes}},
        {"binding": 2, "resource": {"buffer": params, "offset": 0, "size": 16}}]) for i in (0, 1)]

    def run():
        enc = dev.create_command_encoder()
        for s in range(steps):
            cp = enc.begin_compute_pass()
            cp.set_pipeline(pipe)
            cp.set_bind_group(0, bgs[s % 2])
            cp.dispatch_workgroups(-(-w // 16), -(-h // 16), 1)
            cp.end()
        dev.queue.submit([enc.finish()])
        dev.queue.read_buffer(bufs[0], 0, 4)

    return median_ms(run, repeat=3, warmup=1) / steps


def _params(h, w, alpha):
    raw = np.zeros(4, np.uint32)
    raw[0], raw[1] = h, w
    raw[2] = np.array([alpha], np.float32).view(np.uint32)[0]
    return raw
