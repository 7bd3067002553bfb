//! `specc estimate` on the trained pair (graphs/pair): the counts agree with
//! the artifact and with the model's config (hand arithmetic), speculation
//! at zero acceptance loses and gains with acceptance, shape-only artifacts
//! (`--weights none`) are estimated but not run, and bad input is refused
//! with an error that names it.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("specc-estimate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn pair(role: &str) -> PathBuf {
    repo().join("graphs/pair").join(role)
}

const CAPACITY: usize = 256;

fn compile_pair(out: &Path, extra: &[&str]) {
    let (t, d) = (pair("target").join("with_past/model.onnx"), pair("draft").join("with_past/model.onnx"));
    let cap = CAPACITY.to_string();
    let mut args = vec!["compile", s(&t), "--draft", s(&d), "--max-seq-len", &cap, "-k", "1-4"];
    args.extend(["--prompt-buckets", "64", "--target", "xla", "-o", s(out)]);
    args.extend(extra);
    let (ok, _, err) = specc(&args);
    assert!(ok, "{err}");
}

fn estimate(out: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["estimate", s(out), "--instance", "trn1.2xlarge", "--output-format", "json"];
    args.extend(extra);
    let (ok, stdout, err) = specc(&args);
    assert!(ok, "{extra:?}: {err}");
    serde_json::from_str(&stdout).unwrap()
}

fn graph<'a>(e: &'a Value, name: &str) -> &'a Value {
    e["graphs"].as_array().unwrap().iter().find(|g| g["name"] == name).unwrap_or_else(|| panic!("no {name}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn manifest_weight_bytes(out: &Path) -> Vec<(String, u64)> {
    let m: Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    m["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let w = &m["weights"];
            let bytes = match w["mode"].as_str().unwrap() {
                "linked" => w["tensors"].as_array().unwrap().iter().map(|t| t["length"].as_u64().unwrap()).sum(),
                _ => w["bytes"].as_u64().unwrap(),
            };
            (m["name"].as_str().unwrap().to_string(), bytes)
        })
        .collect()
}

/// Matmul parameters of the target (not the embedding, which is gathered),
/// and its attention shape, from its config.json.
fn target_shape() -> (u64, u64, u64, u64) {
    let c: Value = serde_json::from_str(&std::fs::read_to_string(pair("target").join("config.json")).unwrap()).unwrap();
    let n = |k: &str| c[k].as_u64().unwrap();
    let (h, i, heads, kv, layers, vocab) = (
        n("hidden_size"),
        n("intermediate_size"),
        n("num_attention_heads"),
        n("num_key_value_heads"),
        n("num_hidden_layers"),
        n("vocab_size"),
    );
    let hd = h / heads;
    // q, o: h x h; k, v: h x (kv heads x head dim); gate, up, down: h x i;
    // the lm_head: h x vocab (the export multiplies by its own copy even
    // when tied to the embedding).
    let per_layer = 2 * h * h + 2 * h * kv * hd + 3 * h * i;
    (layers * per_layer + h * vocab, heads, hd, layers)
}

