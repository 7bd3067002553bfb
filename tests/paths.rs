//! Paths read from files stay where they belong: an ONNX external-data
//! location is followed only inside the model's directory (as onnxruntime
//! does), unless `--allow-external-data-outside` says otherwise, and never
//! to a device or FIFO; every path in an artifact's manifest stays inside
//! the artifact (linked weights: inside their model's directory). Nothing
//! outside is read, and no error shows a hash or size of such a file.

mod common;
use common::*;
use onnx_ir::Message;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("specc-paths-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small() -> PathBuf {
    repo().join("graphs/small/external_data.onnx")
}

/// graphs/small/external_data.onnx written to `dir/model.onnx` with its
/// external data location set to `location`.
fn with_location(dir: &Path, location: &str) -> PathBuf {
    let mut m = onnx_ir::ModelProto::parse_from_bytes(&std::fs::read(small()).unwrap()).unwrap();
    let g = m.graph.as_mut().unwrap();
    let mut changed = 0;
    for t in g.initializer.iter_mut() {
        for e in t.external_data.iter_mut().filter(|e| e.key == "location") {
            e.value = location.to_string();
            changed += 1;
        }
    }
    assert_eq!(changed, 2, "the fixture's weight and bias are external data");
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("model.onnx");
    std::fs::write(&p, m.write_to_bytes().unwrap()).unwrap();
    p
}

fn compile(model: &Path, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["compile", s(model), "-o", s(out), "--target", "xla", "--dim", "n=2"];
    args.extend(extra);
    specc(&args)
}

#[test]
fn external_data_outside_the_model_directory_is_refused_unless_allowed() {
    let root = tmp("external");
    let data = root.join("outside.bin");
    std::fs::copy(repo().join("graphs/small/external_data.onnx.data"), &data).unwrap();
    let model_dir = root.join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    // A symlink inside the model's directory that leads out of it.
    #[cfg(unix)]
    std::os::unix::fs::symlink(&data, model_dir.join("inside-link.bin")).unwrap();
    let abs = data.display().to_string();
    let cases: Vec<(&str, &str, &str)> = vec![
        ("sibling", "../../outside.bin", "climbs out of the model's directory"),
        ("absolute", abs.as_str(), "is an absolute path"),
        ("passwd", "../../../../../../../../etc/passwd", "climbs out of the model's directory"),
        #[cfg(unix)]
        ("symlink", "inside-link.bin", "outside the model's directory"),
    ];
    for (name, location, why) in cases {
        let model = with_location(&model_dir.join(name), location);
        if name == "symlink" {
            std::fs::rename(model_dir.join("inside-link.bin"), model_dir.join(name).join("inside-link.bin")).unwrap();
        }
        let out = root.join(format!("out-{name}"));
        let (ok, _, err) = compile(&model, &out, &[]);
        assert!(!ok, "{name}: compiled");
        assert!(err.contains("tensor `w`") && err.contains(location) && err.contains(why), "{name}: {err}");
        assert!(err.contains("--allow-external-data-outside"), "{name}: {err}");
        assert!(!out.exists(), "{name}: an artifact was written");
        // `inspect` does not read weights, and `eval` refuses the same way.
        let (ok, _, err) = specc(&["eval", s(&model), "--inputs", "/nonexistent", "--output", "/nonexistent"]);
        assert!(!ok && !err.contains("panicked"), "{name}: {err}");
        if name == "passwd" {
            continue; // allowed, it would be read: the point is that it is not by default
        }
        // Allowed: read, with a warning naming the file, and the same result
        // as the model with its data beside it.
        let (ok, stdout, err) = compile(&model, &out, &["--allow-external-data-outside", "--weights", "link"]);
        assert!(ok, "{name}: {err}");
        assert!(stdout.contains("warning: tensor `w`") && stdout.contains("outside the model's directory"), "{stdout}");
        let m = specc_artifact::Artifact::open(&out).unwrap().manifest;
        let specc_artifact::Weights::Linked { files, outside, .. } = &m.models[0].weights else { panic!("linked") };
        assert!(*outside && files.contains_key(&std::fs::canonicalize(&data).unwrap().display().to_string()));
    }
}

