// Packed conv weight codes from an rgba32uint texture: texel (t, co) is texel t of output
// channel co.
@group(0) @binding(2) var wqt: texture_2d<u32>;

fn qw(co: u32, t: u32) -> vec4<u32> {
    return textureLoad(wqt, vec2<u32>(t, co), 0);
}
