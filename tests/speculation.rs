//! Lossless greedy speculation: for every fixture target and K in {1, 3, 5},
//! the speculative output equals the target-only greedy output token for
//! token over 64 new tokens and several prompts, with a draft that never
//! agrees, with the target as its own draft, and (for the qwen2 target)
//! with a draft distilled from it by tools/distill_draft.py. The oracle is the unmodified export run
//! with a growing cache on the interpreter (validated against onnxruntime
//! in tests/fixtures.rs), independent of the static-cache graphs.

mod common;
use common::*;
use specc_artifact::Artifact;
use specc_driver::compile::{CompileOptions, GenerationSources, compile_models};
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

fn compile(arch: &str, draft: Option<&DecoderModel>, ks: &[usize], capacity: usize, tag: &str) -> Artifact {
    let target = decoder("target", &fixture(arch).join("with_past/model.onnx"));
    let out = tmp(&format!("{arch}-{tag}-k{ks:?}"));
    let spec =
        SpecConfig { ks: ks.to_vec(), capacity, buckets: [16, 32].into_iter().filter(|&b| b <= capacity).collect() };
    let sources = GenerationSources { target: arch.into(), eos_token_ids: vec![1], tokenizer: None, inputs: None };
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

fn generate(a: &Artifact, prompt: &[i64], mode: Mode, k: Option<usize>, n: usize) -> Generation {
    let mut e = Engine::load(a, Reference::default()).unwrap();
    let o = GenerateOptions { ignore_eos: true, k, ..GenerateOptions::greedy(n, mode) };
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
        let mut drafts = vec![("self", decoder("draft", &path)), ("contrarian", contrarian(&path))];
        if arch == "qwen2" {
            let distilled = repo().join("graphs/drafts/qwen2-distilled/with_past/model.onnx");
            drafts.push(("distilled", decoder("draft", &distilled)));
        }
        for (tag, d) in &drafts {
            // One artifact with round graphs for every K; the run picks K.
            let a = compile(arch, Some(d), &[1, 3, 5], CAPACITY, tag);
            for k in [1, 3, 5] {
                let mut accepted = (0, 0);
                for (p, w) in ps.iter().zip(&want) {
                    let g = generate(&a, p, Mode::Draft, Some(k), NEW_TOKENS);
                    assert_eq!(&g.tokens, w, "{arch} K={k} draft={tag} prompt {p:?}");
                    accepted.0 += g.metrics.num_accepted_tokens;
                    accepted.1 += g.metrics.num_draft_tokens;
                    match *tag {
                        "contrarian" => {
                            assert_eq!(g.metrics.num_accepted_tokens, 0, "the contrarian draft never agrees")
                        }
                        "distilled" => {}
                        _ => assert!(
                            g.metrics.num_accepted_tokens + g.metrics.num_drafts >= NEW_TOKENS as u64 - 1,
                            "the target as its own draft is accepted every time"
                        ),
                    }
                }
                eprintln!("{arch} K={k} draft={tag}: acceptance {}/{}", accepted.0, accepted.1);
            }
            // Adaptive K (among 1, 3, 5, or no speculation) stays lossless.
            // (Its choices depend on measured costs; the policy's decisions
            // are tested with given costs in specc-exec.)
            let mut e = Engine::load(&a, Reference::default()).unwrap();
            for (p, w) in ps.iter().zip(&want) {
                let o = GenerateOptions {
                    ignore_eos: true,
                    adaptive: true,
                    ..GenerateOptions::greedy(NEW_TOKENS, Mode::Draft)
                };
                let g = e.generate(p, &o, &mut |_| {}).unwrap();
                assert_eq!(&g.tokens, w, "{arch} adaptive draft={tag} prompt {p:?}");
            }
            let msg = e.generate(
                &ps[0],
                &GenerateOptions { k: Some(4), ..GenerateOptions::greedy(8, Mode::Draft) },
                &mut |_| {},
            );
            let msg = msg.unwrap_err().to_string();
            assert!(msg.contains("K=4 was not compiled") && msg.contains("[1, 3, 5]"), "{msg}");
        }
        // Plain decoding and prompt lookup on the same artifact kind give the same tokens.
        let a = compile(arch, None, &[3], CAPACITY, "none");
        for (p, w) in ps.iter().zip(&want) {
            assert_eq!(&generate(&a, p, Mode::Plain, None, NEW_TOKENS).tokens, w, "{arch} plain");
            assert_eq!(
                &generate(&a, p, Mode::PromptLookup { max_ngram: 3 }, None, NEW_TOKENS).tokens,
                w,
                "{arch} prompt lookup"
            );
        }
    }
}

