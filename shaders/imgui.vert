#version 450
// Dear ImGui vertices (ImDrawVert: pos vec2, uv vec2, col RGBA8 read as vec4) to clip space.
// scale = 2 / display_size, translate = -1 - display_pos * scale.
layout(push_constant) uniform Push {
    vec2 scale;
    vec2 translate;
} pc;

layout(location = 0) in vec2 a_pos;
layout(location = 1) in vec2 a_uv;
layout(location = 2) in vec4 a_color;

layout(location = 0) out vec4 v_color;
layout(location = 1) out vec2 v_uv;

void main() {
    v_color = a_color;
    v_uv = a_uv;
    gl_Position = vec4(a_pos * pc.scale + pc.translate, 0.0, 1.0);
}
