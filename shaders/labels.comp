#version 450
// Text of a labelled picture (vkbands.labels): bitmap-font glyphs drawn over an rgba8 image.
//
// One invocation per pixel of each glyph cell (FONT_W x FONT_H font pixels, each k x k image pixels);
// only the pixels of the glyph are written (TEXT colour), so the text lies on what write_image.comp
// drew there (the background of the label margins). Glyphs never overlap the panels.
//
// items[i] = (x, y, code, shift): code < 128 is an ASCII character (font rows[(code - 32) * 10 + row],
// bit 5 = left column); code with bit 31 set is character `pos = code & 0xff` of number slot
// `j = (code >> 8) & 0xffff`, formatted here from its source. shift = first | count << 16 | align << 30:
// the glyph moves left by the characters that numbers first .. first + count - 1 (those before it on its
// line) left unused of their reserved width; a number's own glyphs move right by all (align 1, right) or
// half (align 2, centre) of its own unused characters.
//
// nums[j] = (fmt | decimals << 8 | source << 16, index, reserved, mult bits): source 0 = values[] (the
// host-written step and time), 1 = scale[] (max|x| of the ImageWriter's range reduction); the value is
// multiplied by mult (not for FMT_INT). Formats (vkbands.labels.format_number is the host's statement of
// the same): 0 "%d" (uint), 1 "%.Ne", 2 "%.Nf" (no sign on a number that rounds to 0; "%.Ne" from
// 4e9 / 10^N on); NaN -> "nan", +-Inf -> "inf" / "-inf"; subnormal values print as 0; decimals <= 8.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint LOCAL_X = 64;
layout(local_size_x_id = 0) in;

layout(std430, binding = 0) readonly buffer Font { uint rows[]; };
layout(std430, binding = 1) readonly buffer Items { uvec4 items[]; };
layout(std430, binding = 2) readonly buffer Nums { uvec4 nums[]; };
layout(std430, binding = 3) readonly buffer Values { uint values[]; };
layout(std430, binding = 4) readonly buffer Scale { float scale[]; };
layout(rgba8, binding = 5) writeonly uniform image2D img;

layout(push_constant) uniform Push {
    uint n_items;
    uint k;          // glyph scale
    uint colour;     // rgba8, packed little-endian
} pc;

const uint FONT_W = 6u, FONT_H = 10u, MAXC = 24u;

bool is_finite(float x) { return (floatBitsToUint(x) & 0x7f800000u) != 0x7f800000u; }

uint ipow10(uint n) {  // exact for n <= 9
    uint r = 1u;
    for (uint i = 0u; i < n; i++) r *= 10u;
    return r;
}

float scale10(float a, int n) {  // a * 10^n with exact factors (1e10 and 10^0..9 are exact floats)
    while (n >= 10) { a *= 1e10; n -= 10; }
    while (n <= -10) { a /= 1e10; n += 10; }
    return n >= 0 ? a * float(ipow10(uint(n))) : a / float(ipow10(uint(-n)));
}

// Append the decimal digits of u (at least `minlen` digits, zero-padded) to s at position n.
void put_uint(inout uint s[MAXC], inout uint n, uint u, uint minlen) {
    uint digits = 1u, t = u;
    while (t >= 10u) { t /= 10u; digits++; }
    digits = max(digits, minlen);
    for (uint i = 0u; i < digits; i++) {
        uint d = u;
        for (uint j = 1u; j < digits - i; j++) d /= 10u;
        if (n < MAXC) s[n] = 48u + d % 10u;
        n++;
    }
}

void put_char(inout uint s[MAXC], inout uint n, uint c) {
    if (n < MAXC) s[n] = c;
    n++;
}

