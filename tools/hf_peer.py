#!/usr/bin/env python3
"""Peer baselines for specc's decoding benchmarks: Hugging Face transformers
(plain greedy and assisted generation) and onnxruntime (plain greedy), run on
the same CPU, weights and prompts as specc.

    python3 -m venv .venv-peer
    .venv-peer/bin/pip install -r tools/requirements-peer.txt
    .venv-peer/bin/python tools/hf_peer.py \\
        --target graphs/pair/target --draft graphs/pair/draft \\
        --prompts graphs/prompts/json.jsonl --max-new-tokens 128 --runs 3 \\
        --threads 2 --k 4 --output .cache/bench/peer-json.json

How the project uses it: BENCHMARKS.md has one table per prompt domain
(graphs/prompts/{code,json,prose}.jsonl, written by tools/make_prompts.py)
comparing specc plain and specc speculative decoding with these peers, all
measured side by side in the same session on the same machine.  Run this
script once per domain; specc's numbers come from its own benchmark on the
same prompts, and its greedy tokens must equal the "tokens" recorded here.

Model directories (--target, --draft) are laid out as

    DIR/config.json, DIR/model.safetensors   Hugging Face checkpoint (may be
                                             stored as float16; loaded as float32)
    DIR/with_past/model.onnx                 optimum "text-generation-with-past" export
    DIR/with_past/tokenizer.json             the tokenizer, or DIR/../tokenizer.json

Prompts are JSON lines {"id", "domain", "prompt"}; each is encoded with
tokenizers.Tokenizer.from_file(...).encode(text, add_special_tokens=False)
(no BOS), and the HF models get exactly those ids.  A prompt whose length plus
--max-new-tokens exceeds a model's max_position_embeddings is skipped and
listed in meta.skipped.

Configurations (all float32, greedy, batch 1, exactly N = --max-new-tokens new
tokens per prompt):

  hf_plain               model.generate(do_sample=False, max_new_tokens=N,
                         min_new_tokens=N, use_cache=True)
  hf_assisted_k{K}       the same with assistant_model=draft,
                         num_assistant_tokens=K, schedule "constant"
  hf_assisted_heuristic  the same with schedule "heuristic" (HF's adaptive K:
                         +2 after a fully accepted round, -1 otherwise),
                         starting from K, reset to K before every call
  ort_plain              onnxruntime on DIR/with_past/model.onnx: a prefill
                         with an empty past, then one token per step with the
                         presents fed back as past; intra_op_num_threads =
                         --threads, CPUExecutionProvider

"eos ignored": the generation config has eos_token_id=None, so generation
never stops early and no logits processor touches the scores (with an eos id,
min_new_tokens would mask eos out and change the greedy path); min_new_tokens
is passed anyway.  The assistant's confidence-based early stop (HF default
threshold 0.4) is disabled (--confidence-threshold 0) so the constant
schedule really drafts K tokens per round; pass 0.4 to get HF's default.

Timing: torch.set_num_threads(--threads).  Each configuration is warmed up
once (first prompt), then every prompt is run --runs times; per prompt the
median wall time is kept.  tokens_per_second = all new tokens / sum of the
per-prompt median times, PREFILL INCLUDED (time from the generate call to its
return).  ttft = time to the first new token (the prefill; for assisted
generation the first verified round); inter-token latency = (total - ttft) /
(tokens after the first burst).  Token arrival times come from a
transformers streamer (HF) or the decode loop (onnxruntime).  Forward calls
of target and draft are counted with forward hooks, giving
tokens_per_target_call (1.0 for plain decoding; for assisted decoding the
mean accepted draft tokens + 1 per verification).

Check: all configurations must produce the same greedy tokens per prompt as
hf_plain (greedy assisted generation is exact, so any difference comes from
floating-point near-ties, e.g. a K+1-token verification pass or onnxruntime
rounding differently from a one-token step); mismatches are reported by
prompt id and first differing position, and --strict makes them an error.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import dataclasses
import datetime
import hashlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tokenizers
import torch
import transformers
from transformers import AutoModelForCausalLM, GenerationConfig
from transformers.generation.streamers import BaseStreamer

TIMING_NOTE = (
    "tokens_per_second = new tokens / wall time of the whole generation, prefill included; "
    "per prompt the median of `runs` timed runs after one warm-up per configuration. "
    "ttft = time to the first new token; inter-token latency = (total - ttft) / "
    "(new tokens after the first burst)."
)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------

def find_tokenizer(model_dir: Path) -> Path:
    for cand in (model_dir / "with_past" / "tokenizer.json", model_dir.parent / "tokenizer.json",
                 model_dir / "tokenizer.json"):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"no tokenizer.json in {model_dir}/with_past, {model_dir.parent} or {model_dir}")


def read_prompts(path: Path, limit: int | None) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows[:limit] if limit else rows


def max_positions(config) -> int:
    return int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 1 << 30)


def load_hf(model_dir: Path) -> torch.nn.Module:
    # `dtype` is transformers 4.57's name for `torch_dtype`: upcast float16 checkpoints.
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, local_files_only=True)
    # generate() fills unset fields of the config it is given from the
    # model's own generation_config, so eos must be cleared here too.
    pad = model.config.pad_token_id
    model.generation_config = GenerationConfig(eos_token_id=None, pad_token_id=0 if pad is None else pad)
    return model.eval()


# --------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------

class Clock(BaseStreamer):
    """Streamer recording when new tokens arrive (the first put is the prompt)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.events: list[tuple[float, int]] = []   # (time, tokens in this burst)
        self._prompt_seen = False

    def put(self, value) -> None:
        now = time.perf_counter()
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.events.append((now, int(value.numel())))

    def tick(self, count: int = 1) -> None:
        self.events.append((time.perf_counter(), count))

    def end(self) -> None:
        pass


