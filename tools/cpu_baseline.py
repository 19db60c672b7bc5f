#!/usr/bin/env python3
"""numpy timings of the `wgedge bench --suite kernels` workloads, for the CPU ratio in the same
run: `python3 tools/cpu_baseline.py` (numpy from pip; not a CI dependency).

GEMM, GEMV and the MLP are numpy's BLAS (OpenBLAS in the pip wheel, all cores unless
OPENBLAS_NUM_THREADS says otherwise). numpy has no convolution: conv3x3 is im2col (a strided
view) plus one BLAS GEMM, and the depthwise conv nine shifted multiply-adds over the padded
input; both are rough baselines of what numpy can do, not of a tuned conv library.
Same sizes and median-of-runs timing as `src/bench.rs`.
"""
import time

import numpy as np


def timeit(f, budget=3.0, max_runs=20, min_runs=3):
    f()
    ms = []
    start = time.perf_counter()
    while len(ms) < min_runs or (len(ms) < max_runs and time.perf_counter() - start < budget):
        t = time.perf_counter()
        f()
        ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    return ms[len(ms) // 2], ms[0], len(ms)


def report(name, flops, weight_bytes, t):
    med, mn, runs = t
    gbps = f"{weight_bytes / (med / 1e3) / 1e9:7.3f}" if weight_bytes else ""
    print(f"{name:<10} {'numpy':<22} {'cpu':<8} {'e2e':<9} {med:>11.3f} {mn:>11.3f} {runs:>5} "
          f"{flops / (med / 1e3) / 1e9:>9.3f} {gbps:>7}")


def main():
    rng = np.random.default_rng(0)
    r = lambda *s: rng.uniform(-1, 1, s).astype(np.float32)
    print(f"{'workload':<10} {'kernel':<22} {'backend':<8} {'mode':<9} {'median ms':>11} "
          f"{'min ms':>11} {'runs':>5} {'GFLOP/s':>9} {'GB/s':>7}")

    # gemm: x[1024, 1024] @ W[1024, 1024]^T (a Linear layer, as the bench's single_linear)
    x, w, b = r(1024, 1024), r(1024, 1024), r(1024)
    report("gemm", 2 * 1024**3, None, timeit(lambda: x @ w.T + b))

    # gemv: x[1, 4096] @ W[4096, 4096]^T
    x, w, b = r(1, 4096), r(4096, 4096), r(4096)
    report("gemv", 2 * 4096 * 4096, 4096 * 4096 * 4, timeit(lambda: x @ w.T + b))

    # conv3x3 64ch @ 56, padding 1: im2col view + GEMM
    c, hw = 64, 56
    x, w = r(1, c, hw, hw), r(c, c, 3, 3)
    wm = w.reshape(c, c * 9)

    def conv():
        xp = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
        s = xp.strides
        cols = np.lib.stride_tricks.as_strided(
            xp, (c, 3, 3, hw, hw), (s[0], s[1], s[2], s[1], s[2]))
        return wm @ cols.reshape(c * 9, hw * hw)

    report("conv3x3", 2 * c * hw * hw * c * 9, None, timeit(conv))

    # dwconv3x3 32ch @ 112, padding 1: nine shifted multiply-adds
    c, hw = 32, 112
    x, w = r(1, c, hw, hw), r(c, 1, 3, 3)

    def dw():
        xp = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
        y = np.zeros((c, hw, hw), np.float32)
        for i in range(3):
            for j in range(3):
                y += w[:, 0, i, j][:, None, None] * xp[:, i:i + hw, j:j + hw]
        return y

    report("dwconv3x3", 2 * c * hw * hw * 9, None, timeit(dw))

    # mlp 784-512-512-10, ReLU, batch 64 and 1
    dims = [784, 512, 512, 10]
    ws = [(r(dims[i + 1], dims[i]), r(dims[i + 1])) for i in range(3)]
    for batch, name in [(64, "mlp"), (1, "mlp1")]:
        xin = r(batch, 784)

        def mlp():
            h = xin
            for i, (wi, bi) in enumerate(ws):
                h = h @ wi.T + bi
                if i < 2:
                    h = np.maximum(h, 0)
            return h

        flops = 2 * batch * (784 * 512 + 512 * 512 + 512 * 10)
        report(name, flops, None, timeit(mlp))


if __name__ == "__main__":
    main()
