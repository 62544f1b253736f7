#version 450
// Pyramid -> bands: for every element of the levels layout (bands_common.glsl) of nb fields,
//   level m < L:  bands[e] = d^(m) = A^(m) - U A^(m+1)   (own resolution)
//   level L:      bands[e] = A^(L)                        (the coarse part)
// A^(0) is read from src (the input fields, field stride src_bstride), A^(1..L) from pyr, which holds
// levels 1..L in the levels layout shifted by the size of level 0 (i.e. pyr[k] = level_offset(1) + k).
// Each invocation writes PER_INVOCATION elements, consecutive invocations consecutive elements.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 256;
layout(constant_id = 1) const uint P = 3;
layout(constant_id = 2) const uint DIMS = 2;
layout(constant_id = 3) const uint PER_INVOCATION = 4;
layout(local_size_x_id = 0) in;

#include "bands_common.glsl"

layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 1) readonly buffer Pyr { float pyr[]; };
layout(std430, binding = 2) writeonly buffer Bands { float bands[]; };

layout(push_constant) uniform Push {
    uint nb, H, W, L;
    uint src_off, src_bstride;
    uint total;   // elements of the levels layout (levels 0..L)
} pc;

float level_value(uint m, uint b, uint i, uint j, uint wm, uint hm, uint off0) {
    if (m == 0u) return src[pc.src_off + b * pc.src_bstride + i * pc.W + j];
    return pyr[level_offset(pc.nb, pc.H, pc.W, m) - off0 + (b * hm + i) * wm + j];
}

void main() {
    const uint off0 = pc.nb * pc.H * pc.W;   // size of level 0
    uint base = flat_group_id() * LOCAL_X * PER_INVOCATION + gl_LocalInvocationID.x;
    for (uint k = 0u; k < PER_INVOCATION; ++k) {
        uint e = base + k * LOCAL_X;
        if (e >= pc.total) return;
        // find the level of e
        uint m = 0u, off = 0u, hm = pc.H, wm = pc.W;
        while (m < pc.L && e >= off + pc.nb * hm * wm) {
            off += pc.nb * hm * wm;
            hm = (DIMS == 2u) ? hm / P : 1u;
            wm /= P;
            ++m;
        }
        uint r = e - off;
        uint b = r / (hm * wm);
        uint rr = r - b * hm * wm;
        uint i = rr / wm, j = rr - (rr / wm) * wm;
        float a = level_value(m, b, i, j, wm, hm, off0);
        if (m < pc.L) {
            uint hp = (DIMS == 2u) ? hm / P : 1u;
            a -= level_value(m + 1u, b, (DIMS == 2u) ? i / P : 0u, j / P, wm / P, hp, off0);
        }
        bands[e] = a;
    }
}
