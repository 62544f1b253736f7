"""Recorder: hazard barriers, replay, and no barriers where none are needed."""
import numpy as np

from vkbands.engine import Kernel


def _add(rec, k, a, b, c):
    n = a.size
    rec.dispatch(k, k.grid(max(1, -(-n // (k.local_size[0] * 16)))), a, b, c, push={"n": n})


def test_chain_of_100_dependent_dispatches(ctx):
    """x <- x + 1 a hundred times through ping-pong buffers: every step reads the previous step's output,
    so a missing barrier gives a wrong sum on a real GPU."""
    k = ctx.kernel("add.comp")
    n = 100_003
    x0 = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    ones = ctx.array(np.ones(n, np.float32))
    bufs = [ctx.array(x0), ctx.empty(n)]
    rec = ctx.recorder()
    for i in range(100):
        _add(rec, k, bufs[i % 2], ones, bufs[(i + 1) % 2])
    assert rec.dispatch_count == 100 and rec.barrier_count == 99
    rec.submit()
    expected = x0.copy()
    for _ in range(100):
        expected = expected + np.float32(1)
    np.testing.assert_array_equal(bufs[0].numpy(), expected)
    # Replay: the same command buffer continues from the current contents.
    rec.submit()
    for _ in range(100):
        expected = expected + np.float32(1)
    np.testing.assert_array_equal(bufs[0].numpy(), expected)
    assert rec.submitted == 2
    rec.close()
    for b in (ones, *bufs):
        b.close()


def test_replay_twice_gives_same_result_for_pure_recording(ctx):
    k = ctx.kernel("add.comp")
    a = ctx.array(np.arange(5000, dtype=np.float32))
    b = ctx.array(np.full(5000, 0.5, np.float32))
    c, d = ctx.empty(5000), ctx.empty(5000)
    rec = ctx.recorder()
    _add(rec, k, a, b, c)
    _add(rec, k, c, b, d)
    rec.submit()
    first = d.numpy()
    d.fill(0)
    rec.submit()
    np.testing.assert_array_equal(d.numpy(), first)
    np.testing.assert_array_equal(first, np.arange(5000, dtype=np.float32) + 1)
    rec.close()
    for x in (a, b, c, d):
        x.close()


def test_independent_dispatches_get_no_barrier(ctx):
    k = ctx.kernel("add.comp")
    arrs = [ctx.array(np.full(256, i, np.float32)) for i in range(6)]
    with ctx.recorder() as rec:
        _add(rec, k, arrs[0], arrs[1], arrs[2])
        _add(rec, k, arrs[0], arrs[1], arrs[3])   # read-after-read of 0 and 1: no hazard
        _add(rec, k, arrs[4], arrs[4], arrs[5])
    assert rec.barrier_count == 0
    np.testing.assert_array_equal(arrs[3].numpy(), np.full(256, 1, np.float32))
    np.testing.assert_array_equal(arrs[5].numpy(), np.full(256, 8, np.float32))
    for x in arrs:
        x.close()


def test_write_after_read_gets_a_barrier(ctx):
    k = ctx.kernel("add.comp")
    a, b, c = (ctx.array(np.full(64, v, np.float32)) for v in (1, 2, 0))
    with ctx.recorder() as rec:
        _add(rec, k, a, b, c)       # reads a
        _add(rec, k, b, b, a)       # writes a: WAR hazard
    assert rec.barrier_count == 1
    np.testing.assert_array_equal(c.numpy(), np.full(64, 3, np.float32))
    np.testing.assert_array_equal(a.numpy(), np.full(64, 4, np.float32))
    for x in (a, b, c):
        x.close()


def test_copy_then_dispatch_hazard(ctx):
    k = ctx.kernel("add.comp")
    a = ctx.array(np.arange(300, dtype=np.float32))
    b, c = ctx.empty(300), ctx.empty(300)
    with ctx.recorder() as rec:
        rec.copy(a, b)
        _add(rec, k, b, b, c)       # reads what the copy wrote
    assert rec.barrier_count == 1
    np.testing.assert_array_equal(c.numpy(), 2 * np.arange(300, dtype=np.float32))
    for x in (a, b, c):
        x.close()
