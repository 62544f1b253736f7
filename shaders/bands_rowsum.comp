#version 450
// Energies of rectangular 2-D fields: a (p^Ly, p^Lx) field is r = p^(Ly-L) * p^(Lx-L) independent
// p^L x p^L squares; the final pyramid pass wrote one [E_0..E_{L-1}, E_c] row per square. This
// kernel sums the r rows of each field (one workgroup per field, tree reduction in shared memory)
// into out[out_off + b * NV + v].
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 64;   // power of two
layout(constant_id = 1) const uint NV = 4;         // L + 1
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Src { float src[]; };
layout(std430, binding = 1) writeonly buffer Out { float outv[]; };

layout(push_constant) uniform Push {
    uint nb;       // fields
    uint r;        // rows (squares) per field
    uint src_off;  // element offset of row 0 in src (rows of NV values)
    uint out_off;  // element offset of field 0 in out
} pc;

shared float red[NV * LOCAL_X];

void main() {
    const uint b = flat_group_id();
    if (b >= pc.nb) return;
    const uint tid = gl_LocalInvocationID.x;
    float acc[NV];
    for (uint v = 0u; v < NV; ++v) acc[v] = 0.0;
    for (uint t = tid; t < pc.r; t += LOCAL_X)
        for (uint v = 0u; v < NV; ++v) acc[v] += src[pc.src_off + (b * pc.r + t) * NV + v];
    for (uint v = 0u; v < NV; ++v) red[v * LOCAL_X + tid] = acc[v];
    for (uint s = LOCAL_X / 2u; s > 0u; s >>= 1u) {
        barrier();
        if (tid < s)
            for (uint v = 0u; v < NV; ++v) red[v * LOCAL_X + tid] += red[v * LOCAL_X + tid + s];
    }
    barrier();
    for (uint v = tid; v < NV; v += LOCAL_X) outv[pc.out_off + b * NV + v] = red[v * LOCAL_X];
}
