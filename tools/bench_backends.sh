#!/usr/bin/env bash
# The backends side by side (BENCHMARKS.md, "Backends"): the same artifact
# on the reference interpreter and on XLA's CPU plugin (pjrt-cpu), and
# onnxruntime on the same ONNX file, interleaved round by round on the same
# prompts, for
#
#   pair: the bundled trained pair (4.2M target, 0.9M draft), real
#         acceptance, 3 JSON prompts;
#   100m: the ~100M bench Llama (tools/make_bench_models.py --only 100m),
#         synthetic acceptance 0.8 (BENCHMARK ONLY: the compute is real,
#         the acceptance drawn), 2 short prompts.
#
# Each round runs `specc bench` on both backends (plain and K 1,2,3,4,6,8)
# and onnxruntime's plain decode loop (tools/hf_peer.py ort_plain); the
# summary gives the medians over rounds.
#
# Usage: tools/bench_backends.sh [pair|100m] [ROUNDS]  (default: both, 3).
# Needs the release build, .venv-ci (the CPU plugin) and .venv-fixtures
# (tools/requirements-fixtures.txt: onnxruntime, and torch for the 100M model).
set -euo pipefail
cd "$(dirname "$0")/.."
R=.cache/bench-results/backends
mkdir -p "$R"
specc=./target/release/specc
py=.venv-fixtures/bin/python
what=${1:-all}
rounds=${2:-3}
export SPECC_PJRT_CACHE=$PWD/.cache/pjrt-cache

bench_model() { # name artifact target-dir draft-dir prompts tokens extra-bench-flags...
    local name=$1 art=$2 tdir=$3 ddir=$4 prompts=$5 tokens=$6
    shift 6
    for round in $(seq 1 "$rounds"); do
        for backend in reference pjrt; do
            echo "== $name round $round: specc on $backend"
            $specc bench "$art" --backend $backend --prompts "$prompts" --max-new-tokens "$tokens" --runs 1 \
                -k 1,2,3,4,6,8 "$@" --json $R/$name-$backend-$round.json >/dev/null
        done
        echo "== $name round $round: onnxruntime"
        $py tools/hf_peer.py --target "$tdir" --draft "$ddir" --prompts "$prompts" --max-new-tokens "$tokens" --runs 1 \
            --threads 2 --configs ort_plain --output $R/$name-ort-$round.json >/dev/null
    done
}

if [[ $what == all || $what == pair ]]; then
    A=.cache/bench-out/pair
    $specc compile graphs/pair/target/with_past/model.onnx --draft graphs/pair/draft/with_past/model.onnx \
        --max-seq-len 512 -k 1-8 --prompt-buckets 128,256 --target xla -o $A
    # Three JSON prompts that fit the 256-token bucket (123, 189, 201 tokens).
    sed -n '1p;3p;4p' graphs/prompts/json.jsonl > $R/pair-prompts.jsonl
    bench_model pair $A graphs/pair/target graphs/pair/draft $R/pair-prompts.jsonl 64
fi

if [[ $what == all || $what == 100m ]]; then
    M=.cache/bench-models/llama100m
    A=.cache/bench-out/llama100m
    [[ -d $M ]] || $py tools/make_bench_models.py --only 100m
    $specc compile $M/target/with_past/model.onnx --draft $M/draft/with_past/model.onnx --tokenizer $M/tokenizer.json \
        --max-seq-len 128 -k 1-8 --prompt-buckets 32 --target xla -o $A
    printf '%s\n' '{"id": "s1", "prompt": "The documentation describes how to install the package and"}' \
        '{"id": "s2", "prompt": "def read_config(path):\n    \"\"\"Read the configuration file."}' > $R/short.jsonl
    bench_model 100m $A $M/target $M/draft $R/short.jsonl 64 --synthetic-acceptance 0.8
fi

python3 - "$R" "$what" <<'EOF'
import glob, json, statistics, sys
r, what = sys.argv[1], sys.argv[2]
med = statistics.median
for name in (["pair", "100m"] if what == "all" else [what]):
    rows = {}
    for backend in ("reference", "pjrt"):
        reps = [json.load(open(f)) for f in sorted(glob.glob(f"{r}/{name}-{backend}-*.json"))]
        if not reps:
            continue
        d = [rep["domains"][0] for rep in reps]
        step = med(rep["costs"]["target_decode_ms"] for rep in reps)
        plain = med(x["plain"]["decode_tokens_per_second"] for x in d)
        plain_itl = med(x["plain"]["inter_token_latency_ms"] for x in d)
        per_k = {}
        for x in d:
            for s in x["speculative"]:
                per_k.setdefault(s["k"], []).append(s["side"]["decode_tokens_per_second"])
        k, spec = max(((k, med(v)) for k, v in per_k.items()), key=lambda kv: kv[1])
        verify = {c["k"]: c["verify_ratio"] for c in reps[0]["costs"]["per_k"]}
        rows[backend] = (step, plain_itl, plain, spec, k, verify.get(k), len(reps))
    ort = [json.load(open(f)) for f in sorted(glob.glob(f"{r}/{name}-ort-*.json"))]
    print(f"\n{name}: medians over rounds (decode only, after the first token)")
    print("| backend | plain step (graph) ms | plain inter-token ms | plain tok/s | best K | speculative tok/s | speculative / plain | verify K+1 / step | rounds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b, (step, itl, plain, spec, k, v, n) in rows.items():
        print(f"| specc {b} | {step:.2f} | {itl:.2f} | {plain:.1f} | {k} | {spec:.1f} | {spec / plain:.2f}x | {v:.2f} | {n} |")
    if ort:
        vals = [o["configs"]["ort_plain"]["median_inter_token_seconds"] * 1e3 for o in ort]
        print(f"| onnxruntime plain | | {med(vals):.2f} | {1000 / med(vals):.1f} | | | | | {len(vals)} |")
EOF
