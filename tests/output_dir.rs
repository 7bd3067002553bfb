//! `specc compile -o DIR` never deletes or hides a file it did not write,
//! and replaces an artifact atomically: with a crash or an I/O error
//! injected at every filesystem step of the commit, the path holds the
//! complete old or the complete new artifact, and the next compile cleans
//! up what the crash left.

mod common;
use common::*;
use specc_artifact::Artifact;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("specc-outdir-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn llama() -> PathBuf {
    fixture("llama").join("with_past/model.onnx")
}

fn qwen2() -> PathBuf {
    fixture("qwen2").join("with_past/model.onnx")
}

/// `specc compile MODEL -o OUT` for one decode step with `past` cached
/// tokens, plus `extra` flags; run in `cwd`, with `env`.
fn compile_cmd(model: &Path, out: &str, past: usize, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_specc"));
    c.args(["compile", s(model), "-o", out, "--target", "xla"]);
    for d in ["batch_size=1", "sequence_length=1", &format!("past_sequence_length={past}")] {
        c.args(["--dim", d]);
    }
    c.args(extra);
    c
}

fn run(mut c: Command) -> (Option<i32>, String) {
    let out = c.output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Every file under `dir` with its bytes (symlinks as their target).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                out.insert(p.clone(), std::fs::read_link(&p).unwrap().display().to_string().into_bytes());
            } else if t.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Refused, with `why` in the message, and `root` exactly as before.
fn refused(c: Command, root: &Path, why: &str) {
    let before = snapshot(root);
    let (code, err) = run(c);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(why), "expected `{why}` in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(snapshot(root), before, "files changed although the compile was refused: {err}");
}

#[test]
fn anything_specc_did_not_write_is_refused_and_survives_byte_for_byte() {
    let root = tmp("refuse");
    // A user's directory, with files at two levels.
    let user = root.join("mine");
    std::fs::create_dir_all(user.join("sub")).unwrap();
    std::fs::write(user.join("notes.txt"), "do not delete\n").unwrap();
    std::fs::write(user.join("sub/data.bin"), [0u8, 1, 2, 255]).unwrap();
    refused(compile_cmd(&llama(), s(&user), 11, &[]), &root, "is a directory that is not a specc artifact");
    // ... even with --force.
    refused(compile_cmd(&llama(), s(&user), 11, &["--force"]), &root, "notes.txt");
    // A regular file (no `.NAME.old` appears beside it either).
    let file = root.join("file.onnx");
    std::fs::write(&file, "a file, not a directory").unwrap();
    refused(compile_cmd(&llama(), s(&file), 11, &["--force"]), &root, "is a regular file (23 bytes)");
    // A symlink to the user's directory.
    #[cfg(unix)]
    {
        let link = root.join("link");
        std::os::unix::fs::symlink(&user, &link).unwrap();
        refused(compile_cmd(&llama(), s(&link), 11, &[]), &root, "is a symbolic link");
    }
    // The current directory, which holds the user's files.
    let mut here = compile_cmd(&llama(), ".", 11, &["--force"]);
    here.current_dir(&user);
    refused(here, &root, "is the current directory");
    let mut up = compile_cmd(&llama(), "..", 11, &[]);
    up.current_dir(&user);
    refused(up, &root, "is the current directory or one that holds it");
    // An artifact the user put a file into.
    let art = root.join("art");
    assert_eq!(run(compile_cmd(&llama(), s(&art), 11, &[])).0, Some(0));
    std::fs::write(art.join("graphs/my-notes.md"), "mine").unwrap();
    refused(compile_cmd(&llama(), s(&art), 12, &["--force"]), &root, "graphs/my-notes.md");
    std::fs::remove_file(art.join("graphs/my-notes.md")).unwrap();
    // An artifact of another model: only with --force.
    refused(compile_cmd(&qwen2(), s(&art), 11, &[]), &root, "pass --force to replace it");
    let (code, err) = run(compile_cmd(&qwen2(), s(&art), 11, &["--force"]));
    assert_eq!(code, Some(0), "{err}");
    let m = Artifact::open(&art).unwrap().manifest;
    assert_eq!(m.models[0].source, std::fs::canonicalize(qwen2()).unwrap().display().to_string());
    // The same model with other options replaces it without --force, and an
    // empty directory is simply used.
    assert_eq!(run(compile_cmd(&qwen2(), s(&art), 5, &[])).0, Some(0));
    assert_eq!(Artifact::open(&art).unwrap().manifest.graphs[0].dims["past_sequence_length"], 5);
    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(run(compile_cmd(&llama(), s(&empty), 11, &[])).0, Some(0));
    assert!(Artifact::open(&empty).is_ok());
    // Through all of it, the user's files are untouched.
    assert_eq!(std::fs::read(user.join("notes.txt")).unwrap(), b"do not delete\n");
    assert_eq!(std::fs::read(user.join("sub/data.bin")).unwrap(), [0u8, 1, 2, 255]);
    assert_eq!(std::fs::read(&file).unwrap(), b"a file, not a directory");
    let names: Vec<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "hidden leftovers: {names:?}");
}

