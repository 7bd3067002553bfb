#!/usr/bin/env python3
"""Generate the ONNX decoder-LLM fixtures under graphs/fixtures/.

Regenerate everything (from the repository root):

    python3 -m venv .venv-fixtures
    .venv-fixtures/bin/pip install -r tools/requirements-fixtures.txt
    .venv-fixtures/bin/python tools/make_fixtures.py

What it makes, and why each choice:

* Four tiny, randomly initialised Hugging Face causal LMs (Llama, Qwen2,
  GPT2, Mistral).  They are built from config objects with fixed seeds and
  HF_HUB_OFFLINE=1, so nothing is downloaded and a re-run gives the same
  weights.  Llama is the "largest fixture" (GQA, untied embeddings, about
  2/3 of the bytes); the others are smaller to keep the committed files
  small (every ONNX file holds its float32 weights inline).
* A larger-than-default initializer_range makes the logits spread out, so
  the greedy path has clear top-1/top-2 gaps and is not flipped by the
  rounding differences between runtimes.  A prompt seed is accepted only if
  the smallest gap on its 24-token greedy path is >= MIN_GAP; otherwise the
  next seed is tried (deterministically) and the one used is recorded.
* Two exports per model, because those are the two shapes real exports take:
  - nocache.onnx: torch.onnx.export(dynamo=False, opset 17) of a wrapper
    returning only logits (input_ids, attention_mask -> logits).
  - with_past/model.onnx: optimum-onnx main_export with
    task="text-generation-with-past" (its default opset), i.e. the graph with
    past_key_values.* inputs and present.* outputs.
  Both are single-file ONNX (no external data), re-saved as one file if an
  exporter ever wrote external data.
* transformers 4.57 builds attention masks with torch.vmap, which the
  TorchScript tracer cannot follow; during the nocache export a vmap-free
  mask builder is registered (optimum patches its own export the same way).
* reference/: onnxruntime (CPUExecutionProvider, one thread) inputs and
  outputs, saved with safetensors.numpy under the exact ONNX tensor names,
  so a consumer can feed *.in.safetensors and compare with *.out.safetensors.
  The prefill step uses an EMPTY past (past length 0); zero-size tensors are
  checked to round-trip through safetensors.
* Checks on every run: onnxruntime logits match PyTorch within TOL, the
  nocache logits equal the prefill logits within TOL, and onnxruntime's
  greedy tokens equal PyTorch's.
* graphs/fixtures/README.md is written by this script from the measured
  values (sizes, parameter counts, opsets, op-type histograms, min_gap), so
  it cannot drift from the files.

Everything runs on one CPU thread: it keeps the machine usable for others
and makes floating-point results reproducible run to run.
"""

from __future__ import annotations

import os

# Must be set before torch / transformers / huggingface_hub are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import collections
import contextlib
import dataclasses
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers
from safetensors.numpy import load_file, save_file
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    Qwen2Config,
    masking_utils,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "graphs" / "fixtures"

PROMPT_LEN = 11          # P: tokens in the prompt
GREEDY_STEPS = 24        # tokens generated on the greedy path
MIN_GAP = 1e-3           # smallest acceptable top1 - top2 logit gap
TOL = 1e-4               # max abs logit difference accepted between runtimes
NOCACHE_OPSET = 17
PROMPT_SEED_BASE = 1000  # first prompt seed tried; later ones are +1, +2, ...
PROMPT_SEED_TRIES = 50
INIT_STD = 0.15          # initializer_range of every fixture

REGEN_COMMAND = (
    "python3 -m venv .venv-fixtures && "
    ".venv-fixtures/bin/pip install -r tools/requirements-fixtures.txt && "
    ".venv-fixtures/bin/python tools/make_fixtures.py"
)


# --------------------------------------------------------------------------
# Model definitions
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Arch:
    """One fixture: its name, weight seed and HF config."""

    name: str
    weight_seed: int
    config: PretrainedConfig

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    @property
    def num_kv_heads(self) -> int:
        cfg = self.config
        return getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads

    @property
    def head_dim(self) -> int:
        cfg = self.config
        return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size


# Token ids 0/1 keep bos/eos/pad inside the small vocabularies (GPT2's default
# 50256 would not be).
_SPECIAL_TOKENS = dict(bos_token_id=0, eos_token_id=1, pad_token_id=1)


