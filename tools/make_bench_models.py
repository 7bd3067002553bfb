#!/usr/bin/env python3
"""Create the two benchmark ONNX models of tools/bench_compile.py (on demand).

Run from the repository root, with the fixtures venv (see
tools/requirements-fixtures.txt):

    .venv-fixtures/bin/python tools/make_bench_models.py

Options: `--only llama32` or `--only 8b` makes one model; `--force` remakes a
model that already exists (otherwise it is skipped); `--skip-shrunk-check`
skips the small structural/numeric check run before the 8B export.
Nothing is committed: everything goes under .cache/bench-models/ (git-ignored
through /.cache/). Offline: models are built from config objects,
HF_HUB_OFFLINE=1, one CPU thread.

What it makes:

* .cache/bench-models/llama32/model.onnx (+ config.json): a Llama with 32
  layers, hidden 64, 4 heads, 2 KV heads, intermediate 128, vocab 512, seeded
  random float32 weights (RMSNorm weights too: 1 + 0.1 * N(0, 1), so that,
  as in a trained checkpoint, no two initializers are equal and torch does not
  merge them), exported by optimum-onnx main_export with
  task="text-generation-with-past" (as tools/make_fixtures.py does) and
  re-saved as one self-contained file (weights inline).

* .cache/bench-models/llama100m/{target,draft}/ (`--only 100m`): the system-
  efficiency pair of `specc bench --synthetic-acceptance`: a Llama target of
  94M parameters (hidden 768, 14 layers, 12 heads, 4 KV heads, intermediate
  2048, vocab 4096) and a 3M draft (hidden 256, 2 layers), seeded random
  weights; each an HF checkpoint (for tools/hf_peer.py) beside its optimum
  export in with_past/, plus graphs/pair/tokenizer.json (same vocabulary).

* .cache/bench-models/llama3-8b-shape/model.onnx + model.onnx_data
  (+ config.json): the same optimum export for Llama-3-8B shapes (hidden
  4096, 32 heads, 8 KV heads, head_dim 128, intermediate 14336, vocab 128256,
  32 layers, rope_theta 500000, max positions 8192, untied embeddings),
  float32, WITHOUT weights: every weight initializer is ONNX external data
  (location/offset/length) in the one file model.onnx_data, a sparse file of
  the full size (about 30 GiB apparent, ~0 disk blocks; it reads as zeros).
  How, without 32 GiB of RAM or disk:
    - the HF model is built on the meta device, then every parameter is
      replaced by a float32 zero scalar expanded (stride 0) to its shape, so
      each "weight" has 4 bytes of storage; the rotary embedding (whose
      inv_freq ends up as a real constant in the graph) is rebuilt on the CPU
      with real values;
    - optimum's onnx_export_from_model runs the usual TorchScript export
      (tracing, constant folding of the weight Transposes, which stay stride-0
      views) on that model;
    - two torch.onnx internals are patched for the duration of the export:
      initializer de-duplication is done by storage pointer only (all-zero
      placeholders would otherwise be merged "by value"), and just before
      serialization every stride-0 placeholder in the initializer dict is
      swapped for a 1-element tensor while its real name/shape/dtype is
      recorded;
    - the written graph is then rewritten with the `onnx` package: each
      placeholder initializer gets its real dims and external-data fields at
      consecutive offsets of model.onnx_data, which is created with
      os.truncate (no byte of weight data is ever written).
  Real (non-weight) constants, such as the rotary inv_freq folded into a
  Constant node, keep their real values inline in model.onnx.
  Difference from exporting a randomly initialised HF model: torch de-
  duplicates equal initializers by value, so a random-init export shares one
  RMSNorm weight (all ones) across all norms; here, like a trained
  checkpoint, each norm keeps its own initializer.

  Before the 8B export, the same placeholder pipeline is run on a shrunk
  config (2 layers, hidden 64) next to a plain optimum export of a real model
  with that config (random norm weights, so nothing is de-duplicated): the two
  graphs must be node-for-node identical, the initializers must have the same
  names/dims, and onnxruntime must give identical outputs once the real
  weights are put into the placeholder graph.

Each model is written to a temporary folder next to its final place and
renamed into place at the end, so an interrupted run leaves no half model.
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
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import onnx
import torch
import transformers
from onnx import numpy_helper
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_ROOT = REPO_ROOT / ".cache" / "bench-models"
TASK = "text-generation-with-past"
DATA_NAME = "model.onnx_data"   # optimum's name for a model.onnx's external data
WEIGHT_SEED = 32

T0 = time.perf_counter()


def log(msg: str) -> None:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"[{time.perf_counter() - T0:7.1f}s, peak RSS {rss:6.0f} MiB] {msg}", flush=True)


# --------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------

def llama32_config() -> LlamaConfig:
    return LlamaConfig(
        hidden_size=64,
        num_hidden_layers=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=512,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def llama3_8b_config() -> LlamaConfig:
    """Meta-Llama-3-8B's config.json values (float32 here)."""
    return LlamaConfig(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        vocab_size=128256,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=False,
        bos_token_id=128000,
        eos_token_id=128001,
    )


