#version 450
// Bands -> leaf resolution, for nb fields of H x W leaves (1-D: H = 1):
//   out[out_off + leaf] = (WITH_COARSE ? U^L c : 0) + sum_{m = l0}^{l1-1} U^m d^(m)
// reading the bands buffer in the levels layout (bands_common.glsl: level m < L holds d^(m), level L
// holds c). cumulative sheet s^(l) = (l0 = l, l1 = L, coarse); reconstruction = s^(0); leaf-resolution
// detail D^(l) = (l0 = l, l1 = l + 1, no coarse). Terms are added coarse-to-fine.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 256;
layout(constant_id = 1) const uint P = 3;
layout(constant_id = 2) const uint DIMS = 2;
layout(constant_id = 3) const uint PER_INVOCATION = 4;
layout(local_size_x_id = 0) in;

#include "bands_common.glsl"

layout(std430, binding = 0) readonly buffer Bands { float bands[]; };
layout(std430, binding = 1) writeonly buffer Out { float outv[]; };

layout(push_constant) uniform Push {
    uint nb, H, W, L;
    uint l0, l1, with_coarse;
    uint out_off;
} pc;

float at_level(uint m, uint b, uint i, uint j) {
    uint pm = ipow(P, m);
    uint hm = level_h(pc.H, m), wm = level_w(pc.W, m);
    return bands[level_offset(pc.nb, pc.H, pc.W, m) + (b * hm + i / pm) * wm + j / pm];
}

void main() {
    const uint n = pc.H * pc.W;
    const uint total = pc.nb * n;
    uint base = flat_group_id() * LOCAL_X * PER_INVOCATION + gl_LocalInvocationID.x;
    for (uint k = 0u; k < PER_INVOCATION; ++k) {
        uint e = base + k * LOCAL_X;
        if (e >= total) return;
        uint b = e / n, r = e - (e / n) * n;
        uint i = r / pc.W, j = r - (r / pc.W) * pc.W;
        float s = (pc.with_coarse != 0u) ? at_level(pc.L, b, i, j) : 0.0;
        for (uint m = pc.l1; m > pc.l0; --m) s += at_level(m - 1u, b, i, j);
        outv[pc.out_off + e] = s;
    }
}
