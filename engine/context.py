"""The Vulkan context: instance, physical-device choice, one queue, debug messenger, close order.

``with Context() as ctx:`` or ``ctx = Context(); ...; ctx.close()``. Every object the context creates
(arrays, images, kernels, recorders) is registered as its child and closed, newest first, when the
context closes. ``default_context()`` gives a lazily created process-wide context that ``atexit`` closes.

Environment:
- ``VKBANDS_DEVICE``: index (as listed by ``vkbands devices``), case-insensitive name substring, or
  ``uuid:<hex>``: the device whose ``deviceUUID`` (VkPhysicalDeviceIDProperties) is that UUID; NVIDIA's
  ``GPU-xxxxxxxx-xxxx-...`` form is accepted (it is the same UUID), which is how a Ray worker picks the
  GPU Ray assigned it (``vkbands._backends.worker_context``).
- ``VKBANDS_VALIDATION=1``: enable ``VK_LAYER_KHRONOS_validation``; its errors raise
  :class:`ValidationError` from the engine call during which they were reported.
"""
from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading

import numpy as np
import vulkan as vk

from .errors import ClosedError, NoDeviceError, ValidationError, vulkan_errors

log = logging.getLogger("vkbands")

_DEVICE_TYPE_NAMES = {
    vk.VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: "discrete",
    vk.VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: "integrated",
    vk.VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: "virtual",
    vk.VK_PHYSICAL_DEVICE_TYPE_CPU: "cpu",
    vk.VK_PHYSICAL_DEVICE_TYPE_OTHER: "other",
}
_TYPE_RANK = {"discrete": 0, "integrated": 1, "virtual": 2, "cpu": 3, "other": 4}
_VALIDATION_LAYER = "VK_LAYER_KHRONOS_validation"

# The `vulkan` package has one module-wide slot per callback type, so one messenger callback serves
# every context; it routes each message by the context id carried in pUserData.
_live_contexts: dict[int, "Context"] = {}
_ids = itertools.count(1)
_error_count = 0
_warning_count = 0


def validation_error_count() -> int:
    """Validation errors reported in this process so far, over all contexts (the test suite asserts
    that no test adds any)."""
    return _error_count


def validation_warning_count() -> int:
    """Validation-type warnings reported in this process so far (the test suite fails on these too)."""
    return _warning_count


def _debug_callback(severity, types, callback_data, user_data):
    global _error_count, _warning_count
    ctx = _live_contexts.get(int(vk.ffi.cast("uintptr_t", user_data)))
    msg = vk.ffi.string(callback_data.pMessage).decode("utf-8", "replace")
    if severity & vk.VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT:
        _error_count += 1
        log.error("vulkan: %s", msg)
        if ctx is not None:
            ctx._validation_errors.append(msg)
            ctx.validation_log.append(msg)
    elif severity & vk.VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT:
        if types & vk.VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT:
            _warning_count += 1
        log.warning("vulkan: %s", msg)
    return vk.VK_FALSE


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _version_str(v: int) -> str:
    return f"{vk.VK_VERSION_MAJOR(v)}.{vk.VK_VERSION_MINOR(v)}.{vk.VK_VERSION_PATCH(v)}"


def _driver_version_str(props) -> str:
    v = props.driverVersion
    if props.vendorID == 0x10DE:  # NVIDIA packs 10.8.8.6 bits
        return f"{v >> 22}.{(v >> 14) & 0xFF}.{(v >> 6) & 0xFF}"
    return _version_str(v)


