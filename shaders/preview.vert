#version 450
// Textured quad for the viewer's sheet-grid preview, generated from gl_VertexIndex (no vertex buffer):
// draw 4 vertices as a triangle strip. The host places the quad in normalised device coordinates
// (aspect, zoom and pan are all in `rect`) and picks the texture window in `uv_rect`.
layout(push_constant) uniform Push {
    vec4 rect;     // x0, y0, x1, y1 in NDC
    vec4 uv_rect;  // u0, v0, u1, v1
} pc;

layout(location = 0) out vec2 v_uv;

void main() {
    vec2 q = vec2(float(gl_VertexIndex & 1), float((gl_VertexIndex >> 1) & 1));
    v_uv = mix(pc.uv_rect.xy, pc.uv_rect.zw, q);
    gl_Position = vec4(mix(pc.rect.xy, pc.rect.zw, q), 0.0, 1.0);
}