def llama100m_configs() -> tuple[LlamaConfig, LlamaConfig]:
    """A ~100M-parameter Llama target and a ~3M draft sharing its vocabulary
    (4096, the size of graphs/pair's tokenizer, so text prompts encode)."""
    common = dict(vocab_size=4096, max_position_embeddings=1024, tie_word_embeddings=False,
                  bos_token_id=0, eos_token_id=0, pad_token_id=0)
    target = LlamaConfig(hidden_size=768, num_hidden_layers=14, num_attention_heads=12,
                         num_key_value_heads=4, intermediate_size=2048, **common)
    draft = LlamaConfig(hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=688, **common)
    return target, draft


def shrunk_config() -> LlamaConfig:
    """Small config for checking the placeholder pipeline against a real export."""
    return LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=512,
        max_position_embeddings=1024,
        rope_theta=500000.0,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------
# Plain optimum export (real weights)
# --------------------------------------------------------------------------

def random_model(config: LlamaConfig) -> LlamaForCausalLM:
    """Seeded random float32 weights, RMSNorm weights included.

    HF initialises every RMSNorm weight to ones; torch.onnx would then merge
    them all into one initializer (de-duplication by value) and add Identity
    nodes, which no trained checkpoint gives. Drawing them as 1 + 0.1 * N(0, 1)
    keeps one initializer per norm, like the 8B-shape model.
    """
    seed_everything(WEIGHT_SEED)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    return model


