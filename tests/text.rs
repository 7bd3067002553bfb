//! Text in, text out on the trained pair in graphs/pair (tools/train_pair.py):
//! `specc compile` finds and checks the tokenizer, `specc run --prompt`
//! encodes with it, and the speculative output equals the target-only greedy
//! decode of the unmodified export (the oracle, on the interpreter). Plus the
//! text-side bad input: tokenizers that do not match the model or the draft,
//! empty and too-long prompts, text prompts without a tokenizer, malformed
//! prompts files.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("specc-text-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn pair(role: &str) -> PathBuf {
    repo().join("graphs/pair").join(role).join("with_past/model.onnx")
}

fn compile_pair(out: &Path) {
    let (t, d) = (pair("target"), pair("draft"));
    let args = ["compile", s(&t), "--draft", s(&d), "--max-seq-len", "256", "-k", "1-4", "--prompt-buckets", "64,128"];
    let (ok, stdout, err) = specc(&[&args[..], &["--target", "xla", "-o", s(out)]].concat());
    assert!(ok, "{err}");
    assert!(stdout.contains("tokenizer") && stdout.contains("4096 tokens"), "{stdout}");
}

fn run_json(out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["run", s(out), "--max-new-tokens", "48", "--ignore-eos", "--output-format", "json"];
    args.extend(extra);
    let (ok, stdout, err) = specc(&args);
    assert!(ok, "{extra:?}: {err}");
    serde_json::from_str(&stdout).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

#[test]
fn text_prompts_on_the_trained_pair_are_lossless_and_the_draft_agrees_often() {
    let out = tmp("pair");
    compile_pair(&out);
    let (_, stdout, _) = specc(&[
        "compile",
        s(&pair("target")),
        "--draft",
        s(&pair("draft")),
        "--max-seq-len",
        "256",
        "-k",
        "1-4",
        "--prompt-buckets",
        "64,128",
        "--target",
        "xla",
        "-o",
        s(&out),
    ]);
    assert!(stdout.contains("up to date"), "an unchanged compile is skipped: {stdout}");
    let target = specc_onnx::import_file(&pair("target")).unwrap();
    let prompts = [
        "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
        "{\n  \"id\": 42,\n  \"name\": \"widget\",\n  \"tags\": [",
        "The documentation describes how to install the package and",
    ];
    let mut mean_lengths = Vec::new();
    for p in prompts {
        let plain = run_json(&out, &["--prompt", p, "--no-speculation"]);
        let want = greedy_decode_as_imported(&target, &ids(&plain["prompt_ids"]), 48);
        assert_eq!(ids(&plain["tokens"]), want, "{p:?}: plain decoding vs the export");
        for k in ["1", "4"] {
            let spec = run_json(&out, &["--prompt", p, "-k", k]);
            assert_eq!(ids(&spec["tokens"]), want, "{p:?} K={k}");
            assert_eq!(spec["text"], plain["text"]);
            if k == "4" {
                mean_lengths.push(spec["mean_acceptance_length"].as_f64().unwrap());
            }
        }
        let adaptive = run_json(&out, &["--prompt", p, "--adaptive"]);
        assert_eq!(ids(&adaptive["tokens"]), want, "{p:?} adaptive");
        let text = plain["text"].as_str().unwrap();
        assert!(!text.is_empty() && !text.contains('\u{fffd}'), "{p:?} decodes to clean text: {text:?}");
    }
    eprintln!("mean acceptance length at K=4 (code, JSON, prose): {mean_lengths:.2?}");
    // Deterministic (greedy); the trained draft must agree far more often
    // than chance, which would give a length of 1.0.
    assert!(mean_lengths.iter().all(|&l| l > 1.5), "{mean_lengths:?}");

    // The same prompt as text and as ids gives the same tokens.
    let v = run_json(&out, &["--prompt", prompts[0], "--no-speculation"]);
    let as_ids: Vec<String> = ids(&v["prompt_ids"]).iter().map(|i| i.to_string()).collect();
    let w = run_json(&out, &["--prompt-ids", &as_ids.join(","), "--no-speculation"]);
    assert_eq!(v["tokens"], w["tokens"]);

    // Bad prompts.
    let (ok, _, err) = specc(&["run", s(&out), "--prompt", ""]);
    assert!(!ok && err.contains("the prompt is empty"), "{err}");
    let longer_than_cache = "word ".repeat(400);
    let (ok, _, err) = specc(&["run", s(&out), "--prompt", &longer_than_cache]);
    assert!(!ok && err.contains("but the KV cache holds 256") && !err.contains("panicked"), "{err}");
    let longer_than_buckets = "word ".repeat(180);
    let (ok, _, err) = specc(&["run", s(&out), "--prompt", &longer_than_buckets]);
    assert!(!ok && err.contains("the largest prompt bucket is 128") && !err.contains("panicked"), "{err}");
}

#[test]
fn tokenizers_that_do_not_fit_the_model_or_the_draft_are_refused() {
    let tok = repo().join("graphs/pair/tokenizer.json");
    // 4096 tokens for a model with 512 logits.
    let qwen2 = fixture("qwen2").join("with_past/model.onnx");
    let out = tmp("mismatch");
    let (ok, _, err) = specc(&["compile", s(&qwen2), "--max-seq-len", "64", "--tokenizer", s(&tok), "-o", s(&out)]);
    assert!(!ok && err.contains("has 4096 tokens but the model's logits have 512 entries"), "{err}");
    assert!(!out.exists());

    // A draft whose tokenizer swaps two tokens' ids.
    let dir = tmp("draft-tok");
    std::fs::create_dir_all(dir.join("with_past")).unwrap();
    std::fs::copy(pair("draft"), dir.join("with_past/model.onnx")).unwrap();
    std::fs::copy(pair("draft").parent().unwrap().join("config.json"), dir.join("with_past/config.json")).unwrap();
    let mut j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&tok).unwrap()).unwrap();
    let vocab = j["model"]["vocab"].as_object_mut().unwrap();
    let (a, b) = (vocab["a"].clone(), vocab["b"].clone());
    vocab.insert("a".into(), b);
    vocab.insert("b".into(), a);
    std::fs::write(dir.join("tokenizer.json"), serde_json::to_string(&j).unwrap()).unwrap();
    let draft = dir.join("with_past/model.onnx");
    let (ok, _, err) =
        specc(&["compile", s(&pair("target")), "--draft", s(&draft), "--max-seq-len", "64", "-o", s(&out)]);
    assert!(!ok && err.contains("the draft's tokenizer") && err.contains("\"a\""), "{err}");

    // Text prompts need a tokenizer.
    let plain = tmp("no-tokenizer");
    let (ok, _, err) = specc(&["compile", s(&qwen2), "--max-seq-len", "64", "--target", "xla", "-o", s(&plain)]);
    assert!(ok, "{err}");
    let (ok, _, err) = specc(&["run", s(&plain), "--prompt", "hello"]);
    assert!(!ok && err.contains("has no tokenizer: give --prompt-ids"), "{err}");
}

