"""Engine core: device choice, arrays, images, kernels, shader compilation, errors."""
import os
import textwrap

import numpy as np
import pytest
import vulkan as vk

from vkbands.engine import (Context, DeviceArray, Kernel, NoDeviceError, ShaderCompileError, ValidationError,
                            choose_device, compile_glsl, describe_devices)
from vkbands.engine.spirv import reflect


def test_device_guard(ctx, capsys):
    """Says which device the suite ran on (visible with -s and in the report header)."""
    names = [d["name"] for d in describe_devices()]
    assert ctx.info["name"] in names
    with capsys.disabled():
        print(f"\n[device guard] suite runs on: {ctx.info['name']} ({ctx.info['type']}, "
              f"Vulkan {ctx.info['api']}, driver {ctx.info['driver']}, unified={ctx.unified_memory}, "
              f"validation={ctx.validation})")


def test_choose_device_prefers_discrete_and_honours_selector():
    devs = [dict(index=0, name="llvmpipe", type="cpu"), dict(index=1, name="Big GPU", type="discrete"),
            dict(index=2, name="Small iGPU", type="integrated")]
    assert choose_device(devs) == 1
    assert choose_device(devs, "2") == 2
    assert choose_device(devs, "small") == 2
    with pytest.raises(NoDeviceError, match="no device with that index"):
        choose_device(devs, "7")
    with pytest.raises(NoDeviceError, match="matches no device name"):
        choose_device(devs, "radeon")


def test_env_device_selector_is_used(monkeypatch):
    monkeypatch.setenv("VKBANDS_DEVICE", "no-such-device-name")
    with pytest.raises(NoDeviceError, match="no-such-device-name"):
        Context()


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint32, np.uint8])
def test_array_roundtrip(ctx, dtype):
    x = (np.arange(1000) % 200).astype(dtype).reshape(10, 100)
    with ctx.array(x) as a:
        assert a.shape == (10, 100) and a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a.numpy(), x)
        y = x[::-1].copy()
        a.upload(y)
        np.testing.assert_array_equal(a.numpy(), y)


def test_non_contiguous_is_copied_and_float64_cast(ctx):
    x = np.arange(64, dtype=np.float64).reshape(8, 8)[:, ::2]
    with ctx.array(x) as a:
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a.numpy(), x.astype(np.float32))


def test_bad_dtypes_and_shapes_raise(ctx):
    with pytest.raises(TypeError, match="complex128"):
        ctx.array(np.ones(3, dtype=np.complex128))
    with pytest.raises(TypeError, match="do not fit"):
        ctx.array(np.array([2**40], dtype=np.int64))
    with pytest.raises(TypeError, match="float16.*allowed"):
        ctx.empty(3, np.float16)
    with ctx.empty((2, 3)) as a, pytest.raises(ValueError, match="6"):
        a.upload(np.ones(5))


def test_fill_and_zero_size(ctx):
    with ctx.empty((3, 5), np.int32) as a, ctx.empty((0,)) as z:
        a.fill(-7)
        np.testing.assert_array_equal(a.numpy(), np.full((3, 5), -7, np.int32))
        assert z.numpy().shape == (0,)


def test_reshape_view_shares_memory(ctx):
    with ctx.array(np.arange(12, dtype=np.float32)) as a:
        v = a.reshape(3, -1)
        assert v.shape == (3, 4)
        np.testing.assert_array_equal(v.numpy(), np.arange(12).reshape(3, 4))
        with pytest.raises(ValueError, match="cannot reshape"):
            a.reshape(5, 5)


@pytest.mark.parametrize("fmt,shape,dtype", [("rgba8", (5, 7, 4), np.uint8), ("r32f", (5, 7), np.float32)])
def test_image_created_cleared(ctx, fmt, shape, dtype):
    with ctx.image(5, 7, fmt) as img:
        out = img.numpy()
        assert out.shape == shape and out.dtype == dtype and not out.any()
        assert img.layout == vk.VK_IMAGE_LAYOUT_GENERAL


def test_image_bad_arguments(ctx):
    with pytest.raises(ValueError, match="format='bgr'"):
        ctx.image(4, 4, "bgr")
    with pytest.raises(ValueError, match="0x4"):
        ctx.image(0, 4)


def test_reflection_of_add(ctx):
    k = ctx.kernel("add.comp")
    assert [(b.binding, b.readable, b.writable) for b in k.bindings] == [(0, True, False), (1, True, False),
                                                                       (2, False, True)]
    assert list(k.push_members) == ["n"] and k.push_size == 4
    assert k.local_size == (256, 1, 1)
    k2 = ctx.kernel("add.comp", spec={"LOCAL_X": 64})
    assert k2.local_size == (64, 1, 1) and k2 is not k
    assert ctx.kernel("add.comp") is k  # cached per (shader, defines, spec)


def test_kernel_argument_errors(ctx):
    with pytest.raises(ValueError, match="unknown specialization constant.*NOPE"):
        ctx.kernel("add.comp", spec={"NOPE": 1})
    k = ctx.kernel("add.comp")
    with pytest.raises(ValueError, match="missing \\['n'\\]"):
        k.pack({})
    with ctx.empty(4) as a, ctx.recorder() as rec:
        with pytest.raises(TypeError, match="takes 3 resources"):
            rec.dispatch(k, 1, a, a)
        with pytest.raises(ValueError, match="maxComputeWorkGroupCount"):
            rec.dispatch(k, (10**10, 1, 1), a, a, a, push={"n": 4})
    with pytest.raises(FileNotFoundError, match="no_such.comp"):
        ctx.kernel("no_such.comp")


