#!/usr/bin/env python3
"""Converts ONNX's backend node tests into small wgedge test cases.

Each case under onnx/backend/test/data/node/ in the pinned `onnx` wheel (the files
`onnx.backend.test.case.node.collect_testcases()` writes: a model and its inputs and outputs,
computed by onnx's numpy reference, so no wgedge code made the expected values) becomes one
safetensors file tests/data/onnx/node/<case>.safetensors holding

    model         the .onnx bytes as a u8 tensor
    input.<i>     the i-th graph input (in the model's order)
    expected.<i>  the i-th graph output

Cases are kept for the op types wgedge imports or plans to (OPS below). Skipped cases, with the
reason, go to tests/data/onnx/skipped.tsv: dtypes wgedge has no value type for (double,
strings, ...), sequence/optional/map types, training mode, function expansions (`_expanded`:
the same test written in other ops), empty tensors (wgedge refuses zero-sized values), files over
MAX_BYTES.

Usage: python3 tools/onnx_node_tests.py   (installs onnx==ONNX_VERSION with pip if missing)
Deterministic: the same onnx version gives byte-identical files.
"""

import json
import os
import struct
import subprocess
import sys

ONNX_VERSION = "1.17.0"
MAX_BYTES = 256 << 10
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "tests", "data", "onnx")

# The op types of issue 13's list: the importer's own and those other families add.
OPS = """
Conv ConvTranspose MaxPool AveragePool GlobalAveragePool GlobalMaxPool LpPool Gemm MatMul
Add Sub Mul Div Pow Max Min Sum Mean PRelu Relu Sigmoid Tanh LeakyRelu HardSwish HardSigmoid
Gelu Erf Elu Selu Celu Softplus Softsign Mish ThresholdedRelu Neg Abs Exp Log Reciprocal Sqrt
Clip Softmax LogSoftmax LayerNormalization BatchNormalization InstanceNormalization
GroupNormalization RMSNormalization LpNormalization Equal Greater Less GreaterOrEqual
LessOrEqual Not And Or Where ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1
ReduceL2 ReduceSumSquare ReduceLogSumExp ArgMax ArgMin Reshape Flatten Transpose Concat Split
Slice Gather Pad Resize Upsample Tile Expand Squeeze Unsqueeze DepthToSpace SpaceToDepth Shape
Size Cast Identity Dropout Constant ConstantOfShape Range QuantizeLinear DequantizeLinear
DynamicQuantizeLinear MatMulInteger QLinearMatMul QLinearConv ConvInteger
""".split()

# onnx TensorProto.DataType -> (safetensors dtype, numpy dtype name)
DTYPES = {
    1: ("F32", "float32"),
    10: ("F16", "float16"),
    6: ("I32", "int32"),
    7: ("I64", "int64"),
    3: ("I8", "int8"),
    2: ("U8", "uint8"),
    9: ("BOOL", "bool"),
}


def ensure_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", f"onnx=={ONNX_VERSION}"])
    import onnx

    if onnx.__version__ != ONNX_VERSION:
        sys.exit(f"onnx {onnx.__version__} is installed; this script is pinned to {ONNX_VERSION}")
    return onnx


def write_safetensors(path, tensors, metadata):
    """Writes the safetensors layout (8-byte little-endian header length, JSON header, data)."""
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def value_kind(vi):
    t = vi.type
    which = t.WhichOneof("value")
    if which != "tensor_type":
        return None, f"{which} type ({vi.name})"
    et = t.tensor_type.elem_type
    if et not in DTYPES:
        from onnx import TensorProto

        return None, f"dtype {TensorProto.DataType.Name(et).lower()} ({vi.name})"
    return et, None


def convert(onnx, case_dir, name):
    """Returns (op, None, tensors, metadata) or (op, reason, None, None)."""
    from onnx import numpy_helper

    model_path = os.path.join(case_dir, "model.onnx")
    model_bytes = open(model_path, "rb").read()
    model = onnx.load_from_string(model_bytes)
    ops = [n.op_type for n in model.graph.node]
    op = ops[0] if len(set(ops)) == 1 else "+".join(sorted(set(ops)))
    if name.endswith("_expanded") or "_expanded_ver" in name:
        return op, "function expansion (the op's own case is kept)", None, None
    if any(o not in OPS for o in ops) or any(n.domain not in ("", "ai.onnx") for n in model.graph.node):
        return op, None, None, None  # not an op of this list: not counted
    if "training" in name:
        return op, "training mode", None, None
    init = {i.name for i in model.graph.initializer}
    ins = [v for v in model.graph.input if v.name not in init]
    for v in list(ins) + list(model.graph.output):
        _, why = value_kind(v)
        if why:
            return op, why, None, None
    sets = sorted(d for d in os.listdir(case_dir) if d.startswith("test_data_set_"))
    data_dir = os.path.join(case_dir, sets[0])
    tensors = {"model": ("U8", [len(model_bytes)], model_bytes)}
    for kind, values in (("input", ins), ("expected", model.graph.output)):
        for i, v in enumerate(values):
            p = os.path.join(data_dir, f"{'input' if kind == 'input' else 'output'}_{i}.pb")
            if not os.path.exists(p):
                return op, f"missing {kind} file {i}", None, None
            tp = onnx.TensorProto()
            tp.ParseFromString(open(p, "rb").read())
            if tp.data_type not in DTYPES:
                return op, f"dtype {onnx.TensorProto.DataType.Name(tp.data_type).lower()}", None, None
            arr = numpy_helper.to_array(tp)
            if arr.size == 0:
                return op, f"empty tensor ({v.name})", None, None
            st, np_name = DTYPES[tp.data_type]
            arr = arr.astype(np_name)
            tensors[f"{kind}.{i}"] = (st, arr.shape, arr.tobytes(order="C"))
    size = sum(len(t[2]) for t in tensors.values())
    if size > MAX_BYTES:
        return op, f"over the {MAX_BYTES}-byte limit of checked-in cases ({size} bytes)", None, None
    meta = {"onnx": ONNX_VERSION, "op": op, "opset": str(model.opset_import[0].version)}
    return op, None, tensors, meta


def main():
    onnx = ensure_onnx()
    src = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    node_out = os.path.join(OUT, "node")
    os.makedirs(node_out, exist_ok=True)
    for f in os.listdir(node_out):
        if f.endswith(".safetensors"):
            os.remove(os.path.join(node_out, f))
    kept, skipped, total = 0, [], 0
    for name in sorted(os.listdir(src)):
        op, why, tensors, meta = convert(onnx, os.path.join(src, name), name)
        if why is None and tensors is None:
            continue
        if why:
            skipped.append((name, op, why))
            continue
        write_safetensors(os.path.join(node_out, f"{name}.safetensors"), tensors, meta)
        kept += 1
        total += os.path.getsize(os.path.join(node_out, f"{name}.safetensors"))
    with open(os.path.join(OUT, "skipped.tsv"), "w") as f:
        f.write(f"# ONNX {ONNX_VERSION} node tests of the listed ops not converted: case, op, reason\n")
        for row in skipped:
            f.write("\t".join(row) + "\n")
    print(f"{kept} cases ({total / 1e6:.2f} MB) in {node_out}; {len(skipped)} skipped (skipped.tsv)")


if __name__ == "__main__":
    main()