def describe_devices(instance=None) -> list[dict]:
    """Every Vulkan physical device as a dict: index, name, type, driver, api, heaps (list of
    (bytes, device_local)), and ``unified`` (a host-visible device-local type spans the main heap)."""
    own = instance is None
    if own:
        app = vk.VkApplicationInfo(pApplicationName="vkbands", apiVersion=vk.VK_MAKE_VERSION(1, 2, 0))
        info = vk.VkInstanceCreateInfo(pApplicationInfo=app)
        instance = _create_instance_or_explain(info)
    try:
        out = []
        for i, pd in enumerate(vk.vkEnumeratePhysicalDevices(instance)):
            p = vk.vkGetPhysicalDeviceProperties(pd)
            mem = vk.vkGetPhysicalDeviceMemoryProperties(pd)
            heaps = [(int(mem.memoryHeaps[h].size), bool(mem.memoryHeaps[h].flags & vk.VK_MEMORY_HEAP_DEVICE_LOCAL_BIT))
                     for h in range(mem.memoryHeapCount)]
            kind = _DEVICE_TYPE_NAMES.get(p.deviceType, "other")
            sg = vk.VkPhysicalDeviceSubgroupProperties()
            drv = vk.VkPhysicalDeviceDriverProperties(pNext=sg)
            ids = vk.VkPhysicalDeviceIDProperties(pNext=drv)
            vk.vkGetPhysicalDeviceProperties2(pd, vk.VkPhysicalDeviceProperties2(pNext=ids))
            out.append(dict(index=i, name=p.deviceName, type=kind, api=_version_str(p.apiVersion),
                            driver=_driver_version_str(p), vendor_id=p.vendorID, heaps=heaps,
                            unified=_is_unified(mem, kind), uuid=bytes(ids.deviceUUID).hex(),
                            driver_name=vk.ffi.string(drv.driverName).decode("utf-8", "replace"),
                            subgroup_size=int(sg.subgroupSize),
                            max_storage_buffer_range=int(p.limits.maxStorageBufferRange)))
        return out
    finally:
        if own:
            vk.vkDestroyInstance(instance, None)


_NO_DRIVER = ("no Vulkan driver found ({result}); install one (Debian: apt-get install mesa-vulkan-drivers; "
              "NVIDIA/AMD: the vendor driver), or point VK_DRIVER_FILES at its ICD json")


def _create_instance_or_explain(info):
    """vkCreateInstance; no usable driver (INCOMPATIBLE_DRIVER / INITIALIZATION_FAILED) becomes
    :class:`NoDeviceError` saying what to install."""
    try:
        return vk.vkCreateInstance(info, None)
    except (vk.VkErrorIncompatibleDriver, vk.VkErrorInitializationFailed) as e:
        from .errors import result_name
        raise NoDeviceError(_NO_DRIVER.format(result=result_name(e))) from None


def _is_unified(mem, kind: str) -> bool:
    """True when device memory is host memory (CPU/integrated devices): no staging copy is needed.

    Decided from memory types, not names: a HOST_VISIBLE|DEVICE_LOCAL type must live on the largest
    device-local heap. Discrete GPUs are excluded even then (resizable-BAR VRAM is slow to read).
    """
    if kind == "discrete":
        return False
    want = vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT
    sizes = [mem.memoryHeaps[h].size for h in range(mem.memoryHeapCount)
             if mem.memoryHeaps[h].flags & vk.VK_MEMORY_HEAP_DEVICE_LOCAL_BIT]
    biggest = max(sizes, default=0)
    return any((mem.memoryTypes[t].propertyFlags & want) == want
               and mem.memoryHeaps[mem.memoryTypes[t].heapIndex].size == biggest
               for t in range(mem.memoryTypeCount))


def normalize_uuid(uuid: str) -> str:
    """A device UUID as 32 lower-case hex digits: Vulkan's ``deviceUUID`` hex as-is, NVIDIA's
    ``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`` (nvidia-smi, NVML, CUDA) without the prefix and dashes.
    Anything else is a :class:`NoDeviceError` naming the value."""
    text = str(uuid).strip().lower()
    if text.startswith("uuid:"):
        text = text[5:]
    if text.startswith("gpu-"):
        text = text[4:]
    hexed = text.replace("-", "")
    if len(hexed) != 32 or any(c not in "0123456789abcdef" for c in hexed):
        raise NoDeviceError(f"device UUID {uuid!r} is not a UUID: expected 32 hex digits, optionally as "
                            "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")
    return hexed


