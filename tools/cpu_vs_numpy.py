#!/usr/bin/env python3
"""wgedge's fast CPU kernels against numpy on the same shapes, in the same run, at each thread
count: `python3 tools/cpu_vs_numpy.py [--bin target/release/wgedge] [--threads 1,2]`.

For every thread count n it runs `tools/cpu_baseline.py` (numpy, OpenBLAS limited to n threads
through OPENBLAS_NUM_THREADS / OMP_NUM_THREADS) and `wgedge bench --suite kernels --backend cpu`
(WGEDGE_THREADS=n) on the CPU workloads (GEMM 1024^3, GEMV 4096 in every format, conv 3x3
64ch@56, depthwise 3x3 32ch@112, the MLP 784-512-512-10 at batch 64 and 1), then prints each
wgedge CPU row beside numpy's time for the workload (ratio > 1: wgedge slower), the packed
GEMV rows against the f32 GEMV, the CPU model and the load average before and after (timings
on a shared machine are only comparable within one run). numpy is a pip dependency of this
script only, not of the build or the tests.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = "gemm,gemv,gemm64,conv3x3,dwconv3x3,mlp,mlp1"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def numpy_times(threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, os.path.join(HERE, "cpu_baseline.py")], env=env,
                         check=True, capture_output=True, text=True).stdout
    times = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 6 and cols[1] == "numpy":
            times[cols[0]] = float(cols[4])
    return times


def wgedge_records(binary, threads):
    env = dict(os.environ, WGEDGE_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bench.json")
        subprocess.run([binary, "bench", "--suite", "kernels", "--backend", "cpu", "--only",
                        WORKLOADS, "--json", path], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(path) as f:
            return [r for r in json.load(f) if r["backend"] == "cpu"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "wgedge"))
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores")
    for n in [int(t) for t in args.threads.split(",")]:
        load0 = os.getloadavg()[0]
        np_ms = numpy_times(n)
        records = wgedge_records(args.bin, n)
        load1 = os.getloadavg()[0]
        print(f"\n== {n} thread(s); load average {load0:.2f} before, {load1:.2f} after ==")
        print(f"{'workload':<10} {'wgedge kernel':<28} {'ms':>9} {'GFLOP/s':>8} "
              f"{'numpy ms':>9} {'wgedge/numpy':>12}")
        for r in records:
            base = np_ms.get(r["workload"])
            ratio = f"{r['median_ms'] / base:12.2f}" if base else f"{'':>12}"
            base_s = f"{base:9.3f}" if base else f"{'':>9}"
            gf = r.get("gflops") or 0.0
            print(f"{r['workload']:<10} {r['kernel']:<28} {r['median_ms']:9.3f} {gf:8.2f} "
                  f"{base_s} {ratio}")
        f32 = next((r for r in records if r["workload"] == "gemv"
                    and r["kernel"].startswith("f32-")), None)
        if f32:
            for r in records:
                if r["workload"] == "gemv" and r is not f32 and r["kernel"] != "cpu-ref":
                    print(f"gemv {r['kernel']:<28} {f32['median_ms'] / r['median_ms']:6.2f}x "
                          f"the speed of {f32['kernel']}")


if __name__ == "__main__":
    main()
