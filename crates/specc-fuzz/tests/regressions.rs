//! Every input that ever crashed specc (found by the fuzzer or by hand,
//! under `regressions/<target>/<case>/`) is replayed in a worker process
//! and must give an outcome (a result or a typed error), never a panic,
//! an abort, a signal or a hang.

use std::path::Path;
use std::process::Command;

#[test]
fn every_saved_crash_is_now_a_typed_error_or_a_result() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut replayed = 0;
    for target in ["onnx", "artifact", "tokenizer"] {
        let Ok(cases) = std::fs::read_dir(root.join(target)) else { continue };
        for case in cases {
            let case = case.unwrap().path();
            let out = Command::new(env!("CARGO_BIN_EXE_specc-fuzz"))
                .args(["repro", "--target", target])
                .arg(&case)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && (said.starts_with("ok:") || said.starts_with("error:")),
                "{}: {said}{}",
                case.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            println!("{target} {}: {}", case.file_name().unwrap().to_string_lossy(), said.trim());
            replayed += 1;
        }
    }
    assert!(replayed >= 2, "the regression cases are missing ({} holds {replayed})", root.display());
}
