#version 450
// Reports the subgroup layout of a workgroup of LOCAL_X invocations: [gl_SubgroupSize,
// gl_NumSubgroups, 1 if a subgroupShuffle round trip worked]. Used once per context by
// vkbands.systems to pick the fused tree kernel's reduction (no barrier when a field fits a subgroup).
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require

layout(constant_id = 0) const uint LOCAL_X = 32;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) writeonly buffer Out { uint outv[]; };

void main() {
    uint lane = gl_SubgroupInvocationID;
    uint peer = subgroupShuffle(lane, (lane + 1u) % gl_SubgroupSize);
    bool ok = peer == (lane + 1u) % gl_SubgroupSize || lane + 1u >= gl_SubgroupSize;
    if (gl_LocalInvocationID.x == 0u) {
        outv[0] = gl_SubgroupSize;
        outv[1] = gl_NumSubgroups;
        outv[2] = ok ? 1u : 0u;
    }
}
