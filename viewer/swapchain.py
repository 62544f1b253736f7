"""Swapchain of a window surface: images, views, framebuffers; acquire/present; recreate on resize.

The surface format is an 8-bit UNORM one (B8G8R8A8 or R8G8B8A8), never sRGB: the bytes that
``write_image.comp`` writes reach the screen unchanged (a screenshot equals the headless picture).
Present mode: FIFO with vsync, else MAILBOX or IMMEDIATE when the surface offers them.

The surface belongs to the Context (``Context(surface=window.make_surface)`` chose a queue family
that can present to it, and destroys it after everything else); the swapchain only uses it.

Frames in flight (:class:`FrameSync`): each frame slot has a command buffer, a fence and an
"image acquired" semaphore; each swapchain image has its own "render finished" semaphore (a
presentation may still wait on it when the slot comes round again). Objects a frame may still use
are retired there and freed once the frames that could use them have finished.
"""
from __future__ import annotations

import vulkan as vk

from vkbands.engine.graphics import RenderPass

_PREFERRED_FORMATS = (vk.VK_FORMAT_B8G8R8A8_UNORM, vk.VK_FORMAT_R8G8B8A8_UNORM)
# Channel order of each format as (index of R, G, B) in the 4 bytes of a pixel (for screenshots).
CHANNELS = {vk.VK_FORMAT_B8G8R8A8_UNORM: (2, 1, 0), vk.VK_FORMAT_R8G8B8A8_UNORM: (0, 1, 2)}


class OutOfDate(Exception):
    """The swapchain no longer matches the surface; recreate it and try the frame again."""


class WindowTooLarge(OutOfDate):
    """The window's framebuffer is larger than the device draws into; no swapchain until it is smaller."""


