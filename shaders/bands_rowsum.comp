#version 450
// Energies of rectangular 2-D fields: a (p^Ly, p^Lx) field is r = p^(Ly-L) * p^(Lx-L) independent
// p^L x p^L squares; the final pyramid pass wrote one [E_0..E_{L-1}, E_c] row per square. This
// kernel sums the r rows of each field (one workgroup per field, tree reduction in shared memory)
// into out[out_off + b * NV + v].
// STATS (a define): also combine the squares' [mass, min, max, nonfinite] rows (4 values each, at
// stats_src_off in src; sum, min, max, max) into st[stats_off + b * 4 + 0..3].
// vkbands: variants STATS   (compiled into the wheel with and without; see engine/shaders.py)
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 64;   // power of two
layout(constant_id = 1) const uint NV = 4;         // L + 1
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 1) writeonly buffer Out { float outv[]; };
#ifdef STATS
layout(std430, binding = 2) writeonly buffer Stats { float st[]; };
#endif

layout(push_constant) uniform Push {
    uint nb;       // fields
    uint r;        // rows (squares) per field
    uint src_off;  // element offset of row 0 in src (rows of NV values)
    uint out_off;  // element offset of field 0 in out
#ifdef STATS
    uint stats_src_off;  // element offset of square 0's statistics row in src
    uint stats_off;      // element offset of field 0's statistics in st
#endif
} pc;

shared float red[NV * LOCAL_X];
#ifdef STATS
shared vec4 sred[LOCAL_X];
vec4 combine(vec4 a, vec4 b) { return vec4(a.x + b.x, min(a.y, b.y), max(a.z, b.z), max(a.w, b.w)); }
#endif

void main() {
    const uint b = flat_group_id();
    if (b >= pc.nb) return;
    const uint tid = gl_LocalInvocationID.x;
    float acc[NV];
    for (uint v = 0u; v < NV; ++v) acc[v] = 0.0;
    for (uint t = tid; t < pc.r; t += LOCAL_X)
        for (uint v = 0u; v < NV; ++v) acc[v] += src[pc.src_off + (b * pc.r + t) * NV + v];
    for (uint v = 0u; v < NV; ++v) red[v * LOCAL_X + tid] = acc[v];
#ifdef STATS
    vec4 sacc = vec4(0.0, uintBitsToFloat(0x7f800000u), uintBitsToFloat(0xff800000u), 0.0);
    for (uint t = tid; t < pc.r; t += LOCAL_X) {
        uint i = pc.stats_src_off + (b * pc.r + t) * 4u;
        sacc = combine(sacc, vec4(src[i], src[i + 1u], src[i + 2u], src[i + 3u]));
    }
    sred[tid] = sacc;
#endif
    for (uint s = LOCAL_X / 2u; s > 0u; s >>= 1u) {
        barrier();
        if (tid < s) {
            for (uint v = 0u; v < NV; ++v) red[v * LOCAL_X + tid] += red[v * LOCAL_X + tid + s];
#ifdef STATS
            sred[tid] = combine(sred[tid], sred[tid + s]);
#endif
        }
    }
    barrier();
    for (uint v = tid; v < NV; v += LOCAL_X) outv[pc.out_off + b * NV + v] = red[v * LOCAL_X];
#ifdef STATS
    if (tid == 0u)
        for (uint i = 0u; i < 4u; ++i) st[pc.stats_off + b * 4u + i] = sred[0][i];
#endif
}
