#!/usr/bin/env python3
"""Shape-only ONNX exports of the models AWS published Trainium numbers for.

Run from the repository root, with the fixtures venv (see
tools/requirements-fixtures.txt):

    .venv-fixtures/bin/python tools/make_shape_exports.py [--only NAME ...] [--force]

Writes .cache/shape-exports/<name>/{model.onnx, model.onnx_data, config.json}
(git-ignored through /.cache/) for:

  llama-3.1-405b   target of the NxD Inference speculative tutorial (trn2)
  llama-3.3-70b    target of the NxD Inference Llama-3.3-70B tutorial (trn2)
  llama-3.1-8b     the tensor-parallel study's tp 8 target (with llama-3.2-1b)
  llama-3.2-1b     the draft of both
  qwen3-32b        target of the NxDI SD tutorial and of AWS's 2026-04 blog
  qwen3-0.6b       the SD tutorial's draft
  qwen3-1.7b       the blog's draft

Each is the optimum "text-generation-with-past" export (what `specc compile
--max-seq-len` takes: the KV-cache contract of notes/onnx-exports.md) of a
Hugging Face model built from the published config.json values below (no
network, no model hub), WITHOUT weights: every weight initializer is ONNX
external data in one sparse file (model.onnx_data reads as zeros and takes
no disk blocks; 1.6 TB apparent for the 405B in f32). `specc compile
--weights none` (or `--weights link`) reads none of it. The pipeline is
tools/make_bench_models.py's placeholder export (meta-device model, every
parameter a stride-0 zero scalar, torch.onnx internals patched so nothing
is de-duplicated or materialized, initializers rewritten as external data
at their real sizes); that script checks, on a shrunk config, that it gives
node-for-node the same graph as a plain export with real weights.

Layers: exporting the full depth through torch would trace 126 layers of
16384-wide matmuls (torch materializes each stride-0 weight it multiplies:
hours of copies on this machine's 2 cores for the 405B). Instead each model
is exported through torch with 3 layers and its real widths, and the middle
layer's nodes are cloned with onnx to the real depth, renaming exactly what
the exporter names per layer: node and value names under
`/model/layers.{i}/`, initializers `model.layers.{i}.*` (and the exporter's
anonymous `onnx::MatMul_N` weights, given a per-layer suffix), the inputs
`past_key_values.{i}.*` and the outputs `present.{i}.*`. The first and last
layers stay as exported. Widths: torch also materializes every stride-0
weight it multiplies (the 405B's 3.5 GB MLP matrices and 8.4 GB lm_head
exhaust this machine's 23 GiB), so the trace uses a tiny MLP width and
vocabulary, which the graph only sees as weight dims and the logits' last
dim (the hidden size, heads and head dim, which reshape constants do depend
on, are traced at their real values); the external data and those dims get
the real sizes. `--check` compares this against a direct torch export of a
5-layer shrunk model at its real widths (same op histogram and interface,
identical onnxruntime outputs once the same weights are put in).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import transformers
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_bench_models as mbm  # noqa: E402  (the placeholder pipeline)

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_ROOT = REPO_ROOT / ".cache" / "shape-exports"
TRACED_LAYERS = 3
# The MLP width and the vocabulary are traced at these sizes and set to the
# real ones afterwards (they appear only as weight dims and the logits' last
# dim; see the module doc). Chosen to collide with no other dim.
TRACED_INTERMEDIATE = 52
TRACED_VOCAB = 76
T0 = time.perf_counter()


def log(msg: str) -> None:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"[{time.perf_counter() - T0:7.1f}s, peak RSS {rss:6.0f} MiB] {msg}", flush=True)


# --------------------------------------------------------------------------
# Published config.json values (Hugging Face model cards; float32 here:
# `specc compile --dtype bf16 --weights none` records them as bf16).
# --------------------------------------------------------------------------

LLAMA3_COMMON = dict(
    model_type="llama", vocab_size=128256, rope_theta=500000.0, rms_norm_eps=1e-5, hidden_act="silu",
    attention_bias=False, mlp_bias=False, max_position_embeddings=131072, bos_token_id=128000,
    eos_token_id=[128001, 128008, 128009],
)
QWEN3_COMMON = dict(
    model_type="qwen3", vocab_size=151936, rope_theta=1000000.0, rms_norm_eps=1e-6, hidden_act="silu",
    attention_bias=False, max_position_embeddings=40960, head_dim=128, bos_token_id=151643,
    eos_token_id=151645,
)

CONFIGS: dict[str, dict] = {
    # meta-llama/Llama-3.1-405B(-Instruct)
    "llama-3.1-405b": dict(
        LLAMA3_COMMON, hidden_size=16384, intermediate_size=53248, num_hidden_layers=126,
        num_attention_heads=128, num_key_value_heads=8, tie_word_embeddings=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192),
    ),
    # meta-llama/Llama-3.3-70B-Instruct
    "llama-3.3-70b": dict(
        LLAMA3_COMMON, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
        num_attention_heads=64, num_key_value_heads=8, tie_word_embeddings=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192),
    ),
    # meta-llama/Llama-3.1-8B(-Instruct)
    "llama-3.1-8b": dict(
        LLAMA3_COMMON, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192),
    ),
    # meta-llama/Llama-3.2-1B(-Instruct)
    "llama-3.2-1b": dict(
        LLAMA3_COMMON, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, tie_word_embeddings=True,
        rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192),
    ),
    # Qwen/Qwen3-32B
    "qwen3-32b": dict(
        QWEN3_COMMON, hidden_size=5120, intermediate_size=25600, num_hidden_layers=64,
        num_attention_heads=64, num_key_value_heads=8, tie_word_embeddings=False,
    ),
    # Qwen/Qwen3-0.6B
    "qwen3-0.6b": dict(
        QWEN3_COMMON, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, tie_word_embeddings=True,
    ),
    # Qwen/Qwen3-1.7B
    "qwen3-1.7b": dict(
        QWEN3_COMMON, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, tie_word_embeddings=True,
    ),
}


def make_config(values: dict, layers: int | None = None) -> transformers.PretrainedConfig:
    values = dict(values)
    model_type = values.pop("model_type")
    if layers is not None:
        values["num_hidden_layers"] = layers
    return transformers.AutoConfig.for_model(model_type, **values)


def param_count(c) -> int:
    """Parameters of a Llama/Qwen3 decoder, from its config."""
    h, i, v, L = c.hidden_size, c.intermediate_size, c.vocab_size, c.num_hidden_layers
    hd = getattr(c, "head_dim", None) or h // c.num_attention_heads
    q, kv = c.num_attention_heads * hd, c.num_key_value_heads * hd
    per_layer = h * q * 2 + h * kv * 2 + 3 * h * i + 2 * h
    if c.model_type == "qwen3":
        per_layer += 2 * hd  # q_norm, k_norm
    return L * per_layer + v * h * (1 if c.tie_word_embeddings else 2) + h


# --------------------------------------------------------------------------
# Placeholder export of any causal LM (make_bench_models' is Llama-only)
# --------------------------------------------------------------------------

def placeholder_model(config) -> torch.nn.Module:
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    mbm.zero_parameters(model)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    # The rotary inv_freq is a real constant of the graph: rebuild it on the CPU.
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config)
    mbm.check_off_meta(model)
    return model


def placeholder_export(config, work_dir: Path) -> tuple[Path, mbm.PlaceholderRecorder]:
    return mbm.placeholder_export(config, work_dir, build=placeholder_model)


# --------------------------------------------------------------------------
# Cloning the middle layer to the real depth
# --------------------------------------------------------------------------

def layer_of(name: str) -> int | None:
    m = re.match(r"^/model/layers\.(\d+)/", name)
    return int(m.group(1)) if m else None


def topological(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """The nodes in a dependency order, as stable as possible (ONNX wants one)."""
    produced_by = {o: i for i, n in enumerate(nodes) for o in n.output}
    deps = [{produced_by[x] for x in n.input if x in produced_by} for n in nodes]
    users: dict[int, list[int]] = {}
    for i, d in enumerate(deps):
        for j in d:
            users.setdefault(j, []).append(i)
    import heapq

    missing = [len(d) for d in deps]
    ready = [i for i, m in enumerate(missing) if m == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        i = heapq.heappop(ready)
        out.append(nodes[i])
        for u in users.get(i, []):
            missing[u] -= 1
            if missing[u] == 0:
                heapq.heappush(ready, u)
    if len(out) != len(nodes):
        raise RuntimeError("the cloned graph has a cycle")
    return out


def deepen(proto: onnx.ModelProto, layers: int, traced: int = TRACED_LAYERS) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The traced model with layer 1 cloned so that there are `layers` layers,
    and each cloned initializer's source name."""
    if layers <= traced:
        raise ValueError("nothing to clone")
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, set[int | None]] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, set()).add(layer_of(n.name))

    def own(i: int) -> list[onnx.NodeProto]:
        """Layer i's nodes, and the constants only it reads."""
        return [n for n in g.node if layer_of(n.name) == i or (
            layer_of(n.name) is None and not n.input and all(consumers.get(o) == {i} for o in n.output))]

    last = traced - 1
    new_last = layers - 1
    owned = {i: own(i) for i in range(traced)}
    produced = {i: {o for n in owned[i] for o in n.output} for i in range(traced)}
    own_inits = {i: {x for n in owned[i] for x in n.input if x in inits and consumers.get(x) == {i}}
                 for i in range(traced)}

    def reads(i: int, j: int) -> set[str]:
        return {x for n in owned[i] for x in n.input if x in produced[j]}

    residual_in = reads(1, 0) - reads(2, 0)
    residual_out = reads(2, 1)
    if len(residual_in) != 1 or len(residual_out) != 1:
        raise RuntimeError(f"cannot find the residual stream: layer 1 reads {sorted(residual_in)} of layer 0 "
                           f"that layer 2 does not; layer 2 reads {sorted(residual_out)} of layer 1")
    (residual_in,) = residual_in
    (residual_out,) = residual_out
    log(f"deepen: layer 1 has {len(owned[1])} nodes and {len(own_inits[1])} initializers of its own; "
        f"residual stream {residual_in} -> {residual_out}")
    sources: dict[str, str] = {}

    def renamer(src: int, dst: int):
        mine = produced[src] | own_inits[src]

        def rn(x: str) -> str:
            if x.startswith(f"past_key_values.{src}."):
                return f"past_key_values.{dst}." + x[len(f"past_key_values.{src}."):]
            if x not in mine:
                return x  # shared with other layers: rotary tables, the mask, ...
            y = x.replace(f"/model/layers.{src}/", f"/model/layers.{dst}/")
            y = y.replace(f"model.layers.{src}.", f"model.layers.{dst}.")
            if y.startswith(f"present.{src}."):
                y = f"present.{dst}." + y[len(f"present.{src}."):]
            return y if y != x else f"{x}__L{dst}"  # the exporter's anonymous names
        return rn

    def clone(src: int, dst: int, residual_from: str) -> tuple[list, list]:
        rn = renamer(src, dst)
        nodes = []
        for n in owned[src]:
            c = onnx.NodeProto()
            c.CopyFrom(n)
            c.name = (n.name.replace(f"/model/layers.{src}/", f"/model/layers.{dst}/", 1)
                      if layer_of(n.name) is not None else f"{n.name}__L{dst}")
            del c.input[:]
            c.input.extend([residual_from if x == (residual_in if src == 1 else residual_out) else rn(x)
                            for x in n.input])
            del c.output[:]
            c.output.extend([rn(x) for x in n.output])
            nodes.append(c)
        tensors = []
        for x in sorted(own_inits[src]):
            t = onnx.TensorProto()
            t.CopyFrom(inits[x])
            t.name = rn(x)
            sources[t.name] = x
            tensors.append(t)
        return nodes, tensors

    drop = {id(n) for n in owned[last]}
    nodes = [n for n in g.node if id(n) not in drop]
    initializers = [t for t in g.initializer if t.name not in own_inits[last]]
    prev = residual_out
    for j in range(2, new_last):
        cn, ct = clone(1, j, prev)
        nodes += cn
        initializers += ct
        prev = renamer(1, j)(residual_out)
    cn, ct = clone(last, new_last, prev)
    nodes += cn
    initializers += ct
    # Whatever read the last traced layer (the final norm) reads the new last.
    rn_last = renamer(last, new_last)
    for n in nodes:
        if layer_of(n.name) is None and any(x in produced[last] for x in n.input):
            ins = [rn_last(x) if x in produced[last] else x for x in n.input]
            del n.input[:]
            n.input.extend(ins)
    nodes = topological(nodes, set())

    def io(values, prefix: str) -> list:
        keep = [v for v in values if not v.name.startswith(prefix)]
        per_layer = {i: [v for v in values if v.name.startswith(f"{prefix}{i}.")] for i in range(traced)}
        out = keep + per_layer[0] + per_layer[1]
        for j, src in [(j, 1) for j in range(2, new_last)] + [(new_last, last)]:
            for v in per_layer[src]:
                c = onnx.ValueInfoProto()
                c.CopyFrom(v)
                c.name = f"{prefix}{j}." + v.name[len(f"{prefix}{src}."):]
                out.append(c)
        return out

    graph = onnx.helper.make_graph(nodes, g.name, io(list(g.input), "past_key_values."),
                                   io(list(g.output), "present."), initializer=initializers)
    model = onnx.helper.make_model(graph, opset_imports=list(proto.opset_import),
                                   producer_name=proto.producer_name, producer_version=proto.producer_version)
    model.ir_version = proto.ir_version
    return model, sources


