#!/usr/bin/env python3
"""Compile speed: wall time and peak RSS of `specc compile` on large exports.

Models come from tools/make_bench_models.py (on demand, not committed):
  .cache/bench-models/llama32/model.onnx          32 layers, hidden 64
  .cache/bench-models/llama3-8b-shape/model.onnx  Llama-3-8B shapes, weights
                                                  as external data in a sparse file
Each is compiled for trn1 as one decode step (batch 1, 1 new token, 127
cached); the 8B shape with `--weights link`, so compiling reads no weight
value (llama32's 5 MB of inline weights are copied). RUNS runs each,
medians reported. Peak RSS is the child's ru_maxrss.

Usage:
    cargo build --release
    .venv-fixtures/bin/python tools/make_bench_models.py
    python3 tools/bench_compile.py [--runs 3]
"""

import argparse
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPECC = ROOT / "target/release/specc"
# (model, how its weights go into the artifact): llama32 keeps its 5 MB of
# weights inline, so they are copied; the 8B shape's are linked.
MODELS = {
    "llama32 (32 layers, hidden 64)": (ROOT / ".cache/bench-models/llama32/model.onnx", "copy"),
    "Llama-3-8B shape (32 layers, hidden 4096, vocab 128256)": (
        ROOT / ".cache/bench-models/llama3-8b-shape/model.onnx", "link"),
}
DIMS = ["--dim", "batch_size=1", "--dim", "sequence_length=1", "--dim", "past_sequence_length=127"]


def one_run(model, weights, out):
    cmd = [str(SPECC), "compile", str(model), "-o", str(out), "--target", "trn1", "--weights", weights, *DIMS]
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execv(cmd[0], cmd)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        subprocess.run(cmd)  # show the error
        sys.exit(f"specc compile failed on {model}")
    return wall, usage.ru_maxrss / 1024  # KiB -> MiB


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    out = ROOT / ".cache/bench-out"
    print(f"| model | ONNX nodes | wall time (median of {args.runs}) | peak RSS | HLO instructions |")
    print("|---|---|---|---|---|")
    for name, (model, weights) in MODELS.items():
        if not model.exists():
            sys.exit(f"{model} is missing: run tools/make_bench_models.py first")
        runs = [one_run(model, weights, out / model.parent.name) for _ in range(args.runs)]
        wall = statistics.median(r[0] for r in runs)
        rss = max(r[1] for r in runs)
        manifest = (out / model.parent.name / "manifest.json").read_text()
        import json
        m = json.loads(manifest)
        instr = m["graphs"][0]["instructions"]
        import onnx  # noqa: E402 (only for the node count)
        nodes = len(onnx.load(str(model), load_external_data=False).graph.node)
        print(f"| {name} | {nodes} | {wall:.2f} s | {rss:.0f} MiB | {instr} |", flush=True)


if __name__ == "__main__":
    main()
