//! GPU kernels that read sparse weights (CSR, N:M) as stored, against the CPU reference
//! computing on the *same* sparse weights (decoded by the Rust decoder), and the density rule
//! that picks them.
//!
//! Tolerances. f32 and f16 values decode to the same f32 weights in WGSL (f16 by exact bit
//! operations) and in Rust. The kernels sum `v * x` over the stored entries in column order;
//! the reference sums `x * w` over every column in the same order, and the pruned columns add
//! exact zeros, so the two sums are of the same terms in the same order — they differ only by
//! the rounding of each step (the device may fuse a multiply-add). i8 values are summed as
//! codes and scaled once per output, the reference sums `code * scale` rounded to f32: the same
//! real number, reassociated, with one more rounding per term. Each of the nnz terms passes
//! through at most nnz + 3 roundings either way, so |got - want| <= 2 (nnz + 3) eps
//! sum_k |x_k w_k|, computed per element in f64 (plus 2 eps |want| for the bias's rounding;
//! relu6 only shrinks differences).

mod common;
use common::*;
use wgedge::format::{prune_nm, SparseLayout, SparseSpec, SparseValues, WeightFormat};
use wgedge::graph::GraphBuilder;
use wgedge::ops::{Activation, KernelVariant, MatMulKernel, Op};
use wgedge::profile::{DeviceProfile, TunedChoices};
use wgedge::sched::{Placement, Plan, PlanOptions};
use wgedge::{Model, Session, SessionOptions, Tensor};

fn sparse(layout: SparseLayout, values: SparseValues) -> WeightFormat {
    WeightFormat::Sparse(SparseSpec { layout, values })
}

const VALUES: [SparseValues; 3] = [SparseValues::F32, SparseValues::F16, SparseValues::I8];

/// A random `[n, k]` weight with about `density` of its entries nonzero; row 0 is empty and
/// row 1 fully dense (when there are enough rows).
fn sparse_weight(n: usize, k: usize, density: f64, seed: u64) -> Tensor {
    let w = Tensor::random(&[n, k], seed);
    let keep = Tensor::random(&[n, k], seed + 100);
    let (ws, ks) = (w.f32s("w").unwrap(), keep.f32s("k").unwrap());
    let v: Vec<f32> = (0..n * k)
        .map(|i| {
            let row = i / k;
            let kept = match row {
                0 if n > 2 => false,
                1 if n > 2 => true,
                _ => (f64::from(ks[i]) + 1.0) / 2.0 < density,
            };
            if kept {
                ws[i]
            } else {
                0.0
            }
        })
        .collect();
    Tensor::new(&[n, k], v).unwrap()
}

/// An `n:m` weight: random, pruned, with row 0 empty.
fn nm_weight(rows: usize, k: usize, n: usize, m: usize, seed: u64) -> Tensor {
    let w = prune_nm(&Tensor::random(&[rows, k], seed), n, m).unwrap();
    let mut v = w.f32s("w").unwrap().to_vec();
    if rows > 2 {
        v[..k].fill(0.0);
    }
    Tensor::new(&[rows, k], v).unwrap()
}

/// Linear (`x @ W^T (+ b)`, relu6) on `w` stored in format `f`: model and an input.
fn linear_model(a_shape: &[usize], w: &Tensor, f: &WeightFormat, bias: bool) -> (Model, Tensor) {
    let n = w.shape()[0];
    let mut b = GraphBuilder::new();
    let x = b.input("x", a_shape);
    let wn = b.weight_packed("w", w, f.clone()).unwrap();
    let bname = bias.then(|| b.weight("b", Tensor::random(&[n], 6)));
    let y = b.linear(&x, &wn, bname.as_deref(), Activation::Relu6);
    b.output(&y);
    (Model::from_builder(b).unwrap(), Tensor::random(a_shape, 3))
}

fn cpu_run(model: &Model, x: &Tensor) -> Tensor {
    let s = Session::cpu(model, reference()).unwrap();
    s.run(&[("x", x)]).unwrap().remove(0)
}

/// Per-element bound 2 (nnz + 3) eps sum_k |x_k w_k| (see the module docs), `w` decoded.
fn bound(x: &Tensor, w: &Tensor) -> Vec<f32> {
    let (xs, ws) = (x.f32s("x").unwrap(), w.f32s("w").unwrap());
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let rows = xs.len() / k;
    let mut out = Vec::with_capacity(rows * n);
    for r in 0..rows {
        for j in 0..n {
            let wr = &ws[j * k..][..k];
            let nnz = wr.iter().filter(|v| **v != 0.0).count() as f64;
            let s: f64 = (0..k)
                .map(|i| (xs[r * k + i] as f64 * wr[i] as f64).abs())
                .sum();
            out.push((2.0 * (nnz + 3.0) * f32::EPSILON as f64 * s) as f32 + 1e-30);
        }
    }
    out
}

fn choose(k: MatMulKernel) -> TunedChoices {
    let v = serde_json::to_value(k).unwrap();
    let mut c = TunedChoices::new();
    let m = c.entry("matmul".into()).or_default();
    m.insert("csr".into(), v.clone());
    m.insert("bsr".into(), v.clone());
    m.insert("nm".into(), v);
    c
}