fn compile_err(target: &str, draft: Option<&str>, spec: SpecConfig) -> String {
    let o = specc_driver::compile::GenerationOptions { draft: draft.map(PathBuf::from), spec, tokenizer: None };
    let out = tmp("err");
    let e =
        specc_driver::compile::compile_generation(std::path::Path::new(target), &out, &CompileOptions::default(), &o)
            .expect_err("must be refused");
    assert!(!out.exists(), "a refused compile leaves no artifact");
    e.to_string()
}

fn spec(k: usize, capacity: usize, buckets: Vec<usize>) -> SpecConfig {
    SpecConfig { ks: vec![k], capacity, buckets }
}

#[test]
fn mismatched_or_unusable_models_are_refused_clearly() {
    let llama = fixture("llama").join("with_past/model.onnx");
    let qwen2 = fixture("qwen2").join("with_past/model.onnx");
    let (l, q) = (llama.to_str().unwrap(), qwen2.to_str().unwrap());
    let e = compile_err(l, Some(q), spec(3, 64, vec![16]));
    assert!(e.contains("do not share a vocabulary") && e.contains("512") && e.contains("2048"), "{e}");

    // Same vocabulary size, different special tokens.
    let dir = tmp("eos");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&qwen2, dir.join("model.onnx")).unwrap();
    let cfg = std::fs::read_to_string(qwen2.parent().unwrap().join("config.json")).unwrap();
    std::fs::write(dir.join("config.json"), cfg.replace("\"eos_token_id\": 1", "\"eos_token_id\": 7")).unwrap();
    let e = compile_err(q, Some(dir.join("model.onnx").to_str().unwrap()), spec(3, 64, vec![16]));
    assert!(e.contains("eos_token_id is 1 in the target's config.json but 7 in the draft's"), "{e}");

    let e = compile_err(q, Some(q), spec(0, 64, vec![16]));
    assert!(e.contains("--num-speculative-tokens must be at least 1, got [0]"), "{e}");
    let e = compile_err(q, None, spec(3, 64, vec![16, 128]));
    assert!(e.contains("prompt bucket 128 must be in 1..=64"), "{e}");

    let gemma = repo().join("graphs/small/tiny-gemma/with_past/model.onnx");
    let e = compile_err(gemma.to_str().unwrap(), None, spec(3, 32, vec![8]));
    assert!(e.contains("has no `position_ids` input") && e.contains("fixed-capacity KV cache"), "{e}");
    let nocache = fixture("llama").join("nocache.onnx");
    let e = compile_err(nocache.to_str().unwrap(), None, spec(3, 32, vec![8]));
    assert!(e.contains("export it \"with past\""), "{e}");
}

