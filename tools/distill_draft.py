#!/usr/bin/env python3
"""Distil a small Llama-architecture DRAFT model from a fixture TARGET model.

Run from the repository root (after tools/make_fixtures.py's venv exists):

    .venv-fixtures/bin/python tools/distill_draft.py

It writes graphs/drafts/<target>-distilled/ (default target: qwen2, so
graphs/drafts/qwen2-distilled/):

  config.json             Hugging Face config of the draft (LlamaForCausalLM)
  with_past/model.onnx    optimum-onnx export, task text-generation-with-past,
  with_past/config.json   exactly as tools/make_fixtures.py exports fixtures
  README.md               how it was made and the measured numbers

What it does, step by step:

1. Rebuilds the fixture target in PyTorch with tools/make_fixtures.py's own
   config and seed (build_model), and checks that its logits for
   graphs/fixtures/<target>/reference/nocache.in.safetensors equal the
   committed nocache.out.safetensors within 1e-4.
2. Generates distillation data from the target: random-token prompts of
   length 4-16 (like the fixtures' prompts) continued by the target for
   64..(128 - prompt length) tokens with a KV cache.  Per sequence the
   continuation is greedy (1/2 of the sequences), temperature-1 sampling
   (1/4) or a per-token coin flip between the two (1/4), so the draft sees
   both on- and off-greedy contexts.  Labels are the target's argmax at
   every position of the finished sequence (one teacher-forced forward).
3. Trains the draft (same vocabulary and special tokens; tied embeddings
   initialised from an SVD projection of the target's lm_head) with Adam on
   cross-entropy against the target's greedy labels.  Why hard labels and
   not KL to the target's softmax: a randomly initialised target is nearly
   uniform (mean top-1 probability 4.0% for qwen2, 4.6% for llama), so KL spends
   the draft's tiny capacity matching the tail; in equal-time trials hard
   labels gave the best greedy agreement (qwen2, hidden-64 draft, 2.5-3 min:
   CE 6.5%, KL T=1 5.0%, KL T=0.5 4.1%, KL+CE 6.6%).
4. Evaluates on fresh held-out prompts: the target decodes 64 tokens
   greedily; teacher-forced agreement = fraction of those 64 positions where
   the draft's argmax (given the target's context) equals the target's
   token.  Greedy speculative decoding is simulated with K=3 and K=5: at each
   round the draft proposes K tokens greedily from the current context, the
   accepted prefix is the longest one matching the target's greedy tokens,
   and the target adds one token; the mean accepted length per round and the
   per-position acceptance rates are reported.
5. Exports the draft with optimum (tools/make_fixtures.export_with_past:
   input_ids, attention_mask, position_ids, past_key_values.{i}.key/value ->
   logits, present.{i}.key/value; one file, no external data) and checks with
   onnxruntime (one thread) that a prefill with an EMPTY past and one cached
   decode step match PyTorch within 1e-4.

Why qwen2 and not llama by default: the fixtures are random models whose
next token depends chaotically on the whole context, and the llama fixture
(4 layers, vocab 2048) is far harder to imitate.  A 1-layer hidden-128
draft with 27% of llama's parameters reached only 0.4% greedy agreement
(the most-frequent-label baseline is 0.4%), and even llama's own first 3 of
4 layers agree with it only 28% of the time (first 1: 4%, first 2: 12%), so
no small draft can do well.  The qwen2 fixture (2 layers, vocab 512) is
learnable to a few percent.  `--target llama` still works.

Deterministic: fixed seeds, one CPU thread, a fixed number of steps (the
README's timing is the only value that varies run to run).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
import transformers
from safetensors.numpy import load_file
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (the fixtures' own configs, seeds, export)

REPO_ROOT = mf.REPO_ROOT
COMMAND = ".venv-fixtures/bin/python tools/distill_draft.py"
TOL = 1e-4

MAX_LEN = 128            # longest training sequence (prompt + continuation)
MIN_CONT = 64            # shortest continuation
PROMPT_MIN, PROMPT_MAX = 4, 16
GEN_BATCH = 128          # sequences generated together
EVAL_PROMPTS = 512       # held-out prompts (batches of 64 sharing a length)
EVAL_TOKENS = 64         # greedy target tokens per held-out prompt
DATA_SEED = 1
TRAIN_SEED = 2
EVAL_SEED = 12345        # disjoint from the data stream
DRAFT_SEED = 3


# --------------------------------------------------------------------------
# Target
# --------------------------------------------------------------------------

def build_target(name: str) -> tuple[mf.Arch, torch.nn.Module]:
    arch = next(a for a in mf.all_archs() if a.name == name)
    model = mf.build_model(arch)
    ref = REPO_ROOT / "graphs" / "fixtures" / name / "reference"
    inp = load_file(str(ref / "nocache.in.safetensors"))
    out = load_file(str(ref / "nocache.out.safetensors"))
    diff = mf.max_abs(mf.torch_logits(model, inp["input_ids"]), out["logits"])
    print(f"rebuilt {name} target: max abs diff vs committed nocache logits {diff:.2e}")
    if not diff <= TOL:
        raise RuntimeError(f"rebuilt target differs from the fixture ({diff} > {TOL})")
    return arch, model


@torch.no_grad()
def continue_with(model, prompt: torch.Tensor, steps: int, greedy_p: torch.Tensor,
                  gen: torch.Generator) -> torch.Tensor:
    """prompt [B, P] + `steps` target tokens; token-wise greedy with prob greedy_p[b], else sampled (T=1)."""
    cache = DynamicCache()
    logits = model(input_ids=prompt, past_key_values=cache, use_cache=True).logits[:, -1]
    seq = [prompt]
    for step in range(steps):
        greedy = logits.argmax(-1)
        sampled = torch.multinomial(logits.softmax(-1), 1, generator=gen)[:, 0]
        use_greedy = torch.rand(greedy.shape[0], generator=gen) < greedy_p
        tok = torch.where(use_greedy, greedy, sampled)[:, None]
        seq.append(tok)
        if step + 1 < steps:
            logits = model(input_ids=tok, past_key_values=cache, use_cache=True).logits[:, -1]
    return torch.cat(seq, 1)


@torch.no_grad()
def make_data(model, vocab: int, batches: int) -> dict[str, torch.Tensor]:
    """ids [N, MAX_LEN] (right-padded), labels (target argmax per position), mask."""
    gen = torch.Generator().manual_seed(DATA_SEED)
    ids, labels, mask = [], [], []
    for b in range(batches):
        plen = int(torch.randint(PROMPT_MIN, PROMPT_MAX + 1, (1,), generator=gen))
        cont = int(torch.randint(MIN_CONT, MAX_LEN - plen + 1, (1,), generator=gen))
        prompt = torch.randint(0, vocab, (GEN_BATCH, plen), generator=gen)
        # modes: 0,1 greedy; 2 sampled; 3 per-token mix
        mode = torch.randint(0, 4, (GEN_BATCH,), generator=gen)
        greedy_p = torch.tensor([1.0, 1.0, 0.0, 0.5])[mode]
        seq = continue_with(model, prompt, cont, greedy_p, gen)
        lab = model(input_ids=seq, use_cache=False).logits.argmax(-1)
        pad = MAX_LEN - seq.shape[1]
        ids.append(F.pad(seq, (0, pad)))
        labels.append(F.pad(lab, (0, pad)))
        m = torch.zeros(GEN_BATCH, MAX_LEN, dtype=torch.bool)
        m[:, :seq.shape[1]] = True
        mask.append(m)
        if (b + 1) % 40 == 0:
            print(f"  data: {b + 1}/{batches} batches", flush=True)
    return {"ids": torch.cat(ids), "labels": torch.cat(labels).to(torch.int16), "mask": torch.cat(mask)}


@torch.no_grad()
def make_eval(model, vocab: int) -> list[tuple[torch.Tensor, int]]:
    """Held-out prompts + the target's greedy continuation: list of (seq [64, P+64], P)."""
    gen = torch.Generator().manual_seed(EVAL_SEED)
    out = []
    for _ in range(EVAL_PROMPTS // 64):
        plen = int(torch.randint(PROMPT_MIN, PROMPT_MAX + 1, (1,), generator=gen))
        prompt = torch.randint(0, vocab, (64, plen), generator=gen)
        seq = continue_with(model, prompt, EVAL_TOKENS, torch.ones(64), gen)
        # The path must be the teacher-forced argmax too (no cache/no-cache tie flips).
        tf = model(input_ids=seq[:, :-1], use_cache=False).logits.argmax(-1)[:, plen - 1:]
        if not torch.equal(tf, seq[:, plen:]):
            raise RuntimeError("cached greedy path differs from teacher-forced argmax")
        out.append((seq, plen))
    return out


# --------------------------------------------------------------------------
# Draft
# --------------------------------------------------------------------------

def draft_config(target_cfg, hidden: int, layers: int, heads: int, kv_heads: int, inter: int) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=inter,
        vocab_size=target_cfg.vocab_size,
        max_position_embeddings=target_cfg.max_position_embeddings,
        rope_theta=getattr(target_cfg, "rope_theta", 10000.0),
        tie_word_embeddings=True,
        initializer_range=0.02,
        **mf._SPECIAL_TOKENS,
    )