/// Runs `model` with kernel `kern` forced, checks it is the kernel that ran on the weight as
/// stored, and compares with the reference element by element.
fn check(
    ctx: &std::sync::Arc<wgedge::GpuContext>,
    what: &str,
    model: &Model,
    x: &Tensor,
    kern: MatMulKernel,
) {
    let want = cpu_run(model, x);
    let shape = model.graph.weights[0].shape.clone();
    let f = model.graph.format_of("w").clone();
    let w = f.decode("w", &shape, &model.weights).unwrap();
    let tol = bound(x, &w);
    let s = Session::with_context(model, ctx.clone(), opts_with(choose(kern), false)).unwrap();
    let node = &s.plan().nodes[0];
    assert_eq!(node.placement, Placement::Gpu, "{what}");
    assert_eq!(node.kernel, kern.name(), "{what}");
    assert!(
        s.plan().values.iter().all(|v| !v.decoded),
        "{what}: decoded"
    );
    let got = s.run(&[("x", x)]).unwrap().remove(0);
    assert_eq!(got.shape(), want.shape(), "{what}");
    let (g, e) = (got.f32s("g").unwrap(), want.f32s("w").unwrap());
    for (i, ((a, b), t)) in g.iter().zip(e).zip(&tol).enumerate() {
        let t = t + 2.0 * f32::EPSILON * b.abs();
        assert!(
            (a - b).abs() <= t,
            "{what} [{}]: element {i}: {a} vs {b} (bound {t})",
            kern.name()
        );
    }
}

#[test]
fn csr_kernels_match_the_reference_on_the_same_weights() {
    let Some(ctx) = gpu() else { return };
    // (A shape, N, density): SpMV, odd K and N, batch dims, large K, a fully dense weight.
    let cases: [(Vec<usize>, usize, f64); 5] = [
        (vec![1, 37], 5, 0.3),
        (vec![1, 300], 131, 0.05),
        (vec![3, 100], 67, 0.2),
        (vec![2, 3, 64], 33, 1.0),
        (vec![5, 1500], 9, 0.1),
    ];
    for (ci, (a_shape, n, d)) in cases.iter().enumerate() {
        let k = *a_shape.last().unwrap();
        let w = sparse_weight(*n, k, *d, 11 + ci as u64);
        for (vi, v) in VALUES.into_iter().enumerate() {
            let f = sparse(SparseLayout::Csr, v);
            let (model, x) = linear_model(a_shape, &w, &f, (ci + vi) % 2 == 0);
            // Rows of A per invocation, or a workgroup per output, in rotation (each
            // pipeline compiles on the device).
            let kern = match (ci + vi) % 5 {
                4 => MatMulKernel::CsrWg {
                    max_density_pct: 100,
                },
                r => MatMulKernel::Csr {
                    tm: [1, 2, 4, 8][r],
                    max_density_pct: 100,
                },
            };
            check(
                &ctx,
                &format!("{} {a_shape:?}x{n}", f.label()),
                &model,
                &x,
                kern,
            );
            // The texture path on the same weight (the A texture needs no K % 4).
            let tex = MatMulKernel::CsrTex {
                tm: [1, 2, 4][(ci + vi) % 3],
                max_density_pct: 100,
            };
            check(
                &ctx,
                &format!("{} {a_shape:?}x{n}", f.label()),
                &model,
                &x,
                tex,
            );
        }
    }
}

#[test]
fn staged_csr_kernel_matches_the_reference_on_the_same_weights() {
    let Some(ctx) = gpu() else { return };
    // (A shape, N, density, chunk width): one chunk partly used (K 37 < 256), K across several
    // chunks with a partial last one (1500 / 256, 4100 / 4096: large K), K exactly one chunk,
    // N not a multiple of the workgroup's 64 rows, batch 1 and > 1 (odd M, batch dims), an
    // empty row 0 and a full row 1 in every weight, a fully dense weight.
    let cases: [(Vec<usize>, usize, f64, u32); 6] = [
        (vec![1, 37], 5, 0.3, 256),
        (vec![1, 1500], 131, 0.05, 256),
        (vec![3, 256], 67, 0.2, 256),
        (vec![2, 3, 64], 33, 1.0, 1024),
        (vec![5, 1500], 9, 0.1, 512),
        (vec![1, 4100], 70, 0.1, 4096),
    ];
    for (ci, (a_shape, n, d, cw)) in cases.iter().enumerate() {
        let k = *a_shape.last().unwrap();
        let w = sparse_weight(*n, k, *d, 31 + ci as u64);
        for (vi, v) in VALUES.into_iter().enumerate() {
            let f = sparse(SparseLayout::Csr, v);
            let (model, x) = linear_model(a_shape, &w, &f, (ci + vi) % 2 == 1);
            // Rows of A per invocation in rotation, within WebGPU's guaranteed 16 KiB of
            // workgroup storage (tm * cw * 4 bytes).
            let tm = [1u32, 2, 4][(ci + vi) % 3].min(4096 / cw);
            let kern = MatMulKernel::CsrStage {
                tm,
                cw: *cw,
                max_density_pct: 100,
            };
            check(
                &ctx,
                &format!("{} {a_shape:?}x{n} staged", f.label()),
                &model,
                &x,
                kern,
            );
        }
    }
}