#[test]
fn prompts_eos_and_a_full_cache_behave_as_a_user_expects() {
    let arch = "qwen2";
    let path = fixture(arch).join("with_past/model.onnx");
    let prompt = greedy_prompt(arch);
    let want = oracle(arch, &prompt, 64);
    let draft = decoder("draft", &path);
    let a = compile(arch, Some(&draft), &[5], 48, "edge");
    let mut e = Engine::load(&a, Reference::default()).unwrap();
    let greedy = |n| GenerateOptions { ignore_eos: true, ..GenerateOptions::greedy(n, Mode::Draft) };

    let err = |e: specc_exec::ExecError| e.to_string();
    assert!(err(e.generate(&[], &greedy(8), &mut |_| {}).unwrap_err()).contains("the prompt is empty"));
    let long: Vec<i64> = (0..33).map(|i| i % 500).collect();
    let msg = err(e.generate(&long, &greedy(8), &mut |_| {}).unwrap_err());
    assert!(msg.contains("the prompt has 33 tokens; the largest prompt bucket is 32"), "{msg}");
    let msg = err(e.generate(&[3, 999], &greedy(8), &mut |_| {}).unwrap_err());
    assert!(msg.contains("token id 999 at prompt position 1 is outside the vocabulary (0..512)"), "{msg}");
    let small = compile(arch, Some(&draft), &[5], 24, "edge-small");
    let mut e2 = Engine::load(&small, Reference::default()).unwrap();
    let big: Vec<i64> = (0..24).collect();
    let msg = err(e2.generate(&big, &greedy(8), &mut |_| {}).unwrap_err());
    assert!(msg.contains("the prompt has 24 tokens but the KV cache holds 24"), "{msg}");

    // An end token in the middle of an accepted run (the self-draft accepts
    // all 6 tokens of each round): generation stops right after it.
    let stop_at = (1..6).find(|&i| !want[..i].contains(&want[i])).expect("a fresh token inside the first round");
    let mut o = greedy(64);
    o.ignore_eos = false;
    o.eos = Some(vec![want[stop_at]]);
    let g = e.generate(&prompt, &o, &mut |_| {}).unwrap();
    assert_eq!((g.tokens.as_slice(), g.stop), (&want[..=stop_at], specc_exec::StopReason::Eos));

    // The cache fills mid-generation: a clean stop with every token right.
    // Positions 11..=48 hold generated tokens; the last is emitted unstored.
    let g = e.generate(&prompt, &greedy(64), &mut |_| {}).unwrap();
    assert_eq!(g.stop, specc_exec::StopReason::CacheFull);
    assert_eq!(g.tokens.len(), 48 - prompt.len() + 1);
    assert_eq!(g.tokens, want[..g.tokens.len()]);

    // No draft in the artifact: asking for draft speculation says so.
    let none = compile(arch, None, &[3], 48, "edge-none");
    let mut e3 = Engine::load(&none, Reference::default()).unwrap();
    let msg = err(e3.generate(&prompt, &greedy(8), &mut |_| {}).unwrap_err());
    assert!(msg.contains("no draft model"), "{msg}");
}

#[test]
fn the_cli_compiles_several_k_and_runs_any_of_them_losslessly() {
    let pair = repo().join("graphs/small");
    let (t, d) = (pair.join("tiny-target/with_past/model.onnx"), pair.join("tiny-draft/with_past/model.onnx"));
    let out = tmp("cli-ks");
    let (t, d, o) = (t.to_str().unwrap(), d.to_str().unwrap(), out.to_str().unwrap());
    let (ok, _, err) =
        specc(&["compile", t, "--draft", d, "--max-seq-len", "64", "-k", "1-3,5", "--target", "xla", "-o", o]);
    assert!(ok, "{err}");
    let tokens = |extra: &[&str]| {
        let mut args = vec!["run", o, "--prompt-ids", "5,9,2", "--max-new-tokens", "24", "--ignore-eos"];
        args.extend(["--output-format", "json"]);
        args.extend(extra);
        let (ok, stdout, err) = specc(&args);
        assert!(ok, "{extra:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        (v["tokens"].clone(), v["k"].clone())
    };
    let (plain, _) = tokens(&["--no-speculation"]);
    assert_eq!(plain.as_array().unwrap().len(), 24);
    for k in ["1", "2", "3", "5"] {
        assert_eq!(tokens(&["-k", k]), (plain.clone(), serde_json::json!(k.parse::<u64>().unwrap())), "K={k}");
    }
    assert_eq!(tokens(&[]).1, serde_json::json!(5), "the default K is the largest compiled");
    assert_eq!(tokens(&["--adaptive"]).0, plain);

    let (ok, _, err) = specc(&["run", o, "--prompt-ids", "5,9,2", "-k", "4"]);
    assert!(!ok && err.contains("K=4 was not compiled") && err.contains("[1, 2, 3, 5]"), "{err}");
    let (ok, _, err) = specc(&["compile", t, "--draft", d, "--max-seq-len", "64", "-k", "0", "-o", o]);
    assert!(!ok && err.contains("give K as a number") && !err.contains("panicked"), "{err}");
}
