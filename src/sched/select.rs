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
            if m.vec4_ok(ins, is_const) {
                if rows == 1 {
                    p.kernels.gemv_vec4
                } else {
                    p.kernels.gemm_vec4
                }
            } else {
                p.kernels.gemm_tiled
            }
        }
        Op::Conv2d(c) => {
            if c.is_depthwise(&ins[0], &ins[1]) {
                p.kernels.dwconv
            } else if is_const[1] {
                p.kernels.conv
            } else {
                Kernel::Naive
            }
        }
        _ => Kernel::Standard,
    }
}

/// Candidate variants autotuning times for each choice (every one passes the same conformance
/// tests).
pub fn gemm_vec4_candidates() -> Vec<Kernel> {
    [(4, 4), (4, 8), (8, 4), (8, 8), (2, 8)]
        .iter()
        .map(|&(tm, tn)| Kernel::GemmVec4 { tm, tn })
        .collect()
}
pub fn gemv_vec4_candidates() -> Vec<Kernel> {
    [1, 2, 4, 8]
        .iter()
        .map(|&tn| Kernel::GemmVec4 { tm: 1, tn })
        .collect()
}
pub fn gemm_tiled_candidates() -> Vec<Kernel> {
    [(4, 4), (2, 4), (4, 2)]
        .iter()
        .map(|&(tm, tn)| Kernel::GemmTiled { tm, tn })
        .collect()
}
pub fn conv_candidates() -> Vec<Kernel> {
    [2, 4, 8]
        .iter()
        .map(|&px| Kernel::ConvTiled { px })
        .collect()
}
pub fn dwconv_candidates() -> Vec<Kernel> {
    [2, 4, 8]
        .iter()
        .map(|&px| Kernel::ConvDepthwise { px })
        .collect()
}

/// Shader modules of every variant the chooser can pick (for validation tests).
pub fn all_variant_shaders() -> Vec<ShaderKey> {
    let mut keys = Vec::new();
    for k in gemm_vec4_candidates()
        .into_iter()
        .chain(gemv_vec4_candidates())
    {
        if let Kernel::GemmVec4 { tm, tn } = k {
            let (wx, wy) = if tm == 1 { (64, 1) } else { (8, 8) };
            keys.push(ShaderKey::new(
                ShaderFile::GemmVec4,
                &[("TM", tm), ("TN", tn), ("WG_X", wx), ("WG_Y", wy)],
            ));
        }
    }
    for k in gemm_tiled_candidates() {
        if let Kernel::GemmTiled { tm, tn } = k {
            keys.push(ShaderKey::new(
                ShaderFile::GemmTiled,
                &[("TM", tm), ("TN", tn)],
            ));
        }
    }
    for px in [2, 4, 8] {
        keys.push(ShaderKey::new(ShaderFile::ConvTiled, &[("PX", px)]));
        keys.push(ShaderKey::new(ShaderFile::ConvDepthwise, &[("PX", px)]));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Conv2d, MatMul};

    #[test]
    fn gemv_for_one_row_tiled_for_odd_k() {
        let p = DeviceProfile::portable();
        let lin = Op::MatMul(MatMul {
            trans_b: true,
            ..Default::default()
        });
        assert_eq!(
            select(&lin, &[vec![1, 64], vec![32, 64]], &[false, true], &p),
            p.kernels.gemv_vec4
        );
        assert_eq!(
            select(&lin, &[vec![8, 64], vec![32, 64]], &[false, true], &p),
            p.kernels.gemm_vec4
        );
        assert_eq!(
            select(&lin, &[vec![8, 63], vec![32, 63]], &[false, true], &p),
            p.kernels.gemm_tiled
        );
        // Activation B in [K, N] layout cannot be packed: scalar path.
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