#[test]
fn uniform_csr_kernel_matches_the_reference_on_the_same_weights() {
    let Some(ctx) = gpu() else { return };
    // (A shape, N, density): K not a multiple of 4 or of a group of 8 (37), N not a multiple
    // of the workgroup's 64 rows, batch 1 and > 1 (odd M, batch dims), an empty row 0 and a
    // full row 1 in every weight, a fully dense weight, and A filling the 64 KiB uniform
    // buffer exactly (1 x 16384).
    let cases: [(Vec<usize>, usize, f64); 7] = [
        (vec![1, 37], 5, 0.3),
        (vec![1, 1500], 131, 0.05),
        (vec![3, 256], 67, 0.2),
        (vec![2, 3, 64], 33, 1.0),
        (vec![5, 1500], 9, 0.1),
        (vec![1, 4100], 70, 0.1),
        (vec![1, 16384], 3, 0.02),
    ];
    for (ci, (a_shape, n, d)) in cases.iter().enumerate() {
        let k = *a_shape.last().unwrap();
        let w = sparse_weight(*n, k, *d, 61 + ci as u64);
        for (vi, v) in VALUES.into_iter().enumerate() {
            let f = sparse(SparseLayout::Csr, v);
            let (model, x) = linear_model(a_shape, &w, &f, (ci + vi) % 2 == 1);
            let kern = MatMulKernel::CsrUni {
                tm: [1u32, 2, 4][(ci + vi) % 3],
                max_density_pct: 100,
            };
            check(
                &ctx,
                &format!("{} {a_shape:?}x{n} uniform", f.label()),
                &model,
                &x,
                kern,
            );
        }
    }
    // A past 64 KiB (2 rows x 8200 columns): the kernel does not fit, another one runs.
    let w = sparse_weight(4, 8200, 0.05, 9);
    let f = sparse(SparseLayout::Csr, SparseValues::F32);
    let (model, _) = linear_model(&[2, 8200], &w, &f, false);
    let kern = MatMulKernel::CsrUni {
        tm: 1,
        max_density_pct: 100,
    };
    let s = Session::with_context(&model, ctx.clone(), opts_with(choose(kern), false)).unwrap();
    assert_ne!(s.plan().nodes[0].kernel, kern.name());
}

/// A random `[n, k]` weight pruned to `r x 4` blocks kept with probability `density`; block
/// row 0 is empty and block row 1 fully kept (when there are enough block rows).
fn bsr_weight(n: usize, k: usize, r: usize, density: f64, seed: u64) -> Tensor {
    let w = Tensor::random(&[n, k], seed);
    let keep = Tensor::random(&[n / r, k / 4], seed + 50);
    let (ws, ks) = (w.f32s("w").unwrap(), keep.f32s("k").unwrap());
    let v: Vec<f32> = (0..n * k)
        .map(|i| {
            let (br, bc) = (i / k / r, i % k / 4);
            let kept = match br {
                0 if n / r > 2 => false,
                1 if n / r > 2 => true,
                _ => (f64::from(ks[br * (k / 4) + bc]) + 1.0) / 2.0 < density,
            };
            if kept {
                ws[i]
            } else {
                0.0
            }
        })
        .collect();
    Tensor::new(&[n, k], v).unwrap()
}

#[test]
fn bsr_kernel_matches_the_reference_on_the_same_weights() {
    let Some(ctx) = gpu() else { return };
    // (A shape, N, block rows r, density): SpMV, batch dims, one block column, dense blocks.
    let cases: [(Vec<usize>, usize, usize, f64); 5] = [
        (vec![1, 36], 8, 4, 0.3),
        (vec![3, 4], 6, 2, 0.5),
        (vec![2, 3, 64], 40, 8, 0.2),
        (vec![1, 1200], 13, 1, 0.1),
        (vec![5, 96], 16, 4, 1.0),
    ];
    for (ci, (a_shape, n, r, d)) in cases.iter().enumerate() {
        let k = *a_shape.last().unwrap();
        let w = bsr_weight(*n, k, *r, *d, 31 + ci as u64);
        for (vi, v) in VALUES.into_iter().enumerate() {
            let f = sparse(SparseLayout::Bsr { r: *r, c: 4 }, v);
            let (model, x) = linear_model(a_shape, &w, &f, (ci + vi) % 2 == 0);
            let kern = MatMulKernel::BsrTex {
                max_density_pct: 100,
            };
            check(
                &ctx,
                &format!("{} {a_shape:?}x{n}", f.label()),
                &model,
                &x,
                kern,
            );
        }
    }
}

