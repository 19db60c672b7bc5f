// Packed weight codes from an rgba32uint texture: texel (t, n) is texel t of row n.
@group(0) @binding(2) var wt: texture_2d<u32>;

fn wq(n: u32, t: u32) -> vec4<u32> {
    return textureLoad(wt, vec2<u32>(t, min(n, p.n - 1u)), 0);
}