#[test]
fn estimate_counts_agree_with_the_artifact_and_the_config_and_speculation_behaves() {
    let out = tmp("pair");
    compile_pair(&out, &[]);
    let e = estimate(&out, &["--acceptance", "0"]);
    assert_eq!(e["tp"], 1, "a 4M-parameter pair fits one core");
    assert_eq!(e["dtype"], "f32");

    // Resident weights: the estimate's per-model bytes (summed over the
    // weight declarations of the IR) are exactly the artifact's.
    for (model, bytes) in manifest_weight_bytes(&out) {
        let m = e["models"].as_array().unwrap().iter().find(|m| m["name"] == model.as_str()).unwrap();
        assert_eq!(m["weight_bytes"].as_u64().unwrap(), bytes, "{model}");
    }

    // A decode step: 2 FLOPs per matmul parameter, plus attention over the
    // cache and the new token (q.k and p.v: 2 x 2 x heads x head dim x
    // (C + 1) per layer). The only other dot is the rotary angles'
    // (inv_freq x position, a few dozen FLOPs): within 0.1%.
    let (params, heads, hd, layers) = target_shape();
    let attention = 4 * heads * hd * (CAPACITY as u64 + 1) * layers;
    let decode = graph(&e, "target_decode");
    let flops = f(&decode["counts"]["dot_flops_f32"]) + f(&decode["counts"]["dot_flops_bf16"]);
    let want = (2 * params + attention) as f64;
    assert!(
        (flops - want).abs() / want < 1e-3,
        "decode FLOPs {flops}, 2 x {params} params + {attention} attention = {want}"
    );
    // It reads every matmul weight once and one embedding row.
    let t = &decode["counts"]["models"]["target"];
    assert_eq!(t["dot_weight_elements"].as_u64().unwrap(), params);
    assert_eq!((t["cache_params"].as_u64().unwrap(), t["kv_heads"].as_u64().unwrap()), (2 * layers, 4));
    assert_eq!(decode["time"]["collectives"]["count"], 0, "no collectives at tp 1");

    // Zero acceptance: every round yields one token at the price of K draft
    // steps and a verify, so speculation is slower than plain for every K.
    let plain = f(&e["plain_inter_token_latency_ms"]);
    let rows = e["speculation"][0]["per_k"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        assert!(f(&r["inter_token_latency_ms"]) > plain, "K={}: {r} vs plain {plain}", r["k"]);
        assert_eq!(f(&r["expected_tokens"]), 1.0);
    }
    // And it improves with acceptance, K by K.
    let itl = |e: &Value| -> Vec<f64> {
        e["speculation"][0]["per_k"].as_array().unwrap().iter().map(|r| f(&r["inter_token_latency_ms"])).collect()
    };
    let (lo, mid, hi) =
        (itl(&e), itl(&estimate(&out, &["--acceptance", "0.5"])), itl(&estimate(&out, &["--acceptance", "0.95"])));
    for k in 0..4 {
        assert!(lo[k] > mid[k] && mid[k] > hi[k], "K={}: {} {} {}", k + 1, lo[k], mid[k], hi[k]);
    }
    let best = estimate(&out, &["--acceptance", "0.95"]);
    assert!(f(&best["speculation"][0]["best_speedup"]) > 1.0, "{}", best["speculation"][0]);

    // The text report names the instance, the peak used and the best K.
    let (ok, text, err) = specc(&["estimate", s(&out), "--instance", "trn1.2xlarge", "--acceptance", "0.8"]);
    assert!(ok, "{err}");
    for want in ["trn1.2xlarge", "fp32 peak", "inter-token latency, plain", "best K:", "fused_k4"] {
        assert!(text.contains(want), "`{want}` missing from:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_shape_only_artifact_is_estimated_but_not_run() {
    let (copy, none) = (tmp("copy-bf16"), tmp("none-bf16"));
    compile_pair(&copy, &["--dtype", "bf16"]);
    compile_pair(&none, &["--dtype", "bf16", "--weights", "none"]);
    // The shape-only manifest records the same bytes the bf16 copy stores.
    assert_eq!(manifest_weight_bytes(&none), manifest_weight_bytes(&copy));
    let (a, b) = (estimate(&copy, &["--acceptance", "0.7"]), estimate(&none, &["--acceptance", "0.7"]));
    assert_eq!(a["graphs"], b["graphs"], "weight values play no part in the estimate");
    assert_eq!(b["dtype"], "bf16");
    assert!(b["matmul_peak"].as_str().unwrap().contains("bf16 peak"));
    let decode = graph(&b, "target_decode");
    assert!(f(&decode["counts"]["dot_flops_bf16"]) > 0.0, "bf16 weight matmuls are on the bf16 path");
    // Not runnable: the error says why and what to do.
    let (ok, _, err) = specc(&["run", s(&none), "--prompt-ids", "1,2,3", "--max-new-tokens", "2"]);
    assert!(!ok);
    assert!(err.contains("shape-only") && err.contains("--weights none") && err.contains("specc estimate"), "{err}");
    let _ = std::fs::remove_dir_all(&copy);
    let _ = std::fs::remove_dir_all(&none);
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let out = tmp("bad");
    compile_pair(&out, &[]);
    let run = |args: &[&str]| {
        let (ok, stdout, err) = specc(args);
        assert!(!ok, "{args:?} succeeded: {stdout}");
        err
    };
    let err = run(&["estimate", s(&out), "--instance", "p5.48xlarge"]);
    assert!(err.contains("unknown instance") && err.contains("trn2.48xlarge"), "{err}");
    let err = run(&["estimate", s(&out), "--instance", "trn1.2xlarge", "--tp", "8"]);
    assert!(err.contains("--tp 8") && err.contains("has 2 NeuronCores"), "{err}");
    let err = run(&["estimate", s(&out), "--instance", "trn1.32xlarge", "--tp", "4"]);
    assert!(err.contains("not a tensor-parallel degree used on trn1.32xlarge"), "{err}");
    let err = run(&["estimate", s(&out), "--instance", "trn1.2xlarge", "--acceptance", "1.5"]);
    assert!(err.contains("--acceptance 1.5"), "{err}");
    let err = run(&["estimate", s(&out), "--instance", "trn1.2xlarge", "--from-bench", s(&out.join("manifest.json"))]);
    assert!(err.contains("manifest.json") && err.contains("specc bench --json"), "{err}");
    let err = run(&["estimate", s(&out), "--instance", "trn1.2xlarge", "--calibrate", "latency=3"]);
    assert!(err.contains("collective-latency=MS"), "{err}");
    // At tp 1 there is no collective whose latency a measurement could set.
    let err = run(&["estimate", s(&out), "--instance", "trn1.2xlarge", "--calibrate", "collective-latency=3"]);
    assert!(err.contains("no collectives"), "{err}");
    let err = run(&["estimate", &format!("{}-missing", s(&out)), "--instance", "trn1.2xlarge"]);
    assert!(err.contains("not a specc artifact"), "{err}");

    // An artifact of one plain graph (no --max-seq-len): same files, a
    // manifest without the speculation section.
    let plain = tmp("plain");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    m.as_object_mut().unwrap().remove("speculation");
    for dir in ["", "graphs", "weights"] {
        std::fs::create_dir_all(plain.join(dir)).unwrap();
        for f in std::fs::read_dir(out.join(dir)).unwrap() {
            let f = f.unwrap();
            if f.path().is_file() {
                std::fs::copy(f.path(), plain.join(dir).join(f.file_name())).unwrap();
            }
        }
    }
    std::fs::write(plain.join("manifest.json"), serde_json::to_string(&m).unwrap()).unwrap();
    let err = run(&["estimate", s(&plain), "--instance", "trn1.2xlarge"]);
    assert!(err.contains("is not a generation artifact") && err.contains("--max-seq-len"), "{err}");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&plain);
}

/// `--from-bench`: the acceptance a `specc bench --json` run measured per
/// position is what the estimate's expected tokens per round are made of.
#[test]
fn from_bench_uses_the_measured_per_position_acceptance() {
    let out = tmp("from-bench");
    compile_pair(&out, &[]);
    let report = out.join("bench.json");
    // Short JSON prompts (the bundled ones are longer than this artifact's 64-token bucket).
    let prompts = out.join("prompts.jsonl");
    let lines = [
        r#"{"id": "a", "domain": "json", "prompt": "{\n  \"user\": {\n    \"id\": 17,\n    \"name\": \""}"#,
        r#"{"id": "b", "domain": "json", "prompt": "{\n  \"items\": [\n    {\"sku\": \"A-1\", \"qty\": "}"#,
    ];
    std::fs::write(&prompts, lines.join("\n")).unwrap();
    let args = ["bench", s(&out), "--prompts", s(&prompts), "--limit", "2", "--max-new-tokens", "24", "-k", "2,4"];
    let (ok, _, err) = specc(&[&args[..], &["--json", s(&report)]].concat());
    assert!(ok, "{err}");
    let bench: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let domain = &bench["domains"][0];
    let k4 = domain["speculative"].as_array().unwrap().iter().find(|r| r["k"] == 4).expect("a K=4 run");
    let rates: Vec<f64> = k4["accepted_per_position"].as_array().unwrap().iter().map(f).collect();
    assert_eq!(rates.len(), 4);

    let e = estimate(&out, &["--from-bench", s(&report)]);
    let spec = &e["speculation"][0];
    let label = spec["acceptance"].as_str().unwrap();
    assert!(label.starts_with("json") && label.contains("measured per-position acceptance at K=4"), "{label}");
    for row in spec["per_k"].as_array().unwrap() {
        let k = row["k"].as_u64().unwrap() as usize;
        let want = 1.0 + rates[..k].iter().sum::<f64>();
        let got = f(&row["expected_tokens"]);
        assert!((got - want).abs() < 1e-9, "K={k}: expected tokens {got}, 1 + measured rates = {want}");
    }
}

/// An artifact compiled with `--tp 2` is costed from its own rank programs:
/// each graph's collectives are its all-reduce nodes (the manifest's
/// count), the weights each rank reads are its blocks (about half of the
/// unsharded artifact's, plus what stays whole), and `--tp` cannot move it
/// to another degree. The unsharded artifact estimated at `--tp 2` (the
/// analytic split) is the independent check.
#[test]
fn a_tensor_parallel_artifact_is_costed_from_its_rank_programs() {
    let (one, two) = (tmp("tp1"), tmp("tp2"));
    compile_pair(&one, &[]);
    compile_pair(&two, &["--tp", "2"]);
    let inst = ["--acceptance", "0.8"];
    let analytic = estimate(&one, &[&inst[..], &["--tp", "2"]].concat());
    let counted = estimate(&two, &inst);
    assert_eq!(counted["tp"], 2);
    assert_eq!(counted["compiled_tp"], 2);
    let m: Value = serde_json::from_str(&std::fs::read_to_string(two.join("manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for entry in m["graphs"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        if name.ends_with("_sample") {
            continue;
        }
        let g = graph(&counted, name);
        assert_eq!(g["time"]["collectives"]["count"], entry["all_reduces"], "{name}: collectives");
        assert_eq!(g["counts"]["built_tp"], 2, "{name}");
        // Each rank reads its half of every split weight and all of the
        // replicated ones (embeddings, norms): between the analytic half
        // and the whole.
        let (c, a) = (&g["counts"], &graph(&analytic, name)["counts"]);
        let read =
            |v: &Value| -> f64 { v["models"].as_object().unwrap().values().map(|m| f(&m["weight_bytes_read"])).sum() };
        let (rank, whole) = (read(c), read(a));
        assert!(rank > 0.45 * whole && rank < 0.75 * whole, "{name}: a rank reads {rank} of {whole} weight bytes");
        // The rank program's collectives: the analytic two per layer and
        // pass, plus the logits' gather at the end of each target pass.
        let modelled = f(&graph(&analytic, name)["time"]["collectives"]["count"]);
        let own = f(&g["time"]["collectives"]["count"]);
        assert!(own >= modelled && own <= modelled + 10.0, "{name}: {own} all-reduces, {modelled} modelled");
        checked += 1;
    }
    assert!(checked >= 9, "{checked} graphs checked");
    let (ok, _, err) = specc(&["estimate", s(&two), "--instance", "trn1.32xlarge", "--tp", "8"]);
    assert!(!ok && err.contains("compiled with --tp 2"), "{err}");
}
