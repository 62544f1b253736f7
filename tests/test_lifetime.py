"""Resource lifetime: thousands of create/close cycles leave live objects and memory flat."""
import gc
import resource

import numpy as np

from vkbands.engine import Context, Kernel


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def test_1000_create_close_cycles_are_flat(fresh_ctx):
    ctx = fresh_ctx
    x = np.ones(1024, np.float32)

    def cycle():
        a = ctx.array(x)
        b = ctx.empty(1024)
        k = Kernel(ctx, "add.comp")            # not the cached one: a new pipeline every cycle
        with ctx.recorder() as rec:
            rec.dispatch(k, 1, a, a, b, push={"n": 1024})
        img = ctx.image(8, 8)
        for obj in (img, k, b, a):
            obj.close()

    for _ in range(100):                       # warm-up: caches, allocator pools
        cycle()
    gc.collect()
    live, rss = ctx.live_objects(), _rss_mb()
    for _ in range(1000):
        cycle()
    gc.collect()
    assert ctx.live_objects() == live
    growth = _rss_mb() - rss
    assert growth < 16, f"process memory grew by {growth:.1f} MiB over 1000 cycles"


def test_context_cycles_close_children():
    for _ in range(20):
        with Context() as ctx:
            a = ctx.empty(16)
            rec = ctx.recorder()
            assert ctx.live_objects() == 2
        assert a.closed and rec.closed and ctx.live_objects() == 0


def test_dropped_results_are_freed():
    """NumPy-style use never calls close(): 200 rounds of ``c = vkbands.add(a, b)`` keep the live
    object count flat (0.1.0 kept every result alive until the context closed: 401 objects)."""
    import vkbands
    with Context() as ctx:
        x = np.arange(1000, dtype=np.float32)
        a, b = ctx.array(x), ctx.array(2 * x)
        c = vkbands.add(a, b)
        live = ctx.live_objects()
        for _ in range(200):
            c = vkbands.add(a, b)
        np.testing.assert_array_equal(c.numpy(), 3 * x)
        assert ctx.live_objects() <= live + 1, ctx.live_object_kinds()


def test_dropped_recorder_in_flight_waits_before_freeing(fresh_ctx):
    """A recorder dropped while its work runs is freed only after that work finished, and the arrays
    it binds stay alive until then (the recording holds them)."""
    ctx = fresh_ctx
    n = 1 << 16
    k = ctx.kernel("add.comp")
    a = ctx.array(np.ones(n, np.float32))
    out = ctx.empty(n)
    rec = ctx.recorder()
    rec.dispatch(k, k.grid(-(-n // (k.local_size[0] * 16))), a, a, out, push={"n": n})
    rec.submit(wait=False)
    del rec, a                                 # the input array is referenced by the recording only
    gc.collect()
    assert ctx.collect() >= 1                  # recorder (waits for its fence) then the array
    np.testing.assert_array_equal(out.numpy(), np.full(n, 2, np.float32))
    assert ctx.live_object_kinds().get("Recorder", 0) == 0


def test_one_lifetime_protocol_for_owners():
    """Python-side owners (Bands, BandPlan, Simulation) report ``closed`` after close(), like arrays."""
    import vkbands
    with Context() as ctx:
        x = ctx.array(np.random.default_rng(0).standard_normal((9, 27)).astype(np.float32))
        bands = vkbands.decompose(x, arity=3, dims=1)
        assert not bands.closed
        bands.close()
        assert bands.closed
        bands.close()                          # idempotent
        sim = vkbands.Simulation(ctx, "heat", np.zeros((8, 8), np.float32))
        state = sim.state
        sim.close()
        assert sim.closed and state.closed


def test_context_close_frees_dropped_and_live_objects():
    ctx = Context()
    keep = ctx.empty(16)
    for _ in range(5):
        ctx.empty(16)                          # dropped at once
    gc.collect()
    assert ctx.live_objects() == 1
    ctx.close()
    assert keep.closed and ctx.live_objects() == 0


def test_freed_array_memory_is_reused():
    """An output dropped by NumPy-style code hands its memory to the next array of the same size (no
    new allocation per call); the pool stays bounded and is freed with the context."""
    import vkbands
    with Context() as ctx:
        x = np.arange(4096, dtype=np.float32)
        a = ctx.array(x)
        c = vkbands.add(a, a)
        before = ctx._blocks.reused
        for _ in range(10):
            c = vkbands.add(a, a)
        np.testing.assert_array_equal(c.numpy(), 2 * x)
        assert ctx._blocks.reused - before >= 9
        assert ctx._blocks.bytes <= ctx._blocks.max_bytes
        z = ctx.zeros(4096)                  # a recycled block is zeroed when asked for zeros
        del c
        gc.collect()
        np.testing.assert_array_equal(ctx.zeros(4096).numpy(), np.zeros(4096, np.float32))
        assert z.numpy().sum() == 0