class Swapchain:
    presents = True      # frames are presented (an OffscreenTarget, the headless stand-in, says False)

    def __init__(self, ctx, surface, size: tuple[int, int], vsync: bool = True):
        self.ctx, self.surface, self.vsync = ctx, surface, vsync
        dev, pd = ctx.device, ctx.physical_device
        inst = ctx.instance
        self._get_support = vk.vkGetInstanceProcAddr(inst, "vkGetPhysicalDeviceSurfaceSupportKHR")
        self._get_caps = vk.vkGetInstanceProcAddr(inst, "vkGetPhysicalDeviceSurfaceCapabilitiesKHR")
        self._get_formats = vk.vkGetInstanceProcAddr(inst, "vkGetPhysicalDeviceSurfaceFormatsKHR")
        self._get_modes = vk.vkGetInstanceProcAddr(inst, "vkGetPhysicalDeviceSurfacePresentModesKHR")
        self._create = vk.vkGetDeviceProcAddr(dev, "vkCreateSwapchainKHR")
        self._destroy = vk.vkGetDeviceProcAddr(dev, "vkDestroySwapchainKHR")
        self._get_images = vk.vkGetDeviceProcAddr(dev, "vkGetSwapchainImagesKHR")
        self._acquire = vk.vkGetDeviceProcAddr(dev, "vkAcquireNextImageKHR")
        self._present = vk.vkGetDeviceProcAddr(dev, "vkQueuePresentKHR")
        if not self._get_support(pd, ctx.queue_family, surface):
            raise RuntimeError(f"queue family {ctx.queue_family} of {ctx.info['name']!r} cannot present to this "
                               "window's surface: create the Context with surface=window.make_surface (it then "
                               "chooses a device and queue family that can) and pass ctx.surface here")
        formats = self._get_formats(pd, surface)
        by_format = {f.format: f for f in formats}
        chosen = next((by_format[f] for f in _PREFERRED_FORMATS if f in by_format), None)
        if chosen is None:
            raise RuntimeError("the surface offers no 8-bit UNORM format (B8G8R8A8/R8G8B8A8); offered: "
                               f"{sorted(f.format for f in formats)}")
        self.format, self.color_space = chosen.format, chosen.colorSpace
        self.channels = CHANNELS[self.format]
        modes = set(self._get_modes(pd, surface))
        if vsync:
            self.present_mode = vk.VK_PRESENT_MODE_FIFO_KHR
        else:
            self.present_mode = next((m for m in (vk.VK_PRESENT_MODE_IMMEDIATE_KHR, vk.VK_PRESENT_MODE_MAILBOX_KHR)
                                      if m in modes), vk.VK_PRESENT_MODE_FIFO_KHR)
        self.render_pass = RenderPass(ctx, self.format)
        self.handle = None
        self.images, self.views, self.framebuffers, self.render_done = [], [], [], []
        self.extent = (0, 0)
        self.generation = 0  # bumps on every (re)creation
        self.recreate(size)

    # ------------------------------------------------------------------ (re)creation
    def recreate(self, size: tuple[int, int]):
        """(Re)build for the window's framebuffer ``size`` (waits for the device first)."""
        self.ctx.wait_idle()
        dev = self.ctx.device
        caps = self._get_caps(self.ctx.physical_device, self.surface)
        if caps.currentExtent.width != 0xFFFFFFFF:
            w, h = caps.currentExtent.width, caps.currentExtent.height
        else:
            w = min(max(size[0], caps.minImageExtent.width), caps.maxImageExtent.width)
            h = min(max(size[1], caps.minImageExtent.height), caps.maxImageExtent.height)
        if w == 0 or h == 0:
            raise OutOfDate("window is minimised")
        lim = self.ctx.limits
        mw = min(int(lim.maxImageDimension2D), int(lim.maxFramebufferWidth))
        mh = min(int(lim.maxImageDimension2D), int(lim.maxFramebufferHeight))
        if w > mw or h > mh:    # resized past what the device draws into: wait for a smaller window
            raise WindowTooLarge(f"window {w}x{h} pixels: larger than the device can draw into (at most {mw}x{mh}); "
                            "not drawn until it is smaller")
        count = caps.minImageCount + 1
        if caps.maxImageCount:
            count = min(count, caps.maxImageCount)
        usage = vk.VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT
        if caps.supportedUsageFlags & vk.VK_IMAGE_USAGE_TRANSFER_SRC_BIT:
            usage |= vk.VK_IMAGE_USAGE_TRANSFER_SRC_BIT  # screenshots copy the presented image
        self.can_capture = bool(usage & vk.VK_IMAGE_USAGE_TRANSFER_SRC_BIT)
        alpha = (vk.VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR
                 if caps.supportedCompositeAlpha & vk.VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR
                 else vk.VK_COMPOSITE_ALPHA_INHERIT_BIT_KHR)
        old = self.handle
        info = vk.VkSwapchainCreateInfoKHR(
            surface=self.surface, minImageCount=count, imageFormat=self.format, imageColorSpace=self.color_space,
            imageExtent=vk.VkExtent2D(width=w, height=h), imageArrayLayers=1, imageUsage=usage,
            imageSharingMode=vk.VK_SHARING_MODE_EXCLUSIVE, preTransform=caps.currentTransform,
            compositeAlpha=alpha, presentMode=self.present_mode, clipped=vk.VK_TRUE,
            oldSwapchain=old if old is not None else vk.VK_NULL_HANDLE)
        self.handle = self._create(dev, info, None)
        self._destroy_views()
        if old is not None:
            self._destroy(dev, old, None)
        self.extent = (w, h)
        self.images = list(self._get_images(dev, self.handle))
        rng = vk.VkImageSubresourceRange(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, baseMipLevel=0, levelCount=1,
                                         baseArrayLayer=0, layerCount=1)
        for img in self.images:
            view = vk.vkCreateImageView(dev, vk.VkImageViewCreateInfo(
                image=img, viewType=vk.VK_IMAGE_VIEW_TYPE_2D, format=self.format, subresourceRange=rng), None)
            self.views.append(view)
            atts = [view]
            self.framebuffers.append(vk.vkCreateFramebuffer(dev, vk.VkFramebufferCreateInfo(
                renderPass=self.render_pass.handle, attachmentCount=1, pAttachments=atts, width=w, height=h,
                layers=1), None))
            self.render_done.append(vk.vkCreateSemaphore(dev, vk.VkSemaphoreCreateInfo(), None))
        self.generation += 1
        self.ctx.check()

    def _destroy_views(self):
        dev = self.ctx.device
        for fb in self.framebuffers:
            vk.vkDestroyFramebuffer(dev, fb, None)
        for v in self.views:
            vk.vkDestroyImageView(dev, v, None)
        for s in self.render_done:
            vk.vkDestroySemaphore(dev, s, None)
        self.framebuffers, self.views, self.render_done, self.images = [], [], [], []

    # ------------------------------------------------------------------ per frame
    def acquire(self, semaphore, timeout_s: float = 10.0) -> tuple[int, bool]:
        """Index of the next image (``semaphore`` is signalled when it is ready) and whether the
        swapchain is suboptimal (present it, then recreate). Raises OutOfDate."""
        index = vk.ffi.new("uint32_t*")
        try:
            self._acquire(self.ctx.device, self.handle, int(timeout_s * 1e9), semaphore, vk.VK_NULL_HANDLE, index)
        except vk.VkSuboptimalKhr:
            return int(index[0]), True  # acquired all the same: the semaphore will be signalled
        except vk.VkErrorOutOfDateKhr:
            raise OutOfDate("swapchain out of date at acquire") from None
        except (vk.VkTimeout, vk.VkNotReady):   # no image within the timeout (e.g. a hidden window)
            raise OutOfDate("no swapchain image became available") from None
        return int(index[0]), False

    def present(self, index: int) -> bool:
        """Queue ``index`` for presentation after its render-finished semaphore; False when the
        swapchain should be recreated (suboptimal or out of date)."""
        sems, swaps, idx = [self.render_done[index]], [self.handle], [index]
        info = vk.VkPresentInfoKHR(waitSemaphoreCount=1, pWaitSemaphores=sems, swapchainCount=1,
                                   pSwapchains=swaps, pImageIndices=idx)
        try:
            self._present(self.ctx.queue, info)
        except (vk.VkSuboptimalKhr, vk.VkErrorOutOfDateKhr):
            return False
        return True

    def close(self):
        if self.handle is None:
            return
        self.ctx.wait_idle()
        self._destroy_views()
        self._destroy(self.ctx.device, self.handle, None)
        self.handle = None
        self.render_pass.close()


