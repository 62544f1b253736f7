#version 450
// Float panels -> rgba8 picture (SPEC section 6), one invocation per output pixel.
//
// Input: `n_panels` panels of height x width float32 values, row-major, back to back (P, H, W).
// Layout: panel p sits in grid cell (p / cols, p % cols); every value is a sy x sx block of pixels
// (nearest-neighbour expansion); cells are `gap` pixels apart. Pixels outside every panel (gaps,
// empty cells) get BACKGROUND. A 1-D field is just a panel of height 1 drawn with sy > 1.
//
// Value -> colour, exactly as vkbands.reference.colorize defines it (float32 throughout):
//   fade:     acc = v if reset or fade == 0, else fade * acc + (1 - fade) * v   (per pixel, on values;
//             `acc` is the r32f accumulator image of the output's size; background pixels store 0;
//             with fade == 0 acc is left untouched, and ImageWriter resets it when fade turns on)
//   range:    s0 = (acc - centre) * inv_half, where range_mode 0 (fixed) takes centre and inv_half
//             from the push constants, 1 (symmetric per frame) uses centre 0 and 1 / scale[0], 2 (per
//             panel) uses 1 / scale[p]; scale holds max|v| over finite values; a max of 0 gives
//             inv_half = 0 (everything at the middle colour).
//   cmap 0 grey:      t = clamp(0.5 + 0.5 * s0, 0, 1), rgb = (t, t, t)
//   cmap 1 diverging: a = clamp(s0, -1, 1); rgb = mix(WHITE, BLUE, -a) if a < 0 else mix(WHITE, RED, a)
//   cmap 2 ternary:   BLUE if s0 < -tau, RED if s0 > tau, WHITE otherwise
//   cmap 3 log:       s = sign(s0) * log1p(|s0| * inv_eps) * log_norm (log_norm = 1 / log1p(1 / eps)),
//                     then as diverging
//   cmap 4 energy-height: h = clamp(1 + log(|s0|) * e_norm, 0, 1) (0 where s0 == 0; e_norm =
//                     1 / log(1 / eps): |s0| from eps to 1, i.e. x^2 over 2 log10(1 / eps) decades, is
//                     the height), rgb = the piecewise-linear ramp through HEIGHT[0..4] at h
//   NaN or +-Inf in acc -> NONFINITE (magenta) in every map. Alpha is always 1.
//
// Labelled pictures (vkbands.labels): the grid starts at (ox, oy) and each panel row has pad_top pixels
// of title space above its panels (row pitch H*sy + gap + pad_top); pixels there are BACKGROUND, the
// text is drawn afterwards by labels.comp. The colour bar (bar_w > 0) is the rectangle at (bar_x, bar_y)
// of bar_w x bar_h pixels: column c has u = (c + 0.5) / bar_w in [0, 1] and the map's colour of
// s = 2u - 1 (grey, diverging), of the already mapped s (log: the bar's axis is the log axis), of
// s0 = 2u - 1 with tau = 1/3 (ternary: its three colours in equal thirds), of h = u (energy-height).
// With ox = oy = pad_top = bar_w = 0 the picture is the unlabelled one. compact = 1 (labelled pictures):
// the image was cleared to BACKGROUND first and the invocations cover only the panel rows (their title
// space skipped) and then the bar's rows, the same per-pixel code on fewer pixels.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 16;
layout(constant_id = 1) const uint LOCAL_Y = 16;
layout(local_size_x_id = 0, local_size_y_id = 1) in;

layout(std430, binding = 0) readonly buffer Panels { float v[]; };
layout(std430, binding = 1) readonly buffer Scale { float scale[]; };
layout(r32f, binding = 2) uniform image2D acc;
layout(rgba8, binding = 3) writeonly uniform image2D img;

layout(push_constant) uniform Push {
    uint n_panels;
    uint height;      // H (values per panel column)
    uint width;       // W
    uint cols;
    uint sx;
    uint sy;
    uint gap;
    uint cmap;        // 0 grey, 1 diverging, 2 ternary, 3 log, 4 energy-height
    uint range_mode;  // 0 fixed, 1 symmetric (scale[0]), 2 per panel (scale[p])
    uint reset;       // 1: acc = current value
    float centre;
    float inv_half;
    float tau;
    float inv_eps;
    float log_norm;
    float fade;
    float e_norm;     // energy-height: 1 / log(1 / eps)
    uint ox;          // labelled layouts: the grid's origin and the title space above each panel row
    uint oy;
    uint pad_top;
    uint bar_x;       // the colour bar (bar_w == 0: none)
    uint bar_y;
    uint bar_w;
    uint bar_h;
    uint compact;     // 1: invocations cover only the panel rows and the bar (labelled; the rest was cleared)
} pc;

const vec3 BACKGROUND = vec3(32.0, 32.0, 32.0) / 255.0;
const vec3 NONFINITE = vec3(1.0, 0.0, 1.0);
const vec3 BLUE = vec3(33.0, 102.0, 172.0) / 255.0;
const vec3 WHITE = vec3(1.0, 1.0, 1.0);
const vec3 RED = vec3(178.0, 24.0, 43.0) / 255.0;
const vec3 HEIGHT[5] = vec3[5](vec3(0.0, 0.0, 4.0) / 255.0, vec3(87.0, 16.0, 110.0) / 255.0,
                               vec3(188.0, 55.0, 84.0) / 255.0, vec3(249.0, 142.0, 9.0) / 255.0,
                               vec3(252.0, 255.0, 164.0) / 255.0);