def choose_device(devices: list[dict], selector: str | None = None) -> int:
    """Index of the device to use: ``selector`` (index, name substring, or ``uuid:<hex>`` matched
    against each device's ``uuid``) or discrete > integrated > virtual > CPU."""
    if not devices:
        raise NoDeviceError("no Vulkan device found (on Debian: apt-get install mesa-vulkan-drivers)")
    if selector:
        if selector.strip().lower().startswith("uuid:"):
            want = normalize_uuid(selector)
            hits = [d["index"] for d in devices if d.get("uuid") == want]
            if not hits:
                known = ", ".join(f"{d['index']} {d['name']!r} uuid:{d.get('uuid')}" for d in devices)
                raise NoDeviceError(f"device UUID {want} ({selector!r}) matches no device; devices: {known}")
            return hits[0]
        if selector.strip().isdigit():
            idx = int(selector)
            if idx >= len(devices):
                raise NoDeviceError(f"VKBANDS_DEVICE={selector!r}: no device with that index; "
                                    f"valid indices 0..{len(devices) - 1}")
            return idx
        hits = [d["index"] for d in devices if selector.lower() in d["name"].lower()]
        if not hits:
            names = ", ".join(d["name"] for d in devices)
            raise NoDeviceError(f"VKBANDS_DEVICE={selector!r} matches no device name; devices: {names}")
        return hits[0]
    return min(devices, key=lambda d: (_TYPE_RANK[d["type"]], d["index"]))["index"]