#[test]
fn csr_kernels_take_an_all_zero_weight_and_a_transposed_a() {
    let Some(ctx) = gpu() else { return };
    // nnz = 0: empty indices and values parts; every output is the bias.
    let zero = Tensor::new(&[6, 10], vec![0.0; 60]).unwrap();
    for v in VALUES {
        let f = sparse(SparseLayout::Csr, v);
        let (model, x) = linear_model(&[2, 10], &zero, &f, true);
        for kern in [
            MatMulKernel::Csr {
                tm: 2,
                max_density_pct: 100,
            },
            MatMulKernel::CsrWg {
                max_density_pct: 100,
            },
            MatMulKernel::CsrTex {
                tm: 4,
                max_density_pct: 100,
            },
        ] {
            check(&ctx, &format!("all-zero {}", f.label()), &model, &x, kern);
        }
        // No stored block at all.
        let f = sparse(SparseLayout::Bsr { r: 2, c: 4 }, v);
        let z = Tensor::new(&[6, 12], vec![0.0; 72]).unwrap();
        let (model, x) = linear_model(&[2, 12], &z, &f, true);
        let kern = MatMulKernel::BsrTex {
            max_density_pct: 100,
        };
        check(&ctx, &format!("all-zero {}", f.label()), &model, &x, kern);
    }
    // A stored [K, M] (trans_a) with batch dims, against a [N, K] CSR weight.
    let w = sparse_weight(11, 30, 0.3, 8);
    for (tm, v) in [(1, SparseValues::F16), (4, SparseValues::I8)] {
        let f = sparse(SparseLayout::Csr, v);
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[2, 30, 5]);
        let wn = b.weight_packed("w", &w, f.clone()).unwrap();
        let op = wgedge::ops::MatMul {
            trans_a: true,
            trans_b: true,
            ..Default::default()
        };
        let y = b.node(Op::MatMul(op), &[&x, &wn]);
        b.output(&y);
        let model = Model::from_builder(b).unwrap();
        let xt = Tensor::random(&[2, 30, 5], 4);
        let want = cpu_run(&model, &xt);
        let s = Session::with_context(
            &model,
            ctx.clone(),
            opts_with(
                choose(MatMulKernel::Csr {
                    tm,
                    max_density_pct: 100,
                }),
                false,
            ),
        )
        .unwrap();
        assert!(s.plan().nodes[0].kernel.starts_with("csr-"));
        assert!(s.plan().values.iter().all(|v| !v.decoded));
        let got = s.run(&[("x", &xt)]).unwrap().remove(0);
        // Same terms in the same order (module docs): a tight relative bound suffices here.
        assert_close(&format!("trans_a {}", f.label()), &got, &want, 1e-5, 1e-5);
    }
}

#[test]
fn nm_kernels_match_the_reference_on_the_same_weights() {
    let Some(ctx) = gpu() else { return };
    // (A shape, N, n, m): 2:4, 4:8, 1:8, 3:4, 5:16 and 1:1 (dense), batch 1 and > 1.
    let cases: [(Vec<usize>, usize, usize, usize); 6] = [
        (vec![1, 48], 5, 2, 4),
        (vec![3, 96], 67, 4, 8),
        (vec![1, 256], 130, 1, 8),
        (vec![2, 3, 64], 33, 3, 4),
        (vec![5, 96], 9, 5, 16),
        (vec![2, 20], 7, 1, 1),
    ];
    for (ci, (a_shape, rows, n, m)) in cases.iter().enumerate() {
        let k = *a_shape.last().unwrap();
        let w = nm_weight(*rows, k, *n, *m, 21 + ci as u64);
        for (vi, v) in VALUES.into_iter().enumerate() {
            let f = sparse(SparseLayout::NM { n: *n, m: *m }, v);
            let (model, x) = linear_model(a_shape, &w, &f, (ci + vi) % 2 == 1);
            let tm = [1, 2, 4, 8][(ci + 2 * vi) % 4];
            let kern = MatMulKernel::Nm {
                tm,
                max_density_pct: 100,
            };
            check(
                &ctx,
                &format!("{} {a_shape:?}x{rows}", f.label()),
                &model,
                &x,
                kern,
            );
        }
    }
}

#[test]
fn nm_texture_kernel_matches_the_reference_on_the_same_weights() {
    let Some(ctx) = gpu() else { return };
    // (A shape, N, n): one group (K 4), a number of value quads that does not fill a position
    // texel (K 36), large K whose K-major textures wrap over several texture rows (4100 x 70),
    // N = 1, N not a multiple of 64, batch 1 and > 1 (odd M, batch dims), 2:4 and 1:4; every
    // weight has an all-zero row 0.
    let cases: [(Vec<usize>, usize, usize); 6] = [
        (vec![1, 4], 1, 2),
        (vec![3, 36], 67, 2),
        (vec![1, 4100], 70, 2),
        (vec![2, 3, 64], 33, 1),
        (vec![5, 36], 130, 1),
        (vec![1, 1000], 3, 2),
    ];
    for (ci, (a_shape, rows, n)) in cases.iter().enumerate() {
        let k = *a_shape.last().unwrap();
        let w = nm_weight(*rows, k, *n, 4, 41 + ci as u64);
        for v in VALUES {
            let f = sparse(SparseLayout::NM { n: *n, m: 4 }, v);
            let (model, x) = linear_model(a_shape, &w, &f, ci % 2 == 0);
            let kern = MatMulKernel::NmTex {
                max_density_pct: 100,
            };
            check(
                &ctx,
                &format!("{} {a_shape:?}x{rows} nmtex", f.label()),
                &model,
                &x,
                kern,
            );
        }
    }
}