def build_draft(cfg: LlamaConfig, target) -> LlamaForCausalLM:
    """Random layers; the tied embedding is the target's lm_head projected onto its top singular directions."""
    torch.manual_seed(DRAFT_SEED)
    draft = LlamaForCausalLM(cfg)
    with torch.no_grad():
        w = target.lm_head.weight.detach().double()
        _, _, vh = torch.linalg.svd(w, full_matrices=False)
        proj = w @ vh[: cfg.hidden_size].T              # [vocab, hidden]
        draft.lm_head.weight.copy_(proj.float())         # tied: also the input embedding
    return draft


@torch.no_grad()
def teacher_forced_agreement(draft, evalset) -> float:
    was_training = draft.training
    draft.eval()
    hit = tot = 0
    for seq, plen in evalset:
        pred = draft(input_ids=seq[:, :-1], use_cache=False).logits.argmax(-1)[:, plen - 1:]
        hit += (pred == seq[:, plen:]).sum().item()
        tot += pred.numel()
    draft.train(was_training)
    return hit / tot


@torch.no_grad()
def simulate_speculative(draft, evalset, k: int) -> dict:
    """Greedy speculative decoding of each held-out greedy path with K=k draft tokens per round."""
    draft.eval()
    accepted_lengths = []
    reached = np.zeros(k + 1)   # reached[j]: rounds where position j was proposed and j-1 accepted
    accepted = np.zeros(k + 1)  # accepted[j]: rounds where the first j proposals were all accepted
    offered = np.zeros(k + 1)   # offered[j]: rounds that proposed at least j tokens
    rounds_total = 0
    for seq, plen in evalset:
        n = seq.shape[1] - plen
        # proposals[i]: the draft's k greedy tokens after the context seq[:, :plen + i]
        proposals = torch.empty(seq.shape[0], n, k, dtype=torch.long)
        for i in range(n):
            ctx = seq[:, :plen + i]
            for j in range(k):
                tok = draft(input_ids=ctx, use_cache=False).logits[:, -1].argmax(-1)
                proposals[:, i, j] = tok
                ctx = torch.cat([ctx, tok[:, None]], 1)
        target = seq[:, plen:].numpy()
        proposals = proposals.numpy()
        for b in range(seq.shape[0]):
            i = 0
            while i < n:
                kk = min(k, n - i)   # never propose past the end of the 64-token path
                a = 0
                while a < kk and proposals[b, i, a] == target[b, i + a]:
                    a += 1
                for j in range(1, kk + 1):
                    offered[j] += 1
                    if j - 1 <= a:
                        reached[j] += 1
                    if j <= a:
                        accepted[j] += 1
                accepted_lengths.append(a)
                rounds_total += 1
                i += a + 1           # accepted prefix + the target's own token
    return {
        "k": k,
        "rounds": rounds_total,
        "mean_accepted": float(np.mean(accepted_lengths)),
        "tokens_per_target_call": float(np.mean(accepted_lengths)) + 1.0,
        # P(proposal j accepted | proposals < j accepted), and P(first j all accepted)
        "conditional": [accepted[j] / reached[j] for j in range(1, k + 1)],
        "cumulative": [accepted[j] / offered[j] for j in range(1, k + 1)],
    }


