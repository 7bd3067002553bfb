#!/usr/bin/env bash
# The numbers of BENCHMARKS.md's "Roofline estimate against published
# Trainium numbers": shape-only artifacts of the published model pairs, the
# calibration on ONE measurement (Llama-3.1-405B plain), the validation on
# others. Needs the shape exports (tools/make_shape_exports.py) and a
# release build; writes under .cache/estimate/ (about 500 MB, no weights).
#
#   .venv-fixtures/bin/python tools/make_shape_exports.py
#   cargo build --release
#   tools/estimate_validation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
S=target/release/specc
E=.cache/shape-exports
O=.cache/estimate
mkdir -p "$O"

# Shapes as the NxD Inference tutorials ran them: bf16, cache capacity 12800
# (seq-len 12800, context bucket 10240) for the Llama pairs; capacity 6400
# (max-model-len 6400, 128-token prompts) for Qwen3. --weights none: only
# names, dtypes and shapes are recorded; nothing is read.
compile() { # out target draft capacity bucket ks
  /usr/bin/time -f "  compile $1: %e s wall, %M KiB peak RSS" "$S" compile "$E/$2/model.onnx" --draft "$E/$3/model.onnx" \
    --max-seq-len "$4" --prompt-buckets "$5" -k "$6" --target trn2 --dtype bf16 --weights none -o "$O/$1" >/dev/null
}
compile llama405b-1b llama-3.1-405b llama-3.2-1b 12800 10240 1-8
compile llama70b-1b llama-3.3-70b llama-3.2-1b 12800 10240 7
compile qwen3-32b-0.6b qwen3-32b qwen3-0.6b 6400 128 7
compile qwen3-32b-1.7b qwen3-32b qwen3-1.7b 6400 128 7

est() { "$S" estimate "$@" --instance trn2.48xlarge --tp 64; }
show() { grep -E "calibrated here|inter-token latency, plain|bucket|implied|best K" || true; }

echo "== calibration: the fixed cost per collective from Llama-3.1-405B's 37.9 ms (efficiency 1)"
est "$O/llama405b-1b" --calibrate collective-latency=37.9 | show
echo "== with the calibrated default (72.1 us): 405B (+ implied acceptance of the FP8 speculative 8.27 ms)"
est "$O/llama405b-1b" --implied-acceptance 7=8.27 | show
echo "== validation: Llama-3.3-70B (published 19.8 ms plain, 5.6 ms speculative K=7, TTFT 575.6 ms)"
est "$O/llama70b-1b" --implied-acceptance 7=5.6 | show
echo "== validation: Qwen3-32B (about 10.77 ms plain, 9.9 ms with Qwen3-0.6B K=7, from p99 aggregates)"
est "$O/qwen3-32b-0.6b" --implied-acceptance 7=9.9 | show
echo "== Qwen3-32B + Qwen3-1.7B (the blog's pair): the most speculation can give at tp 64 (every proposal accepted)"
est "$O/qwen3-32b-1.7b" --acceptance 1.0 | show

echo "== the alternative: documented collective latency (10 us) and the efficiency calibrated instead"
est "$O/llama405b-1b" --collective-latency-us 10 --calibrate efficiency=37.9 | show
EFF=$(est "$O/llama405b-1b" --collective-latency-us 10 --calibrate efficiency=37.9 --output-format json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["calibration"]["value"])')
for a in llama70b-1b qwen3-32b-0.6b; do
  echo "-- $a at efficiency $EFF"
  est "$O/$a" --collective-latency-us 10 --efficiency "$EFF" | show
done
