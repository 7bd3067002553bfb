//! Lossless greedy speculation: for every fixture target and K in {1, 3, 5},
//! the speculative output equals the target-only greedy output token for
//! token over 64 new tokens and several prompts, with a draft that never
//! agrees, with the target as its own draft, and (for the llama target)
//! with a draft distilled from it. The oracle is the unmodified export run
//! with a growing cache on the interpreter (validated against onnxruntime
//! in tests/fixtures.rs), independent of the static-cache graphs.

mod common;
use common::*;
use specc::commands::compile::{CompileOptions, GenerationSources, compile_models};
use specc_artifact::Artifact;
use specc_exec::{Engine, GenerateOptions, Generation, Mode, Reference};
use specc_hlo::Target;
use specc_spec::{DecoderModel, SpecConfig};
use std::path::PathBuf;

const NEW_TOKENS: usize = 64;
const CAPACITY: usize = 96;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("specc-spec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Deterministic prompts of a few lengths (the fixture's own, 5 and 17).
fn prompts(arch: &str, vocab: i64) -> Vec<Vec<i64>> {
    let mut state = 0x2545F4914F6CDD1Du64 ^ arch.len() as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % vocab as u64) as i64
    };
    let short: Vec<i64> = (0..5).map(|_| next()).collect();
    let long: Vec<i64> = (0..17).map(|_| next()).collect();
    vec![greedy_prompt(arch), short, long]
}

fn compile(arch: &str, draft: Option<&DecoderModel>, k: usize, capacity: usize, tag: &str) -> Artifact {
    let target = decoder("target", &fixture(arch).join("with_past/model.onnx"));
    let out = tmp(&format!("{arch}-{tag}-k{k}"));
    let spec = SpecConfig { k, capacity, buckets: vec![16, 32] };
    let sources = GenerationSources { target: arch.into(), eos_token_ids: vec![1] };
    compile_models(
        &target,
        draft.map(|d| (d, tag)),
        &sources,
        &out,
        &CompileOptions { target: Target::Trn1, ..Default::default() },
        &spec,
    )
    .unwrap();
    Artifact::open(&out).unwrap()
}

fn generate(a: &Artifact, prompt: &[i64], mode: Mode, n: usize) -> Generation {
    let mut e = Engine::load(a, Reference::default()).unwrap();
    let o = GenerateOptions { max_new_tokens: n, mode, ignore_eos: true, eos: None, sampling: None };
    e.generate(prompt, &o, &mut |_| {}).unwrap()
}

fn oracle(arch: &str, prompt: &[i64], n: usize) -> Vec<i64> {
    let m = specc_onnx::import_file(&fixture(arch).join("with_past/model.onnx")).unwrap();
    greedy_decode_as_imported(&m, prompt, n)
}

#[test]
fn greedy_speculation_is_lossless_for_every_target_draft_and_k() {
    for arch in ARCHS {
        let path = fixture(arch).join("with_past/model.onnx");
        let vocab = decoder("target", &path).vocab as i64;
        let ps = prompts(arch, vocab);
        let want: Vec<Vec<i64>> = ps.iter().map(|p| oracle(arch, p, NEW_TOKENS)).collect();
        let drafts = [("self", decoder("draft", &path)), ("contrarian", contrarian(&path))];
        for k in [1, 3, 5] {
            for (tag, d) in &drafts {
                let a = compile(arch, Some(d), k, CAPACITY, tag);
                let mut accepted = (0, 0);
                for (p, w) in ps.iter().zip(&want) {
                    let g = generate(&a, p, Mode::Draft, NEW_TOKENS);
                    assert_eq!(&g.tokens, w, "{arch} K={k} draft={tag} prompt {p:?}");
                    accepted.0 += g.metrics.num_accepted_tokens;
                    accepted.1 += g.metrics.num_draft_tokens;
                    match *tag {
                        "contrarian" => {
                            assert_eq!(g.metrics.num_accepted_tokens, 0, "the contrarian draft never agrees")
                        }
                        _ => assert!(
                            g.metrics.num_accepted_tokens + g.metrics.num_drafts >= NEW_TOKENS as u64 - 1,
                            "the target as its own draft is accepted every time"
                        ),
                    }
                }
                eprintln!("{arch} K={k} draft={tag}: acceptance {}/{}", accepted.0, accepted.1);
            }
        }
        // Plain decoding and prompt lookup on the same artifact kind give the same tokens.
        let a = compile(arch, None, 3, CAPACITY, "none");
        for (p, w) in ps.iter().zip(&want) {
            assert_eq!(&generate(&a, p, Mode::Plain, NEW_TOKENS).tokens, w, "{arch} plain");
            assert_eq!(
                &generate(&a, p, Mode::PromptLookup { max_ngram: 3 }, NEW_TOKENS).tokens,
                w,
                "{arch} prompt lookup"
            );
        }
    }
}