# --------------------------------------------------------------------------
# Making one export
# --------------------------------------------------------------------------

def widen(proto: onnx.ModelProto, dims: dict[int, int]) -> None:
    """The traced MLP width and vocabulary set to the real ones wherever the
    graph states them as a fixed dim (graph outputs, value infos)."""
    for v in list(proto.graph.output) + list(proto.graph.value_info) + list(proto.graph.input):
        for d in v.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value in dims:
                d.dim_value = dims[d.dim_value]


def externalize(proto: onnx.ModelProto, placeholders: dict[str, tuple[list[int], torch.dtype]],
                sources: dict[str, str], dst_dir: Path | None, dims: dict[int, int]) -> int:
    """Every placeholder (cloned ones included) as external data in one
    sparse file, at its real size (`dims` maps traced sizes to real ones)."""
    offset = 0
    for init in proto.graph.initializer:
        rec = placeholders.get(sources.get(init.name, init.name))
        if rec is None:
            continue  # a real constant (the rotary inv_freq): keeps its value inline
        shape, dtype = rec
        shape = [dims.get(d, d) for d in shape]
        if list(init.dims) != [1]:
            raise RuntimeError(f"{init.name}: expected the 1-element stand-in, got {list(init.dims)}")
        length = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
        for f in ("raw_data", "float_data"):
            init.ClearField(f)
        del init.dims[:]
        init.dims.extend(shape)
        del init.external_data[:]
        for key, value in (("location", mbm.DATA_NAME), ("offset", str(offset)), ("length", str(length))):
            e = init.external_data.add()
            e.key, e.value = key, value
        init.data_location = onnx.TensorProto.EXTERNAL
        offset += length
    if dst_dir is None:
        return offset
    dst_dir.mkdir(parents=True, exist_ok=True)
    (dst_dir / "model.onnx").write_bytes(proto.SerializeToString())
    with open(dst_dir / mbm.DATA_NAME, "wb") as f:
        f.truncate(offset)  # sparse: reads as zeros, no blocks allocated
    return offset


