// Shared helpers for vkbands compute shaders (included with #include "common.glsl").
#ifndef VKBANDS_COMMON_GLSL
#define VKBANDS_COMMON_GLSL

// Flat workgroup index when the host spreads a 1-D grid over (x, y) (Kernel.grid()).
uint flat_group_id() {
    return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
}

#endif
