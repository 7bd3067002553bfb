//! `specc bench out/ --prompts code.jsonl --prompts json.jsonl ...`: plain
//! vs speculative on the same prompts in the same run, per domain and for
//! every K, acceptance, measured costs and the formula's prediction (see
//! `crate::bench`); a table, JSON and an SVG plot.

use crate::bench::{BenchConfig, Domain, Report};
use specc_artifact::Artifact;
use specc_driver::text::Text;
use specc_exec::{Backend, Engine, Mode, Neuron, Pjrt, Reference};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Artifact(#[from] specc_artifact::ArtifactError),
    #[error(transparent)]
    Exec(#[from] specc_exec::ExecError),
    #[error(transparent)]
    Text(#[from] specc_driver::text::TextError),
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{path}:{line}: {detail}")]
    Prompt { path: String, line: usize, detail: String },
    #[error("{0}")]
    Usage(String),
}

/// One line of a prompts file, before encoding.
#[derive(Clone, Debug, PartialEq)]
pub enum PromptLine {
    Text(String),
    Ids(Vec<i64>),
}

/// A prompts file: one JSON object per line with `prompt` (text) or
/// `prompt_ids`, and optionally `domain` (default: the file's stem).
/// Blank lines are skipped; anything else malformed stops the benchmark
/// with its line number (a benchmark must run the prompt set it was given).
pub fn read_prompts(path: &Path) -> Result<Vec<(String, usize, PromptLine)>, BenchError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Read { path: shown.clone(), source })?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("prompts").to_string();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |detail: String| BenchError::Prompt { path: shown.clone(), line: i + 1, detail };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let domain = match &v["domain"] {
            serde_json::Value::Null => stem.clone(),
            serde_json::Value::String(s) => s.clone(),
            other => return Err(bad(format!("`domain` must be a string, not {other}"))),
        };
        let prompt = match (&v["prompt"], &v["prompt_ids"]) {
            (serde_json::Value::String(s), serde_json::Value::Null) if !s.is_empty() => PromptLine::Text(s.clone()),
            (serde_json::Value::String(_), serde_json::Value::Null) => return Err(bad("the prompt is empty".into())),
            (serde_json::Value::Null, serde_json::Value::Array(ids)) => {
                let ids: Vec<i64> = ids
                    .iter()
                    .map(|x| x.as_i64().ok_or_else(|| bad(format!("`{x}` is not a token id"))))
                    .collect::<Result<_, _>>()?;
                if ids.is_empty() {
                    return Err(bad("`prompt_ids` is empty".into()));
                }
                PromptLine::Ids(ids)
            }
            (serde_json::Value::Null, serde_json::Value::Null) => {
                return Err(bad("no `prompt` (text) or `prompt_ids` (token ids)".into()));
            }
            _ => return Err(bad("give one of `prompt` (a string) or `prompt_ids` (an array of ids)".into())),
        };
        out.push((domain, i + 1, prompt));
    }
    Ok(out)
}

pub struct BenchOptions {
    /// Where the graphs run.
    pub device: super::Device,
    pub prompt_files: Vec<PathBuf>,
    pub prompt_ids: Vec<Vec<i64>>,
    /// At most this many prompts per domain (the first ones).
    pub limit: Option<usize>,
    pub max_new_tokens: usize,
    pub runs: usize,
    /// K to measure (default: every compiled K).
    pub ks: Option<Vec<usize>>,
    pub adaptive: bool,
    pub lookup: bool,
    /// Benchmark-only synthetic acceptance probabilities (replace domains).
    pub synthetic: Vec<f64>,
    pub json: bool,
    pub json_file: Option<PathBuf>,
    pub plot: Option<PathBuf>,
}