@dataclasses.dataclass
class Timing:
    seconds: float
    ttft: float
    itl: float


def timing_of(clock: Clock, end: float, n_tokens: int) -> Timing:
    total = end - clock.start
    if not clock.events:
        return Timing(total, total, float("nan"))
    first_time, first_count = clock.events[0]
    ttft = first_time - clock.start
    rest = n_tokens - first_count
    itl = (total - ttft) / rest if rest > 0 else float("nan")
    return Timing(total, ttft, itl)


class CallCounter:
    """Counts forward calls of a module (a forward hook costs ~1 us)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.count = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *_args) -> None:
        self.count += 1


# --------------------------------------------------------------------------
# Runners: each takes prompt ids and returns (new token ids, Timing)
# --------------------------------------------------------------------------

def generation_config(model: torch.nn.Module, n: int) -> GenerationConfig:
    pad = model.config.pad_token_id
    if pad is None:
        pad = 0
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=n,
        min_new_tokens=n,
        eos_token_id=None,        # never stop early, never mask eos
        pad_token_id=pad,
        use_cache=True,
    )


class HfRunner:
    def __init__(self, target, draft, n: int, k: int | None, schedule: str | None, threshold: float):
        self.target, self.draft, self.n = target, draft, n
        self.k, self.schedule, self.threshold = k, schedule, threshold
        self.config = generation_config(target, n)

    def __call__(self, ids: list[int]) -> tuple[list[int], Timing]:
        input_ids = torch.tensor([ids], dtype=torch.long)
        kwargs = {}
        if self.draft is not None:
            # Read by the candidate generator from the assistant's own config;
            # reset every call because "heuristic" carries K across calls.
            gc = self.draft.generation_config
            gc.num_assistant_tokens = self.k
            gc.num_assistant_tokens_schedule = self.schedule
            gc.assistant_confidence_threshold = self.threshold
            kwargs["assistant_model"] = self.draft
        clock = Clock()
        with torch.inference_mode():
            out = self.target.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=self.config,
                streamer=clock,
                **kwargs,
            )
        end = time.perf_counter()
        tokens = out[0, len(ids):].tolist()
        return tokens, timing_of(clock, end, len(tokens))


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32}


class OrtRunner:
    """Plain greedy decoding on an optimum with-past export."""

    def __init__(self, path: Path, hf_config, n: int, threads: int):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.n = n
        self.inputs = {i.name: i for i in self.sess.get_inputs()}
        self.output_names = [o.name for o in self.sess.get_outputs()]
        heads = getattr(hf_config, "num_key_value_heads", None) or hf_config.num_attention_heads
        head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
        self.empty_past = {}
        for name, info in self.inputs.items():
            if name.startswith("past_key_values."):
                shape = list(info.shape)
                kv = shape[1] if isinstance(shape[1], int) else heads
                hd = shape[3] if isinstance(shape[3], int) else head_dim
                self.empty_past[name] = np.zeros((1, kv, 0, hd), dtype=_ORT_DTYPES[info.type])
        self.ids_dtype = _ORT_DTYPES[self.inputs["input_ids"].type]
        self.calls = 0

    def _feeds(self, ids: np.ndarray, past_len: int, past: dict) -> dict:
        q = ids.shape[1]
        feeds = {"input_ids": ids.astype(self.ids_dtype)}
        if "attention_mask" in self.inputs:
            feeds["attention_mask"] = np.ones((1, past_len + q), dtype=_ORT_DTYPES[self.inputs["attention_mask"].type])
        if "position_ids" in self.inputs:
            feeds["position_ids"] = np.arange(past_len, past_len + q, dtype=np.int64)[None, :]
        feeds.update(past)
        return feeds

    def __call__(self, ids: list[int]) -> tuple[list[int], Timing]:
        clock = Clock()
        past, past_len = self.empty_past, 0
        step_ids = np.array([ids], dtype=np.int64)
        tokens = []
        for _ in range(self.n):
            outs = dict(zip(self.output_names, self.sess.run(self.output_names, self._feeds(step_ids, past_len, past))))
            self.calls += 1
            token = int(np.argmax(outs["logits"][0, -1]))
            tokens.append(token)
            clock.tick()
            past_len += step_ids.shape[1]
            past = {n.replace("present.", "past_key_values.", 1): v for n, v in outs.items() if n.startswith("present.")}
            step_ids = np.array([[token]], dtype=np.int64)
        end = time.perf_counter()
        return tokens, timing_of(clock, end, len(tokens))


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

class OrtCalls:
    """CallCounter-like view of an OrtRunner's session.run count."""

    def __init__(self, runner: OrtRunner) -> None:
        self.runner = runner

    @property
    def count(self) -> int:
        return self.runner.calls

    @count.setter
    def count(self, value: int) -> None:
        self.runner.calls = value