class FrameSync:
    """``n`` frame slots: command buffer, fence (created signalled) and image-acquired semaphore each,
    plus the retire list that frees objects only after every frame that may use them has finished.

    Frames get serials in submission order (``submitted``: the next one's). Before a slot is reused
    its fence is waited on (:meth:`wait`), so a slot whose last frame is newer than ``s`` has finished
    every older frame of its own. :meth:`retire` tags objects with the frames submitted so far;
    :meth:`collect` frees a batch once each slot has either moved past that point or its fence has
    signalled (``vkGetFenceStatus``: no wait). Destroying an image or rewriting a descriptor set that a
    pending frame uses is invalid even where a serial CPU driver hides it.
    """

    def __init__(self, ctx, n: int = 2):
        self.ctx, self.n = ctx, n
        dev = ctx.device
        self.command_buffers = list(vk.vkAllocateCommandBuffers(dev, vk.VkCommandBufferAllocateInfo(
            commandPool=ctx.command_pool, level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY, commandBufferCount=n)))
        self.fences = [vk.vkCreateFence(dev, vk.VkFenceCreateInfo(flags=vk.VK_FENCE_CREATE_SIGNALED_BIT), None)
                       for _ in range(n)]
        self.acquired = [vk.vkCreateSemaphore(dev, vk.VkSemaphoreCreateInfo(), None) for _ in range(n)]
        self.slot = 0
        self.submitted = 0                 # serial of the next frame submitted
        self.slot_serial = [-1] * n        # serial of the frame last submitted in each slot (-1: none)
        self._finished = [True] * n        # that frame is known to have finished
        self._retired: list = []           # (frames submitted when retired, [objects]) oldest first

    # ------------------------------------------------------------------ frames
    def wait(self, slot: int):
        """Block until slot ``slot``'s last frame has finished (then its command buffer, buffers and
        descriptor set may be reused), and free what that made safe to free."""
        if not self._finished[slot]:
            self.ctx.wait_fence(self.fences[slot], what="a viewer frame")
            self._finished[slot] = True
        self.collect()

    def advance(self):
        """The next frame uses the next slot (after a frame was submitted and presented)."""
        self.slot = (self.slot + 1) % self.n

    def frame_submitted(self, slot: int):
        """Record that a batch signalling ``fences[slot]`` was just submitted (the slot's new frame)."""
        self.slot_serial[slot] = self.submitted
        self.submitted += 1
        self._finished[slot] = False

    def finished(self, slot: int) -> bool:
        """Whether slot ``slot``'s last frame has finished (asks the fence; never waits)."""
        if not self._finished[slot]:
            try:
                vk.vkGetFenceStatus(self.ctx.device, self.fences[slot])
            except vk.VkNotReady:
                return False
            self._finished[slot] = True
        return True

    def all_finished_before(self, serial: int) -> bool:
        """Whether every frame with a serial below ``serial`` has finished."""
        return all(last < 0 or last >= serial or self.finished(s) for s, last in enumerate(self.slot_serial))

    # ------------------------------------------------------------------ deferred destruction
    def retire(self, *objects):
        """Close ``objects`` (anything with ``close()``; None skipped) once every frame submitted so
        far has finished, in the order given (recorders first: their release waits for their own
        work). Frames submitted later must not use them."""
        objs = [o for o in objects if o is not None]
        if objs:
            self._retired.append((self.submitted, objs))

    def collect(self, idle: bool = False) -> int:
        """Close the retired objects whose frames have all finished (``idle``: the caller has waited
        for the device, so all of them). Returns how many were closed."""
        n = 0
        while self._retired and (idle or self.all_finished_before(self._retired[0][0])):
            _, objs = self._retired.pop(0)
            for obj in objs:
                obj.close()
            n += len(objs)
        return n

    @property
    def pending_retired(self) -> int:
        """Objects retired and not yet closed."""
        return sum(len(objs) for _, objs in self._retired)

    def renew_semaphore(self, i: int):
        """Replace slot ``i``'s acquire semaphore (after a swapchain recreation left it unwaited)."""
        dev = self.ctx.device
        vk.vkDestroySemaphore(dev, self.acquired[i], None)
        self.acquired[i] = vk.vkCreateSemaphore(dev, vk.VkSemaphoreCreateInfo(), None)

    def close(self):
        if self.fences is None:
            return
        dev = self.ctx.device
        self.ctx.wait_idle()
        self.collect(idle=True)
        for f in self.fences:
            vk.vkDestroyFence(dev, f, None)
        for s in self.acquired:
            vk.vkDestroySemaphore(dev, s, None)
        vk.vkFreeCommandBuffers(dev, self.ctx.command_pool, len(self.command_buffers), self.command_buffers)
        self.fences = None