class Context:
    """A Vulkan device and queue with everything vkbands needs to run kernels on it.

    Args:
        device: index, name substring or ``"uuid:<hex>"``; default ``$VKBANDS_DEVICE`` or the best device.
        device_uuid: the device whose ``deviceUUID`` is this (hex, or NVIDIA's ``GPU-...`` form); instead
            of ``device``. No such device: :class:`NoDeviceError` listing every device's UUID.
        validation: enable the Khronos validation layer; default ``$VKBANDS_VALIDATION``.
        instance_extensions / device_extensions: extra extensions (the viewer passes GLFW's surface
            extensions and ``VK_KHR_swapchain``).
        surface: ``make_surface(instance) -> VkSurfaceKHR`` for a context that presents (the viewer);
            the device and queue family are then chosen among those that can present to it, and the
            context owns the surface (``ctx.surface``, destroyed before the instance). A compute-only
            context (the default) never asks for presentation support.

    Device facts used by vkbands (all queried, none assumed): ``limits`` (VkPhysicalDeviceLimits),
    ``max_storage_buffer_range``, ``min_storage_buffer_offset_alignment``, ``non_coherent_atom_size``,
    ``driver_id`` / ``driver_name``, ``device_uuid`` (hex, equals the CUDA UUID on NVIDIA),
    ``loop_iteration_cap`` (65535 on llvmpipe, which silently leaves longer shader loops; else None),
    ``subgroup_size`` / ``subgroup_shuffle``, and ``subgroup_size_control`` (pipelines may require a
    subgroup size in ``[min_subgroup_size, max_subgroup_size]`` with full subgroups).
    """

    def __init__(self, device: int | str | None = None, validation: bool | None = None,
                 instance_extensions=(), device_extensions=(), surface=None, *, device_uuid: str | None = None):
        self._closed = True
        if device_uuid is not None:
            if device is not None:
                raise ValueError(f"Context(device={device!r}, device_uuid={device_uuid!r}): give one of them")
            device = "uuid:" + normalize_uuid(device_uuid)
        self._id = next(_ids)
        self._tracked: dict = {}          # serial -> engine.resource.TrackedEntry, creation order
        self._graveyard: list = []         # serials of dropped objects, freed at the next safe point
        self._serials = itertools.count(1)
        self._validation_errors: list[str] = []
        self.validation_log: list[str] = []  # every validation error seen (tests assert it stays empty)
        self._lock = threading.Lock()
        self.validation = _env_flag("VKBANDS_VALIDATION") if validation is None else bool(validation)
        self.surface = None
        self._probes: dict = {}
        with vulkan_errors("creating the Vulkan instance (is a Vulkan driver installed? "
                           "Debian: apt-get install mesa-vulkan-drivers)"):
            self._create_instance(list(instance_extensions))
        try:
            with vulkan_errors("choosing and opening a Vulkan device"):
                if surface is not None:
                    self.surface = surface(self.instance)
                self._pick_device(os.environ.get("VKBANDS_DEVICE") if device is None else str(device))
                self._create_device(list(device_extensions))
        except BaseException:
            self._destroy_instance()
            raise
        self._closed = False
        self._staging = None
        self._kernels: dict = {}
        from .memory import BlockPool
        self._blocks = BlockPool(self.device, min(self.POOL_BYTES, self.largest_device_heap // 8 or self.POOL_BYTES))

    # ---------------------------------------------------------------- creation
    def _create_instance(self, extensions):
        available_layers = {l.layerName for l in vk.vkEnumerateInstanceLayerProperties()}
        layers = []
        if self.validation:
            if _VALIDATION_LAYER not in available_layers:
                raise NoDeviceError(f"VKBANDS_VALIDATION is on but {_VALIDATION_LAYER} is not installed "
                                    "(on Debian: apt-get install vulkan-validationlayers)")
            layers.append(_VALIDATION_LAYER)
            extensions = extensions + [vk.VK_EXT_DEBUG_UTILS_EXTENSION_NAME]
        app = vk.VkApplicationInfo(pApplicationName="vkbands", applicationVersion=1, pEngineName="vkbands",
                                   engineVersion=1, apiVersion=vk.VK_MAKE_VERSION(1, 2, 0))
        info = vk.VkInstanceCreateInfo(pApplicationInfo=app, ppEnabledLayerNames=layers,
                                       ppEnabledExtensionNames=extensions)
        self.instance = _create_instance_or_explain(info)
        self.instance_extensions = extensions
        self._messenger = None
        if self.validation:
            _live_contexts[self._id] = self
            severity = (vk.VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT
                        | vk.VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT)
            # Performance hints are left out: e.g. GENERAL-layout copies are this engine's deliberate choice.
            mtypes = vk.VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | vk.VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT
            minfo = vk.VkDebugUtilsMessengerCreateInfoEXT(messageSeverity=severity, messageType=mtypes,
                                                          pfnUserCallback=_debug_callback,
                                                          pUserData=vk.ffi.cast("void*", self._id))
            create = vk.vkGetInstanceProcAddr(self.instance, "vkCreateDebugUtilsMessengerEXT")
            self._messenger = create(self.instance, minfo, None)

    def _pick_device(self, selector):
        self.devices = describe_devices(self.instance)
        physical = vk.vkEnumeratePhysicalDevices(self.instance)
        candidates = self.devices
        if self.surface is not None:
            candidates = [d for d in self.devices if self._present_families(physical[d["index"]])]
            if not candidates:
                names = ", ".join(d["name"] for d in self.devices) or "none"
                raise NoDeviceError(f"no Vulkan device can present to this window's surface (devices: {names}); "
                                    "headless GPU nodes usually cannot present to a virtual display")
            if selector:
                chosen = self.devices[choose_device(self.devices, selector)]
                if chosen not in candidates:
                    raise NoDeviceError(f"VKBANDS_DEVICE={selector!r} selects {chosen['name']!r}, which cannot "
                                        f"present to this window's surface; devices that can: "
                                        f"{', '.join(d['name'] for d in candidates)}")
        self.device_index = choose_device(candidates, selector) if not selector or self.surface is None \
            else choose_device(self.devices, selector)
        self.physical_device = physical[self.device_index]
        self.info = self.devices[self.device_index]
        self.properties = vk.vkGetPhysicalDeviceProperties(self.physical_device)
        self.limits = lim = self.properties.limits
        self.max_storage_buffer_range = int(lim.maxStorageBufferRange)
        self.min_storage_buffer_offset_alignment = int(lim.minStorageBufferOffsetAlignment)
        self.non_coherent_atom_size = int(lim.nonCoherentAtomSize)
        self.memory_properties = vk.vkGetPhysicalDeviceMemoryProperties(self.physical_device)
        self.unified_memory = self.info["unified"]
        ext_names = {e.extensionName for e in vk.vkEnumerateDeviceExtensionProperties(self.physical_device, None)}
        self.available_device_extensions = ext_names
        # Vulkan 1.1/1.2 properties: subgroups, driver identity, device UUID; subgroup size control
        # (VK_EXT_subgroup_size_control) where the driver offers it.
        m3 = vk.VkPhysicalDeviceMaintenance3Properties()
        sg = vk.VkPhysicalDeviceSubgroupProperties(pNext=m3)
        drv = vk.VkPhysicalDeviceDriverProperties(pNext=sg)
        ids = vk.VkPhysicalDeviceIDProperties(pNext=drv)
        has_ssc = "VK_EXT_subgroup_size_control" in ext_names
        ssc = vk.VkPhysicalDeviceSubgroupSizeControlProperties(pNext=ids) if has_ssc else None
        vk.vkGetPhysicalDeviceProperties2(self.physical_device, vk.VkPhysicalDeviceProperties2(pNext=ssc or ids))
        self.subgroup_size = int(sg.subgroupSize)
        self.subgroup_shuffle = bool(sg.supportedOperations & vk.VK_SUBGROUP_FEATURE_SHUFFLE_BIT
                                     and sg.supportedStages & vk.VK_SHADER_STAGE_COMPUTE_BIT)
        self.max_memory_allocation_size = int(m3.maxMemoryAllocationSize)
        mem = self.memory_properties
        self.largest_device_heap = max((int(mem.memoryHeaps[h].size) for h in range(mem.memoryHeapCount)
                                        if mem.memoryHeaps[h].flags & vk.VK_MEMORY_HEAP_DEVICE_LOCAL_BIT), default=0)
        self.driver_id = int(drv.driverID)
        self.driver_name = vk.ffi.string(drv.driverName).decode("utf-8", "replace")
        self.device_uuid = bytes(ids.deviceUUID).hex()
        self.loop_iteration_cap = 65535 if self.driver_id == vk.VK_DRIVER_ID_MESA_LLVMPIPE else None
        self.subgroup_size_control = False
        self.min_subgroup_size = self.max_subgroup_size = self.subgroup_size
        if ssc is not None and ssc.requiredSubgroupSizeStages & vk.VK_SHADER_STAGE_COMPUTE_BIT:
            feats = vk.VkPhysicalDeviceSubgroupSizeControlFeatures()
            vk.vkGetPhysicalDeviceFeatures2(self.physical_device, vk.VkPhysicalDeviceFeatures2(pNext=feats))
            if feats.subgroupSizeControl and feats.computeFullSubgroups:
                self.subgroup_size_control = True
                self.min_subgroup_size, self.max_subgroup_size = int(ssc.minSubgroupSize), int(ssc.maxSubgroupSize)

    def _present_families(self, physical) -> list[int]:
        """Queue families of ``physical`` with compute, graphics and presentation to ``self.surface``."""
        support = vk.vkGetInstanceProcAddr(self.instance, "vkGetPhysicalDeviceSurfaceSupportKHR")
        want = vk.VK_QUEUE_COMPUTE_BIT | vk.VK_QUEUE_GRAPHICS_BIT
        return [i for i, f in enumerate(vk.vkGetPhysicalDeviceQueueFamilyProperties(physical))
                if (f.queueFlags & want) == want and support(physical, i, self.surface)]

    def _create_device(self, extensions):
        families = vk.vkGetPhysicalDeviceQueueFamilyProperties(self.physical_device)
        want = vk.VK_QUEUE_COMPUTE_BIT | vk.VK_QUEUE_GRAPHICS_BIT
        ranked = sorted(range(len(families)), key=lambda i: (
            (families[i].queueFlags & want) != want, not families[i].queueFlags & vk.VK_QUEUE_COMPUTE_BIT))
        if self.surface is not None:
            ranked = self._present_families(self.physical_device)
        self.queue_family = ranked[0]
        if not families[self.queue_family].queueFlags & vk.VK_QUEUE_COMPUTE_BIT:
            raise NoDeviceError(f"device {self.info['name']!r} has no compute queue")
        self.timestamp_valid_bits = families[self.queue_family].timestampValidBits
        priorities = [1.0]  # kept alive in locals until vkCreateDevice returns (cffi keeps no reference)
        qinfo = vk.VkDeviceQueueCreateInfo(queueFamilyIndex=self.queue_family, queueCount=1,
                                           pQueuePriorities=priorities)
        qinfos = [qinfo]
        features = None
        if self.subgroup_size_control:
            extensions = extensions + ["VK_EXT_subgroup_size_control"]
            features = vk.VkPhysicalDeviceSubgroupSizeControlFeatures(subgroupSizeControl=vk.VK_TRUE,
                                                                      computeFullSubgroups=vk.VK_TRUE)
        dinfo = vk.VkDeviceCreateInfo(pNext=features, pQueueCreateInfos=qinfos, queueCreateInfoCount=1,
                                      ppEnabledExtensionNames=extensions)
        with vulkan_errors(f"creating a device on {self.info['name']!r}"):
            self.device = vk.vkCreateDevice(self.physical_device, dinfo, None)
        self.device_extensions = extensions
        self.queue = vk.vkGetDeviceQueue(self.device, self.queue_family, 0)
        pinfo = vk.VkCommandPoolCreateInfo(queueFamilyIndex=self.queue_family,
                                           flags=vk.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT)
        self.command_pool = vk.vkCreateCommandPool(self.device, pinfo, None)
        self.pipeline_cache = vk.vkCreatePipelineCache(self.device, vk.VkPipelineCacheCreateInfo(), None)
        self.check()

    def cache(self, key, make):
        """The object ``make(ctx)`` made once per context under ``key`` and kept until the context
        closes (made again if it was closed): measured device facts (``engine.probes``) and reusable
        plans (``vkbands.bands``' band plans). Not a module-level cache: it dies with its context."""
        hit = self._probes.get(key)
        if hit is None or getattr(hit, "closed", False):
            hit = self._probes[key] = make(self)
        return hit

    probe = cache   # the name used for measured device facts

    # ---------------------------------------------------------------- bookkeeping
    def _track(self, obj, release, waits=False):
        """Register a Resource (see ``engine.resource``); returns its entry. A safe point: handles
        of dropped objects are freed here first."""
        from .resource import TrackedEntry
        self._require_open()
        self.collect()
        serial = next(self._serials)
        entry = self._tracked[serial] = TrackedEntry(self, obj, release, waits, serial)
        return entry

    def _untrack(self, serial):
        self._tracked.pop(serial, None)

    def collect(self) -> int:
        """Free the handles of objects the program dropped without ``close()`` (recorders first:
        they wait for their own GPU work). Called at every safe point; returns how many were freed."""
        if not self._graveyard or self._closed:
            return 0
        buried, self._graveyard[:] = list(self._graveyard), []
        entries = [self._tracked[s] for s in buried if s in self._tracked]
        entries.sort(key=lambda e: (not e.waits, -e.serial))
        for e in entries:
            e.release_now()
        return len(entries)

    def _require_open(self):
        if self._closed:
            raise ClosedError("this vkbands Context is closed")

    def live_objects(self) -> int:
        """Number of live device objects (arrays, images, kernels, recorders, ...), after freeing the
        ones that were dropped: flat across create/close (or create/drop) cycles."""
        self.collect()
        return len(self._tracked)

    def live_object_kinds(self) -> dict:
        """``{type name: count}`` of the live device objects (diagnostics; the context's own staging
        buffer is listed as ``"staging"``)."""
        self.collect()
        out = {}
        staging = self._staging._entry if self._staging is not None else None
        for e in self._tracked.values():
            kind = "staging" if e is staging else e.kind
            out[kind] = out.get(kind, 0) + 1
        return out

    def check(self):
        """Raise :class:`ValidationError` if the validation layer reported errors since the last check."""
        if self._validation_errors:
            errs, self._validation_errors = self._validation_errors, []
            raise ValidationError(errs)

    # ---------------------------------------------------------------- memory types
    def memory_type(self, type_bits: int, required: int, preferred: int = 0) -> int:
        """Index of a memory type allowed by ``type_bits`` with all ``required`` flags, preferring
        ``preferred`` flags (most of them wins)."""
        mem = self.memory_properties
        best, best_score = None, -1
        for i in range(mem.memoryTypeCount):
            flags = mem.memoryTypes[i].propertyFlags
            if type_bits & (1 << i) and (flags & required) == required:
                score = bin(flags & preferred).count("1")
                if score > best_score:
                    best, best_score = i, score
        if best is None:
            raise MemoryError(f"no memory type with flags {required:#x} among bits {type_bits:#b}")
        return best

    # ---------------------------------------------------------------- factories
    def empty(self, shape, dtype=np.float32, host: bool = False):
        """Uninitialised :class:`DeviceArray`; ``host=True`` puts it in host-visible memory (staging)."""
        from .memory import DeviceArray
        return DeviceArray(self, shape, dtype, host=host)

    def zeros(self, shape, dtype=np.float32):
        a = self.empty(shape, dtype)
        a.fill(0)
        return a

    def array(self, data, dtype=None):
        """Upload a NumPy array (copied; any layout) to a new :class:`DeviceArray`."""
        from .memory import DeviceArray, as_host_array
        host = as_host_array(data, dtype, "data")
        arr = DeviceArray(self, host.shape, host.dtype)
        arr.upload(host)
        return arr

    def image(self, height: int, width: int, format: str = "rgba8"):
        """A 2-D :class:`StorageImage` (``format`` "rgba8" or "r32f"), in GENERAL layout."""
        from .memory import StorageImage
        return StorageImage(self, height, width, format)

    def kernel(self, shader: str, defines: dict | None = None, spec: dict | None = None,
               subgroup_size: int | None = None):
        """The compute :class:`Kernel` for a GLSL file in ``shaders/`` (cached per context by
        shader, defines, specialisation constants and required subgroup size)."""
        from .kernel import Kernel
        key = (shader, tuple(sorted((defines or {}).items())), tuple(sorted((spec or {}).items())), subgroup_size)
        k = self._kernels.get(key)
        if k is None or k.closed:
            k = self._kernels[key] = Kernel(self, shader, defines=defines, spec=spec, subgroup_size=subgroup_size)
        return k

    def recorder(self):
        """A new :class:`Recorder` (one command buffer)."""
        from .recorder import Recorder
        return Recorder(self)

    STAGING_BYTES = 32 << 20   # the staging buffer never grows past this; larger copies are chunked
    POOL_BYTES = 256 << 20     # freed array memory kept for reuse (engine.memory.BlockPool)

    def staging(self, nbytes: int):
        """The context's reused, persistently mapped host buffer: at least ``min(nbytes,
        STAGING_BYTES)`` bytes. Copies larger than that go through it in chunks
        (``DeviceArray.upload`` / ``numpy``)."""
        want = min(int(nbytes), self.STAGING_BYTES)
        if self._staging is None or self._staging.nbytes < want:
            old, self._staging = self._staging, None
            if old is not None:
                old.close()
            size = min(max(want, 1 << 20, 0 if old is None else 2 * old.nbytes), self.STAGING_BYTES)
            self._staging = self.empty((size,), np.uint8, host=True)
        return self._staging

    def wait_fence(self, fence, timeout_s: float = 120.0, what: str = "GPU work"):
        """Block on ``fence``; a GPU hang becomes a TimeoutError instead of a freeze, a lost device a
        :class:`DeviceLostError` naming ``what``. A safe point (dropped objects are freed after)."""
        try:
            with vulkan_errors(lambda: f"waiting for {what}"):
                vk.vkWaitForFences(self.device, 1, [fence], vk.VK_TRUE, int(timeout_s * 1e9))
        except vk.VkTimeout:
            raise TimeoutError(f"{what} did not finish within {timeout_s} s") from None
        self.check()
        self.collect()

    def wait_idle(self):
        if not self._closed:
            vk.vkDeviceWaitIdle(self.device)

    # ---------------------------------------------------------------- lifetime
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self):
        """Wait for the device, free every object it still tracks newest first (dropped ones
        included), then destroy device and instance. Idempotent."""
        if self._closed:
            return
        try:
            vk.vkDeviceWaitIdle(self.device)
        except vk.VkError:
            pass                      # a lost device: free what we can
        finally:
            self._staging = None
            self.collect()
            for entry in reversed(list(self._tracked.values())):
                entry.release_now()
            self._tracked.clear()
            self._blocks.clear()
            self._kernels.clear()
            self._probes.clear()
            vk.vkDestroyPipelineCache(self.device, self.pipeline_cache, None)
            vk.vkDestroyCommandPool(self.device, self.command_pool, None)
            vk.vkDestroyDevice(self.device, None)
            self._closed = True
            self._destroy_instance()

    def _destroy_instance(self):
        if self.surface is not None:
            destroy = vk.vkGetInstanceProcAddr(self.instance, "vkDestroySurfaceKHR")
            destroy(self.instance, self.surface, None)
            self.surface = None
        if self._messenger is not None:
            destroy = vk.vkGetInstanceProcAddr(self.instance, "vkDestroyDebugUtilsMessengerEXT")
            destroy(self.instance, self._messenger, None)
            self._messenger = None
        vk.vkDestroyInstance(self.instance, None)
        _live_contexts.pop(self._id, None)
        global _default
        if _default is self:
            _default = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else f"{self.info['type']}, unified={self.unified_memory}"
        return f"<vkbands.Context {self.info['name']!r} ({state})>"


_default: Context | None = None
_default_lock = threading.Lock()


def default_context() -> Context:
    """The process-wide context of the convenience API, created on first use, closed at exit."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Context()
        return _default


@atexit.register
def _close_default():
    if _default is not None:
        _default.close()
