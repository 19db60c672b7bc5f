//! The integer ops of `ops::qlinear`: CPU references against hand-worked values (ONNX's own
//! examples, rounding ties, saturation, zero points at the ends of their range), and the GPU
//! `IntMatMul` kernel against the reference on odd shapes — equal, not close: i32 sums of
//! 8-bit code products are exact on both.

mod common;

use wgedge::ops::{DynPart, DynQuant, IntConv, IntMatMul, Op, Quantize, Requant};
use wgedge::tensor::TensorData;
use wgedge::{DType, Tensor};

fn u8s(shape: &[usize], v: &[u8]) -> Tensor {
    Tensor::from_data(shape, TensorData::U8(v.to_vec())).unwrap()
}
fn i8s(shape: &[usize], v: &[i8]) -> Tensor {
    Tensor::from_data(shape, TensorData::I8(v.to_vec())).unwrap()
}
fn i32s(t: &Tensor) -> Vec<i32> {
    match t.data() {
        TensorData::I32(v) => v.clone(),
        _ => panic!("not i32: {}", t.dtype()),
    }
}
fn ints(t: &Tensor) -> Vec<i32> {
    match t.data() {
        TensorData::U8(v) => v.iter().map(|&x| x as i32).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as i32).collect(),
        TensorData::I32(v) => v.clone(),
        _ => panic!("not an integer tensor: {}", t.dtype()),
    }
}

#[test]
fn quantize_rounds_half_to_even_and_saturates() {
    // x / 1 = ties at .5 go to the even integer; 300 and -5 saturate in u8.
    let x = Tensor::new(&[8], vec![0.5, 1.5, 2.5, -0.5, -1.5, 300.0, -5.0, 2.4999]).unwrap();
    let s = Tensor::new(&[], vec![1.0]).unwrap();
    let z = u8s(&[], &[0]);
    let y = Op::Quantize(Quantize { to: DType::U8 })
        .cpu(&[&x, &s, &z])
        .unwrap();
    assert_eq!(ints(&y), vec![0, 2, 2, 0, 0, 255, 0, 2]);
    // i8 with the zero point at the top of its range: everything at or above 0 saturates.
    let z = i8s(&[], &[127]);
    let x = Tensor::new(&[4], vec![-255.5, -254.5, 0.0, 1.0]).unwrap();
    let y = Op::Quantize(Quantize { to: DType::I8 })
        .cpu(&[&x, &s, &z])
        .unwrap();
    // rint(-255.5) = -256 -> -129 -> -128; rint(-254.5) = -254 -> -127.
    assert_eq!(ints(&y), vec![-128, -127, 127, 127]);
    // Per-axis scale and zero point broadcast along axis 1.
    let x = Tensor::new(&[2, 2], vec![1.0, 1.0, 3.0, 3.0]).unwrap();
    let s = Tensor::new(&[1, 2], vec![2.0, 0.5]).unwrap();
    let z = u8s(&[1, 2], &[255, 10]);
    let y = Op::Quantize(Quantize { to: DType::U8 })
        .cpu(&[&x, &s, &z])
        .unwrap();
    // 1/2 = 0.5 -> 0 (+255); 1/0.5 = 2 (+10); 3/2 = 1.5 -> 2 (+255 saturates); 6 + 10.
    assert_eq!(ints(&y), vec![255, 12, 255, 16]);
}

#[test]
fn dynamic_quantize_matches_the_onnx_example() {
    // ONNX's DynamicQuantizeLinear example: x = [0, 2, -3, -2.5, 1.34, 0.5].
    let x = Tensor::new(&[6], vec![0.0, 2.0, -3.0, -2.5, 1.34, 0.5]).unwrap();
    let part = |p| Op::DynQuant(DynQuant { part: p }).cpu(&[&x]).unwrap();
    let scale = part(DynPart::Scale).f32s("s").unwrap()[0];
    assert_eq!(scale, 5.0f32 / 255.0);
    assert_eq!(ints(&part(DynPart::Zero)), vec![153]);
    assert_eq!(ints(&part(DynPart::Codes)), vec![153, 255, 0, 26, 221, 179]);
    // All-positive input: min is clamped to 0, the zero point is 0; all zeros: scale 1/255.
    let x = Tensor::new(&[3], vec![1.0, 2.0, 4.0]).unwrap();
    let zp = Op::DynQuant(DynQuant {
        part: DynPart::Zero,
    })
    .cpu(&[&x])
    .unwrap();
    assert_eq!(ints(&zp), vec![0]);
    let x = Tensor::new(&[2], vec![0.0, 0.0]).unwrap();
    let s = Op::DynQuant(DynQuant {
        part: DynPart::Scale,
    })
    .cpu(&[&x])
    .unwrap();
    assert_eq!(s.f32s("s").unwrap()[0], 1.0 / 255.0);
}