def plain_export(model: torch.nn.Module, out_dir: Path) -> None:
    """save_pretrained + optimum main_export, re-saved as one self-contained file."""
    from optimum.exporters.onnx import main_export

    with tempfile.TemporaryDirectory(prefix="bench-hf-") as hf_tmp, \
            tempfile.TemporaryDirectory(prefix="bench-onnx-") as onnx_tmp:
        model.save_pretrained(hf_tmp, safe_serialization=True)
        main_export(
            hf_tmp,
            output=onnx_tmp,
            task=TASK,
            library_name="transformers",
            framework="pt",
            device="cpu",
            local_files_only=True,
            do_validation=False,
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        proto = onnx.load(str(Path(onnx_tmp) / "model.onnx"))
        onnx.save_model(proto, str(out_dir / "model.onnx"), save_as_external_data=False)
        shutil.copyfile(Path(onnx_tmp) / "config.json", out_dir / "config.json")


def make_llama32(final_dir: Path) -> None:
    log("llama32: building the model (seeded random weights)")
    model = random_model(llama32_config())
    tmp_dir = staging_dir(final_dir)
    log("llama32: optimum main_export")
    plain_export(model, tmp_dir)
    path = tmp_dir / "model.onnx"
    onnx.checker.check_model(str(path))
    log("llama32: onnx.checker passed")
    publish(tmp_dir, final_dir)
    describe(final_dir / "model.onnx")


def make_llama100m(final_dir: Path) -> None:
    """target/ and draft/, each an HF checkpoint (config.json,
    model.safetensors: what tools/hf_peer.py loads) beside its optimum export
    (with_past/model.onnx: what specc compiles), plus the pair's tokenizer."""
    tmp_dir = staging_dir(final_dir)
    for role, config in zip(["target", "draft"], llama100m_configs()):
        log(f"llama100m: {role}: building ({llama_param_count(config) / 1e6:.1f}M parameters, seeded random weights)")
        model = random_model(config)
        model.save_pretrained(tmp_dir / role, safe_serialization=True)
        log(f"llama100m: {role}: optimum main_export")
        plain_export(model, tmp_dir / role / "with_past")
    tokenizer = REPO_ROOT / "graphs" / "pair" / "tokenizer.json"
    if tokenizer.is_file():
        shutil.copyfile(tokenizer, tmp_dir / "tokenizer.json")
    else:
        log("llama100m: graphs/pair/tokenizer.json is missing: text prompts will not encode")
    publish(tmp_dir, final_dir)
    describe(final_dir / "target" / "with_past" / "model.onnx")


# --------------------------------------------------------------------------
# Placeholder ("weightless") export
# --------------------------------------------------------------------------

def is_placeholder(t: torch.Tensor) -> bool:
    """A stride-0 zero weight (or a view of one): less storage than elements."""
    if t.numel() <= 1:
        return False
    return t.untyped_storage().nbytes() < t.numel() * t.element_size()


def zero_parameters(model: torch.nn.Module) -> None:
    """Replaces every parameter of a meta-device model by a 4-byte stride-0 zero."""
    model.eval()
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is None:
                continue
            zero = torch.zeros((), dtype=torch.float32).expand(param.shape)
            module._parameters[name] = torch.nn.Parameter(zero, requires_grad=False)


def check_off_meta(model: torch.nn.Module) -> None:
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_meta:
            raise RuntimeError(f"{name} is still on the meta device")


def placeholder_model(config: LlamaConfig) -> LlamaForCausalLM:
    """The HF model with 4-byte stride-0 zero weights and a real rotary embedding."""
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    zero_parameters(model)
    # inv_freq (a non-persistent buffer) becomes a real constant of the graph:
    # rebuild the rotary embedding on the CPU so it holds real values.
    model.model.rotary_emb = LlamaRotaryEmbedding(config=config)
    check_off_meta(model)
    return model


class PlaceholderRecorder:
    """Patches torch.onnx (TorchScript exporter) internals during one export.

    * `_jit_pass_onnx_deduplicate_initializers` is called with is_train=True,
      which de-duplicates by storage pointer only (tied weights), never by
      value: all-zero placeholders must not be merged.
    * Its result is the dict `_export_onnx` serializes: every placeholder in
      it is recorded (name -> shape, dtype) and replaced by a 1-element tensor.
    """

    def __init__(self) -> None:
        self.placeholders: dict[str, tuple[list[int], torch.dtype]] = {}
        self.real: dict[str, list[int]] = {}

    @contextlib.contextmanager
    def active(self):
        original = torch._C._jit_pass_onnx_deduplicate_initializers

        def patched(graph, params_dict, is_train):
            params = original(graph, params_dict, True)
            out = {}
            for name, t in params.items():
                if is_placeholder(t):
                    self.placeholders[name] = (list(t.shape), t.dtype)
                    out[name] = torch.zeros(1, dtype=t.dtype)
                else:
                    if t.numel() * t.element_size() > (1 << 20):
                        raise RuntimeError(
                            f"initializer {name} {list(t.shape)} was materialized by the exporter"
                        )
                    self.real[name] = list(t.shape)
                    out[name] = t
            return out

        torch._C._jit_pass_onnx_deduplicate_initializers = patched
        try:
            yield self
        finally:
            torch._C._jit_pass_onnx_deduplicate_initializers = original


def placeholder_export(config: LlamaConfig, work_dir: Path, build=None) -> tuple[Path, PlaceholderRecorder]:
    """optimum export of the placeholder model (`build(config)`, default
    `placeholder_model`); returns (model.onnx, recorder).

    The model.onnx written here still holds 1-element stand-ins for the weights.
    """
    from optimum.exporters.onnx import onnx_export_from_model

    from optimum.exporters.onnx.base import OnnxConfig

    model = (build or placeholder_model)(config)
    model.config.use_cache = True   # as main_export does for *-with-past
    recorder = PlaceholderRecorder()
    # optimum opens the fresh export in onnxruntime to "fix dynamic axes"; with
    # 1-element stand-ins that would only infer nonsense shapes (a real 8B
    # model would not fit in memory anyway). It changes nothing for Llama: the
    # shrunk check compares the graph inputs/outputs with a plain export.
    no_fix = mock.patch.object(OnnxConfig, "fix_dynamic_axes", lambda self, *a, **k: None)
    with recorder.active(), no_fix:
        onnx_export_from_model(
            model=model,
            output=work_dir,
            task=TASK,
            device="cpu",
            do_validation=False,
        )
    path = work_dir / "model.onnx"
    for side in work_dir.iterdir():
        if side.name.startswith("model.onnx") and side.name != "model.onnx":
            raise RuntimeError(f"unexpected external data file {side}")
    return path, recorder


def externalize(src: Path, recorder: PlaceholderRecorder, dst_dir: Path) -> dict:
    """Rewrite the stand-ins as external data in one sparse file; returns stats."""
    proto = onnx.load(str(src), load_external_data=False)
    offset = 0
    external = inline = 0
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise RuntimeError(f"{init.name}: unexpected external data")
        rec = recorder.placeholders.get(init.name)
        if rec is None:
            inline += 1
            continue
        shape, dtype = rec
        if list(init.dims) != [1]:
            raise RuntimeError(f"{init.name}: expected the 1-element stand-in, got {list(init.dims)}")
        length = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
        init.ClearField("raw_data")
        init.ClearField("float_data")
        del init.dims[:]
        init.dims.extend(shape)
        del init.external_data[:]
        for key, value in (("location", DATA_NAME), ("offset", str(offset)), ("length", str(length))):
            entry = init.external_data.add()
            entry.key = key
            entry.value = value
        init.data_location = onnx.TensorProto.EXTERNAL
        offset += length
        external += 1
    missing = set(recorder.placeholders) - {i.name for i in proto.graph.initializer}
    if missing:
        raise RuntimeError(f"recorded placeholders not in the graph: {sorted(missing)[:5]}")
    dst_dir.mkdir(parents=True, exist_ok=True)
    (dst_dir / "model.onnx").write_bytes(proto.SerializeToString())
    data = dst_dir / DATA_NAME
    with open(data, "wb") as f:
        f.truncate(offset)  # sparse: reads as zeros, no blocks allocated
    return {"external_initializers": external, "inline_initializers": inline, "data_bytes": offset}


def make_8b(final_dir: Path, shrunk_check: bool) -> None:
    if shrunk_check:
        check_shrunk()
    config = llama3_8b_config()
    tmp_dir = staging_dir(final_dir)
    with tempfile.TemporaryDirectory(prefix="bench-8b-", dir=OUT_ROOT) as work:
        log("8b: placeholder export (meta model, stride-0 zero weights)")
        src, recorder = placeholder_export(config, Path(work))
        log(f"8b: export done, {len(recorder.placeholders)} placeholder initializers, "
            f"{len(recorder.real)} real ones")
        stats = externalize(src, recorder, tmp_dir)
        shutil.copyfile(Path(work) / "config.json", tmp_dir / "config.json")
    expected = sum(
        int(np.prod(s, dtype=np.int64)) * 4 for s, _ in recorder.placeholders.values()
    )
    n_params = llama_param_count(config)
    log(f"8b: external data {stats['data_bytes']:,} bytes; parameters x 4 = {n_params * 4:,}")
    if stats["data_bytes"] != expected or expected != n_params * 4:
        raise RuntimeError("external data size does not match the parameter count")
    onnx.checker.check_model(str(tmp_dir / "model.onnx"))
    log("8b: onnx.checker (path-based, external data not loaded) passed")
    publish(tmp_dir, final_dir)
    describe(final_dir / "model.onnx")


def llama_param_count(c: LlamaConfig) -> int:
    h, i, v = c.hidden_size, c.intermediate_size, c.vocab_size
    kv = c.num_key_value_heads * (h // c.num_attention_heads)
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h
    return c.num_hidden_layers * per_layer + 2 * v * h + h


# --------------------------------------------------------------------------
# Shrunk check: placeholder pipeline vs. a plain export of real weights
# --------------------------------------------------------------------------

def node_signature(node: onnx.NodeProto) -> tuple:
    return (node.op_type, node.domain, tuple(node.input), tuple(node.output),
            tuple(a.SerializeToString() for a in node.attribute))


def check_shrunk() -> None:
    import onnxruntime as ort

    log("shrunk check: plain export vs placeholder export (2 layers, hidden 64)")
    config = shrunk_config()
    model = random_model(config)
    with tempfile.TemporaryDirectory(prefix="bench-shrunk-") as tmp:
        tmp = Path(tmp)
        plain_export(model, tmp / "plain")
        src, recorder = placeholder_export(shrunk_config(), tmp / "work")
        externalize(src, recorder, tmp / "ph")
        plain = onnx.load(str(tmp / "plain" / "model.onnx"))
        ph = onnx.load(str(tmp / "ph" / "model.onnx"), load_external_data=False)
        if [node_signature(n) for n in plain.graph.node] != [node_signature(n) for n in ph.graph.node]:
            raise RuntimeError("shrunk check: node lists differ")
        for field in ("input", "output"):
            a = [v.SerializeToString() for v in getattr(plain.graph, field)]
            b = [v.SerializeToString() for v in getattr(ph.graph, field)]
            if a != b:
                raise RuntimeError(f"shrunk check: graph {field}s differ")
        if plain.opset_import != ph.opset_import:
            raise RuntimeError("shrunk check: opsets differ")
        real = {i.name: i for i in plain.graph.initializer}
        if [i.name for i in plain.graph.initializer] != [i.name for i in ph.graph.initializer]:
            raise RuntimeError("shrunk check: initializer names differ")
        for init in ph.graph.initializer:
            ref = real[init.name]
            if list(init.dims) != list(ref.dims) or init.data_type != ref.data_type:
                raise RuntimeError(f"shrunk check: {init.name} dims/dtype differ")
            if init.data_location == onnx.TensorProto.EXTERNAL:
                init.CopyFrom(ref)   # put the real weights in
            elif numpy_helper.to_array(init).tobytes() != numpy_helper.to_array(ref).tobytes():
                raise RuntimeError(f"shrunk check: inline {init.name} differs")
        n_ext = len(recorder.placeholders)
        # Same inputs through both graphs: prefill with an empty past, then a
        # decode step on the presents.
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess_a = ort.InferenceSession(plain.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        sess_b = ort.InferenceSession(ph.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        kv, hd = config.num_key_value_heads, config.hidden_size // config.num_attention_heads
        rng = np.random.default_rng(0)
        p = 9
        feeds = {
            "input_ids": rng.integers(0, config.vocab_size, (1, p), dtype=np.int64),
            "attention_mask": np.ones((1, p), dtype=np.int64),
            "position_ids": np.arange(p, dtype=np.int64)[None],
        }
        for i in range(config.num_hidden_layers):
            for kind in ("key", "value"):
                feeds[f"past_key_values.{i}.{kind}"] = np.zeros((1, kv, 0, hd), dtype=np.float32)
        names = [o.name for o in sess_a.get_outputs()]
        out_a = dict(zip(names, sess_a.run(names, feeds)))
        out_b = dict(zip(names, sess_b.run(names, feeds)))
        step = {
            "input_ids": np.array([[int(out_a["logits"][0, -1].argmax())]], dtype=np.int64),
            "attention_mask": np.ones((1, p + 1), dtype=np.int64),
            "position_ids": np.array([[p]], dtype=np.int64),
        }
        for n in names[1:]:
            step[n.replace("present.", "past_key_values.", 1)] = out_a[n]
        dec_a = sess_a.run(["logits"], step)[0]
        dec_b = sess_b.run(["logits"], step)[0]
        diff = max(float(np.abs(out_a[n] - out_b[n]).max()) for n in names)
        diff = max(diff, float(np.abs(dec_a - dec_b).max()))
        # Also compare with PyTorch, to be sure the plain export is sane.
        with torch.no_grad():
            ref = model(torch.from_numpy(feeds["input_ids"])).logits.numpy()
        torch_diff = float(np.abs(ref - out_a["logits"]).max())
        if diff != 0.0 or torch_diff > 1e-4:
            raise RuntimeError(f"shrunk check: outputs differ (ort {diff}, torch {torch_diff})")
    log(f"shrunk check passed: {len(ph.graph.node)} identical nodes, {n_ext} external "
        f"initializers with the same names/dims; ORT outputs identical (max diff {diff}), "
        f"ORT vs torch {torch_diff:.1e}")


# --------------------------------------------------------------------------
# Files and reports
# --------------------------------------------------------------------------

def staging_dir(final_dir: Path) -> Path:
    tmp = final_dir.parent / (final_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp_dir: Path, final_dir: Path) -> None:
    if final_dir.exists():
        shutil.rmtree(final_dir)
    tmp_dir.rename(final_dir)


def disk_kib(path: Path) -> int:
    out = subprocess.run(["du", "-k", str(path)], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def value_info(v: onnx.ValueInfoProto) -> str:
    t = v.type.tensor_type
    dims = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in t.shape.dim]
    return f"{v.name} {onnx.TensorProto.DataType.Name(t.elem_type)} [{', '.join(map(str, dims))}]"


def describe(path: Path) -> None:
    proto = onnx.load(str(path), load_external_data=False)
    hist = collections.Counter(n.op_type for n in proto.graph.node)
    inits = list(proto.graph.initializer)
    total = 0
    n_ext = 0
    for init in inits:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            n_ext += 1
            total += int(next(e.value for e in init.external_data if e.key == "length"))
        else:
            total += numpy_helper.to_array(init).nbytes
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    lines = [
        f"== {path.relative_to(REPO_ROOT)}",
        f"opset {opset}, ir_version {proto.ir_version}",
        f"nodes: {len(proto.graph.node)}",
        "ops: " + ", ".join(f"{k} {v}" for k, v in hist.most_common()),
        f"initializers: {len(inits)} ({n_ext} external), {total:,} bytes "
        f"({total / 2**30:.2f} GiB)",
    ]
    for f in sorted(path.parent.iterdir()):
        lines.append(f"file {f.name}: apparent {f.stat().st_size:,} bytes, on disk {disk_kib(f):,} KiB")
    lines.append("inputs:")
    lines += [f"  {value_info(v)}" for v in proto.graph.input]
    lines.append("outputs:")
    lines += [f"  {value_info(v)}" for v in proto.graph.output]
    print("\n".join(lines), flush=True)
    summary = {
        "opset": opset,
        "nodes": len(proto.graph.node),
        "op_histogram": dict(hist.most_common()),
        "initializers": len(inits),
        "external_initializers": n_ext,
        "initializer_bytes": total,
        "files": {f.name: {"apparent_bytes": f.stat().st_size, "disk_kib": disk_kib(f)}
                  for f in sorted(path.parent.iterdir()) if f.name != "summary.json"},
        "inputs": [value_info(v) for v in proto.graph.input],
        "outputs": [value_info(v) for v in proto.graph.output],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "onnx": onnx.__version__},
    }
    (path.parent / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def exists(final_dir: Path, external: bool) -> bool:
    if (final_dir / "target").is_dir():
        return (final_dir / "draft" / "with_past" / "model.onnx").is_file()
    if not (final_dir / "model.onnx").is_file():
        return False
    return not external or (final_dir / DATA_NAME).is_file()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["llama32", "8b", "100m"], help="make only this model")
    parser.add_argument("--force", action="store_true", help="remake models that already exist")
    parser.add_argument("--skip-shrunk-check", action="store_true",
                        help="skip the small check of the placeholder pipeline before the 8B export")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    transformers.utils.logging.set_verbosity_error()
    OUT_ROOT.mkdir(parents=True, exist_ok=True)

    jobs = [
        ("llama32", OUT_ROOT / "llama32", False, make_llama32),
        ("100m", OUT_ROOT / "llama100m", False, make_llama100m),
        ("8b", OUT_ROOT / "llama3-8b-shape", True,
         lambda d: make_8b(d, shrunk_check=not args.skip_shrunk_check)),
    ]
    for key, final_dir, external, make in jobs:
        if args.only and args.only != key:
            continue
        if exists(final_dir, external) and not args.force:
            log(f"{key}: {final_dir.relative_to(REPO_ROOT)} exists, skipped (--force remakes it)")
            continue
        start = time.perf_counter()
        make(final_dir)
        log(f"{key}: done in {time.perf_counter() - start:.1f}s -> {final_dir.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
