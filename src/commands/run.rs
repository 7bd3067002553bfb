//! `specc run out/ --prompt "..." | --prompt-ids 1,2,3`: generation on a
//! compiled artifact, streaming text (or ids, without a tokenizer) as it is
//! accepted and ending with a summary (or one JSON object).

use super::{Chosen, Device};
use specc_artifact::Artifact;
use specc_exec::{Backend, Engine, GenerateOptions, Generation, Mode, Neuron, Pjrt, Reference};
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Artifact(#[from] specc_artifact::ArtifactError),
    #[error(transparent)]
    Exec(#[from] specc_exec::ExecError),
    #[error(transparent)]
    Text(#[from] specc_driver::text::TextError),
    #[error("{0}")]
    Usage(String),
}

/// What to continue.
#[derive(Clone, Debug)]
pub enum Prompt {
    Ids(Vec<i64>),
    /// Encoded with the artifact's tokenizer.
    Text(String),
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub prompt: Prompt,
    pub max_new_tokens: usize,
    pub no_speculation: bool,
    pub prompt_lookup: bool,
    pub ignore_eos: bool,
    pub json: bool,
    pub sampling: Option<specc_exec::Sampling>,
    /// Speculative tokens per round (a compiled K); None: the largest.
    pub k: Option<usize>,
    /// Adapt K between rounds (up to `k`).
    pub adaptive: bool,
    /// Where the graphs run.
    pub device: Device,
}

/// The summary people read after a run.
pub fn summary(g: &Generation, k: &str, backend: &str) -> String {
    let m = &g.metrics;
    let mut s = String::new();
    writeln!(s, "\n--").unwrap();
    writeln!(
        s,
        "{} tokens ({:?}) in {:.3} s on the {backend} backend: {:.1} tokens/s, inter-token latency {:.2} ms, time to first token {:.1} ms",
        m.generated_tokens,
        g.stop,
        m.prefill_seconds + m.decode_seconds,
        m.tokens_per_second(),
        m.inter_token_latency_ms(),
        m.prefill_seconds * 1e3
    )
    .unwrap();
    if m.num_drafts > 0 {
        let rates: Vec<String> = m.per_position_rate().iter().map(|r| format!("{r:.2}")).collect();
        writeln!(
            s,
            "speculation: {k}, {} rounds, mean acceptance length {:.2}, draft acceptance rate {:.2}, accepted per position [{}]",
            m.num_drafts,
            m.mean_acceptance_length(),
            m.draft_acceptance_rate(),
            rates.join(", ")
        )
        .unwrap();
    }
    writeln!(s, "device calls: {} ({:.2} per generated token)", m.device_calls, m.device_calls_per_token()).unwrap();
    s
}

pub fn run(dir: &Path, o: &RunOptions) -> Result<String, RunError> {
    let artifact = Artifact::open(dir)?;
    // Before loading anything: a shape-only artifact has no weights to run.
    if let Some(model) = artifact.manifest.shape_only_model() {
        return Err(
            specc_artifact::ArtifactError::ShapeOnly { dir: dir.display().to_string(), model: model.into() }.into()
        );
    }
    let (device, why) = o.device.resolve(&artifact);
    match device {
        Chosen::Reference => generate(dir, &artifact, Engine::load(&artifact, Reference::default())?, o, &why),
        Chosen::Neuron(n) => generate(dir, &artifact, Engine::load(&artifact, Neuron::new(n))?, o, &why),
        Chosen::Pjrt(p) => generate(dir, &artifact, Engine::load(&artifact, Pjrt::new(p))?, o, &why),
    }
}

fn generate<B: Backend>(
    dir: &Path,
    artifact: &Artifact,
    mut engine: Engine<B>,
    o: &RunOptions,
    why: &str,
) -> Result<String, RunError> {
    let spec = engine.speculation().clone();
    let mode = match (o.no_speculation, o.prompt_lookup, spec.draft) {
        (true, _, _) => Mode::Plain,
        (false, true, _) | (false, false, false) => Mode::PromptLookup { max_ngram: 3 },
        (false, false, true) => Mode::Draft,
    };
    if o.no_speculation && o.prompt_lookup {
        return Err(RunError::Usage("--no-speculation and --prompt-lookup exclude each other".into()));
    }
    let opts = GenerateOptions {
        max_new_tokens: o.max_new_tokens,
        mode,
        ignore_eos: o.ignore_eos,
        eos: None,
        sampling: o.sampling,
        k: o.k,
        adaptive: o.adaptive,
        synthetic_acceptance: None,
    };
    let k = o.k.unwrap_or(spec.k);
    let k_label = if o.adaptive { format!("adaptive K (at most {k})") } else { format!("K={k}") };
    let text = super::artifact_text::<RunError>(artifact)?;
    let prompt = match (&o.prompt, &text) {
        (Prompt::Ids(ids), _) => ids.clone(),
        (Prompt::Text(s), Some(t)) => t.encode(s)?,
        (Prompt::Text(_), None) => {
            return Err(RunError::Usage(format!(
                "{} has no tokenizer: give --prompt-ids, or recompile with --tokenizer tokenizer.json",
                dir.display()
            )));
        }
    };
    let json = o.json;
    let mut stdout = std::io::stdout();
    let mut decode = text.as_ref().map(|t| t.stream());
    let mut stream = |tokens: &[i64]| {
        if json {
            return;
        }
        match decode.as_mut() {
            Some(d) => {
                let _ = write!(stdout, "{}", d(tokens));
            }
            None => {
                for t in tokens {
                    let _ = write!(stdout, "{t} ");
                }
            }
        }
        let _ = stdout.flush();
    };
    let g = engine.generate(&prompt, &opts, &mut stream)?;
    if json {
        let m = &g.metrics;
        let v = serde_json::json!({
            "backend": engine.backend_description(),
            "backend_reason": why,
            "prompt_ids": prompt,
            "tokens": g.tokens,
            "text": text.as_ref().map(|t| t.decode(&g.tokens)),
            "stop": g.stop,
            "mode": format!("{mode:?}"),
            "k": k,
            "adaptive": o.adaptive,
            "metrics": m,
            "mean_acceptance_length": m.mean_acceptance_length(),
            "draft_acceptance_rate": m.draft_acceptance_rate(),
            "accepted_per_position_rate": m.per_position_rate(),
            "tokens_per_second": m.tokens_per_second(),
            "inter_token_latency_ms": m.inter_token_latency_ms(),
            "device_calls_per_token": m.device_calls_per_token(),
        });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v).expect("json")));
    }
    let mut s = summary(&g, &k_label, engine.backend_name());
    writeln!(s, "backend: {} ({why})", engine.backend_description()).unwrap();
    Ok(s)
}