#[test]
fn a_malformed_prompts_file_is_reported_with_its_line() {
    let out = tmp("bench-bad");
    let qwen2 = fixture("qwen2").join("with_past/model.onnx");
    let (ok, _, err) = specc(&["compile", s(&qwen2), "--max-seq-len", "64", "--target", "xla", "-o", s(&out)]);
    assert!(ok, "{err}");
    let file = out.join("prompts.jsonl");
    let cases = [
        ("{\"prompt_ids\": [1, 2]}\n\n{\"prompt_ids\": [1,\n", ":3: not JSON"),
        ("{\"prompt_ids\": [1, 2]}\n{\"text\": \"x\"}\n", ":2: no `prompt` (text) or `prompt_ids`"),
        ("{\"prompt_ids\": []}\n", ":1: `prompt_ids` is empty"),
        ("{\"prompt_ids\": [1, \"x\"]}\n", ":1: `\"x\"` is not a token id"),
        ("{\"prompt\": \"hello\"}\n", ":1: a text prompt, but the artifact has no tokenizer"),
    ];
    for (text, want) in cases {
        std::fs::write(&file, text).unwrap();
        let (ok, _, err) = specc(&["bench", s(&out), "--prompts", s(&file), "--runs", "1"]);
        assert!(!ok && err.contains(&format!("prompts.jsonl{want}")), "{text:?}: {err}");
    }
}