def llama_config() -> LlamaConfig:
    return LlamaConfig(
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=384,
        vocab_size=2048,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        initializer_range=INIT_STD,
        **_SPECIAL_TOKENS,
    )


def qwen2_config() -> Qwen2Config:
    return Qwen2Config(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=512,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        use_sliding_window=False,
        initializer_range=INIT_STD,
        **_SPECIAL_TOKENS,
    )


def gpt2_config() -> GPT2Config:
    # GPT2 has no GQA (kv heads == heads) and always ties lm_head to wte.
    return GPT2Config(
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_inner=256,
        vocab_size=512,
        n_positions=256,
        initializer_range=INIT_STD,
        **_SPECIAL_TOKENS,
    )


def mistral_config() -> MistralConfig:
    # sliding_window=None: the window must not change attention at any
    # position the fixtures (or a consumer, up to 256) use.
    return MistralConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        vocab_size=512,
        max_position_embeddings=256,
        sliding_window=None,
        tie_word_embeddings=False,
        initializer_range=INIT_STD,
        **_SPECIAL_TOKENS,
    )


def all_archs() -> list[Arch]:
    return [
        Arch("llama", 1, llama_config()),
        Arch("qwen2", 2, qwen2_config()),
        Arch("gpt2", 3, gpt2_config()),
        Arch("mistral", 4, mistral_config()),
    ]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(arch: Arch) -> torch.nn.Module:
    """Random float32 weights, drawn after seeding so they are reproducible."""
    seed_everything(arch.weight_seed)
    model = AutoModelForCausalLM.from_config(arch.config, dtype=torch.float32)
    return model.eval()


def count_parameters(model: torch.nn.Module) -> int:
    # parameters() yields a tied tensor once.
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------

class LogitsOnly(torch.nn.Module):
    """Wraps a causal LM so the traced graph has exactly one output."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.logits


def broadcast_bool_mask(
    batch_size: int,
    cache_position: torch.Tensor,
    kv_length: int,
    kv_offset: int = 0,
    mask_function=masking_utils.causal_mask_function,
    attention_mask: torch.Tensor | None = None,
    **_ignored,
) -> torch.Tensor:
    """Boolean [batch, 1, q, kv] attention mask without torch.vmap.

    transformers 4.57 builds masks by vmapping `mask_function` over index
    ranges, which the TorchScript tracer behind torch.onnx.export(dynamo=False)
    cannot follow ("unordered_map::at").  The mask functions are plain
    elementwise comparisons and indexing, so evaluating them once on
    broadcastable index grids gives the same mask and traces into ordinary
    ONNX ops.  It never returns None: the causal structure must be in the
    graph, not in a trace-time `is_causal` shortcut.
    """
    device = cache_position.device
    if attention_mask is not None:
        padding = masking_utils.prepare_padding_mask(attention_mask, kv_length, kv_offset, _slice=False)
        mask_function = masking_utils.and_masks(mask_function, masking_utils.padding_mask_function(padding))
    batch_idx = torch.arange(batch_size, device=device).view(-1, 1, 1, 1)
    head_idx = torch.zeros(1, dtype=torch.long, device=device).view(1, 1, 1, 1)
    q_idx = cache_position.view(1, 1, -1, 1)
    kv_idx = (torch.arange(kv_length, device=device) + kv_offset).view(1, 1, 1, -1)
    mask = mask_function(batch_idx, head_idx, q_idx, kv_idx)
    return mask.expand(batch_size, 1, cache_position.shape[0], kv_length)


def broadcast_float_mask(*args, dtype: torch.dtype = torch.float32, **kwargs) -> torch.Tensor:
    """The eager-attention flavour: 0 where attended, dtype's min elsewhere."""
    mask = broadcast_bool_mask(*args, **kwargs)
    return torch.where(mask, torch.tensor(0.0, dtype=dtype), torch.finfo(dtype).min)


@contextlib.contextmanager
def traceable_masks():
    """Temporarily use the vmap-free mask builders for sdpa and eager attention."""
    registry = masking_utils.ALL_MASK_ATTENTION_FUNCTIONS
    saved = {name: registry[name] for name in ("sdpa", "eager")}
    registry.register("sdpa", broadcast_bool_mask)
    registry.register("eager", broadcast_float_mask)
    try:
        yield
    finally:
        for name, fn in saved.items():
            registry.register(name, fn)


