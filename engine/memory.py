"""Device memory: :class:`DeviceArray` (the one buffer type) and :class:`StorageImage`.

Memory placement is chosen from the device's memory types:
- unified devices (CPU, integrated): arrays live in host-visible device-local memory, mapped once;
  ``upload``/``numpy`` are one memcpy, no staging buffer;
- discrete GPUs: arrays are device-local; ``upload``/``numpy`` go through the context's reused,
  persistently mapped staging buffer and one recorded copy.
Host<->device copies happen only in ``upload``, ``numpy`` and ``Context.array``.
"""
from __future__ import annotations

import numpy as np
import vulkan as vk

from .resource import Resource

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.uint32), np.dtype(np.uint8))
_BUFFER_USAGE = (vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT
                 | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT | vk.VK_BUFFER_USAGE_VERTEX_BUFFER_BIT
                 | vk.VK_BUFFER_USAGE_INDEX_BUFFER_BIT | vk.VK_BUFFER_USAGE_UNIFORM_BUFFER_BIT)
_HOST = vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT
_COHERENT = vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
_CACHED = vk.VK_MEMORY_PROPERTY_HOST_CACHED_BIT
_LOCAL = vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT
_WHOLE_SIZE = 0xFFFFFFFFFFFFFFFF  # VK_WHOLE_SIZE (the binding exposes it as -1)


def check_dtype(dtype, name="dtype") -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in SUPPORTED_DTYPES:
        allowed = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        raise TypeError(f"{name}={dt}: not supported; allowed dtypes: {allowed}")
    return dt


def as_host_array(data, dtype=None, name="array") -> np.ndarray:
    """``data`` as a C-contiguous NumPy array of a supported dtype (copying only when needed).

    float64 -> float32 and int64 -> int32 are cast when the values survive the cast (same-kind
    narrowing is what every user means); other casts that lose information raise TypeError."""
    arr = np.asarray(data)
    target = np.dtype(dtype) if dtype is not None else None
    if target is None:
        if arr.dtype in SUPPORTED_DTYPES:
            target = arr.dtype
        elif arr.dtype.kind in "fb" or arr.dtype == np.float16:
            target = np.dtype(np.float32)
        elif arr.dtype.kind == "i":
            target = np.dtype(np.int32)
        elif arr.dtype.kind == "u":
            target = np.dtype(np.uint32)
        else:
            raise TypeError(f"{name}: dtype {arr.dtype} cannot be used; allowed: float32, int32, uint32, uint8 "
                            "(or float64/int64 values that fit)")
    check_dtype(target, f"{name} dtype")
    if arr.dtype != target:
        if arr.dtype.kind in "iu" and target.kind in "iu" and arr.size:
            info = np.iinfo(target)
            if arr.min() < info.min or arr.max() > info.max:
                raise TypeError(f"{name}: values of dtype {arr.dtype} do not fit in {target}")
        elif not np.can_cast(arr.dtype, target, casting="same_kind"):
            raise TypeError(f"{name}: dtype {arr.dtype} cannot be cast safely to {target}")
        arr = arr.astype(target)
    return np.ascontiguousarray(arr)


