#!/usr/bin/env python3
"""Write graphs/small/tiny-{target,draft}/: the smallest Llama-architecture
pair exported "with past" by optimum, for snapshot tests of the fused
speculation graph (tests/snapshots.rs) where a readable HLO text matters.

Reuses tools/make_fixtures.py's model building and export. Regenerate with:

    .venv-fixtures/bin/python tools/make_tiny_pair.py
    .venv-fixtures/bin/python tools/make_tiny_pair.py --gemma   # tiny-gemma (no position_ids)
"""

import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402
from transformers import LlamaConfig  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent.parent / "graphs" / "small"


def config(hidden: int, intermediate: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=32,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        initializer_range=mf.INIT_STD,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def main() -> None:
    for name, cfg, seed in [("tiny-target", config(16, 32), 11), ("tiny-draft", config(8, 16), 12)]:
        arch = mf.Arch(name, seed, cfg)
        model = mf.build_model(arch)
        with tempfile.TemporaryDirectory() as tmp:
            mf.save_hf_model(model, pathlib.Path(tmp))
            mf.export_with_past(pathlib.Path(tmp), OUT / name / "with_past")
        print("wrote", OUT / name / "with_past" / "model.onnx")


if __name__ == "__main__" and "--gemma" not in sys.argv:
    main()


def gemma() -> None:
    """A tiny Gemma "with past" export: optimum gives it no position_ids
    input (positions come from the past length), which a fixed-capacity
    cache cannot serve; specc must refuse it clearly."""
    from transformers import GemmaConfig

    cfg = GemmaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=64, initializer_range=mf.INIT_STD,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )
    model = mf.build_model(mf.Arch("tiny-gemma", 13, cfg))
    with tempfile.TemporaryDirectory() as tmp:
        mf.save_hf_model(model, pathlib.Path(tmp))
        mf.export_with_past(pathlib.Path(tmp), OUT / "tiny-gemma" / "with_past")
    print("wrote", OUT / "tiny-gemma" / "with_past" / "model.onnx")


if __name__ == "__main__" and "--gemma" in sys.argv:
    gemma()
