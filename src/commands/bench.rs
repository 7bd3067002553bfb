//! `specc bench out/ --prompts FILE.jsonl`: plain vs speculative on the same
//! prompts in the same run, acceptance, measured costs and the formula's
//! prediction (see `crate::bench`).

use specc_artifact::Artifact;
use specc_exec::{Engine, Mode, Reference};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Artifact(#[from] specc_artifact::ArtifactError),
    #[error(transparent)]
    Exec(#[from] specc_exec::ExecError),
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}: {detail}")]
    Prompt { path: String, line: usize, detail: String },
    #[error("{0}")]
    Usage(String),
}

/// Prompts from a JSONL file: one object per line with `prompt_ids`.
pub fn read_prompts(path: &Path) -> Result<Vec<Vec<i64>>, BenchError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Read { path: shown.clone(), source })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |detail: String| BenchError::Prompt { path: shown.clone(), line: i + 1, detail };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let ids = v["prompt_ids"].as_array().ok_or_else(|| bad("no `prompt_ids` array".into()))?;
        let ids: Vec<i64> = ids
            .iter()
            .map(|x| x.as_i64().ok_or_else(|| bad(format!("`{x}` is not a token id"))))
            .collect::<Result<_, _>>()?;
        out.push(ids);
    }
    Ok(out)
}

pub fn bench(
    dir: &Path,
    prompts: Vec<Vec<i64>>,
    max_new_tokens: usize,
    runs: usize,
    lookup: bool,
    json: bool,
) -> Result<String, BenchError> {
    if prompts.is_empty() {
        return Err(BenchError::Usage("give prompts with --prompt-ids or --prompts FILE.jsonl".into()));
    }
    let artifact = Artifact::open(dir)?;
    let mut engine = Engine::load(&artifact, Reference::default())?;
    let mode = if lookup || !engine.speculation().draft { Mode::PromptLookup { max_ngram: 3 } } else { Mode::Draft };
    let r = crate::bench::measure(&mut engine, &prompts, max_new_tokens, runs, mode)?;
    Ok(if json { format!("{}\n", serde_json::to_string_pretty(&r).expect("json")) } else { r.table() })
}
