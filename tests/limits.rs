//! Every size that comes from a file is checked, overflow-safe, before
//! anything is allocated or indexed, against a per-tensor limit the user
//! can raise (`--max-tensor-bytes`, `$SPECC_MAX_TENSOR_BYTES`), and refused
//! with a typed error naming the tensor. Each case here used to panic,
//! abort or crash the process.

mod common;
use common::*;
use onnx_ir::Message;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("specc-limits-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A command that must fail cleanly (exit 1, an `error:` line, no panic)
/// with `why` in its message.
fn refused(args: &[&str], why: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_specc")).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.contains("error:") && !err.contains("panicked") && !err.contains("internal error"), "{err}");
    assert!(err.contains(why), "{args:?}: expected `{why}` in: {err}");
    err
}

fn llama() -> PathBuf {
    fixture("llama").join("with_past/model.onnx")
}

/// The llama fixture with `edit` applied to its protobuf, saved as `name`.
fn edited(dir: &Path, name: &str, edit: impl Fn(&mut onnx_ir::GraphProto)) -> PathBuf {
    let mut m = onnx_ir::ModelProto::parse_from_bytes(&std::fs::read(llama()).unwrap()).unwrap();
    edit(m.graph.as_mut().unwrap());
    let p = dir.join(name);
    std::fs::write(&p, m.write_to_bytes().unwrap()).unwrap();
    p
}

#[test]
fn the_wrapping_expand_that_crashed_constant_folding_is_a_typed_error() {
    // ../shared/repros/segv_expand_wrap.onnx: an Expand to a shape whose
    // element count wraps around 2^64 (32 * (2^61 + 1) taken as 32) made
    // burn-flex write out of bounds while specialization folded it (SIGSEGV).
    let out = tmp("segv").join("art");
    let model = repo().join("graphs/bad/segv_expand_wrap.onnx");
    let err = refused(&["compile", s(&model), "--target", "xla", "-o", s(&out)], "more elements than a 64-bit count");
    assert!(err.contains("node `ex` (Expand)"), "{err}");
    let e = specc_onnx::import_file(&model).err().expect("refused");
    assert!(e.to_string().contains("2305843009213693953"), "{e}");
}

#[test]
fn huge_dims_in_an_onnx_file_are_refused_naming_the_tensor() {
    let dir = tmp("onnx");
    // A graph input dim of 2^40.
    let input = edited(&dir, "input.onnx", |g| {
        let t = g.input[0].type_.as_mut().unwrap().mut_tensor_type();
        t.shape.as_mut().unwrap().dim[0].set_dim_value(1 << 40);
    });
    let out = dir.join("art");
    refused(
        &["compile", s(&input), "-o", s(&out), "--max-seq-len", "64", "-k", "2", "--prompt-buckets", "16"],
        "parameter `input_ids`",
    );
    refused(&["eval", s(&input), "--inputs", "/nonexistent", "--output", "/nonexistent"], "over the limit");
    // `inspect` reports the dim without allocating anything.
    let (ok, stdout, _) = specc(&["inspect", s(&input)]);
    assert!(ok && stdout.contains("1099511627776"), "{stdout}");
    // An initializer that claims [2^20, 2^20] (4 TiB): refused before its
    // data is looked at.
    let weight = edited(&dir, "weight.onnx", |g| {
        let t = g.initializer.iter_mut().find(|t| t.name == "model.embed_tokens.weight").unwrap();
        t.dims = vec![1 << 20, 1 << 20];
    });
    let err = refused(
        &["compile", s(&weight), "-o", s(&out), "--max-seq-len", "64", "-k", "2", "--prompt-buckets", "16"],
        "tensor `model.embed_tokens.weight` of shape [1048576, 1048576]",
    );
    assert!(err.contains("--max-tensor-bytes"), "{err}");
    // Dims whose product wraps to a small number.
    let wrap = edited(&dir, "wrap.onnx", |g| {
        let t = g.initializer.iter_mut().find(|t| t.name == "model.embed_tokens.weight").unwrap();
        t.dims = vec![1 << 62, 4, 1 << 2];
    });
    refused(
        &["compile", s(&wrap), "-o", s(&out), "--max-seq-len", "64", "-k", "2", "--prompt-buckets", "16"],
        "more elements than a 64-bit count can hold",
    );
    assert!(!out.exists());
}

#[test]
fn the_limit_can_be_lowered_and_raised() {
    let dir = tmp("flag");
    let out = dir.join("art");
    let model = llama();
    let args = |limit: &'static str| {
        let dims = ["--dim", "batch_size=1", "--dim", "sequence_length=1", "--dim", "past_sequence_length=3"];
        let mut a = vec!["compile", s(&model), "-o", s(&out), "--target", "xla", "--max-tensor-bytes", limit];
        a.extend(dims);
        a
    };
    // The embedding is 2048 x 128 f32 = 1 MiB: 512K refuses it, 1M takes it.
    let err = refused(&args("512K"), "over the limit of 524288 bytes per tensor");
    assert!(err.contains("`model.embed_tokens.weight`"), "{err}");
    let (ok, _, err) = specc(&args("1M"));
    assert!(ok, "{err}");
    // The environment sets it too; a bad value is refused by name.
    let out2 = std::process::Command::new(env!("CARGO_BIN_EXE_specc"))
        .args(["run", s(&out), "--prompt-ids", "1"])
        .env("SPECC_MAX_TENSOR_BYTES", "lots")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out2.stderr);
    assert!(!out2.status.success() && err.contains("$SPECC_MAX_TENSOR_BYTES") && err.contains("`lots`"), "{err}");
    // A usage error (clap's exit code 2).
    let (ok, _, err) = specc(&["inspect", s(&llama()), "--max-tensor-bytes", "0"]);
    assert!(!ok && err.contains("give a size from 1 byte"), "{err}");
}

