#version 450
// The sheet grid of one field (SPEC §6), from its pyramid: for every leaf (i, j) of an H x W field
// (1-D: H = 1) write the 2L+1 leaf-resolution panels
//   out[l * N + leaf]           = s^(l) = A^(l)(parent_l(leaf)),                 l = 0..L
//   out[(L + 1 + l) * N + leaf] = D^(l) = A^(l)(parent_l) - A^(l+1)(parent_l+1), l = 0..L-1
// A^(0) is the field itself (src at src_off), A^(1..L) come from pyr (levels layout of one field,
// starting at level 1 at element 0).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 256;
layout(constant_id = 1) const uint P = 3;
layout(constant_id = 2) const uint DIMS = 2;
layout(local_size_x_id = 0) in;

#include "bands_common.glsl"

layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 1) readonly buffer Pyr { float pyr[]; };
layout(std430, binding = 2) writeonly buffer Out { float outv[]; };

layout(push_constant) uniform Push {
    uint H, W, L;
    uint src_off;
} pc;

void main() {
    const uint n = pc.H * pc.W;
    const uint e = flat_group_id() * LOCAL_X + gl_LocalInvocationID.x;
    if (e >= n) return;
    const uint i = e / pc.W, j = e - (e / pc.W) * pc.W;
    float prev = src[pc.src_off + e];
    outv[e] = prev;
    uint off = 0u, hm = pc.H, wm = pc.W, pm = 1u;
    for (uint l = 0u; l < pc.L; ++l) {
        hm = (DIMS == 2u) ? hm / P : 1u;
        wm /= P;
        pm *= P;
        float a = pyr[off + (i / pm) * wm + j / pm];
        off += hm * wm;
        outv[(l + 1u) * n + e] = a;
        outv[(pc.L + 1u + l) * n + e] = prev - a;
        prev = a;
    }
}