def train(draft, data, steps: int, batch: int, lr: float, evalset, log_every: int) -> list[dict]:
    gen = torch.Generator().manual_seed(TRAIN_SEED)
    ids, labels, mask = data["ids"], data["labels"].long(), data["mask"]
    n = ids.shape[0]
    opt = torch.optim.Adam(draft.parameters(), lr=lr)
    warmup = 100
    perm, pos = torch.randperm(n, generator=gen), 0
    curve, running, count = [], 0.0, 0
    draft.train()
    t0 = time.time()
    for step in range(1, steps + 1):
        # linear warmup, cosine decay to 5% of lr
        frac = step / steps
        cur = lr * min(1.0, step / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = cur
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + batch]
        pos += batch
        m = mask[idx]
        length = int(m.sum(1).max())
        x, y, m = ids[idx, :length], labels[idx, :length], m[:, :length]
        logits = draft(input_ids=x, use_cache=False).logits
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        loss = (ce * m.reshape(-1)).sum() / m.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
        opt.step()
        running += loss.item()
        count += 1
        if step % log_every == 0 or step == steps:
            point = {"step": step, "loss": running / count, "lr": cur,
                     "heldout_agreement": teacher_forced_agreement(draft, evalset),
                     "seconds": time.time() - t0}
            curve.append(point)
            running, count = 0.0, 0
            print(f"  step {step}: loss {point['loss']:.4f} held-out agreement "
                  f"{point['heldout_agreement']:.4f} ({point['seconds']:.0f}s)", flush=True)
    draft.eval()
    return curve


