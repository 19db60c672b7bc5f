// Weight columns for qgemv_kn.wgsl from packed words (w_kn_buffer/w_kn_texture): each texel is
// unpacked by the shared dequantiser; values are the codes themselves.
const NORM: f32 = 1.0;

fn col_fma(n4: u32, kt: u32, xa: vec4<f32>, xb: vec4<f32>, acc: vec4<f32>) -> vec4<f32> {
    return texel_fma(wk(n4, kt), xa, xb, acc);
}
