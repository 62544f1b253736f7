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