def test_shader_compile_error_names_the_line(tmp_path, monkeypatch):
    monkeypatch.setenv("VKBANDS_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "broken.comp"
    src.write_text(textwrap.dedent("""\
        #version 450
        layout(local_size_x = 1) in;
        void main() {
            float x = 1.0
        }
    """))
    with pytest.raises(ShaderCompileError) as err:
        compile_glsl(src)
    assert err.value.line in (4, 5) and "broken.comp" in str(err.value)
    assert "error" in err.value.log or err.value.message


def test_spirv_cache_is_keyed_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("VKBANDS_CACHE_DIR", str(tmp_path))
    src = tmp_path / "k.comp"
    src.write_text("#version 450\nlayout(local_size_x = 8) in;\nvoid main() {}\n")
    a = compile_glsl(src)
    n_files = len(list(tmp_path.glob("*.spv")))
    assert compile_glsl(src) == a and len(list(tmp_path.glob("*.spv"))) == n_files == 1
    src.write_text("#version 450\nlayout(local_size_x = 16) in;\nvoid main() {}\n")
    b = compile_glsl(src)
    assert b != a and len(list(tmp_path.glob("*.spv"))) == 2
    assert reflect(b).local_size == (16, 1, 1)
    assert compile_glsl(src, defines={"X": 1}) is not None and len(list(tmp_path.glob("*.spv"))) == 3


@pytest.mark.allow_validation_errors
def test_validation_error_becomes_exception():
    if os.environ.get("VKBANDS_VALIDATION") != "1":
        pytest.skip("validation layer off")
    with Context(validation=True) as c:
        bad = vk.VkBufferCreateInfo(size=0, usage=vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT)  # size 0 is invalid
        try:
            buf = vk.vkCreateBuffer(c.device, bad, None)
        except vk.VkError:
            buf = None
        with pytest.raises(ValidationError, match="size"):
            c.check()
        if buf is not None:
            vk.vkDestroyBuffer(c.device, buf, None)


def test_closed_objects_raise(fresh_ctx):
    a = fresh_ctx.empty(4)
    a.close()
    a.close()  # idempotent
    with pytest.raises(Exception, match="closed"):
        a.numpy()
    b = fresh_ctx.empty(4)
    fresh_ctx.close()
    assert b.closed and fresh_ctx.closed
    fresh_ctx.close()


def test_discrete_gpu_staging_path():
    """The discrete-GPU path (device-local arrays, copies through the mapped staging buffer), forced on
    whatever device runs the suite."""
    import vkbands
    with Context() as c:
        c.unified_memory = False
        x = np.random.default_rng(1).standard_normal((37, 41)).astype(np.float32)
        a = c.array(x)
        assert not a.mappable and a.host_view is None
        np.testing.assert_array_equal(a.numpy(), x)
        b = vkbands.add(a, a)
        np.testing.assert_array_equal(b.numpy(), x + x)
        big = np.arange(3 << 20, dtype=np.float32)     # larger than the first staging buffer: it grows
        with c.array(big) as g:
            np.testing.assert_array_equal(g.numpy(), big)
        a.fill(2.5)
        np.testing.assert_array_equal(a.numpy(), np.full(x.shape, 2.5, np.float32))


@pytest.mark.parametrize("fmt", ["rgba8", "r32f"])
def test_image_upload_roundtrip(ctx, fmt):
    with ctx.image(6, 9, fmt) as img:
        rng = np.random.default_rng(3)
        px = (rng.integers(0, 256, img.shape).astype(np.uint8) if fmt == "rgba8"
              else rng.standard_normal(img.shape).astype(np.float32))
        img.upload(px)
        np.testing.assert_array_equal(img.numpy(), px)
        with pytest.raises(ValueError, match="needs"):
            img.upload(np.zeros((2, 2, 4), np.uint8))


def test_engine_errors_pickle_with_their_type_message_and_attributes():
    """A Ray worker's error reaches the caller as itself (pickled across processes)."""
    import pickle

    from vkbands.engine.errors import (DeviceLostError, LimitError, NoDeviceError, OutOfDeviceMemoryError,
                                       ShaderCompileError, ValidationError, VulkanError)
    errors = [ShaderCompileError("a.comp", 3, "bad token", "log text"), ValidationError(["one", "two"]),
              VulkanError("vkCreateBuffer", "VK_ERROR_INITIALIZATION_FAILED", "detail"),
              OutOfDeviceMemoryError("array x", nbytes=3 << 30, detail="heap 2 GiB"),
              DeviceLostError("dispatch 'step'", "VK_ERROR_DEVICE_LOST"), LimitError("x: 5 GiB > 4 GiB"),
              NoDeviceError("none")]
    for e in errors:
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e) and back.__dict__ == e.__dict__
    assert pickle.loads(pickle.dumps(errors[1])).messages == ["one", "two"]
    assert isinstance(pickle.loads(pickle.dumps(errors[3])), MemoryError)
