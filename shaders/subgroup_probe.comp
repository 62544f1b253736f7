#version 450
// Reports the subgroup layout of a workgroup of LOCAL_X invocations, as this pipeline gets it (a
// driver may pick another width per pipeline unless the pipeline requires one): outv (zeroed) gets
//   [0] the OR of gl_SubgroupSize over all invocations (one power of two when they all agree),
//   [1] gl_NumSubgroups,
//   [2] the number of invocations whose subgroupShuffle round trip failed (checked only where every
//       subgroup is full, LOCAL_X % gl_SubgroupSize == 0: a shuffle from an inactive lane is undefined),
//   [3] the number of invocations not laid out contiguously (gl_SubgroupID * gl_SubgroupSize +
//       gl_SubgroupInvocationID != gl_LocalInvocationIndex; informational: the tree kernel indexes
//       its fields by subgroup, so it does not rely on a contiguous layout).
// Used by vkbands.systems: the default width (subgroup_size) and, for the fused tree kernel's
// shuffle layout, a check that a required full-subgroup width really is what the pipeline runs.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require

layout(constant_id = 0) const uint LOCAL_X = 32;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) buffer Out { uint outv[]; };

void main() {
    uint lane = gl_SubgroupInvocationID;
    uint size = gl_SubgroupSize;
    atomicOr(outv[0], size);
    uint peer = subgroupShuffle(lane, (lane + 1u) % size);
    if (LOCAL_X % size == 0u && peer != (lane + 1u) % size) atomicAdd(outv[2], 1u);
    if (gl_SubgroupID * size + lane != gl_LocalInvocationIndex) atomicAdd(outv[3], 1u);
    if (gl_LocalInvocationIndex == 0u) outv[1] = gl_NumSubgroups;
}
