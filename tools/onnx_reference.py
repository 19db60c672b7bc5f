#!/usr/bin/env python3
"""Reference outputs of real ONNX models from onnxruntime, for wgedge's import check.

Models: PP-OCRv4 det and rec as shipped in the PyPI package rapidocr-onnxruntime==1.4.4.
For each model, two input shapes; the input is deterministic (numpy seed 0, uniform in
[-1, 1], the range of the models' normalised images). Writes, under tests/data/onnx/models/:

    <model>.onnx                    the model (copied from the wheel; not checked in)
    <model>.ref.safetensors         input.<k> / expected.<k> for shape k (checked in, small)
    ops.txt                         op types per model and the ones wgedge's importer lacks

Usage: python3 tools/onnx_reference.py   (pip-installs what is missing: onnx, onnxruntime,
numpy; the rapidocr wheel is downloaded without its dependencies, only for its model files)
"""

import collections
import glob
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

RAPIDOCR = "rapidocr-onnxruntime==1.4.4"
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "tests", "data", "onnx", "models")

# name in the wheel -> (short name, [input shapes])
MODELS = {
    "ch_PP-OCRv4_det_infer.onnx": ("ppocrv4_det", [(1, 3, 64, 96), (1, 3, 96, 128)]),
    "ch_PP-OCRv4_rec_infer.onnx": ("ppocrv4_rec", [(1, 3, 48, 40), (1, 3, 48, 80)]),
}

# Op types the importer maps today (src/onnx/map.rs plus what folds at import).
IMPORTED = set(
    """Conv ConvTranspose MaxPool AveragePool GlobalAveragePool Gemm MatMul Add Sub Mul Div Sum
    Mean Relu Sigmoid Tanh HardSwish LeakyRelu HardSigmoid Gelu Clip Softmax LayerNormalization
    BatchNormalization Reshape Flatten Squeeze Unsqueeze Transpose Concat Cast DequantizeLinear
    Identity Dropout Constant Shape Size""".split()
)


def pip(*args):
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *args])


def ensure(mod, spec):
    try:
        __import__(mod)
    except ImportError:
        pip(spec)


def write_safetensors(path, tensors):
    header = {}
    blobs, offset = [], 0
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
    ensure("numpy", "numpy")
    ensure("onnx", "onnx==1.17.0")
    ensure("onnxruntime", "onnxruntime")
    import numpy as np
    import onnx
    import onnxruntime as ort

    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.check_call(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", RAPIDOCR, "-d", tmp]
        )
        wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
        with zipfile.ZipFile(wheel) as z:
            for member in z.namelist():
                base = os.path.basename(member)
                if base in MODELS:
                    short = MODELS[base][0]
                    with z.open(member) as src, open(os.path.join(OUT, short + ".onnx"), "wb") as dst:
                        shutil.copyfileobj(src, dst)

    report = []
    for base, (short, shapes) in MODELS.items():
        path = os.path.join(OUT, short + ".onnx")
        model = onnx.load(path)
        ops = collections.Counter(n.op_type for n in model.graph.node)
        missing = sorted(o for o in ops if o not in IMPORTED)
        report.append(f"{short} (opset {model.opset_import[0].version}): " +
                      ", ".join(f"{o} x{n}" for o, n in sorted(ops.items())))
        report.append(f"  not mapped by the importer yet: {', '.join(missing) or 'none'}")
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        rng = np.random.default_rng(0)
        tensors = {}
        for k, shape in enumerate(shapes):
            x = rng.uniform(-1, 1, size=shape).astype(np.float32)
            (y,) = sess.run(None, {name: x})
            tensors[f"input.{k}"] = x
            tensors[f"expected.{k}"] = y.astype(np.float32)
        write_safetensors(os.path.join(OUT, short + ".ref.safetensors"), tensors)
        print(f"{short}: {', '.join(str(s) for s in shapes)} -> " +
              ", ".join(str(tensors[f'expected.{k}'].shape) for k in range(len(shapes))))
    with open(os.path.join(OUT, "ops.txt"), "w") as f:
        f.write(f"# op types of the reference models ({RAPIDOCR}); written by tools/onnx_reference.py\n")
        f.write("\n".join(report) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()
