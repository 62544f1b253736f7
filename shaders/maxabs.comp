#version 450
// Segmented max|x| over the finite values of a float buffer (the range statistic of write_image.comp).
//
// The input is `segments` rows of `seg_len` floats; each row is cut into `chunks` chunks of `chunk`
// floats and workgroup g = row * chunks + k reduces chunk k of its row into out[g]. One pass with
// chunks == 1 gives one value per row; a long row takes two passes (chunks -> row), and the max over
// all rows is one more pass over the row results viewed as a single row. NaN and +-Inf are ignored
// (bit test, so fast-math compilers cannot drop it); an empty or all non-finite chunk gives 0.
// Consecutive invocations read consecutive floats (coalesced); LOCAL_X must be a power of two.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 256;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer In { float x[]; };
layout(std430, binding = 1) writeonly buffer Out { float y[]; };

layout(push_constant) uniform Push {
    uint n_groups;   // segments * chunks
    uint seg_len;    // floats per row
    uint chunk;      // floats per workgroup
    uint chunks;     // workgroups per row
} pc;

shared float red[LOCAL_X];

bool finite(float v) { return (floatBitsToUint(v) & 0x7f800000u) != 0x7f800000u; }

void main() {
    uint g = flat_group_id();
    if (g >= pc.n_groups) return;           // uniform per workgroup: no barrier is skipped by half a group
    uint lid = gl_LocalInvocationID.x;
    uint row = g / pc.chunks, k = g % pc.chunks;
    uint begin = row * pc.seg_len + k * pc.chunk;
    uint end = row * pc.seg_len + min(pc.seg_len, (k + 1u) * pc.chunk);
    float m = 0.0;
    for (uint i = begin + lid; i < end; i += LOCAL_X) {
        float v = x[i];
        if (finite(v)) m = max(m, abs(v));
    }
    red[lid] = m;
    barrier();
    for (uint s = LOCAL_X / 2u; s > 0u; s >>= 1u) {
        if (lid < s) red[lid] = max(red[lid], red[lid + s]);
        barrier();
    }
    if (lid == 0u) y[g] = red[0];
}
