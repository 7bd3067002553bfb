#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md (issue 5), side by side in one run, on
# this machine, with everything written under .cache/bench-results/:
#
#   1. the trained pair (graphs/pair): specc bench per domain (code, JSON,
#      prose; the first 8 prompts of each), K 1..8 and adaptive, then the
#      peers on the same prompts: Hugging Face plain and assisted generation
#      and onnxruntime plain (tools/hf_peer.py), and a check that specc's
#      greedy tokens equal Hugging Face's;
#   2. the ~100M-parameter Llama (tools/make_bench_models.py --only 100m,
#      seeded random weights): specc bench --synthetic-acceptance
#      0.5..0.9 for K 1..8 and adaptive (BENCHMARK ONLY: acceptance is drawn,
#      the compute is real), and the peers' plain decoding on the same
#      prompts.
#
# Usage: tools/bench_all.sh [pair|100m]   (default: both). Needs the release
# build and .venv-fixtures (tools/requirements-fixtures.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
R=.cache/bench-results
mkdir -p "$R"
specc=./target/release/specc
py=.venv-fixtures/bin/python
what=${1:-all}

if [[ $what == all || $what == pair ]]; then
    $specc compile graphs/pair/target/with_past/model.onnx --draft graphs/pair/draft/with_past/model.onnx \
        --max-seq-len 512 -k 1-8 --prompt-buckets 128,256 --target xla -o .cache/bench-out/pair
    $specc bench .cache/bench-out/pair --prompts graphs/prompts/code.jsonl --prompts graphs/prompts/json.jsonl \
        --prompts graphs/prompts/prose.jsonl --limit 8 --max-new-tokens 64 --runs 2 --adaptive \
        --json $R/pair.json --plot $R/pair.svg | tee $R/pair.txt
    for d in code json prose; do
        $py tools/hf_peer.py --target graphs/pair/target --draft graphs/pair/draft --prompts graphs/prompts/$d.jsonl \
            --limit 8 --max-new-tokens 64 --runs 1 --threads 2 --k 3 --output $R/peer-pair-$d.json | tail -9
    done
    python3 tools/bench_tokens_check.py .cache/bench-out/pair $R/peer-pair-{code,json,prose}.json
fi

if [[ $what == all || $what == 100m ]]; then
    M=.cache/bench-models/llama100m
    # Two short prompts: a 94M-parameter prefill on the reference backend
    # costs seconds per 100 tokens, and synthetic acceptance ignores content.
    printf '%s\n' '{"id": "s1", "prompt": "The documentation describes how to install the package and"}' \
        '{"id": "s2", "prompt": "def read_config(path):\n    \"\"\"Read the configuration file."}' > $R/short.jsonl
    [[ -d $M ]] || $py tools/make_bench_models.py --only 100m
    $specc compile $M/target/with_past/model.onnx --draft $M/draft/with_past/model.onnx --tokenizer $M/tokenizer.json \
        --max-seq-len 128 -k 1-8 --prompt-buckets 32 --target xla -o .cache/bench-out/llama100m
    $specc bench .cache/bench-out/llama100m --prompts $R/short.jsonl --max-new-tokens 64 \
        --runs 1 --adaptive --synthetic-acceptance 0.5,0.6,0.7,0.8,0.9 --json $R/100m.json --plot $R/100m.svg \
        | tee $R/100m.txt
    $py tools/hf_peer.py --target $M/target --draft $M/draft --prompts $R/short.jsonl \
        --max-new-tokens 64 --runs 1 --threads 2 --k 3 --output $R/peer-100m.json | tail -9
fi