/// Which of the two compiles `dir` holds, after checking it is complete:
/// the manifest opens and every file it lists reads back with its checksum.
fn complete_artifact(dir: &Path) -> usize {
    let a = Artifact::open(dir).unwrap_or_else(|e| panic!("{} is not a complete artifact: {e}", dir.display()));
    for f in a.manifest.files() {
        a.read(f).unwrap();
    }
    a.manifest.graphs[0].dims["past_sequence_length"]
}

fn hidden_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn a_crash_or_io_error_at_any_commit_step_leaves_a_complete_artifact_and_the_next_compile_cleans_up() {
    // Old: 11 cached tokens; new: 12. Each fault runs a fresh recompile over
    // the old artifact (and, separately, a first compile to an empty path).
    for (mode, first) in [("", false), (":error", false), ("", true), (":error", true)] {
        let root = tmp(&format!("fault{mode}-{first}"));
        let out = root.join("art");
        let mut step = 0;
        loop {
            let _ = std::fs::remove_dir_all(&out);
            if !first {
                assert_eq!(run(compile_cmd(&llama(), s(&out), 11, &[])).0, Some(0));
            }
            let mut c = compile_cmd(&llama(), s(&out), 12, &[]);
            c.env(specc_artifact::fault::ENV, format!("commit:{step}{mode}"));
            let (code, err) = run(c);
            if code == Some(0) {
                // Past the last step: the hook never fired.
                assert_eq!(complete_artifact(&out), 12);
                assert!(hidden_entries(&root).is_empty(), "{:?}", hidden_entries(&root));
                break;
            }
            assert!(err.contains("commit step"), "step {step}{mode}: {err}");
            match mode {
                // A crash is an abort (SIGABRT): no exit code.
                "" => assert_eq!(code, None, "step {step}: {err}"),
                _ => assert!(code == Some(1) && err.contains("injected I/O error"), "step {step}: {err}"),
            }
            // The path holds the old or the new artifact, complete (or, on a
            // first compile, nothing or the new one).
            if out.exists() {
                let which = complete_artifact(&out);
                assert!(which == 12 || (which == 11 && !first), "step {step}{mode}: {which}");
            } else {
                assert!(first, "step {step}{mode}: the old artifact is gone");
            }
            // The next compile removes what the crash left and succeeds.
            let (code, err) = run(compile_cmd(&llama(), s(&out), 13, &[]));
            assert_eq!(code, Some(0), "after step {step}{mode}: {err}");
            assert_eq!(complete_artifact(&out), 13);
            assert!(hidden_entries(&root).is_empty(), "after step {step}{mode}: {:?}", hidden_entries(&root));
            step += 1;
            assert!(step < 64, "the commit never finished");
        }
        // Writing the manifest, flushing, removing the marker, the swap,
        // flushing the parent, then (over an old artifact) its removal.
        assert!(step >= if first { 5 } else { 10 }, "{mode} first={first}: only {step} steps");
    }
}
