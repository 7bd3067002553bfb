#!/usr/bin/env python3
"""specc's reference interpreter vs onnxruntime, same model, same inputs,
same machine, same run.

Cases (issue 2's benchmark): one prefill of 32 tokens (empty cache) and one
decode step with 64 cached tokens, on the largest fixture
(graphs/fixtures/llama/with_past/model.onnx). Each side runs warm, RUNS
times; the table shows medians. onnxruntime runs on the same number of
threads as the machine has cores (its default), specc's interpreter is
burn-ndarray (its matmul uses every core).

Usage:
    python3 -m venv .venv-bench && .venv-bench/bin/pip install -r tools/requirements-bench.txt
    cargo build --release --example interp_bench
    .venv-bench/bin/python tools/bench_interp.py [--runs 30]
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import time

import numpy as np
import onnxruntime as ort
from safetensors.numpy import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = ROOT / "graphs/fixtures/llama/with_past/model.onnx"
OUT = ROOT / ".cache/bench"


def inputs(sess, seq, past, rng):
    """Feeds for the with-past export: `seq` new tokens after `past` cached."""
    feeds = {}
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = rng.integers(0, 2048, size=(1, seq), dtype=np.int64)
        elif i.name == "attention_mask":
            feeds[i.name] = np.ones((1, past + seq), dtype=np.int64)
        elif i.name == "position_ids":
            feeds[i.name] = np.arange(past, past + seq, dtype=np.int64)[None, :]
        else:
            _, heads, _, dim = i.shape
            feeds[i.name] = rng.standard_normal((1, heads, past, dim)).astype(np.float32)
    return feeds


def time_ort(sess, feeds, runs):
    sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    exe = ROOT / "target/release/examples/interp_bench"
    rows = []
    for name, seq, past in [("prefill 32 tokens", 32, 0), ("decode 1 token, 64 cached", 1, 64)]:
        feeds = inputs(sess, seq, past, rng)
        path = OUT / f"{seq}_{past}.in.safetensors"
        save_file(feeds, str(path))
        ort_ms = time_ort(sess, feeds, args.runs)
        res = json.loads(subprocess.check_output([str(exe), str(MODEL), str(path), str(args.runs)]))
        rows.append((name, ort_ms, res["imported_ms"], res["specialized_ms"], res["imported_nodes"], res["specialized_nodes"]))
    print(f"model: {MODEL.relative_to(ROOT)}; medians of {args.runs} warm runs; onnxruntime {ort.__version__}")
    print(f"| case | onnxruntime | specc as imported | specc specialized | specialized / ort | IR nodes (imported -> specialized) |")
    print("|---|---|---|---|---|---|")
    for name, o, a, s, na, ns in rows:
        print(f"| {name} | {o:.3f} ms | {a:.3f} ms | {s:.3f} ms | {s / o:.2f}x | {na} -> {ns} |")


if __name__ == "__main__":
    main()