#[test]
fn int_matmul_matches_the_onnx_example() {
    let a = u8s(&[4, 3], &[11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0]);
    let b = u8s(&[3, 2], &[1, 4, 2, 5, 3, 6]);
    let (za, zb) = (u8s(&[], &[12]), u8s(&[], &[0]));
    let y = Op::IntMatMul(IntMatMul {})
        .cpu(&[&a, &b, &za, &zb])
        .unwrap();
    assert_eq!(i32s(&y), vec![-38, -83, -44, -98, -50, -113, -56, -128]);
}

#[test]
fn int_conv_matches_the_onnx_example() {
    // ConvInteger example: x = 2..10 (3x3), x_zero 1, w = ones 2x2, no padding.
    let x = u8s(&[1, 1, 3, 3], &[2, 3, 4, 5, 6, 7, 8, 9, 10]);
    let w = u8s(&[1, 1, 2, 2], &[1, 1, 1, 1]);
    let (zx, zw) = (u8s(&[], &[1]), u8s(&[], &[0]));
    let conv = |pads| IntConv {
        stride: [1, 1],
        pads,
        dilation: [1, 1],
        group: 1,
    };
    let y = Op::IntConv(conv([0; 4])).cpu(&[&x, &w, &zx, &zw]).unwrap();
    assert_eq!(i32s(&y), vec![12, 16, 24, 28]);
    // With padding 1 the border reads the zero point (0 after centring).
    let y = Op::IntConv(conv([1; 4])).cpu(&[&x, &w, &zx, &zw]).unwrap();
    assert_eq!(
        i32s(&y),
        vec![1, 3, 5, 3, 5, 12, 16, 9, 11, 24, 28, 15, 7, 15, 17, 9]
    );
}

#[test]
fn requant_rounds_half_to_even_and_saturates() {
    let acc = Tensor::from_data(&[6], TensorData::I32(vec![1, 3, 5, -1, 1000, -1000])).unwrap();
    let m = Tensor::new(&[], vec![0.5]).unwrap();
    let z = u8s(&[], &[10]);
    let y = Op::Requant(Requant {
        to: DType::U8,
        wrap: false,
    })
    .cpu(&[&acc, &m, &z])
    .unwrap();
    // 0.5 + 10 -> 10 (even), 1.5 + 10 -> 12, 2.5 + 10 -> 12, -0.5 + 10 -> 10, 510 -> 255, 0.
    assert_eq!(ints(&y), vec![10, 12, 12, 10, 255, 0]);
    let z = i8s(&[], &[-128]);
    let y = Op::Requant(Requant {
        to: DType::I8,
        wrap: false,
    })
    .cpu(&[&acc, &m, &z])
    .unwrap();
    assert_eq!(ints(&y), vec![-128, -126, -126, -128, 127, -128]);
    // Wrapping (QLinearMatMul's reference): 500 - 128 = 372 -> 116; -628 -> -116.
    let wrap = Requant {
        to: DType::I8,
        wrap: true,
    };
    let y = Op::Requant(wrap).cpu(&[&acc, &m, &z]).unwrap();
    assert_eq!(ints(&y), vec![-128, -126, -126, -128, 116, -116]);
}

