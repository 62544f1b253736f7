"""The ImGui renderer's packing of draw data, checked headlessly against ImGui's own draw lists,
and its Vulkan draws rendered offscreen (no window) compared with a NumPy rasterisation of the
solid rectangles."""
import ctypes

import imgui
import numpy as np
import pytest
import vulkan as vk

from vkbands.viewer.imgui_vk import FONT_TEXTURE_ID, VERTEX_DTYPE, ImGuiRenderer, pack_draw_data, upload_image


@pytest.fixture
def imgui_ctx():
    c = imgui.create_context()
    io = imgui.get_io()
    io.ini_file_name = None
    io.display_size = (400, 300)
    io.delta_time = 1 / 60
    yield io
    imgui.destroy_context(c)


def _frame(build):
    imgui.new_frame()
    build()
    imgui.render()
    return imgui.get_draw_data()


def _ui():
    imgui.set_next_window_position(10, 20)
    imgui.set_next_window_size(200, 150)
    imgui.begin("one")
    imgui.text("hello")
    imgui.button("press")
    imgui.end()
    imgui.set_next_window_position(220, 40)
    imgui.set_next_window_size(150, 100)
    imgui.begin("two")
    imgui.text("a second window, clipped" * 3)
    imgui.end()


def _fonts(io):
    io.fonts.get_tex_data_as_rgba32()
    io.fonts.texture_id = FONT_TEXTURE_ID


def test_packing_matches_draw_lists(imgui_ctx):
    _fonts(imgui_ctx)
    _frame(_ui)                      # the first frame has no vertices (windows appear on the second)
    dd = _frame(_ui)
    packed = pack_draw_data(dd)
    lists = dd.commands_lists
    assert len(lists) >= 2
    assert packed.vertices.dtype == VERTEX_DTYPE and packed.indices.dtype == np.uint32
    assert len(packed.vertices) == dd.total_vtx_count == sum(cl.vtx_buffer_size for cl in lists)
    assert len(packed.indices) == dd.total_idx_count == sum(cl.idx_buffer_size for cl in lists)
    v_base = i_base = 0
    cmds = iter(packed.commands)
    for cl in lists:
        raw_v = ctypes.string_at(cl.vtx_buffer_data, cl.vtx_buffer_size * 20)
        raw_i = np.frombuffer(ctypes.string_at(cl.idx_buffer_data, cl.idx_buffer_size * 4), np.uint32)
        assert packed.vertices[v_base:v_base + cl.vtx_buffer_size].tobytes() == raw_v
        assert np.array_equal(packed.indices[i_base:i_base + cl.idx_buffer_size], raw_i)
        offset = 0
        for c in cl.commands:
            r = c.clip_rect
            got = next(cmds)
            assert got.first_index == i_base + offset and got.count == c.elem_count
            assert got.vertex_offset == v_base and got.texture_id == c.texture_id == FONT_TEXTURE_ID
            x0, y0 = max(int(r.x), 0), max(int(r.y), 0)
            x1, y1 = min(int(r.z), 400), min(int(r.w), 300)
            assert got.scissor == (x0, y0, x1 - x0, y1 - y0)
            # every index of the command addresses a vertex of its own draw list
            idx = packed.indices[got.first_index:got.first_index + got.count]
            assert idx.max() < cl.vtx_buffer_size
            offset += c.elem_count
        v_base += cl.vtx_buffer_size
        i_base += cl.idx_buffer_size
    assert next(cmds, None) is None
    # projection: pixel (0, 0) -> NDC (-1, -1), (400, 300) -> (1, 1)
    sx, sy = packed.scale
    tx, ty = packed.translate
    assert (0 * sx + tx, 0 * sy + ty) == (-1.0, -1.0)
    assert np.allclose((400 * sx + tx, 300 * sy + ty), (1.0, 1.0))


def test_packing_scissor_clamped_and_scaled(imgui_ctx):
    _fonts(imgui_ctx)
    imgui_ctx.display_fb_scale = (2.0, 2.0)

    def ui():
        imgui.set_next_window_position(300, 250)
        imgui.set_next_window_size(200, 200)
        imgui.begin("edge")
        imgui.text("x")
        imgui.end()
        dl = imgui.get_background_draw_list()
        dl.push_clip_rect(350, 280, 500, 400, False)     # reaches past the display edge
        dl.add_rect_filled(340, 270, 450, 350, imgui.get_color_u32_rgba(1, 1, 1, 1))
        dl.pop_clip_rect()
    _frame(ui)
    dd = _frame(ui)
    packed = pack_draw_data(dd)
    assert packed.fb_size == (800, 600)
    raw = [c.clip_rect for cl in dd.commands_lists for c in cl.commands]
    assert len(raw) == len(packed.commands)
    clamped = 0
    for r, c in zip(raw, packed.commands):
        x0, y0 = max(int(r.x * 2), 0), max(int(r.y * 2), 0)
        x1, y1 = min(int(r.z * 2), 800), min(int(r.w * 2), 600)
        assert c.scissor == (x0, y0, x1 - x0, y1 - y0)
        clamped += (r.z * 2 > 800) or (r.w * 2 > 600)
    assert clamped >= 1       # a clip rect past the edge was clamped to the framebuffer


