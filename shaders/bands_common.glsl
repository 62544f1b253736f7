// Shared helpers for the band (sheet) shaders: the "levels layout" of a batch of fields.
// Level m of nb fields of leaf size H x W (1-D: H = 1) is an nb x h_m x w_m row-major block with
// h_m = H / P^m (1-D: 1) and w_m = W / P^m; levels 0..L follow one another (level 0 first).
// Requires the including shader to declare spec constants P and DIMS.
#ifndef VKBANDS_BANDS_COMMON_GLSL
#define VKBANDS_BANDS_COMMON_GLSL

uint ipow(uint base, uint e) {
    uint r = 1u;
    for (uint i = 0u; i < e; ++i) r *= base;
    return r;
}

// Rows / columns of one field at level m.
uint level_h(uint H, uint m) { return (DIMS == 2u) ? H / ipow(P, m) : 1u; }
uint level_w(uint W, uint m) { return W / ipow(P, m); }

// Element offset of level m in the levels layout (level 0 at 0).
uint level_offset(uint nb, uint H, uint W, uint m) {
    uint off = 0u, hh = H, ww = W;
    for (uint i = 0u; i < m; ++i) {
        off += nb * hh * ww;
        hh = (DIMS == 2u) ? hh / P : 1u;
        ww /= P;
    }
    return off;
}

#endif
