// y = f(x) for the math functions outside the activation table. OP (prepended const, the
// `MathKind` order): 0 log, 1 sqrt, 2 reciprocal, 3 sin, 4 cos, 5 exp, 6 floor, 7 ceil,
// 8 round (half to even), 9 sign.
struct Params { n: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn f(v: f32) -> f32 {
    switch OP {
        case 1u: { return sqrt(v); }
        case 2u: { return 1.0 / v; }
        case 3u: { return sin(v); }
        case 4u: { return cos(v); }
        case 5u: { return exp(v); }
        case 6u: { return floor(v); }
        case 7u: { return ceil(v); }
        case 8u: { return round(v); }
        case 9u: { return sign(v); }
        default: { return log(v); }
    }
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg, 256u);
    if (i >= p.n) { return; }
    y[i] = f(x[i]);
}
