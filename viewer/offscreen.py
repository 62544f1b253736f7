"""Headless rendering: the viewer's frame drawn into offscreen images, with no window, no X server,
no surface and no swapchain (``vkbands view --offscreen``, and automatically without a display).

- :class:`HeadlessWindow` stands in for :class:`~vkbands.viewer.window.Window`: a fixed size, no
  input (ImGui's IO is fed with that size and no mouse), closed by :meth:`request_close` (the ``q``
  key of a script, ``--frames``).
- :class:`OffscreenTarget` stands in for :class:`~vkbands.viewer.swapchain.Swapchain`: one colour
  image per frame slot, in the swapchain's kind of format (8-bit UNORM, B8G8R8A8 when the device can
  render to it and copy from it, else R8G8B8A8; never sRGB), each with its framebuffer, drawn by
  the same preview quad and ImGui pipelines through a render pass that differs only in the layout
  the image is left in (TRANSFER_SRC_OPTIMAL instead of PRESENT_SRC_KHR: the render pass's
  subpass -> EXTERNAL dependency makes its colour writes visible to the screenshot's copy, so no
  barrier is needed there). "Acquire" gives slot ``i`` its own image ``i``: an image is reused only
  after its slot's fence, so no frame's render pass writes an image an earlier frame still copies.
  Nothing is presented; there is no semaphore to wait on or signal.

The context is a plain compute + graphics one (``Context()`` without ``surface=``): the queue family
chosen has graphics as well as compute whenever the device has one (else this refuses to start).
"""
from __future__ import annotations

import vulkan as vk

from vkbands.engine import LimitError
from vkbands.engine.graphics import RenderPass

from .swapchain import CHANNELS
from .window import InputEvents

_FORMATS = (vk.VK_FORMAT_B8G8R8A8_UNORM, vk.VK_FORMAT_R8G8B8A8_UNORM)
_NEEDED = vk.VK_FORMAT_FEATURE_COLOR_ATTACHMENT_BIT | 0x4000   # | VK_FORMAT_FEATURE_TRANSFER_SRC_BIT (core 1.1; absent from the bindings)


class HeadlessWindow:
    """The window interface the viewer uses, without a window: ``size`` = ``framebuffer_size`` (scale
    1), never resized or minimised, no input."""

    focused = False
    minimised = False

    def __init__(self, width: int, height: int):
        self.size = self.framebuffer_size = (int(width), int(height))
        self.keys_down: set = set()
        self._close = False
        self.closed = False

    def poll(self, wait_s=None):
        pass

    def take_events(self) -> InputEvents:
        return InputEvents([], [], 0.0)

    def take_resized(self) -> bool:
        return False

    @property
    def should_close(self) -> bool:
        return self._close

    def request_close(self):
        self._close = True

    def cursor(self):
        return (-1.0, -1.0)

    def mouse_button(self, i: int) -> bool:
        return False

    def set_size_limits(self, max_width, max_height):
        pass

    def set_title(self, title):
        pass

    def close(self):
        self.closed = True


