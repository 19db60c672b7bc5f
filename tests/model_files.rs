//! Model files: round trips, and every way a file can be broken is an error saying what.

mod common;
use common::*;
use std::collections::{BTreeMap, HashMap};
use wgedge::model::{read_tensors, write_tensors, GRAPH_KEY};
use wgedge::{Error, Model, Session, SessionOptions, Tensor};

fn file_err(bytes: &[u8]) -> String {
    match Model::from_bytes(bytes) {
        Err(Error::ModelFile(m)) => m,
        Err(other) => other.to_string(),
        Ok(_) => panic!("a broken file loaded"),
    }
}

#[test]
fn round_trip_preserves_graph_weights_and_results() {
    for (name, m) in models::all() {
        let bytes = m.to_bytes().unwrap();
        let back = Model::from_bytes(&bytes).unwrap();
        assert_eq!(back.graph, m.graph, "{name}: graph");
        assert_eq!(*back.weights, *m.weights, "{name}: weights");
        let dir = std::env::temp_dir().join(format!(
            "wgedge-test-{}-{name}.safetensors",
            std::process::id()
        ));
        m.save(&dir).unwrap();
        let loaded = Model::load(&dir).unwrap();
        std::fs::remove_file(&dir).ok();
        assert_eq!(loaded.graph, m.graph);
        let feeds: Vec<(String, Tensor)> = m
            .graph
            .inputs
            .iter()
            .map(|v| (v.name.clone(), Tensor::random(&v.shape, 5)))
            .collect();
        let a = Session::cpu(&m, SessionOptions::default())
            .unwrap()
            .run(&feeds_ref(&feeds))
            .unwrap();
        let b = Session::cpu(&loaded, SessionOptions::default())
            .unwrap()
            .run(&feeds_ref(&feeds))
            .unwrap();
        assert_eq!(a, b, "{name}: results after reload");
    }
}

#[test]
fn truncated_and_corrupt_files() {
    let good = models::resnet_block().to_bytes().unwrap();
    assert!(file_err(&[]).contains("too short"));
    assert!(file_err(&good[..5]).contains("too short"));
    // Every truncation point is an error, never a panic.
    for cut in [8, 9, 64, good.len() / 2, good.len() - 1] {
        let e = file_err(&good[..cut]);
        assert!(!e.is_empty(), "cut at {cut}");
    }
    let mut garbage = good.clone();
    garbage[8..40].copy_from_slice(&[b'#'; 32]);
    assert!(file_err(&garbage).contains("not a valid safetensors"));
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(file_err(&huge).contains("safetensors"));
    let e = file_err(b"this is not a model file at all");
    assert!(e.contains("safetensors"), "{e}");
}

#[test]
fn inconsistent_files() {
    let m = models::resnet_block();
    let mut tensors: BTreeMap<String, Tensor> = (*m.weights).clone();
    let json = serde_json::to_string(&m.graph).unwrap();
    let with_meta = |t: &BTreeMap<String, Tensor>, meta: Option<HashMap<String, String>>| {
        write_tensors(t, meta).unwrap()
    };
    let meta = |j: &str| Some(HashMap::from([(GRAPH_KEY.to_string(), j.to_string())]));

    // No graph: a plain safetensors file.
    assert!(file_err(&with_meta(&tensors, None)).contains("not a wgedge model"));
    // Graph JSON broken.
    assert!(file_err(&with_meta(&tensors, meta("{\"nodes\": [")))
        .contains("graph metadata is not valid"));
    // Unknown op in the graph.
    let bad_op = json.replacen("\"conv2d\"", "\"conv9d\"", 1);
    assert!(file_err(&with_meta(&tensors, meta(&bad_op))).contains("graph metadata is not valid"));
    // A weight the graph declares is missing.
    let removed = tensors.remove("c1.w").unwrap();
    let e = Model::from_bytes(&with_meta(&tensors, meta(&json))).unwrap_err();
    assert!(matches!(&e, Error::MissingWeight(w) if w == "c1.w"), "{e}");
    // Wrong shape for a weight.
    tensors.insert("c1.w".into(), Tensor::random(&[8, 8, 3, 2], 1));
    let e = Model::from_bytes(&with_meta(&tensors, meta(&json))).unwrap_err();
    assert!(
        matches!(&e, Error::ShapeMismatch { op, .. } if op.contains("c1.w")),
        "{e}"
    );
    tensors.insert("c1.w".into(), removed);
    // Unsupported dtype in the file (f64).
    let raw = {
        let header = format!("{{\"__metadata__\":{{\"{GRAPH_KEY}\":{}}},\"t\":{{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}}}", serde_json::to_string(&json).unwrap());
        let mut h = header.into_bytes();
        while h.len() % 8 != 0 {
            h.push(b' ');
        }
        let mut v = (h.len() as u64).to_le_bytes().to_vec();
        v.extend(h);
        v.extend(1.0f64.to_le_bytes());
        v
    };
    let e = file_err(&raw);
    assert!(e.contains("F64"), "{e}");
    // Plain tensor files round-trip too.
    let (back, _) = read_tensors(&with_meta(&tensors, None)).unwrap();
    assert_eq!(back, tensors);
}

#[test]
fn random_corruption_never_panics() {
    // Flip, drop and overwrite bytes all over a real model file: every outcome must be an Ok
    // model that still checks, or an Err — never a panic.
    let good = models::mnist().to_bytes().unwrap();
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let (mut ok, mut err) = (0, 0);
    for i in 0..300 {
        let mut b = good.clone();
        match i % 3 {
            0 => {
                // Most flips hit the header (first ~2 KiB) where the structure lives.
                let at = (next() as usize) % (b.len().min(4096));
                b[at] ^= 1 << (next() % 8);
            }
            1 => {
                let at = (next() as usize) % b.len();
                b.truncate(at);
            }
            _ => {
                let at = (next() as usize) % b.len().min(4096);
                let len = (next() as usize % 16).min(b.len() - at);
                for x in &mut b[at..at + len] {
                    *x = next() as u8;
                }
            }
        }
        match std::panic::catch_unwind(|| Model::from_bytes(&b)) {
            Ok(Ok(m)) => {
                ok += 1;
                // A file that loads is a usable model.
                Session::cpu(&m, SessionOptions::default()).expect("a loaded model plans");
            }
            Ok(Err(_)) => err += 1,
            Err(_) => panic!("Model::from_bytes panicked on mutation {i}"),
        }
    }
    assert!(
        err > 100,
        "most mutations must be rejected ({ok} loaded, {err} rejected)"
    );
}
