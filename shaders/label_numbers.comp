#version 450
// The numbers of a labelled picture (vkbands.labels), formatted on the device: one invocation per
// number slot, before labels.comp draws the glyphs. out[j * (MAXC + 1)] = length, then MAXC characters.
//
// nums[j] = (fmt | decimals << 8 | source << 16, index, reserved, mult bits): source 0 = values[] (the
// host-written step and time), 1 = scale[] (max|x| of the ImageWriter's range reduction); the value is
// multiplied by mult (not for FMT_INT). Formats (vkbands.labels.format_number is the host's statement of
// the same): 0 "%d" (uint), 1 "%.Ne", 2 "%.Nf" (no sign on a number that rounds to 0; "%.Ne" from
// 4e9 / 10^N on); NaN -> "nan", +-Inf -> "inf" / "-inf"; subnormal values print as 0; decimals <= 8.
layout(local_size_x = 1) in;

layout(std430, binding = 0) readonly buffer Nums { uvec4 nums[]; };
layout(std430, binding = 1) readonly buffer Values { uint values[]; };
layout(std430, binding = 2) readonly buffer Scale { float scale[]; };
layout(std430, binding = 3) writeonly buffer Out { uint out_chars[]; };

layout(push_constant) uniform Push {
    uint n_nums;
} pc;

const uint MAXC = 24u;

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

void main() {
    uint j = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x;
    if (j >= pc.n_nums) return;
    uint s[MAXC];
    uint len = format_num(j, s);
    out_chars[j * (MAXC + 1u)] = len;
    for (uint i = 0u; i < MAXC; i++) out_chars[j * (MAXC + 1u) + 1u + i] = s[i];
}
