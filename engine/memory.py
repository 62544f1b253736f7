"""Device memory: :class:`DeviceArray` (the one buffer type) and :class:`StorageImage`.

Memory placement is chosen from the device's memory types:
- unified devices (CPU, integrated): arrays live in host-visible device-local memory, mapped once;
  ``upload``/``numpy`` are one memcpy, no staging buffer;
- discrete GPUs: arrays are device-local; ``upload``/``numpy`` go through the context's reused,
  persistently mapped staging buffer and one recorded copy.
Host<->device copies happen only in ``upload``, ``numpy`` and ``Context.array``.
"""
from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np
import vulkan as vk

from .errors import LimitError, OutOfDeviceMemoryError, _human, vulkan_errors
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

    offset = 0          # byte offset in ``buffer`` (non-zero only for range views, see ``rows``)

    def __init__(self, ctx, shape, dtype=np.float32, host: bool = False):
        ctx._require_open()
        self.ctx = ctx
        self.shape = tuple(int(s) for s in (shape if np.iterable(shape) else (shape,)))
        if any(s < 0 for s in self.shape):
            raise ValueError(f"shape={self.shape}: dimensions must be >= 0")
        self.dtype = check_dtype(dtype)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.nbytes = self.size * self.dtype.itemsize
        # Rounded up to whole 32-bit words: vkCmdFillBuffer(VK_WHOLE_SIZE) then reaches every byte.
        alloc_bytes = max(-(-self.nbytes // 4) * 4, 16)
        what = f"a {'staging ' if host else ''}array of shape {self.shape} {self.dtype}"
        _check_allocation(ctx, what, alloc_bytes)
        key = (alloc_bytes, bool(host))
        ctx.collect()                       # arrays dropped just before may hand their memory on
        block = ctx._blocks.take(key) or _new_block(ctx, alloc_bytes, host, what)
        self.buffer, self.memory = block.buffer, block.memory
        flags = ctx.memory_properties.memoryTypes[block.memory_type].propertyFlags
        # Only staging buffers and arrays on unified devices are mapped; a discrete GPU's arrays go
        # through staging even when their memory happens to be host-visible (resizable BAR).
        self.mappable = block.mapped is not None
        self._coherent = bool(flags & _COHERENT)
        self._mapped_bytes = block.size
        self.host_view = None
        if self.mappable:
            self.host_view = np.frombuffer(block.mapped, dtype=self.dtype, count=self.size).reshape(self.shape)
        self._adopt(ctx, _buffer_release(ctx, key, block))
        ctx.check()

    # ------------------------------------------------------------------ host <-> device
    def invalidate(self):
        """Make device writes visible to host reads of ``host_view`` (a no-op on HOST_COHERENT
        memory). Call after the GPU work that wrote this array has finished."""
        self._sync_range(invalidate=True)

    def flush(self):
        """Make host writes to ``host_view`` visible to the device (a no-op on HOST_COHERENT memory)."""
        self._sync_range(invalidate=False)

    def _sync_range(self, invalidate: bool):
        if self._coherent or not self.mappable:
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
        src = host.reshape(-1).view(np.uint8)
        if self.mappable:
            self.host_view.reshape(-1).view(np.uint8)[:] = src
            self.flush()
            return self
        for start, stop, staging in _staged_chunks(self.ctx, self.nbytes):
            staging.host_view[: stop - start] = src[start:stop]
            staging.flush()
            with self.ctx.recorder() as rec:
                rec.copy(staging, self, nbytes=stop - start, dst_offset=start)
        return self

    def numpy(self) -> np.ndarray:
        """A new NumPy array with this array's contents (shape ``self.shape``, dtype ``self.dtype``)."""
        self._require_open()
        if self.nbytes == 0:
            return np.empty(self.shape, self.dtype)
        if self.mappable:
            self.invalidate()
            return self.host_view.copy()
        out = np.empty(self.shape, self.dtype)
        dst = out.reshape(-1).view(np.uint8)
        for start, stop, staging in _staged_chunks(self.ctx, self.nbytes):
            with self.ctx.recorder() as rec:
                rec.copy(self, staging, nbytes=stop - start, src_offset=start)
            staging.invalidate()
            dst[start:stop] = staging.host_view[: stop - start]
        return out

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

    def rows(self, start: int, stop: int) -> "DeviceArray":
        """A view of ``self[start:stop]`` along the leading axis, without a copy: same buffer, bound
        from byte ``offset``. Kernels see the view as a whole array. For binding, ``offset`` must be
        a multiple of the device's ``min_storage_buffer_offset_alignment`` (checked when bound)."""
        if not self.shape:
            raise ValueError("rows() needs an array with a leading axis")
        n = self.shape[0]
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= n:
            raise ValueError(f"rows({start}, {stop}): out of range for a leading axis of length {n}")
        row_bytes = (self.nbytes // n) if n else 0
        return _ArrayView(self, (stop - start,) + self.shape[1:], byte_offset=start * row_bytes)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d DeviceArray")
        return self.shape[0]

    def __getitem__(self, index) -> "DeviceArray":
        """``a[i]`` / ``a[i:j]`` along the leading (batch) axis: a view, no copy (see :meth:`rows`).
        Other indexing needs the data on the host: ``a.numpy()[...]``."""
        if not self.shape:
            raise IndexError("a 0-d DeviceArray cannot be indexed")
        n = self.shape[0]
        if isinstance(index, (int, np.integer)):
            i = int(index) + (n if index < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {int(index)} is out of range for a leading axis of length {n}")
            return self.rows(i, i + 1).reshape(self.shape[1:])
        if isinstance(index, slice) and index.step in (None, 1):
            start, stop, _ = index.indices(n)
            return self.rows(start, max(start, stop))
        raise TypeError(f"DeviceArray indexing: an int or a slice with step 1 along the leading axis (a view "
                        f"without a copy); got {index!r}. Read back first for anything else: a.numpy()[...]")

    def __array__(self, dtype=None, copy=None):
        """``np.asarray(a)``: an explicit readback (always a copy: device memory is not host memory)."""
        if copy is False:
            raise ValueError("a DeviceArray cannot be viewed as a NumPy array without a copy")
        host = self.numpy()
        return host if dtype is None else host.astype(dtype, copy=False)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self):
        state = "closed" if self.closed else ("host" if self.mappable and not self.ctx.unified_memory else "device")
        return f"<vkbands.DeviceArray shape={self.shape} dtype={self.dtype} ({state})>"


class _ArrayView(DeviceArray):
    """A view of a :class:`DeviceArray` (``reshape``, ``rows``): same buffer, another shape and
    possibly a byte offset; it keeps its base alive, and closing it is a no-op."""

    def __init__(self, base: DeviceArray, shape, byte_offset: int = 0):  # noqa: no super().__init__
        base._require_open()
        self.base = base
        self.ctx, self.dtype, self.buffer, self.memory = base.ctx, base.dtype, base.buffer, base.memory
        self.shape = tuple(int(s) for s in shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.nbytes = self.size * self.dtype.itemsize
        self.offset = base.offset + int(byte_offset)
        self.mappable, self._coherent = base.mappable, base._coherent
        self.host_view = None
        if base.host_view is not None:
            flat = base.host_view.reshape(-1).view(np.uint8)
            start = int(byte_offset)
            self.host_view = flat[start:start + self.nbytes].view(self.dtype).reshape(self.shape)

    def _is_closed(self) -> bool:
        return self.base._is_closed()

    def _sync_range(self, invalidate: bool):
        self.base._sync_range(invalidate)

    def close(self):
        pass


class _Block(NamedTuple):
    """A buffer bound to its own memory allocation (mapped when ``mapped`` is not None)."""
    buffer: object
    memory: object
    memory_type: int
    size: int
    mapped: object


def _new_block(ctx, alloc_bytes, host, what) -> _Block:
    """A new buffer + allocation of ``alloc_bytes`` (host-visible for staging and on unified devices).
    Out of device memory, the context's recycled blocks are freed and the allocation tried again."""
    dev = ctx.device
    with vulkan_errors(f"creating {what}", alloc_bytes):
        buffer = vk.vkCreateBuffer(dev, vk.VkBufferCreateInfo(
            size=alloc_bytes, usage=_BUFFER_USAGE, sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE), None)
    try:
        req = vk.vkGetBufferMemoryRequirements(dev, buffer)
        if host:
            mtype = ctx.memory_type(req.memoryTypeBits, _HOST, _COHERENT | _CACHED)
        elif ctx.unified_memory:
            mtype = ctx.memory_type(req.memoryTypeBits, _HOST | _LOCAL, _COHERENT | _CACHED)
        else:
            mtype = ctx.memory_type(req.memoryTypeBits, _LOCAL)
        info = vk.VkMemoryAllocateInfo(allocationSize=req.size, memoryTypeIndex=mtype)
        try:
            memory = vk.vkAllocateMemory(dev, info, None)
        except (vk.VkErrorOutOfDeviceMemory, vk.VkErrorOutOfHostMemory):
            ctx._blocks.clear()
            with vulkan_errors(f"allocating {what}", req.size):
                memory = vk.vkAllocateMemory(dev, info, None)
    except BaseException:
        vk.vkDestroyBuffer(dev, buffer, None)
        raise
    vk.vkBindBufferMemory(dev, buffer, memory, 0)
    flags = ctx.memory_properties.memoryTypes[mtype].propertyFlags
    mapped = None
    if flags & _HOST and (host or ctx.unified_memory):
        mapped = vk.vkMapMemory(dev, memory, 0, req.size, 0)
    return _Block(buffer, memory, mtype, int(req.size), mapped)


def _free_block(device, block: _Block):
    if block.mapped is not None:
        vk.vkUnmapMemory(device, block.memory)
    vk.vkDestroyBuffer(device, block.buffer, None)
    vk.vkFreeMemory(device, block.memory, None)


def _buffer_release(ctx, key, block):
    """The release function of a DeviceArray (references handles only, never the array): the block
    goes back to the context's recycling pool when it has room, else it is freed."""
    device, ctx_ref = ctx.device, weakref.ref(ctx)

    def release():
        owner = ctx_ref()
        if owner is None or owner.closed or not owner._blocks.give(key, block):
            _free_block(device, block)
    return release


class BlockPool:
    """Recently freed array memory, reused for the next array of the same size and kind.

    Allocating is slow on every driver (a GPU allocation takes ~ms; lavapipe's fresh memory costs a
    page fault per 4 KiB on first touch), and NumPy-style code allocates an output per call. At most
    ``max_bytes`` are kept (default 256 MiB, and never more than an eighth of the largest heap); a
    failed allocation empties the pool and tries again. Blocks are only handed back by the release
    of an array, which runs after the GPU work that used it (see engine/resource.py)."""

    def __init__(self, device, max_bytes):
        self.device, self.max_bytes = device, int(max_bytes)
        self._free: dict = {}
        self.bytes = 0
        self.reused = 0

    def take(self, key):
        blocks = self._free.get(key)
        if not blocks:
            return None
        block = blocks.pop()
        self.bytes -= block.size
        self.reused += 1
        return block

    def give(self, key, block) -> bool:
        if self.bytes + block.size > self.max_bytes:
            return False
        self._free.setdefault(key, []).append(block)
        self.bytes += block.size
        return True

    def clear(self):
        """Free every pooled block."""
        for blocks in self._free.values():
            for block in blocks:
                _free_block(self.device, block)
        self._free.clear()
        self.bytes = 0


def _staged_chunks(ctx, nbytes):
    """``(start, stop, staging)`` byte ranges of a host<->device copy through the context's staging
    buffer, each at most its size (Context.STAGING_BYTES)."""
    staging = ctx.staging(nbytes)
    step = staging.nbytes
    for start in range(0, nbytes, step):
        yield start, min(start + step, nbytes), staging


def _check_allocation(ctx, what, nbytes):
    """Refuse (before asking the driver) an allocation larger than the device allows."""
    limit = ctx.max_memory_allocation_size
    if limit and nbytes > limit:
        raise OutOfDeviceMemoryError(f"creating {what}", "over maxMemoryAllocationSize", nbytes,
                                     f"this device allows at most {_human(limit)} in one allocation")
    heap = ctx.largest_device_heap
    if heap and nbytes > heap:
        raise OutOfDeviceMemoryError(f"creating {what}", "over the device's memory", nbytes,
                                     f"its largest memory heap holds {_human(heap)}")


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
        limit = int(ctx.limits.maxImageDimension2D)
        if height > limit or width > limit:
            raise LimitError(f"image size {height}x{width}: over this device's maxImageDimension2D={limit}")
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
        what = f"a {height}x{width} {format} image"
        with vulkan_errors(f"creating {what}", self.nbytes):
            self.image = vk.vkCreateImage(dev, info, None)
        req = vk.vkGetImageMemoryRequirements(dev, self.image)
        try:
            mtype = ctx.memory_type(req.memoryTypeBits, _LOCAL)
            with vulkan_errors(f"allocating {what}", req.size):
                self.memory = vk.vkAllocateMemory(dev, vk.VkMemoryAllocateInfo(allocationSize=req.size,
                                                                              memoryTypeIndex=mtype), None)
        except BaseException:
            vk.vkDestroyImage(dev, self.image, None)
            raise
        vk.vkBindImageMemory(dev, self.image, self.memory, 0)
        rng = vk.VkImageSubresourceRange(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, baseMipLevel=0,
                                         levelCount=1, baseArrayLayer=0, layerCount=1)
        self.view = vk.vkCreateImageView(dev, vk.VkImageViewCreateInfo(
            image=self.image, viewType=vk.VK_IMAGE_VIEW_TYPE_2D, format=self.vk_format,
            subresourceRange=rng), None)
        self.layout = vk.VK_IMAGE_LAYOUT_UNDEFINED
        self._adopt(ctx, _image_release(dev, self.image, self.view, self.memory))
        with ctx.recorder() as rec:  # one-time transition to GENERAL, contents zeroed
            rec.clear(self)
        ctx.check()

    @property
    def shape(self):
        return (self.height, self.width, self.channels) if self.channels > 1 else (self.height, self.width)

    @property
    def row_bytes(self) -> int:
        return self.width * self.channels * np.dtype(self.dtype).itemsize

    def copy_region(self, y0: int = 0, rows: int | None = None, buffer_offset: int = 0):
        """The VkBufferImageCopy of rows ``y0 .. y0+rows`` (default: all) to/from a tightly packed buffer
        starting at ``buffer_offset``."""
        rows = self.height - y0 if rows is None else rows
        return vk.VkBufferImageCopy(
            bufferOffset=buffer_offset, bufferRowLength=0, bufferImageHeight=0,
            imageSubresource=vk.VkImageSubresourceLayers(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, mipLevel=0,
                                                         baseArrayLayer=0, layerCount=1),
            imageOffset=vk.VkOffset3D(x=0, y=int(y0), z=0),
            imageExtent=vk.VkExtent3D(width=self.width, height=int(rows), depth=1))

    def _row_chunks(self):
        """``(y0, rows, staging)`` bands of rows that fit the context's staging buffer."""
        staging = self.ctx.staging(self.nbytes)
        per = max(1, staging.nbytes // self.row_bytes)
        for y0 in range(0, self.height, per):
            yield y0, min(per, self.height - y0), staging

    def upload(self, pixels) -> "StorageImage":
        """Copy host pixels (``self.shape``, uint8 for rgba8 / float32 for r32f) into the image."""
        self._require_open()
        data = np.ascontiguousarray(pixels, self.dtype)
        if data.shape != self.shape:
            raise ValueError(f"pixels have shape {data.shape}; this image needs {self.shape}")
        src = data.reshape(self.height, -1).view(np.uint8)
        for y0, rows, staging in self._row_chunks():
            staging.host_view[: rows * self.row_bytes] = src[y0:y0 + rows].reshape(-1)
            staging.flush()
            with self.ctx.recorder() as rec:
                rec.copy_buffer_to_image(staging, self, y0=y0, rows=rows)
        return self

    def numpy(self) -> np.ndarray:
        """Read the image back: ``(H, W, 4) uint8`` (rgba8) or ``(H, W) float32`` (r32f)."""
        self._require_open()
        out = np.empty(self.shape, self.dtype)
        dst = out.reshape(self.height, -1).view(np.uint8)
        for y0, rows, staging in self._row_chunks():
            with self.ctx.recorder() as rec:
                rec.copy_image_to_buffer(self, staging, y0=y0, rows=rows)
            staging.invalidate()
            dst[y0:y0 + rows] = staging.host_view[: rows * self.row_bytes].reshape(rows, -1)
        return out

    def __repr__(self):
        return f"<vkbands.StorageImage {self.height}x{self.width} {self.format}>"


def _image_release(device, image, view, memory):
    def release():
        vk.vkDestroyImageView(device, view, None)
        vk.vkDestroyImage(device, image, None)
        vk.vkFreeMemory(device, memory, None)
    return release