#[test]
#[cfg(unix)]
fn devices_and_fifos_are_never_read_as_external_data() {
    let root = tmp("special");
    let dir = root.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("pipe.bin");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let model = with_location(&dir, "pipe.bin");
    // Refused (without blocking on the FIFO), even when outside paths are allowed.
    let (ok, _, err) = compile(&model, &root.join("out"), &["--allow-external-data-outside"]);
    assert!(!ok && err.contains("not a regular file"), "{err}");
    let model = with_location(&root.join("zero"), "/dev/zero");
    let (ok, _, err) = compile(&model, &root.join("out"), &["--allow-external-data-outside"]);
    assert!(!ok && err.contains("/dev/zero") && err.contains("not a regular file"), "{err}");
}

use std::process::Command;

/// An artifact of the small model with linked weights, and its manifest as JSON.
fn linked_artifact(root: &Path) -> (PathBuf, serde_json::Value) {
    let model_dir = root.join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    std::fs::copy(small(), model_dir.join("external_data.onnx")).unwrap();
    std::fs::copy(repo().join("graphs/small/external_data.onnx.data"), model_dir.join("external_data.onnx.data"))
        .unwrap();
    let out = root.join("art");
    let (ok, _, err) = compile(&model_dir.join("external_data.onnx"), &out, &["--weights", "link"]);
    assert!(ok, "{err}");
    let m = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    (out, m)
}

/// `edit` applied to a fresh copy of the artifact's manifest; then every
/// command that opens it must refuse with `why`, read nothing outside, and
/// print no hash or size of what is there.
fn refused_after(root: &Path, name: &str, why: &str, edit: impl Fn(&mut serde_json::Value, &Path)) {
    let (out, mut m) = linked_artifact(&root.join(name));
    edit(&mut m, &out);
    std::fs::write(out.join("manifest.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let passwd_size = std::fs::metadata("/etc/passwd").map(|m| m.len().to_string()).unwrap_or_default();
    let e = specc_artifact::Artifact::open(&out).unwrap_err().to_string();
    assert!(e.contains(why), "{name}: {e}");
    for args in [vec!["estimate", s(&out), "--instance", "trn1.2xlarge"], vec!["run", s(&out), "--prompt-ids", "1,2"]] {
        let (ok, _, err) = specc(&args);
        assert!(!ok && err.contains(why), "{name} {}: {err}", args[0]);
        assert!(!err.contains("sha") && !err.contains("checksum"), "{name}: {err}");
        assert!(passwd_size.is_empty() || !err.contains(&format!(" {passwd_size} bytes")), "{name}: {err}");
    }
}

#[test]
fn manifest_paths_stay_inside_the_artifact() {
    let root = tmp("manifest");
    let graph_file = |m: &mut serde_json::Value, to: &str| m["graphs"][0]["ir"]["file"] = to.into();
    refused_after(&root, "dotdot", "leaves the artifact", |m, _| graph_file(m, "../../../../../../etc/passwd"));
    refused_after(&root, "absolute", "is an absolute path", |m, _| graph_file(m, "/etc/passwd"));
    #[cfg(unix)]
    refused_after(&root, "symlink", "symbolic link that leads out of the artifact", |m, out| {
        std::os::unix::fs::symlink("/etc/passwd", out.join("graphs/evil.ir")).unwrap();
        graph_file(m, "graphs/evil.ir");
    });
    // Linked weights pointing elsewhere: another file, a device, a path
    // through a symlink.
    let linked = |m: &mut serde_json::Value, to: &str| {
        let w = &mut m["models"][0]["weights"];
        let old = w["tensors"][0]["file"].as_str().unwrap().to_string();
        let size = w["files"][&old].clone();
        w["files"] = serde_json::json!({ to: size });
        w["tensors"][0]["file"] = to.into();
    };
    refused_after(&root, "linked-passwd", "lies outside the model's directory", |m, _| linked(m, "/etc/passwd"));
    refused_after(&root, "linked-zero", "not a regular file", |m, out| {
        // Even when the manifest claims outside paths were allowed.
        m["models"][0]["weights"]["outside"] = true.into();
        let _ = out;
        linked(m, "/dev/zero");
    });
    refused_after(&root, "linked-relative", "not an absolute path", |m, _| linked(m, "model/external_data.onnx.data"));
}
