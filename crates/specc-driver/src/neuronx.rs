//! Driving `neuronx-cc` (HLO proto -> NEFF) when it is installed.
//!
//! The flags follow AWS's LLM stack: `--framework XLA`, an explicit
//! `--target` and `--auto-cast` (defaults changed across releases),
//! `--model-type transformer`, `-O1` for context encoding (prefill) and
//! `-O2` for token generation and fused speculation graphs.
//!
//! `specc compile` runs it over all graphs at once (`--jobs`), and reuses
//! NEFFs from a cache keyed by the HLO, these flags and the compiler's
//! version (`crate::neff_cache`).

use crate::neff_cache::CacheSetting;
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
    /// How many compiler runs at a time (default: the available
    /// parallelism).
    pub jobs: Option<usize>,
    pub neff_cache: CacheSetting,
}

impl Default for NeuronxOptions {
    fn default() -> Self {
        NeuronxOptions {
            model_type: "transformer".into(),
            auto_cast: "none".into(),
            opt_level: None,
            compiler: None,
            jobs: None,
            neff_cache: CacheSetting::Default,
        }
    }
}

/// Compiler runs at a time: `--jobs`, else one per available CPU (at least
/// one).
pub fn jobs(o: &NeuronxOptions) -> usize {
    o.jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1)
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

/// The `-O` level a graph of `kind` gets: `--opt-level`, else per kind.
pub fn level(kind: &str, o: &NeuronxOptions) -> u8 {
    o.opt_level.unwrap_or_else(|| opt_level(kind))
}

/// The flags that decide what the compiler emits: everything but the
/// subcommand and the file names (these are the NEFF cache's key).
pub fn flags(target: &str, kind: &str, o: &NeuronxOptions) -> Vec<String> {
    let level = level(kind, o);
    ["--framework", "XLA", "--target", target, "--model-type", &o.model_type, "--auto-cast", &o.auto_cast]
        .into_iter()
        .map(String::from)
        .chain([format!("-O{level}")])
        .collect()
}

/// The arguments after the program name, with paths relative to the
/// artifact directory (so the recorded command can be rerun there).
pub fn arguments(hlo: &str, neff: &str, log: &str, target: &str, kind: &str, o: &NeuronxOptions) -> Vec<String> {
    let mut args = vec!["compile".to_string(), hlo.to_string()];
    args.extend(flags(target, kind, o));
    args.extend(["--output", neff, "--logfile", log].map(String::from));
    args
}

/// The last non-blank line of a compiler's stderr (where its error is).
fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

/// `neuronx-cc --version`'s answer (stdout, else stderr, trimmed): part of
/// the NEFF cache's key.
pub fn version(compiler: &Path) -> Result<String, String> {
    let shown = format!("`{} --version`", compiler.display());
    let out = Command::new(compiler).arg("--version").output().map_err(|e| format!("could not start {shown}: {e}"))?;
    if !out.status.success() {
        let last = last_line(&out.stderr);
        return Err(format!(
            "{shown} exited with {}{}",
            out.status,
            if last.is_empty() { String::new() } else { format!(": {last}") }
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let text = if stdout.is_empty() { String::from_utf8_lossy(&out.stderr).trim().to_string() } else { stdout };
    if text.is_empty() { Err(format!("{shown} printed nothing")) } else { Ok(text) }
}

/// A compiler run that did not succeed.
#[derive(Debug)]
pub struct RunFailure {
    /// How it failed, with the last line of its stderr.
    pub detail: String,
    /// Everything it printed (kept when it wrote no log file).
    pub output: Vec<u8>,
}

/// Runs the compiler in `dir`. `Ok(())` on exit status 0; the error says
/// how it failed (the log file has the details).
pub fn run(compiler: &Path, dir: &Path, args: &[String]) -> Result<(), RunFailure> {
    let out = Command::new(compiler)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| RunFailure { detail: format!("could not start {}: {e}", compiler.display()), output: vec![] })?;
    if out.status.success() {
        return Ok(());
    }
    let last = last_line(&out.stderr);
    let mut output = out.stdout;
    output.extend_from_slice(&out.stderr);
    Err(RunFailure {
        detail: format!(
            "{} exited with {}{}",
            compiler.display(),
            out.status,
            if last.is_empty() { String::new() } else { format!(": {last}") }
        ),
        output,
    })
}