#[test]
fn nm_texel_column_kernel_matches_the_reference_on_the_same_weights() {
    let Some(ctx) = gpu() else { return };
    // (A shape, N, n, texel columns per invocation): one group (K 4) and N = 1, groups that do
    // not fill a position texel (K 36: 9 groups), large K whose textures wrap over several
    // texture rows (4100 x 70), N not a multiple of 4 or of the workgroup's 256 rows, the last
    // invocation's second texel column past N (67, 130 with 2), batch 1 and > 1 (odd M, batch
    // dims), 2:4 and 1:4; every weight has an all-zero row 0. f32 values only: the kernel
    // refuses the others (checked below).
    let cases: [(Vec<usize>, usize, usize, u32); 7] = [
        (vec![1, 4], 1, 2, 1),
        (vec![3, 36], 67, 2, 2),
        (vec![1, 4100], 70, 2, 2),
        (vec![2, 3, 64], 33, 1, 1),
        (vec![5, 36], 130, 1, 2),
        (vec![1, 1000], 3, 2, 1),
        (vec![1, 512], 257, 2, 2),
    ];
    for (ci, (a_shape, rows, n, tn4)) in cases.iter().enumerate() {
        let k = *a_shape.last().unwrap();
        let w = nm_weight(*rows, k, *n, 4, 51 + ci as u64);
        let f = sparse(SparseLayout::NM { n: *n, m: 4 }, SparseValues::F32);
        let (model, x) = linear_model(a_shape, &w, &f, ci % 2 == 0);
        let kern = MatMulKernel::NmKn {
            tn4: *tn4,
            max_density_pct: 100,
        };
        check(
            &ctx,
            &format!("{} {a_shape:?}x{rows} nmkn", f.label()),
            &model,
            &x,
            kern,
        );
    }
    // f16 / i8 values: not this kernel's layout, so the plan does not run it on them.
    let w = nm_weight(8, 16, 2, 4, 5);
    for v in [SparseValues::F16, SparseValues::I8] {
        let f = sparse(SparseLayout::NM { n: 2, m: 4 }, v);
        let (model, _) = linear_model(&[1, 16], &w, &f, false);
        let kern = MatMulKernel::NmKn {
            tn4: 1,
            max_density_pct: 100,
        };
        let s = Session::with_context(&model, ctx.clone(), opts_with(choose(kern), false)).unwrap();
        assert_ne!(s.plan().nodes[0].kernel, kern.name(), "{}", f.label());
    }
}

/// The kernel a plan (no device needed) picks for a Linear on `w` in format `f`, and whether
/// the weight was decoded.
fn planned(
    w: &Tensor,
    f: &WeightFormat,
    m: usize,
    kernels: TunedChoices,
) -> (String, bool, String) {
    planned_on(w, f, m, kernels, DeviceProfile::portable())
}

fn planned_on(
    w: &Tensor,
    f: &WeightFormat,
    m: usize,
    kernels: TunedChoices,
    mut p: DeviceProfile,
) -> (String, bool, String) {
    let k = w.shape()[1];
    let (model, _) = linear_model(&[m, k], w, f, false);
    p.kernels = kernels;
    let opts = PlanOptions {
        reuse: true,
        cpu_fallback: false,
    };
    let plan = Plan::new(&model.graph, &model.weights, Some(&p), opts).unwrap();
    let decoded = plan.values.iter().any(|v| v.name == "w" && v.decoded);
    (plan.nodes[0].kernel.clone(), decoded, plan.describe())
}

