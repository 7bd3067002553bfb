#!/usr/bin/env bash
# specc's HLO on an NVIDIA GPU through XLA's CUDA PJRT plugin: the same
# backend code as XLA CPU, another plugin. On a machine with an NVIDIA GPU:
#
#   1. makes .venv-gpu with tools/requirements-gpu.txt (the jax-cuda12-pjrt
#      plugin and the nvidia-* CUDA libraries; no jax). Offline machines:
#      `GPU_WHEELS=DIR` installs from wheels downloaded beforehand with
#      `pip download -r tools/requirements-gpu.txt -d DIR`;
#   2. puts the CUDA libraries on the loader path and ptxas on PATH;
#   3. runs the PJRT backend's tests (tests/pjrt.rs) on the CUDA plugin
#      (SPECC_PJRT_PLUGIN=cuda): tokens and acceptance equal the reference
#      backend's in every decoding mode;
#   4. runs `specc bench` on the ~100M bench model on pjrt-cuda and on
#      pjrt-cpu, with synthetic acceptance 0.8, and prints a table.
#
# Usage: tools/gpu_check.sh [--skip-tests]. Needs cargo (or prebuilt
# binaries: SPECC=path/to/specc and PJRT_TESTS=path/to/the pjrt test binary)
# and, for step 4, the bench model (.cache/bench-models/llama100m, made by
# tools/make_bench_models.py --only 100m) or an artifact compiled from it at
# .cache/bench-out/llama100m.
set -euo pipefail
cd "$(dirname "$0")/.."
R=.cache/gpu-check
mkdir -p "$R"

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    || { echo "gpu_check: no nvidia-smi: this machine has no NVIDIA driver, so there is nothing to check" >&2; exit 1; }

req=tools/requirements-gpu.txt
if ! { [ -x .venv-gpu/bin/python ] && cmp -s "$req" .venv-gpu/.requirements; }; then
    echo "== setting up .venv-gpu from $req"
    python3 -m venv .venv-gpu
    if [ -n "${GPU_WHEELS:-}" ]; then
        .venv-gpu/bin/pip install -q --disable-pip-version-check --no-index --find-links "$GPU_WHEELS" -r "$req"
    else
        .venv-gpu/bin/pip install -q --disable-pip-version-check -r "$req"
    fi
    cp "$req" .venv-gpu/.requirements
fi
site=$(.venv-gpu/bin/python -c 'import site; print(site.getsitepackages()[0])')
libs=$(find "$site/nvidia" -maxdepth 2 -type d -name lib | sort | paste -sd: -)
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$site/nvidia/cuda_nvcc/bin:$PATH"
export VIRTUAL_ENV="$PWD/.venv-gpu"
export SPECC_PJRT_CACHE="$PWD/$R/pjrt-cache"

specc=${SPECC:-}
if [ -z "$specc" ]; then
    cargo build --release -q
    specc=./target/release/specc
fi

if [[ ${1:-} != --skip-tests ]]; then
    echo "== the PJRT backend's tests on the CUDA plugin"
    if [ -n "${PJRT_TESTS:-}" ]; then
        SPECC_PJRT_PLUGIN=cuda "$PJRT_TESTS" --test-threads 1 --nocapture 2>&1 | tee "$R/tests.txt"
    else
        SPECC_PJRT_PLUGIN=cuda cargo test --release -q --test pjrt -- --test-threads 1 --nocapture 2>&1 | tee "$R/tests.txt"
    fi
fi

A=.cache/bench-out/llama100m
M=.cache/bench-models/llama100m
if [ ! -f $A/manifest.json ]; then
    [ -d $M ] || { echo "gpu_check: no bench model at $M (tools/make_bench_models.py --only 100m makes it)" >&2; exit 1; }
    "$specc" compile $M/target/with_past/model.onnx --draft $M/draft/with_past/model.onnx --tokenizer $M/tokenizer.json \
        --max-seq-len 128 -k 1-8 --prompt-buckets 32 --target xla -o $A
fi
printf '%s\n' '{"id": "s1", "prompt": "The documentation describes how to install the package and"}' \
    '{"id": "s2", "prompt": "def read_config(path):\n    \"\"\"Read the configuration file."}' > $R/short.jsonl
for plugin in cuda cpu; do
    echo "== specc bench on pjrt-$plugin"
    "$specc" bench $A --backend pjrt --pjrt-plugin $plugin --prompts $R/short.jsonl --max-new-tokens 64 --runs 3 \
        -k 1,2,3,4,6,8 --synthetic-acceptance 0.8 --json $R/100m-$plugin.json | tee $R/100m-$plugin.txt
done
python3 - "$R" <<'EOF'
import json, sys
r = sys.argv[1]
print("\n| backend | plain step ms | best K | speculative decode tok/s | plain decode tok/s | speedup |")
print("|---|---|---|---|---|---|")
for plugin in ("cuda", "cpu"):
    rep = json.load(open(f"{r}/100m-{plugin}.json"))
    d = rep["domains"][0]
    best = max(d["speculative"], key=lambda x: x["side"]["decode_tokens_per_second"])
    plain = d["plain"]["decode_tokens_per_second"]
    spec = best["side"]["decode_tokens_per_second"]
    print(f"| pjrt-{plugin} ({rep['backend']}) | {rep['costs']['target_decode_ms']:.2f} | {best['k']} | "
          f"{spec:.1f} | {plain:.1f} | {spec / plain:.2f}x |")
EOF