def export_nocache(model: torch.nn.Module, vocab_size: int, path: Path) -> None:
    # Trace with batch 2 / seq 7 so neither dim is specialised as 1.
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (2, 7), generator=gen, dtype=torch.int64)
    mask = torch.ones_like(ids)
    dyn = {0: "batch_size", 1: "sequence_length"}
    # The exporter restores the wrapper's training flag afterwards, and
    # Module.train() recurses: a wrapper left in training mode would switch
    # GPT2's dropout on for every later PyTorch comparison.
    wrapper = LogitsOnly(model).eval()
    with torch.no_grad(), traceable_masks():
        torch.onnx.export(
            wrapper,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "logits": dyn},
            opset_version=NOCACHE_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    make_single_file(path)


def save_hf_model(model: torch.nn.Module, model_dir: Path) -> None:
    """The Hugging Face folder optimum reads; its config.json is committed as is."""
    model.save_pretrained(model_dir, safe_serialization=True)


def export_with_past(model_dir: Path, out_dir: Path) -> None:
    """optimum-onnx export of a saved model; keeps model.onnx + config.json."""
    # Deferred import: optimum is only needed for this step.
    from optimum.exporters.onnx import main_export

    with tempfile.TemporaryDirectory(prefix="fixture-onnx-") as tmp:
        export_dir = Path(tmp)
        main_export(
            str(model_dir),
            output=str(export_dir),
            task="text-generation-with-past",
            library_name="transformers",
            framework="pt",
            device="cpu",
            local_files_only=True,
            do_validation=False,  # validated more strictly by verify()
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        # onnx.load pulls in external data if the exporter wrote any; saving
        # without it gives the single self-contained file.
        proto = onnx.load(str(export_dir / "model.onnx"))
        onnx.save_model(proto, str(out_dir / "model.onnx"), save_as_external_data=False)
        shutil.copyfile(export_dir / "config.json", out_dir / "config.json")


def make_single_file(path: Path) -> None:
    """Fold any external-data side files back into the .onnx file."""
    proto = onnx.load(str(path))
    for side in path.parent.iterdir():
        if side != path and side.name.startswith(path.name):
            side.unlink()
    onnx.save_model(proto, str(path), save_as_external_data=False)


def assert_no_external_data(path: Path) -> None:
    proto = onnx.load(str(path), load_external_data=False)
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise RuntimeError(f"{path}: initializer {init.name} uses external data")


# --------------------------------------------------------------------------
# onnxruntime helpers
# --------------------------------------------------------------------------

def ort_session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_session(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def past_names(sess: ort.InferenceSession) -> list[str]:
    return [i.name for i in sess.get_inputs() if i.name.startswith("past_key_values.")]


def present_to_past(name: str) -> str:
    return name.replace("present.", "past_key_values.", 1)


def prefill_feeds(arch: Arch, sess: ort.InferenceSession, prompt: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs of the with-past model for the prompt with an empty cache."""
    batch, length = prompt.shape
    feeds = {
        "input_ids": prompt,
        "attention_mask": np.ones((batch, length), dtype=np.int64),
    }
    if has_input(sess, "position_ids"):
        feeds["position_ids"] = np.arange(length, dtype=np.int64)[None, :].repeat(batch, 0)
    empty = np.zeros((batch, arch.num_kv_heads, 0, arch.head_dim), dtype=np.float32)
    for name in past_names(sess):
        feeds[name] = empty
    return ordered_like_inputs(sess, feeds)


def decode_feeds(
    sess: ort.InferenceSession,
    token: int,
    past_len: int,
    presents: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Inputs for one cached step: `token` at position `past_len`."""
    feeds = {
        "input_ids": np.array([[token]], dtype=np.int64),
        "attention_mask": np.ones((1, past_len + 1), dtype=np.int64),
    }
    if has_input(sess, "position_ids"):
        feeds["position_ids"] = np.array([[past_len]], dtype=np.int64)
    for name, value in presents.items():
        if name.startswith("present."):
            feeds[present_to_past(name)] = value
    return ordered_like_inputs(sess, feeds)


def has_input(sess: ort.InferenceSession, name: str) -> bool:
    return any(i.name == name for i in sess.get_inputs())


def ordered_like_inputs(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Same keys, in the graph's input order; fails on a missing or extra one."""
    names = [i.name for i in sess.get_inputs()]
    if set(names) != set(feeds):
        raise RuntimeError(f"feeds {sorted(feeds)} != graph inputs {sorted(names)}")
    return {n: feeds[n] for n in names}


def top_gap(logits_row: np.ndarray) -> tuple[int, float]:
    """Argmax and the top1 - top2 gap of one logits vector."""
    order = np.argsort(logits_row, kind="stable")
    top1, top2 = order[-1], order[-2]
    return int(top1), float(logits_row[top1] - logits_row[top2])


@dataclasses.dataclass
class GreedyRun:
    tokens: np.ndarray           # [GREEDY_STEPS] int64
    min_gap: float
    step_logits: np.ndarray      # [GREEDY_STEPS, vocab]: logits that chose each token
    prefill_in: dict[str, np.ndarray]
    prefill_out: dict[str, np.ndarray]
    decode_in: dict[str, np.ndarray]
    decode_out: dict[str, np.ndarray]


def greedy_ort(arch: Arch, sess: ort.InferenceSession, prompt: np.ndarray) -> GreedyRun:
    """Greedy decoding with a growing cache; step 0 is the prefill."""
    feeds = prefill_feeds(arch, sess, prompt)
    outs = run_session(sess, feeds)
    prefill_in, prefill_out = feeds, outs
    decode_in = decode_out = None
    tokens, gaps, step_logits = [], [], []
    past_len = prompt.shape[1]
    for step in range(GREEDY_STEPS):
        last = outs["logits"][0, -1]
        token, gap = top_gap(last)
        tokens.append(token)
        gaps.append(gap)
        step_logits.append(last)
        if step == GREEDY_STEPS - 1:
            break
        feeds = decode_feeds(sess, token, past_len, outs)
        outs = run_session(sess, feeds)
        past_len += 1
        if step == 0:
            decode_in, decode_out = feeds, outs
    return GreedyRun(
        tokens=np.array(tokens, dtype=np.int64),
        min_gap=float(min(gaps)),
        step_logits=np.stack(step_logits),
        prefill_in=prefill_in,
        prefill_out=prefill_out,
        decode_in=decode_in,
        decode_out=decode_out,
    )


def make_prompt(seed: int, vocab_size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab_size, size=(1, PROMPT_LEN), dtype=np.int64)


def choose_prompt(arch: Arch, sess: ort.InferenceSession) -> tuple[int, np.ndarray, GreedyRun]:
    """First prompt seed whose greedy path has min gap >= MIN_GAP."""
    for seed in range(PROMPT_SEED_BASE, PROMPT_SEED_BASE + PROMPT_SEED_TRIES):
        prompt = make_prompt(seed, arch.vocab_size)
        run = greedy_ort(arch, sess, prompt)
        if run.min_gap >= MIN_GAP:
            return seed, prompt, run
        print(f"  prompt seed {seed}: min_gap {run.min_gap:.2e} < {MIN_GAP}, trying next")
    raise RuntimeError(f"{arch.name}: no prompt seed gave min_gap >= {MIN_GAP}")


# --------------------------------------------------------------------------
# Checks against PyTorch
# --------------------------------------------------------------------------

def torch_logits(model: torch.nn.Module, ids: np.ndarray) -> np.ndarray:
    if model.training:
        raise RuntimeError("model is in training mode; dropout would randomise the reference")
    with torch.no_grad():
        t = torch.from_numpy(ids)
        out = model(input_ids=t, attention_mask=torch.ones_like(t), use_cache=False)
    return out.logits.numpy()


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise RuntimeError(f"shape mismatch {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def check_close(label: str, diff: float) -> float:
    print(f"  {label}: max abs diff {diff:.3e}")
    if not diff <= TOL:
        raise RuntimeError(f"{label}: max abs diff {diff} > {TOL}")
    return diff


def verify(arch: Arch, model, prompt, nocache_logits, run: GreedyRun) -> dict[str, float]:
    """ORT vs torch on every logits the fixtures contain, plus token equality."""
    full = np.concatenate([prompt, run.tokens[None, :]], axis=1)
    ref = torch_logits(model, full[:, :-1])          # [1, P + steps - 1, vocab]
    prompt_ref = ref[:, :PROMPT_LEN]
    diffs = {
        "nocache vs torch": max_abs(nocache_logits, prompt_ref),
        "prefill vs torch": max_abs(run.prefill_out["logits"], prompt_ref),
        "decode vs torch": max_abs(run.decode_out["logits"][0, 0], ref[0, PROMPT_LEN]),
        "greedy path vs torch": max_abs(run.step_logits, ref[0, PROMPT_LEN - 1:]),
        "nocache vs prefill": max_abs(nocache_logits, run.prefill_out["logits"]),
    }
    for label, diff in diffs.items():
        check_close(label, diff)
    torch_tokens = ref[0, PROMPT_LEN - 1:].argmax(-1)
    if not np.array_equal(torch_tokens, run.tokens):
        raise RuntimeError(f"{arch.name}: torch greedy tokens differ from onnxruntime's")
    return diffs


# --------------------------------------------------------------------------
# Writing references
# --------------------------------------------------------------------------

def save_tensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """save_file, then prove it reads back identically (zero-size included)."""
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    save_file(tensors, str(path))
    back = load_file(str(path))
    if set(back) != set(tensors):
        raise RuntimeError(f"{path}: names changed on round trip")
    for name, value in tensors.items():
        got = back[name]
        if got.shape != value.shape or got.dtype != value.dtype or not np.array_equal(got, value):
            raise RuntimeError(f"{path}: {name} did not round-trip")


def write_references(ref_dir: Path, prompt, prompt_seed, nocache_in, nocache_out, run: GreedyRun) -> None:
    ref_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(ref_dir / "nocache.in.safetensors", nocache_in)
    save_tensors(ref_dir / "nocache.out.safetensors", nocache_out)
    save_tensors(ref_dir / "prefill.in.safetensors", run.prefill_in)
    save_tensors(ref_dir / "prefill.out.safetensors", run.prefill_out)
    save_tensors(ref_dir / "decode.in.safetensors", run.decode_in)
    save_tensors(ref_dir / "decode.out.safetensors", run.decode_out)
    save_tensors(ref_dir / "greedy.safetensors", {
        "prompt_ids": prompt,
        "tokens": run.tokens,
        "min_gap": np.array([run.min_gap], dtype=np.float32),
        "prompt_seed": np.array([prompt_seed], dtype=np.int64),
    })


# --------------------------------------------------------------------------
# Describing the ONNX files
# --------------------------------------------------------------------------

@dataclasses.dataclass
class OnnxInfo:
    opset: int
    size_bytes: int
    node_count: int
    op_histogram: dict[str, int]
    inputs: list[tuple[str, str, list]]
    outputs: list[tuple[str, str, list]]


def describe_onnx(path: Path) -> OnnxInfo:
    proto = onnx.load(str(path))
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    hist = collections.Counter()
    for node in iter_nodes(proto.graph):
        domain = node.domain if node.domain not in ("", "ai.onnx") else ""
        hist[f"{domain}::{node.op_type}" if domain else node.op_type] += 1
    return OnnxInfo(
        opset=opset,
        size_bytes=path.stat().st_size,
        node_count=sum(hist.values()),
        op_histogram=dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
        inputs=[value_info(v) for v in proto.graph.input],
        outputs=[value_info(v) for v in proto.graph.output],
    )


def iter_nodes(graph: onnx.GraphProto):
    """All nodes, including those of subgraphs (If/Loop bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attr.g)
            for sub in attr.graphs:
                yield from iter_nodes(sub)


def value_info(v: onnx.ValueInfoProto) -> tuple[str, str, list]:
    t = v.type.tensor_type
    dims = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in t.shape.dim]
    return v.name, onnx.TensorProto.DataType.Name(t.elem_type), dims


# --------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------

@dataclasses.dataclass
class FixtureResult:
    arch: Arch
    params: int
    attn_impl: str
    prompt_seed: int
    run: GreedyRun
    diffs: dict[str, float]
    nocache: OnnxInfo
    with_past: OnnxInfo

    def min_gap_str(self) -> str:
        return f"{self.run.min_gap:.4g}"


def fmt_shape(dims: list) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def io_table(info: OnnxInfo) -> list[str]:
    lines = ["| | name | type | shape |", "| --- | --- | --- | --- |"]
    for kind, items in (("in", info.inputs), ("out", info.outputs)):
        for name, dtype, dims in items:
            lines.append(f"| {kind} | `{name}` | {dtype} | {fmt_shape(dims)} |")
    return lines


def config_summary(arch: Arch) -> str:
    c = arch.config
    inter = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None)
    max_pos = getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None)
    tied = getattr(c, "tie_word_embeddings", False)
    return (
        f"hidden {c.hidden_size}, layers {arch.num_layers}, heads {c.num_attention_heads}, "
        f"kv heads {arch.num_kv_heads}, head_dim {arch.head_dim}, intermediate {inter}, "
        f"vocab {arch.vocab_size}, max positions {max_pos}, "
        f"{'tied' if tied else 'untied'} embeddings"
    )


def readme_text(results: list[FixtureResult], total_bytes: int) -> str:
    out = [
        "# ONNX decoder-LLM fixtures",
        "",
        "Generated by `tools/make_fixtures.py`; do not edit by hand (this file",
        "is written by the script too). Regenerate everything from the",
        "repository root with:",
        "",
        "```sh",
        REGEN_COMMAND.replace(" && ", " &&\n"),
        "```",
        "",
        "Versions are pinned in `tools/requirements-fixtures.txt`"
        f" (torch {torch.__version__}, transformers {transformers.__version__},",
        f"onnx {onnx.__version__}, onnxruntime {ort.__version__}). Models are built",
        "from config objects with fixed seeds (no download, HF_HUB_OFFLINE=1),",
        f"initializer_range {INIT_STD}; everything runs on one CPU thread.",
        "",
        "## Layout",
        "",
        "```",
        "graphs/fixtures/<arch>/",
        "  config.json                 Hugging Face config of the model",
        f"  nocache.onnx                torch.onnx.export(dynamo=False, opset {NOCACHE_OPSET}):",
        "                              input_ids, attention_mask -> logits",
        "  with_past/model.onnx        optimum-onnx main_export, task text-generation-with-past",
        "  with_past/config.json       the config optimum wrote beside it",
        "  reference/                  onnxruntime (CPU) inputs/outputs, safetensors,",
        "                              tensor names = ONNX input/output names",
        "    nocache.in/.out           the prompt through nocache.onnx",
        "    prefill.in/.out           the prompt through with_past/model.onnx, EMPTY past",
        "                              ([1, kv_heads, 0, head_dim]), position_ids 0..P-1",
        "    decode.in/.out            one cached step: the greedy token at position P,",
        "                              attention_mask ones [1, P+1], past = prefill presents",
        "    greedy.safetensors        prompt_ids [1,P] int64, tokens [24] int64 (greedy path",
        "                              of with_past/model.onnx with a growing cache; token 0",
        "                              comes from the prefill), min_gap [1] f32 (smallest",
        "                              top1-top2 logit gap on that path), prompt_seed [1] i64",
        "```",
        "",
        f"Prompt length P = {PROMPT_LEN}, drawn with `numpy.random.default_rng(prompt_seed)`",
        f"from the vocabulary. Seeds are tried from {PROMPT_SEED_BASE} upward until the",
        f"greedy path has min_gap >= {MIN_GAP}. Every run checks that onnxruntime's",
        f"logits match PyTorch's within {TOL} (nocache, prefill, decode and every",
        "step of the greedy path), that nocache and prefill logits agree, and that",
        "PyTorch's greedy tokens are the same. No file uses ONNX external data.",
        "",
        f"Total size of the fixture files besides this README: {total_bytes / 1e6:.2f} MB.",
        "",
        "## Notes",
        "",
        "- Feed inputs by name: GPT2's with_past export orders its inputs",
        "  `input_ids, past_key_values.*, attention_mask, position_ids`, the",
        "  others `input_ids, attention_mask, position_ids, past_key_values.*`.",
        "- The prefill reference feeds zero-size past tensors",
        "  `[1, kv_heads, 0, head_dim]`; they round-trip through safetensors.",
        "- transformers 4.57 builds attention masks with `torch.vmap`, which the",
        "  TorchScript tracer behind `torch.onnx.export(dynamo=False)` cannot",
        "  follow. For nocache.onnx the script registers a vmap-free mask builder",
        "  (the same mask functions evaluated on broadcast index grids); optimum",
        "  patches the mask the same way for its own export. The causal/padding",
        "  mask is always computed inside the graph from `attention_mask`.",
        "- GPT2 ties lm_head to wte; the exporters store the lm_head as a separate",
        "  (transposed) initializer, so its weights appear twice in each file.",
        "- `nocache vs prefill` is exactly 0 for every fixture: both graphs do",
        "  the same float operations for a prompt with an empty past.",
        "",
        "## Summary",
        "",
        "| arch | parameters | attention | nocache.onnx | with_past/model.onnx | prompt seed | min_gap | max ORT-vs-torch diff |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        worst = max(v for k, v in r.diffs.items() if "torch" in k)
        out.append(
            f"| {r.arch.name} | {r.params:,} | {r.attn_impl} "
            f"| opset {r.nocache.opset}, {r.nocache.size_bytes / 1e6:.2f} MB, {r.nocache.node_count} nodes "
            f"| opset {r.with_past.opset}, {r.with_past.size_bytes / 1e6:.2f} MB, {r.with_past.node_count} nodes "
            f"| {r.prompt_seed} | {r.min_gap_str()} | {worst:.1e} |"
        )
    for r in results:
        out += arch_section(r)
    out += op_union_section(results)
    return "\n".join(out) + "\n"


def arch_section(r: FixtureResult) -> list[str]:
    lines = [
        "",
        f"## {r.arch.name}",
        "",
        f"{config_summary(r.arch)}; {r.params:,} parameters.",
        f"Greedy tokens: `{' '.join(str(t) for t in r.run.tokens)}`.",
        "",
        "Max abs differences: " + ", ".join(f"{k} {v:.1e}" for k, v in r.diffs.items()) + ".",
        "",
        f"### nocache.onnx (opset {r.nocache.opset})",
        "",
        *io_table(r.nocache),
        "",
        "Op types: " + histogram_str(r.nocache.op_histogram),
        "",
        f"### with_past/model.onnx (opset {r.with_past.opset})",
        "",
        *io_table(r.with_past),
        "",
        "Op types: " + histogram_str(r.with_past.op_histogram),
    ]
    return lines


def histogram_str(hist: dict[str, int]) -> str:
    return ", ".join(f"{op} {n}" for op, n in hist.items()) + "."


def op_union_section(results: list[FixtureResult]) -> list[str]:
    union = collections.Counter()
    for r in results:
        for info in (r.nocache, r.with_past):
            union.update(info.op_histogram)
    ops = sorted(union)
    return [
        "",
        f"## Op types over all {2 * len(results)} files ({len(ops)})",
        "",
        ", ".join(ops) + ".",
    ]


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

def make_fixture(arch: Arch, out_root: Path) -> FixtureResult:
    print(f"[{arch.name}]")
    model = build_model(arch)
    arch_dir = out_root / arch.name
    if arch_dir.exists():
        shutil.rmtree(arch_dir)
    arch_dir.mkdir(parents=True)

    nocache_path = arch_dir / "nocache.onnx"
    with_past_path = arch_dir / "with_past" / "model.onnx"
    with tempfile.TemporaryDirectory(prefix="fixture-hf-") as tmp:
        save_hf_model(model, Path(tmp))
        shutil.copyfile(Path(tmp) / "config.json", arch_dir / "config.json")
        export_with_past(Path(tmp), with_past_path.parent)
    export_nocache(model, arch.vocab_size, nocache_path)
    for path in (nocache_path, with_past_path):
        assert_no_external_data(path)
        onnx.checker.check_model(str(path))

    with_past = ort_session(with_past_path)
    prompt_seed, prompt, run = choose_prompt(arch, with_past)
    print(f"  prompt seed {prompt_seed}, min_gap {run.min_gap:.4g}")

    nocache_in = {"input_ids": prompt, "attention_mask": np.ones_like(prompt)}
    nocache_out = run_session(ort_session(nocache_path), nocache_in)
    diffs = verify(arch, model, prompt, nocache_out["logits"], run)

    write_references(arch_dir / "reference", prompt, prompt_seed, nocache_in, nocache_out, run)
    return FixtureResult(
        arch=arch,
        params=count_parameters(model),
        attn_impl=str(getattr(model.config, "_attn_implementation", "?")),
        prompt_seed=prompt_seed,
        run=run,
        diffs=diffs,
        nocache=describe_onnx(nocache_path),
        with_past=describe_onnx(with_past_path),
    )


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output folder (default: graphs/fixtures)")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    transformers.utils.logging.set_verbosity_error()

    args.out.mkdir(parents=True, exist_ok=True)
    results = [make_fixture(arch, args.out) for arch in all_archs()]
    readme = args.out / "README.md"
    readme.unlink(missing_ok=True)
    readme.write_text(readme_text(results, dir_size(args.out)))
    print(f"wrote {args.out} ({dir_size(args.out) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