uint format_sci(inout uint s[MAXC], uint n, float a, uint dec) {
    // a >= 0, finite: mantissa digits m = round(a * 10^(dec - e)) with 10^dec <= m < 10^(dec + 1)
    int e = 0;
    float m = 0.0;
    float lo = float(ipow10(dec)), hi = float(ipow10(dec + 1u));
    if (a > 0.0) {
        e = int(floor(log(a) * 0.43429448190325176));
        m = floor(scale10(a, int(dec) - e) + 0.5);
        if (m >= hi) { e += 1; m = floor(scale10(a, int(dec) - e) + 0.5); }
        else if (m < lo) { e -= 1; m = floor(scale10(a, int(dec) - e) + 0.5); }
        if (m >= hi) { e += 1; m = lo; }
    }
    uint mi = uint(m), p = uint(lo);
    put_uint(s, n, mi / p, 1u);
    if (dec > 0u) { put_char(s, n, 46u); put_uint(s, n, mi % p, dec); }
    put_char(s, n, 101u);
    put_char(s, n, e < 0 ? 45u : 43u);
    put_uint(s, n, uint(abs(e)), 2u);
    return n;
}

// The characters of number slot j in s; returns the length.
uint format_num(uint j, out uint s[MAXC]) {
    for (uint i = 0u; i < MAXC; i++) s[i] = 32u;
    uvec4 d = nums[j];
    uint fmt = d.x & 0xffu, dec = (d.x >> 8) & 0xffu, src = (d.x >> 16) & 0xffu;
    uint n = 0u;
    if (fmt == 0u) {
        put_uint(s, n, src == 0u ? values[d.y] : uint(max(scale[d.y], 0.0)), 1u);
        return min(n, MAXC);
    }
    float v = (src == 0u ? uintBitsToFloat(values[d.y]) : scale[d.y]) * uintBitsToFloat(d.w);
    if (!is_finite(v)) {
        bool nan = (floatBitsToUint(v) & 0x007fffffu) != 0u;
        if (!nan && v < 0.0) put_char(s, n, 45u);
        if (nan) { put_char(s, n, 110u); put_char(s, n, 97u); put_char(s, n, 110u); }
        else { put_char(s, n, 105u); put_char(s, n, 110u); put_char(s, n, 102u); }
        return n;
    }
    float a = abs(v);
    if (a < 1.17549435e-38) a = 0.0;  // subnormals print as 0 (GPUs may flush them anyway)
    uint pi = ipow10(dec);
    float p = float(pi);
    if (fmt == 2u && a * p < 4.0e9) {
        uint t = uint(floor(a * p + 0.5));
        if (v < 0.0 && t > 0u) put_char(s, n, 45u);
        put_uint(s, n, t / pi, 1u);
        if (dec > 0u) { put_char(s, n, 46u); put_uint(s, n, t % pi, dec); }
        return min(n, MAXC);
    }
    if (v < 0.0) put_char(s, n, 45u);
    return min(format_sci(s, n, a, dec), MAXC);
}

uint unused(uint j) {
    uint s[MAXC];
    uint len = format_num(j, s);
    return nums[j].z > len ? nums[j].z - len : 0u;
}

void main() {
    uint cell = FONT_W * FONT_H * pc.k * pc.k;
    uint i = flat_group_id() * LOCAL_X + gl_LocalInvocationID.x;
    if (i >= pc.n_items * cell) return;
    uint it = i / cell, pix = i % cell;
    uint px = pix % (FONT_W * pc.k), py = pix / (FONT_W * pc.k);
    uvec4 item = items[it];
    uint code = item.z;
    int shift = 0;
    if ((code & 0x80000000u) != 0u) {
        uint j = (code >> 8) & 0xffffu, pos = code & 0xffu;
        uint s[MAXC];
        uint len = format_num(j, s);
        code = pos < MAXC ? s[pos] : 32u;
        uint spare = nums[j].z > len ? nums[j].z - len : 0u;
        uint align = item.w >> 30;
        if (align == 1u) shift += int(spare);
        else if (align == 2u) shift += int(spare) / 2;
    }
    uint first = item.w & 0xffffu, count = (item.w >> 16) & 0x3fffu;
    for (uint q = 0u; q < count; q++) shift -= int(unused(first + q));
    if (code <= 32u || code > 126u) return;
    uint row = rows[(code - 32u) * FONT_H + py / pc.k];
    if (((row >> (FONT_W - 1u - px / pc.k)) & 1u) == 0u) return;
    ivec2 at = ivec2(int(item.x) + shift * int(FONT_W * pc.k) + int(px), int(item.y + py));
    ivec2 size = imageSize(img);
    if (at.x < 0 || at.y < 0 || at.x >= size.x || at.y >= size.y) return;
    imageStore(img, at, unpackUnorm4x8(pc.colour));
}