bool finite(float x) { return (floatBitsToUint(x) & 0x7f800000u) != 0x7f800000u; }

float log1p_(float x) {  // accurate for small x (Goldberg's trick); x >= 0
    float u = 1.0 + x;
    return u == 1.0 ? x : log(u) * (x / (u - 1.0));
}

vec3 diverging(float s) {
    float a = clamp(s, -1.0, 1.0);
    return a < 0.0 ? mix(WHITE, BLUE, -a) : mix(WHITE, RED, a);
}

vec3 height_ramp(float h) {
    float x = clamp(h, 0.0, 1.0) * 4.0;
    uint i = min(uint(x), 3u);
    return mix(HEIGHT[i], HEIGHT[i + 1u], x - float(i));
}

vec3 bar_colour(float u) {
    float s = 2.0 * u - 1.0;
    if (pc.cmap == 0u) return vec3(clamp(0.5 + 0.5 * s, 0.0, 1.0));
    if (pc.cmap == 2u) return s < -(1.0 / 3.0) ? BLUE : (s > 1.0 / 3.0 ? RED : WHITE);
    if (pc.cmap == 4u) return height_ramp(u);
    return diverging(s);
}

vec3 colorize(float value, uint p) {
    if (!finite(value)) return NONFINITE;
    float centre = pc.centre, inv_half = pc.inv_half;
    if (pc.range_mode != 0u) {
        float m = scale[pc.range_mode == 1u ? 0u : p];
        centre = 0.0;
        inv_half = m > 0.0 ? 1.0 / m : 0.0;
    }
    float s0 = (value - centre) * inv_half;
    if (pc.cmap == 0u) {
        float t = clamp(0.5 + 0.5 * s0, 0.0, 1.0);
        return vec3(t);
    }
    if (pc.cmap == 2u) return s0 < -pc.tau ? BLUE : (s0 > pc.tau ? RED : WHITE);
    if (pc.cmap == 4u) {
        float a = abs(s0);
        return height_ramp(a > 0.0 ? 1.0 + log(a) * pc.e_norm : 0.0);
    }
    if (pc.cmap == 3u) s0 = sign(s0) * (log1p_(abs(s0) * pc.inv_eps) * pc.log_norm);
    return diverging(s0);
}

void main() {
    ivec2 size = imageSize(img);
    uvec2 xy = gl_GlobalInvocationID.xy;
    if (pc.compact != 0u) {
        // invocation rows: the panel rows of the grid (gaps included, title space skipped), then the bar
        uint pitch = pc.height * pc.sy + pc.gap;
        uint grid_h = ((pc.n_panels + pc.cols - 1u) / pc.cols) * pitch - pc.gap;
        if (xy.y < grid_h) {
            uint r = xy.y / pitch;
            xy = uvec2(pc.ox + xy.x, pc.oy + r * (pitch + pc.pad_top) + pc.pad_top + (xy.y - r * pitch));
        } else {
            if (xy.y - grid_h >= pc.bar_h || xy.x >= pc.bar_w) return;
            xy = uvec2(pc.bar_x + xy.x, pc.bar_y + (xy.y - grid_h));
        }
    }
    if (xy.x >= uint(size.x) || xy.y >= uint(size.y)) return;
    uint pw = pc.width * pc.sx, ph = pc.height * pc.sy;
    uint cw = pw + pc.gap, ch = ph + pc.gap + pc.pad_top;
    ivec2 at = ivec2(xy);
    bool keep_acc = pc.fade != 0.0;  // without fade the accumulator is neither read nor written
    bool before = xy.x < pc.ox || xy.y < pc.oy;
    uint gx = xy.x - pc.ox, gy = xy.y - pc.oy;               // (wrap when `before`: not used then)
    uint col = gx / cw, row = gy / ch;
    uint xin = gx - col * cw, yin = gy - row * ch;
    uint p = row * pc.cols + col;
    if (before || col >= pc.cols || xin >= pw || yin < pc.pad_top || yin - pc.pad_top >= ph || p >= pc.n_panels) {
        if (keep_acc) imageStore(acc, at, vec4(0.0));
        vec3 rgb = BACKGROUND;
        if (pc.bar_w > 0u && xy.x >= pc.bar_x && xy.x - pc.bar_x < pc.bar_w && xy.y >= pc.bar_y
            && xy.y - pc.bar_y < pc.bar_h) {
            rgb = bar_colour((float(xy.x - pc.bar_x) + 0.5) / float(pc.bar_w));
        }
        imageStore(img, at, vec4(rgb, 1.0));
        return;
    }
    yin -= pc.pad_top;
    float cur = v[(p * pc.height + yin / pc.sy) * pc.width + xin / pc.sx];
    precise float a;
    if (pc.reset != 0u || pc.fade == 0.0) {
        a = cur;
    } else {
        float prev = imageLoad(acc, at).x;
        a = pc.fade * prev + (1.0 - pc.fade) * cur;
    }
    if (keep_acc) imageStore(acc, at, vec4(a, 0.0, 0.0, 0.0));
    imageStore(img, at, vec4(colorize(a, p), 1.0));
}