#[test]
fn sparse_kernels_run_below_the_density_threshold_and_dense_above() {
    let none = TunedChoices::new;
    let csr = sparse(SparseLayout::Csr, SparseValues::F32);
    // CSR at ~5 % (under the default 10 %): the sparse kernel on the stored weight.
    let thin = sparse_weight(64, 200, 0.04, 1);
    let (k, dec, _) = planned(&thin, &csr, 1, none());
    assert!(k.starts_with("csrtex-1x1") && !dec, "{k} {dec}");
    let (k, dec, _) = planned(&thin, &csr, 8, none());
    assert!(k.starts_with("csrtex-4x1") && !dec, "{k} {dec}");
    // At ~40 %: decoded for a dense kernel, and the plan says so.
    let thick = sparse_weight(64, 200, 0.4, 2);
    let (k, dec, text) = planned(&thick, &csr, 1, none());
    assert!(
        !k.starts_with("csr") && dec && text.contains("DECODED"),
        "{k}\n{text}"
    );
    // A chosen threshold moves the crossover either way.
    let at = |pct| {
        choose(MatMulKernel::Csr {
            tm: 2,
            max_density_pct: pct,
        })
    };
    let (k, dec, _) = planned(&thick, &csr, 1, at(50));
    assert!(k == "csr-2x1-d50" && !dec, "{k}");
    let (k, dec, _) = planned(&thin, &csr, 1, at(0));
    assert!(!k.starts_with("csr") && dec, "{k}");
    // N:M by n / m against its default 25 %: 1:4 and 1:8 run sparse, 2:4 and 3:4 are decoded.
    for (n, m, sparse_kernel) in [(1, 4, true), (1, 8, true), (2, 4, false), (3, 4, false)] {
        let w = nm_weight(16, 64, n, m, 3);
        let f = sparse(SparseLayout::NM { n, m }, SparseValues::F16);
        let (k, dec, _) = planned(&w, &f, 1, none());
        assert_eq!(k.starts_with("nm-1x1"), sparse_kernel, "{n}:{m}: {k}");
        assert_eq!(dec, !sparse_kernel, "{n}:{m}");
    }
    // BSR with 4-column blocks runs bsrtex below its 50 % default; other block shapes and
    // denser weights are decoded.
    let bsr4 = sparse(SparseLayout::Bsr { r: 4, c: 4 }, SparseValues::F32);
    let (k, dec, _) = planned(&bsr_weight(64, 200, 4, 0.2, 1), &bsr4, 1, none());
    assert!(k == "bsrtex-d50" && !dec, "{k}");
    let (k, dec, _) = planned(&bsr_weight(64, 200, 4, 0.8, 1), &bsr4, 1, none());
    assert!(!k.starts_with("bsr") && dec, "{k}");
    let bsr = sparse(SparseLayout::Bsr { r: 4, c: 1 }, SparseValues::F32);
    let (k, dec, _) = planned(&thin, &bsr, 1, none());
    assert!(!k.starts_with("csr") && !k.starts_with("bsr") && dec, "{k}");
    // A device with 7 storage buffers per stage: CSR's storage kernel (8 bindings) does not
    // fit, so the chosen one is passed over for the texture one (5 buffers, 3 textures).
    let mut small = DeviceProfile::portable();
    small.limits.max_storage_buffers_per_stage = 7;
    let (k, dec, _) = planned_on(&thin, &csr, 1, at(10), small.clone());
    assert!(k.starts_with("csrtex-1x1") && !dec, "{k}");
    let w = nm_weight(16, 64, 1, 4, 3);
    let f = sparse(SparseLayout::NM { n: 1, m: 4 }, SparseValues::I8);
    let (k, dec, _) = planned_on(&w, &f, 3, none(), small);
    assert!(k.starts_with("nm-4x1") && !dec, "{k}");
    // Choices are checked: the threshold defaults per layout, block shapes are the shader's.
    let ok = serde_json::json!({"kernel": "csr", "tm": 4});
    assert_eq!(
        Op::check_choice("matmul", "csr", &ok).unwrap(),
        "csr-4x1-d10"
    );
    let ok = serde_json::json!({"kernel": "nm", "tm": 1});
    assert_eq!(Op::check_choice("matmul", "nm", &ok).unwrap(), "nm-1x1-d25");
    let bad = serde_json::json!({"kernel": "csr", "tm": 3});
    assert!(Op::check_choice("matmul", "csr", &bad).is_err());
    let bad = serde_json::json!({"kernel": "csr", "tm": 1, "max_density_pct": 101});
    assert!(Op::check_choice("matmul", "csr", &bad).is_err());
}

#[test]
fn sparse_weights_stay_sparse_on_the_device_and_dense_fallback_runs() {
    let Some(ctx) = gpu() else { return };
    let f = sparse(SparseLayout::Csr, SparseValues::I8);
    let w = sparse_weight(256, 512, 0.05, 4);
    let (model, x) = linear_model(&[2, 512], &w, &f, true);
    let s =
        Session::with_context(&model, ctx.clone(), opts_with(TunedChoices::new(), false)).unwrap();
    assert!(s.plan().nodes[0].kernel.starts_with("csrtex-4x1"));
    assert!(
        s.plan().values.iter().all(|v| !v.decoded),
        "nothing decoded"
    );
    let stored = f.stored_bytes("w", &model.weights) as u64;
    let dev = s.weight_device_bytes();
    // Stored parts plus the bias (f32), the texture layout's padding (at most 3 entries of a
    // 4-byte column and a 1-byte value per row) and each part rounded to a 16-byte texel.
    assert!(
        dev >= stored && dev <= stored + 256 * 4 + 256 * 15 + 3 * 16,
        "weights on the device: {dev} bytes for {stored} stored bytes"
    );
    let want = cpu_run(&model, &x);
    let got = s.run(&[("x", &x)]).unwrap().remove(0);
    assert_close("csr-i8 linear", &got, &want, 1e-4, 1e-4);

    // Above the threshold: decoded, said in the plan and the notices, still the reference.
    let w = sparse_weight(40, 72, 0.6, 5);
    let (model, x) = linear_model(&[3, 72], &w, &f, false);
    let s =
        Session::with_context(&model, ctx.clone(), opts_with(TunedChoices::new(), false)).unwrap();
    assert_eq!(s.plan().nodes[0].placement, Placement::Gpu);
    assert!(!s.plan().nodes[0].kernel.starts_with("csr"));
    assert!(
        s.plan().describe().contains("DECODED"),
        "{}",
        s.plan().describe()
    );
    assert!(
        s.notices().iter().any(|n| n.contains("decoded")),
        "{:?}",
        s.notices()
    );
    let want = cpu_run(&model, &x);
    let got = s.run(&[("x", &x)]).unwrap().remove(0);
    assert_close("decoded csr-i8 linear", &got, &want, 1e-4, 1e-4);
}