class DeviceArray(Resource):
    """A typed array in Vulkan buffer memory.

    Attributes: ``shape`` (tuple), ``dtype`` (float32 / int32 / uint32 / uint8), ``size`` (elements),
    ``nbytes``, ``buffer`` (VkBuffer), ``ctx``. ``host=True`` places it in host-visible memory (the
    staging buffer uses that); ``host_view`` is then a zero-copy NumPy view of the mapped bytes.
    """

    def __init__(self, ctx, shape, dtype=np.float32, host: bool = False):
        ctx._require_open()
        self.ctx = ctx
        self.shape = tuple(int(s) for s in (shape if np.iterable(shape) else (shape,)))
        if any(s < 0 for s in self.shape):
            raise ValueError(f"shape={self.shape}: dimensions must be >= 0")
        self.dtype = check_dtype(dtype)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.nbytes = self.size * self.dtype.itemsize
        dev = ctx.device
        alloc_bytes = max(self.nbytes, 16)
        self.buffer = vk.vkCreateBuffer(dev, vk.VkBufferCreateInfo(
            size=alloc_bytes, usage=_BUFFER_USAGE, sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE), None)
        req = vk.vkGetBufferMemoryRequirements(dev, self.buffer)
        if host:
            mtype = ctx.memory_type(req.memoryTypeBits, _HOST, _COHERENT | _CACHED)
        elif ctx.unified_memory:
            mtype = ctx.memory_type(req.memoryTypeBits, _HOST | _LOCAL, _COHERENT | _CACHED)
        else:
            mtype = ctx.memory_type(req.memoryTypeBits, _LOCAL)
        try:
            self.memory = vk.vkAllocateMemory(dev, vk.VkMemoryAllocateInfo(
                allocationSize=req.size, memoryTypeIndex=mtype), None)
        except BaseException:
            vk.vkDestroyBuffer(dev, self.buffer, None)
            raise
        vk.vkBindBufferMemory(dev, self.buffer, self.memory, 0)
        flags = ctx.memory_properties.memoryTypes[mtype].propertyFlags
        # Only staging buffers and arrays on unified devices are mapped; a discrete GPU's arrays go
        # through staging even when their memory happens to be host-visible (resizable BAR).
        self.mappable = bool(flags & _HOST) and (host or ctx.unified_memory)
        self._coherent = bool(flags & _COHERENT)
        self._mapped_bytes = req.size
        self.host_view = None
        if self.mappable:
            raw = vk.vkMapMemory(dev, self.memory, 0, req.size, 0)
            self.host_view = np.frombuffer(raw, dtype=self.dtype, count=self.size).reshape(self.shape)
        self._adopt(ctx)
        ctx.check()

    # ------------------------------------------------------------------ host <-> device
    def _sync_range(self, invalidate: bool):
        if self._coherent:
            return
        rng = vk.VkMappedMemoryRange(memory=self.memory, offset=0, size=_WHOLE_SIZE)
        (vk.vkInvalidateMappedMemoryRanges if invalidate else vk.vkFlushMappedMemoryRanges)(
            self.ctx.device, 1, [rng])

    def upload(self, data) -> "DeviceArray":
        """Copy a host array of the same number of elements into this array (cast as ``as_host_array``)."""
        self._require_open()
        host = as_host_array(data, self.dtype, "data")
        if host.size != self.size:
            raise ValueError(f"data has {host.size} elements (shape {host.shape}); this array needs "
                             f"{self.size} (shape {self.shape})")
        if self.nbytes == 0:
            return self
        if self.mappable:
            self.host_view.reshape(-1)[:] = host.reshape(-1)
            self._sync_range(invalidate=False)
        else:
            staging = self.ctx.staging(self.nbytes)
            staging.host_view[: self.nbytes] = host.reshape(-1).view(np.uint8)
            staging._sync_range(invalidate=False)
            with self.ctx.recorder() as rec:
                rec.copy(staging, self, nbytes=self.nbytes)
        return self

    def numpy(self) -> np.ndarray:
        """A new NumPy array with this array's contents (shape ``self.shape``, dtype ``self.dtype``)."""
        self._require_open()
        if self.nbytes == 0:
            return np.empty(self.shape, self.dtype)
        if self.mappable:
            self._sync_range(invalidate=True)
            return self.host_view.copy()
        staging = self.ctx.staging(self.nbytes)
        with self.ctx.recorder() as rec:
            rec.copy(self, staging, nbytes=self.nbytes)
        staging._sync_range(invalidate=True)
        return staging.host_view[: self.nbytes].view(self.dtype).reshape(self.shape).copy()

    def fill(self, value) -> "DeviceArray":
        """Set every element to ``value`` on the device (vkCmdFillBuffer, no host copy)."""
        self._require_open()
        word = np.array([value], dtype=self.dtype)
        if self.dtype.itemsize == 1:
            word = np.repeat(word, 4)
        with self.ctx.recorder() as rec:
            rec.fill(self, int(word.view(np.uint32)[0]))
        return self

    def reshape(self, *shape) -> "DeviceArray":
        """Same buffer, new shape of equal size; the view shares memory and lifetime with this array."""
        shape = tuple(shape[0]) if len(shape) == 1 and np.iterable(shape[0]) else tuple(shape)
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1]))
            shape = tuple(self.size // max(known, 1) if s == -1 else s for s in shape)
        if int(np.prod(shape, dtype=np.int64)) != self.size:
            raise ValueError(f"cannot reshape array of shape {self.shape} into {shape}")
        return _ArrayView(self, shape)

    # ------------------------------------------------------------------ lifetime
    def _destroy(self):
        """Free the buffer and its memory. The caller must not close arrays in use by GPU work still running."""
        self.host_view = None
        if self.mappable:
            vk.vkUnmapMemory(self.ctx.device, self.memory)
        vk.vkDestroyBuffer(self.ctx.device, self.buffer, None)
        vk.vkFreeMemory(self.ctx.device, self.memory, None)

    def __len__(self):
        return self.shape[0] if self.shape else 0

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self):
        state = "closed" if self._closed else ("host" if self.mappable and not self.ctx.unified_memory else "device")
        return f"<vkbands.DeviceArray shape={self.shape} dtype={self.dtype} ({state})>"


class _ArrayView(DeviceArray):
    """A reshaped view of a :class:`DeviceArray`: same buffer, different shape; closing it is a no-op."""

    def __init__(self, base: DeviceArray, shape):  # noqa: super().__init__ deliberately not called
        base._require_open()
        self.base = base
        self.ctx, self.dtype, self.buffer, self.memory = base.ctx, base.dtype, base.buffer, base.memory
        self.shape = tuple(int(s) for s in shape)
        self.size, self.nbytes = base.size, base.nbytes
        self.mappable, self._coherent = base.mappable, base._coherent
        self.host_view = None if base.host_view is None else base.host_view.reshape(self.shape)

    @property
    def _closed(self):
        return self.base._closed

    def close(self):
        pass


_FORMATS = {
    "rgba8": (vk.VK_FORMAT_R8G8B8A8_UNORM, np.uint8, 4),
    "r32f": (vk.VK_FORMAT_R32_SFLOAT, np.float32, 1),
}


