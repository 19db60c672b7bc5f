// y[i] = x[src(i)] for the data-movement ops (slice, expand, tile, pad, depth/space moves).
// Output coordinate o_d maps to source coordinate c = start_d + o_d * step_d, resolved against
// the source extent ext_d by `mode` (0 in range, 1 wrap, 2 fill outside, 3 clamp to the edge,
// 4 reflect), and the source offset is sum(c_d * st_d). Elements are moved as 32-bit words, so
// f32 and i32 data keep their bits. Up to 8 dims.
struct Params {
    n: u32, rank: u32, mode: u32, fill: u32,
    shape: array<vec4<u32>, 2>,
    ext: array<vec4<u32>, 2>,
    st: array<vec4<u32>, 2>,
    start: array<vec4<u32>, 2>, // i32 bits
    step: array<vec4<u32>, 2>,  // i32 bits
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

fn resolve(c: i32, e: i32) -> i32 {
    switch p.mode {
        case 1u: { return ((c % e) + e) % e; }
        case 3u: { return clamp(c, 0, e - 1); }
        case 4u: {
            if (e == 1) { return 0; }
            let period = 2 * (e - 1);
            let m = ((c % period) + period) % period;
            return select(m, period - m, m >= e);
        }
        default: { return c; }
    }
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 256u);
    if (i >= p.n) { return; }
    var rem = i;
    var src = 0u;
    var outside = false;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let q = u32(d) / 4u;
        let r = u32(d) % 4u;
        let extent = p.shape[q][r];
        let o = i32(rem % extent);
        rem = rem / extent;
        let e = i32(p.ext[q][r]);
        var c = resolve(bitcast<i32>(p.start[q][r]) + o * bitcast<i32>(p.step[q][r]), e);
        if (p.mode == 2u && (c < 0 || c >= e)) {
            outside = true;
            c = 0;
        }
        src += u32(c) * p.st[q][r];
    }
    if (outside) {
        y[i] = p.fill;
    } else {
        y[i] = x[src];
    }
}
