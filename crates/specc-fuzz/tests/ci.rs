//! The bounded fuzzing run CI does on every change: both targets, a fixed
//! seed, a time budget (`$SPECC_FUZZ_SECONDS`, default 90 s in all). It
//! fails on any panic, abort, signal or hang, and prints the outcome counts
//! (the long run and its results: BENCHMARKS.md, "Reliability").

use std::process::Command;

#[test]
fn a_bounded_campaign_finds_no_panic_abort_signal_or_hang() {
    let seconds: f64 = std::env::var("SPECC_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(90.0);
    let out = std::env::temp_dir().join(format!("specc-fuzz-ci-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_specc-fuzz"))
        .args(["run", "--target", "all", "--seed", "20261130", "--seconds", &seconds.to_string(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    println!("{report}{}", String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "the campaign found bugs (saved under {}):\n{report}", out.display());
    // It really ran, and reached both refusals and results on each target.
    for target in ["onnx", "artifact", "tokenizer"] {
        let line = report
            .lines()
            .skip_while(|l| !l.starts_with(&format!("target {target}")))
            .nth(1)
            .unwrap_or_else(|| panic!("no report for {target}:\n{report}"));
        let count = |class: &str| -> u64 {
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                if w == class {
                    return words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                }
            }
            0
        };
        assert!(count("error") >= 100 && count("ok") >= 1, "{target}: {line}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
