#version 450
// The viewer's cursor read-out: one value of the sheet stack, at the flat index the host wrote into
// `at` before the submission (at[1] == 0: none), copied into a host-visible float read a frame later.
layout(local_size_x = 1) in;

layout(std430, binding = 0) readonly buffer Sheets { float v[]; };
layout(std430, binding = 1) readonly buffer At { uint at[]; };
layout(std430, binding = 2) writeonly buffer Out { float value[]; };

layout(push_constant) uniform Push {
    uint n;          // values in the sheet stack
} pc;

void main() {
    uint i = at[0];
    value[0] = (at[1] != 0u && i < pc.n) ? v[i] : uintBitsToFloat(0x7fc00000u);
}