class StorageImage(Resource):
    """A 2-D storage image (``format`` "rgba8" or "r32f"), usable as storage, sampled and copy source.

    Created in GENERAL layout and kept there by the recorder (``layout`` tracks the current one).
    ``numpy()`` returns ``(H, W, 4) uint8`` for rgba8 and ``(H, W) float32`` for r32f.
    """

    def __init__(self, ctx, height: int, width: int, format: str = "rgba8"):
        if format not in _FORMATS:
            raise ValueError(f"format={format!r}: allowed formats are {', '.join(_FORMATS)}")
        height, width = int(height), int(width)
        if height < 1 or width < 1:
            raise ValueError(f"image size {height}x{width}: height and width must be >= 1")
        ctx._require_open()
        self.ctx, self.height, self.width, self.format = ctx, height, width, format
        self.vk_format, self.dtype, self.channels = _FORMATS[format]
        self.nbytes = height * width * self.channels * np.dtype(self.dtype).itemsize
        dev = ctx.device
        usage = (vk.VK_IMAGE_USAGE_STORAGE_BIT | vk.VK_IMAGE_USAGE_SAMPLED_BIT
                 | vk.VK_IMAGE_USAGE_TRANSFER_SRC_BIT | vk.VK_IMAGE_USAGE_TRANSFER_DST_BIT)
        info = vk.VkImageCreateInfo(
            imageType=vk.VK_IMAGE_TYPE_2D, format=self.vk_format,
            extent=vk.VkExtent3D(width=width, height=height, depth=1), mipLevels=1, arrayLayers=1,
            samples=vk.VK_SAMPLE_COUNT_1_BIT, tiling=vk.VK_IMAGE_TILING_OPTIMAL, usage=usage,
            sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE, initialLayout=vk.VK_IMAGE_LAYOUT_UNDEFINED)
        self.image = vk.vkCreateImage(dev, info, None)
        req = vk.vkGetImageMemoryRequirements(dev, self.image)
        mtype = ctx.memory_type(req.memoryTypeBits, _LOCAL)
        self.memory = vk.vkAllocateMemory(dev, vk.VkMemoryAllocateInfo(allocationSize=req.size,
                                                                      memoryTypeIndex=mtype), None)
        vk.vkBindImageMemory(dev, self.image, self.memory, 0)
        rng = vk.VkImageSubresourceRange(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, baseMipLevel=0,
                                         levelCount=1, baseArrayLayer=0, layerCount=1)
        self.view = vk.vkCreateImageView(dev, vk.VkImageViewCreateInfo(
            image=self.image, viewType=vk.VK_IMAGE_VIEW_TYPE_2D, format=self.vk_format,
            subresourceRange=rng), None)
        self.layout = vk.VK_IMAGE_LAYOUT_UNDEFINED
        self._adopt(ctx)
        with ctx.recorder() as rec:  # one-time transition to GENERAL, contents zeroed
            rec.clear(self)
        ctx.check()

    @property
    def shape(self):
        return (self.height, self.width, self.channels) if self.channels > 1 else (self.height, self.width)

    def copy_region(self):
        """The VkBufferImageCopy of the whole image to/from a tightly packed buffer."""
        return vk.VkBufferImageCopy(
            bufferOffset=0, bufferRowLength=0, bufferImageHeight=0,
            imageSubresource=vk.VkImageSubresourceLayers(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, mipLevel=0,
                                                         baseArrayLayer=0, layerCount=1),
            imageOffset=vk.VkOffset3D(x=0, y=0, z=0),
            imageExtent=vk.VkExtent3D(width=self.width, height=self.height, depth=1))

    def upload(self, pixels) -> "StorageImage":
        """Copy host pixels (``self.shape``, uint8 for rgba8 / float32 for r32f) into the image."""
        self._require_open()
        data = np.ascontiguousarray(pixels, self.dtype)
        if data.shape != self.shape:
            raise ValueError(f"pixels have shape {data.shape}; this image needs {self.shape}")
        staging = self.ctx.staging(self.nbytes)
        staging.host_view[: self.nbytes] = data.reshape(-1).view(np.uint8)
        staging._sync_range(invalidate=False)
        with self.ctx.recorder() as rec:
            rec.copy_buffer_to_image(staging, self)
        return self

    def numpy(self) -> np.ndarray:
        """Read the image back: ``(H, W, 4) uint8`` (rgba8) or ``(H, W) float32`` (r32f)."""
        self._require_open()
        staging = self.ctx.staging(self.nbytes)
        with self.ctx.recorder() as rec:
            rec.copy_image_to_buffer(self, staging)
        staging._sync_range(invalidate=True)
        return staging.host_view[: self.nbytes].view(self.dtype).reshape(self.shape).copy()

    def _destroy(self):
        vk.vkDestroyImageView(self.ctx.device, self.view, None)
        vk.vkDestroyImage(self.ctx.device, self.image, None)
        vk.vkFreeMemory(self.ctx.device, self.memory, None)

    def __repr__(self):
        return f"<vkbands.StorageImage {self.height}x{self.width} {self.format}>"
