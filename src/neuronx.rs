//! Driving `neuronx-cc` (HLO proto -> NEFF) when it is installed.
//!
//! The flags follow AWS's LLM stack: `--framework XLA`, an explicit
//! `--target` and `--auto-cast` (defaults changed across releases),
//! `--model-type transformer`, `-O1` for context encoding (prefill) and
//! `-O2` for token generation and fused speculation graphs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// User-settable compiler options.
#[derive(Clone, Debug)]
pub struct NeuronxOptions {
    pub model_type: String,
    pub auto_cast: String,
    /// Overrides the per-kind optimisation level.
    pub opt_level: Option<u8>,
    /// An explicit compiler path (else `neuronx-cc` on PATH).
    pub compiler: Option<PathBuf>,
}

impl Default for NeuronxOptions {
    fn default() -> Self {
        NeuronxOptions { model_type: "transformer".into(), auto_cast: "none".into(), opt_level: None, compiler: None }
    }
}

/// `-O` level for a graph kind.
pub fn opt_level(kind: &str) -> u8 {
    match kind {
        "prefill" => 1,
        _ => 2,
    }
}

/// The compiler to run: `--neuronx-cc`, `$SPECC_NEURONX_CC`, or `neuronx-cc`
/// on PATH.
pub fn find_compiler(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("SPECC_NEURONX_CC") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("neuronx-cc")).find(|p| p.is_file())
}

/// The arguments after the program name, with paths relative to the
/// artifact directory (so the recorded command can be rerun there).
pub fn arguments(hlo: &str, neff: &str, log: &str, target: &str, kind: &str, o: &NeuronxOptions) -> Vec<String> {
    let level = o.opt_level.unwrap_or_else(|| opt_level(kind));
    [
        "compile",
        hlo,
        "--framework",
        "XLA",
        "--target",
        target,
        "--model-type",
        &o.model_type,
        "--auto-cast",
        &o.auto_cast,
        &format!("-O{level}"),
        "--output",
        neff,
        "--logfile",
        log,
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Runs the compiler in `dir`. `Ok(())` on exit status 0; the error says
/// how it failed (the log file has the details).
pub fn run(compiler: &Path, dir: &Path, args: &[String]) -> Result<(), String> {
    let out = Command::new(compiler)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("could not start {}: {e}", compiler.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
    Err(format!(
        "{} exited with {}{}",
        compiler.display(),
        out.status,
        if last.is_empty() { String::new() } else { format!(": {last}") }
    ))
}