def traced_export(config, work: Path) -> tuple[onnx.ModelProto, dict]:
    """The placeholder export as a proto (stand-ins still 1 element) and the
    recorded real shapes of its placeholders."""
    src, recorder = placeholder_export(config, work)
    return onnx.load(str(src), load_external_data=False), recorder.placeholders


def make(name: str, final_dir: Path) -> None:
    values = CONFIGS[name]
    config = make_config(values)
    layers = config.num_hidden_layers
    tmp_dir = mbm.staging_dir(final_dir)
    narrow = dict(values, intermediate_size=TRACED_INTERMEDIATE, vocab_size=TRACED_VOCAB)
    dims = {TRACED_INTERMEDIATE: config.intermediate_size, TRACED_VOCAB: config.vocab_size}
    with tempfile.TemporaryDirectory(prefix=f"shape-{name}-", dir=OUT_ROOT) as work:
        log(f"{name}: placeholder export of {TRACED_LAYERS} of {layers} layers (MLP width and vocabulary narrowed)")
        proto, placeholders = traced_export(make_config(narrow, TRACED_LAYERS), Path(work))
    log(f"{name}: traced, {len(proto.graph.node)} nodes; cloning layer 1 to {layers} layers")
    deep, sources = deepen(proto, layers)
    widen(deep, dims)
    data = externalize(deep, placeholders, sources, tmp_dir, dims)
    (tmp_dir / "config.json").write_text(config.to_json_string(use_diff=False))
    n = param_count(config)
    tied_extra = config.vocab_size * config.hidden_size * 4 if config.tie_word_embeddings else 0
    log(f"{name}: external data {data:,} bytes; parameters x 4 = {n * 4:,}"
        + (f" (+ {tied_extra:,}: the exporter's transposed copy of the tied embedding)" if tied_extra else ""))
    if not (n * 4 <= data <= n * 4 + tied_extra):
        raise RuntimeError(f"{name}: external data does not match the parameter count")
    onnx.checker.check_model(str(tmp_dir / "model.onnx"))
    mbm.publish(tmp_dir, final_dir)
    log(f"{name}: {len(deep.graph.node)} nodes -> {final_dir.relative_to(REPO_ROOT)}")