def test_empty_first_frame(imgui_ctx):
    _fonts(imgui_ctx)
    dd = _frame(_ui)
    packed = pack_draw_data(dd)
    assert len(packed.indices) == dd.total_idx_count
    assert all(c.count > 0 for c in packed.commands)


def test_offscreen_render_of_solid_rects(ctx, imgui_ctx):
    """Solid filled rectangles (white font-atlas texel x vertex colour) rasterise exactly; a scissor
    from a clipped child region cuts one of them; the vertex/index buffers grow and are reused."""
    from vkbands.engine.graphics import RenderPass

    W, H = 160, 120
    imgui_ctx.display_size = (W, H)
    style = imgui.get_style()
    style.anti_aliased_fill = False
    style.anti_aliased_lines = False

    def ui():
        dl = imgui.get_background_draw_list()
        dl.add_rect_filled(10, 10, 50, 40, imgui.get_color_u32_rgba(1, 0, 0, 1))
        dl.push_clip_rect(0, 0, 100, 200)
        dl.add_rect_filled(80, 60, 130, 100, imgui.get_color_u32_rgba(0, 0, 1, 0.5))   # cut at x = 100
        dl.pop_clip_rect()
    rp = RenderPass(ctx, vk.VK_FORMAT_R8G8B8A8_UNORM, final_layout=vk.VK_IMAGE_LAYOUT_GENERAL)
    renderer = ImGuiRenderer(ctx, rp, frames=1)
    img = _Target(ctx, W, H)
    try:
        _frame(ui)
        dd = _frame(ui)
        fb = vk.vkCreateFramebuffer(ctx.device, vk.VkFramebufferCreateInfo(
            renderPass=rp.handle, attachmentCount=1, pAttachments=[img.view], width=W, height=H, layers=1), None)
        cb = vk.vkAllocateCommandBuffers(ctx.device, vk.VkCommandBufferAllocateInfo(
            commandPool=ctx.command_pool, level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY, commandBufferCount=1))[0]
        fence = vk.vkCreateFence(ctx.device, vk.VkFenceCreateInfo(), None)
        try:
            vk.vkBeginCommandBuffer(cb, vk.VkCommandBufferBeginInfo())
            clear = [vk.VkClearValue(color=vk.VkClearColorValue(float32=[0.0, 0.0, 0.0, 1.0]))]
            vk.vkCmdBeginRenderPass(cb, vk.VkRenderPassBeginInfo(
                renderPass=rp.handle, framebuffer=fb, clearValueCount=1, pClearValues=clear,
                renderArea=vk.VkRect2D(offset=vk.VkOffset2D(x=0, y=0), extent=vk.VkExtent2D(width=W, height=H))),
                vk.VK_SUBPASS_CONTENTS_INLINE)
            packed = renderer.record(cb, 0, dd, (W, H))
            vk.vkCmdEndRenderPass(cb)
            img.record_readback(cb)
            vk.vkEndCommandBuffer(cb)
            vk.vkQueueSubmit(ctx.queue, 1, [vk.VkSubmitInfo(commandBufferCount=1, pCommandBuffers=[cb])], fence)
            ctx.wait_fence(fence)
        finally:
            vk.vkDestroyFence(ctx.device, fence, None)
            vk.vkFreeCommandBuffers(ctx.device, ctx.command_pool, 1, [cb])
            vk.vkDestroyFramebuffer(ctx.device, fb, None)
        out = img.numpy()
        assert len(packed.commands) == 2
        expect = np.zeros((H, W, 3), np.uint8)
        expect[10:40, 10:50] = (255, 0, 0)
        expect[60:100, 80:100] = (0, 0, 128)           # alpha 0.5 over black, cut by the clip rect
        diff = np.abs(out[..., :3].astype(int) - expect)
        assert diff.max() <= 1, np.argwhere(diff > 1)[:5]
        # buffers: reused when big enough, grown when not
        vb = renderer.buffers[0].vbuf
        renderer.buffers[0].ensure(ctx, 16, 16)
        assert renderer.buffers[0].vbuf is vb
        renderer.buffers[0].ensure(ctx, vb.nbytes + 1, 16)
        assert renderer.buffers[0].vbuf.nbytes >= 2 * vb.nbytes
    finally:
        img.close()
        renderer.close()
        rp.close()