/// A generation artifact of the llama fixture, and its manifest as JSON.
fn generation_artifact(dir: &Path) -> (PathBuf, serde_json::Value) {
    let out = dir.join("art");
    let (ok, _, err) = specc(&[
        "compile",
        s(&llama()),
        "-o",
        s(&out),
        "--max-seq-len",
        "64",
        "-k",
        "2",
        "--prompt-buckets",
        "16",
        "--target",
        "xla",
    ]);
    assert!(ok, "{err}");
    let m = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    (out, m)
}

#[test]
fn sizes_and_indices_in_a_manifest_are_checked_on_open() {
    let root = tmp("manifest");
    type Edit = fn(&mut serde_json::Value);
    let cases: Vec<(&str, &str, Edit)> = vec![
        ("bucket", "prompt bucket 9223372036854775808 is not within", |m| {
            m["speculation"]["buckets"] = serde_json::json!([16, 1u64 << 63]);
        }),
        ("capacity", "the KV cache capacity is 0", |m| m["speculation"]["capacity"] = 0.into()),
        ("empty-ks", "K list [] must be non-empty", |m| m["speculation"]["ks"] = serde_json::json!([])),
        ("vocab", "vocabulary size", |m| m["speculation"]["vocab"] = (1u64 << 40).into()),
        ("alias", "aliases parameter 9999", |m| {
            let outs = m["graphs"][0]["outputs"].as_array_mut().unwrap();
            let o = outs.iter_mut().find(|o| o.get("aliases_parameter").is_some()).unwrap();
            o["aliases_parameter"] = 9999.into();
        }),
        ("weight-shape", "over the limit", |m| {
            m["graphs"][0]["parameters"][3]["shape"] = serde_json::json!([1u64 << 20, 1u64 << 20])
        }),
        ("wrapping-shape", "more elements than a 64-bit count", |m| {
            m["graphs"][0]["parameters"][0]["shape"] = serde_json::json!([1u64 << 62, 8])
        }),
        ("extra-output", "over the limit", |m| {
            let outs = m["graphs"][0]["outputs"].as_array_mut().unwrap();
            let mut extra = outs[0].clone();
            extra["index"] = outs.len().into();
            extra["shape"] = serde_json::json!([1u64 << 20, 1u64 << 20, 1u64 << 10]);
            outs.push(extra);
        }),
        ("dtype", "unknown dtype `f128`", |m| m["graphs"][0]["parameters"][0]["dtype"] = "f128".into()),
    ];
    for (name, why, edit) in cases {
        let (out, mut m) = generation_artifact(&root.join(name));
        edit(&mut m);
        std::fs::write(out.join("manifest.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        refused(&["run", s(&out), "--prompt-ids", "1,2,3"], why);
        refused(&["estimate", s(&out), "--instance", "trn1.2xlarge"], why);
    }
    // An output aliasing a parameter of another type, and an IR that
    // disagrees with its entry, are refused by name too.
    let (out, mut m) = generation_artifact(&root.join("alias-type"));
    let g = &mut m["graphs"][0];
    let p = g["outputs"].as_array().unwrap().iter().find_map(|o| o["aliases_parameter"].as_u64()).unwrap() as usize;
    g["parameters"][p]["shape"] = serde_json::json!([1, 1, 1, 1]);
    std::fs::write(out.join("manifest.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    refused(&["run", s(&out), "--prompt-ids", "1,2,3"], "of another type");
}
