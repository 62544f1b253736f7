"""Device limits are checked before anything runs; work that exceeds them is split or refused with an
error that names the array, its size and the limit; errors from the driver arrive as vkbands errors."""
import numpy as np
import pytest
import vulkan as vk

import vkbands
from vkbands.engine import Context
from vkbands.engine.errors import DeviceLostError, LimitError, OutOfDeviceMemoryError, VulkanError, translate


def test_binding_over_max_storage_buffer_range_is_refused_before_recording(ctx, monkeypatch):
    a = ctx.array(np.ones(4096, np.float32))
    out = ctx.empty(4096)
    monkeypatch.setattr(ctx, "max_storage_buffer_range", 8192)   # 16 KiB arrays, an 8 KiB limit
    k = ctx.kernel("add.comp")
    rec = ctx.recorder()
    with pytest.raises(LimitError, match=r"maxStorageBufferRange.*8192") as e:
        rec.dispatch(k, 1, a, a, out, push={"n": 4096})
    assert "(4096,)" in str(e.value) and rec.dispatch_count == 0
    rec.close()


def test_unaligned_view_binding_is_refused(ctx):
    a = ctx.array(np.arange(10, dtype=np.float32).reshape(10, 1))
    view = a.rows(1, 5)                        # byte offset 4: below any storage-buffer alignment > 4
    if ctx.min_storage_buffer_offset_alignment <= 4:
        pytest.skip("this device accepts 4-byte offsets")
    k = ctx.kernel("add.comp")
    with ctx.recorder() as rec:
        with pytest.raises(LimitError, match="OffsetAlignment"):
            rec.dispatch(k, 1, view, view, view, push={"n": 4})


def test_row_views_bind_their_own_range(ctx):
    """A leading-axis view binds only its rows (offset + range), so work can be split per member."""
    x = np.arange(64 * 8, dtype=np.float32).reshape(64, 8)
    a, out = ctx.array(x), ctx.zeros((64, 8))
    k = ctx.kernel("add.comp")
    with ctx.recorder() as rec:
        for start in (0, 16, 32, 48):          # 16 rows x 32 B = 512 B: any alignment <= 256 holds
            v, o = a.rows(start, start + 16), out.rows(start, start + 16)
            rec.dispatch(k, 1, v, v, o, push={"n": v.size})
    np.testing.assert_array_equal(out.numpy(), 2 * x)
    np.testing.assert_array_equal(a.rows(3, 5).numpy(), x[3:5])


def test_energies_over_the_binding_limit_are_split_per_member(ctx, monkeypatch):
    """vkbands.energies of a batch larger than maxStorageBufferRange runs in member ranges (0.1.0
    bound the whole batch: undefined behaviour past the limit)."""
    x = np.random.default_rng(0).standard_normal((200, 243)).astype(np.float32)
    monkeypatch.setattr(ctx, "max_storage_buffer_range", 64 * 243 * 4)   # 64 members per binding
    got = vkbands.energies(x, arity=3, dims=1)
    ref = vkbands.reference.energies(x, 3, dims=1)
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-5)


def test_add_over_the_binding_limit_is_split(ctx, monkeypatch):
    x = np.random.default_rng(1).standard_normal(100_003).astype(np.float32)
    monkeypatch.setattr(ctx, "max_storage_buffer_range", 1 << 16)
    np.testing.assert_array_equal(vkbands.add(x, x), x + x)


def test_rollout_over_the_binding_limit_is_refused_before_any_work(ctx, monkeypatch):
    monkeypatch.setattr(ctx, "max_storage_buffer_range", 1 << 12)
    x0 = np.zeros((64, 81), np.float32)        # 20 KiB state, a 4 KiB limit
    with pytest.raises(LimitError, match="maxStorageBufferRange"):
        vkbands.rollout("tree", x0, 2, dims=1, ctx=ctx)


def test_allocation_over_the_device_is_refused_with_its_size(ctx):
    too_big = ctx.largest_device_heap // 4 + 1024
    with pytest.raises(OutOfDeviceMemoryError, match="GiB|MiB") as e:
        ctx.empty((too_big, 8), np.float32)
    assert isinstance(e.value, MemoryError) and e.value.nbytes >= too_big * 32
    assert f"({too_big}, 8)" in str(e.value)


