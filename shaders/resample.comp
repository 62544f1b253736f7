#version 450
// Nearest-neighbour resampling of P panels (P, H, W) -> (P, h, w), float32: the viewer shrinks the
// sheet panels to the size they are shown at before write_image.comp, so the picture costs screen
// pixels, not leaf pixels. Output (p, y, x) takes input row ((2y + 1) H) / (2h) and column
// ((2x + 1) W) / (2w): the value under the centre of the output pixel (what a nearest sampler shows).
// Each invocation writes PER_INVOCATION values LOCAL_X apart, so consecutive invocations write
// consecutive values (coalesced on GPUs; several values per invocation amortise lavapipe's
// per-invocation cost).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 256;
layout(constant_id = 1) const uint PER_INVOCATION = 4;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 1) writeonly buffer Dst { float dst[]; };

layout(push_constant) uniform Push {
    uint n_panels;
    uint H;          // input panel height, width
    uint W;
    uint h;          // output panel height, width
    uint w;
} pc;

void main() {
    uint per = pc.h * pc.w, total = pc.n_panels * per;
    uint base = flat_group_id() * LOCAL_X * PER_INVOCATION + gl_LocalInvocationID.x;
    for (uint k = 0u; k < PER_INVOCATION; ++k) {
        uint i = base + k * LOCAL_X;
        if (i >= total) return;
        uint p = i / per, r = i - p * per;
        uint y = r / pc.w, x = r - y * pc.w;
        uint sy = ((2u * y + 1u) * pc.H) / (2u * pc.h);
        uint sx = ((2u * x + 1u) * pc.W) / (2u * pc.w);
        dst[i] = src[(p * pc.H + sy) * pc.W + sx];
    }
}