class _Target:
    """A colour-attachment image (StorageImage has no COLOR_ATTACHMENT usage) with a host readback."""

    def __init__(self, ctx, W, H):
        self.ctx, self.W, self.H = ctx, W, H
        dev = ctx.device
        self.image = vk.vkCreateImage(dev, vk.VkImageCreateInfo(
            imageType=vk.VK_IMAGE_TYPE_2D, format=vk.VK_FORMAT_R8G8B8A8_UNORM,
            extent=vk.VkExtent3D(width=W, height=H, depth=1), mipLevels=1, arrayLayers=1,
            samples=vk.VK_SAMPLE_COUNT_1_BIT, tiling=vk.VK_IMAGE_TILING_OPTIMAL,
            usage=vk.VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | vk.VK_IMAGE_USAGE_TRANSFER_SRC_BIT,
            sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE, initialLayout=vk.VK_IMAGE_LAYOUT_UNDEFINED), None)
        req = vk.vkGetImageMemoryRequirements(dev, self.image)
        mtype = ctx.memory_type(req.memoryTypeBits, vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT)
        self.memory = vk.vkAllocateMemory(dev, vk.VkMemoryAllocateInfo(allocationSize=req.size,
                                                                      memoryTypeIndex=mtype), None)
        vk.vkBindImageMemory(dev, self.image, self.memory, 0)
        rng = vk.VkImageSubresourceRange(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, baseMipLevel=0, levelCount=1,
                                         baseArrayLayer=0, layerCount=1)
        self.view = vk.vkCreateImageView(dev, vk.VkImageViewCreateInfo(
            image=self.image, viewType=vk.VK_IMAGE_VIEW_TYPE_2D, format=vk.VK_FORMAT_R8G8B8A8_UNORM,
            subresourceRange=rng), None)
        self.host = ctx.empty((W * H * 4,), np.uint8, host=True)

    def record_readback(self, cb):
        # No barrier of our own: RenderPass's subpass -> EXTERNAL dependency makes the colour writes
        # and the transition to the final layout visible to TRANSFER reads (synchronization
        # validation reports the copy as a hazard if that dependency is missing or wrong).
        region = vk.VkBufferImageCopy(
            bufferOffset=0, bufferRowLength=0, bufferImageHeight=0,
            imageSubresource=vk.VkImageSubresourceLayers(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, mipLevel=0,
                                                         baseArrayLayer=0, layerCount=1),
            imageOffset=vk.VkOffset3D(x=0, y=0, z=0), imageExtent=vk.VkExtent3D(width=self.W, height=self.H, depth=1))
        vk.vkCmdCopyImageToBuffer(cb, self.image, vk.VK_IMAGE_LAYOUT_GENERAL, self.host.buffer, 1, [region])
        hb = vk.VkMemoryBarrier(srcAccessMask=vk.VK_ACCESS_TRANSFER_WRITE_BIT, dstAccessMask=vk.VK_ACCESS_HOST_READ_BIT)
        vk.vkCmdPipelineBarrier(cb, vk.VK_PIPELINE_STAGE_TRANSFER_BIT, vk.VK_PIPELINE_STAGE_HOST_BIT, 0, 1, [hb],
                                0, None, 0, None)

    def numpy(self):
        return self.host.host_view.reshape(self.H, self.W, 4).copy()

    def close(self):
        dev = self.ctx.device
        vk.vkDestroyImageView(dev, self.view, None)
        vk.vkDestroyImage(dev, self.image, None)
        vk.vkFreeMemory(dev, self.memory, None)
        self.host.close()


def test_upload_image_roundtrip(ctx):
    px = np.random.default_rng(1).integers(0, 256, (7, 13, 4), dtype=np.uint8)
    img = ctx.image(7, 13, "rgba8")
    try:
        upload_image(ctx, img, px)
        assert np.array_equal(img.numpy(), px)
    finally:
        img.close()


def test_graphics_pipeline_reflection(ctx):
    """engine.graphics builds pipelines from the shaders alone: bindings merged over stages with the
    stages that use them, one push range for the stages that declare the block, members by name."""
    from vkbands.engine.graphics import GraphicsPipeline, RenderPass

    rp = RenderPass(ctx, vk.VK_FORMAT_B8G8R8A8_UNORM)
    try:
        p = GraphicsPipeline(ctx, "preview.vert", "preview.frag", rp,
                             topology=vk.VK_PRIMITIVE_TOPOLOGY_TRIANGLE_STRIP)
        assert [(b.binding, b.name, b.kind) for b in p.bindings] == [(0, "sheet", "sampled_image")]
        assert p.binding_stages[0] == vk.VK_SHADER_STAGE_FRAGMENT_BIT
        assert p.push_stages == vk.VK_SHADER_STAGE_VERTEX_BIT and p.push_size == 32
        assert set(p.push_members) == {"rect", "uv_rect"}
        blob = p.pack({"rect": (-1, -1, 1, 1), "uv_rect": (0, 0, 1, 1)})
        assert np.array_equal(np.frombuffer(blob, np.float32), [-1, -1, 1, 1, 0, 0, 1, 1])
        with pytest.raises(ValueError, match="push constants need exactly"):
            p.pack({"rect": (0, 0, 1, 1)})
        with pytest.raises(ValueError, match="unknown specialization constant"):
            GraphicsPipeline(ctx, "preview.vert", "preview.frag", rp, spec={"NOPE": 1})
        n = ctx.live_objects()
        p.close()
        p.close()
        assert ctx.live_objects() == n - 1
    finally:
        rp.close()
