//! Kernel choice per node: a small pure function of the op, shapes, which inputs are constant,
//! and the device profile (whose `kernels` field autotuning filled in).

use crate::ops::{Kernel, Op, ShaderFile, ShaderKey};
use crate::profile::DeviceProfile;

/// The kernel that runs `op` on a device with profile `p`.
pub fn select(op: &Op, ins: &[Vec<usize>], is_const: &[bool], p: &DeviceProfile) -> Kernel {
    match op {
        Op::MatMul(_) | Op::Conv2d(_) if p.naive_only => Kernel::Naive,
        Op::MatMul(m) => {
            let a = &ins[0];
            let rows = if m.trans_a {
                a[a.len() - 1]
            } else {
                a[a.len() - 2]
            };
            let fits = |k: Kernel| match k {
                Kernel::GemmVec4 { .. } => m.vec4_ok(ins, is_const),
                Kernel::GemmBcast { .. } => is_const[1],
                Kernel::GemmTex { .. } => {
                    let (w, h) = crate::ops::matmul::tex_extent(m.trans_b, &ins[1]);
                    is_const[1] && tex_fits(w, h, p)
                }
                Kernel::GemmTex2 { .. } => {
                    let (w, h) = crate::ops::matmul::tex_extent(m.trans_b, &ins[1]);
                    let a_rows = crate::tensor::numel(&a[..a.len() - 1]);
                    let a_w = a[a.len() - 1].div_ceil(4);
                    is_const[1] && !m.trans_a && tex_fits(w, h, p) && tex_fits(a_w, a_rows, p)
                }
                _ => true,
            };
            let choice = if rows == 1 {
                p.kernels.gemv
            } else {
                p.kernels.gemm
            };
            if is_const[1] && fits(choice) {
                choice
            } else if is_const[1] {
                Kernel::GemmBcast {
                    tm: if rows == 1 { 1 } else { 4 },
                    tn4: 2,
                }
            } else if m.vec4_ok(ins, is_const) {
                Kernel::GemmVec4 {
                    tm: if rows == 1 { 1 } else { 4 },
                    tn: 4,
                }
            } else {
                p.kernels.gemm_tiled
            }
        }
        Op::Conv2d(c) => {
            if c.is_depthwise(&ins[0], &ins[1]) {
                let x = &ins[0];
                match p.kernels.dwconv {
                    Kernel::ConvDepthwiseTex2 { .. }
                        if !is_const[1]
                            || !tex_fits(x[3], x[0] * x[1] * x[2], p)
                            || x[1] > p.limits.max_texture_dimension_2d as usize =>
                    {
                        Kernel::ConvDepthwise { px: 4 }
                    }
                    k => k,
                }
            } else if is_const[1] {
                let (w, h) = crate::ops::conv::tex_extent(&ins[1], c.groups);
                let x = &ins[0];
                match p.kernels.conv {
                    Kernel::ConvTex2 { .. }
                        if !tex_fits(w, h, p) || !tex_fits(x[3], x[0] * x[1] * x[2], p) =>
                    {
                        Kernel::ConvTiled { px: 4 }
                    }
                    k => k,
                }
            } else {
                Kernel::Naive
            }
        }
        _ => Kernel::Standard,
    }
}

/// Whether a `w` x `h` texel texture fits the device.
fn tex_fits(w: usize, h: usize, p: &DeviceProfile) -> bool {
    let max = p.limits.max_texture_dimension_2d as usize;
    w <= max && h <= max
}

/// Candidate variants autotuning times for each choice (every one passes the same conformance
/// tests).
pub fn gemm_candidates() -> Vec<Kernel> {
    let vec4 = [(4, 4), (4, 8), (8, 4), (8, 8)].map(|(tm, tn)| Kernel::GemmVec4 { tm, tn });
    let bcast = [(4, 2), (8, 1), (8, 2)].map(|(tm, tn4)| Kernel::GemmBcast { tm, tn4 });
    let tex = [(4, 2), (8, 1), (8, 2)].map(|(tm, tn4)| Kernel::GemmTex { tm, tn4 });
    let tex2 = [(4, 2), (8, 1), (8, 2)].map(|(tm, tn4)| Kernel::GemmTex2 { tm, tn4 });
    vec4.into_iter()
        .chain(bcast)
        .chain(tex)
        .chain(tex2)
        .collect()
}
pub fn gemv_candidates() -> Vec<Kernel> {
    let vec4 = [1, 2, 4, 8].map(|tn| Kernel::GemmVec4 { tm: 1, tn });
    let bcast = [1, 2, 4].map(|tn4| Kernel::GemmBcast { tm: 1, tn4 });
    let tex = [1, 2, 4].map(|tn4| Kernel::GemmTex { tm: 1, tn4 });
    vec4.into_iter().chain(bcast).chain(tex).collect()
}
pub fn gemm_tiled_candidates() -> Vec<Kernel> {
    [(4, 4), (2, 4), (4, 2)]
        .iter()
        .map(|&(tm, tn)| Kernel::GemmTiled { tm, tn })
        .collect()
}
pub fn conv_candidates() -> Vec<Kernel> {
    let tiled = [2, 4, 8].map(|px| Kernel::ConvTiled { px });
    let tex2 = [4, 8].map(|px| Kernel::ConvTex2 { px });
    tiled.into_iter().chain(tex2).collect()
}
pub fn dwconv_candidates() -> Vec<Kernel> {
    let plain = [2, 4, 8].map(|px| Kernel::ConvDepthwise { px });
    let tex2 = [4, 8].map(|px| Kernel::ConvDepthwiseTex2 { px });
    plain.into_iter().chain(tex2).collect()
}

