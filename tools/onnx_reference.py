#!/usr/bin/env python3
"""Reference outputs of real ONNX models from onnxruntime, for wgedge's import check.

Models: PP-OCRv4 det and rec as shipped in the PyPI package rapidocr-onnxruntime==1.4.4.
For each model, two input shapes; the input is deterministic (numpy seed 0) and in [-1, 1],
the range of the models' normalised images: for rec uniform noise; for det a synthetic page
(dark text-like strokes on white, slight noise), because on noise the det model's probability
map is ~1e-6 everywhere, where onnxruntime's approximate sigmoid (absolute error ~1e-7) makes
any relative comparison meaningless; on the page the map spans 0..1. Writes, under tests/data/onnx/models/:

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
# Models whose reference input is a synthetic page rather than noise.
PAGE_INPUT = {"ppocrv4_det"}


def page(rng, shape):
    """Rows of dark 'characters' (3-8 px wide, 10 px tall, lighter inside) on white, as [-1, 1]
    with +-0.05 noise: enough text-like structure for the det model to fire."""
    import numpy as np

    _, _, h, w = shape
    img = np.ones((h, w), np.float32)
    for y0 in range(8, h - 12, 24):
        x = 6
        while x < w - 10:
            width = int(rng.integers(3, 9))
            img[y0:y0 + 10, x:x + width] = 0.0
            img[y0 + 2:y0 + 8, x + 1:x + width - 1] = 0.7
            x += width + int(rng.integers(2, 4))
    x = np.broadcast_to(img * 2 - 1, shape).astype(np.float32).copy()
    x += rng.uniform(-0.05, 0.05, size=shape).astype(np.float32)
    return x

# Op types the importer maps today (src/onnx/map.rs plus what folds at import).
IMPORTED = set(
    """Conv ConvTranspose MaxPool AveragePool GlobalAveragePool Gemm MatMul Add Sub Mul Div Sum
    Mean Relu Sigmoid Tanh HardSwish LeakyRelu HardSigmoid Gelu Clip Softmax LayerNormalization
    BatchNormalization Reshape Flatten Squeeze Unsqueeze Transpose Concat Cast DequantizeLinear
    Identity Dropout Constant Shape Size Slice Gather Expand Tile Pad Resize Upsample Split
    DepthToSpace SpaceToDepth GlobalMaxPool LpPool GlobalLpPool Einsum Range ConstantOfShape""".split()
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
            if short in PAGE_INPUT:
                x = page(rng, shape)
            else:
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