def run_config(name, runner, prompts, runs, counters) -> dict:
    print(f"[{name}] warm-up", flush=True)
    runner(prompts[0]["ids"])
    per_prompt = []
    for p in prompts:
        for c in counters.values():
            c.count = 0
        tokens, timings = None, []
        calls = None
        for r in range(runs):
            got, t = runner(p["ids"])
            if r == 0:
                tokens = got
                calls = {k: c.count for k, c in counters.items()}
            elif got != tokens:
                raise RuntimeError(f"{name} {p['id']}: run {r} produced different tokens than run 0")
            timings.append(t)
        med = statistics.median(t.seconds for t in timings)
        row = {
            "id": p["id"],
            "prompt_tokens": len(p["ids"]),
            "tokens": tokens,
            "seconds": med,
            "seconds_runs": [round(t.seconds, 6) for t in timings],
            "ttft_seconds": statistics.median(t.ttft for t in timings),
            "inter_token_seconds": statistics.median(t.itl for t in timings),
        }
        if calls and "target" in calls:
            row["target_forward_calls"] = calls["target"]
            if name.startswith("hf_assisted"):
                row["draft_forward_calls"] = calls["draft"]
        per_prompt.append(row)
        print(f"  {p['id']}: {len(tokens)} tokens in {med * 1e3:.1f} ms", flush=True)
    total_tokens = sum(len(r["tokens"]) for r in per_prompt)
    total_seconds = sum(r["seconds"] for r in per_prompt)
    out = {
        "tokens_per_second": total_tokens / total_seconds,
        "total_new_tokens": total_tokens,
        "total_seconds": total_seconds,
        "median_ttft_seconds": statistics.median(r["ttft_seconds"] for r in per_prompt),
        "median_inter_token_seconds": statistics.median(r["inter_token_seconds"] for r in per_prompt),
    }
    if all("target_forward_calls" in r for r in per_prompt):
        out["tokens_per_target_call"] = total_tokens / sum(r["target_forward_calls"] for r in per_prompt)
    out["per_prompt"] = per_prompt
    return out