/// A pointwise conv (bias, residual, relu6) on a CSR weight `w` `[cout, cin]` stored as
/// `[cout, cin, 1, 1]` in format `f`.
fn conv1x1_model(x_shape: &[usize], w: &Tensor, f: &WeightFormat) -> Model {
    let (cout, cin) = (w.shape()[0], w.shape()[1]);
    let w4 = w.clone().reshaped(&[cout, cin, 1, 1]).unwrap();
    let mut b = GraphBuilder::new();
    let x = b.input("x", x_shape);
    let r = b.input("r", &[x_shape[0], cout, x_shape[2], x_shape[3]]);
    let wn = b.weight_packed("w", &w4, f.clone()).unwrap();
    let bias = b.weight("b", Tensor::random(&[cout], 6));
    let conv = wgedge::ops::Conv2d {
        bias: true,
        residual: true,
        act: Activation::Relu6,
        ..Default::default()
    };
    let y = b.node(Op::Conv2d(conv), &[&x, &wn, &bias, &r]);
    b.output(&y);
    Model::from_builder(b).unwrap()
}

#[test]
fn sparse_pointwise_conv_matches_the_reference_on_the_same_weights() {
    use wgedge::ops::ConvKernel;
    let Some(ctx) = gpu() else { return };
    // (x shape, cout, density): H*W not a multiple of 4 or 8, batch > 1, one pixel, a fully
    // dense weight; row 0 of each weight is empty and row 1 dense (sparse_weight).
    let cases: [(Vec<usize>, usize, f64); 4] = [
        (vec![1, 37, 5, 7], 13, 0.3),
        (vec![2, 16, 9, 9], 8, 0.1),
        (vec![1, 64, 1, 1], 5, 0.5),
        (vec![3, 8, 4, 6], 6, 1.0),
    ];
    for (ci, (xs, cout, d)) in cases.iter().enumerate() {
        let w = sparse_weight(*cout, xs[1], *d, 60 + ci as u64);
        for (vi, v) in VALUES.into_iter().enumerate() {
            let f = sparse(SparseLayout::Csr, v);
            let model = conv1x1_model(xs, &w, &f);
            let x = Tensor::random(xs, 3);
            let r = Tensor::random(&[xs[0], *cout, xs[2], xs[3]], 4);
            let cpu = Session::cpu(&model, reference()).unwrap();
            let want = cpu.run(&[("x", &x), ("r", &r)]).unwrap().remove(0);
            let kern = ConvKernel::SparseTex {
                px: [1, 2][(ci + vi) % 2],
                max_density_pct: 100,
            };
            let mut c = TunedChoices::new();
            c.entry("conv2d".into())
                .or_default()
                .insert("csr1x1".into(), serde_json::to_value(kern).unwrap());
            let s = Session::with_context(&model, ctx.clone(), opts_with(c, false)).unwrap();
            let node = &s.plan().nodes[0];
            assert_eq!(node.kernel, kern.name(), "{}", f.label());
            assert!(s.plan().values.iter().all(|v| !v.decoded), "decoded");
            let got = s.run(&[("x", &x), ("r", &r)]).unwrap().remove(0);
            // At most 64 products of magnitude <= 1 per output, the same terms as the
            // reference in the same order (i8: codes summed, scaled once: one more rounding
            // per term): differences stay within ~64 * 2 eps * 64, far under 1e-4.
            assert_close(
                &format!("conv1x1 {} {xs:?}", f.label()),
                &got,
                &want,
                1e-4,
                1e-4,
            );
        }
    }
    // Under the default threshold (10%; about 4.6% here, row 1 dense included) the sparse
    // kernel runs; too dense for it, the weight is decoded for the dense kernels.
    let w = sparse_weight(64, 64, 0.03, 9);
    let f = sparse(SparseLayout::Csr, SparseValues::F32);
    let model = conv1x1_model(&[1, 64, 6, 6], &w, &f);
    let s =
        Session::with_context(&model, ctx.clone(), opts_with(TunedChoices::new(), false)).unwrap();
    assert!(
        s.plan().nodes[0].kernel.starts_with("csrtex-8px"),
        "{}",
        s.plan().describe()
    );
    let thick = sparse_weight(64, 64, 0.6, 9);
    let model = conv1x1_model(&[1, 64, 6, 6], &thick, &f);
    let s =
        Session::with_context(&model, ctx.clone(), opts_with(TunedChoices::new(), false)).unwrap();
    assert!(
        !s.plan().nodes[0].kernel.starts_with("csr"),
        "{}",
        s.plan().describe()
    );
    assert!(s.plan().describe().contains("DECODED"));
}