def test_workgroup_grid_over_the_limit_is_refused(ctx):
    k = ctx.kernel("add.comp")
    gx, gy, _ = ctx.limits.maxComputeWorkGroupCount
    with pytest.raises(LimitError, match="maxComputeWorkGroupCount"):
        k.grid(int(gx) * int(gy) + 1)


def test_fill_sets_every_byte_of_uint8_arrays(ctx):
    for n in (1, 3, 5, 1001, 4099):
        a = ctx.empty(n, np.uint8)
        a.fill(7)
        np.testing.assert_array_equal(a.numpy(), np.full(n, 7, np.uint8))


def test_staging_is_fixed_size_and_copies_are_chunked(monkeypatch):
    """Uploads/readbacks larger than the staging buffer go through it in chunks (discrete-GPU path
    forced; a 1 MiB staging cap with a 3 MiB array)."""
    with Context() as c:
        c.unified_memory = False
        monkeypatch.setattr(c, "STAGING_BYTES", 1 << 20)
        big = np.random.default_rng(2).standard_normal(3 * (1 << 18) + 5).astype(np.float32)
        a = c.array(big)
        np.testing.assert_array_equal(a.numpy(), big)
        assert c.staging(1).nbytes == 1 << 20
        img = c.image(700, 300, "rgba8")          # 840 KB, > half the staging buffer: chunked by rows
        px = np.random.default_rng(3).integers(0, 256, img.shape).astype(np.uint8)
        img.upload(px)
        np.testing.assert_array_equal(img.numpy(), px)


def test_vulkan_errors_are_translated_at_one_place():
    oom = translate(vk.VkErrorOutOfDeviceMemory(), "allocating a (10, 10) float32 array", 400)
    assert isinstance(oom, OutOfDeviceMemoryError) and isinstance(oom, MemoryError)
    assert "allocating a (10, 10) float32 array" in str(oom) and "400 B" in str(oom)
    assert isinstance(translate(vk.VkErrorOutOfHostMemory(), "x"), OutOfDeviceMemoryError)
    lost = translate(vk.VkErrorDeviceLost(), "waiting for a recording of step_tree.comp x1")
    assert isinstance(lost, DeviceLostError) and "step_tree.comp" in str(lost)
    other = translate(vk.VkErrorInitializationFailed(), "creating a device")
    assert isinstance(other, VulkanError) and "VK_ERROR_INITIALIZATION_FAILED" in str(other)
    timeout = vk.VkTimeout()
    assert translate(timeout, "x") is timeout   # not an error code: the caller's to handle


def test_device_lost_during_wait_names_the_recording(ctx, monkeypatch):
    k = ctx.kernel("add.comp")
    a = ctx.zeros(16)
    rec = ctx.recorder()
    rec.dispatch(k, 1, a, a, a, push={"n": 16})
    rec.submit(wait=False)

    def lost(*args):
        raise vk.VkErrorDeviceLost()
    real = vk.vkWaitForFences
    monkeypatch.setattr(vk, "vkWaitForFences", lost)
    with pytest.raises(DeviceLostError, match=r"add\.comp x1"):
        rec.wait()
    monkeypatch.setattr(vk, "vkWaitForFences", real)
    rec._flight[0] = True
    rec.close()


def test_device_facts_are_queried(ctx):
    assert ctx.max_storage_buffer_range >= 1 << 27          # the spec minimum, 128 MiB
    assert len(ctx.device_uuid) == 32
    assert ctx.driver_name
    if ctx.driver_id == vk.VK_DRIVER_ID_MESA_LLVMPIPE:
        assert ctx.loop_iteration_cap == 65535
    else:
        assert ctx.loop_iteration_cap is None


def test_no_driver_is_a_no_device_error_saying_what_to_install(monkeypatch):
    from vkbands.engine import NoDeviceError, describe_devices

    def incompatible(*args):
        raise vk.VkErrorIncompatibleDriver()
    monkeypatch.setattr(vk, "vkCreateInstance", incompatible)
    with pytest.raises(NoDeviceError, match="no Vulkan driver found.*VK_ERROR_INCOMPATIBLE_DRIVER.*VK_DRIVER_FILES"):
        describe_devices()
    with pytest.raises(NoDeviceError, match="mesa-vulkan-drivers"):
        Context()
