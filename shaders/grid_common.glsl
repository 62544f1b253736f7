// Row loading for the periodic 5-point stencils (step_heat.comp, step_grayscott.comp).
// One invocation updates a segment of 4 consecutive cells c0..c0+3 of RY consecutive rows of one
// field. Columns are taken modulo W, so a partial last segment (W % 4 != 0) wraps consistently and
// only its valid cells are written. With ALIGNED (W % 4 == 0) the segment is one vec4 load/store.
// The including shader declares src/src4 (binding 0), dst/dst4 (binding 1) and push constants H, W.
// vkbands: variants ALIGNED   (every shader including this file is compiled into the wheel with and
// without it; see engine/shaders.py)
#ifndef VKBANDS_GRID_COMMON_GLSL
#define VKBANDS_GRID_COMMON_GLSL

vec4 load_mid(uint row, uint c0) {          // row = field base + r * W
#ifdef ALIGNED
    return src4[(row + c0) >> 2];
#else
    uint W = pc.W;       // wrap without integer division (slow on CPU drivers): c0 < W
    uint c1 = c0 + 1u, c2 = c0 + 2u, c3 = c0 + 3u;
    c1 = c1 >= W ? c1 - W : c1; c2 = c2 >= W ? c2 - W : c2; c3 = c3 >= W ? c3 - W : c3;
    return vec4(src[row + c0], src[row + c1], src[row + c2], src[row + c3]);
#endif
}

float load_left(uint row, uint c0) { return src[row + (c0 == 0u ? pc.W - 1u : c0 - 1u)]; }
float load_right(uint row, uint c0) { uint c = c0 + 4u; while (c >= pc.W) c -= pc.W; return src[row + c]; }

// 5-point Laplacian of the segment: up/down rows' segments, the row's segment m with its outer
// neighbours l and r.
vec4 lap4(vec4 up, vec4 m, vec4 down, float l, float r) {
    return up + down + vec4(l, m.xyz) + vec4(m.yzw, r) - 4.0 * m;
}

void store_seg(uint row, uint c0, vec4 v) {
#ifdef ALIGNED
    dst4[(row + c0) >> 2] = v;
#else
    uint n = min(4u, pc.W - c0);
    dst[row + c0] = v.x;
    if (n > 1u) dst[row + c0 + 1u] = v.y;
    if (n > 2u) dst[row + c0 + 2u] = v.z;
    if (n > 3u) dst[row + c0 + 3u] = v.w;
#endif
}

#endif