# --------------------------------------------------------------------------
# Export + check
# --------------------------------------------------------------------------

def export_and_check(draft, cfg: LlamaConfig, out_dir: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="draft-hf-") as tmp:
        draft.save_pretrained(tmp, safe_serialization=True)
        shutil.copyfile(Path(tmp) / "config.json", out_dir / "config.json")
        mf.export_with_past(Path(tmp), out_dir / "with_past")
    path = out_dir / "with_past" / "model.onnx"
    mf.assert_no_external_data(path)
    onnx.checker.check_model(str(path))

    arch = mf.Arch("draft", DRAFT_SEED, cfg)
    sess = mf.ort_session(path)
    prompt = np.random.default_rng(2024).integers(0, cfg.vocab_size, size=(1, 11), dtype=np.int64)
    pre = mf.run_session(sess, mf.prefill_feeds(arch, sess, prompt))
    token = int(pre["logits"][0, -1].argmax())
    dec = mf.run_session(sess, mf.decode_feeds(sess, token, prompt.shape[1], pre))
    full = np.concatenate([prompt, [[token]]], axis=1)
    ref = mf.torch_logits(draft, full)
    diffs = {
        "prefill (empty past) vs torch": mf.max_abs(pre["logits"], ref[:, :-1]),
        "cached decode step vs torch": mf.max_abs(dec["logits"][0, 0], ref[0, -1]),
    }
    for label, diff in diffs.items():
        mf.check_close(label, diff)
    info = mf.describe_onnx(path)
    return {"diffs": diffs, "onnx": info}


# --------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------