/// Encodes and groups the prompts by domain, in first-seen order. Prompts
/// longer than the largest bucket are left out with a warning each.
fn domains(o: &BenchOptions, text: Option<&Text>, max_prompt: usize) -> Result<Vec<Domain>, BenchError> {
    let mut out: Vec<Domain> = Vec::new();
    let mut lines = Vec::new();
    for f in &o.prompt_files {
        for (domain, line, p) in read_prompts(f)? {
            lines.push((f.display().to_string(), domain, line, p));
        }
    }
    for ids in &o.prompt_ids {
        lines.push(("--prompt-ids".into(), "prompts".into(), 0, PromptLine::Ids(ids.clone())));
    }
    for (file, domain, line, p) in lines {
        let ids = match (p, text) {
            (PromptLine::Ids(ids), _) => ids,
            (PromptLine::Text(s), Some(t)) => t.encode(&s)?,
            (PromptLine::Text(_), None) => {
                return Err(BenchError::Prompt {
                    path: file,
                    line,
                    detail: "a text prompt, but the artifact has no tokenizer (use `prompt_ids`)".into(),
                });
            }
        };
        if ids.len() > max_prompt {
            eprintln!(
                "warning: {file}:{line}: left out, the prompt has {} tokens and the largest prompt bucket is {max_prompt}",
                ids.len()
            );
            continue;
        }
        let i = match out.iter().position(|d| d.name == domain) {
            Some(i) => i,
            None => {
                out.push(Domain { name: domain, prompts: vec![], synthetic_acceptance: None });
                out.len() - 1
            }
        };
        if o.limit.is_none_or(|n| out[i].prompts.len() < n) {
            out[i].prompts.push(ids);
        }
    }
    out.retain(|d| !d.prompts.is_empty());
    if out.is_empty() {
        return Err(BenchError::Usage("no prompts: give --prompts FILE.jsonl or --prompt-ids".into()));
    }
    if o.synthetic.is_empty() {
        return Ok(out);
    }
    if let Some(a) = o.synthetic.iter().find(|a| !(0.0..=1.0).contains(*a)) {
        return Err(BenchError::Usage(format!("--synthetic-acceptance {a}: a probability is in [0, 1]")));
    }
    let all: Vec<Vec<i64>> = out.into_iter().flat_map(|d| d.prompts).collect();
    Ok(o.synthetic
        .iter()
        .map(|&a| Domain { name: format!("synthetic-{a}"), prompts: all.clone(), synthetic_acceptance: Some(a) })
        .collect())
}

pub fn bench(dir: &Path, o: &BenchOptions) -> Result<String, BenchError> {
    let artifact = Artifact::open(dir)?;
    let (device, why) = o.device.resolve(&artifact);
    let out = match device {
        super::Chosen::Reference => bench_on(dir, &artifact, Engine::load(&artifact, Reference::default())?, o),
        super::Chosen::Neuron(n) => bench_on(dir, &artifact, Engine::load(&artifact, Neuron::new(n))?, o),
        super::Chosen::Pjrt(p) => bench_on(dir, &artifact, Engine::load(&artifact, Pjrt::new(p))?, o),
    }?;
    // The table and the JSON name the backend; why it was chosen goes to
    // the log, which people read and scripts do not parse.
    eprintln!("backend chosen by {why}");
    Ok(out)
}

fn bench_on<B: Backend>(
    dir: &Path,
    artifact: &Artifact,
    mut engine: Engine<B>,
    o: &BenchOptions,
) -> Result<String, BenchError> {
    let text = super::artifact_text::<BenchError>(artifact)?;
    let spec = engine.speculation().clone();
    let max_prompt = spec.buckets.iter().copied().max().unwrap_or(0);
    let domains = domains(o, text.as_ref(), max_prompt)?;
    let ks = o.ks.clone().unwrap_or_else(|| spec.ks.clone());
    if let Some(k) = ks.iter().find(|k| !spec.ks.contains(k)) {
        return Err(BenchError::Usage(format!(
            "-k {k}: the artifact has round graphs for K in {:?} (recompile with -k)",
            spec.ks
        )));
    }
    let mode = if o.lookup || !spec.draft { Mode::PromptLookup { max_ngram: 3 } } else { Mode::Draft };
    let cfg = BenchConfig { max_new_tokens: o.max_new_tokens, runs: o.runs, ks, adaptive: o.adaptive, mode };
    let pb = indicatif::ProgressBar::new_spinner();
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    let r = crate::bench::measure(&mut engine, &domains, &cfg, &mut |m| pb.set_message(m.to_string()))?;
    pb.finish_and_clear();
    let json = format!("{}\n", serde_json::to_string_pretty(&r).expect("a report serializes"));
    if let Some(p) = &o.json_file {
        write(p, &json)?;
    }
    if let Some(p) = &o.plot {
        write(p, &crate::plot::speedup_vs_k(&r, &title(&r, dir, engine.backend_name())))?;
    }
    Ok(if o.json { json } else { r.table() })
}

fn title(r: &Report, dir: &Path, backend: &str) -> String {
    let synthetic = r.domains.iter().any(|d| d.synthetic_acceptance.is_some());
    format!(
        "{}speedup vs K: {} ({}, {backend} backend)",
        if synthetic { "SYNTHETIC ACCEPTANCE, " } else { "" },
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("artifact"),
        r.mode
    )
}

fn write(p: &Path, s: &str) -> Result<(), BenchError> {
    std::fs::write(p, s).map_err(|source| BenchError::Write { path: p.display().to_string(), source })
}