# --------------------------------------------------------------------------
# Check: cloned depth == traced depth
# --------------------------------------------------------------------------

def check() -> None:
    """A 5-layer shrunk Llama and Qwen3: deepen(3 traced layers) against a
    direct 5-layer trace: same node count and op histogram, same interface,
    and identical onnxruntime outputs with the same random weights."""
    import collections

    import onnxruntime as ort

    for family, values in (("llama", CONFIGS["llama-3.2-1b"]), ("qwen3", CONFIGS["qwen3-0.6b"])):
        small = dict(values, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                     head_dim=16, vocab_size=256, tie_word_embeddings=values["tie_word_embeddings"])
        with tempfile.TemporaryDirectory(prefix="shape-check-") as tmp:
            tmp = Path(tmp)
            full, ph_full = traced_export(make_config(small, 5), tmp / "full")
            narrow = dict(small, intermediate_size=TRACED_INTERMEDIATE, vocab_size=TRACED_VOCAB)
            three, ph_three = traced_export(make_config(narrow, TRACED_LAYERS), tmp / "three")
            dims = {TRACED_INTERMEDIATE: small["intermediate_size"], TRACED_VOCAB: small["vocab_size"]}
            deep, sources = deepen(three, 5)
            widen(deep, dims)
            ph_three = {k: ([dims.get(d, d) for d in shape], dt) for k, (shape, dt) in ph_three.items()}
            hist = lambda m: collections.Counter(n.op_type for n in m.graph.node)  # noqa: E731
            if hist(full) != hist(deep):
                raise RuntimeError(f"{family}: op histograms differ: {hist(full) - hist(deep)} / {hist(deep) - hist(full)}")
            sig = lambda vs: [(v.name, v.type.SerializeToString()) for v in vs]  # noqa: E731
            if sig(full.graph.input) != sig(deep.graph.input) or sig(full.graph.output) != sig(deep.graph.output):
                raise RuntimeError(f"{family}: graph inputs/outputs differ")
            # The same random weight for the same role in both: keyed by the
            # (node name, input slot) of its first consumer, names that the
            # cloning reproduces exactly.
            rng = np.random.default_rng(0)
            values_by_key: dict = {}

            def fill(m, placeholders, src):
                first: dict[str, tuple[str, int]] = {}
                for n in m.graph.node:
                    for k, x in enumerate(n.input):
                        first[x] = min(first.get(x, (n.name, k)), (n.name, k))
                for init in m.graph.initializer:
                    rec = placeholders.get(src.get(init.name, init.name))
                    if rec is None:
                        continue
                    key = first[init.name]
                    if key not in values_by_key:
                        scale = 1.0 if len(rec[0]) == 1 else 0.0  # norms near 1, matrices near 0
                        values_by_key[key] = (scale + 0.1 * rng.standard_normal(rec[0])).astype(np.float32)
                    init.CopyFrom(numpy_helper.from_array(values_by_key[key], init.name))

            fill(full, ph_full, {})
            fill(deep, ph_three, sources)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            p = 7
            feeds = {
                "input_ids": rng.integers(0, 256, (1, p), dtype=np.int64),
                "attention_mask": np.ones((1, p), dtype=np.int64),
                "position_ids": np.arange(p, dtype=np.int64)[None],
            }
            for i in range(5):
                for kind in ("key", "value"):
                    feeds[f"past_key_values.{i}.{kind}"] = np.zeros((1, 2, 0, 16), dtype=np.float32)
            outs = [ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, feeds)
                    for m in (full, deep)]
            diff = max(float(np.abs(a - b).max()) for a, b in zip(*outs))
            if diff != 0.0:
                raise RuntimeError(f"{family}: cloned and traced graphs differ by {diff}")
            log(f"check {family}: {len(deep.graph.node)} nodes in both, same op histogram and interface, "
                f"onnxruntime outputs identical (3 layers traced at MLP width {TRACED_INTERMEDIATE} and "
                f"vocabulary {TRACED_VOCAB}, cloned to 5 and widened to {small['intermediate_size']} and "
                f"{small['vocab_size']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="make only these")
    ap.add_argument("--force", action="store_true", help="remake exports that exist")
    ap.add_argument("--check", action="store_true", help="check the layer cloning first (shrunk models)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    transformers.utils.logging.set_verbosity_error()
    OUT_ROOT.mkdir(parents=True, exist_ok=True)
    if args.check:
        check()
    for name in args.only or list(CONFIGS):
        final_dir = OUT_ROOT / name
        if (final_dir / "model.onnx").is_file() and (final_dir / mbm.DATA_NAME).is_file() and not args.force:
            log(f"{name}: exists, skipped (--force remakes it)")
            continue
        start = time.perf_counter()
        make(name, final_dir)
        log(f"{name}: done in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
