#version 450
// Samples the sheet-grid storage image (GENERAL layout, nearest sampler: one texel per block of
// screen pixels, never blurred). Opaque: the image's own alpha is not blended.
layout(binding = 0) uniform sampler2D sheet;

layout(location = 0) in vec2 v_uv;
layout(location = 0) out vec4 out_color;

void main() {
    out_color = vec4(texture(sheet, v_uv).rgb, 1.0);
}
