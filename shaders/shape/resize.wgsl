// Resize over the last two dims: the input viewed as [planes][ih][iw], the output as
// [planes][oh][ow]. Source coordinates by the ONNX formulas in f32, divisions written as in the
// CPU reference (`coord`): 0 half_pixel, 1 pytorch_half_pixel, 2 align_corners, 3 asymmetric,
// 4 tf_half_pixel_for_nearest. LINEAR = 0: nearest (`nearest` mode 0 round_prefer_floor,
// 1 round_prefer_ceil, 2 floor, 3 ceil); LINEAR = 1: bilinear, width first, neighbours clamped.
struct Params {
    n: u32, planes: u32, ih: u32, iw: u32,
    oh: u32, ow: u32, coord: u32, nearest: u32,
    scale_h: f32, scale_w: f32, _p0: u32, _p1: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn coord(o: u32, len_in: u32, len_out: u32, scale: f32) -> f32 {
    let xo = f32(o);
    switch p.coord {
        case 1u: {
            if (len_out > 1u) { return (xo + 0.5) / scale - 0.5; }
            return 0.0;
        }
        case 2u: {
            if (len_out == 1u) { return 0.0; }
            return xo * (f32(len_in) - 1.0) / (f32(len_out) - 1.0);
        }
        case 3u: { return xo / scale; }
        case 4u: { return (xo + 0.5) / scale; }
        default: { return (xo + 0.5) / scale - 0.5; }
    }
}

fn nearest(c: f32, len_in: u32) -> u32 {
    let f = floor(c);
    let frac = c - f;
    var i = f;
    switch p.nearest {
        case 0u: { i = f + select(0.0, 1.0, frac > 0.5); }
        case 1u: { i = f + select(0.0, 1.0, frac >= 0.5); }
        case 3u: { i = ceil(c); }
        default: {}
    }
    return u32(clamp(i, 0.0, f32(len_in) - 1.0));
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 256u);
    if (i >= p.n) { return; }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let plane = i / (p.ow * p.oh);
    let base = plane * p.ih * p.iw;
    let cy = coord(oy, p.ih, p.oh, p.scale_h);
    let cx = coord(ox, p.iw, p.ow, p.scale_w);
    if (LINEAR == 0u) {
        y[i] = x[base + nearest(cy, p.ih) * p.iw + nearest(cx, p.iw)];
        return;
    }
    let fy = floor(cy);
    let fx = floor(cx);
    let ry = cy - fy;
    let rx = cx - fx;
    let lh = f32(p.ih) - 1.0;
    let lw = f32(p.iw) - 1.0;
    let y0 = u32(clamp(fy, 0.0, lh));
    let y1 = u32(clamp(fy + 1.0, 0.0, lh));
    let x0 = u32(clamp(fx, 0.0, lw));
    let x1 = u32(clamp(fx + 1.0, 0.0, lw));
    let r0 = base + y0 * p.iw;
    let r1 = base + y1 * p.iw;
    let top = x[r0 + x0] * (1.0 - rx) + x[r0 + x1] * rx;
    let bot = x[r1 + x0] * (1.0 - rx) + x[r1 + x1] * rx;
    y[i] = top * (1.0 - ry) + bot * ry;
}