/// Shader modules of every variant the chooser can pick (for validation tests).
pub fn all_variant_shaders() -> Vec<ShaderKey> {
    let all = gemm_candidates()
        .into_iter()
        .chain(gemv_candidates())
        .chain(gemm_tiled_candidates())
        .chain(conv_candidates())
        .chain(dwconv_candidates());
    all.filter_map(shader_of).collect()
}

/// The shader module a kernel variant runs (the lowerings build the same keys).
pub fn shader_of(k: Kernel) -> Option<ShaderKey> {
    Some(match k {
        Kernel::GemmVec4 { tm, tn } => {
            let (wx, wy) = crate::ops::matmul::vec4_workgroup(tm);
            ShaderKey::new(
                ShaderFile::GemmVec4,
                &[("TM", tm), ("TN", tn), ("WG_X", wx), ("WG_Y", wy)],
            )
        }
        Kernel::GemmBcast { tm, tn4 } => {
            ShaderKey::new(ShaderFile::GemmBcast, &[("TM", tm), ("TN4", tn4)])
        }
        Kernel::GemmTiled { tm, tn } => {
            ShaderKey::new(ShaderFile::GemmTiled, &[("TM", tm), ("TN", tn)])
        }
        Kernel::GemmTex { tm, tn4 } => {
            ShaderKey::new(ShaderFile::GemmTex, &[("TM", tm), ("TN4", tn4)])
        }
        Kernel::ConvTiled { px } => ShaderKey::new(ShaderFile::ConvTiled, &[("PX", px)]),
        Kernel::ConvTex2 { px } => ShaderKey::new(ShaderFile::ConvTex2, &[("PX", px)]),
        Kernel::ConvDepthwiseTex2 { px } => {
            ShaderKey::new(ShaderFile::ConvDepthwiseTex2, &[("PX", px)])
        }
        Kernel::GemmTex2 { tm, tn4 } => {
            ShaderKey::new(ShaderFile::GemmTex2, &[("TM", tm), ("TN4", tn4)])
        }
        Kernel::ConvDepthwise { px } => ShaderKey::new(ShaderFile::ConvDepthwise, &[("PX", px)]),
        Kernel::Naive | Kernel::Standard => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Conv2d, MatMul};

    #[test]
    fn gemm_choice_follows_rows_layout_and_constness() {
        let mut p = DeviceProfile::portable();
        p.kernels.gemm = Kernel::GemmVec4 { tm: 4, tn: 4 };
        let lin = Op::MatMul(MatMul {
            trans_b: true,
            ..Default::default()
        });
        let c = [false, true];
        assert_eq!(
            select(&lin, &[vec![1, 64], vec![32, 64]], &c, &p),
            p.kernels.gemv
        );
        assert_eq!(
            select(&lin, &[vec![8, 64], vec![32, 64]], &c, &p),
            p.kernels.gemm
        );
        // vec4 cannot take K = 63: a constant B falls back to the bcast kernel.
        assert_eq!(
            select(&lin, &[vec![8, 63], vec![32, 63]], &c, &p),
            Kernel::GemmBcast { tm: 4, tn4: 2 }
        );
        // Activation B: vec4 when K % 4 == 0 and B is [N, K], else the scalar tiled kernel.
        assert_eq!(
            select(&lin, &[vec![8, 64], vec![32, 64]], &[false, false], &p),
            Kernel::GemmVec4 { tm: 4, tn: 4 }
        );
        let mm = Op::MatMul(MatMul::default());
        assert_eq!(
            select(&mm, &[vec![8, 64], vec![64, 32]], &[false, false], &p),
            p.kernels.gemm_tiled
        );
    }

    #[test]
    fn depthwise_detected() {
        let p = DeviceProfile::portable();
        let dw = Op::Conv2d(Conv2d {
            groups: 32,
            ..Default::default()
        });
        assert_eq!(
            select(
                &dw,
                &[vec![1, 32, 9, 9], vec![32, 1, 3, 3]],
                &[false, true],
                &p
            ),
            p.kernels.dwconv
        );
        let mut naive = p.clone();
        naive.naive_only = true;
        assert_eq!(
            select(
                &dw,
                &[vec![1, 32, 9, 9], vec![32, 1, 3, 3]],
                &[false, true],
                &naive
            ),
            Kernel::Naive
        );
    }
}