class OffscreenTarget:
    """Offscreen colour images the viewer's frames are drawn into (see the module docstring); the
    parts of :class:`~vkbands.viewer.swapchain.Swapchain`'s interface the viewer uses."""

    presents = False

    def __init__(self, ctx, size: tuple[int, int], count: int):
        self.ctx, self.count = ctx, int(count)
        family = vk.vkGetPhysicalDeviceQueueFamilyProperties(ctx.physical_device)[ctx.queue_family]
        if not family.queueFlags & vk.VK_QUEUE_GRAPHICS_BIT:
            raise RuntimeError(f"{ctx.info['name']}: its queue has no graphics; the viewer cannot draw offscreen")
        self.format = next((f for f in _FORMATS if (vk.vkGetPhysicalDeviceFormatProperties(
            ctx.physical_device, f).optimalTilingFeatures & _NEEDED) == _NEEDED), None)
        if self.format is None:
            raise RuntimeError(f"{ctx.info['name']} cannot render to an 8-bit UNORM image (B8G8R8A8/R8G8B8A8)")
        self.channels = CHANNELS[self.format]
        self.render_pass = RenderPass(ctx, self.format, final_layout=vk.VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL)
        self.can_capture = True
        self.images, self.views, self.framebuffers, self._memory = [], [], [], []
        self.extent = (0, 0)
        self.generation = 0
        self.recreate(size)

    def recreate(self, size: tuple[int, int]):
        """(Re)build the images for ``size`` (waits for the device first)."""
        w, h = int(size[0]), int(size[1])
        lim = self.ctx.limits
        mw = min(int(lim.maxImageDimension2D), int(lim.maxFramebufferWidth))
        mh = min(int(lim.maxImageDimension2D), int(lim.maxFramebufferHeight))
        if w > mw or h > mh:
            raise LimitError(f"offscreen image {w}x{h}: larger than {self.ctx.info['name']} can draw into, at "
                             f"most {mw}x{mh} pixels (maxImageDimension2D, maxFramebufferWidth/Height); give "
                             "--width/--height within that")
        self.ctx.wait_idle()
        self._destroy_images()
        dev = self.ctx.device
        rng = vk.VkImageSubresourceRange(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, baseMipLevel=0, levelCount=1,
                                         baseArrayLayer=0, layerCount=1)
        for _ in range(self.count):
            img = vk.vkCreateImage(dev, vk.VkImageCreateInfo(
                imageType=vk.VK_IMAGE_TYPE_2D, format=self.format, extent=vk.VkExtent3D(width=w, height=h, depth=1),
                mipLevels=1, arrayLayers=1, samples=vk.VK_SAMPLE_COUNT_1_BIT, tiling=vk.VK_IMAGE_TILING_OPTIMAL,
                usage=vk.VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | vk.VK_IMAGE_USAGE_TRANSFER_SRC_BIT,
                sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE, initialLayout=vk.VK_IMAGE_LAYOUT_UNDEFINED), None)
            self.images.append(img)
            req = vk.vkGetImageMemoryRequirements(dev, img)
            mem = vk.vkAllocateMemory(dev, vk.VkMemoryAllocateInfo(
                allocationSize=req.size, memoryTypeIndex=self.ctx.memory_type(
                    req.memoryTypeBits, 0, vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT)), None)
            self._memory.append(mem)
            vk.vkBindImageMemory(dev, img, mem, 0)
            view = vk.vkCreateImageView(dev, vk.VkImageViewCreateInfo(
                image=img, viewType=vk.VK_IMAGE_VIEW_TYPE_2D, format=self.format, subresourceRange=rng), None)
            self.views.append(view)
            atts = [view]
            self.framebuffers.append(vk.vkCreateFramebuffer(dev, vk.VkFramebufferCreateInfo(
                renderPass=self.render_pass.handle, attachmentCount=1, pAttachments=atts, width=w, height=h,
                layers=1), None))
        self.extent = (w, h)
        self.generation += 1
        self.ctx.check()

    def acquire_slot(self, slot: int) -> tuple[int, bool]:
        """The image of frame slot ``slot`` (free once the slot's fence was waited on); never suboptimal."""
        return slot, False

    def present(self, index: int) -> bool:
        return True

    def _destroy_images(self):
        dev = self.ctx.device
        for fb in self.framebuffers:
            vk.vkDestroyFramebuffer(dev, fb, None)
        for v in self.views:
            vk.vkDestroyImageView(dev, v, None)
        for img in self.images:
            vk.vkDestroyImage(dev, img, None)
        for mem in self._memory:
            vk.vkFreeMemory(dev, mem, None)
        self.framebuffers, self.views, self.images, self._memory = [], [], [], []

    def close(self):
        if self.render_pass is None:
            return
        self.ctx.wait_idle()
        self._destroy_images()
        self.render_pass.close()
        self.render_pass = None