/// A one-node model over typed inputs (`common::single_op` declares f32 inputs); entries of
/// `consts` make that input a weight.
fn typed_op(op: Op, inputs: &[&Tensor], consts: &[bool]) -> (wgedge::Model, Vec<(String, Tensor)>) {
    let mut b = wgedge::graph::GraphBuilder::new();
    let mut names = Vec::new();
    let mut feeds = Vec::new();
    for (i, t) in inputs.iter().enumerate() {
        let name = format!("x{i}");
        if consts[i] {
            names.push(b.weight(&name, (*t).clone()));
        } else {
            names.push(b.input_typed(&name, t.dtype(), t.shape()));
            feeds.push((name, (*t).clone()));
        }
    }
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let y = b.node(op, &refs);
    b.output(&y);
    (wgedge::Model::from_builder(b).unwrap(), feeds)
}

/// Deterministic codes covering the whole range of `d`.
fn codes(d: DType, shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
    let v: Vec<u8> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 24) as u8
        })
        .collect();
    match d {
        DType::I8 => Tensor::from_data(shape, TensorData::I8(v.iter().map(|&x| x as i8).collect())),
        _ => Tensor::from_data(shape, TensorData::U8(v)),
    }
    .unwrap()
}

fn zero(d: DType, shape: &[usize], v: &[i32]) -> Tensor {
    match d {
        DType::I8 => i8s(shape, &v.iter().map(|&x| x as i8).collect::<Vec<_>>()),
        _ => u8s(shape, &v.iter().map(|&x| x as u8).collect::<Vec<_>>()),
    }
}

/// The GPU kernel equals the reference: u8/i8 on both sides, odd M/K/N (K not a multiple of
/// 4, so rows start mid-word), batches with b per batch and shared, zero points per tensor at
/// the ends of the range and per row/column, and a constant B (a weight uploaded as bytes).
#[test]
fn int_matmul_gpu_equals_reference() {
    let Some(ctx) = common::gpu() else { return };
    let cases: &[(&[usize], &[usize])] = &[
        (&[5, 13], &[13, 7]),
        (&[1, 3], &[3, 1]),
        (&[3, 2, 9], &[3, 9, 6]),
        (&[2, 4, 17], &[17, 5]),
    ];
    let mut k = 0u32;
    for (ad, bd) in [
        (DType::U8, DType::U8),
        (DType::I8, DType::I8),
        (DType::U8, DType::I8),
        (DType::I8, DType::U8),
    ] {
        for &(ash, bsh) in cases {
            for zmode in 0..3 {
                for b_const in [false, true] {
                    k += 1;
                    let a = codes(ad, ash, k);
                    let b = codes(bd, bsh, k + 1000);
                    let (m, n) = (ash[ash.len() - 2], bsh[bsh.len() - 1]);
                    let (lo_a, hi_a) = if ad == DType::I8 {
                        (-128, 127)
                    } else {
                        (0, 255)
                    };
                    let (lo_b, hi_b) = if bd == DType::I8 {
                        (-128, 127)
                    } else {
                        (0, 255)
                    };
                    let (za, zb) = match zmode {
                        0 => (zero(ad, &[], &[lo_a]), zero(bd, &[], &[hi_b])),
                        1 => (zero(ad, &[], &[hi_a]), zero(bd, &[], &[lo_b])),
                        _ => (
                            zero(
                                ad,
                                &[m],
                                &(0..m as i32).map(|i| lo_a + 37 * i).collect::<Vec<_>>(),
                            ),
                            zero(
                                bd,
                                &[n],
                                &(0..n as i32).map(|j| hi_b - 29 * j).collect::<Vec<_>>(),
                            ),
                        ),
                    };
                    let op = Op::IntMatMul(IntMatMul {});
                    let want = op.cpu(&[&a, &b, &za, &zb]).unwrap();
                    let (model, feeds) =
                        typed_op(op, &[&a, &b, &za, &zb], &[false, b_const, false, b_const]);
                    let mut o = common::opts_with(Default::default(), false);
                    o.cpu_reference = true;
                    let s = wgedge::Session::with_context(&model, ctx.clone(), o)
                        .unwrap_or_else(|e| panic!("{ad}x{bd} {ash:?}x{bsh:?}: {e}"));
                    let got = s.run(&common::feeds_ref(&feeds)).unwrap();
                    assert_eq!(
                        i32s(&got[0]),
                        i32s(&want),
                        "{ad} x {bd}, {ash:?} x {bsh:?}, zero points mode {zmode}, b const {b_const}"
                    );
                }
            }
        }
    }
}