/// The CPU reference kernels (the ground truth; the fast CPU kernels sum in other orders).
fn reference() -> SessionOptions {
    SessionOptions {
        cpu_reference: true,
        ..Default::default()
    }
}

#[test]
fn cpu_sparse_kernel_matches_the_reference_on_every_sparse_format() {
    // (A shape, weight, format): CSR with empty and dense rows, BSR, N:M; f32/f16/i8 values;
    // SpMV, SpMM, batch dims, a bias.
    let w = sparse_weight(67, 40, 0.2, 5);
    let b = bsr_weight(16, 36, 4, 0.3, 6);
    let nm = nm_weight(9, 48, 2, 4, 7);
    let cases: Vec<(Vec<usize>, &Tensor, SparseLayout)> = vec![
        (vec![1, 40], &w, SparseLayout::Csr),
        (vec![2, 3, 40], &w, SparseLayout::Csr),
        (vec![1, 36], &b, SparseLayout::Bsr { r: 4, c: 4 }),
        (vec![5, 36], &b, SparseLayout::Bsr { r: 4, c: 4 }),
        (vec![1, 48], &nm, SparseLayout::NM { n: 2, m: 4 }),
        (vec![3, 48], &nm, SparseLayout::NM { n: 2, m: 4 }),
    ];
    for (ci, (a_shape, w, layout)) in cases.into_iter().enumerate() {
        for v in VALUES {
            let f = sparse(layout, v);
            let (model, x) = linear_model(&a_shape, w, &f, ci % 2 == 0);
            let want = cpu_run(&model, &x);
            let forced = SessionOptions {
                cpu_sparse_max_pct: Some(100),
                ..Default::default()
            };
            let s = Session::cpu(&model, forced).unwrap();
            let what = format!("{} {a_shape:?}", f.label());
            assert_eq!(s.plan().nodes[0].kernel, "cpu-spmm", "{what}");
            let pv = s.plan().values.iter().find(|v| v.name == "w").unwrap();
            assert!(
                pv.cpu_csr && !pv.decoded,
                "{what}: read as CSR, not decoded"
            );
            let got = s.run(&[("x", &x)]).unwrap().remove(0);
            // The stored entries summed in column order into four partial sums (one row of
            // A) or one (a batch): a reordered f32 sum of at most 48 products of values in
            // [-1, 1], within 48 roundings of 2^-24 of the sum's terms.
            assert_close(&what, &got, &want, 48.0 * 6e-8 * 48.0 + 1e-6, 1e-5);
        }
    }
}

/// The CPU sparse kernel runs only where it measured faster than dense: a 50%-pruned weight is
/// decoded (dense kernel), a 95%-pruned one read as stored, the batch threshold is lower than
/// the one-row one, and `cpu_sparse_max_pct` moves or disables it; every choice gives the
/// reference's result.
#[test]
fn cpu_sparse_kernel_runs_only_below_its_threshold() {
    let half = sparse_weight(64, 256, 0.5, 11);
    let tenth = sparse_weight(64, 256, 0.1, 12);
    let few = sparse_weight(64, 256, 0.03, 13);
    // (A shape, weight, option, sparse kernel expected)
    let cases: Vec<(Vec<usize>, &Tensor, Option<u32>, bool)> = vec![
        (vec![1, 256], &half, None, false),
        (vec![1, 256], &tenth, None, true),
        (vec![8, 256], &tenth, None, false),
        (vec![8, 256], &few, None, true),
        (vec![1, 256], &half, Some(100), true),
        (vec![1, 256], &few, Some(0), false),
    ];
    for (i, (a_shape, w, max, sparse_kernel)) in cases.into_iter().enumerate() {
        let f = sparse(SparseLayout::Csr, SparseValues::F32);
        let (model, x) = linear_model(&a_shape, w, &f, true);
        let want = cpu_run(&model, &x);
        let o = SessionOptions {
            cpu_sparse_max_pct: max,
            ..Default::default()
        };
        let s = Session::cpu(&model, o).unwrap();
        let what = format!("case {i}: A {a_shape:?}, option {max:?}");
        let pv = s.plan().values.iter().find(|v| v.name == "w").unwrap();
        assert_eq!(
            s.plan().nodes[0].kernel == "cpu-spmm",
            sparse_kernel,
            "{what}"
        );
        assert_eq!(pv.cpu_csr, sparse_kernel, "{what}: read as stored");
        assert_eq!(pv.decoded, !sparse_kernel, "{what}: decoded");
        let got = s.run(&[("x", &x)]).unwrap().remove(0);
        assert_close(&what, &got, &want, 256.0 * 6e-8 * 256.0 + 1e-6, 1e-5);
    }
}
