#!/usr/bin/env python3
"""Checks that specc's speculative greedy output equals Hugging Face's plain
greedy output, prompt by prompt, for the prompts a tools/hf_peer.py result
file ran (the same text, the same number of new tokens, EOS ignored).

    python3 tools/bench_tokens_check.py ARTIFACT PEER.json [PEER.json ...]

Exits 1 on any difference. Used by tools/bench_all.sh.
"""
import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    artifact, peers = sys.argv[1], sys.argv[2:]
    same = differ = 0
    for peer_file in peers:
        peer = json.loads(Path(peer_file).read_text())
        prompts_file = peer["meta"]["prompts_file"]
        prompts = {}
        for line in Path(prompts_file).read_text().splitlines():
            if line.strip():
                obj = json.loads(line)
                prompts[obj["id"]] = obj["prompt"]
        n = peer["meta"]["max_new_tokens"]
        for row in peer["configs"]["hf_plain"]["per_prompt"]:
            out = subprocess.run(
                ["./target/release/specc", "run", artifact, "--prompt", prompts[row["id"]], "--max-new-tokens",
                 str(n), "--ignore-eos", "--output-format", "json"],
                capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{row['id']}: specc failed: {out.stderr.strip()}")
                differ += 1
                continue
            tokens = json.loads(out.stdout)["tokens"]
            if tokens == row["tokens"]:
                same += 1
            else:
                first = next((i for i, (a, b) in enumerate(zip(tokens, row["tokens"])) if a != b), min(len(tokens), len(row["tokens"])))
                print(f"{row['id']}: specc and Hugging Face differ from new token {first}")
                differ += 1
    print(f"specc speculative greedy == Hugging Face plain greedy: {same}/{same + differ} prompts")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
