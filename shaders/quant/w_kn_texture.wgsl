// K-major packed codes from an rgba32uint texture: texel (n4, kt) holds QV4 k by 4 rows n.
@group(0) @binding(2) var wt: texture_2d<u32>;

fn wk(n4: u32, kt: u32) -> vec4<u32> {
    return textureLoad(wt, vec2<u32>(min(n4, p.n4 - 1u), kt), 0);
}
