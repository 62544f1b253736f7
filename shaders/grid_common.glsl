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

// OBS (spec constant of the including shader): the step also writes the first two levels of its
// observation (p = 2, W % 4 == 0, H % 8 == 0: an invocation's 4 x 8 cells are two whole 4 x 4 blocks),
// in the layout bands_pyramid.comp reads from a previous pass with NPREV = 2: the level-2 block means
// A^(2) of the nb fields (h2 = H / 4 rows of w2 = W / 4), then five planes of nb * h2 * w2 values, one
// per block: sum of d^(0)^2, sum of d^(1)^2, min and max of the finite values, NaN/Inf flag. The means
// and details are formed as the pyramid forms them (same order, `precise`); only the energy sums are
// added in another order. The including shader declares ob[] (writeonly floats) and defines GRID_OBS.
#ifdef GRID_OBS
void obs_block(uint b, uint nb, uint by, uint bx, vec4 q0, vec4 q1, vec4 q2, vec4 q3) {
    uint h2 = pc.H >> 2, w2 = pc.W >> 2, plane = nb * h2 * w2, i = (b * h2 + by) * w2 + bx;
    vec4 rows[4] = vec4[4](q0, q1, q2, q3);
    precise float e0 = 0.0, s2 = 0.0;
    float m1[4];
    float mn = uintBitsToFloat(0x7f800000u), mx = uintBitsToFloat(0xff800000u), bad = 0.0;
    for (uint n = 0u; n < 4u; ++n) {           // level-1 nodes in row-major order
        uint u = n >> 1, cc = (n & 1u) * 2u;
        float c[4] = float[4](rows[2u * u][cc], rows[2u * u][cc + 1u], rows[2u * u + 1u][cc], rows[2u * u + 1u][cc + 1u]);
        precise float s = 0.0;
        for (uint k = 0u; k < 4u; ++k) s += c[k];
        precise float mean = s / 4.0;
        for (uint k = 0u; k < 4u; ++k) {
            precise float d = c[k] - mean;
            e0 += d * d;
            bool ok = abs(c[k]) <= 3.40282347e38;
            mn = min(mn, ok ? c[k] : mn);
            mx = max(mx, ok ? c[k] : mx);
            bad = ok ? bad : 1.0;
        }
        m1[n] = mean;
    }
    for (uint n = 0u; n < 4u; ++n) s2 += m1[n];
    precise float m2 = s2 / 4.0;
    precise float e1 = 0.0;
    for (uint n = 0u; n < 4u; ++n) { precise float d = m1[n] - m2; e1 += d * d; }
    ob[i] = m2;
    ob[plane + i] = e0;
    ob[2u * plane + i] = e1;
    ob[3u * plane + i] = mn;
    ob[4u * plane + i] = mx;
    ob[5u * plane + i] = bad;
}
#endif

#endif