def readme(args, target_arch, target_params, cfg, draft_params, data_info, curve, agreement,
           spec, export, times, out_dir: Path) -> str:
    info = export["onnx"]
    c = cfg
    files = sorted(p for p in out_dir.rglob("*") if p.is_file() and p.name != "README.md")
    lines = [
        f"# {out_dir.name}: a distilled draft for the `{target_arch.name}` fixture",
        "",
        "Generated by `tools/distill_draft.py`; do not edit by hand (this file is",
        "written by the script). Regenerate from the repository root with:",
        "",
        "```sh",
        " ".join([COMMAND, *args.extra_args]),
        "```",
        "",
        f"Target: `graphs/fixtures/{target_arch.name}/` (rebuilt in PyTorch from",
        "tools/make_fixtures.py's config and seed, checked against its committed",
        f"nocache reference within {TOL}); {target_params:,} parameters.",
        "",
        "Draft: `LlamaForCausalLM`, same vocabulary and bos/eos/pad ids as the target,",
        f"hidden {c.hidden_size}, layers {c.num_hidden_layers}, heads {c.num_attention_heads},",
        f"kv heads {c.num_key_value_heads}, head_dim {c.hidden_size // c.num_attention_heads},",
        f"intermediate {c.intermediate_size}, vocab {c.vocab_size}, max positions",
        f"{c.max_position_embeddings}, tied embeddings; {draft_params:,} parameters",
        f"({100 * draft_params / target_params:.1f}% of the target).",
        "",
        "## Files",
        "",
        "```",
        f"graphs/drafts/{out_dir.name}/",
        "  config.json             Hugging Face config of the draft",
        "  with_past/model.onnx    optimum-onnx main_export, task text-generation-with-past",
        "                          (same export as the fixtures' with_past/model.onnx)",
        "  with_past/config.json   the config optimum wrote beside it",
        "```",
        "",
        "| file | bytes |",
        "| --- | --- |",
        *[f"| `{p.relative_to(out_dir)}` | {p.stat().st_size:,} |" for p in files],
        "",
        f"with_past/model.onnx: opset {info.opset}, {info.node_count} nodes, no external data.",
        "Inputs `" + "`, `".join(n for n, _, _ in info.inputs) + "`;",
        "outputs `" + "`, `".join(n for n, _, _ in info.outputs) + "`.",
        "",
        "onnxruntime (CPU, one thread) vs PyTorch, max abs logits difference: "
        + ", ".join(f"{k} {v:.1e}" for k, v in export["diffs"].items()) + ".",
        "",
        "## How it was made",
        "",
        f"- Data: {data_info['sequences']:,} target sequences, {data_info['positions']:,} labelled positions.",
        f"  Random prompts of {PROMPT_MIN}-{PROMPT_MAX} tokens continued by the target to",
        f"  {MIN_CONT}..{MAX_LEN} tokens in all: greedy (1/2 of sequences), temperature-1",
        "  sampling (1/4), or a per-token coin flip between the two (1/4). Labels: the",
        "  target's argmax at every position of the finished sequence.",
        "- Init: random layers (seed {0}); the tied embedding is the target's lm_head".format(DRAFT_SEED),
        "  projected onto its top singular directions.",
        f"- Training: Adam, lr {args.lr} (100 warmup steps, cosine to 5%), {args.steps:,} steps",
        f"  of {args.batch} sequences, cross-entropy on the target's greedy labels, grad-norm",
        "  clip 1.0, one CPU thread.",
        f"- Time (one CPU thread): data {times['data']:.0f} s, training {times['train']:.0f} s,",
        f"  evaluation {times['eval']:.0f} s, export {times['export']:.0f} s.",
        "",
        "Why hard labels rather than KL to the target's softmax: the random target is",
        "nearly uniform, so KL spends the draft's capacity on the tail; in equal-time",
        "trials hard labels gave the best greedy agreement (see the script's docstring).",
        "",
        "## Training curve",
        "",
        "Loss: mean training cross-entropy (nats) since the previous point; held-out:",
        "teacher-forced greedy agreement on the evaluation set below.",
        "",
        "| step | loss | held-out agreement |",
        "| --- | --- | --- |",
        *[f"| {p['step']} | {p['loss']:.4f} | {100 * p['heldout_agreement']:.2f}% |" for p in curve],
        "",
        "## Agreement with the target",
        "",
        f"{EVAL_PROMPTS} held-out random prompts ({PROMPT_MIN}-{PROMPT_MAX} tokens, seed {EVAL_SEED}); the",
        f"target decodes {EVAL_TOKENS} tokens greedily from each.",
        "",
        f"- Teacher-forced greedy agreement (draft argmax == target token given the",
        f"  target's context, over all {EVAL_PROMPTS * EVAL_TOKENS:,} positions): "
        f"**{100 * agreement:.2f}%** (chance: {100 / c.vocab_size:.2f}%).",
        "",
        "Simulated greedy speculative decoding: each round the draft proposes K tokens",
        "greedily, the longest prefix equal to the target's greedy tokens is accepted,",
        "and the target adds one token (a round never proposes past the 64th token).",
        "",
        "| K | rounds | mean accepted per round | tokens per target call | P(accept j-th \\| j-1 accepted), j=1..K | P(first j accepted), j=1..K |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in spec:
        lines.append(
            f"| {s['k']} | {s['rounds']:,} | {s['mean_accepted']:.4f} | {s['tokens_per_target_call']:.4f} "
            f"| {', '.join(f'{100 * v:.2f}%' for v in s['conditional'])} "
            f"| {', '.join(f'{100 * v:.2f}%' for v in s['cumulative'])} |")
    lines += [
        "",
        "## Why so low",
        "",
        "The fixtures are randomly initialised models (initializer_range 0.15) whose",
        "next token depends chaotically on the whole context: replacing one earlier",
        "token (1 to 63 places back) flips the target's argmax 27-39% of the time for",
        "qwen2 and 33-63% for llama. The qwen2 target's own first layer alone agrees",
        "with it only 17%; for llama, its first 1/2/3 of 4 layers agree 4%/12%/28%,",
        "and a 1-layer hidden-128 draft with 27% of llama's parameters reached only",
        "0.4% (the most-frequent-label baseline) in the same kind of training, which",
        "is why this draft targets qwen2 by default. (These comparison numbers were",
        "measured while developing the script; the rest of this file is measured by",
        "it on every run.)",
    ]
    return "\n".join(lines) + "\n"


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="qwen2", choices=[a.name for a in mf.all_archs()])
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--intermediate", type=int, default=128)
    parser.add_argument("--data-batches", type=int, default=320,
                        help=f"generation batches of {GEN_BATCH} sequences")
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--log-every", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default graphs/drafts/<target>-distilled)")
    args = parser.parse_args(argv)
    args.extra_args = argv

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    transformers.utils.logging.set_verbosity_error()
    out_dir = args.out or REPO_ROOT / "graphs" / "drafts" / f"{args.target}-distilled"

    times = {}
    target_arch, target = build_target(args.target)
    target_params = mf.count_parameters(target)

    t = time.time()
    print(f"generating {args.data_batches * GEN_BATCH} sequences ...", flush=True)
    data = make_data(target, target_arch.vocab_size, args.data_batches)
    evalset = make_eval(target, target_arch.vocab_size)
    times["data"] = time.time() - t
    data_info = {"sequences": int(data["ids"].shape[0]), "positions": int(data["mask"].sum())}
    print(f"  {data_info} in {times['data']:.0f}s", flush=True)

    cfg = draft_config(target.config, args.hidden, args.layers, args.heads, args.kv_heads, args.intermediate)
    draft = build_draft(cfg, target)
    draft_params = mf.count_parameters(draft)
    print(f"draft: {draft_params:,} parameters ({100 * draft_params / target_params:.1f}% of "
          f"the target's {target_params:,})", flush=True)

    t = time.time()
    curve = train(draft, data, args.steps, args.batch, args.lr, evalset, args.log_every)
    times["train"] = time.time() - t

    t = time.time()
    agreement = teacher_forced_agreement(draft, evalset)
    spec = [simulate_speculative(draft, evalset, k) for k in (3, 5)]
    times["eval"] = time.time() - t
    print(f"teacher-forced agreement {agreement:.4f}")
    for s in spec:
        print(f"K={s['k']}: mean accepted {s['mean_accepted']:.4f}, conditional "
              f"{[round(v, 4) for v in s['conditional']]}, cumulative {[round(v, 4) for v in s['cumulative']]}")

    t = time.time()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    export = export_and_check(draft, cfg, out_dir)
    times["export"] = time.time() - t

    (out_dir / "README.md").write_text(readme(args, target_arch, target_params, cfg, draft_params, data_info,
                                              curve, agreement, spec, export, times, out_dir))
    summary = {"target": args.target, "draft_params": draft_params, "target_params": target_params,
               "data": data_info, "curve": curve, "agreement": agreement, "spec": spec,
               "diffs": export["diffs"], "times": times, "opset": export["onnx"].opset}
    print(json.dumps(summary, indent=1))
    print(f"wrote {out_dir} ({dir_size(out_dir) / 1e6:.3f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
