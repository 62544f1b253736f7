#version 450
// c = a + b, float32, any length n (including 0 and non-multiples of the workgroup size).
// Each invocation adds VEC_PER_INVOCATION vec4s; consecutive invocations touch consecutive vec4s,
// so every load is coalesced on GPUs. The n % 4 tail floats are added by invocation 0.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 256;
layout(constant_id = 1) const uint VEC_PER_INVOCATION = 4;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer A4 { vec4 a4[]; };
layout(std430, binding = 1) readonly buffer B4 { vec4 b4[]; };
layout(std430, binding = 2) writeonly buffer C4 { vec4 c4[]; };
layout(std430, binding = 0) readonly buffer A1 { float a1[]; };
layout(std430, binding = 1) readonly buffer B1 { float b1[]; };
layout(std430, binding = 2) writeonly buffer C1 { float c1[]; };

layout(push_constant) uniform Push { uint n; } pc;

void main() {
    uint n4 = pc.n / 4u;
    uint base = flat_group_id() * LOCAL_X * VEC_PER_INVOCATION + gl_LocalInvocationID.x;
    for (uint k = 0u; k < VEC_PER_INVOCATION; ++k) {
        uint i = base + k * LOCAL_X;
        if (i < n4) c4[i] = a4[i] + b4[i];
    }
    if (flat_group_id() == 0u && gl_LocalInvocationID.x == 0u) {
        for (uint i = n4 * 4u; i < pc.n; ++i) c1[i] = a1[i] + b1[i];
    }
}