def compare(configs: dict, reference: str) -> list[dict]:
    mismatches = []
    ref = {r["id"]: r["tokens"] for r in configs[reference]["per_prompt"]}
    for name, cfg in configs.items():
        if name == reference:
            continue
        for r in cfg["per_prompt"]:
            want, got = ref[r["id"]], r["tokens"]
            if got != want:
                pos = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
                mismatches.append({
                    "config": name, "reference": reference, "id": r["id"], "position": pos,
                    "expected": want[pos] if pos < len(want) else None,
                    "got": got[pos] if pos < len(got) else None,
                })
    return mismatches


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", type=Path, required=True, help="target model directory")
    parser.add_argument("--draft", type=Path, required=True, help="draft model directory")
    parser.add_argument("--prompts", type=Path, required=True, help="prompts .jsonl (id, domain, prompt)")
    parser.add_argument("--limit", type=int, help="use only the first N prompts")
    parser.add_argument("--max-new-tokens", type=int, required=True, help="N: new tokens per prompt")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per prompt (median kept)")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--k", type=int, default=4, help="draft tokens per round (constant schedule)")
    parser.add_argument("--confidence-threshold", type=float, default=0.0,
                        help="assistant_confidence_threshold (0 = off; HF's default is 0.4)")
    parser.add_argument("--configs", default="hf_plain,hf_assisted_k,hf_assisted_heuristic,ort_plain",
                        help="comma-separated subset of hf_plain, hf_assisted_k, hf_assisted_heuristic, ort_plain")
    parser.add_argument("--strict", action="store_true", help="exit 1 if configurations disagree on tokens")
    parser.add_argument("--output", type=Path, required=True, help="results .json")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    transformers.utils.logging.set_verbosity_error()

    tok_path = find_tokenizer(args.target)
    tokenizer = tokenizers.Tokenizer.from_file(str(tok_path))
    try:
        draft_tok = find_tokenizer(args.draft)
        if draft_tok.read_bytes() != tok_path.read_bytes():
            print(f"warning: {draft_tok} differs from {tok_path}; using the target's", file=sys.stderr)
    except FileNotFoundError:
        pass

    target = load_hf(args.target)
    draft = load_hf(args.draft)
    if target.config.vocab_size != draft.config.vocab_size:
        print("warning: target and draft vocab sizes differ", file=sys.stderr)
    limit_len = min(max_positions(target.config), max_positions(draft.config))

    prompts, skipped = [], []
    for row in read_prompts(args.prompts, args.limit):
        ids = tokenizer.encode(row["prompt"], add_special_tokens=False).ids
        if not ids or len(ids) + args.max_new_tokens > limit_len:
            skipped.append({"id": row["id"], "prompt_tokens": len(ids)})
            print(f"skipping {row['id']}: {len(ids)} prompt tokens + {args.max_new_tokens} > {limit_len}",
                  file=sys.stderr)
            continue
        prompts.append({"id": row["id"], "ids": ids})
    if not prompts:
        raise SystemExit("no prompts left to run")

    counters = {"target": CallCounter(target), "draft": CallCounter(draft)}
    wanted = [c.strip() for c in args.configs.split(",") if c.strip()]
    runners = {}
    for c in wanted:
        if c == "hf_plain":
            runners["hf_plain"] = HfRunner(target, None, args.max_new_tokens, None, None, args.confidence_threshold)
        elif c == "hf_assisted_k":
            runners[f"hf_assisted_k{args.k}"] = HfRunner(target, draft, args.max_new_tokens, args.k, "constant",
                                                         args.confidence_threshold)
        elif c == "hf_assisted_heuristic":
            runners["hf_assisted_heuristic"] = HfRunner(target, draft, args.max_new_tokens, args.k, "heuristic",
                                                        args.confidence_threshold)
        elif c == "ort_plain":
            runners["ort_plain"] = OrtRunner(args.target / "with_past" / "model.onnx", target.config,
                                             args.max_new_tokens, args.threads)
        else:
            raise SystemExit(f"unknown configuration {c!r}")

    configs = {}
    for name, runner in runners.items():
        counts = counters if name.startswith("hf_") else {"target": OrtCalls(runner)}
        configs[name] = run_config(name, runner, prompts, args.runs, counts)

    reference = "hf_plain" if "hf_plain" in configs else next(iter(configs))
    mismatches = compare(configs, reference)

    meta = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": {
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "onnxruntime": ort.__version__,
            "tokenizers": tokenizers.__version__, "numpy": np.__version__,
        },
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count()},
        "threads": args.threads,
        "torch_threads": torch.get_num_threads(),
        "max_new_tokens": args.max_new_tokens,
        "k": args.k,
        "heuristic_start_k": args.k,
        "assistant_confidence_threshold": args.confidence_threshold,
        "runs": args.runs,
        "prompts_file": str(args.prompts),
        "prompts_sha256": hashlib.sha256(args.prompts.read_bytes()).hexdigest(),
        "limit": args.limit,
        "prompts_run": len(prompts),
        "skipped": skipped,
        "target": str(args.target),
        "draft": str(args.draft),
        "tokenizer": str(tok_path),
        "target_parameters": sum(p.numel() for p in target.parameters()),
        "draft_parameters": sum(p.numel() for p in draft.parameters()),
        "dtype": "float32",
        "timing": TIMING_NOTE,
        "token_check": {"reference": reference, "ok": not mismatches, "mismatches": mismatches},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"meta": meta, "configs": configs}, indent=1) + "\n")

    print()
    print(f"{len(prompts)} prompts from {args.prompts}, N={args.max_new_tokens}, threads={args.threads}, "
          f"runs={args.runs} (tokens/s include prefill)")
    header = f"{'config':24} {'tok/s':>9} {'ttft ms':>9} {'itl ms':>8} {'tok/call':>9} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    base = configs[reference]["tokens_per_second"]
    for name, cfg in configs.items():
        per_call = cfg.get("tokens_per_target_call")
        print(f"{name:24} {cfg['tokens_per_second']:9.1f} {cfg['median_ttft_seconds'] * 1e3:9.2f} "
              f"{cfg['median_inter_token_seconds'] * 1e3:8.3f} "
              f"{(f'{per_call:.2f}' if per_call else '-'):>9} {cfg['tokens_per_second'] / base:8.2f}x")
    if mismatches:
        print(f"\nTOKEN MISMATCHES vs {reference}:")
        for m in mismatches:
            print(f"  {m['config']} {m['id']}: first difference at position {m['position']} "
                  f"(expected {m['expected']}, got {m['got']})")
    else:
        print(f"\nall configurations produce the same greedy tokens as {reference}")
    print(f"wrote {args.output}")
    return 1 if (mismatches and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
